// The JSON rendering of export lines (predlog.v1.TrailLine) and the scalar
// renderings the CSV export shares with it.
//
// The export's JSON is the protobuf 3.21 JSON mapping (util::BinaryToJsonString
// with TrailJsonOptions()) of the TrailLine serialized *deterministically*, so
// map entries come out sorted by key. Plain MessageToJsonString serializes maps
// in hash order, which protobuf seeds per map instance: its output for an
// event with two or more map entries changes from call to call, and a verifier
// could never re-render a line byte for byte. With at most one entry per map
// the two are identical.
//
// MessageToJsonString manages ~8k lines/s for a 1 KB prediction event, far
// below the export target, so lines are rendered by a reflection-free emitter
// that produces the same bytes as the reference rendering for every event this
// build knows (tests/services/export/trail_json_test.cc compares them on randomized
// events of every body). Anything it does not handle (a message with fields it
// was not written for, invalid UTF-8) falls back to the reference.
//
// Thread-safe: every function here is a pure function of its arguments.
#ifndef PREDLOG_SERVICES_EXPORT_TRAIL_JSON_H_
#define PREDLOG_SERVICES_EXPORT_TRAIL_JSON_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "predlog/v1/events.pb.h"

namespace predlog::services {

// The print options of every export line, in one place: protobuf's defaults
// (one line, lowerCamelCase names, default values omitted, enums by name).
google::protobuf::util::JsonPrintOptions TrailJsonOptions();

// The fields of one TrailLine, borrowed: they must outlive the call.
struct TrailLineFields {
  absl::string_view shard;
  uint64_t index = 0;
  // The decoded event; nullptr leaves "event" out of the line.
  const predlog::v1::AuditEvent* event = nullptr;
  absl::string_view leaf_sha256;
  absl::string_view prev_chain_sha256;
  absl::string_view chain_sha256;
  absl::string_view event_bytes;
  // When the shard appended the record; nullptr leaves it out.
  const google::protobuf::Timestamp* appended_at = nullptr;
};

// Appends the export line for `fields` and a '\n' to `out`. The event is left
// out of the line when it has no JSON mapping (a Timestamp outside years
// 1..9999 or with nanos outside [0, 1e9): ValidateEvent does not reject those,
// and protobuf refuses to print them); event_bytes still carry it.
void AppendTrailLine(const TrailLineFields& fields, std::string* out);

// The two renderings AppendTrailLine chooses between, for tests and benchmarks.
// Fast: appends the line without '\n' and returns true, or returns false with
// `out` unchanged when it cannot render these fields exactly.
bool AppendTrailLineJsonFast(const TrailLineFields& fields, std::string* out);
// Reference: builds the TrailLine and prints its deterministic serialization
// (see the top of this file). INTERNAL when protobuf cannot map the event.
absl::StatusOr<std::string> TrailLineJsonReference(const TrailLineFields& fields);
// Whether the fast emitter knows every field of every message it renders, as
// the compiled-in descriptors define them. False (a field was added to
// events.proto and not to the emitter) sends every line to the reference.
bool FastTrailJsonCoversSchema();

// Scalars, exactly as protobuf 3.21 prints them in JSON (SimpleDtoa: "%.15g",
// or "%.17g" when that does not round-trip; SimpleFtoa: "%.6g" or "%.9g").
// Finite values only.
void AppendJsonDouble(double value, std::string* out);
void AppendJsonFloat(float value, std::string* out);
// Non-finite values as the JSON mapping spells them: NaN, Infinity, -Infinity.
absl::string_view NonFiniteName(double value);
// Standard base64 with padding.
void AppendBase64(absl::string_view bytes, std::string* out);
// Appends `code_point` (at most 0x10FFFF) encoded as UTF-8.
void AppendUtf8(uint32_t code_point, std::string* out);
// `value` quoted and escaped as protobuf's JSON writer escapes it. False
// (nothing appended) for invalid UTF-8.
bool AppendJsonString(absl::string_view value, std::string* out);
// RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits ("2024-01-02T03:04:05.250Z").
// False (nothing appended) outside the range protobuf maps.
bool AppendTimestamp(const google::protobuf::Timestamp& ts, std::string* out);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_EXPORT_TRAIL_JSON_H_
