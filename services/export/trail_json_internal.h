// INTERNAL to services/export/: included only by trail_json.cc and
// trail_json_scalars.cc, which implement services/export/trail_json.h.
//   trail_json_scalars.cc  scalars as protobuf 3.21 prints them: numbers,
//                          base64, strings (escaping, UTF-8), timestamps
//   trail_json.cc          the reflection-free TrailLine emitter (one walker per
//                          message), its schema check and the reference fallback
#ifndef PREDLOG_SERVICES_EXPORT_TRAIL_JSON_INTERNAL_H_
#define PREDLOG_SERVICES_EXPORT_TRAIL_JSON_INTERNAL_H_

#include <cstdint>

namespace predlog::services::export_internal {

// Protobuf's Timestamp range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
inline constexpr int64_t kMinTimestampSeconds = -62135596800;
inline constexpr int64_t kMaxTimestampSeconds = 253402300799;

}  // namespace predlog::services::export_internal

#endif  // PREDLOG_SERVICES_EXPORT_TRAIL_JSON_INTERNAL_H_
