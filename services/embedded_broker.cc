#include "services/embedded_broker.h"

#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/kafka_config.h"
#include "storage/status_macros.h"

namespace predlog::services {

namespace {
constexpr absl::string_view kIncarnationTopicPrefix = "__predlog_incarnation.";
}  // namespace

absl::StatusOr<std::string> DiscoverIncarnation(const std::string& bootstrap_servers,
                                                absl::Duration timeout) {
  ASSIGN_OR_RETURN(rd_kafka_t * rk,
                   NewKafkaClient(RD_KAFKA_PRODUCER,
                                  {{"bootstrap.servers", bootstrap_servers}, {"log_level", "3"}}));
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
       {std::pair<const char*, int>{kEventsTopic, options.partitions}, {kRegistryTopic, 1}}) {
    const rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(broker->cluster_, topic, partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InternalError(absl::StrCat("create topic ", topic, ": ", rd_kafka_err2str(err)));
    }
  }
  broker->bootstraps_ = rd_kafka_mock_cluster_bootstraps(broker->cluster_);
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
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  if (handle_ != nullptr) rd_kafka_destroy(handle_);
}

}  // namespace predlog::services
