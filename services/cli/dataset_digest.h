// The content digest `predlog dataset register --path` computes, so a dataset
// is named by its bytes wherever they live.
//
//   file       digest = SHA-256 of the file's bytes
//   directory  digest = SHA-256 of listing
//              listing = line*          (sorted by path, byte order)
//              line    = hex "  " path "\n"
//              hex     = lower-case hex SHA-256 of one regular file's bytes
//              path    = the file's path relative to the directory, '/'
//                        between components, no leading "./"
// Every regular file under the directory, at any depth and hidden ones
// included, is one line; directories themselves add nothing (an empty
// directory changes nothing), so the digest covers the files' names and
// bytes, not permissions or times. The shape of `sha256sum` output over
// the tree, after DVC's directory digests. A symbolic link, at the top or
// inside, and any other file that is not regular (FIFO, socket, device) is
// refused: a link's target may change under the same digest.
//
// size_bytes is the file's size, or the sum of the regular files' sizes.
#ifndef PREDLOG_SERVICES_CLI_DATASET_DIGEST_H_
#define PREDLOG_SERVICES_CLI_DATASET_DIGEST_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace predlog::services {

struct DatasetDigest {
  std::string sha256_hex;  // lower-case
  uint64_t size_bytes = 0;
  uint64_t files = 0;
};

// The digest of `path` (a regular file or a directory), read from disk.
// NOT_FOUND when it does not exist; INVALID_ARGUMENT naming a symbolic link
// or other file that is not regular; the errno's status, naming the file,
// when one cannot be read. Thread-compatible (no shared state).
absl::StatusOr<DatasetDigest> DigestDatasetPath(const std::string& path);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_CLI_DATASET_DIGEST_H_
