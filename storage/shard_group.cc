#include "storage/shard_group.h"

#include <utility>

#include "storage/logging.h"
#include "storage/shard_store.h"

namespace predlog::storage {

ShardGroup::ShardGroup(int partitions, std::function<int32_t(absl::string_view key)> partition_of)
    : partitions_(partitions), partition_of_(std::move(partition_of)) {
  PREDLOG_CHECK(partitions_ >= 1 && partition_of_)
      << "ShardGroup needs partitions and a partitioner";
  absl::MutexLock lock(&shards_mu_);
  shards_.assign(static_cast<size_t>(partitions_), nullptr);
}

void ShardGroup::Attach(int partition, const ShardStore* shard) {
  absl::MutexLock lock(&shards_mu_);
  PREDLOG_CHECK(partition >= 0 && partition < partitions_) << "partition " << partition;
  shards_[static_cast<size_t>(partition)] = shard;
}

void ShardGroup::Detach(int partition) {
  absl::MutexLock lock(&shards_mu_);
  shards_[static_cast<size_t>(partition)] = nullptr;
}

bool ShardGroup::TryReserve(absl::string_view prediction_id, int partition) {
  absl::MutexLock lock(&reserved_mu_);
  auto [it, inserted] = reserved_.try_emplace(prediction_id, partition);
  return inserted || it->second == partition;
}

void ShardGroup::Release(const std::vector<std::string>& prediction_ids) {
  if (prediction_ids.empty()) return;
  absl::MutexLock lock(&reserved_mu_);
  for (const std::string& id : prediction_ids) reserved_.erase(id);
}

void ShardGroup::AwaitReleased(absl::string_view prediction_id) {
  absl::MutexLock lock(&reserved_mu_);
  const auto released = [this, prediction_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reserved_mu_) {
    return !reserved_.contains(prediction_id);
  };
  reserved_mu_.Await(absl::Condition(&released));
}

absl::StatusOr<std::optional<ShardGroup::Found>> ShardGroup::FindElsewhere(
    absl::string_view prediction_id, int partition) const {
  absl::ReaderMutexLock lock(&shards_mu_);
  for (size_t p = 0; p < shards_.size(); ++p) {
    // A shard that lost acknowledged records serves no reads (and refuses
    // writes) until the loss is accepted; it is not searched meanwhile.
    if (static_cast<int>(p) == partition || shards_[p] == nullptr ||
        shards_[p]->lost().has_value()) {
      continue;
    }
    absl::StatusOr<StoredRecord> record = shards_[p]->GetByPredictionId(prediction_id);
    if (absl::IsNotFound(record.status())) continue;
    if (!record.ok()) return record.status();
    return std::optional<Found>(
        Found{shards_[p]->name(), record->index, std::move(record->payload), record->leaf});
  }
  return std::optional<Found>();
}

}  // namespace predlog::storage
