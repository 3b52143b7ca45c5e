// The format is written as a grammar in dataset_digest.h.
#include "services/cli/dataset_digest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/errno_status.h"
#include "storage/sha256.h"

namespace predlog::services {
namespace {

namespace fs = std::filesystem;

// SHA-256 of one regular file's bytes and its size.
absl::StatusOr<std::pair<storage::Digest, uint64_t>> HashFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return storage::ErrnoStatus(errno, "open", path);
  storage::Sha256Hasher hasher;
  uint64_t size = 0;
  std::vector<char> buffer(1 << 20);
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return storage::ErrnoStatus(err, "read", path);
    }
    if (n == 0) break;
    hasher.Update(absl::string_view(buffer.data(), static_cast<size_t>(n)));
    size += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return std::make_pair(hasher.Finish(), size);
}

absl::Status NotRegular(const fs::path& path, fs::file_type type) {
  return absl::InvalidArgumentError(absl::StrCat(
      path.string(),
      type == fs::file_type::symlink
          ? " is a symbolic link; a dataset digest covers regular files only (copy or "
            "dereference it first)"
          : " is not a regular file or directory; a dataset digest covers regular files only"));
}

}  // namespace

absl::StatusOr<DatasetDigest> DigestDatasetPath(const std::string& path) {
  std::error_code ec;
  const fs::file_status top = fs::symlink_status(path, ec);
  if (ec || top.type() == fs::file_type::not_found) {
    return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  }
  DatasetDigest out;
  if (top.type() == fs::file_type::regular) {
    auto hashed = HashFile(path);
    if (!hashed.ok()) return hashed.status();
    out.sha256_hex = storage::ToHex(hashed->first);
    out.size_bytes = hashed->second;
    out.files = 1;
    return out;
  }
  if (top.type() != fs::file_type::directory) return NotRegular(path, top.type());

  // (relative path with '/', absolute path) of every regular file.
  std::vector<std::pair<std::string, std::string>> files;
  fs::recursive_directory_iterator it(path, fs::directory_options::none, ec);
  if (ec) return storage::ErrnoStatus(ec.value(), "open directory", path);
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return storage::ErrnoStatus(ec.value(), "list directory", path);
    const fs::file_status status = it->symlink_status(ec);
    if (ec) return storage::ErrnoStatus(ec.value(), "stat", it->path().string());
    if (status.type() == fs::file_type::directory) continue;
    if (status.type() != fs::file_type::regular) return NotRegular(it->path(), status.type());
    files.emplace_back(it->path().lexically_relative(path).generic_string(), it->path().string());
  }
  if (ec) return storage::ErrnoStatus(ec.value(), "list directory", path);
  std::sort(files.begin(), files.end());
  storage::Sha256Hasher listing;
  for (const auto& [relative, absolute] : files) {
    auto hashed = HashFile(absolute);
    if (!hashed.ok()) return hashed.status();
    listing.Update(absl::StrCat(storage::ToHex(hashed->first), "  ", relative, "\n"));
    out.size_bytes += hashed->second;
    ++out.files;
  }
  out.sha256_hex = storage::ToHex(listing.Finish());
  return out;
}

}  // namespace predlog::services
