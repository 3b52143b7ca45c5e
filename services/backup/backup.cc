// Backups of a whole predlogd and their restore (backup.h).
//
// A backup directory holds every backup written into it:
//   BACKUPS                    the manifest (below), rewritten whole (temp file,
//                              fsync, rename) as each backup's last step
//   LOCK                       flock'ed: exclusive by a backup, shared by a restore
//   shards/<shard>/            one RocksDB BackupEngine directory per shard
//                              (storage/shard_backup.cc): shared_checksum/*.sst
//                              shared by all its backups, private/<n>/, meta/<n>
//   artifacts/                 an ArtifactStore (storage/artifact_store.h): every
//                              artifact any backup copied, write-once, by digest
//   keys/<id>/                 backup <id>'s copy of <data_dir>/keys/, modes kept
//                              (0600 key files); absent when it had none
//
// The manifest lists each backup, oldest first:
//   manifest := "predlog-backups 1\n" backup*
//   backup   := "backup " id " " created_at " partitions=" n " artifacts=" n
//               " key_files=" n "\n" shard+
//   shard    := "  shard " name " engine_backup=" n " records=" n " chain=" hex "\n"
//   id       := 1, 2, ... (one more than the last listed)
//   created_at := when the backup began, RFC 3339 UTC with microseconds
//                 (2026-11-30T06:05:00.500123Z)
//   name     := the shard's directory name (predlog.events-3, predlog.registry-0)
//   engine_backup := the shard's BackupEngine backup id in shards/<name>/
//   records, chain := what that backup holds at least: the shard's next index
//                 when its turn came, and the chain value after it (64 lower-case hex)
// A backup whose line is missing did not complete; its shards' BackupEngine
// backups stay unused.
//
// Not backed up: the shards' snapshots (RocksDB checkpoints: a cache the
// writer takes again) and acked marks (a restore writes new ones), and
// <data_dir>/embedded_kafka_address (written at every start).
#include "services/backup/backup.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "storage/errno_status.h"
#include "storage/logging.h"
#include "storage/status_macros.h"

namespace predlog::services {
namespace {

namespace fs = std::filesystem;
using storage::ErrnoStatus;

constexpr absl::string_view kManifestHeader = "predlog-backups 1";
constexpr absl::string_view kTimeFormat = "%Y-%m-%dT%H:%M:%E6SZ";
constexpr char kLockFile[] = "LOCK";
constexpr char kRestoring[] = "restoring";
// Directories a restore creates in the data dir (keys/ is 0700).
constexpr fs::perms kDirPerms = static_cast<fs::perms>(0755);

// ---- files ----

absl::Status SyncDir(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, "fsync", path);
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path, fs::perms perms) {
  std::error_code ec;
  if (fs::create_directories(path, ec)) {
    fs::permissions(path, perms, ec);
    if (ec) return absl::InternalError(absl::StrCat("chmod ", path, ": ", ec.message()));
    const std::string parent = fs::path(path).parent_path().string();
    return SyncDir(parent.empty() ? "." : parent);
  }
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  std::string out;
  char buffer[64 << 10];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "read", path);
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// Writes `content` to `path` with `mode`, fsynced; the file must not exist.
absl::Status WriteNewFile(const std::string& path, absl::string_view content, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(errno, "create", path);
  absl::Status status;
  // fchmod: the umask must not widen or narrow what is copied.
  if (::fchmod(fd, mode) != 0) status = ErrnoStatus(errno, "chmod", path);
  while (status.ok() && !content.empty()) {
    const ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = ErrnoStatus(errno, "write", path);
      break;
    }
    content.remove_prefix(static_cast<size_t>(n));
  }
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoStatus(errno, "fsync", path);
  ::close(fd);
  return status;
}

// Replaces `path` with `content` atomically: a temp file, fsync, rename, and
// an fsync of the directory.
absl::Status ReplaceFile(const std::string& path, absl::string_view content) {
  const std::string temp = path + ".tmp";
  std::error_code ec;
  fs::remove(temp, ec);
  RETURN_IF_ERROR(WriteNewFile(temp, content, 0644));
  if (::rename(temp.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, "rename", temp);
  return SyncDir(fs::path(path).parent_path().string());
}

// Copies the regular files of `from` into the new directory `to` (mode
// 0700), each with its mode; returns how many. Subdirectories and other
// entries are not copied.
absl::StatusOr<int> CopyKeyFiles(const std::string& from, const std::string& to) {
  RETURN_IF_ERROR(MakeDirs(to, fs::perms::owner_all));
  int copied = 0;
  std::error_code ec;
  for (fs::directory_iterator it(from, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string source = it->path().string();
    struct stat st;
    if (::lstat(source.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", source);
    if (!S_ISREG(st.st_mode)) continue;
    ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(source));
    RETURN_IF_ERROR(
        WriteNewFile((fs::path(to) / it->path().filename()).string(), bytes, st.st_mode & 07777));
    ++copied;
  }
  if (ec) return absl::InternalError(absl::StrCat("list ", from, ": ", ec.message()));
  RETURN_IF_ERROR(SyncDir(to));
  return copied;
}

bool IsEmptyOrMissing(const std::string& dir) {
  std::error_code ec;
  return !fs::exists(dir, ec) || (fs::is_directory(dir, ec) && fs::is_empty(dir, ec));
}

// Whether `path` is `dir` or inside it, lexically (both absolute).
bool IsInside(const fs::path& path, const fs::path& dir) {
  const fs::path p = path.lexically_normal(), d = dir.lexically_normal();
  auto pi = p.begin();
  for (auto di = d.begin(); di != d.end(); ++di, ++pi) {
    if (di->empty()) continue;  // a trailing separator
    if (pi == p.end() || *pi != *di) return false;
  }
  return true;
}

// A file name a shard may have: no separator, not "." or "..".
bool IsPlainName(absl::string_view name) {
  return !name.empty() && name != "." && name != ".." && !absl::StrContains(name, '/') &&
         !absl::StrContains(name, ' ');
}

// ---- the lock ----

// flock on <backup dir>/LOCK, released on destruction.
class DirLock {
 public:
  // Exclusive (a backup) or shared (a restore). UNAVAILABLE when a
  // conflicting holder has it. A restore of a directory without a LOCK file
  // (never written by a backup since) runs without it.
  static absl::StatusOr<std::unique_ptr<DirLock>> Acquire(const std::string& dir, bool exclusive) {
    const std::string path = (fs::path(dir) / kLockFile).string();
    const int fd = exclusive ? ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)
                             : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (!exclusive && errno == ENOENT) return std::make_unique<DirLock>(-1);
      return ErrnoStatus(errno, "open", path);
    }
    if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        return absl::UnavailableError(
            absl::StrCat("another ", exclusive ? "backup or restore" : "backup", " of ", dir,
                         " is running (", path, " is locked); try again when it is done"));
      }
      return ErrnoStatus(err, "flock", path);
    }
    return std::make_unique<DirLock>(fd);
  }
  explicit DirLock(int fd) : fd_(fd) {}
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  const int fd_;
};

// ---- the manifest ----

std::string EncodeManifest(const std::vector<BackupEntry>& entries) {
  std::string out = absl::StrCat(kManifestHeader, "\n");
  for (const BackupEntry& e : entries) {
    absl::StrAppend(&out, "backup ", e.id, " ",
                    absl::FormatTime(kTimeFormat, e.created_at, absl::UTCTimeZone()),
                    " partitions=", e.partitions, " artifacts=", e.artifacts,
                    " key_files=", e.key_files, "\n");
    for (const ShardBackupEntry& s : e.shards) {
      absl::StrAppend(&out, "  shard ", s.shard, " engine_backup=", s.engine_backup_id,
                      " records=", s.records, " chain=", storage::ToHex(s.chain_head), "\n");
    }
  }
  return out;
}

// Reads "key=value" into `value`.
template <typename T>
bool ParseField(absl::string_view token, absl::string_view key, T* value) {
  return absl::ConsumePrefix(&token, key) && absl::ConsumePrefix(&token, "=") &&
         absl::SimpleAtoi(token, value);
}

absl::StatusOr<std::vector<BackupEntry>> DecodeManifest(absl::string_view text,
                                                        const std::string& path) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  auto bad = [&](size_t line, absl::string_view why) {
    return absl::DataLossError(absl::StrCat(path, " line ", line + 1, ": ", why));
  };
  if (lines.empty() || lines[0] != kManifestHeader) {
    return bad(0, absl::StrCat("not a predlog backup manifest (want \"", kManifestHeader, "\")"));
  }
  if (!lines.back().empty()) return bad(lines.size() - 1, "the file does not end in a newline");
  lines.pop_back();
  std::vector<BackupEntry> entries;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<absl::string_view> t = absl::StrSplit(lines[i], ' ', absl::SkipEmpty());
    if (absl::StartsWith(lines[i], "backup ")) {
      BackupEntry e;
      std::string error;
      if (t.size() != 6 || !absl::SimpleAtoi(t[1], &e.id) ||
          !absl::ParseTime(kTimeFormat, std::string(t[2]), &e.created_at, &error) ||
          !ParseField(t[3], "partitions", &e.partitions) ||
          !ParseField(t[4], "artifacts", &e.artifacts) ||
          !ParseField(t[5], "key_files", &e.key_files)) {
        return bad(i, "a backup line is \"backup ID TIME partitions=N artifacts=N key_files=N\"");
      }
      if (e.id != (entries.empty() ? 1 : entries.back().id + 1)) {
        return bad(i, absl::StrCat("backup ", e.id, " is out of sequence"));
      }
      entries.push_back(std::move(e));
    } else if (absl::StartsWith(lines[i], "  shard ")) {
      ShardBackupEntry s;
      absl::string_view chain = t.size() == 5 ? t[4] : "";
      std::optional<storage::Digest> digest;
      if (entries.empty() || t.size() != 5 || !IsPlainName(t[1]) ||
          !ParseField(t[2], "engine_backup", &s.engine_backup_id) ||
          !ParseField(t[3], "records", &s.records) || !absl::ConsumePrefix(&chain, "chain=") ||
          !(digest = storage::DigestFromHex(chain)).has_value()) {
        return bad(i,
                   "a shard line is \"  shard NAME engine_backup=N records=N chain=HEX\", "
                   "after its backup's line");
      }
      s.shard = std::string(t[1]);
      s.chain_head = *digest;
      entries.back().shards.push_back(std::move(s));
    } else {
      return bad(i, "neither a backup nor a shard line");
    }
  }
  for (const BackupEntry& e : entries) {
    if (e.shards.empty()) {
      return absl::DataLossError(absl::StrCat(path, ": backup ", e.id, " lists no shard"));
    }
  }
  return entries;
}

std::vector<std::string> ShardNames(const BackupEntry& entry) {
  std::vector<std::string> names;
  for (const ShardBackupEntry& s : entry.shards) names.push_back(s.shard);
  return names;
}

std::string ShardBackupDir(const std::string& backup_dir, absl::string_view shard) {
  return (fs::path(backup_dir) / "shards" / std::string(shard)).string();
}

std::string KeysBackupDir(const std::string& backup_dir, uint32_t id) {
  return (fs::path(backup_dir) / "keys" / absl::StrCat(id)).string();
}

// RestoreBackup's last part: the shards and keys of report->entry, restored
// under `staging` and renamed into options.data_dir.
absl::Status RestoreStaged(const RestoreOptions& options, bool keys_present,
                           const std::string& staging, RestoreReport* report) {
  const BackupEntry& entry = report->entry;
  const fs::path data_dir(options.data_dir);
  std::error_code ec;
  fs::remove_all(staging, ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", staging, ": ", ec.message()));
  const std::string staged_shards = (fs::path(staging) / "shards").string();
  RETURN_IF_ERROR(MakeDirs(staged_shards, kDirPerms));
  for (const ShardBackupEntry& s : entry.shards) {
    storage::ShardOptions shard_options;
    shard_options.dir = (fs::path(staged_shards) / s.shard).string();
    shard_options.name = s.shard;
    ASSIGN_OR_RETURN(storage::ShardHead head,
                     storage::ShardStore::RestoreBackup(ShardBackupDir(options.backup_dir, s.shard),
                                                        s.engine_backup_id, shard_options));
    // RestoreBackup checked the backup's own metadata; this, the manifest.
    if (head.next_index < s.records) {
      return absl::DataLossError(absl::StrCat(
          "shard ", s.shard, ": restored ", head.next_index, " records, but ", options.backup_dir,
          "/", kBackupManifest, " says backup ", entry.id, " holds ", s.records));
    }
    report->heads.push_back(head);
    RETURN_IF_ERROR(SyncDir(shard_options.dir));
  }
  RETURN_IF_ERROR(SyncDir(staged_shards));
  if (entry.key_files > 0 && !keys_present) {
    const std::string staged_keys = (fs::path(staging) / "keys").string();
    ASSIGN_OR_RETURN(report->key_files,
                     CopyKeyFiles(KeysBackupDir(options.backup_dir, entry.id), staged_keys));
    if (report->key_files != entry.key_files) {
      return absl::DataLossError(absl::StrCat(
          KeysBackupDir(options.backup_dir, entry.id), " holds ", report->key_files,
          " key files, but ", options.backup_dir, "/", kBackupManifest, " says ", entry.key_files));
    }
    const std::string keys_dir = (data_dir / "keys").string();
    if (::rename(staged_keys.c_str(), keys_dir.c_str()) != 0) {
      return ErrnoStatus(errno, "rename", staged_keys);
    }
  } else if (keys_present) {
    report->key_files = entry.key_files;
  }
  // An empty shards/ (a data dir that was started once without shards) goes.
  const std::string shards_dir = (data_dir / "shards").string();
  fs::remove(shards_dir, ec);
  if (::rename(staged_shards.c_str(), shards_dir.c_str()) != 0) {
    return ErrnoStatus(errno, "rename", staged_shards);
  }
  return SyncDir(options.data_dir);
}

}  // namespace

absl::StatusOr<std::vector<BackupEntry>> ReadBackups(const std::string& backup_dir) {
  const std::string path = (fs::path(backup_dir) / kBackupManifest).string();
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(
        absl::StrCat(backup_dir, " holds no predlog backup (no ", path, ")"));
  }
  if (!text.ok()) return text.status();
  return DecodeManifest(*text, path);
}

absl::StatusOr<BackupReport> CreateBackup(const BackupSource& source,
                                          const std::string& backup_dir) {
  const absl::Time start = absl::Now();
  if (backup_dir.empty() || !fs::path(backup_dir).is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the backup directory \"", backup_dir,
                     "\" is not an absolute path (it names a directory on predlogd's host)"));
  }
  std::error_code ec;
  if (!source.data_dir.empty() &&
      IsInside(backup_dir, fs::absolute(source.data_dir, ec).lexically_normal())) {
    return absl::InvalidArgumentError(absl::StrCat("the backup directory ", backup_dir,
                                                   " is inside the data dir ", source.data_dir,
                                                   ": back up to another place"));
  }
  for (const storage::ShardStore* shard : source.shards) {
    if (!IsPlainName(shard->name())) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard name \"", shard->name(), "\" cannot name a directory"));
    }
  }
  RETURN_IF_ERROR(MakeDirs(backup_dir, fs::perms::owner_all));
  ASSIGN_OR_RETURN(std::unique_ptr<DirLock> lock, DirLock::Acquire(backup_dir, true));

  std::vector<BackupEntry> entries;
  if (absl::StatusOr<std::vector<BackupEntry>> read = ReadBackups(backup_dir); read.ok()) {
    entries = std::move(*read);
  } else if (!absl::IsNotFound(read.status())) {
    return read.status();
  }
  BackupReport report;
  report.backup_dir = backup_dir;
  BackupEntry& entry = report.entry;
  entry.id = entries.empty() ? 1 : entries.back().id + 1;
  entry.created_at = start;
  entry.partitions = source.partitions;
  if (!entries.empty()) {
    std::vector<std::string> names;
    for (const storage::ShardStore* shard : source.shards) names.push_back(shard->name());
    if (entries.back().partitions != source.partitions || ShardNames(entries.back()) != names) {
      return absl::FailedPreconditionError(absl::StrCat(
          backup_dir, " holds backups of other shards (",
          absl::StrJoin(ShardNames(entries.back()), ", "), "; ", entries.back().partitions,
          " partitions), not of these (", absl::StrJoin(names, ", "), "; ", source.partitions,
          " partitions): back up into another directory"));
    }
  }

  // The shards first: what the call promises about acknowledged records is
  // theirs; every artifact their registry names is stored by then.
  for (const storage::ShardStore* shard : source.shards) {
    ASSIGN_OR_RETURN(storage::ShardBackupInfo info,
                     shard->Backup(ShardBackupDir(backup_dir, shard->name())));
    entry.shards.push_back({shard->name(), info.backup_id, info.records, info.chain_head});
    report.shards.push_back(info);
  }
  if (source.artifacts != nullptr) {
    ASSIGN_OR_RETURN(std::unique_ptr<storage::ArtifactStore> copy,
                     storage::ArtifactStore::Open((fs::path(backup_dir) / "artifacts").string()));
    ASSIGN_OR_RETURN(std::vector<storage::Digest> digests, source.artifacts->List());
    for (const storage::Digest& digest : digests) {
      ASSIGN_OR_RETURN(storage::ArtifactStore::Copied copied,
                       copy->CopyFrom(*source.artifacts, digest));
      if (!copied.copied) continue;
      ++report.artifacts_copied;
      report.artifact_bytes_copied += copied.size_bytes;
    }
    ASSIGN_OR_RETURN(std::vector<storage::Digest> held, copy->List());
    entry.artifacts = held.size();
  }
  if (!source.keys_dir.empty() && fs::is_directory(source.keys_dir, ec)) {
    RETURN_IF_ERROR(MakeDirs((fs::path(backup_dir) / "keys").string(), fs::perms::owner_all));
    const std::string keys = KeysBackupDir(backup_dir, entry.id);
    const std::string partial = keys + ".partial";
    // Left by an attempt that failed before it was listed.
    fs::remove_all(partial, ec);
    fs::remove_all(keys, ec);
    ASSIGN_OR_RETURN(entry.key_files, CopyKeyFiles(source.keys_dir, partial));
    if (::rename(partial.c_str(), keys.c_str()) != 0) return ErrnoStatus(errno, "rename", partial);
    RETURN_IF_ERROR(SyncDir((fs::path(backup_dir) / "keys").string()));
  }
  entries.push_back(entry);
  RETURN_IF_ERROR(
      ReplaceFile((fs::path(backup_dir) / kBackupManifest).string(), EncodeManifest(entries)));
  report.duration = absl::Now() - start;
  return report;
}

absl::StatusOr<RestoreReport> RestoreBackup(const RestoreOptions& options) {
  const absl::Time start = absl::Now();
  if (options.backup_dir.empty()) {
    return absl::InvalidArgumentError("--restore: the backup directory is empty");
  }
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data_dir is empty");
  std::error_code ec;
  if (!fs::is_directory(options.backup_dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("--restore ", options.backup_dir, ": no such directory"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<DirLock> lock, DirLock::Acquire(options.backup_dir, false));
  ASSIGN_OR_RETURN(std::vector<BackupEntry> entries, ReadBackups(options.backup_dir));
  if (entries.empty()) {
    return absl::NotFoundError(
        absl::StrCat(options.backup_dir, "/", kBackupManifest, " lists no backup"));
  }
  const BackupEntry* chosen = &entries.back();
  if (options.backup_id.has_value()) {
    if (*options.backup_id < 1 || *options.backup_id > entries.back().id) {
      return absl::NotFoundError(absl::StrCat("--restore_backup_id ", *options.backup_id, ": ",
                                              options.backup_dir, "/", kBackupManifest,
                                              " lists backups 1..", entries.back().id));
    }
    chosen = &entries[*options.backup_id - 1];
  }
  RestoreReport report;
  report.entry = *chosen;
  const BackupEntry& entry = report.entry;
  if (entry.partitions != options.partitions) {
    return absl::InvalidArgumentError(
        absl::StrCat("--partitions ", options.partitions, " differs from backup ", entry.id, " of ",
                     options.backup_dir, ", which has ", entry.partitions,
                     " partitions: restore with --partitions=", entry.partitions));
  }
  const fs::path data_dir(options.data_dir);
  const std::string shards_dir = (data_dir / "shards").string();
  if (!IsEmptyOrMissing(shards_dir)) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data_dir ", options.data_dir, " already holds shards (", shards_dir,
                     "): a restore needs a data dir without them"));
  }
  // Keys already in the data dir must be the backup's: a restore never
  // replaces a key.
  const std::string keys_dir = (data_dir / "keys").string();
  const std::string backed_up_keys = KeysBackupDir(options.backup_dir, entry.id);
  if (entry.key_files > 0 && !fs::is_directory(backed_up_keys, ec)) {
    return absl::DataLossError(absl::StrCat("backup ", entry.id, " of ", options.backup_dir,
                                            " lists ", entry.key_files, " key files, but ",
                                            backed_up_keys, " is missing"));
  }
  bool keys_present = false;
  if (entry.key_files > 0 && fs::exists(keys_dir, ec)) {
    keys_present = true;
    for (fs::directory_iterator it(backed_up_keys, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string target = (fs::path(keys_dir) / it->path().filename()).string();
      ASSIGN_OR_RETURN(std::string want, ReadWholeFile(it->path().string()));
      absl::StatusOr<std::string> have = ReadWholeFile(target);
      if (!have.ok() || *have != want) {
        return absl::FailedPreconditionError(
            absl::StrCat("--data_dir ", options.data_dir, ": ", target,
                         have.ok() ? " differs from the backup's" : " is missing beside the others",
                         " (", it->path().string(), "); a restore never replaces a key: move ",
                         keys_dir, " away first"));
      }
    }
    if (ec) return absl::InternalError(absl::StrCat("list ", backed_up_keys, ": ", ec.message()));
  }

  // Nothing is restored before every shard's backup checks out.
  for (const ShardBackupEntry& s : entry.shards) {
    RETURN_IF_ERROR(storage::ShardStore::VerifyBackup(ShardBackupDir(options.backup_dir, s.shard),
                                                      s.engine_backup_id, s.shard));
  }

  RETURN_IF_ERROR(MakeDirs(options.data_dir, kDirPerms));
  const std::string backed_up_artifacts = (fs::path(options.backup_dir) / "artifacts").string();
  if (fs::is_directory(backed_up_artifacts, ec)) {
    ASSIGN_OR_RETURN(std::unique_ptr<storage::ArtifactStore> from,
                     storage::ArtifactStore::Open(backed_up_artifacts));
    ASSIGN_OR_RETURN(std::unique_ptr<storage::ArtifactStore> to,
                     storage::ArtifactStore::Open(options.artifact_dir.empty()
                                                      ? (data_dir / "artifacts").string()
                                                      : options.artifact_dir));
    ASSIGN_OR_RETURN(std::vector<storage::Digest> digests, from->List());
    for (const storage::Digest& digest : digests) {
      absl::StatusOr<storage::ArtifactStore::Copied> copied = to->CopyFrom(*from, digest);
      if (absl::IsDataLoss(copied.status())) {
        return absl::DataLossError(absl::StrCat(
            copied.status().message(), "; nothing of the backup was restored. Removing ",
            from->PathOf(digest), " from the backup restores it without that artifact (reruns ",
            "of its model then say it is missing)"));
      }
      if (!copied.ok()) return copied.status();
      if (copied->copied) ++report.artifacts_copied;
    }
  }

  // Shards and keys are put together under restoring/ and renamed into
  // place; the shards directory last, as it is what makes a data dir hold
  // shards. A failure removes what was staged.
  const std::string staging = (data_dir / kRestoring).string();
  absl::Status staged = RestoreStaged(options, keys_present, staging, &report);
  fs::remove_all(staging, ec);
  RETURN_IF_ERROR(staged);
  report.duration = absl::Now() - start;
  return report;
}

std::string DescribeRestore(const RestoreOptions& options, const RestoreReport& report) {
  std::string out = absl::StrCat(
      "restored backup ", report.entry.id, " of ", options.backup_dir, " (begun ",
      absl::FormatTime(kTimeFormat, report.entry.created_at, absl::UTCTimeZone()), ") into ",
      options.data_dir, " in ", absl::FormatDuration(report.duration), "\n");
  for (size_t i = 0; i < report.heads.size(); ++i) {
    absl::StrAppend(&out, "  ", report.entry.shards[i].shard, ": ", report.heads[i].next_index,
                    " records, chain head ", storage::ToHex(report.heads[i].chain_head), "\n");
  }
  absl::StrAppend(&out, "  artifacts: ", report.artifacts_copied, " copied into ",
                  options.artifact_dir.empty() ? (fs::path(options.data_dir) / "artifacts").string()
                                               : options.artifact_dir,
                  "\n  signing keys: ",
                  report.key_files == 0
                      ? std::string("none in the backup")
                      : absl::StrCat(report.key_files, " files in ",
                                     (fs::path(options.data_dir) / "keys").string()),
                  "\n");
  return out;
}

}  // namespace predlog::services
