// ShardGroup: the predlog.events shards of one process as their folds see
// each other. It gives each shard's fold two things no single shard knows:
//
// - Where a key belongs: the producer's partitioner (murmur2, Java's default),
//   so a fold counts the events that arrived on another partition than their
//   key's ("misrouted": a producer with another partitioner or no key).
// - One record per prediction_id across the shards: a fold that meets an id
//   its own shard has not recorded looks in every other shard of the group,
//   and a later arrival is a duplicate (same content) or a conflict (other
//   content) of the record found there, as in its own shard.
//
// Two arrivals of one id at once on different shards: each fold reserves the
// id (in memory) before it looks for it elsewhere, and holds it until its
// group commit is written or failed. The first to reserve records the id;
// the other finds it reserved, gives up its whole fold (nothing of it was
// written), waits until the id is released, and folds again: by then the
// first record is in RocksDB, so the second copy becomes its duplicate or
// conflict (or is applied, if the first write failed). A fold never waits
// while it holds a reservation, so two shards cannot wait for each other.
//
// Scope: the shards open in this process. Shards that a consumer group
// assigned to another instance are open here too (read-only in effect) and
// are searched as far as they were folded here; a copy folded by another
// instance of a split group is not seen. DESIGN.md's "one record per
// prediction_id across all shards" holds for one process; across instances it
// needs a shared index (not built).
//
// Thread-safe. Shards attach when they open and detach when they close; the
// group must outlive them.
#ifndef PREDLOG_STORAGE_SHARD_GROUP_H_
#define PREDLOG_STORAGE_SHARD_GROUP_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "storage/sha256.h"

namespace predlog::storage {

class ShardStore;
struct StoredRecord;

class ShardGroup {
 public:
  // `partitions` shards, numbered 0..partitions-1; `partition_of` is the
  // producer's partitioner (key -> partition in [0, partitions)).
  ShardGroup(int partitions, std::function<int32_t(absl::string_view key)> partition_of);
  ShardGroup(const ShardGroup&) = delete;
  ShardGroup& operator=(const ShardGroup&) = delete;

  int partitions() const { return partitions_; }
  // The partition `key` belongs to.
  int32_t PartitionOf(absl::string_view key) const { return partition_of_(key); }

  // Called by ShardStore on open / close (ShardOptions.group).
  void Attach(int partition, const ShardStore* shard);
  void Detach(int partition);

  // Reserves `prediction_id` for the fold of `partition`. False when another
  // partition's fold holds it: the caller must release everything it holds,
  // AwaitReleased(id), and fold again. Reserving an id it holds again is true.
  bool TryReserve(absl::string_view prediction_id, int partition);
  // Releases ids this partition reserved (after its write, whatever its outcome).
  void Release(const std::vector<std::string>& prediction_ids);
  // Blocks until no fold holds `prediction_id`.
  void AwaitReleased(absl::string_view prediction_id);

  // The record of `prediction_id` in an attached shard other than
  // `partition`'s, with that shard's name: nullopt when none has it. Reads
  // what the shards have written (call after TryReserve). Shards that lost
  // acknowledged records (ShardStore::lost()) are skipped. Another shard's
  // read error as it is: the fold fails its batch rather than risk a second
  // record (a corrupt record stalls folds that meet its id).
  struct Found {
    std::string shard;
    uint64_t index = 0;
    std::string payload;  // the stored event bytes
    Digest leaf{};
  };
  absl::StatusOr<std::optional<Found>> FindElsewhere(absl::string_view prediction_id,
                                                     int partition) const;

 private:
  const int partitions_;
  const std::function<int32_t(absl::string_view)> partition_of_;
  // Readers search the shards under a reader lock; a shard detaches (closes)
  // under the writer lock, so no search reads a closing shard.
  mutable absl::Mutex shards_mu_;
  std::vector<const ShardStore*> shards_ ABSL_GUARDED_BY(shards_mu_);
  absl::Mutex reserved_mu_;
  absl::flat_hash_map<std::string, int> reserved_ ABSL_GUARDED_BY(reserved_mu_);
};

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_SHARD_GROUP_H_
