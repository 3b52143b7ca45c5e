#include "storage/acked_mark.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "storage/errno_status.h"
#include "storage/key_codec.h"

namespace predlog::storage {
namespace {

constexpr uint8_t kMarkFormat = 2;
constexpr size_t kFixedBytes = 1 + 1 + 8 + 32;
constexpr size_t kMaxMarkBytes = kFixedBytes + 1 + 255;

// nullopt for an empty file (created, never written).
absl::StatusOr<std::optional<AckedMark::Value>> ReadFd(int fd, const std::string& path) {
  char buffer[kMaxMarkBytes + 1];
  const ssize_t n = pread(fd, buffer, sizeof(buffer), 0);
  if (n < 0) return ErrnoStatus(errno, "read acked mark", path);
  if (n == 0) return std::nullopt;
  absl::string_view in(buffer, static_cast<size_t>(n));
  uint8_t format, synced, identity_length;
  AckedMark::Value value;
  absl::string_view chain, identity;
  if (static_cast<size_t>(n) < kFixedBytes || !ReadU8(&in, &format) || format != kMarkFormat ||
      !ReadU8(&in, &synced) || !ReadU64(&in, &value.next_index) || !ReadBytes(&in, 32, &chain) ||
      !ReadU8(&in, &identity_length) || !ReadBytes(&in, identity_length, &identity) ||
      !in.empty()) {
    return absl::DataLossError(
        absl::StrCat("acked mark ", path, " is not a predlog mark (", n, " bytes)"));
  }
  std::copy(chain.begin(), chain.end(), value.chain_head.begin());
  value.synced = synced != 0;
  value.db_identity = std::string(identity);
  return value;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AckedMark>> AckedMark::Open(const std::string& path, bool sync) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "open acked mark", path);
  std::unique_ptr<AckedMark> mark(new AckedMark(path, fd, sync));
  absl::StatusOr<std::optional<Value>> value = ReadFd(fd, path);
  if (!value.ok()) return value.status();
  mark->at_open_ = *value;
  const off_t size = lseek(fd, 0, SEEK_END);
  mark->file_size_ = size > 0 ? static_cast<size_t>(size) : 0;
  return mark;
}

absl::StatusOr<std::optional<AckedMark::Value>> AckedMark::Read(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    return ErrnoStatus(errno, "open acked mark", path);
  }
  absl::StatusOr<std::optional<Value>> value = ReadFd(fd, path);
  close(fd);
  return value;
}

AckedMark::~AckedMark() { close(fd_); }

absl::Status AckedMark::Write(const Value& value) {
  std::string bytes;
  AppendU8(&bytes, kMarkFormat);
  AppendU8(&bytes, sync_ ? 1 : 0);
  AppendU64(&bytes, value.next_index);
  bytes.append(value.chain_head.begin(), value.chain_head.end());
  const absl::string_view identity = absl::string_view(value.db_identity).substr(0, 255);
  AppendU8(&bytes, static_cast<uint8_t>(identity.size()));
  bytes.append(identity.data(), identity.size());
  const ssize_t n = pwrite(fd_, bytes.data(), bytes.size(), 0);
  if (n < 0) return ErrnoStatus(errno, "write acked mark", path_);
  if (static_cast<size_t>(n) != bytes.size()) {
    return absl::InternalError(absl::StrCat("write acked mark ", path_, ": short write"));
  }
  // A shorter mark than the file (another identity) must not keep its tail.
  if (bytes.size() != file_size_) {
    if (ftruncate(fd_, static_cast<off_t>(bytes.size())) != 0) {
      return ErrnoStatus(errno, "truncate acked mark", path_);
    }
    file_size_ = bytes.size();
  }
  if (sync_ && fdatasync(fd_) != 0) return ErrnoStatus(errno, "sync acked mark", path_);
  return absl::OkStatus();
}

}  // namespace predlog::storage
