// The raw limit of bench/compare: what RocksDB alone does with the same event
// bytes on this disk, with none of predlog's work (no decode, no validation,
// no hash chain, no indexes, no gRPC). One RocksDB per shard, one writer
// thread each, WriteBatches of --group events (the group commit size predlog
// reached in the same run), each written with WriteOptions::sync (one WAL
// fsync per group). Keys are 8-byte big-endian indexes.
//
// Prints events/s and the CPU per event of this process.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "bench/measure.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "tests/testing/events.h"

using ::predlog::bench::ProcessCpuSeconds;

ABSL_FLAG(std::string, dir, "", "An empty directory for the databases (required).");
ABSL_FLAG(int64_t, events, 100000, "Events to write in total.");
ABSL_FLAG(int, shards, 4, "Databases, one writer thread each.");
ABSL_FLAG(int, group, 100, "Events per WriteBatch (one WAL fsync each).");
ABSL_FLAG(int, event_bytes, 1024, "Approximate serialized event size (as loadgen).");
ABSL_FLAG(int64_t, subjects, 50000, "Distinct subjects (as loadgen).");

namespace {

std::string BigEndianKey(uint64_t index) {
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i, index >>= 8) key[i] = static_cast<char>(index & 0xff);
  return key;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  const int shards = absl::GetFlag(FLAGS_shards);
  const int group = std::max(1, absl::GetFlag(FLAGS_group));
  const int64_t events = absl::GetFlag(FLAGS_events);
  if (dir.empty() || shards < 1) {
    std::cerr << "raw_rocksdb: --dir is required and --shards must be >= 1\n";
    return 2;
  }
  std::vector<std::string> payloads;
  payloads.reserve(static_cast<size_t>(events));
  for (int64_t n = 0; n < events; ++n) {
    payloads.push_back(predlog::testing::MakeSizedPredictionPayload(
        static_cast<uint64_t>(n), static_cast<size_t>(absl::GetFlag(FLAGS_event_bytes)),
        static_cast<uint64_t>(absl::GetFlag(FLAGS_subjects))));
  }
  std::vector<std::unique_ptr<rocksdb::DB>> dbs;
  for (int s = 0; s < shards; ++s) {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.max_background_jobs = 2;  // as a predlog shard
    rocksdb::DB* db = nullptr;
    const std::string path = absl::StrCat(dir, "/", s);
    std::filesystem::create_directories(path);
    const rocksdb::Status status = rocksdb::DB::Open(options, path, &db);
    if (!status.ok()) {
      std::cerr << "raw_rocksdb: open " << path << ": " << status.ToString() << "\n";
      return 1;
    }
    dbs.emplace_back(db);
  }
  const double cpu_before = ProcessCpuSeconds();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> writers;
  std::atomic<bool> failed{false};
  for (int s = 0; s < shards; ++s) {
    writers.emplace_back([&, s] {
      rocksdb::WriteOptions write;
      write.sync = true;
      rocksdb::WriteBatch batch;
      uint64_t index = 0;
      auto commit = [&] {
        if (!dbs[s]->Write(write, &batch).ok()) failed = true;
        batch.Clear();
      };
      for (int64_t n = s; n < events; n += shards) {
        batch.Put(BigEndianKey(index++), payloads[static_cast<size_t>(n)]);
        if (batch.Count() == static_cast<uint32_t>(group)) commit();
      }
      if (batch.Count() > 0) commit();
    });
  }
  for (std::thread& t : writers) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = ProcessCpuSeconds() - cpu_before;
  if (failed) {
    std::cerr << "raw_rocksdb: a write failed\n";
    return 1;
  }
  std::printf("events=%lld group=%d seconds=%.2f events_per_s=%.0f cpu_us_per_event=%.1f\n",
              static_cast<long long>(events), group, seconds, static_cast<double>(events) / seconds,
              cpu * 1e6 / static_cast<double>(events));
  return 0;
}
