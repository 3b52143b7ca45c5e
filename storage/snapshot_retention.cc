#include "storage/snapshot_retention.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"

namespace predlog::storage {

std::vector<uint64_t> SnapshotsToPrune(const std::vector<SnapshotInfo>& snapshots,
                                       const RetentionPolicy& policy, absl::Time now) {
  std::vector<const SnapshotInfo*> newest_first;
  newest_first.reserve(snapshots.size());
  for (const auto& s : snapshots) newest_first.push_back(&s);
  std::sort(newest_first.begin(), newest_first.end(),
            [](const SnapshotInfo* a, const SnapshotInfo* b) { return a->index > b->index; });

  absl::flat_hash_set<uint64_t> keep;
  const int keep_last = std::max(policy.keep_last, 1);
  absl::flat_hash_set<int64_t> hours_seen;
  absl::flat_hash_set<int64_t> days_seen;
  for (size_t i = 0; i < newest_first.size(); ++i) {
    const SnapshotInfo& s = *newest_first[i];
    if (static_cast<int>(i) < keep_last) keep.insert(s.index);
    const absl::Duration age = now - s.created_at;
    const int64_t unix_seconds = absl::ToUnixSeconds(s.created_at);
    // Walking newest first, the first snapshot met in a bucket is its newest.
    if (age < policy.hourly_horizon && hours_seen.insert(unix_seconds / 3600).second) {
      keep.insert(s.index);
    }
    if (age < policy.daily_horizon && days_seen.insert(unix_seconds / 86400).second) {
      keep.insert(s.index);
    }
  }
  std::vector<uint64_t> prune;
  for (const SnapshotInfo* s : newest_first) {
    if (!keep.contains(s->index)) prune.push_back(s->index);
  }
  return prune;
}

}  // namespace predlog::storage
