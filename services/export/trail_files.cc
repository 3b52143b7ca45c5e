// The file helpers the export's pieces share (services/export/trail_internal.h):
// errno as a status, path names, the hashing FileSink, whole-file reads and
// durable writes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "services/export/trail_internal.h"
#include "storage/status_macros.h"

namespace predlog::services::export_internal {

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// ---------------------------------------------------------------------------
// FileSink

absl::StatusOr<std::unique_ptr<FileSink>> FileSink::Create(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "cannot create", path);
  return std::unique_ptr<FileSink>(new FileSink(path, fd));
}

FileSink::FileSink(std::string path, int fd) : path_(std::move(path)), fd_(fd) {
  buffer_.reserve(kFlushBytes + (64 << 10));
}

FileSink::~FileSink() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status FileSink::Append(absl::string_view bytes) {
  if (!buffer_.empty() || bytes.size() < kFlushBytes / 2) {
    buffer_.append(bytes.data(), bytes.size());
    return MaybeFlush();
  }
  return Write(bytes);
}

absl::Status FileSink::Flush() {
  RETURN_IF_ERROR(Write(buffer_));
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status FileSink::Write(absl::string_view bytes) {
  hasher_.Update(bytes);
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot write", path_);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  // Start writing these bytes back now: the kernel would otherwise hold
  // them dirty until Close's fsync (an export of a GB is below the
  // background writeback threshold), which would then wait for all of them
  // at once instead of overlapping the disk with the rendering. Only a hint,
  // so its failure does not matter: fsync reports real I/O errors.
  ::sync_file_range(fd_, static_cast<off_t>(bytes_), static_cast<off_t>(bytes.size()),
                    SYNC_FILE_RANGE_WRITE);
  bytes_ += bytes.size();
  return absl::OkStatus();
}

absl::Status FileSink::Close() {
  RETURN_IF_ERROR(Flush());
  if (::fsync(fd_) != 0) return ErrnoStatus(errno, "cannot fsync", path_);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return ErrnoStatus(errno, "cannot close", path_);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Whole files

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
  std::string data;
  char chunk[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "cannot read", path);
    }
    if (n == 0) break;
    data.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

absl::Status WriteFileDurably(const std::string& path, absl::string_view contents) {
  const std::string temp = path + ".tmp";
  {
    ASSIGN_OR_RETURN(std::unique_ptr<FileSink> sink, FileSink::Create(temp));
    sink->buffer()->append(contents.data(), contents.size());
    RETURN_IF_ERROR(sink->Close());
  }
  return RenameDurably(temp, path);
}

absl::Status RenameDurably(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus(errno, "cannot rename to", to);
  }
  // The rename itself is durable once the directory is synced.
  const std::string dir = DirName(to);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoStatus(errno, "cannot open directory", dir);
  const int rc = ::fsync(dir_fd);
  const int err = errno;
  ::close(dir_fd);
  if (rc != 0) return ErrnoStatus(err, "cannot fsync directory", dir);
  return absl::OkStatus();
}

}  // namespace predlog::services::export_internal
