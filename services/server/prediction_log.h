// The logic behind predlog.v1.PredictionLog, without gRPC: Log validates a
// prediction, wraps it in an AuditEvent and writes it (key = subject_id)
// through the EventWriter.
// Reads go to the shards of the co-located ingest.
//
// Thread-safe. Borrows the producer and the ingest, which must outlive it.
#ifndef PREDLOG_SERVICES_SERVER_PREDICTION_LOG_H_
#define PREDLOG_SERVICES_SERVER_PREDICTION_LOG_H_

#include <atomic>
#include <functional>

#include "absl/status/statusor.h"
#include "predlog/v1/service.pb.h"
#include "services/kafka/ingest.h"
#include "services/kafka/producer.h"
#include "services/server/event_writer.h"
#include "services/server/metrics.h"
#include "storage/event_validation.h"
#include "storage/shard_set.h"

namespace predlog::services {

struct PredictionLogOptions {
  EventWriterOptions writer;
  storage::EventLimits limits;
};

class PredictionLog {
 public:
  using LogCallback = std::function<void(absl::StatusOr<predlog::v1::LogReceipt>)>;

  // `ingest` may be null (a gateway without shards): reads are then UNAVAILABLE.
  PredictionLog(Producer* producer, Ingest* ingest, PredictionLogOptions options);

  // Writes take `actor`: the name of the identity that authenticated the call
  // ("" when predlogd has no identities file and so knows nobody). It is
  // recorded as AuditEvent.actor; the request's own actor field is recorded as
  // AuditEvent.claimed_actor.
  //
  // Calls `done` exactly once (possibly before returning). INVALID_ARGUMENT
  // names the field; RESOURCE_EXHAUSTED (too much in flight, or the disk
  // below its free-space reserve) and UNAVAILABLE mean retry later; DATA_LOSS
  // when the subject's shard lost acknowledged records and refuses writes.
  void Log(const predlog::v1::LogRequest& request, absl::string_view actor, LogCallback done);
  // Logs each request of `request` as Log does and calls `done` once, when
  // every one is answered, with a receipt per request in request order (a
  // failed one as ErrorReceipt). INVALID_ARGUMENT only for an empty batch or
  // one of more than kMaxLogBatch requests.
  static constexpr int kMaxLogBatch = 10'000;
  void LogBatch(const predlog::v1::LogBatchRequest& request, absl::string_view actor,
                std::function<void(absl::StatusOr<predlog::v1::LogBatchResponse>)> done);
  // The receipt of a request that failed: its prediction_id, the status code
  // as error_code and the message as reason (LogStream, LogBatch).
  static predlog::v1::LogReceipt ErrorReceipt(absl::string_view prediction_id,
                                              const absl::Status& status);
  // Records an EntityChanged, keyed by entity_id; as Log (the receipt has no
  // prediction_id).
  void ChangeEntity(const predlog::v1::ChangeEntityRequest& request, absl::string_view actor,
                    LogCallback done);

  // NOT_FOUND when no shard holds the id. With subject_id, only that
  // subject's shard is searched.
  absl::StatusOr<predlog::v1::PredictionRecord> GetPrediction(
      const predlog::v1::GetPredictionRequest& request) const;

  // Records a ListPredictions page holds when page_size is 0, and at most.
  static constexpr uint32_t kDefaultPageSize = 100;
  static constexpr uint32_t kMaxPageSize = 1000;

  // A subject's trail (from its one shard, in served order), or a model
  // version's or a trace's predictions (shard by shard, each in served
  // order), one page at a time. INVALID_ARGUMENT for a missing filter, a
  // foreign page token, page_size above kMaxPageSize, or served_from /
  // served_to with trace_id (a trace is listed whole); FAILED_PRECONDITION
  // when a shard it must read is folded by another instance (a model or a
  // trace reads every shard); UNAVAILABLE without shards here.
  absl::StatusOr<predlog::v1::ListPredictionsResponse> ListPredictions(
      const predlog::v1::ListPredictionsRequest& request) const;

  // An entity's changes (EntityChanged records) recorded in [from, to), in
  // recorded_at order then log order, from the entity's one shard
  // (PartitionForKey(entity_id), as ChangeEntity writes it), one page at a
  // time with ListPredictions' page sizes and tokens. INVALID_ARGUMENT
  // "entity_type is required" / "entity_id is required", for a page token
  // this call did not issue (another entity's too) and page_size above
  // kMaxPageSize; FAILED_PRECONDITION when another instance folds the
  // entity's shard, or the shard is a read-only copy older than the entity
  // index (storage: ShardStore::ScanEntity); UNAVAILABLE without shards here;
  // DATA_LOSS for a record that cannot be read.
  absl::StatusOr<predlog::v1::ListEntityChangesResponse> ListEntityChanges(
      const predlog::v1::ListEntityChangesRequest& request) const;

  const GatewayMetrics& metrics() const { return metrics_; }

  // The ingest's shards as reads see them (partition_of is PartitionForKey,
  // check_folded is Ingest::CheckFoldedHere); empty without an ingest. The
  // replay engine reads the same set.
  const storage::ShardSet& shards() const { return shards_; }

 private:
  Ingest* const ingest_;
  storage::ShardSet shards_;
  // A record as the API shows it.
  absl::StatusOr<predlog::v1::PredictionRecord> ToRecord(int partition,
                                                         const storage::StoredRecord& record) const;

  const PredictionLogOptions options_;
  EventWriter writer_;
  GatewayMetrics metrics_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_PREDICTION_LOG_H_
