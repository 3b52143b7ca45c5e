// The logic behind predlog.v1.PredictionLog, without gRPC: Log validates a
// prediction, wraps it in an AuditEvent, produces it (key = subject_id) and,
// when durability is asked for, answers only once the event is folded.
// Reads go to the shards of the co-located ingest.
//
// Thread-safe. Borrows the producer and the ingest, which must outlive it.
#ifndef PREDLOG_SERVICES_PREDICTION_LOG_H_
#define PREDLOG_SERVICES_PREDICTION_LOG_H_

#include <atomic>
#include <functional>

#include "absl/status/statusor.h"
#include "predlog/v1/service.pb.h"
#include "services/ingest.h"
#include "services/metrics.h"
#include "services/producer.h"
#include "storage/event_validation.h"

namespace predlog::services {

struct PredictionLogOptions {
  // Acknowledge every Log only once folded (the embedded broker keeps
  // messages in memory only, so there an ack must mean "folded": written to
  // the shard's RocksDB WAL, which survives kill -9 of any process. The WAL
  // is not fsync'd per batch, so an OS crash can lose the newest acks.
  bool always_wait_durable = false;
  // Largest serialized event accepted.
  size_t max_event_bytes = 1 << 20;
  // Event bytes produced but not yet answered (in Kafka, not yet folded).
  // Above it Log answers RESOURCE_EXHAUSTED: backpressure instead of letting
  // the embedded broker (which keeps ~5 MB per partition) drop unfolded data.
  // Must be >= max_event_bytes. (4 MB stays below one partition's ~5 MB even if
  // every in-flight event hashes to the same partition.)
  size_t max_in_flight_bytes = 4 << 20;
  storage::EventLimits limits;
};

class PredictionLog {
 public:
  using LogCallback = std::function<void(absl::StatusOr<predlog::v1::LogReceipt>)>;

  PredictionLog(Producer* producer, Ingest* ingest, PredictionLogOptions options)
      : producer_(producer), ingest_(ingest), options_(std::move(options)) {}

  // Calls `done` exactly once (possibly before returning). INVALID_ARGUMENT
  // names the field; RESOURCE_EXHAUSTED / UNAVAILABLE mean retry later.
  void Log(const predlog::v1::LogRequest& request, LogCallback done);

  // NOT_FOUND when no shard holds the id. With subject_id, only that
  // subject's shard is searched.
  absl::StatusOr<predlog::v1::PredictionRecord> GetPrediction(
      const predlog::v1::GetPredictionRequest& request) const;

  // A subject's trail (from its one shard, in served order), or a model
  // version's predictions (shard by shard, each in served order), one page at
  // a time. INVALID_ARGUMENT for a missing filter or a foreign page token.
  absl::StatusOr<predlog::v1::ListPredictionsResponse> ListPredictions(
      const predlog::v1::ListPredictionsRequest& request) const;

  const GatewayMetrics& metrics() const { return metrics_; }

  // The partition (= shard) Kafka's murmur2 partitioner picks for a subject.
  static int32_t PartitionOf(absl::string_view subject_id, int partitions);

 private:
  Producer* const producer_;
  Ingest* const ingest_;
  // A record as the API shows it.
  absl::StatusOr<predlog::v1::PredictionRecord> ToRecord(int partition,
                                                         const storage::StoredRecord& record) const;

  const PredictionLogOptions options_;
  GatewayMetrics metrics_;
  std::atomic<size_t> in_flight_bytes_{0};
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_PREDICTION_LOG_H_
