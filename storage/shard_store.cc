// On-disk format of a shard (RocksDB under <dir>/db, column families below).
// Integers are big-endian fixed width (storage/key_codec.h); lp(s) is a u32
// length followed by the bytes; time is microseconds since the epoch,
// sign-flipped so that byte order is time order.
//
//   events        key: index:u64
//                 value: format:u8(=1) leaf:32 chain:32 incarnation:u32 offset:i64 payload
//                 (a SourceReset record, written by the shard, has offset -1 in the new
//                 incarnation: it comes before that incarnation's first message)
//                 Write-once. payload = the AuditEvent bytes exactly as folded;
//                 leaf = SHA-256(payload); chain = SHA-256(previous chain || leaf).
//   by_prediction key: prediction_id            value: index:u64
//   by_subject    key: lp(subject_id) served_at:time index:u64      value: empty
//   by_model      key: lp(name) lp(version) served_at:time index:u64 value: empty
//   by_time       key: recorded_at:time index:u64                    value: empty
//                 (recorded_at falls back to the fold time when the producer left it unset)
//   by_trace      key: lp(trace_id) served_at:time index:u64         value: empty
//                 (predictions with a trace_id only)
//   state         key: 'E' lp(type) lp(id)       value: EntityState
//                      'M' lp(name) lp(version)  value: index:u64 leaf:32 ModelRegistered
//                      'S' lp(name) lp(version)  value: index:u64 leaf:32 DatasetRegistered
//                      'D' lp(route) lp(name) lp(version)
//                                                value: index:u64 leaf:32 ModelDeployed
//                                                (the latest deploy of that model on the route)
//                 (index and leaf: the record that set the value)
//   rejected      key: seq:u64
//                 value: format:u8(=1) kind:u8 incarnation:u32 offset:i64
//                        has_original:u8 original_index:u64 lp(reason) payload
//   meta          "format"                    value: u32 (kShardFormat; 2 added by_trace)
//                 "head"                      value: see EncodeHead
//                 "incarnation/" seq:u32      value: last_offset:i64 name
//                 (last_offset: the last offset folded from it, written when the
//                 shard moves on to a newer incarnation; -1 while it is current,
//                 whose position lives in the head)
//                 "snapshot/" index:u64       value: created_at:time
//
// Incarnations are numbered from 1 in the order the shard first saw them;
// records store the number, the name lives once in meta.
#include "storage/shard_store.h"

#include <filesystem>
#include <functional>
#include <system_error>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/arena.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"
#include "storage/deterministic_bytes.h"
#include "storage/key_codec.h"
#include "storage/logging.h"
#include "storage/state_fold.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::storage {
namespace {

namespace fs = std::filesystem;
using ::predlog::v1::AuditEvent;

constexpr uint32_t kShardFormat = 2;
// Shards of an older format lack an index this build relies on.
constexpr uint32_t kOldestReadableShardFormat = 2;
constexpr uint8_t kRecordFormat = 1;
constexpr uint8_t kHeadFormat = 1;
constexpr uint8_t kRejectedFormat = 1;
constexpr size_t kRecordHeaderBytes = 1 + 32 + 32 + 4 + 8;

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
  kNumCfs
};
constexpr const char* kCfNames[kNumCfs] = {"default",  "events",  "by_prediction", "by_subject",
                                           "by_model", "by_time", "by_trace",      "state",
                                           "meta",     "rejected"};

constexpr absl::string_view kFormatKey = "format";
constexpr absl::string_view kHeadKey = "head";
constexpr absl::string_view kIncarnationPrefix = "incarnation/";
constexpr absl::string_view kSnapshotPrefix = "snapshot/";

constexpr char kEntityTag = 'E';
constexpr char kModelTag = 'M';
constexpr char kDatasetTag = 'S';
constexpr char kDeploymentTag = 'D';

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(context, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

rocksdb::Slice ToSlice(absl::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
absl::string_view ToView(const rocksdb::Slice& s) { return absl::string_view(s.data(), s.size()); }

// head := format:u8 next_index:u64 next_rejected:u64 chain:32 incarnation:u32
//         last_offset:i64 applied:u64 duplicates:u64 conflicts:u64 rejected:u64
//         redelivered:u64 source_resets:u64 gaps:u64
struct HeadState {
  ShardHead head;
  uint32_t incarnation_seq = 0;  // 0: no message folded yet
};

void EncodeHead(const HeadState& h, std::string* out) {
  out->clear();
  AppendU8(out, kHeadFormat);
  AppendU64(out, h.head.next_index);
  AppendU64(out, h.head.next_rejected);
  out->append(h.head.chain_head.begin(), h.head.chain_head.end());
  AppendU32(out, h.incarnation_seq);
  AppendI64(out, h.head.last_source ? h.head.last_source->offset : -1);
  const ShardCounters& c = h.head.counters;
  for (uint64_t v :
       {c.applied, c.duplicates, c.conflicts, c.rejected, c.redelivered, c.source_resets, c.gaps}) {
    AppendU64(out, v);
  }
}

bool ReadDigest(absl::string_view* in, Digest* d) {
  absl::string_view bytes;
  if (!ReadBytes(in, d->size(), &bytes)) return false;
  std::copy(bytes.begin(), bytes.end(), d->begin());
  return true;
}

// Decodes everything but the incarnation name, which the caller resolves.
bool DecodeHead(absl::string_view in, HeadState* h, int64_t* last_offset) {
  uint8_t format;
  ShardCounters& c = h->head.counters;
  return ReadU8(&in, &format) && format == kHeadFormat && ReadU64(&in, &h->head.next_index) &&
         ReadU64(&in, &h->head.next_rejected) && ReadDigest(&in, &h->head.chain_head) &&
         ReadU32(&in, &h->incarnation_seq) && ReadI64(&in, last_offset) &&
         ReadU64(&in, &c.applied) && ReadU64(&in, &c.duplicates) && ReadU64(&in, &c.conflicts) &&
         ReadU64(&in, &c.rejected) && ReadU64(&in, &c.redelivered) &&
         ReadU64(&in, &c.source_resets) && ReadU64(&in, &c.gaps) && in.empty();
}

std::string IncarnationKey(uint32_t seq) {
  std::string key(kIncarnationPrefix);
  AppendU32(&key, seq);
  return key;
}

std::string SnapshotKey(uint64_t index) {
  std::string key(kSnapshotPrefix);
  AppendU64(&key, index);
  return key;
}

std::string StateKey2(char tag, absl::string_view a, absl::string_view b) {
  std::string key(1, tag);
  AppendLengthPrefixed(&key, a);
  AppendLengthPrefixed(&key, b);
  return key;
}

// The state value of registry-like bodies: index:u64 leaf:32 body.
std::string IndexedState(uint64_t index, const Digest& leaf,
                         const google::protobuf::Message& body) {
  std::string value;
  AppendU64(&value, index);
  value.append(leaf.begin(), leaf.end());
  body.AppendToString(&value);
  return value;
}

// Whether two bodies carry the same content: equal deterministic
// serializations (map entries sorted). Byte equality, not field equality, so a
// retry with a NaN input is a duplicate and -0.0 vs 0.0 is a difference.
bool SameContent(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return DeterministicBytes(a) == DeterministicBytes(b);
}

// A source incarnation the shard has folded from.
struct Incarnation {
  std::string name;
  int64_t last_offset = -1;  // meaningful once superseded
};

std::string EncodeIncarnation(const Incarnation& inc) {
  std::string value;
  AppendI64(&value, inc.last_offset);
  value.append(inc.name);
  return value;
}

// A message the current batch already folded, for duplicate checks against
// records not yet in RocksDB.
struct PendingRecord {
  uint64_t index;
  Digest leaf;
  absl::string_view payload;
};

}  // namespace

absl::StatusOr<AuditEvent> StoredRecord::Event() const {
  AuditEvent event;
  if (!event.ParseFromString(payload)) {
    return absl::DataLossError(absl::StrCat("record ", index, " does not parse as AuditEvent"));
  }
  return event;
}

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

  ShardHead Head() const {
    absl::MutexLock lock(&mu_);
    return head_.head;
  }

  absl::StatusOr<StoredRecord> Get(uint64_t index) const;
  absl::StatusOr<StoredRecord> GetByPredictionId(absl::string_view prediction_id) const;
  absl::StatusOr<std::vector<StoredRecord>> ReadRange(uint64_t from_index, size_t limit) const;
  absl::StatusOr<ScanPage> ScanIndex(Cf cf, const std::string& prefix, const TimeRange& range,
                                     absl::string_view cursor, size_t limit) const;
  absl::StatusOr<uint64_t> CutAtTime(absl::Time t) const;
  absl::StatusOr<std::vector<RejectedRecord>> ListRejected(uint64_t from_seq, size_t limit) const;
  absl::StatusOr<std::string> GetState(const std::string& key, absl::string_view what) const;
  // Calls `fn` with the value of every state entry whose key starts with `tag`.
  absl::Status ForEachState(char tag,
                            const std::function<absl::Status(absl::string_view)>& fn) const;
  absl::StatusOr<VerifyReport> Verify() const;
  absl::StatusOr<SnapshotInfo> CreateSnapshot(absl::Time now);
  absl::StatusOr<std::vector<SnapshotInfo>> ListSnapshots() const;
  absl::StatusOr<int> PruneSnapshots(const RetentionPolicy& policy, absl::Time now);

  const ShardOptions& options() const { return options_; }
  std::string SnapshotDir() const { return (fs::path(options_.dir) / "snapshots").string(); }

 private:
  // Per-batch writer state; reset at the start of each ApplyBatch.
  struct BatchState {
    HeadState h;
    // Incarnations registered or superseded by this batch, published after the write.
    std::vector<std::pair<uint32_t, Incarnation>> incarnation_updates;
    uint32_t new_incarnations = 0;
  };

  absl::StatusOr<StoredRecord> DecodeRecord(uint64_t index, absl::string_view value) const;
  absl::StatusOr<std::string> GetRaw(Cf cf, absl::string_view key, absl::string_view what) const;
  absl::Status RemoveOrphanSnapshots();

  // Writer-side fold steps. All write into batch_ only.
  void FoldMessage(const SourceMessage& m, BatchState* b, MessageResult* r);
  void FoldPrediction(const SourceMessage& m, BatchState* b, MessageResult* r);
  // Folds a registry-like event keyed by `state_key` (name@version): a repeat
  // with equal body is a duplicate, with another body a conflict.
  void FoldKeyedBody(const SourceMessage& m, const std::string& state_key,
                     const google::protobuf::Message& body, BatchState* b, MessageResult* r);
  void FoldEntityChange(const SourceMessage& m, BatchState* b, MessageResult* r);
  // Starts a fresh, empty event_ on the reset arena.
  void NewEvent() {
    event_ = nullptr;
    arena_->Reset();
    event_ = google::protobuf::Arena::CreateMessage<AuditEvent>(arena_.get());
  }
  // Appends a record for the event in `event_` whose bytes are `payload`.
  uint64_t AppendRecord(absl::string_view payload, int64_t offset, BatchState* b, Digest* leaf);
  // Keeps `m` in rejected; `source_seq` is the incarnation it came from.
  void Reject(const SourceMessage& m, uint32_t source_seq, RejectKind kind,
              std::optional<uint64_t> original, std::string reason, BatchState* b,
              MessageResult* r);
  // The incarnation named `name`, as this batch left it, or nullopt if new.
  std::optional<std::pair<uint32_t, Incarnation>> FindIncarnation(absl::string_view name,
                                                                  const BatchState& b) const;
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

  mutable absl::Mutex mu_;
  HeadState head_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, Incarnation> incarnations_ ABSL_GUARDED_BY(mu_);

  // Writer-only scratch, reused across batches so the hot path does not allocate.
  rocksdb::WriteBatch batch_;
  // The message being folded is parsed into arena_, which is reset before
  // each message: parsing allocates from one reused block instead of malloc.
  std::unique_ptr<char[]> arena_block_;
  std::unique_ptr<google::protobuf::Arena> arena_;
  AuditEvent* event_ = nullptr;  // owned by arena_, valid for one message
  AuditEvent original_;
  std::string key_;
  std::string header_;
  std::string original_payload_;  // a stored record a new message is compared with
  absl::Status batch_error_;      // first RocksDB read error inside a batch
  absl::flat_hash_map<std::string, PendingRecord> batch_predictions_;
  absl::flat_hash_map<std::string, std::string> state_overlay_;
  absl::Time batch_time_;
};

absl::Status ShardStore::Impl::OpenDb() {
  if (options_.dir.empty()) return absl::InvalidArgumentError("ShardOptions.dir is empty");
  if (options_.max_message_bytes == 0) {
    return absl::InvalidArgumentError("ShardOptions.max_message_bytes must be > 0");
  }
  if (options_.block_cache_bytes == 0) {
    return absl::InvalidArgumentError("ShardOptions.block_cache_bytes must be > 0");
  }
  if (options_.name.empty()) options_.name = fs::path(options_.dir).filename().string();
  if (options_.read_only) {
    if (!fs::exists(fs::path(db_path_) / "CURRENT")) {
      return absl::FailedPreconditionError(
          absl::StrCat("shard ", options_.name, ": no shard at ", db_path_));
    }
  } else {
    std::error_code ec;
    fs::create_directories(db_path_, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("shard ", options_.name, ": create ", db_path_, ": ", ec.message()));
    }
  }

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 5;

  std::shared_ptr<rocksdb::Cache> cache = rocksdb::NewLRUCache(options_.block_cache_bytes);
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (int i = 0; i < kNumCfs; ++i) {
    rocksdb::ColumnFamilyOptions cf_options;
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = cache;
    // Point lookups of prediction ids are mostly misses (new ids): a bloom
    // filter answers those without touching data blocks.
    if (i == kByPredictionCf) table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    descriptors.emplace_back(kCfNames[i], cf_options);
  }

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      options_.read_only
          ? rocksdb::DB::OpenForReadOnly(db_options, db_path_, descriptors, &cfs_, &raw)
          : rocksdb::DB::Open(db_options, db_path_, descriptors, &cfs_, &raw);
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("shard ", options_.name, ": open ", db_path_)));
  db_.reset(raw);
  write_options_.sync = options_.sync_writes;

  // Format marker: refuse shards written by a newer, incompatible build.
  std::string format_value;
  s = db_->Get(rocksdb::ReadOptions(), cfs_[kMetaCf], ToSlice(kFormatKey), &format_value);
  if (s.IsNotFound()) {
    if (!options_.read_only) {
      std::string v;
      AppendU32(&v, kShardFormat);
      RETURN_IF_ERROR(
          FromRocks(db_->Put(rocksdb::WriteOptions(), cfs_[kMetaCf], ToSlice(kFormatKey), v),
                    absl::StrCat("shard ", options_.name, ": write format")));
    }
  } else {
    RETURN_IF_ERROR(FromRocks(s, absl::StrCat("shard ", options_.name, ": read format")));
    absl::string_view in = format_value;
    uint32_t format;
    if (!ReadU32(&in, &format) || format > kShardFormat) {
      return absl::FailedPreconditionError(absl::StrCat(
          "shard ", options_.name, ": on-disk format is newer than this build understands"));
    }
    if (format < kOldestReadableShardFormat) {
      return absl::FailedPreconditionError(
          absl::StrCat("shard ", options_.name, ": on-disk format ", format,
                       " predates the trace index; re-ingest it into a new data dir"));
    }
  }

  // Incarnations.
  absl::flat_hash_map<uint32_t, Incarnation> names;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kMetaCf]));
    for (it->Seek(ToSlice(kIncarnationPrefix));
         it->Valid() && it->key().starts_with(ToSlice(kIncarnationPrefix)); it->Next()) {
      absl::string_view k = ToView(it->key());
      k.remove_prefix(kIncarnationPrefix.size());
      absl::string_view v = ToView(it->value());
      uint32_t seq;
      Incarnation inc;
      if (!ReadU32(&k, &seq) || !ReadI64(&v, &inc.last_offset)) {
        return absl::DataLossError(
            absl::StrCat("shard ", options_.name, ": bad incarnation entry"));
      }
      inc.name = std::string(v);
      names[seq] = std::move(inc);
    }
    RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("shard ", options_.name, ": scan meta")));
  }

  HeadState head;
  std::string head_value;
  s = db_->Get(rocksdb::ReadOptions(), cfs_[kMetaCf], ToSlice(kHeadKey), &head_value);
  if (!s.IsNotFound()) {
    RETURN_IF_ERROR(FromRocks(s, absl::StrCat("shard ", options_.name, ": read head")));
    int64_t last_offset;
    if (!DecodeHead(head_value, &head, &last_offset)) {
      return absl::DataLossError(absl::StrCat("shard ", options_.name, ": corrupt head"));
    }
    if (head.incarnation_seq != 0) {
      auto it = names.find(head.incarnation_seq);
      if (it == names.end()) {
        return absl::DataLossError(absl::StrCat("shard ", options_.name, ": head names unknown ",
                                                "incarnation ", head.incarnation_seq));
      }
      head.head.last_source = SourcePosition{it->second.name, last_offset};
    }
  }
  {
    absl::MutexLock lock(&mu_);
    head_ = std::move(head);
    incarnations_ = std::move(names);
  }
  if (!options_.read_only && db_path_ == (fs::path(options_.dir) / "db").string()) {
    RETURN_IF_ERROR(RemoveOrphanSnapshots());
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Writing

absl::StatusOr<BatchResult> ShardStore::Impl::ApplyBatch(absl::Span<const SourceMessage> messages) {
  if (options_.read_only) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", options_.name, " is open read-only"));
  }
  BatchState b;
  {
    absl::MutexLock lock(&mu_);
    b.h = head_;
  }
  batch_.Clear();
  batch_predictions_.clear();
  state_overlay_.clear();
  batch_error_ = absl::OkStatus();
  batch_time_ = absl::Now();

  BatchResult result;
  result.messages.resize(messages.size());
  const uint64_t resets_before = b.h.head.counters.source_resets;
  for (size_t i = 0; i < messages.size(); ++i) {
    const SourceMessage& m = messages[i];
    MessageResult& r = result.messages[i];
    std::optional<SourcePosition>& last = b.h.head.last_source;
    if (!last.has_value() || last->incarnation != m.incarnation) {
      // A source this shard has moved on from: what it folded from there is a
      // redelivery; anything newer cannot be ordered into the log any more, so
      // it is kept in rejected, never skipped silently.
      if (std::optional<std::pair<uint32_t, Incarnation>> old = FindIncarnation(m.incarnation, b);
          old.has_value()) {
        if (m.offset <= old->second.last_offset) {
          r.outcome = FoldOutcome::kRedelivered;
          ++b.h.head.counters.redelivered;
        } else {
          Reject(
              m, old->first, RejectKind::kRejected, std::nullopt,
              absl::StrCat("from superseded source incarnation ", m.incarnation, ": offset ",
                           m.offset, " is after its last folded offset ", old->second.last_offset,
                           " and the shard now folds ", last->incarnation),
              &b, &r);
        }
        continue;
      }
      // Incarnations are numbered 1, 2, ... without gaps.
      uint32_t seq;
      {
        absl::MutexLock lock(&mu_);
        seq = static_cast<uint32_t>(incarnations_.size() + b.new_incarnations + 1);
      }
      ++b.new_incarnations;
      const bool reset = last.has_value();
      Incarnation previous;
      if (reset) {
        previous = Incarnation{last->incarnation, last->offset};
        batch_.Put(cfs_[kMetaCf], IncarnationKey(b.h.incarnation_seq), EncodeIncarnation(previous));
        b.incarnation_updates.emplace_back(b.h.incarnation_seq, previous);
      }
      const Incarnation current{std::string(m.incarnation), -1};
      batch_.Put(cfs_[kMetaCf], IncarnationKey(seq), EncodeIncarnation(current));
      b.incarnation_updates.emplace_back(seq, current);
      b.h.incarnation_seq = seq;
      last = SourcePosition{current.name, -1};
      if (reset) WriteSourceReset(previous.name, previous.last_offset, m.incarnation, m.offset, &b);
    }
    if (m.offset <= last->offset) {
      r.outcome = FoldOutcome::kRedelivered;
      ++b.h.head.counters.redelivered;
      continue;
    }
    last->offset = m.offset;
    if (m.gap_first_offset.has_value()) {
      WriteSourceGap(m, &b, &r);
    } else {
      FoldMessage(m, &b, &r);
    }
    if (!batch_error_.ok()) return batch_error_;
  }
  result.source_resets = static_cast<int>(b.h.head.counters.source_resets - resets_before);

  std::string head_value;
  EncodeHead(b.h, &head_value);
  batch_.Put(cfs_[kMetaCf], ToSlice(kHeadKey), head_value);
  RETURN_IF_ERROR(FromRocks(
      db_->Write(write_options_, &batch_),
      absl::StrCat("shard ", options_.name, ": write batch of ", messages.size(), " messages")));
  absl::MutexLock lock(&mu_);
  head_ = std::move(b.h);
  for (auto& [seq, inc] : b.incarnation_updates) incarnations_[seq] = std::move(inc);
  return result;
}

void ShardStore::Impl::FoldMessage(const SourceMessage& m, BatchState* b, MessageResult* r) {
  if (m.payload.empty()) {
    return Reject(m, b->h.incarnation_seq, RejectKind::kRejected, std::nullopt, "empty message", b,
                  r);
  }
  if (m.payload.size() > options_.max_message_bytes) {
    return Reject(m, b->h.incarnation_seq, RejectKind::kRejected, std::nullopt,
                  absl::StrCat("message is ", m.payload.size(), " bytes; the limit is ",
                               options_.max_message_bytes),
                  b, r);
  }
  NewEvent();
  if (!event_->ParseFromArray(m.payload.data(), static_cast<int>(m.payload.size()))) {
    return Reject(m, b->h.incarnation_seq, RejectKind::kRejected, std::nullopt,
                  "not a serialized predlog.v1.AuditEvent (protobuf parse failed)", b, r);
  }
  if (absl::Status valid = ValidateEvent(*event_, options_.limits); !valid.ok()) {
    return Reject(m, b->h.incarnation_seq, RejectKind::kRejected, std::nullopt,
                  std::string(valid.message()), b, r);
  }
  switch (event_->body_case()) {
    case AuditEvent::kPredictionLogged:
      return FoldPrediction(m, b, r);
    case AuditEvent::kModelRegistered: {
      const auto& model = event_->model_registered().model();
      return FoldKeyedBody(m, StateKey2(kModelTag, model.name(), model.version()),
                           event_->model_registered(), b, r);
    }
    case AuditEvent::kDatasetRegistered: {
      const auto& dataset = event_->dataset_registered().dataset();
      return FoldKeyedBody(m, StateKey2(kDatasetTag, dataset.name(), dataset.version()),
                           event_->dataset_registered(), b, r);
    }
    case AuditEvent::kModelDeployed: {
      const auto& deploy = event_->model_deployed();
      r->outcome = FoldOutcome::kApplied;
      r->index = AppendRecord(m.payload, m.offset, b, &r->leaf);
      std::string key = StateKey2(kDeploymentTag, deploy.route(), deploy.model().name());
      AppendLengthPrefixed(&key, deploy.model().version());
      return PutState(key, IndexedState(r->index, r->leaf, deploy));
    }
    case AuditEvent::kEntityChanged:
      return FoldEntityChange(m, b, r);
    case AuditEvent::kSourceReset:
    case AuditEvent::kSourceGap:
    case AuditEvent::BODY_NOT_SET:
      break;  // ValidateEvent rejected these.
  }
  PREDLOG_CHECK(false) << "validated event with unhandled body " << event_->body_case();
}

void ShardStore::Impl::FoldPrediction(const SourceMessage& m, BatchState* b, MessageResult* r) {
  const auto& p = event_->prediction_logged();
  const std::string& id = p.prediction_id();

  // Is the id taken, by this batch or by the log?
  std::optional<PendingRecord> original;
  if (auto it = batch_predictions_.find(id); it != batch_predictions_.end()) {
    original = it->second;
  } else {
    std::string index_value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), cfs_[kByPredictionCf], ToSlice(id), &index_value);
    if (s.ok()) {
      uint64_t index;
      if (!DecodeIndexKey(index_value, &index)) {
        batch_error_ = absl::DataLossError(
            absl::StrCat("shard ", options_.name, ": corrupt by_prediction entry for ", id));
        return;
      }
      absl::StatusOr<StoredRecord> stored = Get(index);
      if (!stored.ok()) {
        batch_error_ = stored.status();
        return;
      }
      original_payload_ = std::move(stored->payload);
      original = PendingRecord{index, stored->leaf, original_payload_};
    } else if (!s.IsNotFound()) {
      batch_error_ = FromRocks(s, absl::StrCat("shard ", options_.name, ": lookup ", id));
      return;
    }
  }
  if (original.has_value()) {
    // Identical content means an equal PredictionLogged body; the envelope
    // (event id, recorded_at, actor) of a retry may differ.
    const bool same = original_.ParseFromArray(original->payload.data(),
                                               static_cast<int>(original->payload.size())) &&
                      original_.has_prediction_logged() &&
                      SameContent(original_.prediction_logged(), p);
    if (same) {
      r->outcome = FoldOutcome::kDuplicate;
      r->index = original->index;
      r->leaf = original->leaf;
      ++b->h.head.counters.duplicates;
      return;
    }
    return Reject(m, b->h.incarnation_seq, RejectKind::kConflict, original->index,
                  absl::StrCat("prediction_id ", id, " is already recorded at index ",
                               original->index, " with different content"),
                  b, r);
  }

  r->outcome = FoldOutcome::kApplied;
  r->index = AppendRecord(m.payload, m.offset, b, &r->leaf);
  batch_predictions_.emplace(id, PendingRecord{r->index, r->leaf, m.payload});

  const std::string index_key = IndexKey(r->index);
  batch_.Put(cfs_[kByPredictionCf], ToSlice(id), index_key);
  const absl::Time served_at = TimeFromProto(p.served_at());
  key_.clear();
  AppendLengthPrefixed(&key_, p.subject_id());
  AppendTime(&key_, served_at);
  key_.append(index_key);
  batch_.Put(cfs_[kBySubjectCf], key_, rocksdb::Slice());
  key_.clear();
  AppendLengthPrefixed(&key_, p.model().name());
  AppendLengthPrefixed(&key_, p.model().version());
  AppendTime(&key_, served_at);
  key_.append(index_key);
  batch_.Put(cfs_[kByModelCf], key_, rocksdb::Slice());
  if (!p.trace_id().empty()) {
    key_.clear();
    AppendLengthPrefixed(&key_, p.trace_id());
    AppendTime(&key_, served_at);
    key_.append(index_key);
    batch_.Put(cfs_[kByTraceCf], key_, rocksdb::Slice());
  }
}

void ShardStore::Impl::FoldKeyedBody(const SourceMessage& m, const std::string& state_key,
                                     const google::protobuf::Message& body, BatchState* b,
                                     MessageResult* r) {
  absl::StatusOr<std::optional<std::string>> existing = ReadStateForWrite(state_key);
  if (!existing.ok()) {
    batch_error_ = existing.status();
    return;
  }
  if (existing->has_value()) {
    absl::string_view in = **existing;
    uint64_t index = 0;
    Digest leaf;
    std::unique_ptr<google::protobuf::Message> stored(body.New());
    if (!ReadU64(&in, &index) || !ReadDigest(&in, &leaf) ||
        !stored->ParseFromArray(in.data(), static_cast<int>(in.size()))) {
      batch_error_ = absl::DataLossError(absl::StrCat(
          "shard ", options_.name, ": corrupt state of ", body.GetDescriptor()->name()));
      return;
    }
    if (SameContent(*stored, body)) {
      r->outcome = FoldOutcome::kDuplicate;
      r->index = index;
      r->leaf = leaf;
      ++b->h.head.counters.duplicates;
      return;
    }
    return Reject(m, b->h.incarnation_seq, RejectKind::kConflict, index,
                  absl::StrCat(body.GetDescriptor()->name(), " for this name and version is ",
                               "already recorded at index ", index, " with different content"),
                  b, r);
  }
  r->outcome = FoldOutcome::kApplied;
  r->index = AppendRecord(m.payload, m.offset, b, &r->leaf);
  PutState(state_key, IndexedState(r->index, r->leaf, body));
}

void ShardStore::Impl::FoldEntityChange(const SourceMessage& m, BatchState* b, MessageResult* r) {
  const auto& change = event_->entity_changed();
  const std::string key = StateKey2(kEntityTag, change.entity_type(), change.entity_id());
  absl::StatusOr<std::optional<std::string>> existing = ReadStateForWrite(key);
  if (!existing.ok()) {
    batch_error_ = existing.status();
    return;
  }
  predlog::v1::EntityState state;
  if (existing->has_value() && !state.ParseFromString(**existing)) {
    batch_error_ =
        absl::DataLossError(absl::StrCat("shard ", options_.name, ": corrupt state of entity ",
                                         change.entity_type(), "/", change.entity_id()));
    return;
  }
  r->outcome = FoldOutcome::kApplied;
  r->index = AppendRecord(m.payload, m.offset, b, &r->leaf);
  ApplyEntityChange(change, r->index, &state);
  PutState(key, state.SerializeAsString());
}

uint64_t ShardStore::Impl::AppendRecord(absl::string_view payload, int64_t offset, BatchState* b,
                                        Digest* leaf) {
  ShardHead& h = b->h.head;
  const uint64_t index = h.next_index++;
  *leaf = Sha256(payload);
  h.chain_head = ChainNext(h.chain_head, *leaf);
  ++h.counters.applied;

  const std::string index_key = IndexKey(index);
  header_.clear();
  AppendU8(&header_, kRecordFormat);
  header_.append(leaf->begin(), leaf->end());
  header_.append(h.chain_head.begin(), h.chain_head.end());
  AppendU32(&header_, b->h.incarnation_seq);
  AppendI64(&header_, offset);
  const rocksdb::Slice key_slice = ToSlice(index_key);
  const rocksdb::Slice value_parts[2] = {ToSlice(header_), ToSlice(payload)};
  batch_.Put(cfs_[kEventsCf], rocksdb::SliceParts(&key_slice, 1),
             rocksdb::SliceParts(value_parts, 2));

  key_.clear();
  AppendTime(&key_, event_->has_recorded_at() ? TimeFromProto(event_->recorded_at()) : batch_time_);
  key_.append(index_key);
  batch_.Put(cfs_[kByTimeCf], key_, rocksdb::Slice());
  return index;
}

void ShardStore::Impl::Reject(const SourceMessage& m, uint32_t source_seq, RejectKind kind,
                              std::optional<uint64_t> original, std::string reason, BatchState* b,
                              MessageResult* r) {
  ShardHead& h = b->h.head;
  const uint64_t seq = h.next_rejected++;
  if (kind == RejectKind::kConflict) {
    ++h.counters.conflicts;
    r->outcome = FoldOutcome::kConflict;
    r->index = *original;
  } else {
    ++h.counters.rejected;
    r->outcome = FoldOutcome::kRejected;
  }
  header_.clear();
  AppendU8(&header_, kRejectedFormat);
  AppendU8(&header_, static_cast<uint8_t>(kind));
  AppendU32(&header_, source_seq);
  AppendI64(&header_, m.offset);
  AppendU8(&header_, original.has_value() ? 1 : 0);
  AppendU64(&header_, original.value_or(0));
  AppendLengthPrefixed(&header_, reason);
  const std::string key = IndexKey(seq);
  const rocksdb::Slice key_slice = ToSlice(key);
  const rocksdb::Slice value_parts[2] = {ToSlice(header_), ToSlice(m.payload)};
  batch_.Put(cfs_[kRejectedCf], rocksdb::SliceParts(&key_slice, 1),
             rocksdb::SliceParts(value_parts, 2));
  r->reason = std::move(reason);
}

void ShardStore::Impl::StartSystemEvent(absl::string_view kind, const BatchState& b) {
  NewEvent();
  event_->set_event_id(absl::StrCat(kind, "-", b.h.head.next_index));
  event_->set_actor("predlog");
  event_->set_schema_version(kSchemaVersion);
  TimeToProto(batch_time_, event_->mutable_recorded_at());
}

uint64_t ShardStore::Impl::AppendSystemEvent(BatchState* b, Digest* leaf) {
  const std::string payload = event_->SerializeAsString();
  const uint64_t index = AppendRecord(payload, /*offset=*/-1, b, leaf);
  // A system record is not a folded message.
  --b->h.head.counters.applied;
  return index;
}

void ShardStore::Impl::WriteSourceGap(const SourceMessage& m, BatchState* b, MessageResult* r) {
  StartSystemEvent("source-gap", *b);
  auto* gap = event_->mutable_source_gap();
  gap->set_incarnation(std::string(m.incarnation));
  gap->set_first_missing_offset(*m.gap_first_offset);
  gap->set_last_missing_offset(m.offset);
  gap->set_reason(std::string(m.payload));
  r->outcome = FoldOutcome::kApplied;
  r->index = AppendSystemEvent(b, &r->leaf);
  ++b->h.head.counters.gaps;
}

void ShardStore::Impl::WriteSourceReset(const std::string& previous, int64_t previous_offset,
                                        absl::string_view incarnation, int64_t first_offset,
                                        BatchState* b) {
  StartSystemEvent("source-reset", *b);
  auto* reset = event_->mutable_source_reset();
  reset->set_previous_incarnation(previous);
  reset->set_previous_last_offset(previous_offset);
  reset->set_new_incarnation(std::string(incarnation));
  reset->set_new_first_offset(first_offset);
  Digest leaf;
  AppendSystemEvent(b, &leaf);
  ++b->h.head.counters.source_resets;
}

absl::StatusOr<std::optional<std::string>> ShardStore::Impl::ReadStateForWrite(
    const std::string& key) {
  using Result = std::optional<std::string>;
  if (auto it = state_overlay_.find(key); it != state_overlay_.end()) return Result(it->second);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cfs_[kStateCf], key, &value);
  if (s.IsNotFound()) return Result();
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("shard ", options_.name, ": read state")));
  return Result(std::move(value));
}

void ShardStore::Impl::PutState(const std::string& key, std::string value) {
  batch_.Put(cfs_[kStateCf], key, value);
  state_overlay_[key] = std::move(value);
}

std::optional<std::pair<uint32_t, Incarnation>> ShardStore::Impl::FindIncarnation(
    absl::string_view name, const BatchState& b) const {
  // The batch's own updates are newer than the published map.
  for (auto it = b.incarnation_updates.rbegin(); it != b.incarnation_updates.rend(); ++it) {
    if (it->second.name == name) return *it;
  }
  absl::MutexLock lock(&mu_);
  for (const auto& [seq, inc] : incarnations_) {
    if (inc.name == name) return std::make_pair(seq, inc);
  }
  return std::nullopt;
}

std::string ShardStore::Impl::IncarnationName(uint32_t seq) const {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = incarnations_.find(seq); it != incarnations_.end()) return it->second.name;
  }
  std::string value;
  absl::string_view in;
  int64_t last_offset;
  if (db_->Get(rocksdb::ReadOptions(), cfs_[kMetaCf], IncarnationKey(seq), &value).ok() &&
      (in = value, ReadI64(&in, &last_offset))) {
    return std::string(in);
  }
  return absl::StrCat("unknown-incarnation-", seq);
}

// ---------------------------------------------------------------------------
// Reading

absl::StatusOr<StoredRecord> ShardStore::Impl::DecodeRecord(uint64_t index,
                                                            absl::string_view value) const {
  StoredRecord rec;
  rec.index = index;
  uint8_t format;
  uint32_t seq;
  if (!ReadU8(&value, &format) || format != kRecordFormat || !ReadDigest(&value, &rec.leaf) ||
      !ReadDigest(&value, &rec.chain) || !ReadU32(&value, &seq) ||
      !ReadI64(&value, &rec.source.offset)) {
    return absl::DataLossError(
        absl::StrCat("shard ", options_.name, ": record ", index, " has a corrupt header"));
  }
  rec.payload = std::string(value);
  rec.source.incarnation = IncarnationName(seq);
  return rec;
}

absl::StatusOr<std::string> ShardStore::Impl::GetRaw(Cf cf, absl::string_view key,
                                                     absl::string_view what) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cfs_[cf], ToSlice(key), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("shard ", options_.name, ": no ", what));
  }
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("shard ", options_.name, ": read ", what)));
  return value;
}

absl::StatusOr<StoredRecord> ShardStore::Impl::Get(uint64_t index) const {
  ASSIGN_OR_RETURN(std::string value,
                   GetRaw(kEventsCf, IndexKey(index), absl::StrCat("record at index ", index)));
  return DecodeRecord(index, value);
}

absl::StatusOr<StoredRecord> ShardStore::Impl::GetByPredictionId(
    absl::string_view prediction_id) const {
  ASSIGN_OR_RETURN(std::string value, GetRaw(kByPredictionCf, prediction_id,
                                             absl::StrCat("prediction_id ", prediction_id)));
  uint64_t index;
  if (!DecodeIndexKey(value, &index)) {
    return absl::DataLossError(
        absl::StrCat("shard ", options_.name, ": corrupt by_prediction entry for ", prediction_id));
  }
  return Get(index);
}

absl::StatusOr<std::vector<StoredRecord>> ShardStore::Impl::ReadRange(uint64_t from_index,
                                                                      size_t limit) const {
  std::vector<StoredRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kEventsCf]));
  for (it->Seek(IndexKey(from_index)); it->Valid() && out.size() < limit; it->Next()) {
    uint64_t index;
    if (!DecodeIndexKey(ToView(it->key()), &index)) {
      return absl::DataLossError(absl::StrCat("shard ", options_.name, ": bad events key"));
    }
    ASSIGN_OR_RETURN(StoredRecord rec, DecodeRecord(index, ToView(it->value())));
    out.push_back(std::move(rec));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("shard ", options_.name, ": read range")));
  return out;
}

absl::StatusOr<ScanPage> ShardStore::Impl::ScanIndex(Cf cf, const std::string& prefix,
                                                     const TimeRange& range,
                                                     absl::string_view cursor, size_t limit) const {
  if (limit == 0) return absl::InvalidArgumentError("scan limit must be > 0");
  if (!cursor.empty() && !absl::StartsWith(cursor, prefix)) {
    return absl::InvalidArgumentError("page cursor does not belong to this scan");
  }
  std::string start = prefix;
  if (range.from != absl::InfinitePast()) AppendTime(&start, range.from);
  std::string end = prefix;
  if (range.to != absl::InfiniteFuture()) {
    AppendTime(&end, range.to);
  } else {
    end = PrefixSuccessor(prefix);
  }
  rocksdb::ReadOptions read_options;
  rocksdb::Slice upper = ToSlice(end);
  if (!end.empty()) read_options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cfs_[cf]));
  if (!cursor.empty() && cursor > absl::string_view(start)) {
    it->Seek(ToSlice(cursor));
    if (it->Valid() && ToView(it->key()) == cursor) it->Next();
  } else {
    it->Seek(ToSlice(start));
  }
  ScanPage page;
  std::string last_key;
  for (; it->Valid(); it->Next()) {
    if (page.records.size() == limit) {
      // More follow: the cursor is the last returned key; the next page starts after it.
      page.next_cursor = std::move(last_key);
      break;
    }
    absl::string_view key = ToView(it->key());
    last_key.assign(key.data(), key.size());
    uint64_t index;
    if (key.size() < 8 || !DecodeIndexKey(key.substr(key.size() - 8), &index)) {
      return absl::DataLossError(absl::StrCat("shard ", options_.name, ": bad index key"));
    }
    page.records.emplace_back().index = index;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("shard ", options_.name, ": scan")));
  it.reset();
  // One MultiGet for the page's records: RocksDB batches the block reads.
  std::vector<std::string> keys;
  std::vector<rocksdb::Slice> key_slices;
  keys.reserve(page.records.size());
  for (const StoredRecord& rec : page.records) keys.push_back(IndexKey(rec.index));
  for (const std::string& k : keys) key_slices.emplace_back(k);
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->MultiGet(rocksdb::ReadOptions(), cfs_[kEventsCf], keys.size(), key_slices.data(),
                values.data(), statuses.data());
  for (size_t i = 0; i < page.records.size(); ++i) {
    const uint64_t index = page.records[i].index;
    RETURN_IF_ERROR(
        FromRocks(statuses[i], absl::StrCat("shard ", options_.name, ": record ", index)));
    ASSIGN_OR_RETURN(page.records[i], DecodeRecord(index, ToView(values[i])));
  }
  return page;
}

absl::StatusOr<uint64_t> ShardStore::Impl::CutAtTime(absl::Time t) const {
  std::string key;
  AppendTime(&key, t);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kByTimeCf]));
  // The latest key strictly before t: keys are time:8 index:8, and t with no
  // index sorts before every key at time t.
  it->SeekForPrev(ToSlice(key));
  RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("shard ", options_.name, ": time index")));
  if (!it->Valid()) return 0;
  absl::string_view k = ToView(it->key());
  uint64_t index;
  if (k.size() != 16 || !DecodeIndexKey(k.substr(8), &index)) {
    return absl::DataLossError(absl::StrCat("shard ", options_.name, ": bad by_time key"));
  }
  return index + 1;
}

absl::StatusOr<std::vector<RejectedRecord>> ShardStore::Impl::ListRejected(uint64_t from_seq,
                                                                           size_t limit) const {
  std::vector<RejectedRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cfs_[kRejectedCf]));
  for (it->Seek(IndexKey(from_seq)); it->Valid() && out.size() < limit; it->Next()) {
    RejectedRecord rec;
    absl::string_view value = ToView(it->value());
    uint8_t format, kind, has_original;
    uint32_t seq;
    uint64_t original;
    absl::string_view reason;
    if (!DecodeIndexKey(ToView(it->key()), &rec.seq) || !ReadU8(&value, &format) ||
        format != kRejectedFormat || !ReadU8(&value, &kind) || !ReadU32(&value, &seq) ||
        !ReadI64(&value, &rec.source.offset) || !ReadU8(&value, &has_original) ||
        !ReadU64(&value, &original) || !ReadLengthPrefixed(&value, &reason)) {
      return absl::DataLossError(
          absl::StrCat("shard ", options_.name, ": corrupt rejected record"));
    }
    rec.kind = static_cast<RejectKind>(kind);
    if (has_original) rec.original_index = original;
    rec.reason = std::string(reason);
    rec.payload = std::string(value);
    rec.source.incarnation = IncarnationName(seq);
    out.push_back(std::move(rec));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("shard ", options_.name, ": rejected")));
  return out;
}

absl::Status ShardStore::Impl::ForEachState(
    char tag, const std::function<absl::Status(absl::string_view)>& fn) const {
  const std::string prefix(1, tag);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kStateCf]));
  for (it->Seek(ToSlice(prefix)); it->Valid() && it->key().starts_with(ToSlice(prefix));
       it->Next()) {
    RETURN_IF_ERROR(fn(ToView(it->value())));
  }
  return FromRocks(it->status(), absl::StrCat("shard ", options_.name, ": read state"));
}

absl::StatusOr<std::string> ShardStore::Impl::GetState(const std::string& key,
                                                       absl::string_view what) const {
  return GetRaw(kStateCf, key, what);
}

absl::StatusOr<VerifyReport> ShardStore::Impl::Verify() const {
  VerifyReport report;
  Digest chain = kChainGenesis;
  // One consistent view of records and head: a concurrent batch is either
  // wholly in it or not at all.
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  rocksdb::ReadOptions read_options;
  read_options.snapshot = snapshot;
  HeadState viewed;
  {
    std::string head_value;
    int64_t last_offset;
    rocksdb::Status s = db_->Get(read_options, cfs_[kMetaCf], ToSlice(kHeadKey), &head_value);
    if (!s.ok() && !s.IsNotFound()) {
      db_->ReleaseSnapshot(snapshot);
      return FromRocks(s, absl::StrCat("shard ", options_.name, ": read head"));
    }
    if (s.ok() && !DecodeHead(head_value, &viewed, &last_offset)) {
      db_->ReleaseSnapshot(snapshot);
      return absl::DataLossError(absl::StrCat("shard ", options_.name, ": corrupt head"));
    }
  }
  const ShardHead& head = viewed.head;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cfs_[kEventsCf]));
  uint64_t expected = 0;
  for (it->SeekToFirst(); it->Valid() && !report.first_bad_index; it->Next(), ++expected) {
    uint64_t index;
    if (!DecodeIndexKey(ToView(it->key()), &index) || index != expected) {
      report.first_bad_index = expected;
      report.problem = absl::StrCat("record ", expected, " is missing");
      break;
    }
    absl::StatusOr<StoredRecord> rec = DecodeRecord(index, ToView(it->value()));
    if (!rec.ok()) {
      report.first_bad_index = index;
      report.problem = std::string(rec.status().message());
      break;
    }
    if (Sha256(rec->payload) != rec->leaf) {
      report.first_bad_index = index;
      report.problem = absl::StrCat("record ", index, ": leaf does not match its bytes");
      break;
    }
    chain = ChainNext(chain, rec->leaf);
    if (chain != rec->chain) {
      report.first_bad_index = index;
      report.problem = absl::StrCat("record ", index, ": chain value does not follow");
      break;
    }
    ++report.records_checked;
  }
  absl::Status status = FromRocks(it->status(), absl::StrCat("shard ", options_.name, ": verify"));
  it.reset();
  db_->ReleaseSnapshot(snapshot);
  RETURN_IF_ERROR(status);
  if (!report.first_bad_index && report.records_checked < head.next_index) {
    report.first_bad_index = report.records_checked;
    report.problem = absl::StrCat("record ", report.records_checked, " is missing (head says ",
                                  head.next_index, " records)");
  } else if (!report.first_bad_index && report.records_checked > head.next_index) {
    report.first_bad_index = head.next_index;
    report.problem = absl::StrCat("record ", head.next_index, " exists beyond the head (",
                                  head.next_index, " records)");
  } else if (!report.first_bad_index && chain != head.chain_head) {
    report.first_bad_index = head.next_index == 0 ? 0 : head.next_index - 1;
    report.problem = "the stored chain head does not match the records";
  }
  return report;
}

// ---------------------------------------------------------------------------
// Snapshots

absl::StatusOr<SnapshotInfo> ShardStore::Impl::CreateSnapshot(absl::Time now) {
  if (options_.read_only) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", options_.name, " is open read-only"));
  }
  const uint64_t index = Head().next_index;
  SnapshotInfo info{index, now,
                    (fs::path(SnapshotDir()) / absl::StrFormat("%020d", index)).string()};
  std::string existing;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cfs_[kMetaCf], SnapshotKey(index), &existing);
  if (s.ok()) {
    absl::string_view in = existing;
    if (!ReadTime(&in, &info.created_at)) {
      return absl::DataLossError(absl::StrCat("shard ", options_.name, ": corrupt snapshot entry"));
    }
    return info;  // Nothing new since the last snapshot at this index.
  }
  RETURN_IF_ERROR(FromRocks(s.IsNotFound() ? rocksdb::Status::OK() : s, "snapshot catalog"));

  std::error_code ec;
  fs::create_directories(SnapshotDir(), ec);
  // A leftover directory without a catalog entry is an interrupted attempt.
  fs::remove_all(info.path, ec);
  rocksdb::Checkpoint* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  RETURN_IF_ERROR(FromRocks(checkpoint->CreateCheckpoint(info.path),
                            absl::StrCat("shard ", options_.name, ": snapshot at ", index)));
  std::string value;
  AppendTime(&value, now);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  RETURN_IF_ERROR(FromRocks(db_->Put(sync, cfs_[kMetaCf], SnapshotKey(index), value),
                            absl::StrCat("shard ", options_.name, ": catalog snapshot")));
  return info;
}

absl::StatusOr<std::vector<SnapshotInfo>> ShardStore::Impl::ListSnapshots() const {
  std::vector<SnapshotInfo> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kMetaCf]));
  for (it->Seek(ToSlice(kSnapshotPrefix));
       it->Valid() && it->key().starts_with(ToSlice(kSnapshotPrefix)); it->Next()) {
    absl::string_view k = ToView(it->key());
    k.remove_prefix(kSnapshotPrefix.size());
    absl::string_view v = ToView(it->value());
    SnapshotInfo info;
    if (!ReadU64(&k, &info.index) || !ReadTime(&v, &info.created_at)) {
      return absl::DataLossError(absl::StrCat("shard ", options_.name, ": corrupt snapshot entry"));
    }
    info.path = (fs::path(SnapshotDir()) / absl::StrFormat("%020d", info.index)).string();
    out.push_back(std::move(info));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("shard ", options_.name, ": snapshots")));
  return out;
}

absl::StatusOr<int> ShardStore::Impl::PruneSnapshots(const RetentionPolicy& policy,
                                                     absl::Time now) {
  if (options_.read_only) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", options_.name, " is open read-only"));
  }
  ASSIGN_OR_RETURN(std::vector<SnapshotInfo> snapshots, ListSnapshots());
  int removed = 0;
  for (uint64_t index : SnapshotsToPrune(snapshots, policy, now)) {
    // Catalog first: a crash in between leaves an orphan directory, which the
    // next open removes, never a catalog entry pointing at nothing.
    rocksdb::WriteOptions sync;
    sync.sync = true;
    RETURN_IF_ERROR(FromRocks(db_->Delete(sync, cfs_[kMetaCf], SnapshotKey(index)),
                              absl::StrCat("shard ", options_.name, ": uncatalog snapshot")));
    std::error_code ec;
    fs::remove_all(fs::path(SnapshotDir()) / absl::StrFormat("%020d", index), ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("shard ", options_.name, ": remove snapshot ", index, ": ", ec.message()));
    }
    ++removed;
  }
  return removed;
}

absl::Status ShardStore::Impl::RemoveOrphanSnapshots() {
  std::error_code ec;
  if (!fs::exists(SnapshotDir(), ec)) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<SnapshotInfo> snapshots, ListSnapshots());
  absl::flat_hash_map<std::string, bool> catalogued;
  for (const auto& s : snapshots) catalogued[fs::path(s.path).filename().string()] = true;
  for (const auto& entry : fs::directory_iterator(SnapshotDir(), ec)) {
    if (!catalogued.contains(entry.path().filename().string())) {
      PREDLOG_LOG(WARNING) << "shard " << options_.name << ": removing uncatalogued snapshot "
                           << entry.path().string();
      fs::remove_all(entry.path(), ec);
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<ShardStore>> ShardStore::Open(const ShardOptions& options) {
  auto impl = std::make_unique<Impl>(options, (fs::path(options.dir) / "db").string());
  RETURN_IF_ERROR(impl->OpenDb());
  return std::unique_ptr<ShardStore>(new ShardStore(std::move(impl)));
}

ShardStore::ShardStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ShardStore::~ShardStore() = default;

absl::StatusOr<BatchResult> ShardStore::ApplyBatch(absl::Span<const SourceMessage> messages) {
  return impl_->ApplyBatch(messages);
}
ShardHead ShardStore::Head() const { return impl_->Head(); }
const std::string& ShardStore::name() const { return impl_->options().name; }

absl::StatusOr<StoredRecord> ShardStore::Get(uint64_t index) const { return impl_->Get(index); }
absl::StatusOr<StoredRecord> ShardStore::GetByPredictionId(absl::string_view id) const {
  return impl_->GetByPredictionId(id);
}
absl::StatusOr<std::vector<StoredRecord>> ShardStore::ReadRange(uint64_t from_index,
                                                                size_t limit) const {
  return impl_->ReadRange(from_index, limit);
}
absl::StatusOr<ScanPage> ShardStore::ScanSubject(absl::string_view subject_id,
                                                 const TimeRange& served, absl::string_view cursor,
                                                 size_t limit) const {
  std::string prefix;
  AppendLengthPrefixed(&prefix, subject_id);
  return impl_->ScanIndex(kBySubjectCf, prefix, served, cursor, limit);
}
absl::StatusOr<ScanPage> ShardStore::ScanModel(absl::string_view name, absl::string_view version,
                                               const TimeRange& served, absl::string_view cursor,
                                               size_t limit) const {
  std::string prefix;
  AppendLengthPrefixed(&prefix, name);
  AppendLengthPrefixed(&prefix, version);
  return impl_->ScanIndex(kByModelCf, prefix, served, cursor, limit);
}
absl::StatusOr<ScanPage> ShardStore::ScanTrace(absl::string_view trace_id, absl::string_view cursor,
                                               size_t limit) const {
  std::string prefix;
  AppendLengthPrefixed(&prefix, trace_id);
  return impl_->ScanIndex(kByTraceCf, prefix, TimeRange{}, cursor, limit);
}
absl::StatusOr<uint64_t> ShardStore::CutAtTime(absl::Time t) const { return impl_->CutAtTime(t); }
absl::StatusOr<std::vector<RejectedRecord>> ShardStore::ListRejected(uint64_t from_seq,
                                                                     size_t limit) const {
  return impl_->ListRejected(from_seq, limit);
}

absl::StatusOr<predlog::v1::EntityState> ShardStore::GetEntity(absl::string_view type,
                                                               absl::string_view id) const {
  ASSIGN_OR_RETURN(std::string value, impl_->GetState(StateKey2(kEntityTag, type, id),
                                                      absl::StrCat("entity ", type, "/", id)));
  predlog::v1::EntityState state;
  if (!state.ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("corrupt state of entity ", type, "/", id));
  }
  return state;
}

namespace {
template <typename T>
absl::StatusOr<T> ParseIndexedState(absl::string_view value, absl::string_view what) {
  uint64_t index;
  Digest leaf;
  T body;
  if (!ReadU64(&value, &index) || !ReadDigest(&value, &leaf) ||
      !body.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("corrupt state of ", what));
  }
  return body;
}
}  // namespace

absl::StatusOr<RegistryState> ShardStore::GetRegistry() const {
  RegistryState registry;
  auto add = [&](char tag, absl::string_view value) -> absl::Status {
    uint64_t index;
    Digest leaf;
    if (!ReadU64(&value, &index) || !ReadDigest(&value, &leaf)) {
      return absl::DataLossError(absl::StrCat("shard ", name(), ": corrupt registry state"));
    }
    predlog::v1::AuditEvent event;
    bool parsed = false;
    if (tag == kModelTag) {
      parsed = event.mutable_model_registered()->ParseFromArray(value.data(),
                                                                static_cast<int>(value.size()));
    } else if (tag == kDatasetTag) {
      parsed = event.mutable_dataset_registered()->ParseFromArray(value.data(),
                                                                  static_cast<int>(value.size()));
    } else {
      parsed = event.mutable_model_deployed()->ParseFromArray(value.data(),
                                                              static_cast<int>(value.size()));
    }
    if (!parsed) {
      return absl::DataLossError(absl::StrCat("shard ", name(), ": corrupt registry state"));
    }
    ApplyRegistryRecord(event, index, leaf, &registry);
    return absl::OkStatus();
  };
  for (char tag : {kModelTag, kDatasetTag, kDeploymentTag}) {
    RETURN_IF_ERROR(
        impl_->ForEachState(tag, [&](absl::string_view value) { return add(tag, value); }));
  }
  return registry;
}

absl::StatusOr<predlog::v1::ModelRegistered> ShardStore::GetModel(absl::string_view name,
                                                                  absl::string_view version) const {
  const std::string what = absl::StrCat("model ", name, "@", version);
  ASSIGN_OR_RETURN(std::string value, impl_->GetState(StateKey2(kModelTag, name, version), what));
  return ParseIndexedState<predlog::v1::ModelRegistered>(value, what);
}

absl::StatusOr<VerifyReport> ShardStore::Verify() const { return impl_->Verify(); }

absl::StatusOr<SnapshotInfo> ShardStore::CreateSnapshot(absl::Time now) {
  return impl_->CreateSnapshot(now);
}
absl::StatusOr<std::vector<SnapshotInfo>> ShardStore::ListSnapshots() const {
  return impl_->ListSnapshots();
}
absl::StatusOr<std::unique_ptr<ShardStore>> ShardStore::OpenSnapshot(
    const SnapshotInfo& snapshot) const {
  ShardOptions options = impl_->options();
  options.read_only = true;
  options.name = absl::StrCat(options.name, "@snapshot-", snapshot.index);
  auto impl = std::make_unique<Impl>(options, snapshot.path);
  RETURN_IF_ERROR(impl->OpenDb());
  return std::unique_ptr<ShardStore>(new ShardStore(std::move(impl)));
}
absl::StatusOr<int> ShardStore::PruneSnapshots(const RetentionPolicy& policy, absl::Time now) {
  return impl_->PruneSnapshots(policy, now);
}

}  // namespace predlog::storage
