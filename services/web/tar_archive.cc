#include "services/web/tar_archive.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace predlog::web {
namespace {

la_ssize_t Append(struct archive*, void* out, const void* buffer, size_t length) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buffer), length);
  return static_cast<la_ssize_t>(length);
}

}  // namespace

absl::StatusOr<std::string> TarArchive(const std::vector<ArchiveFile>& files) {
  std::string out;
  std::unique_ptr<struct archive, decltype(&archive_write_free)> tar(archive_write_new(),
                                                                     &archive_write_free);
  if (tar == nullptr || archive_write_set_format_pax_restricted(tar.get()) != ARCHIVE_OK ||
      archive_write_add_filter_none(tar.get()) != ARCHIVE_OK ||
      // Blocks of 512 bytes, not 10 KiB: no padding beyond what tar needs.
      archive_write_set_bytes_per_block(tar.get(), 512) != ARCHIVE_OK ||
      archive_write_open(tar.get(), &out, nullptr, &Append, nullptr) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("cannot start a tar archive: ",
                     tar == nullptr ? "out of memory" : archive_error_string(tar.get())));
  }
  const time_t now = std::time(nullptr);
  for (const ArchiveFile& file : files) {
    std::unique_ptr<struct archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                               &archive_entry_free);
    archive_entry_set_pathname(entry.get(), file.path.c_str());
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(file.content.size()));
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), 0644);
    archive_entry_set_mtime(entry.get(), now, 0);
    if (archive_write_header(tar.get(), entry.get()) != ARCHIVE_OK ||
        (!file.content.empty() &&
         archive_write_data(tar.get(), file.content.data(), file.content.size()) !=
             static_cast<la_ssize_t>(file.content.size()))) {
      return absl::InternalError(absl::StrCat(
          "cannot add ", file.path, " to a tar archive: ", archive_error_string(tar.get())));
    }
  }
  if (archive_write_close(tar.get()) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("cannot finish a tar archive: ", archive_error_string(tar.get())));
  }
  return out;
}

absl::StatusOr<std::vector<ArchiveFile>> ReadDirectoryFiles(const std::string& dir,
                                                            const std::string& prefix) {
  std::vector<ArchiveFile> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    if (!in) return absl::InternalError(absl::StrCat("cannot read ", entry.path().string()));
    files.push_back({absl::StrCat(prefix, "/", entry.path().filename().string()), content.str()});
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  std::sort(files.begin(), files.end(),
            [](const ArchiveFile& a, const ArchiveFile& b) { return a.path < b.path; });
  return files;
}

}  // namespace predlog::web
