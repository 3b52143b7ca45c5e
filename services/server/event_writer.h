// EventWriter: the one path by which predlogd writes an AuditEvent: a direct
// append to its shard's writer (the single-machine default: answered after
// the group commit), or produced to Kafka and, when durability is asked for,
// answered only once the ingest has folded it. The gateway's Log and
// ChangeEntity and the registry's calls all go through it, so every event
// gets the same envelope, size check, in-flight bound and receipt.
//
// Thread-safe. Borrows the producer and the ingest (may be null: then only
// non-durable writes work), which must outlive it.
#ifndef PREDLOG_SERVICES_SERVER_EVENT_WRITER_H_
#define PREDLOG_SERVICES_SERVER_EVENT_WRITER_H_

#include <atomic>
#include <cstddef>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "predlog/v1/events.pb.h"
#include "predlog/v1/service.pb.h"
#include "services/kafka/ingest.h"
#include "services/kafka/producer.h"
#include "storage/event_validation.h"

namespace predlog::services {

struct EventWriterOptions {
  // Acknowledge every write only once folded (Kafka path). The embedded
  // broker keeps messages in memory only, so there an ack must mean
  // "folded": written to the shard's WAL (synced with --sync).
  bool always_wait_durable = false;
  // Append straight into the ingest's shard writers (group commit, WAL synced
  // as the shards are configured) instead of producing to Kafka: the
  // single-machine default, with the broker in this process. Every answer is
  // then a fold's outcome. Needs the ingest.
  bool direct = false;
  // Largest serialized event accepted.
  size_t max_event_bytes = storage::kMaxEventBytes;
  // Event bytes produced but not yet answered (in Kafka, not yet folded).
  // Above it a write answers RESOURCE_EXHAUSTED: backpressure instead of
  // letting the embedded broker (which keeps ~5 MB per partition) drop
  // unfolded data. Must be >= max_event_bytes. (4 MB stays below one
  // partition's ~5 MB even if every in-flight event hashes to one partition.)
  size_t max_in_flight_bytes = 4 << 20;
};

class EventWriter {
 public:
  using ReceiptCallback = std::function<void(absl::StatusOr<predlog::v1::LogReceipt>)>;

  EventWriter(Producer* producer, Ingest* ingest, EventWriterOptions options)
      : producer_(producer), ingest_(ingest), options_(options) {}

  // Fills the envelope: a fresh event_id, recorded_at = now, `actor` (the
  // authenticated identity's name, "" when predlogd knows nobody),
  // `claimed_actor` (the request's own actor field, as sent), the current
  // schema version. Call before validating.
  static void StampEnvelope(absl::string_view actor, absl::string_view claimed_actor,
                            predlog::v1::AuditEvent* event);

  // Validation names fields by the event body ("prediction_logged.subject_id
  // is empty"); a request calls the body otherwise ("prediction."). Rewrites
  // the message's leading `body_field.` to `request_field.`.
  static absl::Status RenameFieldPath(const absl::Status& status, absl::string_view body_field,
                                      absl::string_view request_field);

  // Writes the (stamped, validated) `event` for (topic, key) and calls `done`
  // exactly once, possibly before returning. Direct: appended to the shard
  // Kafka's partitioner picks for `key`, answered with the fold's outcome and
  // position once the group commit is written. Otherwise produced to Kafka:
  // an ACCEPTED receipt once Kafka has it, or, when durable, the fold's
  // outcome and position. INVALID_ARGUMENT ("<what> is N bytes ...") for an
  // oversize event; RESOURCE_EXHAUSTED / UNAVAILABLE mean retry later
  // (RESOURCE_EXHAUSTED also when the shard's disk is full, naming it).
  void Write(absl::string_view topic, absl::string_view key, predlog::v1::AuditEvent event,
             bool wait_durable, absl::string_view what, ReceiptCallback done);

 private:
  // The direct path of Write.
  void Append(absl::string_view topic, absl::string_view key, predlog::v1::AuditEvent event,
              std::string bytes, ReceiptCallback done);

  Producer* const producer_;
  Ingest* const ingest_;
  const EventWriterOptions options_;
  std::atomic<size_t> in_flight_bytes_{0};
};

// The receipt outcome of a fold outcome (kRedelivered has none).
predlog::v1::LogReceipt::Outcome ToReceiptOutcome(storage::FoldOutcome outcome);
// Fills `receipt`'s outcome, reason, position and leaf from a fold's result
// in shard `shard`.
void SetFoldResult(const std::string& shard, const storage::MessageResult& result,
                   predlog::v1::LogReceipt* receipt);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_EVENT_WRITER_H_
