#include "replay/model_cache.h"

#include <utility>

#include "absl/status/status.h"
#include "storage/status_macros.h"

namespace predlog::replay {

ModelCache::ModelCache(size_t max_bytes) : max_bytes_(max_bytes) {}

absl::StatusOr<std::shared_ptr<const LoadedModel>> ModelCache::GetOrLoad(
    const storage::Digest& digest, const ModelRuntime& runtime,
    absl::FunctionRef<absl::StatusOr<std::string>()> read_artifact) {
  Key key = runtime.framework();
  key.push_back('\0');
  key.append(storage::AsBytes(digest).data(), digest.size());

  std::shared_ptr<Load> load;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = entries_.find(key); it != entries_.end()) {
      ++stats_.hits;
      lru_.splice(lru_.begin(), lru_, it->second.lru_position);
      return it->second.model;
    }
    if (auto it = loading_.find(key); it != loading_.end()) {
      ++stats_.hits;
      // Keep the Load alive past its removal from loading_.
      std::shared_ptr<Load> pending = it->second;
      mu_.Await(absl::Condition(&pending->done));
      return pending->result;
    }
    ++stats_.misses;
    load = std::make_shared<Load>();
    loading_.emplace(key, load);
  }

  absl::StatusOr<std::shared_ptr<const LoadedModel>> result =
      LoadUnlocked(digest, runtime, read_artifact);

  absl::MutexLock lock(&mu_);
  loading_.erase(key);
  if (result.ok()) Insert(key, *result);
  load->result = result;
  load->done = true;  // Waiters' Await re-evaluates on unlock.
  return result;
}

absl::StatusOr<std::shared_ptr<const LoadedModel>> ModelCache::LoadUnlocked(
    const storage::Digest& digest, const ModelRuntime& runtime,
    absl::FunctionRef<absl::StatusOr<std::string>()> read_artifact) const {
  ASSIGN_OR_RETURN(std::string artifact, read_artifact());
  ASSIGN_OR_RETURN(std::unique_ptr<LoadedModel> model, runtime.Load(artifact));
  return std::shared_ptr<const LoadedModel>(std::move(model));
}

void ModelCache::Insert(const Key& key, std::shared_ptr<const LoadedModel> model) {
  const size_t bytes = model->memory_bytes();
  // Evicting everything else for a model that cannot fit anyway would only lose the others.
  if (bytes > max_bytes_) return;
  while (stats_.bytes + bytes > max_bytes_) {
    auto victim = entries_.find(lru_.back());
    stats_.bytes -= victim->second.bytes;
    entries_.erase(victim);
    lru_.pop_back();
    ++stats_.evictions;
  }
  lru_.push_front(key);
  entries_.emplace(key, Entry{std::move(model), bytes, lru_.begin()});
  stats_.bytes += bytes;
}

ModelCache::Stats ModelCache::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats = stats_;
  stats.models = entries_.size();
  return stats;
}

}  // namespace predlog::replay
