// Small helpers around librdkafka's C configuration API; errors become Status.
#ifndef PREDLOG_SERVICES_KAFKA_KAFKA_CONFIG_H_
#define PREDLOG_SERVICES_KAFKA_KAFKA_CONFIG_H_

#include <librdkafka/rdkafka.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "storage/event_validation.h"

namespace predlog::services {

// Topic names (DESIGN.md "Flow").
inline constexpr char kEventsTopic[] = "predlog.events";
inline constexpr char kRegistryTopic[] = "predlog.registry";
// The access trail (AccessRecorded: who read what), one partition.
inline constexpr char kAccessTopic[] = "predlog.access";

// The largest Kafka message predlog produces and must be able to fetch, in
// bytes: one event at storage::kMaxEventBytes plus the record batch's framing
// (v2 format: a 61-byte batch header, the record's header and its key), with
// room to spare. The producer's message.max.bytes and the consumer's
// max.partition.fetch.bytes are set to it; librdkafka's defaults (1,000,000
// and 1 MiB) are below it. The embedded broker refuses larger batches
// (produce_size_guard.h), and the fold keeps a rejected message up to it whole.
inline constexpr size_t kMaxMessageBytes = storage::kMaxRejectedKeptBytes;

// The partition in [0, partitions) that Kafka's murmur2 partitioner (Java's
// default; librdkafka's `murmur2_random` for a non-empty key) picks for `key`:
// where a subject's events live, whichever path wrote them.
int32_t PartitionForKey(absl::string_view key, int partitions);

using KafkaSettings = std::vector<std::pair<std::string, std::string>>;

// A new rd_kafka_conf_t with `settings` applied in order; INVALID_ARGUMENT
// names the setting librdkafka refused (its value only when it is not a
// secret: passwords, secrets and keys show as <hidden>). The caller owns the
// result (rd_kafka_new takes it).
absl::StatusOr<rd_kafka_conf_t*> NewKafkaConf(const KafkaSettings& settings);

// Parses a librdkafka properties file (predlogd --kafka_properties): the
// security settings (security.protocol, sasl.*, ssl.*) and any other client
// setting, applied to every producer, consumer and metadata client predlogd
// creates against --kafka_brokers, before predlog's own settings. Grammar
// (as Java's client.properties, minus line continuations and escapes):
//   file     := line*
//   line     := blank* [comment | property] ("\n" | end)   ("\r" before "\n" ignored)
//   comment  := ("#" | "!") any*      -- whole lines only: a value may hold '#'
//   property := name blank* "=" blank* value
//   value    := any*, trailing blanks dropped (may be empty)
// INVALID_ARGUMENT "kafka properties file F line N: ..." for a line without
// '=', a name librdkafka does not know or a value it refuses, a name given
// twice, or a property predlog sets itself (kPredlogKafkaProperties says
// why). A secret's value is never repeated in a message.
absl::StatusOr<KafkaSettings> ParseKafkaProperties(absl::string_view text, absl::string_view file);
// Reads `path` and parses it; INVALID_ARGUMENT names the file when it cannot
// be read.
absl::StatusOr<KafkaSettings> LoadKafkaProperties(const std::string& path);

// The properties predlog sets on its clients itself, with why: for
// correctness (exactly once, acks=all, murmur2 partitioning, gaps never
// skipped, read_committed, the shards as the truth of what was folded) or
// because predlog tunes them; a properties file may not set them.
struct PredlogKafkaProperty {
  absl::string_view name;
  absl::string_view why;
};
absl::Span<const PredlogKafkaProperty> PredlogKafkaProperties();

// Creates a client of `type` from `settings`.
absl::StatusOr<rd_kafka_t*> NewKafkaClient(rd_kafka_type_t type, const KafkaSettings& settings);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_KAFKA_KAFKA_CONFIG_H_
