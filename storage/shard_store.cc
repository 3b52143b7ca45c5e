// ShardStore: Open and recovery (OpenDb: the format check, then the
// incarnations and the head read back from meta), and the public methods that
// only forward to ShardStore::Impl. Impl, and the on-disk format written as a
// grammar, are in shard_store_impl.h; the rest of Impl is in shard_fold.cc,
// shard_reads.cc and shard_snapshots.cc.
#include "storage/shard_store.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/slice_transform.h"
#include "rocksdb/table.h"
#include "storage/key_codec.h"
#include "storage/logging.h"
#include "storage/shard_group.h"
#include "storage/shard_store_impl.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::storage {
using namespace internal;  // NOLINT(build/namespaces): the helpers shared by ShardStore::Impl
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kShardFormat = 5;
// Shards of an older format lack an index this build relies on.
constexpr uint32_t kOldestReadableShardFormat = 2;

constexpr absl::string_view kFormatKey = "format";

// The leading `count` length-prefixed strings of an index key (by_model,
// by_source: name and version), for RocksDB's memtable insert hints: the
// memtable keeps its last insert position per prefix, and a key that comes
// right after it (served_at mostly increases under one model or dataset
// version) goes in without a search from the top of the skip list. Without
// hints, keys of a dozen datasets interleaved cost a full search each.
class LengthPrefixedStrings : public rocksdb::SliceTransform {
 public:
  explicit LengthPrefixedStrings(int count)
      : count_(count), name_(absl::StrCat("predlog.LengthPrefixedStrings.", count)) {}
  const char* Name() const override { return name_.c_str(); }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), PrefixSize(key));
  }
  bool InDomain(const rocksdb::Slice& key) const override { return PrefixSize(key) > 0; }

 private:
  // 0 when `key` does not start with count_ length-prefixed strings.
  size_t PrefixSize(const rocksdb::Slice& key) const {
    absl::string_view in = ToView(key);
    absl::string_view s;
    for (int i = 0; i < count_; ++i) {
      if (!ReadLengthPrefixed(&in, &s)) return 0;
    }
    return key.size() - in.size();
  }
  const int count_;
  const std::string name_;
};

}  // namespace

absl::Status ShardStore::Impl::OpenDb() {
  if (options_.dir.empty()) return absl::InvalidArgumentError("ShardOptions.dir is empty");
  if (options_.max_message_bytes == 0) {
    return absl::InvalidArgumentError("ShardOptions.max_message_bytes must be > 0");
  }
  if (options_.block_cache_bytes == 0) {
    return absl::InvalidArgumentError("ShardOptions.block_cache_bytes must be > 0");
  }
  if (options_.group != nullptr &&
      (options_.partition < 0 || options_.partition >= options_.group->partitions())) {
    return absl::InvalidArgumentError(absl::StrCat("ShardOptions.partition ", options_.partition,
                                                   " is outside [0, ", options_.group->partitions(),
                                                   ")"));
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
    // The fold also asks every other shard of its group for each new id
    // (storage/shard_group.h), so misses must be cheap in the memtable too.
    if (i == kByPredictionCf) {
      table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
      cf_options.memtable_whole_key_filtering = true;
      cf_options.memtable_prefix_bloom_size_ratio = 0.02;
    }
    // What has settled (the bottommost level) is compressed with zstd, the
    // rest with RocksDB's default (Snappy, cheaper on the write path).
    cf_options.bottommost_compression = rocksdb::kZSTD;
    if (i == kEventsCf) table.block_size = 16 * 1024;
    if (i == kByModelCf || i == kBySourceCf) {
      cf_options.memtable_insert_with_hint_prefix_extractor =
          std::make_shared<LengthPrefixedStrings>(2);
    }
    cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    descriptors.emplace_back(kCfNames[i], cf_options);
  }

  // A shard (or a snapshot) written before format 3 has no merkle column
  // family, one written before format 4 no by_source, one before format 5 no
  // by_entity, and a read-only open cannot create them: open it without
  // (their handles stay null), and without a tree (has_tree_), a data-source
  // index (has_source_index_) or an entity index (has_entity_index_).
  std::vector<Cf> missing;
  if (options_.read_only) {
    std::vector<std::string> existing;
    if (rocksdb::DB::ListColumnFamilies(db_options, db_path_, &existing).ok()) {
      for (Cf optional : {kMerkleCf, kBySourceCf, kByEntityCf}) {
        if (std::find(existing.begin(), existing.end(), kCfNames[optional]) == existing.end()) {
          missing.push_back(optional);
        }
      }
    }
    // From the back, so the positions of the others stay valid.
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      descriptors.erase(descriptors.begin() + *it);
    }
  }
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      options_.read_only
          ? rocksdb::DB::OpenForReadOnly(db_options, db_path_, descriptors, &cfs_, &raw)
          : rocksdb::DB::Open(db_options, db_path_, descriptors, &cfs_, &raw);
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("shard ", options_.name, ": open ", db_path_)));
  db_.reset(raw);
  for (Cf cf : missing) {  // in increasing order: each goes back to its place
    cfs_.insert(cfs_.begin() + cf, nullptr);
    if (cf == kMerkleCf) has_tree_ = false;
    if (cf == kBySourceCf) has_source_index_ = false;
    if (cf == kByEntityCf) has_entity_index_ = false;
  }
  write_options_.sync = options_.sync_writes;

  // Format marker: refuse shards written by a newer, incompatible build.
  std::string format_value;
  uint32_t format = kShardFormat;
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

  RETURN_IF_ERROR(LoadAppendTime(format));

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
    if (static_cast<uint8_t>(head_value[0]) < 3 && options_.group != nullptr) {
      // A head from before misrouted arrivals were counted: count them once
      // from the subject index, so reads search this shard for its misrouted
      // events (the next batch's head keeps the count).
      ASSIGN_OR_RETURN(head.head.counters.misrouted, CountMisroutedSubjects());
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
  if (format < kShardFormat) {
    if (options_.read_only) {
      // An index the shard's format predates but that exists is one whose
      // upgrade did not finish: a by_source of a format-3 shard, a by_entity
      // of a format-4 one.
      if (format < 3) has_tree_ = false;
      if (format < 4) has_source_index_ = false;
      has_entity_index_ = false;
    } else {
      if (format < 3) RETURN_IF_ERROR(BuildMerkleTree());
      if (format < 4) RETURN_IF_ERROR(BuildDataSourceIndex());
      RETURN_IF_ERROR(BuildEntityIndex());
      std::string v;
      AppendU32(&v, kShardFormat);
      rocksdb::WriteOptions sync;
      sync.sync = true;
      RETURN_IF_ERROR(
          FromRocks(db_->Put(sync, cfs_[kMetaCf], ToSlice(kFormatKey), v),
                    absl::StrCat("shard ", options_.name, ": write format ", kShardFormat)));
    }
  }
  if (has_tree_) {
    ASSIGN_OR_RETURN(head.tree, MerkleFrontier::Load(head.head.next_index, NodeReader(nullptr)));
  }
  {
    absl::MutexLock lock(&mu_);
    head_ = std::move(head);
    incarnations_ = std::move(names);
  }
  if (db_path_ == (fs::path(options_.dir) / "db").string()) {
    if (!options_.read_only) RETURN_IF_ERROR(RemoveOrphanSnapshots());
    RETURN_IF_ERROR(CheckAckedMark());
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ShardStore::Impl::CountMisroutedSubjects() const {
  uint64_t misrouted = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), cfs_[kBySubjectCf]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::string_view key = ToView(it->key());
    absl::string_view subject;
    if (!ReadLengthPrefixed(&key, &subject)) {
      return absl::DataLossError(absl::StrCat("shard ", options_.name, ": corrupt by_subject key"));
    }
    if (options_.group->PartitionOf(subject) != options_.partition) ++misrouted;
  }
  RETURN_IF_ERROR(
      FromRocks(it->status(), absl::StrCat("shard ", options_.name, ": scan by_subject")));
  return misrouted;
}

absl::Status ShardStore::Impl::LoadAppendTime(uint32_t format) {
  const std::string context = absl::StrCat("shard ", options_.name, ": time index");
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kByTimeCf]));
  auto decode = [&](absl::string_view key, absl::Time* t, uint64_t* index) {
    return key.size() == 16 && ReadTime(&key, t) && DecodeIndexKey(key, index);
  };
  if (format < 3 && !options_.read_only) {
    // by_time was keyed by the producers' recorded_at, so its order could
    // differ from log order: rewrite each key that is earlier than one
    // before it in the log to the running maximum, each capped at now.
    std::vector<std::pair<uint64_t, absl::Time>> keys;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto& [index, t] = keys.emplace_back();
      if (!decode(ToView(it->key()), &t, &index)) {
        return absl::DataLossError(absl::StrCat(context, ": bad by_time key"));
      }
    }
    RETURN_IF_ERROR(ReadStatus(it->status(), context));
    std::sort(keys.begin(), keys.end());
    rocksdb::WriteBatch batch;
    absl::Time running = absl::InfinitePast();
    // A producer's clock ahead of this one (a recorded_at in 2099) must not
    // become the shard's append clock: keys are capped at now.
    const absl::Time now =
        absl::FromUnixMicros(absl::ToUnixMicros(options_.clock ? options_.clock() : absl::Now()));
    size_t moved = 0;
    for (const auto& [index, t] : keys) {
      const absl::Time capped = std::min(t, now);
      if (capped >= running && capped == t) {
        running = t;
        continue;
      }
      running = std::max(running, capped);
      std::string old_key, new_key;
      AppendTime(&old_key, t);
      AppendTime(&new_key, running);
      old_key.append(IndexKey(index));
      new_key.append(IndexKey(index));
      batch.Delete(cfs_[kByTimeCf], old_key);
      batch.Put(cfs_[kByTimeCf], new_key, rocksdb::Slice());
      ++moved;
    }
    rocksdb::WriteOptions sync;
    sync.sync = true;
    RETURN_IF_ERROR(FromRocks(db_->Write(sync, &batch), absl::StrCat(context, ": rewrite")));
    PREDLOG_LOG(INFO) << "shard " << options_.name << ": time index now keyed by append time ("
                      << moved << " of " << keys.size() << " keys moved to keep log order)";
    it.reset(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kByTimeCf]));
  }
  it->SeekToLast();
  RETURN_IF_ERROR(ReadStatus(it->status(), context));
  if (it->Valid()) {
    uint64_t index;
    if (!decode(ToView(it->key()), &last_appended_at_, &index)) {
      return absl::DataLossError(absl::StrCat(context, ": bad by_time key"));
    }
  }
  return absl::OkStatus();
}

absl::Status ShardStore::Impl::BuildMerkleTree() {
  const std::string context = absl::StrCat("shard ", options_.name, ": build the Merkle tree");
  MerkleFrontier tree;
  std::vector<MerkleNode> completed;
  rocksdb::WriteBatch batch;
  auto flush = [&]() -> absl::Status {
    for (const MerkleNode& n : completed) {
      batch.Put(cfs_[kMerkleCf], MerkleKey(n.level, n.index), ToSlice(AsBytes(n.hash)));
    }
    completed.clear();
    RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), context));
    batch.Clear();
    return absl::OkStatus();
  };
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cfs_[kEventsCf]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    uint64_t index;
    if (!DecodeIndexKey(ToView(it->key()), &index) || index < tree.size()) {
      return absl::DataLossError(absl::StrCat(context, ": bad events key"));
    }
    // Indexes without a record: a loss an operator accepted.
    while (tree.size() < index) tree.Append(LostMerkleLeaf(tree.size()), &completed);
    ASSIGN_OR_RETURN(StoredRecord record, DecodeRecord(index, ToView(it->value())));
    const size_t leaf_at = completed.size();
    tree.Append(RecordMerkleLeaf(record.appended_at, record.leaf), &completed);
    completed.erase(completed.begin() + static_cast<std::ptrdiff_t>(leaf_at));  // in the header
    if (completed.size() >= 8192) RETURN_IF_ERROR(flush());
  }
  RETURN_IF_ERROR(ReadStatus(it->status(), context));
  RETURN_IF_ERROR(flush());
  PREDLOG_LOG(INFO) << "shard " << options_.name << ": Merkle tree built over " << tree.size()
                    << " records";
  return absl::OkStatus();
}

absl::Status ShardStore::Impl::BackfillIndex(
    absl::string_view what, const std::function<bool(const predlog::v1::AuditEvent&)>& wanted,
    const std::function<absl::Status(uint64_t index, absl::string_view key, absl::string_view value,
                                     const predlog::v1::AuditEvent&, rocksdb::WriteBatch*)>& put) {
  const std::string context = absl::StrCat("shard ", options_.name, ": build the ", what);
  rocksdb::WriteBatch batch;
  predlog::v1::AuditEvent event;
  uint64_t indexed = 0;
  rocksdb::ReadOptions read_options;
  read_options.fill_cache = false;  // one pass over every record: keep the cache for what follows
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cfs_[kEventsCf]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    uint64_t index;
    if (!DecodeIndexKey(ToView(it->key()), &index)) {
      return absl::DataLossError(absl::StrCat(context, ": bad events key"));
    }
    absl::string_view payload;
    if (!RecordPayload(ToView(it->value()), &payload) ||
        !event.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      return absl::DataLossError(
          absl::StrCat(context, ": record ", index, " does not decode as an AuditEvent"));
    }
    // Every event in the log was applied: duplicates, conflicts, rejected and
    // redelivered messages are not records.
    if (!wanted(event)) continue;
    ++indexed;
    RETURN_IF_ERROR(put(index, ToView(it->key()), ToView(it->value()), event, &batch));
    if (batch.Count() >= 4096) {
      RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), context));
      batch.Clear();
    }
  }
  RETURN_IF_ERROR(ReadStatus(it->status(), context));
  RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), context));
  PREDLOG_LOG(INFO) << "shard " << options_.name << ": " << what << " built over " << indexed
                    << " records";
  return absl::OkStatus();
}

absl::Status ShardStore::Impl::BuildDataSourceIndex() {
  std::string key, value;
  return BackfillIndex(
      "data-source index",
      [](const predlog::v1::AuditEvent& event) { return event.has_prediction_logged(); },
      [&](uint64_t, absl::string_view events_key, absl::string_view,
          const predlog::v1::AuditEvent& event, rocksdb::WriteBatch* batch) {
        const predlog::v1::PredictionLogged& p = event.prediction_logged();
        PutDataSourceEntries(p, TimeFromProto(p.served_at()), events_key, cfs_[kBySourceCf], batch,
                             &key, &value);
        return absl::OkStatus();
      });
}

absl::Status ShardStore::Impl::BuildEntityIndex() {
  std::string key;
  return BackfillIndex(
      "entity index",
      [](const predlog::v1::AuditEvent& event) { return event.has_entity_changed(); },
      [&](uint64_t index, absl::string_view events_key, absl::string_view events_value,
          const predlog::v1::AuditEvent& event, rocksdb::WriteBatch* batch) -> absl::Status {
        std::optional<absl::Time> appended_at;
        if (!event.has_recorded_at()) {  // keyed by its append time (the grammar says why)
          ASSIGN_OR_RETURN(StoredRecord record, DecodeRecord(index, events_value));
          appended_at = record.appended_at;
        }
        PutEntityEntry(event, appended_at, events_key, cfs_[kByEntityCf], batch, &key);
        return absl::OkStatus();
      });
}

absl::Status ShardStore::Impl::CheckAckedMark() {
  const std::string path = (fs::path(options_.dir) / "acked").string();
  std::optional<AckedMark::Value> read;
  if (options_.read_only) {
    ASSIGN_OR_RETURN(read, AckedMark::Read(path));
  } else {
    ASSIGN_OR_RETURN(mark_, AckedMark::Open(path, options_.sync_writes));
    read = mark_->at_open();
  }
  const ShardHead head = Head();
  RETURN_IF_ERROR(FromRocks(db_->GetDbIdentity(mark_identity_),
                            absl::StrCat("shard ", options_.name, ": read DB identity")));
  // What the mark says, when it says something about this database.
  AckedMark::Value acked;
  bool usable = read.has_value();
  if (usable) acked = *read;
  if (usable && acked.db_identity != mark_identity_) {
    // db/ was deleted or replaced (an operator re-ingesting, a restored
    // copy): the mark describes another database, not a loss of this one.
    PREDLOG_LOG(WARNING) << "shard " << options_.name << ": the acknowledgement mark names "
                         << "another database (" << acked.db_identity << ", not " << mark_identity_
                         << "); starting it anew at " << head.next_index << " records";
    usable = false;
  }
  if (usable && acked.next_index > head.next_index && !acked.synced) {
    // Written without sync: only what --sync=false accepted to lose is gone
    // (the Kafka path refolds it from its source). Say so; do not refuse.
    PREDLOG_LOG(WARNING) << "shard " << options_.name << ": records " << head.next_index << ".."
                         << acked.next_index - 1
                         << " were acknowledged without a WAL sync and did not survive; "
                            "going on from "
                         << head.next_index;
    usable = false;
  }
  if (usable && acked.next_index > head.next_index) {
    lost_ = LostRecords{head.next_index, acked.next_index, acked.chain_head};
    const std::string range = absl::StrCat(lost_->first_index, "..", lost_->end_index - 1);
    if (!options_.read_only && options_.accept_lost_range == range) return AcceptLoss();
    PREDLOG_LOG(ERROR) << LostError().message();
    return absl::OkStatus();
  }
  // A new shard, one from before marks, a mark of another database, or an
  // unsynced mark past a loss: the mark starts at what is here.
  if (mark_ != nullptr && (!usable || acked.next_index != head.next_index)) {
    RETURN_IF_ERROR(mark_->Write({head.next_index, head.chain_head, false, mark_identity_}));
  }
  return absl::OkStatus();
}

absl::Status ShardStore::Impl::LostError() const {
  const LostRecords& l = *lost_;
  return absl::DataLossError(absl::StrCat(
      "shard ", options_.name, " lost acknowledged records ", l.first_index, "..", l.end_index - 1,
      ": its acknowledgement mark says the log reached ", l.end_index,
      " records but RocksDB recovered ", l.first_index,
      l.first_index == 0 ? "" : absl::StrCat(" (the last intact index is ", l.first_index - 1, ")"),
      "; the WAL was truncated or damaged. Nothing is written to it until an operator accepts "
      "the loss with predlogd --accept_data_loss=",
      options_.name, ":", l.first_index, "..", l.end_index - 1,
      ", which records it in the shard's log"));
}

// ---------------------------------------------------------------------------
// The public methods. Those with logic of their own live with their piece:
// ScanSubject, ScanModel, ScanTrace, GetEntity, GetRegistry and GetModel in
// shard_reads.cc, OpenSnapshot in shard_snapshots.cc.

absl::StatusOr<std::unique_ptr<ShardStore>> ShardStore::Open(const ShardOptions& options) {
  auto impl = std::make_unique<Impl>(options, (fs::path(options.dir) / "db").string());
  RETURN_IF_ERROR(impl->OpenDb());
  std::unique_ptr<ShardStore> shard(new ShardStore(std::move(impl)));
  shard->impl_->AttachToGroup(shard.get());
  return shard;
}

ShardStore::ShardStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
uint64_t ShardStore::read_corruptions() const { return impl_->read_corruptions(); }
ShardCounters ShardStore::Counters() const { return impl_->Counters(); }
ShardStore::~ShardStore() { impl_->DetachFromGroup(); }

void ShardStore::Impl::AttachToGroup(const ShardStore* shard) {
  if (options_.group != nullptr && !options_.read_only) {
    options_.group->Attach(options_.partition, shard);
  }
}

void ShardStore::Impl::DetachFromGroup() {
  if (options_.group != nullptr && !options_.read_only) options_.group->Detach(options_.partition);
}

absl::StatusOr<BatchResult> ShardStore::ApplyBatch(absl::Span<const SourceMessage> messages) {
  return impl_->ApplyBatch(messages);
}
ShardHead ShardStore::Head() const { return impl_->Head(); }
const std::string& ShardStore::name() const { return impl_->options().name; }
const std::optional<LostRecords>& ShardStore::lost() const { return impl_->lost(); }
absl::Status ShardStore::CheckNotLost() const {
  return impl_->lost().has_value() ? impl_->LostError() : absl::OkStatus();
}

absl::StatusOr<StoredRecord> ShardStore::Get(uint64_t index) const { return impl_->Get(index); }
absl::StatusOr<StoredRecord> ShardStore::GetByPredictionId(absl::string_view id) const {
  return impl_->GetByPredictionId(id);
}
absl::StatusOr<std::vector<StoredRecord>> ShardStore::ReadRange(uint64_t from_index,
                                                                size_t limit) const {
  return impl_->ReadRange(from_index, limit);
}
absl::StatusOr<uint64_t> ShardStore::CutAtTime(absl::Time t) const { return impl_->CutAtTime(t); }
absl::StatusOr<std::vector<RejectedRecord>> ShardStore::ListRejected(uint64_t from_seq,
                                                                     size_t limit) const {
  return impl_->ListRejected(from_seq, limit);
}

absl::StatusOr<VerifyReport> ShardStore::Verify() const { return impl_->Verify(); }
absl::StatusOr<Digest> ShardStore::TreeRoot(uint64_t size) const { return impl_->TreeRoot(size); }
absl::StatusOr<std::vector<Digest>> ShardStore::InclusionProof(uint64_t index,
                                                               uint64_t size) const {
  return impl_->InclusionProof(index, size);
}
absl::StatusOr<std::vector<Digest>> ShardStore::ConsistencyProof(uint64_t old_size,
                                                                 uint64_t size) const {
  return impl_->ConsistencyProof(old_size, size);
}

absl::StatusOr<std::vector<Digest>> ShardStore::RangeProof(uint64_t begin, uint64_t end,
                                                           uint64_t size,
                                                           MerkleNodeCache* cache) const {
  return impl_->RangeProof(begin, end, size, cache);
}

absl::StatusOr<std::string> ShardStore::SignCheckpoint(const NoteSigner& signer,
                                                       absl::string_view origin,
                                                       const std::vector<std::string>& extensions,
                                                       absl::Duration reuse_within) {
  return impl_->SignCheckpoint(signer, origin, extensions, reuse_within);
}
absl::StatusOr<std::string> ShardStore::LatestCheckpoint() const {
  return impl_->LatestCheckpoint();
}
absl::StatusOr<std::string> ShardStore::CheckpointAt(uint64_t size) const {
  return impl_->CheckpointAt(size);
}

Digest RecordMerkleLeaf(const std::optional<absl::Time>& appended_at, const Digest& leaf) {
  // One per appended record: built on the stack, not in a heap string.
  char data[1 + 8 + sizeof(Digest)];
  size_t size = 0;
  data[size++] = appended_at.has_value() ? '\x01' : '\x02';
  if (appended_at.has_value()) {
    const uint64_t micros = static_cast<uint64_t>(absl::ToUnixMicros(*appended_at));
    for (int shift = 56; shift >= 0; shift -= 8) data[size++] = static_cast<char>(micros >> shift);
  }
  std::copy(leaf.begin(), leaf.end(), data + size);
  size += leaf.size();
  return MerkleLeafHash(absl::string_view(data, size));
}

Digest LostMerkleLeaf(uint64_t index) {
  std::string data;
  AppendU8(&data, 0x00);
  AppendU64(&data, index);
  return MerkleLeafHash(data);
}

absl::StatusOr<SnapshotInfo> ShardStore::CreateSnapshot(absl::Time now) {
  return impl_->CreateSnapshot(now);
}
absl::StatusOr<std::vector<SnapshotInfo>> ShardStore::ListSnapshots() const {
  return impl_->ListSnapshots();
}
absl::StatusOr<int> ShardStore::PruneSnapshots(const RetentionPolicy& policy, absl::Time now) {
  return impl_->PruneSnapshots(policy, now);
}
absl::Status ShardStore::Compact() { return impl_->Compact(); }

}  // namespace predlog::storage
