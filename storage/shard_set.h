// ShardSet: the shards one process reads (predlog.events by partition, and
// the registry), with the partitioner that says where a key was written, and
// the one lookup of a prediction across them that the gateway's GetPrediction
// and the replay engine share.
//
// Borrows the shards, which must outlive the set. Thread-safe as far as the
// shards' reads and the two functions are (ShardStore reads are).
#ifndef PREDLOG_STORAGE_SHARD_SET_H_
#define PREDLOG_STORAGE_SHARD_SET_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/shard_store.h"

namespace predlog::storage {

struct ShardSet {
  // predlog.events shards, by partition.
  std::vector<const ShardStore*> events;
  // The predlog.registry shard.
  const ShardStore* registry = nullptr;
  // The partition a Kafka key (subject_id, entity_id) goes to: the producer's
  // partitioner, so an entity is looked up where it was written. Required.
  std::function<int32_t(absl::string_view key)> partition_of;
  // OK when these partitions' shards are folded by this process; otherwise an
  // error naming who folds them (a consumer group split them). Unset: all are.
  std::function<absl::Status(const std::vector<int>& partitions, absl::string_view what)>
      check_folded;

  // check_folded, or OK when it is unset. `what` names the read for the message.
  absl::Status CheckFolded(const std::vector<int>& partitions, absl::string_view what) const;

  // The partitions a key's events may be in, ascending: its own
  // (partition_of), and every other whose shard counted misrouted arrivals
  // (ShardCounters::misrouted: a producer with another partitioner put some
  // key's events there). With well-keyed producers that is one shard, so the
  // common case reads one. FAILED_PRECONDITION from check_folded when one of
  // them is folded by another instance (never a partial answer). In a split
  // consumer group a shard's count here is what this instance folded of it.
  absl::StatusOr<std::vector<int>> PartitionsOf(absl::string_view key,
                                                absl::string_view what) const;
};

// A record and where it was found.
struct LocatedRecord {
  int partition = 0;  // of predlog.events
  const ShardStore* shard = nullptr;
  StoredRecord record;
};

// The record of `prediction_id`: in the shards of `subject_id` when it is
// given (PartitionsOf: where the producer's partitioner put it, and the
// shards that hold misrouted events), else in every shard in partition order. INVALID_ARGUMENT for
// an empty id; NOT_FOUND "prediction_id <id> is not recorded"; FAILED_PRECONDITION from
// check_folded when a shard it would have to search is folded by another instance (never a false
// NOT_FOUND); DATA_LOSS when it is not found and a shard it would have to
// search lost acknowledged records (ShardStore::lost()); a shard's read error
// as it is.
absl::StatusOr<LocatedRecord> FindPrediction(const ShardSet& shards,
                                             absl::string_view prediction_id,
                                             absl::string_view subject_id);

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_SHARD_SET_H_
