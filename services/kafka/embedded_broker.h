// The embedded Kafka-protocol broker: librdkafka's mock cluster, in-process.
// It keeps messages in memory (about the last 5 MB per partition) and starts
// empty on every start, so each start is a new source incarnation.
// A ProduceSizeGuard (produce_size_guard.h) holds the advertised port, so every
// client connection passes it: a Produce whose batch for a partition is larger
// than kMaxMessageBytes fails with MESSAGE_TOO_LARGE, as on a real broker,
// instead of evicting the partition's unconsumed messages; everything else
// passes through unchanged, with Nagle off.
//
// Thread-safe after Start; the broker lives until destruction.
#ifndef PREDLOG_SERVICES_KAFKA_EMBEDDED_BROKER_H_
#define PREDLOG_SERVICES_KAFKA_EMBEDDED_BROKER_H_

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/kafka/kafka_config.h"
#include "services/kafka/produce_size_guard.h"

namespace predlog::services {

struct EmbeddedBrokerOptions {
  // Partitions of predlog.events (predlog.registry always has 1). Must be >= 1.
  int partitions = 4;
};

// Every embedded broker incarnation starts with this.
inline constexpr char kEmbeddedIncarnationPrefix[] = "embedded-";

class EmbeddedBroker {
 public:
  static absl::StatusOr<std::unique_ptr<EmbeddedBroker>> Start(
      const EmbeddedBrokerOptions& options);
  ~EmbeddedBroker();
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  // "127.0.0.1:PORT" (the broker picks the port).
  const std::string& bootstrap_servers() const { return bootstraps_; }
  // Unique per start: the source incarnation shards record.
  const std::string& incarnation() const { return incarnation_; }

 private:
  EmbeddedBroker() = default;
  rd_kafka_t* handle_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  std::unique_ptr<ProduceSizeGuard> guard_;  // reset first by ~EmbeddedBroker
  std::string bootstraps_;
  std::string incarnation_;
};

// The source incarnation of the cluster at `bootstrap_servers`: an embedded
// broker announces its own (as an empty topic named
// "__predlog_incarnation.<incarnation>"), so an ingest in another process
// notices when that broker restarted empty. A real cluster is "kafka".
// `client_properties` (a --kafka_properties file: security settings) apply
// to the metadata client. UNAVAILABLE when the cluster cannot be reached
// within `timeout`; INTERNAL when the client cannot be created with them.
absl::StatusOr<std::string> DiscoverIncarnation(const std::string& bootstrap_servers,
                                                absl::Duration timeout,
                                                const KafkaSettings& client_properties = {});

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_KAFKA_EMBEDDED_BROKER_H_
