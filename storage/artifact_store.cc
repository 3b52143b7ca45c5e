#include "storage/artifact_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "storage/errno_status.h"
#include "storage/status_macros.h"

// On-disk layout (all names relative to the store's directory):
//
//   store    := "sha256/" fanout "/" hex   -- one committed artifact, mode 0444
//             | "tmp/upload-" random       -- one upload in progress (or crashed)
//   fanout   := the first two characters of hex
//   hex      := 64 lower-case hex digits: SHA-256 of the file's bytes
//
// Commit protocol of an upload, each step durable before the next:
//   1. write the bytes to tmp/upload-*, fsync, chmod 0444;
//   2. mkdir sha256/<fanout> (exists: fine), fsync sha256/;
//   3. link(tmp/upload-*, sha256/<fanout>/<hex>): the only step that makes the
//      artifact visible. link never replaces an existing name: EEXIST means the
//      same digest is already stored (or being stored by a concurrent upload),
//      so the upload is a no-op;
//   4. fsync sha256/<fanout>/ (also on EEXIST: the concurrent uploader may not
//      have done it yet, and our caller is told the artifact is durable);
//   5. unlink tmp/upload-*.
// A crash before 3 leaves only a temp file; a crash after 3 leaves a complete
// artifact (its bytes were fsynced in 1) plus maybe a second name for it in
// tmp/. Open() removes what is left in tmp/.
//
// Temp files vs. Open(): an upload holds flock(LOCK_EX) on its temp file for
// its whole life, so Open() removes only temp files it can lock, i.e. those of
// uploads whose process or writer is gone. A cleaner can lock and unlink a new
// temp file between its creation and its writer's flock; the writer sees
// st_nlink == 0 once it holds the lock and starts over with a new file.

namespace predlog::storage {
namespace {

constexpr mode_t kDirMode = 0755;
constexpr mode_t kArtifactMode = 0444;
constexpr char kTempPrefix[] = "upload-";

std::string ArtifactName(const std::string& dir, const Digest& digest) {
  const std::string hex = ToHex(digest);
  return absl::StrCat(dir, "/sha256/", hex.substr(0, 2), "/", hex);
}

absl::Status NotStored(const std::string& dir, const Digest& digest) {
  return absl::NotFoundError(
      absl::StrCat("artifact sha256:", ToHex(digest), " is not in the artifact store (", dir, ")"));
}

// Retries `call` while it fails with EINTR.
template <typename F>
auto RetryOnEintr(F call) {
  auto result = call();
  while (result == -1 && errno == EINTR) result = call();
  return result;
}

absl::Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), kDirMode) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, "mkdir", path);
  }
  return absl::OkStatus();
}

// Makes the directory's entries (files linked or renamed into it) durable.
absl::Status SyncDir(const std::string& path) {
  const int fd =
      RetryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, "fsync", path);
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = RetryOnEintr([&] { return ::write(fd, bytes.data(), bytes.size()); });
    if (n < 0) return ErrnoStatus(errno, "write", path);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Removes the temp files in `tmp_dir` that no live upload holds locked.
absl::Status RemoveStaleTempFiles(const std::string& tmp_dir) {
  DIR* d = ::opendir(tmp_dir.c_str());
  if (d == nullptr) return ErrnoStatus(errno, "opendir", tmp_dir);
  absl::Status status;
  errno = 0;
  while (const dirent* entry = ::readdir(d)) {
    const absl::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = absl::StrCat(tmp_dir, "/", name);
    const int fd = RetryOnEintr(
        [&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK); });
    if (fd < 0) {
      // ENOENT: removed meanwhile. ELOOP: a symlink, not an upload of ours.
      if (errno != ENOENT && errno != ELOOP) status.Update(ErrnoStatus(errno, "open", path));
      errno = 0;
      continue;
    }
    struct stat st;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        RetryOnEintr([&] { return ::flock(fd, LOCK_EX | LOCK_NB); }) == 0) {
      // Unlinked while locked, so a writer that created it and now waits for
      // the lock finds st_nlink == 0 and starts over.
      if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        status.Update(ErrnoStatus(errno, "unlink", path));
      }
    }
    ::close(fd);
    errno = 0;
  }
  if (errno != 0) status.Update(ErrnoStatus(errno, "readdir", tmp_dir));
  ::closedir(d);
  return status;
}

}  // namespace

// ---- ArtifactWriter ----

ArtifactWriter::ArtifactWriter(std::string store_dir, std::string temp_path, int fd)
    : store_dir_(std::move(store_dir)), temp_path_(std::move(temp_path)), fd_(fd) {}

ArtifactWriter::~ArtifactWriter() { Discard(); }

void ArtifactWriter::Discard() {
  if (fd_ < 0) return;
  // Unlink before close: the lock stays held until the name is gone.
  ::unlink(temp_path_.c_str());  // a failure leaves a stale file for Open()
  ::close(fd_);
  fd_ = -1;
}

absl::Status ArtifactWriter::Append(absl::string_view chunk) {
  if (finished_) {
    return absl::FailedPreconditionError(
        absl::StrCat("artifact upload ", temp_path_, " is already committed or abandoned"));
  }
  absl::Status status = WriteAll(fd_, chunk, temp_path_);
  if (!status.ok()) {
    // The file now holds an unknown prefix of the chunk: the upload cannot
    // continue, and retrying the chunk would store a wrong artifact.
    finished_ = true;
    Discard();
    return status;
  }
  hasher_.Update(chunk);
  bytes_written_ += chunk.size();
  return absl::OkStatus();
}

absl::StatusOr<ArtifactInfo> ArtifactWriter::Commit(const std::optional<Digest>& expected) {
  if (finished_) {
    return absl::FailedPreconditionError(
        absl::StrCat("artifact upload ", temp_path_, " is already committed or abandoned"));
  }
  finished_ = true;
  absl::StatusOr<ArtifactInfo> info = CommitInternal(expected);
  // After a successful link the temp name is only a second name of the
  // committed file; after a failure it is the whole upload. Either way it goes.
  Discard();
  return info;
}

absl::StatusOr<ArtifactInfo> ArtifactWriter::CommitInternal(const std::optional<Digest>& expected) {
  if (::fsync(fd_) != 0) return ErrnoStatus(errno, "fsync", temp_path_);
  // Read-only before it gets its final name, so it is never writable there.
  if (::fchmod(fd_, kArtifactMode) != 0) return ErrnoStatus(errno, "chmod", temp_path_);

  const ArtifactInfo info{hasher_.Finish(), bytes_written_};
  const std::string hex = ToHex(info.digest);
  if (expected.has_value() && *expected != info.digest) {
    return absl::InvalidArgumentError(
        absl::StrCat("artifact upload hashes to sha256:", hex,
                     ", not to the expected sha256:", ToHex(*expected)));
  }

  const std::string sha_dir = absl::StrCat(store_dir_, "/sha256");
  const std::string fanout_dir = absl::StrCat(sha_dir, "/", hex.substr(0, 2));
  RETURN_IF_ERROR(MakeDir(fanout_dir));
  RETURN_IF_ERROR(SyncDir(sha_dir));

  const std::string path = ArtifactName(store_dir_, info.digest);
  if (::link(temp_path_.c_str(), path.c_str()) == 0) {
    RETURN_IF_ERROR(SyncDir(fanout_dir));
    return info;
  }
  if (errno != EEXIST) {
    return ErrnoStatus(errno, "link", absl::StrCat(temp_path_, " -> ", path));
  }

  // Already stored (write-once: the existing file stays). Equal digests mean
  // equal bytes, so a size difference can only be damage to the stored file.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", path);
  if (static_cast<uint64_t>(st.st_size) != info.size_bytes) {
    return absl::DataLossError(absl::StrCat("artifact sha256:", hex, " is corrupt: its file ", path,
                                            " has ", st.st_size, " bytes, its content ",
                                            info.size_bytes));
  }
  RETURN_IF_ERROR(SyncDir(fanout_dir));
  return info;
}

// ---- ArtifactStore ----

ArtifactStore::ArtifactStore(std::string dir) : dir_(std::move(dir)) {}

absl::StatusOr<std::unique_ptr<ArtifactStore>> ArtifactStore::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("artifact store directory is empty");
  std::string root = dir;
  while (root.size() > 1 && root.back() == '/') root.pop_back();

  std::error_code ec;
  const bool created = std::filesystem::create_directories(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", root, ": ", ec.message()));
  if (created) {
    // Make the new store directory's own name durable.
    const std::string parent = std::filesystem::path(root).parent_path().string();
    RETURN_IF_ERROR(SyncDir(parent.empty() ? "." : parent));
  }
  RETURN_IF_ERROR(MakeDir(absl::StrCat(root, "/sha256")));
  RETURN_IF_ERROR(MakeDir(absl::StrCat(root, "/tmp")));
  RETURN_IF_ERROR(SyncDir(root));
  RETURN_IF_ERROR(RemoveStaleTempFiles(absl::StrCat(root, "/tmp")));
  return std::unique_ptr<ArtifactStore>(new ArtifactStore(std::move(root)));
}

absl::StatusOr<std::unique_ptr<ArtifactWriter>> ArtifactStore::NewWriter() {
  // A few attempts: each retry means a concurrent Open() removed our fresh
  // temp file before we locked it (see the top of this file), which needs a
  // store being opened at that very moment.
  constexpr int kAttempts = 8;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    std::string path = absl::StrCat(dir_, "/tmp/", kTempPrefix, "XXXXXX");
    const int fd = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "mkstemp", path);
    if (RetryOnEintr([&] { return ::flock(fd, LOCK_EX); }) != 0) {
      const int err = errno;
      ::unlink(path.c_str());
      ::close(fd);
      return ErrnoStatus(err, "flock", path);
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::unlink(path.c_str());
      ::close(fd);
      return ErrnoStatus(err, "stat", path);
    }
    if (st.st_nlink == 0) {  // removed by a concurrent Open(); nothing to unlink
      ::close(fd);
      continue;
    }
    return std::unique_ptr<ArtifactWriter>(new ArtifactWriter(dir_, std::move(path), fd));
  }
  return absl::InternalError(absl::StrCat("could not create an upload file in ", dir_,
                                          "/tmp: removed by concurrent opens ", kAttempts,
                                          " times"));
}

absl::StatusOr<ArtifactInfo> ArtifactStore::Put(absl::string_view bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<ArtifactWriter> writer, NewWriter());
  RETURN_IF_ERROR(writer->Append(bytes));
  return writer->Commit();
}

absl::StatusOr<std::string> ArtifactStore::Read(const Digest& digest) const {
  const std::string path = PathOf(digest);
  const int fd = RetryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
  if (fd < 0) {
    if (errno == ENOENT) return NotStored(dir_, digest);
    return ErrnoStatus(errno, "open", path);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "stat", path);
  }
  // Sized one past the expected length, so the read that sees EOF needs no
  // reallocation; reads until EOF rather than trusting st_size.
  std::string bytes(static_cast<size_t>(st.st_size) + 1, '\0');
  size_t got = 0;
  while (true) {
    if (got == bytes.size()) bytes.resize(bytes.size() + (1 << 20));
    const ssize_t n =
        RetryOnEintr([&] { return ::read(fd, bytes.data() + got, bytes.size() - got); });
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "read", path);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  bytes.resize(got);

  const Digest actual = Sha256(bytes);
  if (actual != digest) {
    return absl::DataLossError(absl::StrCat("artifact sha256:", ToHex(digest),
                                            " is corrupt: its content hashes to ", ToHex(actual)));
  }
  return bytes;
}

absl::StatusOr<ArtifactInfo> ArtifactStore::Stat(const Digest& digest) const {
  const std::string path = PathOf(digest);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotStored(dir_, digest);
    return ErrnoStatus(errno, "stat", path);
  }
  return ArtifactInfo{digest, static_cast<uint64_t>(st.st_size), static_cast<uint64_t>(st.st_ino),
                      static_cast<int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec};
}

absl::StatusOr<std::vector<Digest>> ArtifactStore::List() const {
  std::vector<Digest> digests;
  const std::string sha_dir = absl::StrCat(dir_, "/sha256");
  std::error_code ec;
  for (std::filesystem::directory_iterator fanout(sha_dir, ec), end; !ec && fanout != end;
       fanout.increment(ec)) {
    const std::string prefix = fanout->path().filename().string();
    if (prefix.size() != 2 || !fanout->is_directory(ec)) continue;
    for (std::filesystem::directory_iterator file(fanout->path(), ec); !ec && file != end;
         file.increment(ec)) {
      const std::string hex = file->path().filename().string();
      std::optional<Digest> digest = DigestFromHex(hex);
      // DigestFromHex takes upper case too; committed names are lower case.
      if (!digest.has_value() || ToHex(*digest) != hex || hex.substr(0, 2) != prefix) continue;
      digests.push_back(*digest);
    }
    if (ec) break;
  }
  if (ec) return absl::InternalError(absl::StrCat("list ", sha_dir, ": ", ec.message()));
  std::sort(digests.begin(), digests.end());
  return digests;
}

absl::StatusOr<ArtifactStore::Copied> ArtifactStore::CopyFrom(const ArtifactStore& source,
                                                              const Digest& digest) {
  absl::StatusOr<ArtifactInfo> here = Stat(digest);
  if (here.ok()) return Copied{false, here->size_bytes};
  if (!absl::IsNotFound(here.status())) return here.status();

  const std::string path = source.PathOf(digest);
  const int fd = RetryOnEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
  if (fd < 0) {
    if (errno == ENOENT) return NotStored(source.dir(), digest);
    return ErrnoStatus(errno, "open", path);
  }
  absl::StatusOr<std::unique_ptr<ArtifactWriter>> writer = NewWriter();
  if (!writer.ok()) {
    ::close(fd);
    return writer.status();
  }
  std::string buffer(1 << 20, '\0');
  while (true) {
    const ssize_t n = RetryOnEintr([&] { return ::read(fd, buffer.data(), buffer.size()); });
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "read", path);
    }
    if (n == 0) break;
    if (absl::Status appended =
            (*writer)->Append(absl::string_view(buffer.data(), static_cast<size_t>(n)));
        !appended.ok()) {
      ::close(fd);
      return appended;
    }
  }
  ::close(fd);
  absl::StatusOr<ArtifactInfo> committed = (*writer)->Commit(digest);
  if (absl::IsInvalidArgument(committed.status())) {  // the bytes hash to another digest
    return absl::DataLossError(absl::StrCat("artifact sha256:", ToHex(digest), " in ", source.dir(),
                                            " is corrupt: ", committed.status().message()));
  }
  if (!committed.ok()) return committed.status();
  return Copied{true, committed->size_bytes};
}

std::string ArtifactStore::PathOf(const Digest& digest) const { return ArtifactName(dir_, digest); }

}  // namespace predlog::storage
