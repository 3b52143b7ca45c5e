// INTERNAL to storage/: do not include this header from anywhere but the
// shard_*.cc files that implement ShardStore. Everything else uses
// storage/shard_store.h, the public contract.
//
// It holds the ShardStore::Impl class and what its pieces share: the column
// families, the head encoding, key helpers. ShardStore is implemented in:
//   shard_store.cc      Open and recovery (OpenDb), the public forwarding methods
//   shard_fold.cc       ApplyBatch: the fold of a batch into one WriteBatch
//   shard_reads.cc      Get, scans, CutAtTime, rejected, state, registry, Verify
//   shard_snapshots.cc  snapshots: create, list, open, prune, orphan removal
//   shard_backup.cc     backups (RocksDB BackupEngine): create, verify, restore
//
// On-disk format of a shard (RocksDB under <dir>/db, column families below).
// Integers are big-endian fixed width (storage/key_codec.h); lp(s) is a u32
// length followed by the bytes; time is microseconds since the epoch,
// sign-flipped so that byte order is time order.
//
//   events        key: index:u64
//                 value: format:u8(=2) leaf:32 chain:32 incarnation:u32 offset:i64
//                        appended_at:i64 payload
//                 (format 1, before shard format 3, has no appended_at)
//                 (a SourceReset record, written by the shard, has offset -1 in the new
//                 incarnation: it comes before that incarnation's first message)
//                 Write-once. payload = the AuditEvent bytes exactly as folded;
//                 leaf = SHA-256(payload); chain = SHA-256(previous chain || leaf).
//   by_prediction key: prediction_id            value: index:u64
//   by_subject    key: lp(subject_id) served_at:time index:u64      value: empty
//   by_model      key: lp(name) lp(version) served_at:time index:u64 value: empty
//   by_time       key: appended_at:time index:u64                    value: empty
//                 (appended_at: the shard's own clock when it appended the record,
//                 never earlier than the record before it, so key order = log order;
//                 shards of format 2 keyed it by the producer's recorded_at, and
//                 OpenDb rewrites their keys once to the running maximum)
//   by_trace      key: lp(trace_id) served_at:time index:u64         value: empty
//                 (predictions with a trace_id only)
//   by_source     key: lp(dataset name) lp(dataset version) served_at:time index:u64
//                 value: lp(model name) lp(model version)
//                 (PredictionLogged.data_sources: one key per distinct name and
//                 version among them, valued with the prediction's model so that
//                 counting per model version reads no record; applied predictions
//                 only. Format 4; OpenDb builds it from events for older shards.)
//   by_entity     key: lp(entity_type) lp(entity_id) recorded_at:time index:u64
//                 value: empty
//                 (an entity's history: one key per applied EntityChanged, never
//                 for a rejected or redelivered message. recorded_at is the
//                 envelope's AuditEvent.recorded_at, the producer's time, as
//                 by_subject keys the producer's served_at: a support timeline
//                 interleaves a customer's changes with its predictions, and
//                 both then sort by the clock of the systems that made them;
//                 EntityChanged carries no time of its own, and appended_at,
//                 the shard's clock, already orders the log itself. An event
//                 without recorded_at (a producer writing to Kafka may omit it)
//                 is keyed by its appended_at, the latest time it can have
//                 happened; one without either (written before shard format 3)
//                 by the Unix epoch.
//                 Format 5; OpenDb builds it from events for older shards.)
//   state         key: 'E' lp(type) lp(id)       value: EntityState
//                      'M' lp(name) lp(version)  value: index:u64 leaf:32 ModelRegistered
//                      'S' lp(name) lp(version)  value: index:u64 leaf:32 DatasetRegistered
//                      'D' lp(route) lp(name) lp(version)
//                                                value: index:u64 leaf:32 ModelDeployed
//                                                (the latest deploy of that model on the route)
//                 (index and leaf: the record that set the value)
//   merkle        key: level:u8 index:u64                            value: hash:32
//                 The RFC 6962 Merkle tree over the log (storage/merkle.h), as its
//                 perfect subtrees: leaves [index << level, (index + 1) << level).
//                 Leaf i is record i (RecordMerkleLeaf in shard_store.h, computed
//                 from the record's header, so level 0 is not stored) or, for an
//                 index whose record was lost, LostMerkleLeaf (stored at level 0).
//                 Written in the WriteBatch of the append that completes the
//                 subtree; write-once.
//   rejected      key: seq:u64
//                 value: format:u8(=1) kind:u8 incarnation:u32 offset:i64
//                        has_original:u8 original_index:u64 lp(reason) payload
//   meta          "format"                    value: u32 (kShardFormat; 2 added by_trace,
//                                             3 keys by_time by append time and adds
//                                             the merkle column family, 4 adds by_source,
//                                             5 adds by_entity)
//                 "head"                      value: see EncodeHead
//                 "incarnation/" seq:u32      value: last_offset:i64 name
//                 (last_offset: the last offset folded from it, written when the
//                 shard moves on to a newer incarnation; -1 while it is current,
//                 whose position lives in the head)
//                 "snapshot/" index:u64       value: created_at:time
//                 "checkpoint/" size:u64      value: a signed checkpoint note
//                                             (ShardStore::SignCheckpoint)
//
// Incarnations are numbered from 1 in the order the shard first saw them;
// records store the number, the name lives once in meta. Number 0 is the
// direct source (kDirectSource: the gateway's appends), whose position is the
// head's direct_appends.
#ifndef PREDLOG_STORAGE_SHARD_STORE_IMPL_H_
#define PREDLOG_STORAGE_SHARD_STORE_IMPL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/message.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "storage/acked_mark.h"
#include "storage/key_codec.h"
#include "storage/merkle.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"

namespace predlog::storage {
namespace internal {

// Value formats of records, the head and rejected records. The shard's own
// format (kShardFormat, meta "format") is checked by OpenDb in shard_store.cc.
// Record format 1 had no appended_at; 2 appends it to the header.
inline constexpr uint8_t kRecordFormat = 2;
// Head format 1 had no direct_appends (read as 0); 2 appends it.
inline constexpr uint8_t kHeadFormat = 3;
inline constexpr uint8_t kRejectedFormat = 1;

// The column families, in the order of kCfNames.
enum Cf : int {
  kDefaultCf,
  kEventsCf,
  kByPredictionCf,
  kBySubjectCf,
  kByModelCf,
  kByTimeCf,
  kByTraceCf,
  kStateCf,
  kMetaCf,
  kRejectedCf,
  kMerkleCf,
  kBySourceCf,
  kByEntityCf,
  kNumCfs
};
inline constexpr const char* kCfNames[kNumCfs] = {
    "default", "events", "by_prediction", "by_subject", "by_model",  "by_time",  "by_trace",
    "state",   "meta",   "rejected",      "merkle",     "by_source", "by_entity"};

inline constexpr absl::string_view kHeadKey = "head";
inline constexpr absl::string_view kIncarnationPrefix = "incarnation/";
inline constexpr absl::string_view kCheckpointPrefix = "checkpoint/";

inline constexpr char kEntityTag = 'E';
inline constexpr char kModelTag = 'M';
inline constexpr char kDatasetTag = 'S';
inline constexpr char kDeploymentTag = 'D';

inline absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(context, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(message);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

inline rocksdb::Slice ToSlice(absl::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
inline absl::string_view ToView(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

// The payload of an events value (the event bytes after the record header of
// its record format); false when the header is not one.
inline bool RecordPayload(absl::string_view value, absl::string_view* payload) {
  if (value.empty()) return false;
  const uint8_t format = static_cast<uint8_t>(value[0]);
  if (format < 1 || format > kRecordFormat) return false;
  // format:u8 leaf:32 chain:32 incarnation:u32 offset:i64 [appended_at:i64]
  const size_t header = 1 + 32 + 32 + 4 + 8 + (format >= 2 ? 8 : 0);
  if (value.size() < header) return false;
  *payload = value.substr(header);
  return true;
}

// head := format:u8 next_index:u64 next_rejected:u64 chain:32 incarnation:u32
//         last_offset:i64 applied:u64 duplicates:u64 conflicts:u64 rejected:u64
//         redelivered:u64 source_resets:u64 gaps:u64 direct_appends:u64 (format 2)
//         misrouted:u64 (format 3)
struct HeadState {
  ShardHead head;
  uint32_t incarnation_seq = 0;  // 0: no message folded yet
  // The Merkle tree's right edge over [0, head.next_index): not in the head's
  // bytes, loaded from the merkle column family on open.
  MerkleFrontier tree;
};

// The key of a Merkle tree node: level:u8 index:u64, appended to `out`.
inline void AppendMerkleKey(std::string* out, uint8_t level, uint64_t index) {
  AppendU8(out, level);
  AppendU64(out, index);
}
inline std::string MerkleKey(uint8_t level, uint64_t index) {
  std::string key;
  AppendMerkleKey(&key, level, index);
  return key;
}

inline void EncodeHead(const HeadState& h, std::string* out) {
  out->clear();
  AppendU8(out, kHeadFormat);
  AppendU64(out, h.head.next_index);
  AppendU64(out, h.head.next_rejected);
  out->append(h.head.chain_head.begin(), h.head.chain_head.end());
  AppendU32(out, h.incarnation_seq);
  AppendI64(out, h.head.last_source ? h.head.last_source->offset : -1);
  const ShardCounters& c = h.head.counters;
  for (uint64_t v : {c.applied, c.duplicates, c.conflicts, c.rejected, c.redelivered,
                     c.source_resets, c.gaps, h.head.direct_appends, c.misrouted}) {
    AppendU64(out, v);
  }
}

inline bool ReadDigest(absl::string_view* in, Digest* d) {
  absl::string_view bytes;
  if (!ReadBytes(in, d->size(), &bytes)) return false;
  std::copy(bytes.begin(), bytes.end(), d->begin());
  return true;
}

// The state value of registry-like bodies (models, datasets, deployments):
// index:u64 leaf:32 body, the record that set it and the body itself.
inline std::string IndexedState(uint64_t index, const Digest& leaf,
                                const google::protobuf::Message& body) {
  std::string value;
  AppendU64(&value, index);
  value.append(leaf.begin(), leaf.end());
  body.AppendToString(&value);
  return value;
}

// The inverse of IndexedState; false when `value` does not decode.
inline bool ParseIndexedState(absl::string_view value, uint64_t* index, Digest* leaf,
                              google::protobuf::Message* body) {
  return ReadU64(&value, index) && ReadDigest(&value, leaf) &&
         body->ParseFromArray(value.data(), static_cast<int>(value.size()));
}

// Decodes everything but the incarnation name, which the caller resolves.
inline bool DecodeHead(absl::string_view in, HeadState* h, int64_t* last_offset) {
  uint8_t format;
  ShardCounters& c = h->head.counters;
  h->head.direct_appends = 0;
  c.misrouted = 0;
  return ReadU8(&in, &format) && format >= 1 && format <= kHeadFormat &&
         ReadU64(&in, &h->head.next_index) && ReadU64(&in, &h->head.next_rejected) &&
         ReadDigest(&in, &h->head.chain_head) && ReadU32(&in, &h->incarnation_seq) &&
         ReadI64(&in, last_offset) && ReadU64(&in, &c.applied) && ReadU64(&in, &c.duplicates) &&
         ReadU64(&in, &c.conflicts) && ReadU64(&in, &c.rejected) && ReadU64(&in, &c.redelivered) &&
         ReadU64(&in, &c.source_resets) && ReadU64(&in, &c.gaps) &&
         (format < 2 || ReadU64(&in, &h->head.direct_appends)) &&
         (format < 3 || ReadU64(&in, &c.misrouted)) && in.empty();
}

inline std::string IncarnationKey(uint32_t seq) {
  std::string key(kIncarnationPrefix);
  AppendU32(&key, seq);
  return key;
}

inline std::string StateKey2(char tag, absl::string_view a, absl::string_view b) {
  std::string key(1, tag);
  AppendLengthPrefixed(&key, a);
  AppendLengthPrefixed(&key, b);
  return key;
}

// Puts the by_source entries of prediction `p`, record `index_key` (IndexKey),
// into `batch`: one per distinct (name, version) among p.data_sources, keyed
// with `served_at` and valued with p's model. `key` and `value` are the
// caller's scratch buffers (the fold reuses its own). Shared by the fold and
// the format-4 upgrade, so both write the same entries.
void PutDataSourceEntries(const predlog::v1::PredictionLogged& p, absl::Time served_at,
                          absl::string_view index_key, rocksdb::ColumnFamilyHandle* by_source,
                          rocksdb::WriteBatch* batch, std::string* key, std::string* value);

// Puts the by_entity entry of EntityChanged event `event`, record
// `index_key` (IndexKey) appended at `appended_at` (nullopt: a record
// without one), into `batch`; `key` is the caller's scratch buffer. Shared by
// the fold and the format-5 upgrade, so both write the same entry.
void PutEntityEntry(const predlog::v1::AuditEvent& event, std::optional<absl::Time> appended_at,
                    absl::string_view index_key, rocksdb::ColumnFamilyHandle* by_entity,
                    rocksdb::WriteBatch* batch, std::string* key);

// A source incarnation the shard has folded from.
struct Incarnation {
  std::string name;
  int64_t last_offset = -1;  // meaningful once superseded
};

// A message the current batch already folded, for duplicate checks against
// records not yet in RocksDB.
struct PendingRecord {
  uint64_t index;
  Digest leaf;
  absl::string_view payload;
};

}  // namespace internal

class ShardStore::Impl {
 public:
  Impl(ShardOptions options, std::string db_path)
      : options_(std::move(options)), db_path_(std::move(db_path)) {
    constexpr size_t kArenaBlockBytes = 256 << 10;
    arena_block_ = std::make_unique<char[]>(kArenaBlockBytes);
    google::protobuf::ArenaOptions arena_options;
    arena_options.initial_block = arena_block_.get();
    arena_options.initial_block_size = kArenaBlockBytes;
    arena_ = std::make_unique<google::protobuf::Arena>(arena_options);
  }
  ~Impl() {
    if (db_ != nullptr) {
      for (auto* h : cfs_) {
        if (h != nullptr) db_->DestroyColumnFamilyHandle(h);
      }
      db_->Close();
    }
  }

  absl::Status OpenDb();
  absl::StatusOr<BatchResult> ApplyBatch(absl::Span<const SourceMessage> messages);
  const std::optional<LostRecords>& lost() const { return lost_; }
  // Called by ShardStore once it owns this Impl / before it goes.
  void AttachToGroup(const ShardStore* shard);
  void DetachFromGroup();
  // The DATA_LOSS status of a write while lost_ is set.
  absl::Status LostError() const;

  ShardHead Head() const {
    absl::MutexLock lock(&mu_);
    return head_.head;
  }
  ShardCounters Counters() const {
    absl::MutexLock lock(&mu_);
    return head_.head.counters;
  }

  absl::StatusOr<StoredRecord> Get(uint64_t index) const;
  absl::StatusOr<StoredRecord> GetByPredictionId(absl::string_view prediction_id) const;
  absl::StatusOr<std::vector<StoredRecord>> ReadRange(uint64_t from_index, size_t limit) const;
  absl::StatusOr<ScanPage> ScanIndex(internal::Cf cf, const std::string& prefix,
                                     const TimeRange& range, absl::string_view cursor,
                                     size_t limit) const;
  // Calls `visit` with the entries of a prediction index (by_model,
  // by_source) under `prefix` in `range` until it returns false.
  // `with_model`: values hold the prediction's model (by_source).
  absl::Status VisitIndex(internal::Cf cf, const std::string& prefix, const TimeRange& range,
                          bool with_model, absl::FunctionRef<bool(const IndexEntry&)> visit) const;
  // OK, or FAILED_PRECONDITION naming the shard when it has no complete
  // by_source (an older format opened read-only).
  absl::Status CheckDataSourceIndex() const;
  // OK, or FAILED_PRECONDITION naming the shard when it has no complete
  // by_entity (format 4 or older opened read-only).
  absl::Status CheckEntityIndex() const;
  absl::StatusOr<uint64_t> CutAtTime(absl::Time t) const;
  absl::StatusOr<std::vector<RejectedRecord>> ListRejected(uint64_t from_seq, size_t limit) const;
  absl::StatusOr<std::string> GetState(const std::string& key, absl::string_view what) const;
  // Calls `fn` with the value of every state entry whose key starts with `tag`.
  absl::Status ForEachState(char tag,
                            const std::function<absl::Status(absl::string_view)>& fn) const;
  absl::StatusOr<VerifyReport> Verify() const;
  absl::StatusOr<Digest> TreeRoot(uint64_t size) const;
  absl::StatusOr<std::vector<Digest>> InclusionProof(uint64_t index, uint64_t size) const;
  absl::StatusOr<std::vector<Digest>> ConsistencyProof(uint64_t old_size, uint64_t size) const;
  absl::StatusOr<std::vector<Digest>> RangeProof(uint64_t begin, uint64_t end, uint64_t size,
                                                 MerkleNodeCache* cache) const;
  absl::StatusOr<std::string> SignCheckpoint(const NoteSigner& signer, absl::string_view origin,
                                             const std::vector<std::string>& extensions,
                                             absl::Duration reuse_within);
  // The signed note of the checkpoint of the first `size` records, signed at
  // `now` with `extensions` after its signed-at line; keeps nothing.
  absl::StatusOr<std::string> SignCheckpointText(const NoteSigner& signer, absl::string_view origin,
                                                 uint64_t size,
                                                 const std::vector<std::string>& extensions,
                                                 absl::Time now) const;
  absl::StatusOr<std::string> LatestCheckpoint() const;
  absl::StatusOr<std::string> CheckpointAt(uint64_t size) const;
  absl::StatusOr<SnapshotInfo> CreateSnapshot(absl::Time now);
  absl::StatusOr<std::vector<SnapshotInfo>> ListSnapshots() const;
  absl::StatusOr<int> PruneSnapshots(const RetentionPolicy& policy, absl::Time now);
  absl::Status Compact();
  absl::StatusOr<ShardBackupInfo> Backup(const std::string& backup_dir) const;
  // Deletes the catalog entries of snapshots whose directory is missing (a
  // restored backup holds none). Writable shards only.
  absl::Status UncatalogMissingSnapshots();

  const ShardOptions& options() const { return options_; }
  uint64_t read_corruptions() const { return read_corruptions_.load(std::memory_order_relaxed); }
  std::string SnapshotDir() const {
    return (std::filesystem::path(options_.dir) / "snapshots").string();
  }

 private:
  // Per-batch writer state; reset at the start of each ApplyBatch.
  struct BatchState {
    internal::HeadState h;
    // Incarnations registered or superseded by this batch, published after the write.
    std::vector<std::pair<uint32_t, internal::Incarnation>> incarnation_updates;
    uint32_t new_incarnations = 0;
    // The source of the message being folded: 0 (kDirectSource) for a direct
    // append, else the current Kafka incarnation.
    uint32_t source_seq = 0;
  };

  absl::StatusOr<StoredRecord> DecodeRecord(uint64_t index, absl::string_view value) const;
  // FromRocks for reads: a Corruption (a block whose checksum fails, a
  // damaged file) is also counted in read_corruptions_ and logged, so status,
  // /metrics and the log show a damaged shard, not only the caller.
  absl::Status ReadStatus(const rocksdb::Status& s, absl::string_view context) const;
  absl::StatusOr<std::string> GetRaw(internal::Cf cf, absl::string_view key,
                                     absl::string_view what) const;
  absl::Status RemoveOrphanSnapshots();
  // Opens the acked mark of the main shard and compares it with the
  // recovered head (setting lost_), or accepts the loss.
  absl::Status CheckAckedMark();
  // RESOURCE_EXHAUSTED when writing `messages` would leave less than
  // options_.min_free_bytes free on the shard's filesystem.
  absl::Status CheckFreeSpace(absl::Span<const SourceMessage> messages) const;
  // Predictions in by_subject whose subject belongs to another partition
  // (options_.group): the misrouted count of a head written before format 3.
  absl::StatusOr<uint64_t> CountMisroutedSubjects() const;
  // Reads the latest append time from by_time into last_appended_at_. A
  // shard of format 2 (by_time keyed by producers' recorded_at) opened
  // writable first gets its keys rewritten to the running maximum in log
  // order, capped at now, in one synced WriteBatch, so its cuts are prefixes
  // too (OpenDb writes the new format marker after the Merkle tree is built;
  // a crash before it redoes both, which changes nothing the second time).
  absl::Status LoadAppendTime(uint32_t format);
  // Writes the Merkle tree of a shard of format 2 (which had none) from its
  // records, in WriteBatches of a few thousand leaves; idempotent, so a crash
  // halfway is repaired by the next open.
  absl::Status BuildMerkleTree();
  // The one pass of a backfill: every record of the log whose event `wanted`
  // accepts goes to `put` (its index, its events key and value, its event)
  // with a WriteBatch that is written every few thousand entries and at the
  // end. `what` names the index in errors and the log line. DATA_LOSS for a
  // record that does not decode; `put`'s errors as they are.
  absl::Status BackfillIndex(
      absl::string_view what, const std::function<bool(const predlog::v1::AuditEvent&)>& wanted,
      const std::function<absl::Status(uint64_t index, absl::string_view key,
                                       absl::string_view value, const predlog::v1::AuditEvent&,
                                       rocksdb::WriteBatch*)>& put);
  // Writes by_source for a shard of format 3 or older (which had none) from
  // its prediction records, in WriteBatches of a few thousand records;
  // idempotent like BuildMerkleTree (OpenDb writes format 4 after it).
  absl::Status BuildDataSourceIndex();
  // Writes by_entity for a shard of format 4 or older (which had none) from
  // its EntityChanged records, batched and idempotent like
  // BuildDataSourceIndex (OpenDb writes format 5 after it).
  absl::Status BuildEntityIndex();
  // Appends leaf `leaf_hash` to b's tree and puts the nodes it completes
  // into batch_: its parents, and the leaf itself only when `keep_leaf` (a
  // lost index: a record's leaf is read from its header instead).
  void AppendMerkleLeaf(const Digest& leaf_hash, bool keep_leaf, BatchState* b);
  // Reads tree nodes from the merkle column family (at `snapshot`, or the
  // latest state when null). Valid while this Impl lives.
  MerkleNodeReader NodeReader(const rocksdb::Snapshot* snapshot) const;
  // OK when the tree covers `size` leaves: OUT_OF_RANGE beyond the log,
  // FAILED_PRECONDITION for a shard of format 2 opened read-only.
  absl::Status CheckTreeSize(uint64_t size) const;
  // The append time of a batch starting now: options_.clock() (absl::Now()
  // by default), or the shard's latest append time when the clock is behind
  // it. Advances last_appended_at_.
  absl::Time NextAppendTime();
  // One attempt at ApplyBatch. Sets blocked_on_ (and returns no result) when
  // another shard's fold holds a prediction_id this batch meets.
  absl::StatusOr<BatchResult> TryApplyBatch(absl::Span<const SourceMessage> messages);
  // Writes the RecordsLost record for lost_ and clears it.
  absl::Status AcceptLoss();

  // Writer-side fold steps. All write into batch_ only.
  void FoldMessage(const SourceMessage& m, BatchState* b, MessageResult* r);
  void FoldPrediction(const SourceMessage& m, BatchState* b, MessageResult* r);
  // Folds a registry-like event keyed by `state_key` (name@version): a repeat
  // with equal body is a duplicate, with another body a conflict; a new
  // dataset or model that would close a lineage cycle is rejected
  // (FindLineageCycle).
  void FoldKeyedBody(const SourceMessage& m, const std::string& state_key,
                     const google::protobuf::Message& body, BatchState* b, MessageResult* r);
  void FoldEntityChange(const SourceMessage& m, BatchState* b, MessageResult* r);
  // The lineage cycle that registering state key `node` (a dataset or a
  // model) with lineage parents `parents` (state keys) would close, as the
  // path "dataset A@1 <- dataset B@1 <- dataset A@1" (each derived from or
  // trained on the next), or nullopt. Walks the state as this batch leaves
  // it (ReadStateForWrite), so registrations earlier in the batch count.
  absl::StatusOr<std::optional<std::string>> FindLineageCycle(const std::string& node,
                                                              std::vector<std::string> parents);
  // Starts a fresh, empty event_ on the reset arena.
  void NewEvent() {
    event_ = nullptr;
    arena_->Reset();
    event_ = google::protobuf::Arena::CreateMessage<predlog::v1::AuditEvent>(arena_.get());
    folded_ = event_;
  }
  // Appends a record for the event in `event_` whose bytes are `payload`.
  uint64_t AppendRecord(absl::string_view payload, int64_t offset, BatchState* b, Digest* leaf);
  // Keeps `m` in rejected; `source_seq` is the incarnation it came from.
  void Reject(const SourceMessage& m, uint32_t source_seq, RejectKind kind,
              std::optional<uint64_t> original, std::string reason, BatchState* b,
              MessageResult* r);
  // The incarnation named `name`, as this batch left it, or nullopt if new.
  std::optional<std::pair<uint32_t, internal::Incarnation>> FindIncarnation(
      absl::string_view name, const BatchState& b) const;
  // The name of incarnation `seq`; reads meta when a concurrent batch has
  // written it but not yet published it.
  std::string IncarnationName(uint32_t seq) const;
  // System records (written by the shard, not folded from the source): start
  // one in event_ with the envelope filled in, then append it.
  void StartSystemEvent(absl::string_view kind, const BatchState& b);
  uint64_t AppendSystemEvent(BatchState* b, Digest* leaf);
  // Records that m's offsets [gap_first_offset, offset] are gone from the source.
  void WriteSourceGap(const SourceMessage& m, BatchState* b, MessageResult* r);
  void WriteSourceReset(const std::string& previous, int64_t previous_offset,
                        absl::string_view incarnation, int64_t first_offset, BatchState* b);
  // Reads `key` from the batch's overlay, else RocksDB. nullopt if absent.
  absl::StatusOr<std::optional<std::string>> ReadStateForWrite(const std::string& key);
  void PutState(const std::string& key, std::string value);

  ShardOptions options_;
  std::string db_path_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;
  rocksdb::WriteOptions write_options_;
  // The synced acknowledgement mark (main shard, writable); null otherwise.
  std::unique_ptr<AckedMark> mark_;
  std::string mark_identity_;  // this database's identity, written into the mark
  // Set by OpenDb when acknowledged records are missing; constant after.
  std::optional<LostRecords> lost_;

  mutable std::atomic<uint64_t> read_corruptions_{0};
  mutable absl::Mutex mu_;
  internal::HeadState head_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, internal::Incarnation> incarnations_ ABSL_GUARDED_BY(mu_);

  // Writer-only scratch, reused across batches so the hot path does not allocate.
  rocksdb::WriteBatch batch_;
  // The message being folded is parsed into arena_, which is reset before
  // each message: parsing allocates from one reused block instead of malloc.
  std::unique_ptr<char[]> arena_block_;
  std::unique_ptr<google::protobuf::Arena> arena_;
  predlog::v1::AuditEvent* event_ = nullptr;  // owned by arena_, valid for one message
  // The event being folded: event_, or a direct append's own parsed event.
  const predlog::v1::AuditEvent* folded_ = nullptr;
  predlog::v1::AuditEvent original_;
  std::string key_;
  std::string header_;
  std::string original_payload_;  // a stored record a new message is compared with
  absl::Status batch_error_;      // first RocksDB read error inside a batch
  absl::flat_hash_map<std::string, internal::PendingRecord> batch_predictions_;
  absl::flat_hash_map<std::string, std::string> state_overlay_;
  // The append time of the batch being folded (NextAppendTime): every
  // record of the batch carries it, and the shard's own records are stamped
  // with it.
  absl::Time batch_time_;
  // Nodes completed by the leaf being appended (AppendMerkleLeaf's scratch).
  std::vector<MerkleNode> completed_;
  // False only for a format-2 shard opened read-only: it has no tree.
  bool has_tree_ = true;
  // False only for a shard of format 3 or older opened read-only: its
  // by_source is missing or incomplete.
  bool has_source_index_ = true;
  // False only for a shard of format 4 or older opened read-only: its
  // by_entity is missing or incomplete.
  bool has_entity_index_ = true;
  std::string source_value_;  // the fold's by_source value (PutDataSourceEntries)
  // The latest append time written or being written; only the fold (one at
  // a time) and OpenDb touch it.
  absl::Time last_appended_at_ = absl::InfinitePast();
  // prediction_ids this batch reserved in options_.group, released after it.
  std::vector<std::string> reserved_;
  // The id another shard's fold holds, which stopped this attempt.
  std::optional<std::string> blocked_on_;
};

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_SHARD_STORE_IMPL_H_
