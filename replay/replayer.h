// Replayer: answers "why did the model say that?" for a recorded prediction.
// Rerun re-runs it against the exact artifact that made it (read from the
// content-addressed store, digest verified) and reports whether the output is
// reproduced bit for bit, with the skews that could explain a difference;
// RerunTrace does that for a model chain; GetEntityAt / GetRegistryAt show
// state as of a moment (replay/state_at.h).
//
// Thread-safe. Borrows the shards and the artifact store, which must outlive it.
#ifndef PREDLOG_REPLAY_REPLAYER_H_
#define PREDLOG_REPLAY_REPLAYER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "predlog/v1/replay.pb.h"
#include "replay/model_cache.h"
#include "replay/model_runtime.h"
#include "replay/state_at.h"
#include "storage/artifact_store.h"
#include "storage/shard_set.h"
#include "storage/shard_store.h"

namespace predlog::replay {

struct ReplayerOptions {
  // Memory bound of loaded models (warm cache), bytes.
  size_t model_cache_bytes = size_t{1} << 30;
  StateAtOptions state_at;
};

// The registry's models as the API shows them (ordered by name, then
// version), each with its record's position and the deploys that send it
// traffic.
std::vector<predlog::v1::ModelRecord> ToModelRecords(const storage::RegistryState& registry,
                                                     absl::string_view shard_name);
// One of them: `entry` of `registry`, folded from the shard named `shard_name`.
predlog::v1::ModelRecord ToModelRecord(
    const storage::RegistryState& registry,
    const storage::RegistryEntry<predlog::v1::ModelRegistered>& entry,
    absl::string_view shard_name);

class Replayer {
 public:
  // `shards` names the shards replay reads (their partition_of is required).
  Replayer(storage::ShardSet shards, const storage::ArtifactStore* artifacts,
           RuntimeRegistry runtimes, ReplayerOptions options = {});

  // Errors as documented on predlog.v1.Replay.
  absl::StatusOr<predlog::v1::RerunReport> Rerun(const predlog::v1::RerunRequest& request) const;
  absl::StatusOr<predlog::v1::RerunTraceReport> RerunTrace(
      const predlog::v1::RerunTraceRequest& request) const;
  absl::StatusOr<predlog::v1::EntityAtResponse> GetEntityAt(
      const predlog::v1::GetEntityAtRequest& request) const;
  absl::StatusOr<predlog::v1::RegistryAtResponse> GetRegistryAt(
      const predlog::v1::GetRegistryAtRequest& request) const;
  // Provenance both ways (replay/lineage.h; implemented in provenance.cc).
  absl::StatusOr<predlog::v1::Lineage> GetLineage(
      const predlog::v1::GetLineageRequest& request) const;
  absl::StatusOr<predlog::v1::Impact> GetImpact(const predlog::v1::GetImpactRequest& request) const;

  const ModelCache& model_cache() const { return cache_; }

 private:
  struct Located {
    const storage::ShardStore* shard = nullptr;
    storage::StoredRecord record;
    predlog::v1::AuditEvent event;
  };
  absl::StatusOr<Located> Find(absl::string_view prediction_id, absl::string_view subject_id) const;
  absl::StatusOr<predlog::v1::RerunReport> RerunLocated(const Located& located, bool explain,
                                                        const predlog::v1::ModelRef& against) const;
  // The registration of name@version and its loaded model. FAILED_PRECONDITION
  // (`missing_code` for an unregistered model) names the model and digest.
  struct Model {
    predlog::v1::ModelRegistered registration;
    const ModelRuntime* runtime = nullptr;
    std::shared_ptr<const LoadedModel> loaded;
    storage::Digest digest{};
    // When the artifact's bytes were last hashed and found to match: for
    // this call, or earlier when its file is unchanged since (CheckArtifact).
    absl::Time hashed_at;
  };
  absl::StatusOr<Model> LoadModel(const predlog::v1::ModelRef& ref, absl::StatusCode missing_code,
                                  absl::string_view role) const;
  // What says an artifact file is unchanged without reading it: its inode,
  // size and change time (ArtifactStore::Stat).
  struct FileFingerprint {
    uint64_t inode = 0;
    int64_t size = 0;
    int64_t ctime_ns = 0;
    bool operator==(const FileFingerprint& o) const {
      return inode == o.inode && size == o.size && ctime_ns == o.ctime_ns;
    }
  };
  absl::StatusOr<FileFingerprint> FingerprintOf(const storage::Digest& digest) const;
  // Every rerun checks its artifact: a stat (~µs) when the file is unchanged
  // since its bytes were last hashed, else a full re-hash
  // (ArtifactStore::Read). Returns when the bytes were last hashed;
  // NOT_FOUND / DATA_LOSS from the store when the file is gone or changed.
  absl::StatusOr<absl::Time> CheckArtifact(const storage::Digest& digest) const;
  // A file changed less than this before its hash is hashed again next time.
  static constexpr absl::Duration kRacyCtimeWindow = absl::Seconds(2);
  // The cut of `shard` for `as_of` (unset: everything folded so far).
  absl::StatusOr<uint64_t> CutOf(const storage::ShardStore& shard,
                                 const predlog::v1::AsOf& as_of) const;
  // The cut of `shard` right after the record at `after` (AsOf.after).
  absl::StatusOr<uint64_t> CutAfter(const storage::ShardStore& shard,
                                    const predlog::v1::Position& after) const;

  const storage::ShardSet shards_;
  const storage::ArtifactStore* const artifacts_;
  const RuntimeRegistry runtimes_;
  mutable ModelCache cache_;
  mutable absl::Mutex hashed_mu_;
  // Per artifact: its file's fingerprint when its bytes were last hashed, and when.
  mutable absl::flat_hash_map<std::string, std::pair<FileFingerprint, absl::Time>> hashed_
      ABSL_GUARDED_BY(hashed_mu_);
  const StateAt state_at_;
};

}  // namespace predlog::replay

#endif  // PREDLOG_REPLAY_REPLAYER_H_
