#include "tests/testing/kafka_pipeline.h"

#include "storage/status_macros.h"

namespace predlog::testing {

absl::StatusOr<KafkaPipeline> KafkaPipeline::Start(int partitions) {
  KafkaPipeline pipeline;
  pipeline.partitions_ = partitions;
  ASSIGN_OR_RETURN(pipeline.broker, services::EmbeddedBroker::Start({partitions}));
  services::ProducerOptions producer_options;
  producer_options.bootstrap_servers = pipeline.broker->bootstrap_servers();
  ASSIGN_OR_RETURN(pipeline.producer, services::Producer::Open(producer_options));
  return pipeline;
}

services::IngestOptions KafkaPipeline::IngestOptionsFor(const std::string& data_dir) const {
  services::IngestOptions options;
  options.data_dir = data_dir;
  options.bootstrap_servers = broker->bootstrap_servers();
  options.incarnation = broker->incarnation();
  options.partitions = partitions_;
  return options;
}

absl::Status KafkaPipeline::StartIngest(const std::string& data_dir) {
  ASSIGN_OR_RETURN(ingest, services::Ingest::Start(IngestOptionsFor(data_dir)));
  return absl::OkStatus();
}

}  // namespace predlog::testing
