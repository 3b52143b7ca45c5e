// Shard store benchmarks: fold throughput against a raw RocksDB baseline, the
// per-event cost breakdown, and read latency on a large shard.
//
//   build/bench/shard_bench --benchmark_filter='Fold|Raw|Cost'   # FoldInGroup: cross-shard ids
//   build/bench/shard_bench --benchmark_filter='Read'   # builds a 1M-event shard first
//
// PREDLOG_BENCH_READ_EVENTS overrides the size of the read benchmark's shard.
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "storage/key_codec.h"
#include "storage/logging.h"
#include "storage/sha256.h"
#include "storage/shard_group.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

constexpr size_t kEventBytes = 1024;
constexpr uint64_t kSubjects = 10'000;
// Datasets each prediction read (PredictionLogged.data_sources): one of 12
// monthly applications@ versions and one bureau table, so the fold writes
// its data-source index as a service that records lineage would make it.
constexpr int kDataSources = 2;
// Events folded per measured run of the throughput benchmarks.
constexpr int64_t kEventsPerRun = 200'000;

// Unique ~1 KB prediction events, generated once.
const std::vector<std::string>& Payloads() {
  static const auto* payloads = [] {
    auto* v = new std::vector<std::string>();
    v->reserve(kEventsPerRun);
    for (int64_t i = 0; i < kEventsPerRun; ++i) {
      v->push_back(testing::MakeSizedPredictionPayload(i, kEventBytes, kSubjects, kDataSources));
    }
    return v;
  }();
  return *payloads;
}

void SetCounters(benchmark::State& state, int64_t events) {
  state.SetItemsProcessed(events);
  state.SetBytesProcessed(events * static_cast<int64_t>(kEventBytes));
  state.counters["ns_per_event"] = benchmark::Counter(
      static_cast<double>(events), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// ShardStore::ApplyBatch, WAL on, fsync off (ShardOptions defaults).
void BM_Fold(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const auto& payloads = Payloads();
  int64_t events = 0;
  for (auto _ : state) {
    state.PauseTiming();
    testing::TempDir dir;
    ShardOptions options;
    options.dir = dir.Sub("shard");
    auto store = ShardStore::Open(options);
    PREDLOG_CHECK(store.ok()) << store.status();
    std::vector<SourceMessage> messages;
    messages.reserve(batch);
    state.ResumeTiming();
    for (int64_t start = 0; start < kEventsPerRun; start += batch) {
      messages.clear();
      for (int64_t i = start; i < std::min(start + batch, kEventsPerRun); ++i) {
        messages.push_back(SourceMessage{"bench", i, payloads[i]});
      }
      auto result = (*store)->ApplyBatch(messages);
      PREDLOG_CHECK(result.ok()) << result.status();
    }
    events += kEventsPerRun;
    state.PauseTiming();
    store->reset();
    state.ResumeTiming();
  }
  SetCounters(state, events);
}
BENCHMARK(BM_Fold)->Arg(1)->Arg(500)->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(3);

// BM_Fold/500 for shard 0 of a group of `range(0)` shards (storage/shard_group.h):
// every new prediction_id is also looked up in the other shards, which hold
// kEventsPerRun other events each (flushed and in their memtables). The
// difference to BM_Fold/500 is what one record per id across shards costs.
void BM_FoldInGroup(benchmark::State& state) {
  const int shards = static_cast<int>(state.range(0));
  const auto& payloads = Payloads();
  int64_t events = 0;
  for (auto _ : state) {
    state.PauseTiming();
    testing::TempDir dir;
    ShardGroup group(shards, [](absl::string_view) { return 0; });
    std::vector<std::unique_ptr<ShardStore>> stores;
    std::vector<std::string> peer_payloads;
    for (int p = 0; p < shards; ++p) {
      ShardOptions options;
      options.dir = dir.Sub("shard-" + std::to_string(p));
      options.group = &group;
      options.partition = p;
      auto store = ShardStore::Open(options);
      PREDLOG_CHECK(store.ok()) << store.status();
      stores.push_back(std::move(*store));
      if (p == 0) continue;
      std::vector<SourceMessage> messages;
      for (int64_t start = 0; start < kEventsPerRun; start += 500) {
        peer_payloads.clear();
        for (int64_t i = start; i < start + 500; ++i) {
          peer_payloads.push_back(testing::MakeSizedPredictionPayload(
              static_cast<uint64_t>(p) * 10'000'000 + static_cast<uint64_t>(i), kEventBytes,
              kSubjects, kDataSources));
        }
        messages.clear();
        for (int64_t i = 0; i < 500; ++i) {
          messages.push_back(SourceMessage{"bench", start + i, peer_payloads[i]});
        }
        PREDLOG_CHECK(stores.back()->ApplyBatch(messages).ok());
      }
    }
    std::vector<SourceMessage> messages;
    state.ResumeTiming();
    for (int64_t start = 0; start < kEventsPerRun; start += 500) {
      messages.clear();
      for (int64_t i = start; i < std::min<int64_t>(start + 500, kEventsPerRun); ++i) {
        messages.push_back(SourceMessage{"bench", i, payloads[i]});
      }
      auto result = stores[0]->ApplyBatch(messages);
      PREDLOG_CHECK(result.ok()) << result.status();
    }
    events += kEventsPerRun;
    state.PauseTiming();
    stores.clear();
    state.ResumeTiming();
  }
  SetCounters(state, events);
}
BENCHMARK(BM_FoldInGroup)->Arg(4)->Unit(benchmark::kMillisecond)->Iterations(1)->Repetitions(3);

// The raw baseline: the same bytes Put once per event under an 8-byte key,
// no indexes, no hashing, no parsing; same RocksDB version, WAL on, fsync off.
void BM_RawPut(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const auto& payloads = Payloads();
  int64_t events = 0;
  for (auto _ : state) {
    state.PauseTiming();
    testing::TempDir dir;
    rocksdb::Options options;
    options.create_if_missing = true;
    options.max_background_jobs = 2;
    rocksdb::DB* raw = nullptr;
    PREDLOG_CHECK(rocksdb::DB::Open(options, dir.Sub("raw"), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteBatch wb;
    std::string key;
    state.ResumeTiming();
    for (int64_t start = 0; start < kEventsPerRun; start += batch) {
      wb.Clear();
      for (int64_t i = start; i < std::min(start + batch, kEventsPerRun); ++i) {
        key.clear();
        AppendU64(&key, static_cast<uint64_t>(i));
        wb.Put(key, payloads[i]);
      }
      PREDLOG_CHECK(db->Write(rocksdb::WriteOptions(), &wb).ok());
    }
    events += kEventsPerRun;
    state.PauseTiming();
    db.reset();
    state.ResumeTiming();
  }
  SetCounters(state, events);
}
BENCHMARK(BM_RawPut)
    ->Arg(1)
    ->Arg(500)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->Repetitions(3);

// Per-event cost breakdown of the fold, step by step.
void BM_Cost_Decode(benchmark::State& state) {
  const auto& payloads = Payloads();
  predlog::v1::AuditEvent event;
  size_t i = 0;
  for (auto _ : state) {
    const std::string& p = payloads[i++ % payloads.size()];
    benchmark::DoNotOptimize(event.ParseFromArray(p.data(), static_cast<int>(p.size())));
  }
  SetCounters(state, state.iterations());
}
BENCHMARK(BM_Cost_Decode);

// Decoding as the fold does: into an arena reset before each message.
// `cold` walks all payloads (each read from memory, as in the fold); otherwise
// one payload over and over, cache warm.
void DecodeOnArena(benchmark::State& state, bool cold) {
  const auto& payloads = Payloads();
  static char block[64 << 10];
  google::protobuf::ArenaOptions arena_options;
  arena_options.initial_block = block;
  arena_options.initial_block_size = sizeof(block);
  google::protobuf::Arena arena(arena_options);
  size_t i = 0;
  for (auto _ : state) {
    const std::string& p = payloads[cold ? i++ % payloads.size() : 0];
    arena.Reset();
    auto* event = google::protobuf::Arena::CreateMessage<predlog::v1::AuditEvent>(&arena);
    benchmark::DoNotOptimize(event->ParseFromArray(p.data(), static_cast<int>(p.size())));
  }
  SetCounters(state, state.iterations());
}
void BM_Cost_DecodeArena(benchmark::State& state) { DecodeOnArena(state, /*cold=*/true); }
BENCHMARK(BM_Cost_DecodeArena);
void BM_Cost_DecodeArenaWarm(benchmark::State& state) { DecodeOnArena(state, /*cold=*/false); }
BENCHMARK(BM_Cost_DecodeArenaWarm);

void BM_Cost_Validate(benchmark::State& state) {
  predlog::v1::AuditEvent event;
  event.ParseFromString(Payloads()[0]);
  for (auto _ : state) benchmark::DoNotOptimize(ValidateEvent(event));
  SetCounters(state, state.iterations());
}
BENCHMARK(BM_Cost_Validate);

void BM_Cost_HashLeafAndChain(benchmark::State& state) {
  const auto& payloads = Payloads();
  Digest chain = kChainGenesis;
  size_t i = 0;
  for (auto _ : state) {
    chain = ChainNext(chain, Sha256(payloads[i++ % payloads.size()]));
    benchmark::DoNotOptimize(chain);
  }
  SetCounters(state, state.iterations());
}
BENCHMARK(BM_Cost_HashLeafAndChain);

void BM_Cost_IndexKeys(benchmark::State& state) {
  predlog::v1::AuditEvent event;
  event.ParseFromString(Payloads()[0]);
  const auto& p = event.prediction_logged();
  std::string key;
  uint64_t index = 0;
  for (auto _ : state) {
    const std::string index_key = IndexKey(index++);
    key.clear();
    AppendLengthPrefixed(&key, p.subject_id());
    AppendTime(&key, absl::FromUnixSeconds(p.served_at().seconds()));
    key.append(index_key);
    benchmark::DoNotOptimize(key);
    key.clear();
    AppendLengthPrefixed(&key, p.model().name());
    AppendLengthPrefixed(&key, p.model().version());
    AppendTime(&key, absl::FromUnixSeconds(p.served_at().seconds()));
    key.append(index_key);
    benchmark::DoNotOptimize(key);
    key.clear();
    AppendTime(&key, absl::FromUnixSeconds(event.recorded_at().seconds()));
    key.append(index_key);
    benchmark::DoNotOptimize(key);
  }
  SetCounters(state, state.iterations());
}
BENCHMARK(BM_Cost_IndexKeys);

// --- Reads on a large shard --------------------------------------------------

struct ReadShard {
  testing::TempDir dir;
  std::unique_ptr<ShardStore> store;
  int64_t events = 0;
};

ReadShard& LargeShard() {
  static ReadShard* shard = [] {
    auto* s = new ReadShard();
    const char* env = std::getenv("PREDLOG_BENCH_READ_EVENTS");
    s->events = env != nullptr ? std::atoll(env) : 1'000'000;
    ShardOptions options;
    options.dir = s->dir.Sub("shard");
    auto store = ShardStore::Open(options);
    PREDLOG_CHECK(store.ok()) << store.status();
    s->store = std::move(*store);
    std::vector<std::string> payloads;
    std::vector<SourceMessage> messages;
    for (int64_t start = 0; start < s->events; start += 1000) {
      payloads.clear();
      messages.clear();
      for (int64_t i = start; i < std::min<int64_t>(start + 1000, s->events); ++i) {
        payloads.push_back(
            testing::MakeSizedPredictionPayload(i, kEventBytes, kSubjects, kDataSources));
      }
      for (size_t k = 0; k < payloads.size(); ++k) {
        messages.push_back(SourceMessage{"bench", start + static_cast<int64_t>(k), payloads[k]});
      }
      auto result = s->store->ApplyBatch(messages);
      PREDLOG_CHECK(result.ok()) << result.status();
    }
    PREDLOG_LOG(INFO) << "read benchmark shard: " << s->events << " events";
    return s;
  }();
  return *shard;
}

void BM_Read_GetByPredictionId(benchmark::State& state) {
  ReadShard& shard = LargeShard();
  uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    auto rec =
        shard.store->GetByPredictionId(absl::StrCat("p", x % static_cast<uint64_t>(shard.events)));
    PREDLOG_CHECK(rec.ok()) << rec.status();
    benchmark::DoNotOptimize(rec->payload.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Read_GetByPredictionId)->Unit(benchmark::kMicrosecond);

// A whole subject trail: events / kSubjects records (100 on the 1M shard).
void BM_Read_ScanSubjectTrail(benchmark::State& state) {
  ReadShard& shard = LargeShard();
  uint64_t x = 88172645463325252ull;
  int64_t records = 0;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    auto page = shard.store->ScanSubject(absl::StrCat("s", x % kSubjects), TimeRange{}, "", 1000);
    PREDLOG_CHECK(page.ok()) << page.status();
    records += static_cast<int64_t>(page->records.size());
  }
  state.counters["records_per_trail"] =
      static_cast<double>(records) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Read_ScanSubjectTrail)->Unit(benchmark::kMicrosecond);

// What a sparse export pays per record on top of reading it: the range
// proof of one record against the whole tree (~2 log2(n) node reads).
void BM_Proof_OneRecordRange(benchmark::State& state) {
  ReadShard& shard = LargeShard();
  const uint64_t size = static_cast<uint64_t>(shard.events);
  uint64_t x = 88172645463325252ull;
  size_t hashes = 0;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const uint64_t index = x % size;
    auto proof = shard.store->RangeProof(index, index + 1, size);
    PREDLOG_CHECK(proof.ok()) << proof.status();
    hashes += proof->size();
  }
  state.counters["hashes_per_proof"] =
      static_cast<double>(hashes) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Proof_OneRecordRange)->Unit(benchmark::kMicrosecond);

// The same for a sparse export's runs in log order (one record in every 37,
// as one model version's predictions among others'), with the node cache an
// export keeps per shard: nearby runs share most nodes.
void BM_Proof_SparseRunsInLogOrder(benchmark::State& state) {
  ReadShard& shard = LargeShard();
  const uint64_t size = static_cast<uint64_t>(shard.events);
  MerkleNodeCache cache;
  uint64_t index = 0;
  for (auto _ : state) {
    index = (index + 37) % size;
    if (index < 37) cache.Clear();
    auto proof = shard.store->RangeProof(index, index + 1, size, &cache);
    PREDLOG_CHECK(proof.ok()) << proof.status();
    benchmark::DoNotOptimize(proof->data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Proof_SparseRunsInLogOrder)->Unit(benchmark::kMicrosecond);

// A consistency proof between two random sizes (what verify-consistency asks).
void BM_Proof_Consistency(benchmark::State& state) {
  ReadShard& shard = LargeShard();
  const uint64_t size = static_cast<uint64_t>(shard.events);
  uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const uint64_t old_size = 1 + x % (size - 1);
    auto proof = shard.store->ConsistencyProof(old_size, size);
    PREDLOG_CHECK(proof.ok()) << proof.status();
    benchmark::DoNotOptimize(proof->data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Proof_Consistency)->Unit(benchmark::kMicrosecond);

// Signing a checkpoint of the whole log (root, Ed25519, a synced meta Put):
// what the writer pays every --checkpoint_every_events records and an
// export per shard. Each iteration adds one record so a new size is signed.
void BM_SignCheckpoint(benchmark::State& state) {
  ReadShard& shard = LargeShard();
  auto pair = GenerateNoteKey("bench");
  PREDLOG_CHECK(pair.ok()) << pair.status();
  auto signer = NoteSigner::Create(pair->signer_key);
  PREDLOG_CHECK(signer.ok()) << signer.status();
  int64_t next = shard.events;
  for (auto _ : state) {
    state.PauseTiming();
    const std::string payload =
        testing::MakeSizedPredictionPayload(next, kEventBytes, kSubjects, kDataSources);
    const SourceMessage message{"bench", next, payload};
    auto applied = shard.store->ApplyBatch({&message, 1});
    PREDLOG_CHECK(applied.ok()) << applied.status();
    ++next;
    state.ResumeTiming();
    auto note = shard.store->SignCheckpoint(**signer, "bench/predlog.events-0");
    PREDLOG_CHECK(note.ok()) << note.status();
  }
  shard.events = next;
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SignCheckpoint)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace predlog::storage

BENCHMARK_MAIN();
