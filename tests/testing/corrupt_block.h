// A damaged data block in a shard, as a failing disk leaves it: for tests of
// what reads, exports and verification do with records that cannot be read.
// The same damage as ShardStoreTest.CorruptDataBlockFailsItsReadsAsDataLoss:
// bytes overwritten in the middle of the shard's largest table file.
#ifndef PREDLOG_TESTS_TESTING_CORRUPT_BLOCK_H_
#define PREDLOG_TESTS_TESTING_CORRUPT_BLOCK_H_

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "storage/shard_store.h"

namespace predlog::testing {

// Compacts the shard in `shard_dir` (which no process may have open) so its
// events sit in one table file per column family, then overwrites 64 bytes a
// third of the way into its largest table file: one or two data blocks of the
// events column family. Returns the indexes of the shard's log that then fail
// to read with DATA_LOSS, found by opening it read-only, in order. Errors:
// the shard's own when it does not open or compact, FAILED_PRECONDITION when
// no table file is found or the damage left no record (or every record)
// unreadable, INTERNAL when a read fails with another code.
inline absl::StatusOr<std::vector<uint64_t>> CorruptOneDataBlock(const std::string& shard_dir) {
  {
    storage::ShardOptions options;
    options.dir = shard_dir;
    absl::StatusOr<std::unique_ptr<storage::ShardStore>> shard = storage::ShardStore::Open(options);
    if (!shard.ok()) return shard.status();
    if (absl::Status compacted = (*shard)->Compact(); !compacted.ok()) return compacted;
  }
  std::string largest;
  uintmax_t largest_size = 0;
  for (const auto& entry : std::filesystem::directory_iterator(shard_dir + "/db")) {
    if (entry.path().extension() == ".sst" && entry.file_size() > largest_size) {
      largest = entry.path().string();
      largest_size = entry.file_size();
    }
  }
  if (largest.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("no table file in ", shard_dir, "/db"));
  }
  {
    std::fstream file(largest, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(largest_size / 3));
    const std::string garbage(64, '\x5a');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  storage::ShardOptions options;
  options.dir = shard_dir;
  options.read_only = true;
  absl::StatusOr<std::unique_ptr<storage::ShardStore>> shard = storage::ShardStore::Open(options);
  if (!shard.ok()) return shard.status();
  std::vector<uint64_t> unreadable;
  const uint64_t records = (*shard)->Head().next_index;
  for (uint64_t i = 0; i < records; ++i) {
    absl::StatusOr<storage::StoredRecord> record = (*shard)->Get(i);
    if (record.ok()) continue;
    if (!absl::IsDataLoss(record.status())) {
      return absl::InternalError(absl::StrCat("record ", i, ": ", record.status().ToString()));
    }
    unreadable.push_back(i);
  }
  if (unreadable.empty() || unreadable.size() == records) {
    return absl::FailedPreconditionError(absl::StrCat(
        largest, ": the damage left ", unreadable.size(), " of ", records, " records unreadable"));
  }
  return unreadable;
}

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_TESTING_CORRUPT_BLOCK_H_
