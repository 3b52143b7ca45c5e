// ShardStore: one shard (= one Kafka partition) as a RocksDB instance, folding
// batches of source messages into an append-only, hash-chained log plus indexes
// and state, exactly once.
//
// Exactly-once rests on one rule: every ApplyBatch is ONE RocksDB WriteBatch
// that also writes the shard's head (last folded source position, next index,
// chain head, counters). After a crash the caller resumes right after
// Head().last_source; a message at or before it is recognised as redelivered
// and skipped, so nothing is lost and nothing is folded twice. Messages from a
// source incarnation the shard has moved on from are redeliveries up to that
// incarnation's last folded offset and rejected records after it.
//
// Positions: records are numbered by the shard's own gap-free index from 0.
// Kafka offsets are only the *source* of a record: when the source starts over
// (a new incarnation: a restarted embedded broker, a recreated topic), the shard
// writes a SourceReset record and its log simply continues.
//
// Thread-safety: ApplyBatch, CreateSnapshot and PruneSnapshots are externally
// synchronized (one writer per shard). Every other method is thread-safe and
// may run concurrently with the writer; reads see whole batches or nothing.
#ifndef PREDLOG_STORAGE_SHARD_STORE_H_
#define PREDLOG_STORAGE_SHARD_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "predlog/v1/events.pb.h"
#include "storage/event_validation.h"
#include "storage/merkle.h"
#include "storage/sha256.h"
#include "storage/signed_note.h"
#include "storage/snapshot_retention.h"
#include "storage/state_fold.h"

namespace predlog::storage {

class ArtifactStore;
class ShardGroup;

struct ShardOptions {
  // Shard directory; holds db/ and snapshots/. Created if missing (writable).
  std::string dir;
  // Name used in messages, e.g. "predlog.events-3". Defaults to the
  // directory's name.
  std::string name;
  // Open without write access (snapshots, inspection). ApplyBatch then fails
  // with FAILED_PRECONDITION.
  bool read_only = false;
  // fsync the WAL on every batch (and the acked mark after it), before
  // ApplyBatch returns. Off: a killed process still loses nothing (the WAL
  // is in the OS page cache), but an OS crash or power loss may lose the
  // newest batches; a Kafka source refolds them, direct appends are gone
  // (the shard warns on open; see storage/acked_mark.h).
  bool sync_writes = false;
  // Largest message folded; larger ones are rejected (their bytes kept in
  // rejected up to kMaxRejectedKeptBytes, beyond it a prefix and their
  // SHA-256). Must be > 0.
  size_t max_message_bytes = kMaxEventBytes;
  EventLimits limits;
  // An operator's acceptance of a loss of acknowledged records (see
  // ShardStore::lost()): the range "first..last" the shard reported. When
  // the shard finds exactly that range lost, it records the loss as a
  // RecordsLost record in its log on open (the lost indexes stay unused) and
  // goes on; any other loss is still refused. Empty: accept none.
  std::string accept_lost_range;
  // Writes are refused with RESOURCE_EXHAUSTED while the shard's filesystem
  // has less than this many bytes free, and go on by themselves once it has
  // more. RocksDB must never meet ENOSPC itself: after a failed WAL write the
  // Debian build (assertions on) aborts the process at the next write
  // (WritableFileWriter's "sync_without_flush_called_"). The reserve also
  // leaves room for memtable flushes and compactions. 0 turns the check off.
  uint64_t min_free_bytes = uint64_t{256} << 20;
  // RocksDB block cache shared by the shard's column families. Must be > 0.
  size_t block_cache_bytes = 64 << 20;
  // A predlog.events shard: its partition and the group of the process's
  // events shards (storage/shard_group.h), which the fold uses to count
  // misrouted arrivals and to keep one record per prediction_id across the
  // shards. Borrowed; must outlive the shard. Null: a lone shard (the
  // registry, snapshots, tools), which checks neither.
  ShardGroup* group = nullptr;
  int partition = -1;  // in [0, group->partitions()) when group is set
  // The registry shard: the artifact store a ModelRegistered's artifact must
  // be in (whichever path the event came by), else the event is rejected.
  // Borrowed. Null: not checked.
  const ArtifactStore* artifacts = nullptr;
  // The access trail's shard (predlog.access): it folds AccessRecorded
  // events and rejects every other body; every other shard rejects
  // AccessRecorded. Either rejection is kept in `rejected`, naming the shard.
  bool access_trail = false;
  // The clock that stamps each batch's append time (StoredRecord::appended_at);
  // a clock that goes back is clamped to the shard's latest append time.
  // Null: absl::Now(). Tests set it to play skewed and stepped clocks.
  std::function<absl::Time()> clock;
};

// Where a message came from. `incarnation` names the source (broker
// incarnation or topic id); offsets restart when it changes.
struct SourcePosition {
  std::string incarnation;
  int64_t offset = -1;
};

// The name records appended straight to the shard (the gateway's direct path,
// not read from Kafka) show as their source incarnation.
inline constexpr absl::string_view kDirectSource = "direct";

// One message to fold. Borrowed: the views must stay valid during ApplyBatch.
struct SourceMessage {
  absl::string_view incarnation;
  int64_t offset = 0;
  absl::string_view payload;  // a serialized predlog.v1.AuditEvent
  // A gap instead of a message: offsets [gap_first_offset, offset] are gone
  // from the source; `payload` is the reason. The shard writes a SourceGap
  // record and moves its source position past the gap.
  std::optional<int64_t> gap_first_offset;
  // A direct append, not a Kafka message: `incarnation` and `offset` are
  // ignored; the record's source is (kDirectSource, ShardHead::direct_appends
  // before it). Direct appends have no redelivery (a client retries by
  // prediction_id), and they never touch the Kafka source position, so
  // neither source makes the other look restarted or redelivered.
  bool direct = false;
  // When set: `payload` parsed and validated by the caller (the gateway
  // serialized exactly this message), so the fold neither parses nor
  // validates it again. Borrowed like the views.
  const predlog::v1::AuditEvent* event = nullptr;
};

enum class FoldOutcome {
  kApplied,      // appended at `index`
  kDuplicate,    // same id, same content as the record at `index`: no-op
  kConflict,     // same id, other content than the record at `index`: kept in rejected
  kRejected,     // undecodable or invalid: kept in rejected with `reason`
  kRedelivered,  // at or before the shard's stored source position: already folded
};

struct MessageResult {
  FoldOutcome outcome = FoldOutcome::kRejected;
  // kApplied: the new record's index; kDuplicate/kConflict: the original's.
  uint64_t index = 0;
  // kDuplicate/kConflict of a record in another shard of the group (the id
  // arrived on another partition before): that shard's name; else empty.
  std::string original_shard;
  // kApplied/kDuplicate: the leaf of the record at `index`.
  Digest leaf{};
  // kRejected/kConflict: why, naming the field.
  std::string reason;
  // A direct append's own source offset (its number among the shard's
  // direct appends); -1 for Kafka messages, whose offset the caller knows.
  int64_t direct_offset = -1;
};

struct BatchResult {
  // One per input message, in input order.
  std::vector<MessageResult> messages;
  // SourceReset records the batch wrote (the source started over).
  int source_resets = 0;
};

// A record of the shard's log.
struct StoredRecord {
  uint64_t index = 0;
  // SHA-256 of `payload`. The source position is not covered: it says where
  // the bytes came from, while the leaf and chain say what was recorded.
  Digest leaf{};
  Digest chain{};  // chain value after this record
  SourcePosition source;
  // When the shard appended it, by the shard's clock (whole µs), never
  // earlier than the record before it: what "as of a time" cuts by
  // (CutAtTime). Like the source position it is not covered by the leaf.
  // Unset for records written before shard format 3.
  std::optional<absl::Time> appended_at;
  std::string payload;  // serialized predlog.v1.AuditEvent, exactly as folded

  // Parses payload (it was valid when folded, so failure means corruption).
  absl::StatusOr<predlog::v1::AuditEvent> Event() const;
};

enum class RejectKind { kRejected = 1, kConflict = 2 };

// A DatasetRegistered or ModelRegistered for a new name@version is rejected
// when it would close a cycle in the lineage graph: its parents (a dataset's
// derived_from and derived_from_models, a model's provenance.datasets),
// followed upstream through registered datasets and models, lead back to it.
// Its reason reads "<body> would close a lineage cycle: <path>", e.g.
// "dataset_registered would close a lineage cycle: dataset A@1 <- dataset B@1
// <- dataset A@1" (each derived from or trained on the next; the first such
// path, parents taken in their listed order), and callers that answer for a
// fold outcome (the registry gateway) tell it from other rejections by
// this phrase.
inline constexpr absl::string_view kLineageCycleReason = "would close a lineage cycle";

// A message that did not enter the log: kept with its reason, never dropped.
struct RejectedRecord {
  uint64_t seq = 0;  // gap-free number among the shard's rejected records
  RejectKind kind = RejectKind::kRejected;
  SourcePosition source;
  // Conflicts: the record it clashed with, in this shard (a conflict with
  // another shard's record names that shard and index in `reason`).
  std::optional<uint64_t> original_index;
  std::string reason;
  std::string payload;
};

struct ShardCounters {
  uint64_t applied = 0;
  uint64_t duplicates = 0;
  uint64_t conflicts = 0;
  uint64_t rejected = 0;
  uint64_t redelivered = 0;
  uint64_t source_resets = 0;
  uint64_t gaps = 0;  // SourceGap records written
  // Events whose key (subject_id, entity_id) belongs to another partition
  // under the producer's partitioner (ShardOptions.group), whatever their
  // outcome: a producer that does not key by subject_id with murmur2.
  uint64_t misrouted = 0;
};

// The durable head of a shard: what the last batch left behind.
struct ShardHead {
  uint64_t next_index = 0;     // records in the log
  uint64_t next_rejected = 0;  // records in rejected
  Digest chain_head = kChainGenesis;
  std::optional<SourcePosition> last_source;  // Kafka source; none before its first message
  uint64_t direct_appends = 0;                // messages folded as direct appends
  ShardCounters counters;
};

// Acknowledged records a shard no longer has: its synced acknowledgement mark
// (storage/acked_mark.h) says the log reached end_index, but the recovered
// log ends at first_index. [first_index, end_index) are lost.
struct LostRecords {
  uint64_t first_index = 0;
  uint64_t end_index = 0;
  Digest acked_chain_head{};  // the chain value after end_index - 1, from the mark
};

// [from, to): served_at or recorded_at bounds.
struct TimeRange {
  absl::Time from = absl::InfinitePast();
  absl::Time to = absl::InfiniteFuture();
};

// One page of an index scan. `next_cursor` is empty when the scan is done;
// otherwise pass it back as `cursor` for the next page.
struct ScanPage {
  std::vector<StoredRecord> records;
  std::string next_cursor;
};

// One entry of a prediction index (by_model, by_source), read from the index
// alone: no record is read. What counting and grouping need.
struct IndexEntry {
  uint64_t index = 0;    // the prediction's record in the shard's log
  absl::Time served_at;  // PredictionLogged.served_at, in whole µs (as keyed)
  // VisitDataSourceIndex only (empty for VisitModelIndex): the prediction's
  // model (PredictionLogged.model name and version). Views into the index
  // entry, valid only during the visit call that receives them.
  absl::string_view model_name;
  absl::string_view model_version;
};

// The Merkle leaf hash of a record (storage/merkle.h, MerkleLeafHash) over
//   leaf_data := 0x01 appended_at:i64 leaf:32   (appended_at in µs since the
//                                               Unix epoch, big-endian two's
//                                               complement; leaf = SHA-256 of
//                                               the event bytes, StoredRecord::leaf)
//              | 0x02 leaf:32                  (a record without an append
//                                               time: written before format 3)
// so the tree commits to when the shard appended each record as well as to
// its bytes, and costs one more small hash per record, not a second pass over
// the bytes. The source position is not covered, as in the leaf.
Digest RecordMerkleLeaf(const std::optional<absl::Time>& appended_at, const Digest& leaf);
// The leaf of an index whose record was lost (an accepted RecordsLost):
//   leaf_data := 0x00 index:u64 (big-endian)
Digest LostMerkleLeaf(uint64_t index);

// What ShardStore::Backup wrote: one RocksDB BackupEngine backup.
struct ShardBackupInfo {
  // The backup's id in its BackupEngine directory (what RestoreBackup takes).
  uint32_t backup_id = 0;
  // The shard's head when the call began: the backup holds at least these
  // records (so every record acknowledged before the call began), and the
  // chain value after the last of them is chain_head. Kept in the backup's
  // metadata; RestoreBackup checks the restored log against it.
  uint64_t records = 0;
  Digest chain_head = kChainGenesis;
  // The backup's files (shared SSTs included) and their bytes ...
  uint32_t total_files = 0;
  uint64_t total_bytes = 0;
  // ... and those no earlier backup in the directory holds: what this call
  // copied (the rest are shared SSTs it reused).
  uint32_t new_files = 0;
  uint64_t new_bytes = 0;
};

struct VerifyReport {
  uint64_t records_checked = 0;
  // First index whose leaf or chain value does not match; nullopt when intact.
  std::optional<uint64_t> first_bad_index;
  std::string problem;
};

class ShardStore {
 public:
  // Opens or creates the shard. INVALID_ARGUMENT for bad options,
  // FAILED_PRECONDITION when a read-only open finds no shard, INTERNAL for
  // RocksDB errors (with the directory in the message). A shard that lost
  // acknowledged records opens (so status and metrics can say so), with
  // lost() set, unless accept_data_loss recorded the loss.
  static absl::StatusOr<std::unique_ptr<ShardStore>> Open(const ShardOptions& options);
  ~ShardStore();
  ShardStore(const ShardStore&) = delete;
  ShardStore& operator=(const ShardStore&) = delete;

  // Folds `messages` (offsets increasing within one incarnation) as one
  // atomic write. Per-message problems are outcomes, not errors; an error
  // status means nothing of the batch was written and it may be retried:
  // RESOURCE_EXHAUSTED when the disk is full, DATA_LOSS while lost() is set,
  // or another shard's read error (ShardGroup::FindElsewhere). In a group,
  // may block while another shard's fold holds one of the batch's
  // prediction_ids (until that write is done; storage/shard_group.h).
  absl::StatusOr<BatchResult> ApplyBatch(absl::Span<const SourceMessage> messages);

  ShardHead Head() const;
  // Head().counters without copying the rest of the head (reads use it).
  ShardCounters Counters() const;
  const std::string& name() const;
  // Set when the shard lost acknowledged records and the loss was not
  // accepted: ApplyBatch then fails with DATA_LOSS naming the range, and
  // callers should refuse reads too. Constant after Open.
  const std::optional<LostRecords>& lost() const;
  // OK, or while lost() is set the DATA_LOSS status writes get: it names the
  // shard, the lost range, the last intact index and how to accept the loss.
  absl::Status CheckNotLost() const;
  // Reads that RocksDB answered with Corruption (a data block whose checksum
  // fails, a damaged file) since the shard opened; each is also logged and
  // reaches its caller as DATA_LOSS. Thread-safe.
  uint64_t read_corruptions() const;

  // Reads. NOT_FOUND names what was looked up.
  absl::StatusOr<StoredRecord> Get(uint64_t index) const;
  absl::StatusOr<StoredRecord> GetByPredictionId(absl::string_view prediction_id) const;
  // Records [from_index, from_index + limit) that exist, in log order.
  absl::StatusOr<std::vector<StoredRecord>> ReadRange(uint64_t from_index, size_t limit) const;
  // A subject's predictions ordered by served_at then index.
  absl::StatusOr<ScanPage> ScanSubject(absl::string_view subject_id, const TimeRange& served,
                                       absl::string_view cursor, size_t limit) const;
  // A model version's predictions ordered by served_at then index.
  absl::StatusOr<ScanPage> ScanModel(absl::string_view name, absl::string_view version,
                                     const TimeRange& served, absl::string_view cursor,
                                     size_t limit) const;
  // Predictions of one trace (a model chain) ordered by served_at then index.
  absl::StatusOr<ScanPage> ScanTrace(absl::string_view trace_id, absl::string_view cursor,
                                     size_t limit) const;
  // Predictions that read dataset `name`@`version` (one of their
  // PredictionLogged.data_sources) ordered by served_at then index, like
  // ScanModel. Only applied predictions are indexed (never a duplicate, a
  // conflict or a rejected message), once each however often they name the
  // dataset. FAILED_PRECONDITION naming the shard when it predates the
  // data-source index (format 3 or older) and is open read-only, as a
  // snapshot taken before the upgrade is: opening the shard writable once
  // builds the index.
  absl::StatusOr<ScanPage> ScanDataSource(absl::string_view name, absl::string_view version,
                                          const TimeRange& served, absl::string_view cursor,
                                          size_t limit) const;
  // An entity's applied changes (EntityChanged records; never a rejected or
  // redelivered message) recorded in `recorded` (AuditEvent.recorded_at, the
  // producer's time; the shard's append time for an event without one),
  // ordered by that time then index. The entity's changes are all in its
  // entity_id's shard (the fold rejects one that arrives elsewhere).
  // FAILED_PRECONDITION naming the shard when it predates the entity index
  // (format 4 or older) and is open read-only, as ScanDataSource says.
  absl::StatusOr<ScanPage> ScanEntity(absl::string_view entity_type, absl::string_view entity_id,
                                      const TimeRange& recorded, absl::string_view cursor,
                                      size_t limit) const;
  // Walks the index entries of a model version (by_model) or of a dataset
  // version (by_source) served in `served`, in ScanModel's / ScanDataSource's
  // order, calling `visit` with each until it returns false; no record is
  // read and nothing is allocated per entry, so counting a million entries
  // costs one index scan. The walk sees one consistent state (whole batches
  // only; entries folded after the call began may be missed). `visit` runs
  // on the caller's thread. OK when the entries are done or `visit` stopped;
  // DATA_LOSS naming the shard for an entry that does not decode;
  // FAILED_PRECONDITION (VisitDataSourceIndex) as ScanDataSource says;
  // RocksDB's read errors otherwise.
  absl::Status VisitModelIndex(absl::string_view name, absl::string_view version,
                               const TimeRange& served,
                               absl::FunctionRef<bool(const IndexEntry&)> visit) const;
  absl::Status VisitDataSourceIndex(absl::string_view name, absl::string_view version,
                                    const TimeRange& served,
                                    absl::FunctionRef<bool(const IndexEntry&)> visit) const;
  // The cut "as of t": the number of records the shard had appended before
  // `t` by its own clock (StoredRecord::appended_at), which is one past the
  // last such index, since append times never decrease along the log. So a
  // cut never holds a record appended at or after `t`, and a later `t` never
  // gives a smaller cut, whatever times producers wrote into their events
  // (recorded_at, served_at are kept as fields, not used here). Like Kafka's
  // offsetsForTimes, over the shard's own log. 0 when nothing came before.
  absl::StatusOr<uint64_t> CutAtTime(absl::Time t) const;
  // Rejected and conflicting messages from `from_seq`, oldest first.
  absl::StatusOr<std::vector<RejectedRecord>> ListRejected(uint64_t from_seq, size_t limit) const;

  // Folded current state.
  absl::StatusOr<predlog::v1::EntityState> GetEntity(absl::string_view type,
                                                     absl::string_view id) const;
  absl::StatusOr<predlog::v1::ModelRegistered> GetModel(absl::string_view name,
                                                        absl::string_view version) const;
  // Every model, dataset and deployment in the shard's state (the registry
  // shard holds them): what folding the whole log with ApplyRegistryRecord gives.
  absl::StatusOr<RegistryState> GetRegistry() const;

  // Recomputes every leaf from the stored bytes, the chain from genesis and
  // every node of the Merkle tree, and compares them with what is stored;
  // checks that append times never go back and that the time index holds
  // each record at its append time.
  absl::StatusOr<VerifyReport> Verify() const;

  // The shard's Merkle tree (RFC 6962, storage/merkle.h): leaf i is
  // RecordMerkleLeaf(appended_at, leaf) of record i (LostMerkleLeaf where a
  // loss was accepted).
  // Sizes count leaves = records from index 0; proofs are leaf-side first.
  // OUT_OF_RANGE when a size is beyond the log (Head().next_index);
  // INVALID_ARGUMENT as merkle.h says (index >= size, old_size 0 or above
  // size); FAILED_PRECONDITION for a shard of format 2 opened read-only
  // (opening it writable once builds its tree); DATA_LOSS for a damaged node.
  // Thread-safe; each reads O(log size) nodes.
  absl::StatusOr<Digest> TreeRoot(uint64_t size) const;
  absl::StatusOr<std::vector<Digest>> InclusionProof(uint64_t index, uint64_t size) const;
  absl::StatusOr<std::vector<Digest>> ConsistencyProof(uint64_t old_size, uint64_t size) const;
  // MerkleRangeProof: records [begin, end) are leaves of the tree of `size`.
  // `cache` (may be null; borrowed, one caller's) keeps the nodes read for
  // the next proofs of this shard, as an export's runs need.
  absl::StatusOr<std::vector<Digest>> RangeProof(uint64_t begin, uint64_t end, uint64_t size,
                                                 MerkleNodeCache* cache = nullptr) const;

  // Signs a checkpoint of the whole log as it is now (storage/signed_note.h,
  // C2SP tlog-checkpoint: `origin`, Head().next_index, TreeRoot of it, then
  // the extension lines: the signed-at line of the shard's clock
  // (ShardOptions::clock) and `extensions`, e.g. the shards line) and keeps
  // it in meta, so that later checkpoints can be proven consistent with it.
  // Returns the signed note. When a checkpoint of this size is kept, signed
  // by `signer` for `origin` with these `extensions`, it is returned
  // unchanged if signed less than `reuse_within` ago, and otherwise stays
  // kept while a note signed now is returned (the same tree; a consistency
  // proof needs only its size). A kept one signed by another key, for
  // another origin, with other extensions or without a signing time is
  // replaced by the new note.
  // INVALID_ARGUMENT for an origin that is not one non-empty line, or an
  // extension line that is empty, holds a newline or is a signed-at line;
  // FAILED_PRECONDITION when open read-only or without a tree; RocksDB's
  // errors otherwise. Thread-safe.
  absl::StatusOr<std::string> SignCheckpoint(
      const NoteSigner& signer, absl::string_view origin,
      const std::vector<std::string>& extensions = {},
      absl::Duration reuse_within = absl::InfiniteDuration());
  // The kept checkpoint (signed note) of the largest size; NOT_FOUND when
  // none was signed yet.
  absl::StatusOr<std::string> LatestCheckpoint() const;
  // The kept checkpoint of exactly `size` records; NOT_FOUND when none.
  absl::StatusOr<std::string> CheckpointAt(uint64_t size) const;

  // Snapshots: RocksDB checkpoints under <dir>/snapshots/, tagged with the
  // shard head at the moment they were taken.
  absl::StatusOr<SnapshotInfo> CreateSnapshot(absl::Time now = absl::Now());
  absl::StatusOr<std::vector<SnapshotInfo>> ListSnapshots() const;
  // Opens a snapshot of this shard read-only.
  absl::StatusOr<std::unique_ptr<ShardStore>> OpenSnapshot(const SnapshotInfo& snapshot) const;
  // Deletes the snapshots `policy` does not keep; returns how many.
  absl::StatusOr<int> PruneSnapshots(const RetentionPolicy& policy, absl::Time now = absl::Now());

  // Backups (RocksDB BackupEngine, storage/shard_backup.cc). `backup_dir`
  // is one shard's BackupEngine directory; every backup into it shares the
  // SST files earlier backups copied, so a backup copies only the SSTs that
  // are new since the last one, plus a few small private files (MANIFEST,
  // OPTIONS, the WAL written since the flush).
  //
  // Backup flushes the shard's memtables and then copies (flush_before_backup),
  // so every record folded before the call began, and with it every record
  // acknowledged before it, is in the backup's SSTs or in the WAL it copies
  // with them; RocksDB includes the WAL written during the flush, so the
  // backup is one consistent state of the shard (all of a WriteBatch or none
  // of it), as after a crash. The acked mark and the snapshots (<dir>/acked,
  // <dir>/snapshots/) are not in it: RestoreBackup writes a new mark, and
  // snapshots are a cache that the writer takes again.
  // Errors: DATA_LOSS from CheckNotLost while lost() is set (a restore of
  // such a backup would hide the loss: accept it first); FAILED_PRECONDITION
  // for a shard open read-only; INTERNAL (RESOURCE_EXHAUSTED for a full disk)
  // naming the shard and the directory for RocksDB's errors. A failed call
  // leaves no new backup (BackupEngine removes what it copied next time).
  // Thread-safe: it may run while the writer folds and readers read. Calls
  // into one backup_dir must not overlap (BackupEngine's directory has one
  // writer at a time): callers serialize them.
  absl::StatusOr<ShardBackupInfo> Backup(const std::string& backup_dir) const;

  // Checks backup `backup_id` in `backup_dir` without restoring it: every
  // file it lists exists with its recorded size and CRC32C. NOT_FOUND when
  // there is no such backup; DATA_LOSS naming `name` (the shard, for
  // messages), the backup and what is wrong otherwise. Thread-safe.
  static absl::Status VerifyBackup(const std::string& backup_dir, uint32_t backup_id,
                                   absl::string_view name);

  // Restores backup `backup_id` of `backup_dir` as the shard at options.dir,
  // which must not exist or be empty (FAILED_PRECONDITION naming it); its
  // name (options.name, or the directory's) must be the one the backup was
  // taken of (FAILED_PRECONDITION naming both). Copies the database (every
  // file checked against its CRC32C as it is copied: DATA_LOSS naming the
  // shard), opens it once with sync_writes (the WAL it holds is replayed),
  // writes and fdatasyncs a new acked mark equal to the restored head, so
  // the restored shard opens cleanly and its mark is never ahead of its log,
  // and uncatalogues the snapshots (their directories are not in backups).
  // Then checks the restored log holds the records the backup's metadata
  // promises (ShardBackupInfo::records, chain_head): DATA_LOSS otherwise.
  // NOT_FOUND when there is no such backup. options.group and artifacts are
  // ignored (nothing is folded); the shard is closed on return. Returns the
  // restored shard's head.
  static absl::StatusOr<ShardHead> RestoreBackup(const std::string& backup_dir, uint32_t backup_id,
                                                 const ShardOptions& options);

  // Compacts every column family into its bottommost level (RocksDB
  // DB::CompactRange over the whole key range): each key once, nothing
  // obsolete, what the shard's disk use settles to. Blocks until done (seconds
  // per GB; readers and writers go on meanwhile). FAILED_PRECONDITION when
  // open read-only; RocksDB's errors otherwise.
  absl::Status Compact();

 private:
  class Impl;
  explicit ShardStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_SHARD_STORE_H_
