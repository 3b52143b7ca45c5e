// The offline verifier: VerifyExport reads a manifest and the file it names,
// and the Verifier checks the manifest's own consistency, then every record
// (re-rendered from its event_bytes and compared byte for byte, digests, chain,
// log order, the manifest's ranges and anchors) and the file's size and
// SHA-256. The formats are the grammar at the top of trail_export.cc.
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/util/json_util.h"
#include "services/export/trail_export.h"
#include "services/export/trail_internal.h"
#include "services/export/trail_json.h"
#include "storage/merkle.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"
#include "storage/signed_note.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services {

namespace {

using ::predlog::services::export_internal::AppendCsvHeader;
using ::predlog::services::export_internal::AppendCsvRow;
using ::predlog::services::export_internal::ClaimedRecord;
using ::predlog::services::export_internal::CsvColumns;
using ::predlog::services::export_internal::DirName;
using ::predlog::services::export_internal::HexDigest;
using ::predlog::services::export_internal::kCsvFixedColumns;
using ::predlog::services::export_internal::kCsvFixedCount;
using ::predlog::services::export_internal::kInputPrefix;
using ::predlog::services::export_internal::ReadCsvRow;
using ::predlog::services::export_internal::ReadJsonLine;
using ::predlog::services::export_internal::ReadWholeFile;
using ::predlog::services::export_internal::RecordArena;
using ::predlog::services::export_internal::RecordName;
using ::predlog::services::export_internal::RecordReader;
using ::predlog::services::export_internal::RowKey;
using ::predlog::services::export_internal::SplitCsv;
using ::predlog::storage::Digest;
using ::predlog::v1::AuditEvent;
using ::predlog::v1::ExportManifest;

size_t FirstDifference(absl::string_view a, absl::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return i;
  }
  return n;
}

// Why `event` does not belong in an export with `filter`, or nullopt when it
// does. A subject or model export holds that subject's or model version's
// predictions served in [from, to). An export of everything holds whole
// index ranges of every shard (cut by the shards' append time), which the
// manifest's ranges and anchors check, and each record's appended_at against
// [from, to) (Verifier::Record).
// Times compare at microseconds, as the shards' indexes key them
// (storage/key_codec.h AppendTime) and so as the export selected records.
std::optional<std::string> FilterMismatch(const predlog::v1::ExportTrailRequest& filter,
                                          const AuditEvent& event) {
  using Filter = predlog::v1::ExportTrailRequest;
  if (filter.filter_case() != Filter::kSubjectId && filter.filter_case() != Filter::kModel &&
      filter.filter_case() != Filter::kPredictions) {
    return std::nullopt;
  }
  const auto micros = [](const google::protobuf::Timestamp& t) {
    return absl::ToUnixMicros(storage::TimeFromProto(t));
  };
  if (!event.has_prediction_logged()) {
    return "is not a prediction, but the manifest's filter selects predictions only";
  }
  const predlog::v1::PredictionLogged& p = event.prediction_logged();
  if (filter.has_subject_id() && p.subject_id() != filter.subject_id()) {
    return absl::StrCat("is a prediction of subject ", p.subject_id(),
                        ", not of the manifest's filter subject ", filter.subject_id());
  }
  if (filter.has_model() && (p.model().name() != filter.model().name() ||
                             p.model().version() != filter.model().version())) {
    return absl::StrCat("is a prediction of model ", p.model().name(), "@", p.model().version(),
                        ", not of the manifest's filter model ", filter.model().name(), "@",
                        filter.model().version());
  }
  if (filter.has_predictions() && !InPredictionSet(filter.predictions(), p)) {
    return absl::StrCat("is a prediction of model ", p.model().name(), "@", p.model().version(),
                        " that read none of the manifest's filter datasets, and that model is "
                        "not one of its filter models");
  }
  const absl::Time served = storage::TimeFromProto(p.served_at());
  if (filter.has_from() && micros(p.served_at()) < micros(filter.from())) {
    return absl::StrCat(
        "was served at ", absl::FormatTime(served, absl::UTCTimeZone()),
        ", before the manifest's filter from ",
        absl::FormatTime(storage::TimeFromProto(filter.from()), absl::UTCTimeZone()));
  }
  if (filter.has_to() && micros(p.served_at()) >= micros(filter.to())) {
    return absl::StrCat("was served at ", absl::FormatTime(served, absl::UTCTimeZone()),
                        ", not before the manifest's filter to ",
                        absl::FormatTime(storage::TimeFromProto(filter.to()), absl::UTCTimeZone()));
  }
  return std::nullopt;
}

}  // namespace

bool InPredictionSet(const predlog::v1::PredictionSet& set,
                     const predlog::v1::PredictionLogged& prediction) {
  for (const predlog::v1::ModelRef& model : set.models()) {
    if (model.name() == prediction.model().name() &&
        model.version() == prediction.model().version()) {
      return true;
    }
  }
  for (const predlog::v1::DatasetRef& data : set.data_sources()) {
    for (const predlog::v1::DatasetRef& source : prediction.data_sources()) {
      if (data.name() == source.name() && data.version() == source.version()) return true;
    }
  }
  return false;
}

namespace {

// The manifest flattened to runs in file order.
struct Run {
  size_t shard;  // index into the manifest's shards
  uint64_t first;
  uint64_t last;
  const ExportManifest::Range* range;
  // No prev_chain_sha256 anchor: the record before `first` is unreadable.
  bool unanchored = false;
  // Unanchored: the first record's leaf and chain value, as the file has them.
  Digest first_leaf{};
  Digest first_chain{};
  // With a verifier key: the range proof, checked as the run's records come.
  std::optional<storage::MerkleRangeVerifier> proof;
};

// A shard's ranges and unreadable ranges, merged in log order.
struct Span {
  uint64_t first;
  uint64_t last;
  bool unreadable;
};

std::string RangeText(uint64_t first, uint64_t last) { return absl::StrCat(first, "..", last); }

class Verifier {
 public:
  // `key` (may be null: no checkpoints or proofs checked) is borrowed;
  // checkpoints signed before `oldest` fail (InfinitePast: any age).
  Verifier(const ExportManifest& manifest, ExportFormat format, const storage::NoteVerifier* key,
           absl::Time oldest = absl::InfinitePast(),
           absl::Duration max_age = absl::InfiniteDuration())
      : manifest_(manifest),
        whole_log_topics_(WholeLogTopics(manifest.filter())),
        whole_log_(!whole_log_topics_.empty()),
        format_(format),
        key_(key),
        oldest_(oldest),
        max_age_(max_age) {}

  // With a key: each shard's checkpoint, and each range's proof against it.
  bool CheckCheckpoints() {
    if (key_ == nullptr) return true;
    size_t run = 0;
    for (const auto& shard : manifest_.shards()) {
      const std::string of = absl::StrCat("shard ", shard.shard());
      if (shard.checkpoint().empty()) {
        return Fail(absl::StrCat(
            "manifest: ", of,
            " carries no checkpoint, so nothing proves its records are the "
            "log's (exported by a predlogd without a signing key, or by a build before manifest "
            "format 3)"));
      }
      absl::StatusOr<std::string> text = key_->Open(shard.checkpoint());
      if (!text.ok()) {
        return Fail(
            absl::StrCat("manifest: the checkpoint of ", of, ": ", text.status().message()));
      }
      absl::StatusOr<storage::Checkpoint> checkpoint = storage::ParseCheckpoint(*text);
      if (!checkpoint.ok()) {
        return Fail(
            absl::StrCat("manifest: the checkpoint of ", of, ": ", checkpoint.status().message()));
      }
      const std::string origin = absl::StrCat(key_->name(), "/", shard.shard());
      if (checkpoint->origin != origin) {
        return Fail(absl::StrCat("manifest: the checkpoint of ", of, " is of log \"",
                                 checkpoint->origin, "\", not \"", origin, "\""));
      }
      absl::StatusOr<storage::CheckpointExtensions> lines =
          storage::ParseCheckpointExtensions(*checkpoint);
      if (!lines.ok()) {
        return Fail(
            absl::StrCat("manifest: the checkpoint of ", of, ": ", lines.status().message()));
      }
      if (max_age_ != absl::InfiniteDuration()) {
        if (!lines->signed_at.has_value()) {
          return Fail(absl::StrCat(
              "manifest: the checkpoint of ", of,
              " carries no signing time (no predlog-signed-at line: signed by a predlogd from "
              "before checkpoints had one), so it cannot be shown to be at most ",
              absl::FormatDuration(max_age_), " old"));
        }
        if (*lines->signed_at < oldest_) {
          return Fail(absl::StrCat(
              "manifest: the checkpoint of ", of, " was signed at ",
              absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *lines->signed_at, absl::UTCTimeZone()), ", ",
              absl::FormatDuration(
                  absl::Trunc(oldest_ + max_age_ - *lines->signed_at, absl::Seconds(1))),
              " before the verification: older than the ", absl::FormatDuration(max_age_),
              " allowed"));
        }
      }
      checkpoints_.push_back(VerifiedCheckpoint{shard.shard(), checkpoint->origin, checkpoint->size,
                                                storage::ToHex(checkpoint->root),
                                                lines->signed_at});
      roots_.push_back(checkpoint->root);
      shard_sets_.push_back(lines->shards);
      if (whole_log_ && !CheckRun(shard, *checkpoint)) return false;
      for (const auto& range : shard.ranges()) {
        Run& r = runs_[run++];
        const std::string which =
            absl::StrCat("range ", RangeText(r.first, r.last), " of ", shard.shard());
        std::vector<Digest> proof;
        for (const std::string& hex : range.proof_sha256()) {
          std::optional<Digest> hash = storage::DigestFromHex(hex);
          if (!hash) return Fail(absl::StrCat("manifest: the proof of ", which, " is not hex"));
          proof.push_back(*hash);
        }
        if (r.last >= checkpoint->size) {
          return Fail(absl::StrCat("manifest: ", which, " is beyond the shard's checkpoint (",
                                   checkpoint->size, " records)"));
        }
        absl::StatusOr<storage::MerkleRangeVerifier> verifier =
            storage::MerkleRangeVerifier::Start(r.first, r.last + 1, checkpoint->size, proof);
        if (!verifier.ok() && range.proof_sha256().empty() && !shard.unreadable().empty()) {
          // The server could not read a tree node this range's proof needs:
          // a leaf next to an unreadable record (leaves are read from the
          // records). Unproven, not forged: the export is incomplete anyway.
          unproven_.push_back(which);
          continue;
        }
        if (!verifier.ok()) {
          return Fail(absl::StrCat("manifest: ", which,
                                   range.proof_sha256().empty() ? " has no proof: " : ": ",
                                   verifier.status().message()));
        }
        r.proof = *std::move(verifier);
      }
    }
    if (!CheckShardSet()) return false;
    CheckSignedTogether();
    return true;
  }

  // An export signs every shard's checkpoint as it starts, within a moment:
  // checkpoints of one whole-log export signed further apart than
  // kExportSigningSpread may mix in a shard's entry from another, older
  // export (a shard rolled back whole), which the shard set cannot tell.
  void CheckSignedTogether() {
    if (!whole_log_) return;
    const VerifiedCheckpoint* first = nullptr;
    const VerifiedCheckpoint* last = nullptr;
    for (const VerifiedCheckpoint& c : checkpoints_) {
      if (!c.signed_at.has_value()) continue;
      if (first == nullptr || *c.signed_at < *first->signed_at) first = &c;
      if (last == nullptr || *c.signed_at > *last->signed_at) last = &c;
    }
    if (first == nullptr || *last->signed_at - *first->signed_at <= kExportSigningSpread) return;
    const auto shown = [](absl::Time t) {
      return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
    };
    NotProven(absl::StrCat(
        "the checkpoints were signed ",
        absl::FormatDuration(absl::Trunc(*last->signed_at - *first->signed_at, absl::Seconds(1))),
        " apart (", first->shard, "'s at ", shown(*first->signed_at), ", ", last->shard, "'s at ",
        shown(*last->signed_at),
        "), but one export signs all of them as it starts: a shard's "
        "entry may come from another export"));
  }

  // An export of everything: the shard's run [s, e) covers its checkpoint
  // from 0 to its size, or (with from/to) its edges prove the records just
  // outside the run lie outside [from, to).
  bool CheckRun(const ExportManifest::ShardRanges& shard, const storage::Checkpoint& checkpoint) {
    const predlog::v1::ExportTrailRequest& filter = manifest_.filter();
    const std::string of = absl::StrCat("shard ", shard.shard());
    const bool edges = manifest_.format_version() >= 4 && (filter.has_from() || filter.has_to());
    uint64_t first = UINT64_MAX;
    uint64_t end = 0;  // past the last index the manifest accounts for
    for (const auto& u : shard.unreadable()) {
      first = std::min(first, u.first_index());
      end = std::max(end, u.last_index() + 1);
    }
    for (const auto& range : shard.ranges()) {
      first = std::min(first, range.first_index());
      end = std::max(end, range.last_index() + 1);
    }
    if (first == UINT64_MAX) {
      // No record of the shard in the export: where its empty run is, its
      // edges say (none: at 0).
      first = 0;
      if (edges && shard.has_edge_before()) {
        first = shard.edge_before().index() + 1;
      } else if (edges && shard.has_edge_after()) {
        first = shard.edge_after().index();
      } else if (!edges && filter.has_from()) {
        // Before format 4 nothing says where an empty run is.
        first = end = checkpoint.size;
      }
      end = std::max(end, first);
      if (edges && shard.has_edge_before() && shard.has_edge_after() &&
          shard.edge_after().index() != first) {
        return Fail(absl::StrCat("manifest: ", of, " holds no record, but its edge records #",
                                 shard.edge_before().index(), " and #", shard.edge_after().index(),
                                 " are not adjacent: the records between them were left out"));
      }
    }
    // Without `to` it holds every record its checkpoint does; without `from`
    // from index 0: one that stops short or starts late was truncated.
    if (!filter.has_to() && end < checkpoint.size) {
      return Fail(absl::StrCat("manifest: ", of, " ends at index ", end == 0 ? 0 : end - 1,
                               " but its checkpoint holds ", checkpoint.size,
                               " records: an export of everything (without `to`) holds every "
                               "record below its checkpoint"));
    }
    if (!filter.has_from() && first != 0) {
      return Fail(absl::StrCat("manifest: ", of, " starts at index ", first,
                               ": an export of everything (without `from`) starts at 0"));
    }
    if (!filter.has_from() && !filter.has_to()) return true;
    if (!edges) {
      NotProven(
          "the export has from/to, and its manifest (before format 4) carries no edge records "
          "to prove no record was left out at either end of a shard's run");
      return true;
    }
    if (first > 0 && !CheckEdge(shard, checkpoint, /*before=*/true, first - 1)) return false;
    if (end < checkpoint.size && !CheckEdge(shard, checkpoint, /*before=*/false, end)) return false;
    return true;
  }

  // The edge record at `index` of `shard` (before its run, or after it):
  // present, at that index, in the checkpoint's tree, and appended before
  // `from` (before) or at or after `to` (after).
  bool CheckEdge(const ExportManifest::ShardRanges& shard, const storage::Checkpoint& checkpoint,
                 bool before, uint64_t index) {
    const predlog::v1::ExportTrailRequest& filter = manifest_.filter();
    const std::string at = RecordName(shard.shard(), index);
    const std::string which = absl::StrCat(at, ", the record ", before ? "before" : "after",
                                           " the run of ", shard.shard(), " the export holds,");
    if (before ? !shard.has_edge_before() : !shard.has_edge_after()) {
      return Fail(absl::StrCat(
          "manifest: ", shard.shard(), "'s run ",
          before ? "starts at index " : "ends before index ", before ? index + 1 : index,
          ", but the manifest has no edge record ", before ? "before" : "after", " it (", at,
          ") to prove that record was appended ", before ? "before `from`" : "at or after `to`",
          ": records may have been left out"));
    }
    const predlog::v1::EdgeRecord& edge = before ? shard.edge_before() : shard.edge_after();
    if (edge.index() != index) {
      return Fail(absl::StrCat("manifest: the edge record ", before ? "before" : "after",
                               " the run of ", shard.shard(), " is #", edge.index(), ", not #",
                               index, ", the record right ", before ? "before" : "after", " it"));
    }
    if (!edge.unreadable().empty()) {
      // Like a record that could not be read: the export is incomplete.
      unreadable_.push_back(UnreadableRange{
          shard.shard(), index, index,
          absl::StrCat(
              "the edge record ", before ? "before" : "after",
              " the export's run, which proves nothing was left out there: ", edge.unreadable())});
      return true;
    }
    const std::optional<Digest> leaf = storage::DigestFromHex(edge.leaf_sha256());
    std::vector<Digest> proof;
    bool hex = leaf.has_value();
    for (const std::string& text : edge.proof_sha256()) {
      std::optional<Digest> hash = storage::DigestFromHex(text);
      hex = hex && hash.has_value();
      proof.push_back(hash.value_or(Digest{}));
    }
    if (!hex) {
      return Fail(
          absl::StrCat("manifest: the edge record ", at, ": a digest is not 64 hex digits"));
    }
    const std::optional<absl::Time> appended =
        edge.has_appended_at()
            ? std::optional<absl::Time>(storage::TimeFromProto(edge.appended_at()))
            : std::nullopt;
    if (absl::Status included = storage::VerifyMerkleInclusion(
            index, checkpoint.size, storage::RecordMerkleLeaf(appended, *leaf), proof,
            checkpoint.root);
        !included.ok()) {
      return Fail(
          absl::StrCat("manifest: the edge record ", at,
                       " is not what the shard's signed checkpoint holds: ", included.message()));
    }
    if (!appended.has_value()) {
      NotProven(absl::StrCat(at, ", the edge record ", before ? "before" : "after",
                             " its run, has no append time (written before shard format 3)"));
      return true;
    }
    const auto micros = [](absl::Time t) { return absl::ToUnixMicros(t); };
    const auto format = [](absl::Time t) { return absl::FormatTime(t, absl::UTCTimeZone()); };
    if (before && micros(*appended) >= micros(storage::TimeFromProto(filter.from()))) {
      return Fail(absl::StrCat("manifest: ", which, " was appended at ", format(*appended),
                               ", not before the filter's from ",
                               format(storage::TimeFromProto(filter.from())),
                               ": it, and maybe records before it, were left out"));
    }
    if (!before && micros(*appended) < micros(storage::TimeFromProto(filter.to()))) {
      return Fail(absl::StrCat("manifest: ", which, " was appended at ", format(*appended),
                               ", before the filter's to ",
                               format(storage::TimeFromProto(filter.to())),
                               ": it, and maybe records after it, were left out"));
    }
    return true;
  }

  // All checkpoints name one set of shards (those that name one), each
  // listed shard is in it, and an export of whole logs holds each shard of
  // its WholeLogTopics in it.
  bool CheckShardSet() {
    const std::optional<std::map<std::string, uint32_t>>* named = nullptr;
    size_t named_by = 0;
    std::vector<std::string> unnamed;
    for (size_t i = 0; i < shard_sets_.size(); ++i) {
      if (!shard_sets_[i].has_value()) {
        unnamed.push_back(checkpoints_[i].shard);
        continue;
      }
      if (named == nullptr) {
        named = &shard_sets_[i];
        named_by = i;
      } else if (**named != *shard_sets_[i]) {
        return Fail(absl::StrCat("manifest: the checkpoints disagree on the set of shards: ",
                                 checkpoints_[named_by].shard, "'s names ", SetText(**named), ", ",
                                 checkpoints_[i].shard, "'s names ", SetText(*shard_sets_[i])));
      }
    }
    if (named == nullptr) {
      if (whole_log_ && !checkpoints_.empty()) {
        NotProven(
            "the checkpoints do not name the set of shards (no predlog-shards line: signed by a "
            "predlogd from before they had one), so a shard left out of the manifest whole would "
            "not be noticed");
      }
      return true;
    }
    absl::flat_hash_set<std::string> in_set;
    for (const auto& [topic, count] : **named) {
      for (uint32_t p = 0; p < count; ++p) in_set.insert(absl::StrCat(topic, "-", p));
    }
    absl::flat_hash_set<std::string> listed;
    for (const VerifiedCheckpoint& c : checkpoints_) {
      listed.insert(c.shard);
      if (!in_set.contains(c.shard)) {
        return Fail(absl::StrCat("manifest: shard ", c.shard,
                                 " is not one of the shards its log's checkpoints name (",
                                 SetText(**named), ")"));
      }
    }
    if (!whole_log_) return true;
    for (const std::string& topic : whole_log_topics_) {
      auto it = (*named)->find(topic);
      if (it == (*named)->end()) continue;
      for (uint32_t p = 0; p < it->second; ++p) {
        const std::string name = absl::StrCat(topic, "-", p);
        if (!listed.contains(name)) {
          return Fail(absl::StrCat(
              "manifest: shard ", name, " is missing: the checkpoints name the shards ",
              SetText(**named), ", and an export of ",
              manifest_.filter().has_all() ? "everything" : "the access trail",
              " holds every shard of ", absl::StrJoin(whole_log_topics_, " and ")));
        }
      }
    }
    if (!unnamed.empty()) {
      NotProven(absl::StrCat("the checkpoints of ", absl::StrJoin(unnamed, ", "),
                             " do not name the set of shards"));
    }
    return true;
  }

  static std::string SetText(const std::map<std::string, uint32_t>& shards) {
    std::string text;
    for (const auto& [topic, count] : shards) {
      absl::StrAppend(&text, text.empty() ? "" : " ", topic, "/", count);
    }
    return text;
  }

  void NotProven(std::string why) { completeness_unproven_.push_back(std::move(why)); }

  // Checks the manifest's own consistency.
  bool CheckManifest() {
    uint64_t total = 0;
    absl::flat_hash_set<std::string> names;
    if (manifest_.filter().filter_case() == predlog::v1::ExportTrailRequest::FILTER_NOT_SET) {
      return Fail("manifest: it has no filter, so what the export claims to hold is unknown");
    }
    const std::string genesis = storage::ToHex(storage::kChainGenesis);
    for (size_t s = 0; s < static_cast<size_t>(manifest_.shards_size()); ++s) {
      const auto& shard = manifest_.shards(static_cast<int>(s));
      const std::string in_shard = absl::StrCat(" of shard ", shard.shard());
      if (!names.insert(shard.shard()).second) {
        return Fail(absl::StrCat("manifest: shard ", shard.shard(), " is listed twice"));
      }
      for (int u = 0; u < shard.unreadable_size(); ++u) {
        const auto& range = shard.unreadable(u);
        if (range.first_index() > range.last_index() ||
            (u > 0 && range.first_index() <= shard.unreadable(u - 1).last_index())) {
          return Fail(absl::StrCat("manifest: the unreadable ranges", in_shard,
                                   " are not increasing at ", range.first_index()));
        }
        unreadable_.push_back(UnreadableRange{shard.shard(), range.first_index(),
                                              range.last_index(), range.reason()});
      }
      uint64_t records = 0;
      for (const auto& range : shard.ranges()) {
        if (range.first_index() > range.last_index() ||
            (!runs_.empty() && runs_.back().shard == s &&
             range.first_index() <= runs_.back().last)) {
          return Fail(absl::StrCat("manifest: the ranges", in_shard, " are not increasing at ",
                                   range.first_index()));
        }
        const bool unanchored = range.prev_chain_sha256().empty();
        if ((!unanchored && !storage::DigestFromHex(range.prev_chain_sha256())) ||
            !storage::DigestFromHex(range.chain_sha256())) {
          return Fail(absl::StrCat("manifest: a chain anchor", in_shard, " is not 64 hex digits"));
        }
        runs_.push_back(Run{s, range.first_index(), range.last_index(), &range, unanchored});
        records += range.last_index() - range.first_index() + 1;
      }
      if (records != shard.records()) {
        return Fail(absl::StrCat("manifest: shard ", shard.shard(), " says ", shard.records(),
                                 " records but its ranges hold ", records));
      }
      total += records;

      // The ranges and the unreadable ranges, in log order: disjoint; a
      // range has no anchor before it exactly when the record before it is
      // unreadable; the chain starts at 32 zero bytes.
      std::vector<Span> spans;
      for (const auto& r : shard.ranges())
        spans.push_back({r.first_index(), r.last_index(), false});
      for (const auto& u : shard.unreadable())
        spans.push_back({u.first_index(), u.last_index(), true});
      std::sort(spans.begin(), spans.end(),
                [](const Span& a, const Span& b) { return a.first < b.first; });
      size_t run = runs_.size() - static_cast<size_t>(shard.ranges_size());
      for (size_t i = 0; i < spans.size(); ++i) {
        const Span& span = spans[i];
        const Span* before = i > 0 ? &spans[i - 1] : nullptr;
        if (before != nullptr && span.first <= before->last) {
          return Fail(absl::StrCat(
              "manifest: ", before->unreadable ? "unreadable range " : "range ",
              RangeText(before->first, before->last), in_shard, " overlaps ",
              span.unreadable ? "unreadable range " : "range ", RangeText(span.first, span.last)));
        }
        const bool adjacent = before != nullptr && before->last + 1 == span.first;
        if (!span.unreadable) {
          const Run& r = runs_[run++];
          const std::string which = absl::StrCat("range ", RangeText(r.first, r.last), in_shard);
          if (r.unanchored && !(adjacent && before->unreadable)) {
            return Fail(absl::StrCat("manifest: ", which,
                                     " has no prev_chain_sha256 anchor, but the record before it "
                                     "is not listed as unreadable"));
          }
          if (!r.unanchored && adjacent && before->unreadable) {
            return Fail(absl::StrCat("manifest: ", which,
                                     " has a prev_chain_sha256 anchor, but the record before it is "
                                     "listed as unreadable"));
          }
          if (r.first == 0 && r.range->prev_chain_sha256() != genesis) {
            return Fail(absl::StrCat("manifest: ", which,
                                     " starts at index 0, but its prev_chain_sha256 anchor is not "
                                     "the chain's start (64 zeros)"));
          }
        }
        if (whole_log_ && before != nullptr && !adjacent) {
          // An export of everything holds each shard's records contiguously,
          // but for the ranges it says could not be read; the only other gap
          // it may have is a loss the shard recorded (RecordsLost, at the
          // index right after the lost ones). Anything else is a sparse
          // export whose manifest claims more than it holds.
          if (span.unreadable) {
            return Fail(absl::StrCat("manifest: shard ", shard.shard(), " has a gap (",
                                     RangeText(before->last + 1, span.first - 1),
                                     ") before its unreadable range ",
                                     RangeText(span.first, span.last),
                                     " in an export of everything: only a recorded loss may "
                                     "leave one, and its record follows it"));
          }
          gaps_[std::make_pair(s, span.first)] = std::make_pair(before->last + 1, span.first - 1);
        }
      }
    }
    if (total != manifest_.record_count()) {
      return Fail(absl::StrCat("manifest: record_count is ", manifest_.record_count(),
                               " but its shards hold ", total));
    }
    if (!runs_.empty()) expected_ = runs_[0].first;
    if (!CheckCheckpoints()) return false;
    manifest_checked_ = true;
    return true;
  }

  // One record of the file; false once verification failed.
  bool Record(absl::string_view bytes, uint64_t line) {
    if (format_ == ExportFormat::kCsv && !header_seen_) return Header(bytes, line);
    line_ = line;
    ClaimedRecord claim;
    std::optional<std::string> error;
    std::vector<std::string> cells;
    if (format_ == ExportFormat::kJsonl) {
      error = ReadJsonLine(bytes, &claim);
    } else {
      error = ReadCsvRow(bytes, columns_, &cells, &claim);
    }
    name_ = RecordName(claim.shard, claim.index);
    if (error) {
      return claim.named ? FailLine(*error) : Fail(absl::StrCat("line ", line, ": ", *error));
    }
    ++records_checked_;

    const bool same_shard = have_previous_ && claim.shard == previous_shard_;
    // A record that skipped manifest entries: either they come next (the
    // lines were reordered) or they are missing.
    if (pending_missing_) {
      if (!(same_shard && claim.index <= previous_index_)) {
        return Fail(absl::StrCat(*pending_missing_,
                                 " is listed in the manifest but missing from the file"));
      }
    }

    const std::optional<Digest> leaf = storage::DigestFromHex(claim.leaf_hex);
    // Empty when the chain value before the record could not be read (the
    // manifest must say so: MatchManifest).
    const bool prev_known = !claim.prev_hex.empty();
    const std::optional<Digest> prev =
        prev_known ? storage::DigestFromHex(claim.prev_hex) : Digest{};
    const std::optional<Digest> chain = storage::DigestFromHex(claim.chain_hex);
    if (!leaf) return FailLine("leaf_sha256 is not 64 hex digits");
    if (!prev) return FailLine("prev_chain_sha256 is not 64 hex digits");
    if (!chain) return FailLine("chain_sha256 is not 64 hex digits");
    if (storage::Sha256(claim.event_bytes) != *leaf) {
      return FailLine("leaf_sha256 does not match the event bytes");
    }

    arena_.Reset();
    AuditEvent* const event = google::protobuf::Arena::CreateMessage<AuditEvent>(arena_.get());
    if (!event->ParseFromString(claim.event_bytes)) {
      return FailLine("event_bytes are not a predlog.v1.AuditEvent");
    }
    if (std::optional<std::string> mismatch = FilterMismatch(manifest_.filter(), *event)) {
      return FailLine(*mismatch);
    }
    if (!gaps_.empty()) {
      for (const auto& [start, gap] : gaps_) {
        if (manifest_.shards(static_cast<int>(start.first)).shard() != claim.shard ||
            start.second != claim.index) {
          continue;
        }
        if (!event->has_records_lost() || event->records_lost().first_lost_index() != gap.first ||
            event->records_lost().last_lost_index() != gap.second) {
          return FailLine(absl::StrCat("follows a gap (", gap.first, "..", gap.second,
                                       ") in an export of everything that is not a recorded "
                                       "loss: the manifest claims more than the file holds"));
        }
      }
    }
    const HexDigest leaf_hex(*leaf), prev_hex(*prev), chain_hex(*chain);
    canonical_.clear();
    if (format_ == ExportFormat::kJsonl) {
      TrailLineFields fields;
      fields.shard = claim.shard;
      fields.index = claim.index;
      fields.event = event;
      fields.leaf_sha256 = leaf_hex.view();
      fields.prev_chain_sha256 = prev_known ? prev_hex.view() : absl::string_view();
      fields.chain_sha256 = chain_hex.view();
      fields.event_bytes = claim.event_bytes;
      if (claim.appended_at.has_value()) fields.appended_at = &*claim.appended_at;
      AppendTrailLine(fields, &canonical_);
    } else {
      RowKey key;
      key.shard = claim.shard;
      key.index = claim.index;
      key.leaf = leaf_hex.view();
      key.prev_chain = prev_known ? prev_hex.view() : absl::string_view();
      key.chain = chain_hex.view();
      key.event_bytes = claim.event_bytes;
      if (claim.appended_at.has_value()) key.appended_at = &*claim.appended_at;
      AppendCsvRow(columns_, key, *event, &canonical_);
    }
    if (canonical_ != bytes) {
      return FailLine(
          absl::StrCat(format_ == ExportFormat::kJsonl ? "the line" : "the row",
                       " is not what its event_bytes decode to (first difference at byte ",
                       FirstDifference(canonical_, bytes) + 1, ")"));
    }
    if (format_ == ExportFormat::kCsv && !prediction_seen_ && event->has_prediction_logged()) {
      prediction_seen_ = true;
      if (CsvColumns::For(event->prediction_logged()).names() != columns_.names()) {
        return FailLine(
            "the header's input columns are not the inputs of this, the first prediction");
      }
    }

    if (prev_known && storage::ChainNext(*prev, *leaf) != *chain) {
      return FailLine("chain_sha256 is not SHA-256(prev_chain_sha256 || leaf_sha256)");
    }

    // An export of everything holds what each shard appended in [from, to),
    // by the append time every record carries (records written before shard
    // format 3 carry none and are not checked here).
    const std::optional<absl::Time> appended =
        claim.appended_at.has_value()
            ? std::optional<absl::Time>(storage::TimeFromProto(*claim.appended_at))
            : std::nullopt;
    if (appended.has_value() && whole_log_) {
      const predlog::v1::ExportTrailRequest& f = manifest_.filter();
      const auto micros = [](absl::Time t) { return absl::ToUnixMicros(t); };
      if (f.has_from() && micros(*appended) < micros(storage::TimeFromProto(f.from()))) {
        return FailLine(
            absl::StrCat("was appended at ", absl::FormatTime(*appended, absl::UTCTimeZone()),
                         ", before the manifest's filter from ",
                         absl::FormatTime(storage::TimeFromProto(f.from()), absl::UTCTimeZone())));
      }
      if (f.has_to() && micros(*appended) >= micros(storage::TimeFromProto(f.to()))) {
        return FailLine(
            absl::StrCat("was appended at ", absl::FormatTime(*appended, absl::UTCTimeZone()),
                         ", not before the manifest's filter to ",
                         absl::FormatTime(storage::TimeFromProto(f.to()), absl::UTCTimeZone())));
      }
    }
    if (same_shard) {
      if (claim.index <= previous_index_) {
        return FailLine(absl::StrCat("out of log order after ",
                                     RecordName(previous_shard_, previous_index_), " on line ",
                                     previous_line_));
      }
      if (claim.index == previous_index_ + 1 && !prev_known) {
        return FailLine(absl::StrCat("has no prev_chain_sha256, but it follows ",
                                     RecordName(previous_shard_, previous_index_), " on line ",
                                     previous_line_));
      }
      if (claim.index == previous_index_ + 1 && *prev != previous_chain_) {
        return FailLine(absl::StrCat("prev_chain_sha256 does not continue the chain of ",
                                     RecordName(previous_shard_, previous_index_), " on line ",
                                     previous_line_));
      }
    } else if (finished_shards_.contains(claim.shard)) {
      return FailLine(absl::StrCat("out of log order: shard ", claim.shard, " resumed after ",
                                   previous_shard_));
    }
    if (same_shard && appended.has_value() && previous_appended_.has_value() &&
        *appended < *previous_appended_) {
      return FailLine(absl::StrCat("was appended at ",
                                   absl::FormatTime(*appended, absl::UTCTimeZone()), ", before ",
                                   RecordName(previous_shard_, previous_index_), " on line ",
                                   previous_line_, ": a shard's append times never go back"));
    }
    if (have_previous_ && !same_shard) finished_shards_.insert(previous_shard_);
    have_previous_ = true;
    previous_shard_ = claim.shard;
    previous_index_ = claim.index;
    previous_chain_ = *chain;
    previous_appended_ = appended;
    previous_line_ = line;

    return MatchManifest(claim, prev_known, *leaf, *prev, *chain, appended);
  }

  bool End(uint64_t file_bytes, const Digest& file_sha256) {
    if (format_ == ExportFormat::kCsv && !header_seen_) {
      return Fail("line 1: the file has no CSV header");
    }
    if (pending_missing_) {
      return Fail(
          absl::StrCat(*pending_missing_, " is listed in the manifest but missing from the file"));
    }
    if (run_ < runs_.size()) {
      return Fail(absl::StrCat(RecordName(ShardOf(runs_[run_]), expected_),
                               " is listed in the manifest but missing from the file"));
    }
    if (format_ == ExportFormat::kCsv && !prediction_seen_ && !columns_.names().empty()) {
      return Fail("line 1: the header has input columns but the export holds no prediction");
    }
    if (records_checked_ != manifest_.record_count()) {
      return Fail(absl::StrCat("the file has ", records_checked_, " records, the manifest says ",
                               manifest_.record_count()));
    }
    if (file_bytes != manifest_.file_bytes() ||
        storage::ToHex(file_sha256) != manifest_.file_sha256()) {
      return Fail(absl::StrCat("the file (", file_bytes, " bytes, SHA-256 ",
                               storage::ToHex(file_sha256), ") is not the one exported (",
                               manifest_.file_bytes(), " bytes, SHA-256 ", manifest_.file_sha256(),
                               ")"));
    }
    ended_ = true;
    return true;
  }

  ExportVerification result() const {
    ExportVerification v;
    v.records_checked = records_checked_;
    v.consistent = failure_.empty() && ended_;
    v.ok = v.consistent && unreadable_.empty();
    v.proven =
        v.consistent && key_ != nullptr && !checkpoints_.empty() && runs_proven_ == runs_.size();
    if (v.consistent && key_ != nullptr) {
      v.checkpoints = checkpoints_;
      v.unproven = unproven_;
      if (v.proven && whole_log_) {
        v.completeness_unproven = completeness_unproven_;
        v.complete_proven = v.ok && completeness_unproven_.empty();
        v.whole_log_topics = whole_log_topics_;
        const predlog::v1::ExportTrailRequest& f = manifest_.filter();
        if (f.has_from() || f.has_to()) {
          const auto shown = [](bool has, const google::protobuf::Timestamp& t) {
            return has ? absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", storage::TimeFromProto(t),
                                          absl::UTCTimeZone())
                       : std::string("-");
          };
          v.complete_range = absl::StrCat("[", shown(f.has_from(), f.from()), ", ",
                                          shown(f.has_to(), f.to()), ")");
        }
      }
    }
    v.failure = failure_;
    if (manifest_checked_) v.unreadable = unreadable_;
    v.filtered = !whole_log_;
    if (v.consistent && !unreadable_.empty()) {
      uint64_t records = 0;
      std::string ranges;
      for (const UnreadableRange& u : unreadable_) {
        records += u.last_index - u.first_index + 1;
        absl::StrAppend(&ranges, ranges.empty() ? "" : "; ", u.shard, " records ",
                        RangeText(u.first_index, u.last_index), ": ", u.reason);
      }
      v.failure = absl::StrCat("the export is incomplete: ", records, " records in ",
                               unreadable_.size(), " range", unreadable_.size() == 1 ? "" : "s",
                               " could not be read when it was made (", ranges, ")");
    }
    if (v.consistent) v.claims = Claims();
    return v;
  }

 private:
  bool Fail(std::string failure) {
    failure_ = std::move(failure);
    return false;
  }
  bool FailLine(absl::string_view what) {
    return Fail(absl::StrCat("line ", line_, " (", name_, "): ", what));
  }

  const std::string& ShardOf(const Run& run) const {
    return manifest_.shards(static_cast<int>(run.shard)).shard();
  }

  // What only the live shards can confirm, run by run (see ChainClaim).
  std::vector<ChainClaim> Claims() const {
    std::vector<ChainClaim> claims;
    for (const Run& run : runs_) {
      const std::string range = RangeText(run.first, run.last);
      if (run.unanchored) {
        claims.push_back({ShardOf(run), run.first, storage::ToHex(run.first_chain),
                          storage::ToHex(run.first_leaf),
                          absl::StrCat("the first record of range ", range,
                                       " (the chain value before it could not be read)")});
        if (run.first == run.last) continue;  // that claim covers its chain anchor too
      } else if (run.first > 0) {
        // After a recorded loss the anchor is the chain value of the last
        // record before the lost indexes (none: genesis, nothing to ask).
        uint64_t before = run.first - 1;
        if (auto gap = gaps_.find(std::make_pair(run.shard, run.first)); gap != gaps_.end()) {
          before = gap->second.first;  // the first lost index; the claim is the one before it
          if (before == 0) {
            claims.push_back({ShardOf(run), run.last, run.range->chain_sha256(), "",
                              absl::StrCat("the chain_sha256 anchor of range ", range)});
            continue;
          }
          --before;
        }
        claims.push_back({ShardOf(run), before, run.range->prev_chain_sha256(), "",
                          absl::StrCat("the prev_chain_sha256 anchor of range ", range)});
      }
      claims.push_back({ShardOf(run), run.last, run.range->chain_sha256(), "",
                        absl::StrCat("the chain_sha256 anchor of range ", range)});
    }
    return claims;
  }

  bool Header(absl::string_view bytes, uint64_t line) {
    header_seen_ = true;
    std::vector<std::string> cells;
    if (std::optional<std::string> error = SplitCsv(bytes, &cells)) {
      return Fail(absl::StrCat("line ", line, ": the CSV header does not parse: ", *error));
    }
    const auto bad = [line](absl::string_view why) {
      return absl::StrCat("line ", line, ": not an export header: ", why);
    };
    if (cells.size() < kCsvFixedCount + 2) return Fail(bad("too few columns"));
    for (size_t i = 0; i < kCsvFixedCount; ++i) {
      if (cells[i] != kCsvFixedColumns[i]) {
        return Fail(bad(absl::StrCat("column ", i + 1, " is \"", cells[i], "\", want \"",
                                     kCsvFixedColumns[i], "\"")));
      }
    }
    for (size_t i = kCsvFixedCount; i + 2 < cells.size(); ++i) {
      const absl::string_view cell = cells[i];
      if (cell.substr(0, kInputPrefix.size()) != kInputPrefix ||
          !columns_.Add(std::string(cell.substr(kInputPrefix.size())))) {
        return Fail(
            bad(absl::StrCat("column ", i + 1, " \"", cell, "\" is not a distinct input column")));
      }
    }
    if (cells[cells.size() - 2] != "extra_inputs" || cells.back() != "event_bytes_base64") {
      return Fail(bad("the last columns are not extra_inputs,event_bytes_base64"));
    }
    std::string canonical;
    AppendCsvHeader(columns_, &canonical);
    if (canonical != bytes) {
      return Fail(bad(absl::StrCat("it differs from the canonical header at byte ",
                                   FirstDifference(canonical, bytes) + 1)));
    }
    return true;
  }

  // The record must be the next one the manifest lists.
  bool MatchManifest(const ClaimedRecord& claim, bool prev_known, const Digest& leaf,
                     const Digest& prev, const Digest& chain,
                     const std::optional<absl::Time>& appended) {
    const auto is_at = [&](size_t r, uint64_t from) {
      return ShardOf(runs_[r]) == claim.shard && claim.index >= std::max(runs_[r].first, from) &&
             claim.index <= runs_[r].last;
    };
    // Not in the manifest's ranges: maybe in a range it says could not be read.
    const auto not_listed = [&](absl::string_view what) {
      for (const UnreadableRange& u : unreadable_) {
        if (u.shard == claim.shard && claim.index >= u.first_index && claim.index <= u.last_index) {
          return FailLine(absl::StrCat("is in the range ", RangeText(u.first_index, u.last_index),
                                       " that the manifest says could not be read"));
        }
      }
      return FailLine(what);
    };
    if (run_ >= runs_.size()) return not_listed("is not listed in the manifest");
    const std::string expected = RecordName(ShardOf(runs_[run_]), expected_);
    if (!is_at(run_, expected_) || claim.index != expected_) {
      size_t r = run_;
      while (r < runs_.size() && !is_at(r, r == run_ ? expected_ : 0)) ++r;
      if (r == runs_.size()) {
        return not_listed(
            absl::StrCat("is not listed in the manifest (it lists ", expected, " next)"));
      }
      // Entries were skipped: the next record tells a reordering from a loss.
      pending_missing_ = expected;
      run_ = r;
    } else {
      pending_missing_.reset();
    }
    Run& run = runs_[run_];
    // CheckManifest made sure the anchors parse.
    if (claim.index == run.first && run.unanchored) {
      if (prev_known) {
        return FailLine(
            "has a prev_chain_sha256, but the manifest's range has no anchor before it (the "
            "record before it is listed as unreadable)");
      }
      run.first_leaf = leaf;
      run.first_chain = chain;
    } else if (!prev_known) {
      return FailLine(
          "has no prev_chain_sha256, but it is not the first record of a range after an "
          "unreadable one");
    } else if (claim.index == run.first &&
               *storage::DigestFromHex(run.range->prev_chain_sha256()) != prev) {
      return FailLine("prev_chain_sha256 is not the manifest's anchor for its range");
    }
    if (claim.index == run.last && *storage::DigestFromHex(run.range->chain_sha256()) != chain) {
      return FailLine("chain_sha256 is not the manifest's anchor for its range");
    }
    if (run.proof.has_value()) {
      // The tree's leaf covers the bytes (leaf) and the append time.
      run.proof->Append(storage::RecordMerkleLeaf(appended, leaf));
      if (claim.index == run.last) {
        if (absl::Status proven = run.proof->Finish(roots_[run.shard]); !proven.ok()) {
          return FailLine(
              absl::StrCat("range ", RangeText(run.first, run.last),
                           " is not what the shard's signed checkpoint holds: ", proven.message()));
        }
        ++runs_proven_;
      }
    }
    if (claim.index == run.last) {
      ++run_;
      if (run_ < runs_.size()) expected_ = runs_[run_].first;
    } else {
      expected_ = claim.index + 1;
    }
    return true;
  }

  const ExportManifest& manifest_;
  // The topics the export reads whole (WholeLogTopics), and whether any.
  const std::vector<std::string> whole_log_topics_;
  const bool whole_log_;
  const ExportFormat format_;
  const storage::NoteVerifier* const key_;
  // With key_: per manifest shard, its checkpoint's root; and the checkpoints.
  std::vector<Digest> roots_;
  std::vector<VerifiedCheckpoint> checkpoints_;
  size_t runs_proven_ = 0;
  std::vector<std::string> unproven_;  // ranges sent without a proof
  // Checkpoints signed before oldest_ fail (max_age_ says by how much).
  const absl::Time oldest_;
  const absl::Duration max_age_;
  // With key_: per manifest shard, the set of shards its checkpoint names.
  std::vector<std::optional<std::map<std::string, uint32_t>>> shard_sets_;
  // Why an export of everything is not proven complete (ExportVerification).
  std::vector<std::string> completeness_unproven_;
  std::vector<Run> runs_;
  size_t run_ = 0;         // the run holding the next expected record
  uint64_t expected_ = 0;  // its index
  std::optional<std::string> pending_missing_;
  // An export of everything: per (shard, first index of a range after a gap),
  // the gap [first, last] a RecordsLost record there must explain.
  std::map<std::pair<size_t, uint64_t>, std::pair<uint64_t, uint64_t>> gaps_;

  // The manifest's unreadable ranges, in manifest order.
  std::vector<UnreadableRange> unreadable_;
  bool manifest_checked_ = false;  // CheckManifest passed

  uint64_t records_checked_ = 0;
  std::string failure_;
  bool ended_ = false;  // End passed
  uint64_t line_ = 0;
  std::string name_;

  bool have_previous_ = false;
  std::optional<absl::Time> previous_appended_;
  std::string previous_shard_;
  uint64_t previous_index_ = 0;
  Digest previous_chain_{};
  uint64_t previous_line_ = 0;
  absl::flat_hash_set<std::string> finished_shards_;

  bool header_seen_ = false;
  bool prediction_seen_ = false;
  CsvColumns columns_;

  RecordArena arena_;  // holds the record being checked
  std::string canonical_;
};

}  // namespace

std::vector<std::string> WholeLogTopics(const predlog::v1::ExportTrailRequest& filter) {
  if (filter.has_all()) return {std::begin(kExportAllTopics), std::end(kExportAllTopics)};
  if (filter.has_access_trail()) return {kAccessTrailTopic};
  return {};
}

absl::StatusOr<ExportVerification> VerifyExport(const std::string& file_path,
                                                const std::string& manifest_path,
                                                const VerifyOptions& options) {
  std::unique_ptr<storage::NoteVerifier> key;
  if (!options.verifier_key.empty()) {
    absl::StatusOr<std::unique_ptr<storage::NoteVerifier>> parsed =
        storage::NoteVerifier::Create(options.verifier_key);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("verifier key: ", parsed.status().message()));
    }
    key = *std::move(parsed);
  }
  if (key == nullptr && options.not_older_than != absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "a checkpoint's age needs the verifier key: its signing time is proven by its signature");
  }
  if (options.not_older_than < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("not_older_than is negative");
  }
  ASSIGN_OR_RETURN(const std::string manifest_json, ReadWholeFile(manifest_path));
  ExportManifest manifest;
  const auto parsed = google::protobuf::util::JsonStringToMessage(manifest_json, &manifest);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest ", manifest_path,
                     " does not parse as a predlog.v1.ExportManifest: ", parsed.ToString()));
  }
  // Version 2 added each record's append time (appendedAt; the CSV column
  // appended_at). A version-1 JSON lines file is the same without it; a
  // version-1 CSV file has other columns.
  // Version 3 added checkpoints and range proofs (absent, as in older
  // versions, when predlogd had no signing key).
  // Version 4 added the edges of an export of everything with from/to.
  if (manifest.format_version() < 1 || manifest.format_version() > 4) {
    return absl::FailedPreconditionError(
        absl::StrCat("manifest ", manifest_path, " has format_version ", manifest.format_version(),
                     "; this build reads versions 1 to 4"));
  }
  if (manifest.format_version() == 1 && manifest.file_format() == "csv") {
    return absl::FailedPreconditionError(absl::StrCat(
        "manifest ", manifest_path,
        " describes a format_version 1 CSV export, whose columns predate appended_at: verify it "
        "with the predlog build that wrote it, or export again (records are write-once, so a new "
        "export holds the same records)"));
  }
  absl::StatusOr<ExportFormat> format = ParseExportFormat(manifest.file_format());
  if (!format.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest ", manifest_path, ": ", format.status().message()));
  }
  std::string path = file_path;
  if (path.empty()) {
    if (manifest.file_name().empty() || manifest.file_name().find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest ", manifest_path, " names no file in its directory (file_name \"",
                       manifest.file_name(), "\")"));
    }
    path = absl::StrCat(DirName(manifest_path), "/", manifest.file_name());
  }

  absl::Time oldest = absl::InfinitePast();
  if (options.not_older_than != absl::InfiniteDuration()) {
    oldest =
        (options.now == absl::InfinitePast() ? absl::Now() : options.now) - options.not_older_than;
  }
  Verifier verifier(manifest, *format, key.get(), oldest, options.not_older_than);
  if (!verifier.CheckManifest()) return verifier.result();
  ASSIGN_OR_RETURN(std::unique_ptr<RecordReader> reader,
                   RecordReader::Open(path, *format == ExportFormat::kCsv));
  absl::string_view record;
  while (true) {
    ASSIGN_OR_RETURN(const bool more, reader->Next(&record));
    if (!more) break;
    if (!verifier.Record(record, reader->line())) return verifier.result();
  }
  verifier.End(reader->bytes(), reader->sha256());
  return verifier.result();
}

namespace {

// A digest for a message: the first 16 hex digits are enough to tell two
// apart, the whole one is in the manifest and the server.
std::string Short(absl::string_view hex) {
  return hex.size() > 16 ? absl::StrCat(hex.substr(0, 16), "…") : std::string(hex);
}

}  // namespace

absl::StatusOr<ServerCheck> CheckAgainstServer(const ExportVerification& verification,
                                               size_t max_positions,
                                               const ChainValueFetcher& fetch) {
  if (max_positions == 0) return absl::InvalidArgumentError("max_positions must be > 0");
  ServerCheck check;
  const std::vector<ChainClaim>& claims = verification.claims;
  const auto compare = [&check](const ChainClaim& claim, const predlog::v1::ChainValue& live) {
    const std::string at = RecordName(claim.shard, claim.index);
    if (!claim.leaf_sha256.empty() && live.leaf_sha256() != claim.leaf_sha256) {
      check.mismatches.push_back(absl::StrCat(at, ": the leaf_sha256 of ", claim.what, " is ",
                                              Short(claim.leaf_sha256), ", the server's shard has ",
                                              Short(live.leaf_sha256())));
    }
    if (live.chain_sha256() != claim.chain_sha256) {
      check.mismatches.push_back(absl::StrCat(
          at, ": ", claim.leaf_sha256.empty() ? "" : "the chain_sha256 of ", claim.what, " is ",
          Short(claim.chain_sha256), ", the server's shard has ", Short(live.chain_sha256())));
    }
  };
  const auto positions_of = [&claims](size_t begin, size_t end) {
    std::vector<predlog::v1::Position> positions;
    for (size_t i = begin; i < end; ++i) {
      predlog::v1::Position& p = positions.emplace_back();
      p.set_shard(claims[i].shard);
      p.set_index(claims[i].index);
    }
    return positions;
  };
  const auto answers_for = [&claims](size_t begin, size_t end,
                                     const std::vector<predlog::v1::ChainValue>& values) {
    if (values.size() != end - begin) return false;
    for (size_t i = begin; i < end; ++i) {
      const predlog::v1::Position& p = values[i - begin].position();
      if (p.shard() != claims[i].shard || p.index() != claims[i].index) return false;
    }
    return true;
  };
  for (size_t begin = 0; begin < claims.size(); begin += max_positions) {
    const size_t end = std::min(claims.size(), begin + max_positions);
    absl::StatusOr<std::vector<predlog::v1::ChainValue>> values = fetch(positions_of(begin, end));
    if (!values.ok() && !absl::IsNotFound(values.status()) && !absl::IsDataLoss(values.status())) {
      return values.status();
    }
    if (values.ok()) {
      if (!answers_for(begin, end, *values)) {
        return absl::InternalError("the server answered for other positions than asked");
      }
      for (size_t i = begin; i < end; ++i) compare(claims[i], (*values)[i - begin]);
      check.claims_checked += end - begin;
      continue;
    }
    // One position the server cannot answer fails the call: ask one at a
    // time, so that each claim it cannot confirm is named.
    for (size_t i = begin; i < end; ++i) {
      absl::StatusOr<std::vector<predlog::v1::ChainValue>> one = fetch(positions_of(i, i + 1));
      ++check.claims_checked;
      if (one.ok()) {
        if (!answers_for(i, i + 1, *one)) {
          return absl::InternalError("the server answered for other positions than asked");
        }
        compare(claims[i], one->front());
      } else if (absl::IsNotFound(one.status()) || absl::IsDataLoss(one.status())) {
        check.mismatches.push_back(absl::StrCat(RecordName(claims[i].shard, claims[i].index),
                                                ": the server cannot confirm ", claims[i].what,
                                                ": ", absl::StatusCodeToString(one.status().code()),
                                                ": ", one.status().message()));
      } else {
        return one.status();
      }
    }
  }
  return check;
}

}  // namespace predlog::services
