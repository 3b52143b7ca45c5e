// Backups of a whole predlogd, and their restore: every shard it holds open
// (storage::ShardStore::Backup, RocksDB's BackupEngine, incremental), the
// artifact store and the signing keys, in one directory with a manifest
// that lists each backup. The layout and the manifest's format are written
// at the top of backup.cc.
//
// What a backup holds: every shard's backup holds at least the records the
// shard had when its turn came, so every record acknowledged before
// CreateBackup was called (ShardStore::Backup says why), plus every artifact
// the backed-up registry names (an artifact is stored before its
// ModelRegistered is folded, and artifacts are copied after the shards).
// Shards are backed up one after another, not at one instant: a backup is
// no cut across shards, each shard's part is one consistent state of it.
//
// Thread-safety: the functions may be called from any thread. One backup
// directory takes one CreateBackup at a time (a lock file, also across
// processes); a restore reads it under a shared lock.
#ifndef PREDLOG_SERVICES_BACKUP_BACKUP_H_
#define PREDLOG_SERVICES_BACKUP_BACKUP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/artifact_store.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"

namespace predlog::services {

// The manifest's name in a backup directory.
inline constexpr char kBackupManifest[] = "BACKUPS";

// What a live predlogd backs up. Borrowed: the shards and the store must
// outlive the call.
struct BackupSource {
  // Every shard the process holds open, predlog.events by partition then
  // the registry's; names must be plain file names. Restores put each under
  // <data_dir>/shards/<name>/ again.
  std::vector<const storage::ShardStore*> shards;
  // Partitions of predlog.events (a restore must be started with as many).
  int partitions = 0;
  // The artifact store; null: none is backed up.
  const storage::ArtifactStore* artifacts = nullptr;
  // <data_dir>: a backup directory inside it is refused.
  std::string data_dir;
  // The signing keys' directory (<data_dir>/keys); its regular files are
  // backed up when it exists, with their modes.
  std::string keys_dir;
};

// One shard's part of a backup, as the manifest lists it.
struct ShardBackupEntry {
  std::string shard;
  uint32_t engine_backup_id = 0;  // in <backup dir>/shards/<shard>/
  uint64_t records = 0;           // held at least (storage::ShardBackupInfo::records)
  storage::Digest chain_head = storage::kChainGenesis;
};

// One backup, as the manifest lists it.
struct BackupEntry {
  uint32_t id = 0;  // 1, 2, ... in the directory: what predlogd --restore_backup_id takes
  absl::Time created_at;
  int partitions = 0;
  std::vector<ShardBackupEntry> shards;
  uint64_t artifacts = 0;  // artifacts in <backup dir>/artifacts/ after this backup
  int key_files = 0;       // files in <backup dir>/keys/<id>/ (0: no keys directory)
};

struct BackupReport {
  std::string backup_dir;
  BackupEntry entry;
  std::vector<storage::ShardBackupInfo> shards;  // in entry.shards' order
  uint64_t artifacts_copied = 0;
  uint64_t artifact_bytes_copied = 0;
  absl::Duration duration;
};

// Writes a new backup of `source` into `backup_dir` (created if missing,
// mode 0700) and lists it in the manifest, last: a backup that is not
// listed did not happen (the shards' BackupEngine backups of a failed
// attempt stay unused). Backups into one directory are incremental.
// INVALID_ARGUMENT when backup_dir is not an absolute path or lies inside
// source.data_dir; FAILED_PRECONDITION when the directory holds backups of
// other shards (another partition count); UNAVAILABLE while another backup
// into it runs; DATA_LOSS from a shard that lost acknowledged records or an
// artifact whose bytes do not match its digest; otherwise the shard's or
// the filesystem's error, naming the shard or the path.
absl::StatusOr<BackupReport> CreateBackup(const BackupSource& source,
                                          const std::string& backup_dir);

// The backups listed in `backup_dir`'s manifest, oldest first. NOT_FOUND
// when it has none (naming the path); DATA_LOSS naming the line when the
// manifest does not parse.
absl::StatusOr<std::vector<BackupEntry>> ReadBackups(const std::string& backup_dir);

struct RestoreOptions {
  std::string backup_dir;
  // The backup to restore; nullopt: the latest.
  std::optional<uint32_t> backup_id;
  // Must not hold shards yet (<data_dir>/shards/ missing or empty).
  std::string data_dir;
  // Where the artifacts go; empty: <data_dir>/artifacts (as predlogd's
  // --artifact_dir).
  std::string artifact_dir;
  // predlogd's --partitions: must equal the backup's.
  int partitions = 0;
};

struct RestoreReport {
  BackupEntry entry;
  std::vector<storage::ShardHead> heads;  // the restored shards', in entry.shards' order
  uint64_t artifacts_copied = 0;
  int key_files = 0;
  absl::Duration duration;
};

// Restores one backup into options.data_dir: checks every shard's
// BackupEngine backup first (ShardStore::VerifyBackup, every file's
// CRC32C), copies the artifacts (each checked against its digest), restores
// the shards and the keys into <data_dir>/restoring/ and then renames them
// into place, the shards last: a restore that fails leaves no shards behind
// (a crashed one may leave <data_dir>/restoring/, which the next restore
// removes). Relative paths are the calling process's. Each restored shard opens cleanly, its acked
// mark at its restored head (ShardStore::RestoreBackup). Errors: INVALID_ARGUMENT for an empty
// path, or when options.partitions differs from the backup's (naming both); FAILED_PRECONDITION
// naming the path when data_dir already holds shards, or when a key file in <data_dir>/keys differs
// from the backup's; NOT_FOUND for no manifest or an unknown backup id; DATA_LOSS naming the shard
// or the artifact when the backup is damaged (NOT_FOUND for a backup directory that does not
// exist); UNAVAILABLE while a backup into backup_dir runs.
absl::StatusOr<RestoreReport> RestoreBackup(const RestoreOptions& options);

// What a restore did, for people: a line naming the backup and the data dir,
// then one per shard (records, chain head), artifacts and keys.
std::string DescribeRestore(const RestoreOptions& options, const RestoreReport& report);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_BACKUP_BACKUP_H_
