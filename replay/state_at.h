// State as of a cut: the customer record or the model registry as it was
// after a shard's records [0, cut). Built from the newest snapshot at or
// before the cut plus a fold of the shard's own records [snapshot, cut) with the
// same fold functions the shard uses for its current state
// (storage/state_fold.h) — never from Kafka's retention.
//
// Thread-safe. Opened snapshots are cached (read-only RocksDB instances), so a
// burst of questions about one period opens each snapshot once.
#ifndef PREDLOG_REPLAY_STATE_AT_H_
#define PREDLOG_REPLAY_STATE_AT_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "predlog/v1/events.pb.h"
#include "storage/shard_store.h"
#include "storage/state_fold.h"

namespace predlog::replay {

// How a state-at answer was built.
struct FoldStats {
  uint64_t cut = 0;             // records [0, cut) are in the answer
  uint64_t snapshot_index = 0;  // started from this snapshot (0: from the empty shard)
  uint64_t records_folded = 0;  // records read on top of it
};

struct EntityAt {
  bool exists = false;  // created and not deleted as of the cut
  predlog::v1::EntityState state;
  FoldStats stats;
};

struct RegistryAt {
  storage::RegistryState registry;
  FoldStats stats;
};

struct StateAtOptions {
  // Use snapshots at all (off: always fold from record 0, the reference the
  // tests and benchmarks compare with).
  bool use_snapshots = true;
  // Read-only snapshot instances kept open. Must be >= 1.
  size_t max_open_snapshots = 8;
};

class StateAt {
 public:
  explicit StateAt(StateAtOptions options = {}) : options_(options) {}

  // OUT_OF_RANGE when `cut` is beyond the shard's log (its next_index).
  absl::StatusOr<EntityAt> Entity(const storage::ShardStore& shard, absl::string_view type,
                                  absl::string_view id, uint64_t cut) const;
  absl::StatusOr<RegistryAt> Registry(const storage::ShardStore& shard, uint64_t cut) const;

 private:
  // The newest snapshot of `shard` holding at most `cut` records, opened (from
  // the cache when possible); null when none qualifies or it cannot be opened.
  absl::StatusOr<std::pair<uint64_t, std::shared_ptr<const storage::ShardStore>>> SnapshotFor(
      const storage::ShardStore& shard, uint64_t cut) const;
  // Drops `snapshot` from the cache (it became unreadable).
  void Forget(const storage::ShardStore* snapshot) const;

  const StateAtOptions options_;
  mutable absl::Mutex mu_;
  // Most recently used first: (snapshot directory, snapshot).
  mutable std::list<std::pair<std::string, std::shared_ptr<const storage::ShardStore>>> open_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace predlog::replay

#endif  // PREDLOG_REPLAY_STATE_AT_H_
