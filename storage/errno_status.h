// The one conversion of a failed system call's errno into an absl::Status,
// for every library that touches files (shards' acked marks, the artifact
// store, exports).
#ifndef PREDLOG_STORAGE_ERRNO_STATUS_H_
#define PREDLOG_STORAGE_ERRNO_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace predlog::storage {

// "<what> <path>: <strerror(err)>", coded by the cause: NOT_FOUND for
// ENOENT/ENOTDIR, PERMISSION_DENIED for EACCES/EPERM, RESOURCE_EXHAUSTED for
// ENOSPC/EDQUOT (a full disk or quota), INTERNAL otherwise.
absl::Status ErrnoStatus(int err, absl::string_view what, absl::string_view path);

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_ERRNO_STATUS_H_
