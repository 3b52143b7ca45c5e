// The predlog side of bench/compare's disk figure: opens each shard of a
// stopped predlogd's data directory (<data_dir>/shards/<name>), compacts it
// (storage::ShardStore::Compact), and prints the bytes of its RocksDB files
// over the records it holds. Snapshots are not counted (checkpoints share the
// live files until compaction rewrites them).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "storage/shard_store.h"

ABSL_FLAG(std::string, data_dir, "", "A stopped predlogd's --data_dir (required).");

namespace fs = std::filesystem;

namespace {

uint64_t DirBytes(const fs::path& dir) {
  uint64_t bytes = 0;
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) bytes += entry.file_size();
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const fs::path shards = fs::path(absl::GetFlag(FLAGS_data_dir)) / "shards";
  std::error_code ec;
  if (!fs::is_directory(shards, ec)) {
    std::cerr << "shard_disk: --data_dir: no shards directory at " << shards << "\n";
    return 1;
  }
  uint64_t before = 0, after = 0, records = 0;
  for (const fs::directory_entry& entry : fs::directory_iterator(shards)) {
    if (!entry.is_directory()) continue;
    before += DirBytes(entry.path() / "db");
    predlog::storage::ShardOptions options;
    options.dir = entry.path().string();
    options.name = entry.path().filename().string();
    options.min_free_bytes = 0;  // measuring, not writing
    auto shard = predlog::storage::ShardStore::Open(options);
    absl::Status status = shard.ok() ? (*shard)->Compact() : shard.status();
    if (!status.ok()) {
      std::cerr << "shard_disk: " << status << "\n";
      return 1;
    }
    records += (*shard)->Head().next_index;
    shard->reset();  // closed, so its files are final
    after += DirBytes(entry.path() / "db");
  }
  if (records == 0) {
    std::cerr << "shard_disk: the shards hold no records\n";
    return 1;
  }
  std::printf("records=%llu bytes_before=%llu bytes=%llu bytes_per_event=%.0f\n",
              static_cast<unsigned long long>(records), static_cast<unsigned long long>(before),
              static_cast<unsigned long long>(after),
              static_cast<double>(after) / static_cast<double>(records));
  return 0;
}
