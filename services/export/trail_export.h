// Verifiable exports of shard records for auditors: TrailWriter writes what
// the server's Audit.ExportTrail streams to a JSON-lines or CSV file plus a
// manifest; VerifyExport checks such a file offline, without a server;
// CheckAgainstServer then compares the manifest's chain anchors with the live
// shards' stored chain values (Audit.GetChainValues).
//
// What offline verification proves: every record's event bytes hash to its
// leaf, its human-readable part is exactly what those bytes decode to, its
// chain value links its leaf to the previous chain value, consecutive records
// of a shard continue one another's chain, the file holds exactly the records
// (and the chain anchors) the manifest lists, byte for byte, every record
// matches the manifest's filter (a subject or model export's predictions in
// its served_at range, at microseconds as the indexes key them), an export of
// everything has no gap but recorded losses and the ranges the manifest says
// could not be read, and no record of the file is in such a range. Records
// that could not be read make the export incomplete (ok is false) even when
// everything else checks out; each readable run is then checked on its own
// from its anchors, and the first record after an unreadable one has no
// chain value before it, so its leaf is tied to its chain value only by the
// live check. What it cannot prove without a key: that the manifest itself
// is the server's. With the checkpoint verifier key (VerifyOptions) it does:
// every range is proven to be those records of the log the shard's signed
// checkpoint holds (format 3 manifests). CheckAgainstServer adds that the
// anchors (and those first records) are the live shards' own, as far as that
// server is trusted. In a subject or model export, a manifest rewritten to
// drop an unreadable range (or a record, with the file) is not detectable
// offline, key or not. An export of everything is proven gap-free with the
// key: every shard its checkpoints name (predlog-shards line) of the topics
// it covers is in it, each from index 0 to its checkpoint's size or, with
// from/to, each shard's run of records appended in [from, to) with the
// records just outside it (edges, manifest format 4) proven to lie outside.
#ifndef PREDLOG_SERVICES_EXPORT_TRAIL_EXPORT_H_
#define PREDLOG_SERVICES_EXPORT_TRAIL_EXPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "predlog/v1/audit.pb.h"

namespace predlog::services {

enum class ExportFormat { kJsonl, kCsv };

// An export is written as `path` + kPartialSuffix until it is complete, and
// that file is removed when the export fails.
inline constexpr char kPartialSuffix[] = ".partial";

// "jsonl" or "csv"; INVALID_ARGUMENT naming anything else.
absl::StatusOr<ExportFormat> ParseExportFormat(absl::string_view name);

// Who caused `event`, as people read it (the CLI, case files, the CSV actor
// column): the authenticated actor; "<claim> (claimed)" when predlogd knew
// nobody and only the client's claim was recorded; "<actor> (claimed:
// <claim>)" when the client claimed another name than the one it
// authenticated as; "" when neither is recorded.
std::string ActorText(const predlog::v1::AuditEvent& event);
absl::string_view ExportFormatName(ExportFormat format);

// Writes exported records, in the order the server streams them (shard by
// shard, each in log order), to one file, building the manifest as it goes.
// Nothing of a record is written unless Add accepts it whole. The file is
// `path` + kPartialSuffix until Finish succeeds; a writer destroyed before
// that removes it, so a failed export leaves no file under `path`.
//
// Externally synchronized, but for records(); AddBatch runs worker threads
// of its own, joined by Finish or the destructor.
class TrailWriter {
 public:
  // Creates (or truncates) `path` + kPartialSuffix; `path` itself is left as
  // it is until Finish. Errors name the path: NOT_FOUND for a missing
  // directory, PERMISSION_DENIED, INTERNAL for other I/O errors.
  static absl::StatusOr<std::unique_ptr<TrailWriter>> Create(const std::string& path,
                                                             ExportFormat format);
  ~TrailWriter();
  TrailWriter(const TrailWriter&) = delete;
  TrailWriter& operator=(const TrailWriter&) = delete;

  // INVALID_ARGUMENT, naming the record, when its leaf or chain do not match
  // its bytes, its bytes are not an AuditEvent, or it is out of log order (an
  // index not above the shard's previous one, a chain that does not continue
  // the previous record's, a shard resumed after another began), or its
  // prev_chain_sha256 is empty although the record before it was not
  // reported unreadable (or set although it was): the server must never send
  // such a record. FAILED_PRECONDITION after Finish or after a write failed;
  // INTERNAL for I/O errors.
  absl::Status Add(const predlog::v1::ExportedRecord& record);

  // Add for every record of `batch`, in order, but for JSON lines checked
  // and rendered by worker threads while the caller fetches the next batch:
  // an export is CPU-bound on rendering (bench/RESULTS.md). The file is the
  // same as Add's, and so are the checks and the error of a bad record; but
  // that error comes back from a later AddBatch or from Finish, after the
  // records before it were accepted, and every batch after it is dropped.
  // Do not mix with Add on one writer (FAILED_PRECONDITION from Add).
  // The batch's unreadable ranges go into the manifest in their place among
  // its records (records_before); INVALID_ARGUMENT, like a bad record, for
  // one out of log order, past the batch's records or naming no shard.
  absl::Status AddBatch(predlog::v1::ExportBatch batch);

  // Records accepted so far. Thread-safe (for a progress display).
  uint64_t records() const;

  // Flushes and fsyncs the file, fills the manifest (file name, format,
  // SHA-256 and size, record_count, per-shard ranges with chain anchors and
  // unreadable ranges; the caller's `manifest` carries filter, created_at,
  // exported_by and server, and whatever else it holds is replaced), writes
  // it as pretty JSON to `manifest_path` (through a temporary file, fsynced,
  // then renamed) and then renames the file to `path`. Returns the manifest,
  // also when it lists unreadable ranges. Any error returned before (a
  // rejected record, a failed write) comes back here too, and nothing is
  // left under `path` or `manifest_path`. Call once; FAILED_PRECONDITION
  // after that.
  absl::StatusOr<predlog::v1::ExportManifest> Finish(predlog::v1::ExportManifest manifest,
                                                     const std::string& manifest_path);

 private:
  class Impl;
  explicit TrailWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Records the server could not read when it exported, as the manifest lists them.
struct UnreadableRange {
  std::string shard;
  uint64_t first_index = 0;
  uint64_t last_index = 0;
  std::string reason;
};

// A stored value an export claims for one record of a shard's log, which
// only the live shard can confirm: a range's chain anchors (the chain value
// after the record before it, and after its last record) and, for a range
// whose chain value before it could not be read, its first record's leaf and
// chain value as the file has them.
struct ChainClaim {
  std::string shard;
  uint64_t index = 0;
  std::string chain_sha256;  // lower-case hex: the chain value after `index`
  std::string leaf_sha256;   // lower-case hex, or empty: the leaf is not claimed
  // For messages, e.g. "the chain_sha256 anchor of range 40..57".
  std::string what;
};

// A shard's checkpoint as VerifyExport checked it with the verifier key.
struct VerifiedCheckpoint {
  std::string shard;
  std::string origin;
  uint64_t size = 0;
  std::string root_sha256;  // lower-case hex
  // When it was signed (its predlog-signed-at line); nullopt: it has none
  // (signed by a predlogd before checkpoints carried one).
  std::optional<absl::Time> signed_at;
};

// The topics an export of everything covers (ExportTrailRequest.all): with
// a key, it must hold every shard of these topics its checkpoints name.
// Shards of other topics (the access trail) have exports of their own.
inline constexpr const char* kExportAllTopics[] = {"predlog.events", "predlog.registry"};
// The most an export's checkpoints' signing times may differ for it to
// prove completeness: predlogd signs every shard's checkpoint as the export
// starts (a synced write each), so a larger spread suggests a shard's entry
// taken from another export (ExportVerification::completeness_unproven).
inline constexpr absl::Duration kExportSigningSpread = absl::Seconds(60);
// The topic of the access trail (ExportTrailRequest.access_trail).
inline constexpr char kAccessTrailTopic[] = "predlog.access";

// The topics whose shards an export with `filter` reads whole (every record,
// or every record appended in [from, to)): kExportAllTopics for `all`,
// kAccessTrailTopic for `access_trail`; none for a subject or model export,
// which picks records from its shards.
std::vector<std::string> WholeLogTopics(const predlog::v1::ExportTrailRequest& filter);

// Whether `prediction` is in `set` (ExportTrailRequest.predictions): made by
// one of its model versions, or reading one of its datasets (by name and
// version). The server picks an export's records with it and VerifyExport
// checks each record of the file with it.
bool InPredictionSet(const predlog::v1::PredictionSet& set,
                     const predlog::v1::PredictionLogged& prediction);

struct ExportVerification {
  uint64_t records_checked = 0;
  // With a verifier key, when consistent: every shard's checkpoint is signed
  // by that key for that shard's log, and every range of the file is proven
  // to be those records of the log the checkpoint signs.
  bool proven = false;
  // proven and ok, for an export of whole logs (everything, or the access trail): also no
  // record is missing.
  // Every shard of its WholeLogTopics that the checkpoints' predlog-shards line
  // names is in the manifest (one left out fails), and each holds every
  // record below its checkpoint or, with from/to, every record appended in
  // [from, to): its edges (the records just before and after its run,
  // manifest format 4) are proven to be outside [from, to), and the shard's
  // append times never go back. Subject or model exports prove what they
  // hold, not that nothing was left out (the server chose the records).
  bool complete_proven = false;
  // The topics whose shards the export holds whole (WholeLogTopics of its
  // filter): what complete_proven is about.
  std::vector<std::string> whole_log_topics;
  // When complete_proven for a time range: "[FROM, TO)" (RFC 3339 UTC, "-"
  // for an open end), the manifest's filter the completeness is of. The
  // filter is the manifest's own claim, not signed: whoever relies on
  // completeness must check it is the range they asked for.
  std::string complete_range;
  // With a key, when proven, for an export of everything that is not
  // complete_proven: why, one line each (checkpoints that name no set of
  // shards, a manifest before format 4 without edges, an edge record
  // without an append time).
  std::vector<std::string> completeness_unproven;
  std::vector<VerifiedCheckpoint> checkpoints;  // with a key, when consistent
  // With a key: ranges the server sent without a proof because it could not
  // read a tree node next to an unreadable record ("range 3..9 of
  // predlog.events-1"); the export is then not proven (and incomplete).
  std::vector<std::string> unproven;
  // Every check passed: the file is the one the manifest describes.
  bool consistent = false;
  // consistent, and the manifest lists no unreadable range: the export is
  // verified and complete.
  bool ok = false;
  // When !consistent: the first failure, naming the record, e.g.
  // "line 12 (predlog.events-1#57): leaf_sha256 does not match the event bytes" or
  // "predlog.events-1#58 is listed in the manifest but missing from the file" or
  // "line 9 (predlog.events-0#3): out of log order after predlog.events-0#5 on line 8".
  // When consistent but not ok: that records could not be read, e.g. "the
  // export is incomplete: 7 records in 1 range could not be read when it was
  // made (predlog.events-1 records 57..63: ...)".
  std::string failure;
  // The manifest's unreadable ranges, shard by shard in log order (filled
  // once the manifest's own checks passed).
  std::vector<UnreadableRange> unreadable;
  // A subject or model export: its unreadable records may or may not have
  // matched its filter, and only an export of everything is checked for gaps.
  bool filtered = false;
  // When consistent: what CheckAgainstServer asks the live shards for.
  std::vector<ChainClaim> claims;
};

struct VerifyOptions {
  // A verifier key ("name+id+base64", storage/signed_note.h: what predlogd
  // prints and keeps in <checkpoint key>.pub). Empty: checkpoints and range
  // proofs are not checked, and the export proves itself only as far as the
  // manifest is trusted. Given: each shard must carry a checkpoint this key
  // signed for origin "<key name>/<shard>", each range must be proven
  // against it (storage/merkle.h MerkleRangeProof over RecordMerkleLeaf of
  // its records, so bytes and append times are both covered), and an
  // export of everything must start at 0 without `from` and reach the
  // checkpoint's size without `to`, or prove its edges with them, and hold
  // every shard of its WholeLogTopics its checkpoints name; all checkpoints
  // must name the same set of shards. So re-encoded, forged or appended
  // records fail, however the manifest was rewritten, and in an export of
  // everything dropped or truncated ones and left-out shards too.
  std::string verifier_key;
  // With verifier_key: every shard's checkpoint must have been signed at
  // most this long before `now` (its predlog-signed-at line); one older, or
  // without a signing time, fails naming the shard. InfiniteDuration: not
  // checked.
  absl::Duration not_older_than = absl::InfiniteDuration();
  // What not_older_than is measured from; InfinitePast: absl::Now().
  absl::Time now = absl::InfinitePast();
};

// Offline check of an export: reads `manifest_path` and the file it names
// (resolved relative to the manifest's directory when `file_path` is empty,
// else `file_path`). Error statuses only for inputs it cannot use: NOT_FOUND /
// PERMISSION_DENIED / INTERNAL for unreadable files, INVALID_ARGUMENT for a
// manifest that does not parse or names an unknown format,
// FAILED_PRECONDITION for a manifest format_version not in 1..4. A bad export
// is consistent=false with `failure`; an incomplete one ok=false.
// With options.verifier_key also the checkpoints and proofs (VerifyOptions);
// INVALID_ARGUMENT for a key that does not parse, or a finite
// not_older_than without a key (a time is only proven by its signature).
absl::StatusOr<ExportVerification> VerifyExport(const std::string& file_path,
                                                const std::string& manifest_path,
                                                const VerifyOptions& options = {});

// The stored values at `positions` (at most `max_positions` per call), in
// that order, from the live server (Audit.GetChainValues).
using ChainValueFetcher = std::function<absl::StatusOr<std::vector<predlog::v1::ChainValue>>(
    const std::vector<predlog::v1::Position>& positions)>;

struct ServerCheck {
  uint64_t claims_checked = 0;
  // One line per claim the live shard contradicts or cannot answer, e.g.
  // "predlog.events-1#57: the chain_sha256 anchor of range 40..57 is 3f0c…,
  // the server's shard has 9ab1…" or "predlog.events-1#90: the server
  // cannot confirm the chain_sha256 anchor of range 80..90: NOT_FOUND: ...".
  std::vector<std::string> mismatches;
};

// Compares `verification.claims` with the live shards' values, fetched
// `max_positions` at a time. A call that fails with NOT_FOUND or DATA_LOSS
// is asked again one position at a time, so each claim it cannot confirm
// is a mismatch of its own; any other error (the server unreachable, ...)
// is returned. INTERNAL when the server answers with the wrong positions.
absl::StatusOr<ServerCheck> CheckAgainstServer(const ExportVerification& verification,
                                               size_t max_positions,
                                               const ChainValueFetcher& fetch);

// Signed checkpoints kept in a file, and which shards the file speaks for.
struct CheckpointSet {
  std::vector<predlog::v1::ShardCheckpoint> checkpoints;
  // The topics whose shards the file was meant to hold: kExportAllTopics for
  // the manifest of an export of everything (which leaves the access trail
  // out); empty, meaning every shard, for any other file. A manifest's
  // filter is not signed, so only this one exception is read from it: a
  // forged filter can excuse the access trail's absence, never a shard of
  // predlog.events or predlog.registry.
  std::vector<std::string> topics;

  // Whether the file was meant to hold `shard` ("<topic>-<partition>").
  bool Covers(absl::string_view shard) const;
};

// The signed checkpoints of a file: an export manifest (its shards'
// checkpoints) or what `predlog checkpoint --out` writes (a
// predlog.v1.SignCheckpointsResponse in the protobuf JSON mapping). Errors
// name the path: NOT_FOUND / PERMISSION_DENIED / INTERNAL for reading,
// INVALID_ARGUMENT when it is neither or holds no checkpoint.
absl::StatusOr<CheckpointSet> ReadCheckpoints(const std::string& path);

// The RFC 6962 consistency proof of a shard's tree from old_size to
// new_size, lower-case hex (Audit.GetConsistencyProof).
using ConsistencyProofFetcher = std::function<absl::StatusOr<std::vector<std::string>>(
    const std::string& shard, uint64_t old_size, uint64_t new_size)>;

struct ConsistencyCheck {
  // One line per shard in both sets, e.g. "predlog.events-1: 120 -> 480
  // records, consistent", in the newer set's order.
  std::vector<std::string> consistent;
  // One line per shard that fails, naming why: a checkpoint not signed by
  // the key or of another log, a newer checkpoint smaller than the older,
  // equal sizes with other roots, a consistency proof that does not verify
  // (the log lost or rewrote records), or one the server cannot give.
  std::vector<std::string> failures;
  // Shards only in the newer set (named; neither consistent nor failed). A
  // shard only in the older set is a failure when the newer set was meant
  // to hold it (CheckpointSet::Covers): the newer set may hide it.
  std::vector<std::string> unmatched;
  // Shards only in the older set that the newer was not meant to hold (the
  // access trail beside an export of everything): not checked, by name.
  std::vector<std::string> unchecked;
};

// Checks that each shard's checkpoint in `newer` extends its checkpoint in
// `older`: both signed by `verifier_key` for origin "<key name>/<shard>",
// and (sizes differing) an RFC 9162 §2.1.4.2 consistency proof from `fetch`
// verifying between their roots. The server is not trusted: a proof that
// does not verify is a failure. INVALID_ARGUMENT for a key that does not
// parse; a fetch error other than NOT_FOUND, OUT_OF_RANGE, INVALID_ARGUMENT
// or DATA_LOSS (which are failures of their shard) is returned.
absl::StatusOr<ConsistencyCheck> CheckConsistency(const CheckpointSet& older,
                                                  const CheckpointSet& newer,
                                                  absl::string_view verifier_key,
                                                  const ConsistencyProofFetcher& fetch);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_EXPORT_TRAIL_EXPORT_H_
