// Child process of the crash test: opens the shard at argv[1] and folds the
// stream of seed argv[2] from up to 500 messages before the shard's stored
// source position (so the shard sees redeliveries),
// in random batch sizes, until killed (or until argv[3] messages in total).
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <random>

#include "storage/shard_store.h"
#include "tests/storage/shard_model.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: shard_crash_writer SHARD_DIR SEED TOTAL\n";
    return 2;
  }
  const uint64_t seed = std::strtoull(argv[2], nullptr, 10);
  const int64_t total = std::strtoll(argv[3], nullptr, 10);
  predlog::storage::ShardOptions options;
  options.dir = argv[1];
  auto store = predlog::storage::ShardStore::Open(options);
  if (!store.ok()) {
    std::cerr << store.status() << "\n";
    return 1;
  }
  const auto head = (*store)->Head();
  std::mt19937_64 rng(seed ^ static_cast<uint64_t>(getpid()));
  // Like a consumer whose committed Kafka offset lags the shard, start up to
  // 500 messages early: the shard must recognise those as redeliveries.
  const int64_t resume = head.last_source ? head.last_source->offset + 1 : 0;
  int64_t offset = std::max<int64_t>(0, resume - static_cast<int64_t>(rng() % 500));
  // Signal readiness so the parent's kill lands in the folding loop.
  std::cout << "ready " << offset << std::endl;
  while (offset < total) {
    const int64_t n = std::min<int64_t>(1 + rng() % 300, total - offset);
    std::vector<std::string> payloads;
    for (int64_t i = 0; i < n; ++i)
      payloads.push_back(predlog::testing::StreamPayload(seed, offset + i));
    std::vector<predlog::storage::SourceMessage> messages;
    for (int64_t i = 0; i < n; ++i) messages.push_back({"inc", offset + i, payloads[i]});
    auto result = (*store)->ApplyBatch(messages);
    if (!result.ok()) {
      std::cerr << result.status() << "\n";
      return 1;
    }
    offset += n;
  }
  return 0;
}
