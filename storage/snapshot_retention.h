// Which snapshots to keep: the last N, plus the newest one of each hour and of
// each day within configurable horizons. A pure function so the policy can be
// tested without RocksDB.
#ifndef PREDLOG_STORAGE_SNAPSHOT_RETENTION_H_
#define PREDLOG_STORAGE_SNAPSHOT_RETENTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace predlog::storage {

// A snapshot of a shard: a RocksDB checkpoint holding records [0, index).
struct SnapshotInfo {
  uint64_t index = 0;  // the shard's next_index when taken
  absl::Time created_at;
  std::string path;  // checkpoint directory
};

struct RetentionPolicy {
  // Always keep the newest `keep_last` snapshots (at least 1 is kept anyway).
  int keep_last = 3;
  // Keep the newest snapshot of each UTC hour younger than this.
  absl::Duration hourly_horizon = absl::Hours(24);
  // Keep the newest snapshot of each UTC day younger than this.
  absl::Duration daily_horizon = absl::Hours(24 * 30);
};

// Returns the indexes (SnapshotInfo::index) of the snapshots to delete.
// `snapshots` may be in any order. The newest snapshot is never deleted.
std::vector<uint64_t> SnapshotsToPrune(const std::vector<SnapshotInfo>& snapshots,
                                       const RetentionPolicy& policy, absl::Time now);

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_SNAPSHOT_RETENTION_H_
