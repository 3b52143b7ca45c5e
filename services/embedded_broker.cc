#include "services/embedded_broker.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/kafka_config.h"
#include "storage/status_macros.h"

namespace predlog::services {

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
      "embedded-%s-%08x%08x", absl::FormatTime("%Y%m%dT%H%M%S", absl::Now(), absl::UTCTimeZone()),
      random(), random());
  return broker;
}

EmbeddedBroker::~EmbeddedBroker() {
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  if (handle_ != nullptr) rd_kafka_destroy(handle_);
}

}  // namespace predlog::services
