// Reading a shard: records by index, by prediction id and by range; the index
// scans (by_subject, by_model, by_trace, by_source, by_entity) and the key-only walks of
// by_model and by_source; the time cut; rejected records; the entity and
// registry state; and Verify of the hash chain against the head.
// The formats read here are the grammar at the top of shard_store_impl.h.
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "storage/key_codec.h"
#include "storage/logging.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"
#include "storage/shard_store_impl.h"
#include "storage/state_fold.h"
#include "storage/status_macros.h"

namespace predlog::storage {
using namespace internal;  // NOLINT(build/namespaces): the helpers shared by ShardStore::Impl
namespace {

using ::predlog::v1::AuditEvent;

template <typename T>
absl::StatusOr<T> ParseIndexedBody(absl::string_view value, absl::string_view what) {
  uint64_t index;
  Digest leaf;
  T body;
  if (!ParseIndexedState(value, &index, &leaf, &body)) {
    return absl::DataLossError(absl::StrCat("corrupt state of ", what));
  }
  return body;
}

// The key range [*start, *end) of an index scan of the entries under
// `prefix` whose time (after the prefix) lies in `range`; *end is empty when
// nothing bounds it (a prefix of all 0xff bytes).
void IndexBounds(const std::string& prefix, const TimeRange& range, std::string* start,
                 std::string* end) {
  *start = prefix;
  if (range.from != absl::InfinitePast()) AppendTime(start, range.from);
  if (range.to != absl::InfiniteFuture()) {
    *end = prefix;
    AppendTime(end, range.to);
  } else {
    *end = PrefixSuccessor(prefix);
  }
}

}  // namespace

absl::StatusOr<AuditEvent> StoredRecord::Event() const {
  AuditEvent event;
  if (!event.ParseFromString(payload)) {
    return absl::DataLossError(absl::StrCat("record ", index, " does not parse as AuditEvent"));
  }
  return event;
}

std::string ShardStore::Impl::IncarnationName(uint32_t seq) const {
  if (seq == 0) return std::string(kDirectSource);
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

absl::StatusOr<StoredRecord> ShardStore::Impl::DecodeRecord(uint64_t index,
                                                            absl::string_view value) const {
  StoredRecord rec;
  rec.index = index;
  uint8_t format;
  uint32_t seq;
  int64_t appended_us = 0;
  if (!ReadU8(&value, &format) || format < 1 || format > kRecordFormat ||
      !ReadDigest(&value, &rec.leaf) || !ReadDigest(&value, &rec.chain) || !ReadU32(&value, &seq) ||
      !ReadI64(&value, &rec.source.offset) || (format >= 2 && !ReadI64(&value, &appended_us))) {
    return absl::DataLossError(
        absl::StrCat("shard ", options_.name, ": record ", index, " has a corrupt header"));
  }
  if (format >= 2) rec.appended_at = absl::FromUnixMicros(appended_us);
  rec.payload = std::string(value);
  rec.source.incarnation = IncarnationName(seq);
  return rec;
}

absl::Status ShardStore::Impl::ReadStatus(const rocksdb::Status& s,
                                          absl::string_view context) const {
  absl::Status status = FromRocks(s, context);
  if (s.IsCorruption()) {
    const uint64_t seen = read_corruptions_.fetch_add(1, std::memory_order_relaxed) + 1;
    // Every one until 10, then every 1000th: a damaged block read in a loop
    // must not flood the log.
    if (seen <= 10 || seen % 1000 == 0) {
      PREDLOG_LOG(ERROR) << "CORRUPTION (" << seen << " reads so far): " << status.message();
    }
  }
  return status;
}

absl::StatusOr<std::string> ShardStore::Impl::GetRaw(Cf cf, absl::string_view key,
                                                     absl::string_view what) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cfs_[cf], ToSlice(key), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("shard ", options_.name, ": no ", what));
  }
  RETURN_IF_ERROR(ReadStatus(s, absl::StrCat("shard ", options_.name, ": read ", what)));
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
  RETURN_IF_ERROR(ReadStatus(it->status(), absl::StrCat("shard ", options_.name, ": read range")));
  return out;
}

absl::StatusOr<ScanPage> ShardStore::Impl::ScanIndex(Cf cf, const std::string& prefix,
                                                     const TimeRange& range,
                                                     absl::string_view cursor, size_t limit) const {
  if (limit == 0) return absl::InvalidArgumentError("scan limit must be > 0");
  if (!cursor.empty() && !absl::StartsWith(cursor, prefix)) {
    return absl::InvalidArgumentError("page cursor does not belong to this scan");
  }
  std::string start, end;
  IndexBounds(prefix, range, &start, &end);
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
  RETURN_IF_ERROR(ReadStatus(it->status(), absl::StrCat("shard ", options_.name, ": scan")));
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
        ReadStatus(statuses[i], absl::StrCat("shard ", options_.name, ": record ", index)));
    ASSIGN_OR_RETURN(page.records[i], DecodeRecord(index, ToView(values[i])));
  }
  return page;
}

absl::Status ShardStore::Impl::VisitIndex(Cf cf, const std::string& prefix, const TimeRange& range,
                                          bool with_model,
                                          absl::FunctionRef<bool(const IndexEntry&)> visit) const {
  std::string start, end;
  IndexBounds(prefix, range, &start, &end);
  rocksdb::ReadOptions read_options;
  rocksdb::Slice upper = ToSlice(end);
  if (!end.empty()) read_options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cfs_[cf]));
  IndexEntry entry;
  for (it->Seek(ToSlice(start)); it->Valid(); it->Next()) {
    // Below the upper bound, so under the prefix: served_at:time index:u64 follow.
    absl::string_view key = ToView(it->key());
    absl::string_view value = ToView(it->value());
    bool ok = key.size() == prefix.size() + 16;
    if (ok) {
      key.remove_prefix(prefix.size());
      ok = ReadTime(&key, &entry.served_at) && ReadU64(&key, &entry.index);
    }
    if (ok && with_model) {
      ok = ReadLengthPrefixed(&value, &entry.model_name) &&
           ReadLengthPrefixed(&value, &entry.model_version) && value.empty();
    }
    if (!ok) {
      return absl::DataLossError(absl::StrCat("shard ", options_.name, ": bad ", kCfNames[cf],
                                              " entry (key ", absl::CHexEscape(ToView(it->key())),
                                              ")"));
    }
    if (!visit(entry)) return absl::OkStatus();
  }
  return ReadStatus(it->status(), absl::StrCat("shard ", options_.name, ": scan ", kCfNames[cf]));
}

absl::Status ShardStore::Impl::CheckDataSourceIndex() const {
  if (has_source_index_) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("shard ", options_.name,
                   " predates the data-source index (by_source, shard format 4); open it "
                   "writable once to build it"));
}

absl::Status ShardStore::Impl::CheckEntityIndex() const {
  if (has_entity_index_) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("shard ", options_.name,
                   " predates the entity index (by_entity, shard format 5); open it writable "
                   "once to build it"));
}

absl::StatusOr<uint64_t> ShardStore::Impl::CutAtTime(absl::Time t) const {
  std::string key;
  AppendTime(&key, t);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kByTimeCf]));
  // The latest key strictly before t: keys are time:8 index:8, and t with no
  // index sorts before every key at time t.
  it->SeekForPrev(ToSlice(key));
  RETURN_IF_ERROR(ReadStatus(it->status(), absl::StrCat("shard ", options_.name, ": time index")));
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
  RETURN_IF_ERROR(ReadStatus(it->status(), absl::StrCat("shard ", options_.name, ": rejected")));
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
  return ReadStatus(it->status(), absl::StrCat("shard ", options_.name, ": read state"));
}

absl::StatusOr<std::string> ShardStore::Impl::GetState(const std::string& key,
                                                       absl::string_view what) const {
  return GetRaw(kStateCf, key, what);
}

MerkleNodeReader ShardStore::Impl::NodeReader(const rocksdb::Snapshot* snapshot) const {
  return [this, snapshot](uint8_t level, uint64_t index) -> absl::StatusOr<Digest> {
    rocksdb::ReadOptions read_options;
    read_options.snapshot = snapshot;
    std::string value;
    const std::string what = absl::StrCat("shard ", options_.name, ": Merkle node ",
                                          static_cast<int>(level), "/", index);
    rocksdb::Status s;
    if (level == 0) {
      // A record's leaf comes from its header; only a lost index has its
      // leaf stored.
      s = db_->Get(read_options, cfs_[kEventsCf], ToSlice(IndexKey(index)), &value);
      if (s.ok()) {
        ASSIGN_OR_RETURN(StoredRecord record, DecodeRecord(index, value));
        return RecordMerkleLeaf(record.appended_at, record.leaf);
      }
      if (!s.IsNotFound()) RETURN_IF_ERROR(ReadStatus(s, what));
    }
    s = db_->Get(read_options, cfs_[kMerkleCf], ToSlice(MerkleKey(level, index)), &value);
    if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat(what, " is missing"));
    RETURN_IF_ERROR(ReadStatus(s, what));
    Digest hash;
    absl::string_view in = value;
    if (value.size() != hash.size() || !ReadDigest(&in, &hash)) {
      return absl::DataLossError(absl::StrCat(what, " is not 32 bytes"));
    }
    return hash;
  };
}

absl::Status ShardStore::Impl::CheckTreeSize(uint64_t size) const {
  if (!has_tree_) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", options_.name, " was written by an older predlog and has no ",
                     "Merkle tree yet: open it writable once to build it"));
  }
  const uint64_t records = Head().next_index;
  if (size > records) {
    return absl::OutOfRangeError(absl::StrCat("shard ", options_.name, " has ", records,
                                              " records; its tree has no size ", size));
  }
  return absl::OkStatus();
}

absl::StatusOr<Digest> ShardStore::Impl::TreeRoot(uint64_t size) const {
  RETURN_IF_ERROR(CheckTreeSize(size));
  return MerkleRootAt(size, NodeReader(nullptr));
}

absl::StatusOr<std::vector<Digest>> ShardStore::Impl::InclusionProof(uint64_t index,
                                                                     uint64_t size) const {
  RETURN_IF_ERROR(CheckTreeSize(size));
  return MerkleInclusionProof(index, size, NodeReader(nullptr));
}

absl::StatusOr<std::vector<Digest>> ShardStore::Impl::ConsistencyProof(uint64_t old_size,
                                                                       uint64_t size) const {
  RETURN_IF_ERROR(CheckTreeSize(size));
  return MerkleConsistencyProof(old_size, size, NodeReader(nullptr));
}

absl::StatusOr<std::vector<Digest>> ShardStore::Impl::RangeProof(uint64_t begin, uint64_t end,
                                                                 uint64_t size,
                                                                 MerkleNodeCache* cache) const {
  RETURN_IF_ERROR(CheckTreeSize(size));
  const MerkleNodeReader read = NodeReader(nullptr);
  return MerkleRangeProof(begin, end, size, cache != nullptr ? cache->Wrap(read) : read);
}

absl::StatusOr<std::string> ShardStore::Impl::SignCheckpointText(
    const NoteSigner& signer, absl::string_view origin, uint64_t size,
    const std::vector<std::string>& extensions, absl::Time now) const {
  Checkpoint checkpoint;
  checkpoint.origin = std::string(origin);
  checkpoint.size = size;
  ASSIGN_OR_RETURN(checkpoint.root, TreeRoot(size));
  checkpoint.extensions.push_back(SignedAtLine(now));
  checkpoint.extensions.insert(checkpoint.extensions.end(), extensions.begin(), extensions.end());
  return signer.Sign(checkpoint.Text());
}

absl::StatusOr<std::string> ShardStore::Impl::SignCheckpoint(
    const NoteSigner& signer, absl::string_view origin, const std::vector<std::string>& extensions,
    absl::Duration reuse_within) {
  if (options_.read_only) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", options_.name, " is open read-only"));
  }
  if (origin.empty() || origin.find('\n') != absl::string_view::npos) {
    return absl::InvalidArgumentError("checkpoint origin must be one non-empty line");
  }
  for (const std::string& line : extensions) {
    if (line.empty() || line.find('\n') != std::string::npos ||
        absl::StartsWith(line, kSignedAtExtension)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint extension \"", absl::CHexEscape(line),
          "\" must be one non-empty line, and not a signed-at line (the shard adds that)"));
    }
  }
  const absl::Time now = options_.clock ? options_.clock() : absl::Now();
  const uint64_t size = Head().next_index;
  absl::StatusOr<std::string> kept = CheckpointAt(size);
  if (!kept.ok() && kept.status().code() != absl::StatusCode::kNotFound) return kept;
  if (kept.ok()) {
    // The kept one, when this key signed it for this origin and these
    // extensions recently enough; after a key rotation, a new origin or new
    // extensions, or once it is too old, a new note for the same tree
    // replaces it.
    ASSIGN_OR_RETURN(auto verifier, NoteVerifier::Create(signer.verifier_key()));
    absl::StatusOr<std::string> text = verifier->Open(*kept);
    absl::StatusOr<Checkpoint> parsed =
        text.ok() ? ParseCheckpoint(*text) : absl::StatusOr<Checkpoint>(text.status());
    if (parsed.ok() && parsed->origin == origin && !parsed->extensions.empty() &&
        std::vector<std::string>(parsed->extensions.begin() + 1, parsed->extensions.end()) ==
            extensions) {
      absl::StatusOr<CheckpointExtensions> lines = ParseCheckpointExtensions(*parsed);
      if (lines.ok() && lines->signed_at.has_value() &&
          SignedAtLine(*lines->signed_at) == parsed->extensions[0]) {
        if (reuse_within > absl::ZeroDuration() && now - *lines->signed_at < reuse_within) {
          return kept;
        }
        // Only later: the same tree signed again, now. The kept one stays
        // (it is what was handed out first, and a consistency proof needs
        // only the size), and no write is needed.
        return SignCheckpointText(signer, origin, size, extensions, now);
      }
    }
  }
  ASSIGN_OR_RETURN(std::string note, SignCheckpointText(signer, origin, size, extensions, now));
  std::string key(kCheckpointPrefix);
  AppendU64(&key, size);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  RETURN_IF_ERROR(FromRocks(db_->Put(sync, cfs_[kMetaCf], ToSlice(key), ToSlice(note)),
                            absl::StrCat("shard ", options_.name, ": keep checkpoint ", size)));
  return note;
}

absl::StatusOr<std::string> ShardStore::Impl::LatestCheckpoint() const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kMetaCf]));
  it->SeekForPrev(ToSlice(PrefixSuccessor(kCheckpointPrefix)));
  const std::string context = absl::StrCat("shard ", options_.name, ": checkpoints");
  RETURN_IF_ERROR(ReadStatus(it->status(), context));
  if (!it->Valid() || !it->key().starts_with(ToSlice(kCheckpointPrefix))) {
    return absl::NotFoundError(absl::StrCat("shard ", options_.name, " has no checkpoint yet"));
  }
  return it->value().ToString();
}

absl::StatusOr<std::string> ShardStore::Impl::CheckpointAt(uint64_t size) const {
  std::string key(kCheckpointPrefix);
  AppendU64(&key, size);
  return GetRaw(kMetaCf, key, absl::StrCat("checkpoint of size ", size));
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
      return ReadStatus(s, absl::StrCat("shard ", options_.name, ": read head"));
    }
    if (s.ok() && !DecodeHead(head_value, &viewed, &last_offset)) {
      db_->ReleaseSnapshot(snapshot);
      return absl::DataLossError(absl::StrCat("shard ", options_.name, ": corrupt head"));
    }
  }
  const ShardHead& head = viewed.head;
  // The Merkle tree recomputed from the records: each node it completes is
  // compared with the stored one.
  MerkleFrontier tree;
  std::vector<MerkleNode> completed;
  std::optional<absl::Time> last_appended;
  std::string time_key;
  const MerkleNodeReader stored_node = NodeReader(snapshot);
  absl::Status tree_status;
  auto check_nodes = [&] {
    for (const MerkleNode& node : completed) {
      if (!has_tree_ || report.first_bad_index || !tree_status.ok()) break;
      if (node.level == 0) continue;  // a record's leaf: checked from its bytes above
      absl::StatusOr<Digest> stored = stored_node(node.level, node.index);
      if (!stored.ok() && stored.status().code() != absl::StatusCode::kNotFound) {
        tree_status = stored.status();
      } else if (!stored.ok() || *stored != node.hash) {
        report.first_bad_index = node.index << node.level;
        report.problem =
            absl::StrCat("the stored Merkle tree does not match the records: node ", node.level,
                         "/", node.index, " (records from ", node.index << node.level, ") is ",
                         stored.ok() ? "different" : "missing");
      }
    }
    completed.clear();
  };
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cfs_[kEventsCf]));
  uint64_t expected = 0;
  for (it->SeekToFirst(); it->Valid() && !report.first_bad_index; it->Next(), ++expected) {
    uint64_t index;
    if (!DecodeIndexKey(ToView(it->key()), &index) || index < expected) {
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
    if (index != expected) {
      // Only an accepted loss may leave a hole, and its record comes right
      // after it and names it.
      absl::StatusOr<predlog::v1::AuditEvent> event = rec->Event();
      if (!event.ok() || !event->has_records_lost() ||
          event->records_lost().first_lost_index() != expected ||
          event->records_lost().last_lost_index() + 1 != index ||
          event->records_lost().intact_chain_sha256() != ToHex(chain)) {
        report.first_bad_index = expected;
        report.problem = absl::StrCat("record ", expected, " is missing");
        break;
      }
      while (tree.size() < index) tree.Append(LostMerkleLeaf(tree.size()), &completed);
      expected = index;
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
    tree.Append(RecordMerkleLeaf(rec->appended_at, rec->leaf), &completed);
    check_nodes();
    if (report.first_bad_index) break;
    if (rec->appended_at.has_value()) {
      // Cuts go by the time index: it must hold this record at the time its
      // header says, and append times never go back.
      if (last_appended.has_value() && *rec->appended_at < *last_appended) {
        report.first_bad_index = index;
        report.problem = absl::StrCat("record ", index, ": appended_at goes back");
        break;
      }
      last_appended = rec->appended_at;
      time_key.clear();
      AppendTime(&time_key, *rec->appended_at);
      time_key.append(IndexKey(index));
      std::string ignored;
      const rocksdb::Status found =
          db_->Get(read_options, cfs_[kByTimeCf], ToSlice(time_key), &ignored);
      if (found.IsNotFound()) {
        report.first_bad_index = index;
        report.problem =
            absl::StrCat("record ", index, ": the time index does not hold it at its appended_at");
        break;
      }
      if (!found.ok()) {
        tree_status = ReadStatus(found, absl::StrCat("shard ", options_.name, ": time index"));
        break;
      }
    }
    ++report.records_checked;
  }
  absl::Status status = ReadStatus(it->status(), absl::StrCat("shard ", options_.name, ": verify"));
  it.reset();
  db_->ReleaseSnapshot(snapshot);
  RETURN_IF_ERROR(status);
  RETURN_IF_ERROR(tree_status);
  // `expected` is one past the last record's index (records_checked, but for
  // the holes of accepted losses).
  if (!report.first_bad_index && expected < head.next_index) {
    report.first_bad_index = expected;
    report.problem =
        absl::StrCat("record ", expected, " is missing (head says ", head.next_index, " records)");
  } else if (!report.first_bad_index && expected > head.next_index) {
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
// The public reads that build index prefixes or parse state themselves (the
// ones that only forward to Impl are in shard_store.cc).

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
absl::StatusOr<ScanPage> ShardStore::ScanDataSource(absl::string_view name,
                                                    absl::string_view version,
                                                    const TimeRange& served,
                                                    absl::string_view cursor, size_t limit) const {
  RETURN_IF_ERROR(impl_->CheckDataSourceIndex());
  std::string prefix;
  AppendLengthPrefixed(&prefix, name);
  AppendLengthPrefixed(&prefix, version);
  return impl_->ScanIndex(kBySourceCf, prefix, served, cursor, limit);
}
absl::StatusOr<ScanPage> ShardStore::ScanEntity(absl::string_view entity_type,
                                                absl::string_view entity_id,
                                                const TimeRange& recorded, absl::string_view cursor,
                                                size_t limit) const {
  RETURN_IF_ERROR(impl_->CheckEntityIndex());
  std::string prefix;
  AppendLengthPrefixed(&prefix, entity_type);
  AppendLengthPrefixed(&prefix, entity_id);
  return impl_->ScanIndex(kByEntityCf, prefix, recorded, cursor, limit);
}
absl::Status ShardStore::VisitModelIndex(absl::string_view name, absl::string_view version,
                                         const TimeRange& served,
                                         absl::FunctionRef<bool(const IndexEntry&)> visit) const {
  std::string prefix;
  AppendLengthPrefixed(&prefix, name);
  AppendLengthPrefixed(&prefix, version);
  return impl_->VisitIndex(kByModelCf, prefix, served, /*with_model=*/false, visit);
}
absl::Status ShardStore::VisitDataSourceIndex(
    absl::string_view name, absl::string_view version, const TimeRange& served,
    absl::FunctionRef<bool(const IndexEntry&)> visit) const {
  RETURN_IF_ERROR(impl_->CheckDataSourceIndex());
  std::string prefix;
  AppendLengthPrefixed(&prefix, name);
  AppendLengthPrefixed(&prefix, version);
  return impl_->VisitIndex(kBySourceCf, prefix, served, /*with_model=*/true, visit);
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

absl::StatusOr<RegistryState> ShardStore::GetRegistry() const {
  RegistryState registry;
  auto add = [&](char tag, absl::string_view value) -> absl::Status {
    uint64_t index;
    Digest leaf;
    predlog::v1::AuditEvent event;
    google::protobuf::Message* body = nullptr;
    if (tag == kModelTag) {
      body = event.mutable_model_registered();
    } else if (tag == kDatasetTag) {
      body = event.mutable_dataset_registered();
    } else {
      body = event.mutable_model_deployed();
    }
    if (!ParseIndexedState(value, &index, &leaf, body)) {
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
  return ParseIndexedBody<predlog::v1::ModelRegistered>(value, what);
}

}  // namespace predlog::storage
