// Rerun latency through gRPC with a warm model cache: a 100-tree, 30-feature
// XGBoost model (trained here), 1,000 logged predictions, one client calling
// Replay/Rerun on loopback against an in-process predlogd.
//
//   build/bench/rerun_bench
//
// Reports p50/p99/max per call as counters (milliseconds).
#include <algorithm>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/cli/credit_models.h"
#include "services/cli/registry_client.h"
#include "services/server/server.h"
#include "storage/logging.h"
#include "storage/timestamps.h"
#include "tests/testing/temp_dir.h"

namespace predlog {
namespace {

constexpr int kFeatures = 30;
constexpr int kTrees = 100;
constexpr int kPredictions = 1000;

struct Setup {
  testing::TempDir dir;
  std::unique_ptr<services::Server> server;
  std::unique_ptr<v1::Replay::Stub> replay;
  std::vector<std::string> ids;
};

Setup& Fixture() {
  static Setup* setup = [] {
    auto* s = new Setup();
    services::ServerOptions options;
    options.data_dir = s->dir.Sub("data");
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "";
    s->server = *services::Server::Start(options);
    auto channel =
        grpc::CreateChannel(s->server->grpc_address(), grpc::InsecureChannelCredentials());
    s->replay = v1::Replay::NewStub(channel);
    auto registry = v1::Registry::NewStub(channel);
    auto log = v1::PredictionLog::NewStub(channel);

    const demo::CreditData data = demo::MakeCreditData(2000, kFeatures, 1);
    demo::TrainOptions train;
    train.trees = kTrees;
    train.max_depth = 6;
    const std::string artifact = *demo::TrainXgboostModel(data, train);
    v1::RegisterModelRequest first;
    first.mutable_metadata()->mutable_model()->set_name("credit");
    first.mutable_metadata()->mutable_model()->set_version("v1");
    first.mutable_metadata()->set_framework("xgboost");
    v1::RegisterModelResponse registered;
    grpc::ClientContext register_context;
    std::istringstream bytes(artifact);
    grpc::Status status =
        services::UploadModel(registry.get(), &register_context, first, bytes, &registered);
    PREDLOG_CHECK(status.ok()) << status.error_message();

    auto booster = *demo::ServingBooster::Load(artifact);
    for (int i = 0; i < kPredictions; ++i) {
      absl::Span<const float> row(&data.x[size_t(i) * kFeatures], kFeatures);
      v1::LogRequest request;
      auto* p = request.mutable_prediction();
      p->set_prediction_id("p" + std::to_string(i));
      p->set_subject_id("customer-" + std::to_string(i));
      storage::TimeToProto(absl::Now(), p->mutable_served_at());
      *p->mutable_model() = registered.model();
      for (int f = 0; f < kFeatures; ++f) {
        auto* input = p->add_inputs();
        input->set_name(data.feature_names[f]);
        if (!std::isnan(row[f])) input->set_float_value(row[f]);
      }
      const std::vector<float> scores = *booster->Predict(row);
      for (float score : scores) p->mutable_output()->add_float_scores(score);
      v1::LogReceipt receipt;
      grpc::ClientContext context;
      status = log->Log(&context, request, &receipt);
      PREDLOG_CHECK(status.ok()) << status.error_message();
      s->ids.push_back(p->prediction_id());
    }
    return s;
  }();
  return *setup;
}

void RunRerun(benchmark::State& state, bool explain) {
  Setup& s = Fixture();
  std::mt19937 rng(1);
  std::vector<double> latencies_ms;
  v1::RerunRequest request;
  request.set_explain(explain);
  // Warm the model cache and the channel.
  for (int i = 0; i < 100; ++i) {
    request.set_prediction_id(s.ids[i % s.ids.size()]);
    v1::RerunReport report;
    grpc::ClientContext context;
    PREDLOG_CHECK(s.replay->Rerun(&context, request, &report).ok());
  }
  for (auto _ : state) {
    request.set_prediction_id(s.ids[rng() % s.ids.size()]);
    v1::RerunReport report;
    grpc::ClientContext context;
    const absl::Time start = absl::Now();
    grpc::Status status = s.replay->Rerun(&context, request, &report);
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    state.SetIterationTime(ms / 1000);
    if (!status.ok() || !report.exact_match()) {
      state.SkipWithError("rerun failed or did not reproduce");
      break;
    }
    latencies_ms.push_back(ms);
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto at = [&](double q) {
    return latencies_ms.empty() ? 0 : latencies_ms[size_t(q * double(latencies_ms.size() - 1))];
  };
  state.counters["p50_ms"] = at(0.50);
  state.counters["p99_ms"] = at(0.99);
  state.counters["max_ms"] = at(1.0);
}

void BM_RerunGrpc(benchmark::State& state) { RunRerun(state, false); }
void BM_RerunExplainGrpc(benchmark::State& state) { RunRerun(state, true); }
BENCHMARK(BM_RerunGrpc)->UseManualTime()->Iterations(5000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RerunExplainGrpc)->UseManualTime()->Iterations(5000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace predlog

BENCHMARK_MAIN();
