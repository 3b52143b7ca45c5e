// Export benchmarks: TrailWriter::Add lines/s for JSON lines and CSV, the JSON
// line renderers alone (fast emitter vs protobuf's printer), and VerifyExport
// records/s. ~1 KB prediction events (30 features), as the export target
// (>= 200k events/s for `predlog export` to JSONL) assumes.
//
//   build/bench/export_bench
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "services/export/trail_export.h"
#include "services/export/trail_json.h"
#include "storage/logging.h"
#include "storage/sha256.h"
#include "tests/testing/events.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

constexpr size_t kEventBytes = 1024;
constexpr int64_t kRecords = 100'000;

// A contiguous shard of ~1 KB prediction events, chained from genesis.
const std::vector<predlog::v1::ExportedRecord>& Records() {
  static const auto* records = [] {
    auto* v = new std::vector<predlog::v1::ExportedRecord>();
    v->reserve(kRecords);
    storage::Digest chain = storage::kChainGenesis;
    for (int64_t i = 0; i < kRecords; ++i) {
      predlog::v1::ExportedRecord r;
      r.set_shard("predlog.events-0");
      r.set_index(static_cast<uint64_t>(i));
      r.set_event_bytes(testing::MakeSizedPredictionPayload(i, kEventBytes, 10'000));
      const storage::Digest leaf = storage::Sha256(r.event_bytes());
      r.set_leaf_sha256(storage::ToHex(leaf));
      r.set_prev_chain_sha256(storage::ToHex(chain));
      chain = storage::ChainNext(chain, leaf);
      r.set_chain_sha256(storage::ToHex(chain));
      v->push_back(std::move(r));
    }
    return v;
  }();
  return *records;
}

void SetRate(benchmark::State& state, int64_t items) {
  state.SetItemsProcessed(items);
  state.counters["ns_per_record"] = benchmark::Counter(
      static_cast<double>(items), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// TrailWriter::Add for every record, then Finish (fsync included).
void BM_WriterAdd(benchmark::State& state) {
  const ExportFormat format = state.range(0) == 0 ? ExportFormat::kJsonl : ExportFormat::kCsv;
  const auto& records = Records();
  testing::TempDir dir;
  int64_t items = 0;
  for (auto _ : state) {
    auto writer = TrailWriter::Create(dir.Sub("trail"), format);
    PREDLOG_CHECK(writer.ok()) << writer.status();
    for (const auto& r : records) {
      const absl::Status s = (*writer)->Add(r);
      PREDLOG_CHECK(s.ok()) << s;
    }
    auto manifest = (*writer)->Finish({}, dir.Sub("trail.manifest.json"));
    PREDLOG_CHECK(manifest.ok()) << manifest.status();
    items += static_cast<int64_t>(records.size());
  }
  SetRate(state, items);
  state.SetLabel(format == ExportFormat::kJsonl ? "jsonl" : "csv");
}
BENCHMARK(BM_WriterAdd)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

// TrailWriter::AddBatch (JSON lines) with the server's 1000-record batches:
// rendering on the writer's worker threads. The batches are copied from the
// records inside the timing, as the CLI gets them fresh from the stream.
void BM_WriterAddBatch(benchmark::State& state) {
  const auto& records = Records();
  testing::TempDir dir;
  int64_t items = 0;
  for (auto _ : state) {
    auto writer = TrailWriter::Create(dir.Sub("trail"), ExportFormat::kJsonl);
    PREDLOG_CHECK(writer.ok()) << writer.status();
    for (size_t i = 0; i < records.size(); i += 1000) {
      predlog::v1::ExportBatch batch;
      for (size_t j = i; j < std::min(records.size(), i + 1000); ++j) {
        *batch.add_records() = records[j];
      }
      const absl::Status s = (*writer)->AddBatch(std::move(batch));
      PREDLOG_CHECK(s.ok()) << s;
    }
    auto manifest = (*writer)->Finish({}, dir.Sub("trail.manifest.json"));
    PREDLOG_CHECK(manifest.ok()) << manifest.status();
    items += static_cast<int64_t>(records.size());
  }
  SetRate(state, items);
}
BENCHMARK(BM_WriterAddBatch)->Unit(benchmark::kMillisecond)->UseRealTime();

// One JSON line: the fast emitter (Arg 0) or protobuf's printer (Arg 1).
void BM_RenderLine(benchmark::State& state) {
  const auto& records = Records();
  std::vector<predlog::v1::AuditEvent> events(1000);
  for (size_t i = 0; i < events.size(); ++i) events[i].ParseFromString(records[i].event_bytes());
  std::string out;
  size_t i = 0;
  for (auto _ : state) {
    const auto& r = records[i];
    TrailLineFields fields;
    fields.shard = r.shard();
    fields.index = r.index();
    fields.event = &events[i];
    fields.leaf_sha256 = r.leaf_sha256();
    fields.prev_chain_sha256 = r.prev_chain_sha256();
    fields.chain_sha256 = r.chain_sha256();
    fields.event_bytes = r.event_bytes();
    out.clear();
    if (state.range(0) == 0) {
      AppendTrailLineJsonFast(fields, &out);
    } else {
      out = *TrailLineJsonReference(fields);
    }
    benchmark::DoNotOptimize(out.data());
    i = (i + 1) % events.size();
  }
  SetRate(state, state.iterations());
  state.SetLabel(state.range(0) == 0 ? "fast" : "protobuf");
}
BENCHMARK(BM_RenderLine)->Arg(0)->Arg(1);

void BM_Verify(benchmark::State& state) {
  const ExportFormat format = state.range(0) == 0 ? ExportFormat::kJsonl : ExportFormat::kCsv;
  const auto& records = Records();
  testing::TempDir dir;
  {
    auto writer = TrailWriter::Create(dir.Sub("trail"), format);
    PREDLOG_CHECK(writer.ok()) << writer.status();
    for (const auto& r : records) PREDLOG_CHECK((*writer)->Add(r).ok());
    PREDLOG_CHECK((*writer)->Finish({}, dir.Sub("trail.manifest.json")).ok());
  }
  int64_t items = 0;
  for (auto _ : state) {
    auto v = VerifyExport("", dir.Sub("trail.manifest.json"));
    PREDLOG_CHECK(v.ok() && v->ok) << (v.ok() ? v->failure : v.status().ToString());
    items += static_cast<int64_t>(v->records_checked);
  }
  SetRate(state, items);
  state.SetLabel(format == ExportFormat::kJsonl ? "jsonl" : "csv");
}
BENCHMARK(BM_Verify)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace predlog::services

BENCHMARK_MAIN();
