#include "services/kafka/embedded_broker.h"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/kafka/kafka_config.h"
#include "services/kafka/produce_size_guard.h"
#include "storage/status_macros.h"

namespace predlog::services {
namespace {

// The listening IPv4 socket of this process bound to `bootstraps`'s port: the
// mock broker's, which its API does not expose.
absl::StatusOr<int> FindListener(absl::string_view bootstraps) {
  int port = 0;
  const size_t colon = bootstraps.rfind(':');
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(bootstraps.substr(colon + 1), &port)) {
    return absl::InternalError(absl::StrCat("no port in broker address ", bootstraps));
  }
  DIR* fds = opendir("/proc/self/fd");
  if (fds == nullptr) return absl::InternalError("cannot list /proc/self/fd");
  int found = -1;
  while (const dirent* entry = readdir(fds)) {
    int fd = -1;
    if (!absl::SimpleAtoi(entry->d_name, &fd) || fd == dirfd(fds)) continue;
    sockaddr_in address{};
    socklen_t length = sizeof(address);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        address.sin_family != AF_INET || ntohs(address.sin_port) != port) {
      continue;
    }
    int listening = 0;
    length = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 && listening) {
      found = fd;
      break;
    }
  }
  closedir(fds);
  if (found < 0) return absl::NotFoundError(absl::StrCat("no listening socket on port ", port));
  return found;
}

}  // namespace

namespace {
constexpr absl::string_view kIncarnationTopicPrefix = "__predlog_incarnation.";
}  // namespace

absl::StatusOr<std::string> DiscoverIncarnation(const std::string& bootstrap_servers,
                                                absl::Duration timeout,
                                                const KafkaSettings& client_properties) {
  KafkaSettings settings = client_properties;
  settings.emplace_back("bootstrap.servers", bootstrap_servers);
  settings.emplace_back("log_level", "3");
  ASSIGN_OR_RETURN(rd_kafka_t * rk, NewKafkaClient(RD_KAFKA_PRODUCER, settings));
  const rd_kafka_metadata_t* metadata = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(
      rk, 1, nullptr, &metadata, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_destroy(rk);
    return absl::UnavailableError(
        absl::StrCat("kafka at ", bootstrap_servers, ": metadata: ", rd_kafka_err2str(err)));
  }
  std::string incarnation = "kafka";
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    absl::string_view topic = metadata->topics[i].topic;
    if (absl::StartsWith(topic, kIncarnationTopicPrefix)) {
      incarnation = std::string(topic.substr(kIncarnationTopicPrefix.size()));
    }
  }
  rd_kafka_metadata_destroy(metadata);
  rd_kafka_destroy(rk);
  return incarnation;
}

absl::StatusOr<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::Start(
    const EmbeddedBrokerOptions& options) {
  if (options.partitions < 1) {
    return absl::InvalidArgumentError("EmbeddedBrokerOptions.partitions must be >= 1");
  }
  std::unique_ptr<EmbeddedBroker> broker(new EmbeddedBroker());
  // The mock cluster needs a host client; it never produces itself.
  ASSIGN_OR_RETURN(broker->handle_, NewKafkaClient(RD_KAFKA_PRODUCER, {{"log_level", "3"}}));
  broker->cluster_ = rd_kafka_mock_cluster_new(broker->handle_, 1);
  if (broker->cluster_ == nullptr) return absl::InternalError("rd_kafka_mock_cluster_new failed");
  for (const auto& [topic, partitions] :
       {std::pair<const char*, int>{kEventsTopic, options.partitions},
        {kRegistryTopic, 1},
        {kAccessTopic, 1}}) {
    const rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(broker->cluster_, topic, partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InternalError(absl::StrCat("create topic ", topic, ": ", rd_kafka_err2str(err)));
    }
  }
  broker->bootstraps_ = rd_kafka_mock_cluster_bootstraps(broker->cluster_);
  // Before any client connects: the guard takes the advertised port, so every
  // connection passes it (and has Nagle off; see produce_size_guard.cc).
  ProduceSizeGuardOptions guard;
  ASSIGN_OR_RETURN(guard.broker_listen_fd, FindListener(broker->bootstraps_));
  guard.max_batch_bytes = kMaxMessageBytes;
  // A synchronous mock call (RTT 0 is the default): the mock thread serves it
  // between two polls, so it no longer polls the socket the guard took.
  guard.resync = [cluster = broker->cluster_] {
    const rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_rtt(cluster, 1, 0);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR
               ? absl::OkStatus()
               : absl::InternalError(absl::StrCat("mock broker RTT: ", rd_kafka_err2str(err)));
  };
  ASSIGN_OR_RETURN(broker->guard_, ProduceSizeGuard::Start(guard));
  std::random_device random;
  broker->incarnation_ = absl::StrFormat(
      "%s%s-%08x%08x", kEmbeddedIncarnationPrefix,
      absl::FormatTime("%Y%m%dT%H%M%S", absl::Now(), absl::UTCTimeZone()), random(), random());
  // Announce this start's incarnation, so an ingest in another process can
  // tell a restarted (empty) broker from the one it folded before.
  const std::string marker = absl::StrCat(kIncarnationTopicPrefix, broker->incarnation_);
  if (const rd_kafka_resp_err_t err =
          rd_kafka_mock_topic_create(broker->cluster_, marker.c_str(), 1, 1);
      err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(absl::StrCat("create topic ", marker, ": ", rd_kafka_err2str(err)));
  }
  return broker;
}

EmbeddedBroker::~EmbeddedBroker() {
  guard_.reset();  // its connections end before the broker does
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  if (handle_ != nullptr) rd_kafka_destroy(handle_);
}

}  // namespace predlog::services
