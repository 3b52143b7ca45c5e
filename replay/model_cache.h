// A memory-bounded cache of loaded models, keyed by (framework, artifact SHA-256), so that
// rerunning many predictions of the same model loads its artifact once.
#ifndef PREDLOG_REPLAY_MODEL_CACHE_H_
#define PREDLOG_REPLAY_MODEL_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "replay/model_runtime.h"
#include "storage/sha256.h"

namespace predlog::replay {

// Thread-safe. Least recently used models are evicted until the models it holds sum to at most
// max_bytes (by LoadedModel::memory_bytes()). An evicted model stays alive for callers still
// holding its shared_ptr, so the bound is on what the cache keeps, not on process memory.
class ModelCache {
 public:
  struct Stats {
    // Calls answered without a load of their own: cached, or waiting on another
    // caller's load of the same model.
    uint64_t hits = 0;
    // Loads started, i.e. calls of read_artifact.
    uint64_t misses = 0;
    // Models dropped to stay under the bound (an oversize model that is never kept is not
    // an eviction).
    uint64_t evictions = 0;
    // Sum of memory_bytes() of the models held; always <= max_bytes.
    size_t bytes = 0;
    size_t models = 0;
  };

  explicit ModelCache(size_t max_bytes);
  ModelCache(const ModelCache&) = delete;
  ModelCache& operator=(const ModelCache&) = delete;

  // The model of `runtime.framework()` whose artifact has SHA-256 `digest`. On a miss, calls
  // read_artifact() and runtime.Load() without holding the cache's lock; concurrent calls for
  // the same key wait for that one load and share its result, error included. read_artifact
  // must return bytes already verified to hash to `digest` (storage::ArtifactStore::Read does:
  // the store is the one place artifacts are verified). Errors: read_artifact's, Load's.
  // A failed load is not cached: the next call tries again. A model larger than max_bytes is
  // returned but not kept. `runtime` and `read_artifact` are borrowed for the call only.
  absl::StatusOr<std::shared_ptr<const LoadedModel>> GetOrLoad(
      const storage::Digest& digest, const ModelRuntime& runtime,
      absl::FunctionRef<absl::StatusOr<std::string>()> read_artifact);

  Stats stats() const;

 private:
  // framework + '\0' + the 32 digest bytes; no framework name contains '\0'.
  using Key = std::string;

  struct Entry {
    std::shared_ptr<const LoadedModel> model;
    size_t bytes = 0;
    std::list<Key>::iterator lru_position;
  };
  // One load in progress; the loading caller fills `result` and sets `done`.
  struct Load {
    bool done = false;
    absl::StatusOr<std::shared_ptr<const LoadedModel>> result;
  };

  absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadUnlocked(
      const storage::Digest& digest, const ModelRuntime& runtime,
      absl::FunctionRef<absl::StatusOr<std::string>()> read_artifact) const;
  // Makes room for, and keeps, a model that fits the bound.
  void Insert(const Key& key, std::shared_ptr<const LoadedModel> model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_bytes_;

  mutable absl::Mutex mu_;
  // Most recently used first. Invariant: lru_ holds exactly the keys of entries_, and
  // stats_.bytes is the sum of entries_' bytes.
  std::list<Key> lru_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Key, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Keys being loaded; never also in entries_.
  absl::flat_hash_map<Key, std::shared_ptr<Load>> loading_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace predlog::replay

#endif  // PREDLOG_REPLAY_MODEL_CACHE_H_
