// ReadCheckpoints and CheckConsistency (trail_export.h): that a newer signed
// checkpoint of a shard extends an older one, as transparency-log auditors
// check (RFC 9162 §2.1.4; C2SP tlog-checkpoint notes).
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "services/export/trail_export.h"
#include "services/export/trail_internal.h"
#include "storage/merkle.h"
#include "storage/sha256.h"
#include "storage/signed_note.h"
#include "storage/status_macros.h"

namespace predlog::services {
namespace {

using ::predlog::services::export_internal::ReadWholeFile;

// A checkpoint opened with the key and checked to be of `shard`'s log.
absl::StatusOr<storage::Checkpoint> OpenCheckpoint(const storage::NoteVerifier& key,
                                                   const predlog::v1::ShardCheckpoint& c,
                                                   absl::string_view which) {
  absl::StatusOr<std::string> text = key.Open(c.note());
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", which, " checkpoint: ", text.status().message()));
  }
  absl::StatusOr<storage::Checkpoint> checkpoint = storage::ParseCheckpoint(*text);
  if (!checkpoint.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", which, " checkpoint: ", checkpoint.status().message()));
  }
  const std::string origin = absl::StrCat(key.name(), "/", c.shard());
  if (checkpoint->origin != origin) {
    return absl::InvalidArgumentError(absl::StrCat("the ", which, " checkpoint is of log \"",
                                                   checkpoint->origin, "\", not \"", origin, "\""));
  }
  return checkpoint;
}

// Why the two checkpoints of one shard are not consistent; empty when they
// are (then *sizes says "A -> B records").
absl::StatusOr<std::string> Compare(const storage::NoteVerifier& key,
                                    const predlog::v1::ShardCheckpoint& older,
                                    const predlog::v1::ShardCheckpoint& newer,
                                    const ConsistencyProofFetcher& fetch, std::string* sizes) {
  absl::StatusOr<storage::Checkpoint> old_cp = OpenCheckpoint(key, older, "older");
  if (!old_cp.ok()) return std::string(old_cp.status().message());
  absl::StatusOr<storage::Checkpoint> new_cp = OpenCheckpoint(key, newer, "newer");
  if (!new_cp.ok()) return std::string(new_cp.status().message());
  *sizes = absl::StrCat(old_cp->size, " -> ", new_cp->size, " records");
  if (new_cp->size < old_cp->size) {
    return absl::StrCat("the newer checkpoint holds ", new_cp->size,
                        " records, fewer than the older's ", old_cp->size,
                        ": a log never shrinks (records were lost or the checkpoints swapped)");
  }
  if (new_cp->size == old_cp->size || old_cp->size == 0) {
    if (old_cp->size == 0 || old_cp->root == new_cp->root) return std::string();
    return absl::StrCat("both checkpoints hold ", new_cp->size,
                        " records but their roots differ: the log was rewritten");
  }
  absl::StatusOr<std::vector<std::string>> hex = fetch(newer.shard(), old_cp->size, new_cp->size);
  if (!hex.ok()) {
    const absl::StatusCode code = hex.status().code();
    if (code == absl::StatusCode::kNotFound || code == absl::StatusCode::kOutOfRange ||
        code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kDataLoss) {
      return absl::StrCat("the server cannot prove it: ", hex.status().ToString());
    }
    return hex.status();
  }
  std::vector<storage::Digest> proof;
  for (const std::string& h : *hex) {
    std::optional<storage::Digest> d = storage::DigestFromHex(h);
    if (!d) return std::string("the server's consistency proof is not hex");
    proof.push_back(*d);
  }
  absl::Status verified = storage::VerifyMerkleConsistency(old_cp->size, new_cp->size, old_cp->root,
                                                           new_cp->root, proof);
  if (!verified.ok()) {
    return absl::StrCat("the newer checkpoint does not extend the older (", verified.message(),
                        "): the log lost or rewrote records");
  }
  return std::string();
}

}  // namespace

bool CheckpointSet::Covers(absl::string_view shard) const {
  if (topics.empty()) return true;
  const size_t dash = shard.rfind('-');
  const absl::string_view topic = dash == absl::string_view::npos ? shard : shard.substr(0, dash);
  return std::find(topics.begin(), topics.end(), topic) != topics.end();
}

absl::StatusOr<CheckpointSet> ReadCheckpoints(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string json, ReadWholeFile(path));
  CheckpointSet set;
  std::vector<predlog::v1::ShardCheckpoint>& out = set.checkpoints;
  google::protobuf::util::JsonParseOptions strict;  // unknown fields tell the two apart
  predlog::v1::ExportManifest manifest;
  predlog::v1::SignCheckpointsResponse signed_now;
  if (google::protobuf::util::JsonStringToMessage(json, &manifest, strict).ok()) {
    // Only an export of everything leaves a shard out by design (the access
    // trail). The filter is the manifest's own, unsigned claim, so it may
    // excuse no more than that: a manifest claiming any other filter is held
    // to every shard of the older set.
    if (manifest.filter().has_all()) set.topics = WholeLogTopics(manifest.filter());
    for (const auto& shard : manifest.shards()) {
      if (shard.checkpoint().empty()) continue;
      predlog::v1::ShardCheckpoint c;
      c.set_shard(shard.shard());
      c.set_note(shard.checkpoint());
      out.push_back(std::move(c));
    }
  } else if (google::protobuf::util::JsonStringToMessage(json, &signed_now, strict).ok()) {
    out.assign(signed_now.checkpoints().begin(), signed_now.checkpoints().end());
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        " is neither an export manifest nor a file of checkpoints (predlog checkpoint --out)"));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " holds no signed checkpoint"));
  }
  return set;
}

absl::StatusOr<ConsistencyCheck> CheckConsistency(const CheckpointSet& older,
                                                  const CheckpointSet& newer,
                                                  absl::string_view verifier_key,
                                                  const ConsistencyProofFetcher& fetch) {
  absl::StatusOr<std::unique_ptr<storage::NoteVerifier>> key =
      storage::NoteVerifier::Create(verifier_key);
  if (!key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("verifier key: ", key.status().message()));
  }
  std::map<std::string, const predlog::v1::ShardCheckpoint*> by_shard;
  for (const auto& c : older.checkpoints) by_shard[c.shard()] = &c;
  ConsistencyCheck check;
  for (const auto& c : newer.checkpoints) {
    auto it = by_shard.find(c.shard());
    if (it == by_shard.end()) {
      check.unmatched.push_back(absl::StrCat(c.shard(), ": only in the newer set"));
      continue;
    }
    std::string sizes;
    ASSIGN_OR_RETURN(std::string why, Compare(**key, *it->second, c, fetch, &sizes));
    by_shard.erase(it);
    if (!why.empty()) {
      check.failures.push_back(absl::StrCat(c.shard(), ": ", why));
    } else {
      check.consistent.push_back(absl::StrCat(c.shard(), ": ", sizes, ", consistent"));
    }
  }
  // A shard the older set signed and the newer one lacks may have been
  // left out to hide it: a failure, not a skip, unless the newer set was
  // never meant to hold it.
  for (const auto& [shard, c] : by_shard) {
    if (!newer.Covers(shard)) {
      check.unchecked.push_back(shard);
      continue;
    }
    check.failures.push_back(absl::StrCat(
        shard, ": the older set has a checkpoint of it, the newer set none (left out?)"));
  }
  return check;
}

}  // namespace predlog::services
