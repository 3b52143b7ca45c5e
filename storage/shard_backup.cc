// Backups of a shard with RocksDB's BackupEngine (rocksdb/utilities/backup_engine.h).
//
// A backup directory is one shard's BackupEngine directory, laid out by
// RocksDB:
//   shared_checksum/<file number>_s<db session id>_<size>.sst   SSTs, shared by backups
//   private/<backup id>/                 MANIFEST, OPTIONS, CURRENT, WAL of one backup
//   meta/<backup id>                     the backup's file list with sizes and CRC32Cs,
//                                        and its app metadata (below)
// Each backup's app metadata says what it holds at least, for the restore to check:
//   metadata := "predlog-shard-backup 1\n"
//               "shard " name "\n"
//               "records " decimal "\n"          the shard's next index when the call began
//               "chain " 64 lower-case hex "\n"  the chain value after those records
//
// Why flush_before_backup. An acknowledged record was folded (its WriteBatch
// written to the WAL and memtables) before its caller was answered, so
// before any backup call that began after the answer. With the flush, that
// record is in an SST the flush wrote, or in the WAL RocksDB still needs
// after the flush, which GetLiveFilesStorageInfo includes (up to its size at
// that moment): the backup holds it either way. Without the flush (the
// WAL-including default) it would hold it too, but every backup would copy
// the whole live WAL again as private files: what sits in memtables (up to
// 64 MiB per column family, and WAL files pinned by the slowest of eleven
// column families) would be copied by every backup, so a second backup after
// a few events would copy more than the first instead of less. With the
// flush, what is new since the last backup lands in new SSTs, the only files
// a backup copies besides a few small private ones. The cost: one memtable
// flush per column family per backup (small L0 files that compaction folds).
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "rocksdb/env.h"
#include "rocksdb/utilities/backup_engine.h"
#include "storage/logging.h"
#include "storage/shard_store.h"
#include "storage/shard_store_impl.h"
#include "storage/status_macros.h"

namespace predlog::storage {
using namespace internal;  // NOLINT(build/namespaces): the helpers shared by ShardStore::Impl
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kMetadataHeader = "predlog-shard-backup 1";

struct BackupMetadata {
  std::string shard;
  uint64_t records = 0;
  Digest chain_head = kChainGenesis;
};

std::string EncodeMetadata(const BackupMetadata& m) {
  return absl::StrCat(kMetadataHeader, "\nshard ", m.shard, "\nrecords ", m.records, "\nchain ",
                      ToHex(m.chain_head), "\n");
}

std::optional<BackupMetadata> DecodeMetadata(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (lines.size() != 5 || lines[0] != kMetadataHeader || !lines[4].empty()) return std::nullopt;
  BackupMetadata m;
  absl::string_view shard = lines[1], records = lines[2], chain = lines[3];
  if (!absl::ConsumePrefix(&shard, "shard ") || !absl::ConsumePrefix(&records, "records ") ||
      !absl::ConsumePrefix(&chain, "chain ") || !absl::SimpleAtoi(records, &m.records)) {
    return std::nullopt;
  }
  std::optional<Digest> digest = DigestFromHex(chain);
  if (!digest.has_value()) return std::nullopt;
  m.shard = std::string(shard);
  m.chain_head = *digest;
  return m;
}

// BackupEngine's IOStatus as a Status: its Corruption (a file whose size or
// CRC32C is not the recorded one, a damaged meta file) is DATA_LOSS.
absl::Status FromBackupEngine(const rocksdb::IOStatus& s, absl::string_view context) {
  return FromRocks(rocksdb::Status(s), context);
}

std::string Where(absl::string_view name, absl::string_view backup_dir) {
  return absl::StrCat("shard ", name, ": backup directory ", backup_dir);
}

absl::StatusOr<std::unique_ptr<rocksdb::BackupEngineReadOnly>> OpenReadOnly(
    const std::string& backup_dir, absl::string_view name) {
  std::error_code ec;
  if (!fs::is_directory(backup_dir, ec)) {
    return absl::NotFoundError(absl::StrCat(Where(name, backup_dir), " does not exist"));
  }
  rocksdb::BackupEngineReadOnly* raw = nullptr;
  RETURN_IF_ERROR(
      FromBackupEngine(rocksdb::BackupEngineReadOnly::Open(rocksdb::BackupEngineOptions(backup_dir),
                                                           rocksdb::Env::Default(), &raw),
                       absl::StrCat(Where(name, backup_dir), ": open")));
  return std::unique_ptr<rocksdb::BackupEngineReadOnly>(raw);
}

// The backup's metadata; NOT_FOUND when there is no such backup, DATA_LOSS
// when it is known corrupt or its metadata is not predlog's.
absl::StatusOr<BackupMetadata> ReadMetadata(const rocksdb::BackupEngineReadOnly& engine,
                                            const std::string& backup_dir, uint32_t backup_id,
                                            absl::string_view name) {
  rocksdb::BackupInfo info;
  rocksdb::Status s = engine.GetBackupInfo(backup_id, &info);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat(Where(name, backup_dir), " has no backup ", backup_id));
  }
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat(Where(name, backup_dir), ", backup ", backup_id)));
  std::optional<BackupMetadata> metadata = DecodeMetadata(info.app_metadata);
  if (!metadata.has_value()) {
    return absl::DataLossError(absl::StrCat(Where(name, backup_dir), ", backup ", backup_id,
                                            ": its metadata is not a predlog shard backup's"));
  }
  return *metadata;
}

}  // namespace

absl::StatusOr<ShardBackupInfo> ShardStore::Impl::Backup(const std::string& backup_dir) const {
  if (options_.read_only) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", options_.name, " is open read-only"));
  }
  if (lost_.has_value()) return LostError();
  const std::string where = Where(options_.name, backup_dir);
  std::error_code ec;
  fs::create_directories(backup_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(where, ": create: ", ec.message()));

  rocksdb::BackupEngine* raw = nullptr;
  RETURN_IF_ERROR(
      FromBackupEngine(rocksdb::BackupEngine::Open(rocksdb::BackupEngineOptions(backup_dir),
                                                   rocksdb::Env::Default(), &raw),
                       absl::StrCat(where, ": open")));
  std::unique_ptr<rocksdb::BackupEngine> engine(raw);
  // The files earlier backups hold: a file of the new backup that none of
  // them has was copied by this call.
  absl::flat_hash_set<std::string> earlier;
  {
    std::vector<rocksdb::BackupInfo> backups;
    engine->GetBackupInfo(&backups, /*include_file_details=*/true);
    for (const rocksdb::BackupInfo& b : backups) {
      for (const rocksdb::BackupFileInfo& f : b.file_details) earlier.insert(f.relative_filename);
    }
  }

  // Read before the backup starts: everything acknowledged before the call
  // was folded before this read, and everything folded before it is in the
  // backup (see the top of this file).
  const ShardHead head = Head();
  ShardBackupInfo result;
  result.records = head.next_index;
  result.chain_head = head.chain_head;
  rocksdb::CreateBackupOptions create;
  create.flush_before_backup = true;
  rocksdb::BackupID id = 0;
  RETURN_IF_ERROR(
      FromBackupEngine(engine->CreateNewBackupWithMetadata(
                           create, db_.get(),
                           EncodeMetadata({options_.name, result.records, result.chain_head}), &id),
                       absl::StrCat(where, ": create a backup")));
  rocksdb::BackupInfo info;
  RETURN_IF_ERROR(FromRocks(engine->GetBackupInfo(id, &info, /*include_file_details=*/true),
                            absl::StrCat(where, ": read backup ", id)));
  result.backup_id = id;
  for (const rocksdb::BackupFileInfo& f : info.file_details) {
    ++result.total_files;
    result.total_bytes += f.size;
    if (!earlier.contains(f.relative_filename)) {
      ++result.new_files;
      result.new_bytes += f.size;
    }
  }
  return result;
}

absl::StatusOr<ShardBackupInfo> ShardStore::Backup(const std::string& backup_dir) const {
  return impl_->Backup(backup_dir);
}

absl::Status ShardStore::VerifyBackup(const std::string& backup_dir, uint32_t backup_id,
                                      absl::string_view name) {
  ASSIGN_OR_RETURN(std::unique_ptr<rocksdb::BackupEngineReadOnly> engine,
                   OpenReadOnly(backup_dir, name));
  RETURN_IF_ERROR(ReadMetadata(*engine, backup_dir, backup_id, name).status());
  const rocksdb::IOStatus s = engine->VerifyBackup(backup_id, /*verify_with_checksum=*/true);
  if (s.ok()) return absl::OkStatus();
  if (s.IsNotFound()) {
    return absl::NotFoundError(
        absl::StrCat(Where(name, backup_dir), " has no backup ", backup_id, ": ", s.ToString()));
  }
  // A missing or changed file is damage, whatever code RocksDB gives it.
  return absl::DataLossError(
      absl::StrCat(Where(name, backup_dir), ", backup ", backup_id, " is damaged: ", s.ToString()));
}

absl::StatusOr<ShardHead> ShardStore::RestoreBackup(const std::string& backup_dir,
                                                    uint32_t backup_id,
                                                    const ShardOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("ShardOptions.dir is empty");
  const std::string name =
      options.name.empty() ? fs::path(options.dir).filename().string() : options.name;
  std::error_code ec;
  if (fs::exists(options.dir, ec) && !fs::is_empty(options.dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", name, ": cannot restore into ", options.dir, ": it is not empty"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<rocksdb::BackupEngineReadOnly> engine,
                   OpenReadOnly(backup_dir, name));
  ASSIGN_OR_RETURN(BackupMetadata metadata, ReadMetadata(*engine, backup_dir, backup_id, name));
  if (metadata.shard != name) {
    return absl::FailedPreconditionError(absl::StrCat(Where(name, backup_dir), ": backup ",
                                                      backup_id, " is of shard ", metadata.shard,
                                                      ", not ", name));
  }
  const std::string db_dir = (fs::path(options.dir) / "db").string();
  fs::create_directories(db_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("shard ", name, ": create ", db_dir, ": ", ec.message()));
  }
  // Checks each file's CRC32C as it copies it: a damaged file is Corruption.
  RETURN_IF_ERROR(FromBackupEngine(
      engine->RestoreDBFromBackup(rocksdb::RestoreOptions(), backup_id, db_dir, db_dir),
      absl::StrCat(Where(name, backup_dir), ": restore backup ", backup_id, " into ", db_dir)));
  engine.reset();

  // No acked mark is in options.dir: opening with sync_writes writes one at
  // the recovered head, fdatasynced, as for a new shard.
  ShardOptions open = options;
  open.name = name;
  open.read_only = false;
  open.sync_writes = true;
  open.accept_lost_range.clear();
  open.group = nullptr;
  open.partition = -1;
  open.artifacts = nullptr;
  ASSIGN_OR_RETURN(std::unique_ptr<ShardStore> shard, ShardStore::Open(open));
  RETURN_IF_ERROR(shard->impl_->UncatalogMissingSnapshots());
  const ShardHead head = shard->Head();
  const std::string promised =
      absl::StrCat("backup ", backup_id, " of ", backup_dir, " promises ", metadata.records,
                   " records ending in chain value ", ToHex(metadata.chain_head));
  if (head.next_index < metadata.records) {
    return absl::DataLossError(absl::StrCat("shard ", name, ": the restored log holds ",
                                            head.next_index, " records, but ", promised));
  }
  if (metadata.records > 0) {
    ASSIGN_OR_RETURN(StoredRecord last, shard->Get(metadata.records - 1));
    if (last.chain != metadata.chain_head) {
      return absl::DataLossError(absl::StrCat("shard ", name, ": the restored chain value after ",
                                              metadata.records, " records is ", ToHex(last.chain),
                                              ", but ", promised));
    }
  }
  return head;
}

}  // namespace predlog::storage
