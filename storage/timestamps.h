// Conversions between google.protobuf.Timestamp and absl::Time: the one copy
// every library uses (event times, time indexes, request time ranges).
#ifndef PREDLOG_STORAGE_TIMESTAMPS_H_
#define PREDLOG_STORAGE_TIMESTAMPS_H_

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace predlog::storage {

inline absl::Time TimeFromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

// Nanosecond precision. ToUnixSeconds rounds toward negative infinity, so
// nanos stays in [0, 1e9) before the epoch too, as Timestamp requires.
inline void TimeToProto(absl::Time t, google::protobuf::Timestamp* ts) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  ts->set_seconds(seconds);
  ts->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
}

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_TIMESTAMPS_H_
