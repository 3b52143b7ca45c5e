// Downloads of several files as one: a tar archive built in memory with
// libarchive (POSIX pax format,
// https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html), which `tar xf` unpacks
// anywhere.
//
// Stateless; thread-safe.
#ifndef PREDLOG_SERVICES_WEB_TAR_ARCHIVE_H_
#define PREDLOG_SERVICES_WEB_TAR_ARCHIVE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace predlog::web {

// One file of an archive: its path inside it ("case-p-1/summary.md") and bytes.
struct ArchiveFile {
  std::string path;
  std::string content;
};

// The tar archive of `files`, in order, each a regular file (mode 0644,
// modified now). INTERNAL naming the file libarchive refused.
absl::StatusOr<std::string> TarArchive(const std::vector<ArchiveFile>& files);

// The regular files directly in `dir`, by name, each as `prefix` + "/" +
// name. INTERNAL naming a file that cannot be read.
absl::StatusOr<std::vector<ArchiveFile>> ReadDirectoryFiles(const std::string& dir,
                                                            const std::string& prefix);

}  // namespace predlog::web

#endif  // PREDLOG_SERVICES_WEB_TAR_ARCHIVE_H_
