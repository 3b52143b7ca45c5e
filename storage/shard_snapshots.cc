// Snapshots of a shard: RocksDB checkpoints in <dir>/snapshots/<index>, each
// catalogued in meta ("snapshot/" index, see shard_store_impl.h) once it is
// complete. A directory without a catalog entry is an interrupted attempt or
// an interrupted prune, and is removed (CreateSnapshot, RemoveOrphanSnapshots).
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rocksdb/utilities/checkpoint.h"
#include "storage/key_codec.h"
#include "storage/logging.h"
#include "storage/shard_store.h"
#include "storage/shard_store_impl.h"
#include "storage/snapshot_retention.h"
#include "storage/status_macros.h"

namespace predlog::storage {
using namespace internal;  // NOLINT(build/namespaces): the helpers shared by ShardStore::Impl
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kSnapshotPrefix = "snapshot/";

std::string SnapshotKey(uint64_t index) {
  std::string key(kSnapshotPrefix);
  AppendU64(&key, index);
  return key;
}

}  // namespace

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

absl::Status ShardStore::Impl::UncatalogMissingSnapshots() {
  ASSIGN_OR_RETURN(std::vector<SnapshotInfo> snapshots, ListSnapshots());
  for (const SnapshotInfo& snapshot : snapshots) {
    std::error_code ec;
    if (fs::exists(snapshot.path, ec)) continue;
    rocksdb::WriteOptions sync;
    sync.sync = true;
    RETURN_IF_ERROR(FromRocks(db_->Delete(sync, cfs_[kMetaCf], SnapshotKey(snapshot.index)),
                              absl::StrCat("shard ", options_.name, ": uncatalog snapshot")));
  }
  return absl::OkStatus();
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

absl::Status ShardStore::Impl::Compact() {
  if (options_.read_only) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", options_.name, " is open read-only"));
  }
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (rocksdb::ColumnFamilyHandle* cf : cfs_) {
    RETURN_IF_ERROR(FromRocks(db_->CompactRange(compact, cf, nullptr, nullptr),
                              absl::StrCat("shard ", options_.name, ": compact ", cf->GetName())));
  }
  return absl::OkStatus();
}

}  // namespace predlog::storage
