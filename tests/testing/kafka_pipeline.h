// The Kafka path of the embedded default, for tests of what sits on it:
// librdkafka's mock broker, a producer to it, and (on request) an ingest that
// folds its partitions into shards. Real parts, nothing mocked of our own.
//
// Single-threaded setup; the parts themselves are thread-safe as documented
// in their headers.
#ifndef PREDLOG_TESTS_TESTING_KAFKA_PIPELINE_H_
#define PREDLOG_TESTS_TESTING_KAFKA_PIPELINE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/kafka/embedded_broker.h"
#include "services/kafka/ingest.h"
#include "services/kafka/producer.h"

namespace predlog::testing {

struct KafkaPipeline {
  // Members are destroyed in reverse order: the ingest, then the producer,
  // then the broker they both talk to.
  std::unique_ptr<services::EmbeddedBroker> broker;
  std::unique_ptr<services::Producer> producer;
  std::unique_ptr<services::Ingest> ingest;  // null until StartIngest

  // A broker with `partitions` partitions of predlog.events, and a producer.
  static absl::StatusOr<KafkaPipeline> Start(int partitions);
  // Options for an ingest of this broker (bootstrap servers, incarnation,
  // partitions) with its shards under `data_dir`, no consumer group.
  services::IngestOptions IngestOptionsFor(const std::string& data_dir) const;
  // Starts `ingest` with IngestOptionsFor(data_dir): it folds every partition.
  absl::Status StartIngest(const std::string& data_dir);

 private:
  int partitions_ = 0;
};

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_TESTING_KAFKA_PIPELINE_H_
