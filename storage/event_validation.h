// The rules an AuditEvent must satisfy to enter a shard's log. The shard
// applies them to every message it folds (a violation becomes a `rejected`
// record), and the gateway applies the same function before producing, so a
// client hears about a bad field from the call itself.
#ifndef PREDLOG_STORAGE_EVENT_VALIDATION_H_
#define PREDLOG_STORAGE_EVENT_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "predlog/v1/events.pb.h"

namespace predlog::storage {

// The AuditEvent.schema_version this build writes and the newest it folds.
inline constexpr uint32_t kSchemaVersion = 1;

// The one size limit: the largest serialized AuditEvent predlog accepts, in
// bytes (1 MiB). The gateway refuses larger events (INVALID_ARGUMENT), the
// fold keeps larger Kafka messages as rejected records, and the producer and
// consumer are configured to carry any event up to it.
inline constexpr size_t kMaxEventBytes = size_t{1} << 20;

// The largest Kafka message predlog carries (services/kafka/kafka_config.h
// kMaxMessageBytes): one event at the limit plus a record batch's framing,
// with room to spare. A rejected message up to it is kept whole in the
// shard's rejected records; a larger one (only a Kafka topic with a higher
// max.message.bytes than predlog's lets one through) keeps its first
// kRejectedPrefixBytes and, in the reason, its size and SHA-256.
inline constexpr size_t kMaxRejectedKeptBytes = kMaxEventBytes + (64 << 10);
inline constexpr size_t kRejectedPrefixBytes = 4096;

struct EventLimits {
  // Longest id (prediction, subject, entity, model name/version, route).
  size_t max_id_bytes = 512;
  // Most input features of one prediction.
  int max_features = 4096;
};

// OK, or INVALID_ARGUMENT whose message names the offending field by its
// proto path (e.g. "prediction_logged.subject_id is empty"). Events whose body
// is written only by predlog itself (SourceReset) are INVALID_ARGUMENT too.
absl::Status ValidateEvent(const predlog::v1::AuditEvent& event, const EventLimits& limits = {});

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_EVENT_VALIDATION_H_
