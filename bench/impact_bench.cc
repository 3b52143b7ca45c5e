// GetImpact on a large log (issue 15): 1M predictions of 20 model versions
// over 4 events shards, beneath a five-level dataset graph in the registry
// shard, answered in-process by replay::Replayer (no gRPC), as predlogd's
// handler calls it.
//
//   build/bench/impact_bench                        # 1M predictions, ~1 KB each
//   build/bench/impact_bench --predictions=100000
//   build/bench/impact_bench --extra_datasets=10000  # and a registry of 10,000 more datasets
//
// The graph: raw-0, raw-1 -> clean -> features-0, features-1 -> train-0..4
// (train-k from features-(k % 2)) -> model m@v<j> for j in 0..19 trained on
// train-(j % 5). Prediction i is made by model m@v<i % 20> and reads
// features-(i % 2) (PredictionLogged.data_sources). So the impact of raw-0
// is every prediction (20 models), of train-0 a fifth (4 models), of
// features-1 half the models' predictions plus those of other models that
// read features-1.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/measure.h"
#include "replay/replayer.h"
#include "storage/event_validation.h"
#include "storage/sha256.h"
#include "storage/shard_set.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/temp_dir.h"

ABSL_FLAG(int64_t, predictions, 1'000'000, "predictions in the log");
ABSL_FLAG(int, repeats, 5, "calls per measured question (the median is reported)");
ABSL_FLAG(int, extra_datasets, 0,
          "unrelated datasets registered beside the graph (chains of 10), to measure what a "
          "large registry costs each call (the graph is built from the registry per call)");

namespace predlog::bench {
namespace {

constexpr int kShards = 4;
constexpr int kModels = 20;
constexpr size_t kEventBytes = 1024;
constexpr uint64_t kSubjects = 50'000;
constexpr int64_t kBatch = 1000;

predlog::v1::DatasetRef Ref(const std::string& name) {
  predlog::v1::DatasetRef ref;
  ref.set_name(name);
  ref.set_version("2026-10");
  ref.set_digest(storage::ToHex(storage::Sha256(name)));
  return ref;
}

predlog::v1::AuditEvent Envelope(const std::string& id) {
  predlog::v1::AuditEvent event;
  event.set_event_id(id);
  event.set_actor("ml-platform");
  event.set_schema_version(storage::kSchemaVersion);
  return event;
}

std::vector<std::string> RegistryPayloads() {
  std::vector<std::string> out;
  auto dataset = [&](const std::string& name, const std::vector<std::string>& parents) {
    predlog::v1::AuditEvent event = Envelope("ds-" + name);
    *event.mutable_dataset_registered()->mutable_dataset() = Ref(name);
    for (const std::string& p : parents) {
      *event.mutable_dataset_registered()->add_derived_from() = Ref(p);
    }
    out.push_back(event.SerializeAsString());
  };
  dataset("raw-0", {});
  dataset("raw-1", {});
  dataset("clean", {"raw-0", "raw-1"});
  dataset("features-0", {"clean"});
  dataset("features-1", {"clean"});
  for (int k = 0; k < 5; ++k)
    dataset(absl::StrCat("train-", k), {absl::StrCat("features-", k % 2)});
  for (int e = 0; e < absl::GetFlag(FLAGS_extra_datasets); ++e) {
    dataset(absl::StrCat("other-", e),
            e % 10 == 0 ? std::vector<std::string>{}
                        : std::vector<std::string>{absl::StrCat("other-", e - 1)});
  }
  for (int j = 0; j < kModels; ++j) {
    const std::string version = absl::StrCat("v", j);
    predlog::v1::AuditEvent event =
        testing::MakeModelRegistered("m", version, storage::ToHex(storage::Sha256(version)));
    *event.mutable_model_registered()->mutable_provenance()->add_datasets() =
        Ref(absl::StrCat("train-", j % 5));
    out.push_back(event.SerializeAsString());
  }
  return out;
}

std::string PredictionPayload(int64_t i) {
  predlog::v1::AuditEvent event;
  const std::string bytes =
      testing::MakeSizedPredictionPayload(static_cast<uint64_t>(i), kEventBytes, kSubjects);
  event.ParseFromString(bytes);
  predlog::v1::PredictionLogged* p = event.mutable_prediction_logged();
  p->mutable_model()->set_name("m");
  p->mutable_model()->set_version(absl::StrCat("v", i % kModels));
  p->mutable_model()->clear_artifact_sha256();
  p->clear_data_sources();
  *p->add_data_sources() = Ref(absl::StrCat("features-", i % 2));
  return event.SerializeAsString();
}

absl::Status Fold(storage::ShardStore& shard, const std::vector<std::string>& payloads) {
  std::vector<storage::SourceMessage> messages;
  for (const std::string& payload : payloads) {
    storage::SourceMessage m;
    m.direct = true;
    m.payload = payload;
    messages.push_back(m);
  }
  return shard.ApplyBatch(messages).status();
}

int Main() {
  const int64_t predictions = absl::GetFlag(FLAGS_predictions);
  const int repeats = absl::GetFlag(FLAGS_repeats);
  testing::TempDir dir;
  std::vector<std::unique_ptr<storage::ShardStore>> shards;
  for (int s = 0; s <= kShards; ++s) {
    storage::ShardOptions options;
    options.dir = dir.Sub(s < kShards ? absl::StrCat("events-", s) : "registry");
    options.name =
        s < kShards ? absl::StrCat("predlog.events-", s) : std::string("predlog.registry-0");
    options.min_free_bytes = 0;
    absl::StatusOr<std::unique_ptr<storage::ShardStore>> shard = storage::ShardStore::Open(options);
    if (!shard.ok()) {
      std::fprintf(stderr, "open: %s\n", shard.status().ToString().c_str());
      return 1;
    }
    shards.push_back(*std::move(shard));
  }
  if (absl::Status s = Fold(*shards[kShards], RegistryPayloads()); !s.ok()) {
    std::fprintf(stderr, "registry: %s\n", s.ToString().c_str());
    return 1;
  }
  const absl::Time build_start = absl::Now();
  for (int64_t first = 0; first < predictions; first += kBatch * kShards) {
    for (int s = 0; s < kShards; ++s) {
      std::vector<std::string> payloads;
      for (int64_t i = first + s; i < std::min(predictions, first + kBatch * kShards);
           i += kShards) {
        payloads.push_back(PredictionPayload(i));
      }
      if (payloads.empty()) continue;
      if (absl::Status st = Fold(*shards[s], payloads); !st.ok()) {
        std::fprintf(stderr, "fold: %s\n", st.ToString().c_str());
        return 1;
      }
    }
  }
  std::printf("built %lld predictions in %d shards in %.1f s\n",
              static_cast<long long>(predictions), kShards,
              absl::ToDoubleSeconds(absl::Now() - build_start));

  storage::ShardSet set;
  for (int s = 0; s < kShards; ++s) set.events.push_back(shards[s].get());
  set.registry = shards[kShards].get();
  // Only lookups by key use it (GetImpact reads every shard's indexes).
  set.partition_of = [](absl::string_view key) {
    return static_cast<int32_t>(key.empty() ? 0 : static_cast<unsigned char>(key.back()) % kShards);
  };
  replay::Replayer replayer(set, nullptr, replay::RuntimeRegistry());

  std::printf(
      "\n| question | impacted models | predictions counted | first page p50 (ms) | "
      "CPU (ms) | next page of 100 p50 (ms) | listed in pages of 10,000 |\n"
      "|---|---|---|---|---|---|---|\n");
  for (const char* dataset : {"raw-0", "clean", "features-1", "train-0"}) {
    predlog::v1::GetImpactRequest request;
    request.mutable_dataset()->set_name(dataset);
    request.mutable_dataset()->set_version("2026-10");
    std::vector<double> first_ms, next_ms, cpu_ms;
    predlog::v1::Impact first;
    for (int r = 0; r < repeats; ++r) {
      const double cpu0 = ProcessCpuSeconds();
      const absl::Time t0 = absl::Now();
      absl::StatusOr<predlog::v1::Impact> answer = replayer.GetImpact(request);
      first_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
      cpu_ms.push_back((ProcessCpuSeconds() - cpu0) * 1e3);
      if (!answer.ok()) {
        std::fprintf(stderr, "%s: %s\n", dataset, answer.status().ToString().c_str());
        return 1;
      }
      first = *std::move(answer);
      predlog::v1::GetImpactRequest next = request;
      next.set_page_token(first.next_page_token());
      const absl::Time t1 = absl::Now();
      absl::StatusOr<predlog::v1::Impact> page = replayer.GetImpact(next);
      next_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t1));
      if (!page.ok()) {
        std::fprintf(stderr, "%s page 2: %s\n", dataset, page.status().ToString().c_str());
        return 1;
      }
    }
    // Every prediction, in pages of 10,000: the calls and the time to the end.
    predlog::v1::GetImpactRequest all = request;
    all.set_page_size(10000);
    uint64_t listed = 0;
    int calls = 0;
    const absl::Time t2 = absl::Now();
    do {
      absl::StatusOr<predlog::v1::Impact> page = replayer.GetImpact(all);
      if (!page.ok()) {
        std::fprintf(stderr, "%s all pages: %s\n", dataset, page.status().ToString().c_str());
        return 1;
      }
      ++calls;
      listed += page->predictions_size();
      all.set_page_token(page->next_page_token());
    } while (!all.page_token().empty());
    const double all_s = absl::ToDoubleSeconds(absl::Now() - t2);
    std::printf(
        "| GetImpact(%s@2026-10) | %d | %llu | %.1f | %.1f | %.2f | %llu in %d calls, %.1f s |\n",
        dataset, first.models_size(), static_cast<unsigned long long>(first.total_predictions()),
        Percentile(first_ms, 0.5), Percentile(cpu_ms, 0.5), Percentile(next_ms, 0.5),
        static_cast<unsigned long long>(listed), calls, all_s);
  }
  return 0;
}

}  // namespace
}  // namespace predlog::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return predlog::bench::Main();
}
