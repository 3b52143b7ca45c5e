// State-at latency (issue 4): the customer record and the model registry as of
// a random cut of a large shard, built from the newest snapshot at or before
// the cut versus folded from record 0.
//
//   build/bench/state_at_bench                     # builds a 1M-event shard first
//   PREDLOG_BENCH_STATE_EVENTS=100000 build/bench/state_at_bench
//
// The shard: ~1 KB prediction events; every 20th record an EntityChanged for
// one of 10,000 customers (5 changes each on the 1M shard, spread over the
// whole log); a model registration and a deploy every 50,000 records; a
// snapshot (RocksDB checkpoint) every 100,000 records.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "replay/state_at.h"
#include "storage/event_validation.h"
#include "storage/logging.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/temp_dir.h"

namespace predlog::replay {
namespace {

constexpr size_t kEventBytes = 1024;
constexpr uint64_t kCustomers = 10'000;
constexpr int64_t kEntityEvery = 20;
constexpr int64_t kRegistryEvery = 50'000;
constexpr int64_t kSnapshotEvery = 100'000;
constexpr int64_t kBatch = 1000;  // divides kSnapshotEvery: snapshots fall on batch ends

std::string CustomerId(uint64_t k) { return absl::StrCat("c", k); }

// Record i of the shard.
std::string Payload(int64_t i) {
  if (i % kEntityEvery == kEntityEvery - 1) {
    const uint64_t change = static_cast<uint64_t>(i / kEntityEvery);
    return testing::MakeEntityChange(
               "customer", CustomerId(change % kCustomers),
               {{"limit", static_cast<double>(change % 9973)}, {"score", 0.25 * (change % 7)}})
        .SerializeAsString();
  }
  if (i % kRegistryEvery == 1) {
    const std::string version = absl::StrCat("v", i / kRegistryEvery);
    return testing::MakeModelRegistered("credit-limit", version,
                                        storage::ToHex(storage::Sha256(version)))
        .SerializeAsString();
  }
  if (i % kRegistryEvery == 2) {
    predlog::v1::AuditEvent event;
    event.set_event_id(absl::StrCat("deploy-", i));
    event.set_actor("ml-platform");
    event.set_schema_version(storage::kSchemaVersion);
    auto* deploy = event.mutable_model_deployed();
    deploy->set_route("limits");
    deploy->mutable_model()->set_name("credit-limit");
    deploy->mutable_model()->set_version(absl::StrCat("v", i / kRegistryEvery));
    deploy->set_traffic_fraction(1.0);
    deploy->set_reason("promote");
    return event.SerializeAsString();
  }
  return testing::MakeSizedPredictionPayload(static_cast<uint64_t>(i), kEventBytes, kCustomers);
}

struct StateShard {
  testing::TempDir dir;
  std::unique_ptr<storage::ShardStore> store;
  int64_t events = 0;
};

StateShard& LargeShard() {
  static StateShard* shard = [] {
    auto* s = new StateShard();
    const char* env = std::getenv("PREDLOG_BENCH_STATE_EVENTS");
    s->events = env != nullptr ? std::atoll(env) : 1'000'000;
    storage::ShardOptions options;
    options.dir = s->dir.Sub("shard");
    auto store = storage::ShardStore::Open(options);
    PREDLOG_CHECK(store.ok()) << store.status();
    s->store = std::move(*store);
    const absl::Time start = absl::Now();
    std::vector<std::string> payloads;
    std::vector<storage::SourceMessage> messages;
    for (int64_t first = 0; first < s->events; first += kBatch) {
      payloads.clear();
      messages.clear();
      for (int64_t i = first; i < std::min(first + kBatch, s->events); ++i) {
        payloads.push_back(Payload(i));
      }
      for (size_t k = 0; k < payloads.size(); ++k) {
        messages.push_back(
            storage::SourceMessage{"bench", first + static_cast<int64_t>(k), payloads[k]});
      }
      auto result = s->store->ApplyBatch(messages);
      PREDLOG_CHECK(result.ok()) << result.status();
      for (const auto& m : result->messages) {
        PREDLOG_CHECK(m.outcome == storage::FoldOutcome::kApplied) << m.reason;
      }
      const uint64_t head = s->store->Head().next_index;
      if (head % kSnapshotEvery == 0) {
        auto snapshot = s->store->CreateSnapshot();
        PREDLOG_CHECK(snapshot.ok()) << snapshot.status();
      }
    }
    PREDLOG_LOG(INFO) << "state-at benchmark shard: " << s->events << " events, "
                      << s->events / kSnapshotEvery << " snapshots, built in "
                      << absl::FormatDuration(absl::Now() - start);
    return s;
  }();
  return *shard;
}

// The same pseudo-random sequence of (cut, customer) in every benchmark, so
// the runs with and without snapshots answer the same questions.
struct Questions {
  uint64_t x = 88172645463325252ull;
  uint64_t Next() {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return x;
  }
};

void SetCounters(benchmark::State& state, uint64_t folded, uint64_t from_snapshot) {
  const double n = static_cast<double>(state.iterations());
  state.counters["records_folded"] = static_cast<double>(folded) / n;
  state.counters["from_snapshot"] = static_cast<double>(from_snapshot) / n;
}

// Arg: StateAtOptions.use_snapshots.
void BM_StateAt_Entity(benchmark::State& state) {
  StateShard& shard = LargeShard();
  StateAtOptions options;
  options.use_snapshots = state.range(0) != 0;
  const StateAt state_at(options);
  Questions q;
  uint64_t folded = 0;
  uint64_t from_snapshot = 0;
  for (auto _ : state) {
    const uint64_t cut = q.Next() % static_cast<uint64_t>(shard.events + 1);
    const std::string id = CustomerId(q.Next() % kCustomers);
    auto at = state_at.Entity(*shard.store, "customer", id, cut);
    PREDLOG_CHECK(at.ok()) << at.status();
    benchmark::DoNotOptimize(at->exists);
    folded += at->stats.records_folded;
    from_snapshot += at->stats.snapshot_index > 0 ? 1 : 0;
  }
  SetCounters(state, folded, from_snapshot);
}
// Fixed iterations: a fold from 0 takes seconds, and both variants then
// answer exactly the same 20 questions.
BENCHMARK(BM_StateAt_Entity)
    ->ArgName("use_snapshots")
    ->Arg(1)
    ->Arg(0)
    ->Iterations(20)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Arg: StateAtOptions.use_snapshots. Every record is parsed (no byte filter
// applies to "any registry change"), so this is the expensive one.
void BM_StateAt_Registry(benchmark::State& state) {
  StateShard& shard = LargeShard();
  StateAtOptions options;
  options.use_snapshots = state.range(0) != 0;
  const StateAt state_at(options);
  Questions q;
  uint64_t folded = 0;
  uint64_t from_snapshot = 0;
  for (auto _ : state) {
    const uint64_t cut = q.Next() % static_cast<uint64_t>(shard.events + 1);
    q.Next();  // keep the cuts in step with BM_StateAt_Entity's
    auto at = state_at.Registry(*shard.store, cut);
    PREDLOG_CHECK(at.ok()) << at.status();
    benchmark::DoNotOptimize(at->registry.models.size());
    folded += at->stats.records_folded;
    from_snapshot += at->stats.snapshot_index > 0 ? 1 : 0;
  }
  SetCounters(state, folded, from_snapshot);
}
BENCHMARK(BM_StateAt_Registry)
    ->ArgName("use_snapshots")
    ->Arg(1)
    ->Arg(0)
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace predlog::replay

BENCHMARK_MAIN();
