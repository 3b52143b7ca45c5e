// Replay/GetLineage and Replay/GetImpact on a running Server (gRPC on
// loopback, shards in a temp dir), over a five-level lineage registered out
// of order: raw applications -> cleaned -> features -> train/test split ->
// credit@v1 and credit@v2 (sharing the train split), beside an unrelated
// fraud model some of whose predictions read the features. Each answer is
// compared with what the test computes on its own from the registrations
// and the predictions it logged.
#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/cli/registry_client.h"
#include "services/server/server.h"
#include "storage/sha256.h"
#include "storage/timestamps.h"
#include "tests/testing/events.h"
#include "tests/testing/loopback_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::testing::TempDir;
using ::testing::HasSubstr;
using Edge = std::tuple<std::string, std::string, predlog::v1::LineageEdge::Relation>;
using predlog::v1::LineageEdge;

predlog::v1::DatasetRef Ref(const std::string& name, const std::string& version) {
  predlog::v1::DatasetRef ref;
  ref.set_name(name);
  ref.set_version(version);
  ref.set_digest(storage::ToHex(storage::Sha256(name + "@" + version)));
  return ref;
}

// A registration: a dataset's parents, or a model's training and evaluation data.
struct DatasetSpec {
  std::string name, version;
  std::vector<std::pair<std::string, std::string>> parents;
  std::string pipeline;  // name@3, or empty
};
struct ModelSpec {
  std::string name, version;
  std::vector<std::pair<std::string, std::string>> trained_on;
  std::vector<std::pair<std::string, std::string>> evaluated_on;
};

// A logged prediction, as the test knows it.
struct Logged {
  std::string id, subject, model, version;
  std::vector<std::pair<std::string, std::string>> data_sources;
};

class LineageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        predlog::testing::LoopbackServer started,
        predlog::testing::StartLoopbackServer(ServerOptions(), dir_.Sub("data"), 3));
    server_ = std::move(started.server);
    auto channel = started.channel;
    registry_ = predlog::v1::Registry::NewStub(channel);
    replay_ = predlog::v1::Replay::NewStub(channel);
    log_ = predlog::v1::PredictionLog::NewStub(channel);
    audit_ = predlog::v1::Audit::NewStub(channel);
  }

  grpc::Status RegisterDataset(const DatasetSpec& spec) {
    predlog::v1::RegisterDatasetRequest request;
    predlog::v1::DatasetRegistered* d = request.mutable_dataset();
    *d->mutable_dataset() = Ref(spec.name, spec.version);
    for (const auto& [name, version] : spec.parents) *d->add_derived_from() = Ref(name, version);
    if (!spec.pipeline.empty()) {
      d->mutable_pipeline()->set_name(spec.pipeline);
      d->mutable_pipeline()->set_version("3");
      d->mutable_pipeline()->set_code_digest("4f2a9c1");
    }
    d->set_source(absl::StrCat("s3://lake/", spec.name, "/", spec.version));
    predlog::v1::RegistryReceipt receipt;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    grpc::Status status = registry_->RegisterDataset(&context, request, &receipt);
    if (status.ok()) datasets_.push_back(spec);
    return status;
  }

  void RegisterModel(const ModelSpec& spec) {
    predlog::v1::RegisterModelRequest first;
    predlog::v1::ModelRegistered* m = first.mutable_metadata();
    m->mutable_model()->set_name(spec.name);
    m->mutable_model()->set_version(spec.version);
    m->set_framework("xgboost");
    for (const auto& [name, version] : spec.trained_on) {
      *m->mutable_provenance()->add_datasets() = Ref(name, version);
    }
    for (const auto& [name, version] : spec.evaluated_on) {
      predlog::v1::EvaluationMetric* metric = m->add_metrics();
      metric->set_name("auc");
      metric->set_value(0.9);
      *metric->mutable_dataset() = Ref(name, version);
    }
    m->mutable_provenance()->set_code_commit("c0ffee");
    std::istringstream artifact(absl::StrCat("artifact of ", spec.name, "@", spec.version));
    predlog::v1::RegisterModelResponse response;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    const grpc::Status status = UploadModel(registry_.get(), &context, first, artifact, &response);
    ASSERT_TRUE(status.ok()) << spec.name << "@" << spec.version << ": " << status.error_message();
    models_.push_back(spec);
  }

  void LogPredictions(const std::vector<Logged>& predictions,
                      const std::map<std::string, std::vector<std::string>>& parents = {}) {
    predlog::v1::LogBatchRequest batch;
    for (size_t i = 0; i < predictions.size(); ++i) {
      const Logged& p = predictions[i];
      testing::PredictionSpec spec;
      spec.prediction_id = p.id;
      spec.subject_id = p.subject;
      spec.model_name = p.model;
      spec.model_version = p.version;
      spec.served_at = absl::FromUnixSeconds(1'790'000'000 + static_cast<int64_t>(i));
      predlog::v1::PredictionLogged logged = testing::MakePrediction(spec).prediction_logged();
      for (const auto& [name, version] : p.data_sources) {
        *logged.add_data_sources() = Ref(name, version);
      }
      if (auto it = parents.find(p.id); it != parents.end()) {
        for (const std::string& parent : it->second) logged.add_parent_prediction_ids(parent);
      }
      *batch.add_requests()->mutable_prediction() = std::move(logged);
    }
    predlog::v1::LogBatchResponse response;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    const grpc::Status status = log_->LogBatch(&context, batch, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const predlog::v1::LogReceipt& receipt : response.receipts()) {
      ASSERT_EQ(receipt.error_code(), 0) << receipt.reason();
      ASSERT_EQ(receipt.outcome(), predlog::v1::LogReceipt::APPLIED);
    }
    for (const Logged& p : predictions) {
      subject_of_[p.id] = p.subject;
      sources_of_[p.id] = p.data_sources;
    }
    logged_.insert(logged_.end(), predictions.begin(), predictions.end());
  }

  // The five levels, registered out of order (children before parents), a
  // parent that is never registered (exclusions), and two models sharing
  // the train split; then predictions of every model.
  void RegisterTheFiveLevelsAndLog() {
    ASSERT_TRUE(RegisterDataset({"train", "2026-10", {{"features", "2026-10"}}, "split"}).ok());
    ASSERT_TRUE(RegisterDataset({"test", "2026-10", {{"features", "2026-10"}}, "split"}).ok());
    ASSERT_TRUE(
        RegisterDataset({"features", "2026-10", {{"clean", "2026-10"}}, "credit-features"}).ok());
    ASSERT_TRUE(RegisterDataset({"clean",
                                 "2026-10",
                                 {{"applications", "2026-10"}, {"exclusions", "2026-10"}},
                                 "cleaning"})
                    .ok());
    ASSERT_TRUE(RegisterDataset({"applications", "2026-10", {}, ""}).ok());
    ASSERT_TRUE(RegisterDataset({"bureau", "2026-10", {}, ""}).ok());
    RegisterModel({"credit", "v1", {{"train", "2026-10"}}, {{"test", "2026-10"}}});
    RegisterModel({"credit", "v2", {{"train", "2026-10"}, {"bureau", "2026-10"}}, {}});
    RegisterModel({"fraud", "v1", {{"bureau", "2026-10"}}, {}});

    std::vector<Logged> predictions;
    for (int i = 0; i < 60; ++i) {
      Logged p;
      p.id = absl::StrCat("p-", i);
      p.subject = absl::StrCat("c-", i % 17);
      const int kind = i % 3;
      p.model = kind == 2 ? "fraud" : "credit";
      p.version = kind == 1 ? "v2" : "v1";
      // Fraud predictions read the features (every other one) or the bureau.
      if (kind == 2) {
        p.data_sources = {{i % 2 == 0 ? "features" : "bureau", "2026-10"}};
        if (i % 4 == 0) p.data_sources.push_back({"train", "2026-10"});
      } else {
        p.data_sources = {{"features", "2026-10"}};
      }
      predictions.push_back(std::move(p));
    }
    ASSERT_NO_FATAL_FAILURE(LogPredictions(predictions));
  }

  // What is downstream of name@version, computed from the registrations the
  // test made: datasets derived (transitively) and models trained on them.
  std::pair<std::set<std::string>, std::set<std::string>> Downstream(const std::string& name,
                                                                     const std::string& version) {
    std::set<std::string> datasets = {name + "@" + version};
    std::set<std::string> models;
    bool grew = true;
    while (grew) {
      grew = false;
      for (const DatasetSpec& d : datasets_) {
        for (const auto& [pn, pv] : d.parents) {
          if (datasets.count(pn + "@" + pv) && datasets.insert(d.name + "@" + d.version).second) {
            grew = true;
          }
        }
      }
    }
    for (const ModelSpec& m : models_) {
      for (const auto& [dn, dv] : m.trained_on) {
        if (datasets.count(dn + "@" + dv)) models.insert(m.name + "@" + m.version);
      }
    }
    return {datasets, models};
  }

  // The oracle: every logged prediction, checked one by one.
  std::map<std::string, std::string> ImpactedByBruteForce(const std::string& name,
                                                          const std::string& version) {
    const auto [datasets, models] = Downstream(name, version);
    std::map<std::string, std::string> impacted;  // id -> model@version
    for (const Logged& p : logged_) {
      bool hit = models.count(p.model + "@" + p.version) > 0;
      for (const auto& [dn, dv] : p.data_sources) hit |= datasets.count(dn + "@" + dv) > 0;
      if (hit) impacted[p.id] = p.model + "@" + p.version;
    }
    return impacted;
  }

  grpc::Status Lineage(const std::string& prediction_id, predlog::v1::Lineage* out,
                       const predlog::v1::AsOf* as_of = nullptr) {
    predlog::v1::GetLineageRequest request;
    request.set_prediction_id(prediction_id);
    if (as_of != nullptr) *request.mutable_as_of() = *as_of;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    return replay_->GetLineage(&context, request, out);
  }

  grpc::Status Impact(const predlog::v1::GetImpactRequest& request, predlog::v1::Impact* out) {
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    return replay_->GetImpact(&context, request, out);
  }

  // Every page of GetImpact(request) with `page_size`: the predictions
  // (id -> model@version, each id once) and the first page. `between` runs
  // after the first page (to grow the log meanwhile). Each prediction is
  // checked to be listed under its model when that is downstream, else under
  // the first impacted dataset it read by (name, version), and the listing's
  // order: downstream models by name@version, then datasets by name@version.
  void AllPages(predlog::v1::GetImpactRequest request, uint32_t page_size,
                std::map<std::string, std::string>* listed, predlog::v1::Impact* first, int* pages,
                const std::function<void()>& between = nullptr) {
    request.set_page_size(page_size);
    *pages = 0;
    const auto [datasets, models] =
        Downstream(request.dataset().name(), request.dataset().version());
    std::vector<std::pair<int, std::string>> order;  // (phase, via) as listed
    do {
      predlog::v1::Impact page;
      const grpc::Status status = Impact(request, &page);
      ASSERT_TRUE(status.ok()) << status.error_message();
      if (*pages == 0) *first = page;
      ++*pages;
      EXPECT_LE(page.predictions_size(), static_cast<int>(page_size));
      for (const predlog::v1::ImpactedPrediction& p : page.predictions()) {
        EXPECT_TRUE(
            listed->emplace(p.prediction_id(), p.model().name() + "@" + p.model().version()).second)
            << p.prediction_id() << " listed twice";
        EXPECT_EQ(p.subject_id(), subject_of_[p.prediction_id()]) << p.prediction_id();
        const std::string model = p.model().name() + "@" + p.model().version();
        if (models.count(model) > 0) {
          EXPECT_EQ(p.via(), "model:" + model) << p.prediction_id();
        } else {
          std::string earliest;
          for (const auto& [dn, dv] : sources_of_[p.prediction_id()]) {
            const std::string ref = dn + "@" + dv;
            if (datasets.count(ref) > 0 && (earliest.empty() || ref < earliest)) earliest = ref;
          }
          EXPECT_EQ(p.via(), "dataset:" + earliest) << p.prediction_id();
        }
        order.emplace_back(p.via().rfind("model:", 0) == 0 ? 0 : 1, p.via());
      }
      request.set_page_token(page.next_page_token());
      if (*pages == 1 && between) between();
    } while (!request.page_token().empty());
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  }

  static std::set<Edge> EdgesOf(const predlog::v1::Lineage& lineage) {
    std::set<Edge> edges;
    for (const LineageEdge& e : lineage.edges()) {
      EXPECT_TRUE(edges.emplace(e.from(), e.to(), e.relation()).second) << e.DebugString();
    }
    return edges;
  }
  static std::map<std::string, bool> NodesOf(const predlog::v1::Lineage& lineage) {
    std::map<std::string, bool> nodes;  // id -> registered
    for (const predlog::v1::LineageNode& node : lineage.nodes()) {
      EXPECT_TRUE(nodes.emplace(node.id(), node.registered()).second) << node.id();
    }
    return nodes;
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<predlog::v1::Registry::Stub> registry_;
  std::unique_ptr<predlog::v1::Replay::Stub> replay_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> log_;
  std::unique_ptr<predlog::v1::Audit::Stub> audit_;
  std::vector<DatasetSpec> datasets_;
  std::vector<ModelSpec> models_;
  std::vector<Logged> logged_;
  std::map<std::string, std::string> subject_of_;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> sources_of_;
};

TEST_F(LineageTest, LineageOfAPredictionIsTheWholeUpstreamGraphAndItsModelChain) {
  ASSERT_NO_FATAL_FAILURE(RegisterTheFiveLevelsAndLog());
  // A credit@v2 decision fed by a fraud score (a model chain).
  ASSERT_NO_FATAL_FAILURE(
      LogPredictions({{"fraud-1", "c-9", "fraud", "v1", {{"bureau", "2026-10"}}},
                      {"credit-1", "c-9", "credit", "v2", {{"features", "2026-10"}}}},
                     {{"credit-1", {"fraud-1", "never-logged"}}}));

  predlog::v1::Lineage lineage;
  const grpc::Status status = Lineage("credit-1", &lineage);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(lineage.root(), "prediction:credit-1");
  ASSERT_GT(lineage.nodes_size(), 0);
  EXPECT_EQ(lineage.nodes(0).id(), "prediction:credit-1");

  // Written out by hand from the registrations above (edges point upstream).
  const std::set<Edge> expected = {
      {"prediction:credit-1", "model:credit@v2", LineageEdge::MADE_BY},
      {"prediction:credit-1", "dataset:features@2026-10", LineageEdge::READ},
      {"prediction:credit-1", "prediction:fraud-1", LineageEdge::FED_BY},
      {"prediction:credit-1", "prediction:never-logged", LineageEdge::FED_BY},
      {"prediction:fraud-1", "model:fraud@v1", LineageEdge::MADE_BY},
      {"prediction:fraud-1", "dataset:bureau@2026-10", LineageEdge::READ},
      // The serving pipeline each prediction names (tests/testing/events.h).
      {"prediction:credit-1", "pipeline:credit-features@2024.11", LineageEdge::PRODUCED_BY},
      {"prediction:fraud-1", "pipeline:credit-features@2024.11", LineageEdge::PRODUCED_BY},
      {"model:credit@v2", "dataset:train@2026-10", LineageEdge::TRAINED_ON},
      {"model:credit@v2", "dataset:bureau@2026-10", LineageEdge::TRAINED_ON},
      {"model:fraud@v1", "dataset:bureau@2026-10", LineageEdge::TRAINED_ON},
      {"dataset:train@2026-10", "dataset:features@2026-10", LineageEdge::DERIVED_FROM},
      {"dataset:train@2026-10", "pipeline:split@3", LineageEdge::PRODUCED_BY},
      {"dataset:features@2026-10", "dataset:clean@2026-10", LineageEdge::DERIVED_FROM},
      {"dataset:features@2026-10", "pipeline:credit-features@3", LineageEdge::PRODUCED_BY},
      {"dataset:clean@2026-10", "dataset:applications@2026-10", LineageEdge::DERIVED_FROM},
      {"dataset:clean@2026-10", "dataset:exclusions@2026-10", LineageEdge::DERIVED_FROM},
      {"dataset:clean@2026-10", "pipeline:cleaning@3", LineageEdge::PRODUCED_BY},
  };
  EXPECT_EQ(EdgesOf(lineage), expected);
  const std::map<std::string, bool> nodes = NodesOf(lineage);
  const std::map<std::string, bool> expected_nodes = {
      {"prediction:credit-1", true},
      {"prediction:fraud-1", true},
      {"prediction:never-logged", false},
      {"model:credit@v2", true},
      {"model:fraud@v1", true},
      {"dataset:features@2026-10", true},
      {"dataset:bureau@2026-10", true},
      {"dataset:train@2026-10", true},
      {"dataset:clean@2026-10", true},
      {"dataset:applications@2026-10", true},
      {"dataset:exclusions@2026-10", false},
      {"pipeline:split@3", true},
      {"pipeline:credit-features@3", true},
      {"pipeline:cleaning@3", true},
      {"pipeline:credit-features@2024.11", true},
  };
  EXPECT_EQ(nodes, expected_nodes);
  for (const predlog::v1::LineageNode& node : lineage.nodes()) {
    if (node.id() == "model:credit@v2") {
      EXPECT_EQ(node.model().registration().provenance().code_commit(), "c0ffee");
      EXPECT_EQ(node.model().registration().model().artifact_sha256().size(), 64u);
    }
    if (node.id() == "dataset:clean@2026-10") {
      EXPECT_EQ(node.dataset().registration().source(), "s3://lake/clean/2026-10");
      EXPECT_EQ(node.dataset().position().shard(), "predlog.registry-0");
    }
    if (node.id() == "prediction:fraud-1") {
      EXPECT_EQ(node.prediction().event().prediction_logged().subject_id(), "c-9");
    }
  }

  // credit@v1 was also evaluated on the test split.
  predlog::v1::Lineage v1;
  ASSERT_TRUE(Lineage("p-0", &v1).ok());
  EXPECT_TRUE(
      EdgesOf(v1).count({"model:credit@v1", "dataset:test@2026-10", LineageEdge::EVALUATED_ON}));
}

TEST_F(LineageTest, ImpactOfEveryDatasetEqualsTheBruteForceOverTheLog) {
  ASSERT_NO_FATAL_FAILURE(RegisterTheFiveLevelsAndLog());
  for (const auto& [name, version] :
       std::vector<std::pair<std::string, std::string>>{{"applications", "2026-10"},
                                                        {"clean", "2026-10"},
                                                        {"features", "2026-10"},
                                                        {"train", "2026-10"},
                                                        {"test", "2026-10"},
                                                        {"bureau", "2026-10"},
                                                        {"exclusions", "2026-10"},
                                                        {"never-heard-of", "1"}}) {
    SCOPED_TRACE(name);
    predlog::v1::GetImpactRequest request;
    request.mutable_dataset()->set_name(name);
    request.mutable_dataset()->set_version(version);
    std::map<std::string, std::string> listed;
    predlog::v1::Impact first;
    int pages = 0;
    ASSERT_NO_FATAL_FAILURE(AllPages(request, 7, &listed, &first, &pages));
    const std::map<std::string, std::string> oracle = ImpactedByBruteForce(name, version);
    EXPECT_EQ(listed, oracle);
    // Full pages of 7, and at most one empty page at the end.
    const int full = (static_cast<int>(oracle.size()) + 6) / 7;
    EXPECT_GE(pages, std::max(1, full));
    EXPECT_LE(pages, full + 1);

    // The counts per model version, and the graph's datasets and models.
    std::map<std::string, uint64_t> counted;
    for (const predlog::v1::ImpactedModel& m : first.models()) {
      if (m.predictions() > 0)
        counted[m.model().name() + "@" + m.model().version()] = m.predictions();
    }
    std::map<std::string, uint64_t> expected_counts;
    for (const auto& [id, model] : oracle) ++expected_counts[model];
    EXPECT_EQ(counted, expected_counts);
    EXPECT_EQ(first.total_predictions(), oracle.size());

    const auto [datasets, models] = Downstream(name, version);
    std::set<std::string> graph_datasets, graph_models;
    for (const predlog::v1::LineageNode& node : first.graph().nodes()) {
      const std::string ref = node.id().substr(node.id().find(':') + 1);
      (node.kind() == predlog::v1::LineageNode::MODEL ? graph_models : graph_datasets).insert(ref);
    }
    EXPECT_EQ(graph_datasets, datasets);
    EXPECT_EQ(graph_models, models);
    for (const predlog::v1::ImpactedModel& m : first.models()) {
      EXPECT_EQ(m.downstream(), models.count(m.model().name() + "@" + m.model().version()) > 0)
          << m.model().DebugString();
    }
  }
}

TEST_F(LineageTest, ImpactIsAsOfATimeAndWithinServedBounds) {
  ASSERT_NO_FATAL_FAILURE(RegisterTheFiveLevelsAndLog());
  const absl::Time before = absl::Now();
  absl::SleepFor(absl::Milliseconds(5));
  RegisterModel({"credit", "v3", {{"train", "2026-10"}}, {}});
  // Both impacted now: credit@v3 is downstream of train only after `before`,
  // credit@v1 all along, but late-2 was appended after `before`.
  ASSERT_NO_FATAL_FAILURE(LogPredictions(
      {{"late-1", "c-1", "credit", "v3", {}}, {"late-2", "c-2", "credit", "v1", {}}}));

  predlog::v1::GetImpactRequest request;
  request.mutable_dataset()->set_name("train");
  request.mutable_dataset()->set_version("2026-10");
  predlog::v1::Impact now;
  ASSERT_TRUE(Impact(request, &now).ok());
  storage::TimeToProto(before, request.mutable_as_of()->mutable_time());
  predlog::v1::Impact then;
  ASSERT_TRUE(Impact(request, &then).ok());
  auto models = [](const predlog::v1::Impact& impact) {
    std::set<std::string> out;
    for (const auto& m : impact.models()) out.insert(m.model().name() + "@" + m.model().version());
    return out;
  };
  EXPECT_TRUE(models(now).count("credit@v3"));
  EXPECT_FALSE(models(then).count("credit@v3"));
  EXPECT_EQ(now.total_predictions(), then.total_predictions() + 2);

  // [from, to) on served_at: the first ten seconds of the logged run.
  request.clear_as_of();
  storage::TimeToProto(absl::FromUnixSeconds(1'790'000'000), request.mutable_from());
  storage::TimeToProto(absl::FromUnixSeconds(1'790'000'010), request.mutable_to());
  predlog::v1::Impact bounded;
  ASSERT_TRUE(Impact(request, &bounded).ok());
  uint64_t expected = 2;  // late-1 and late-2, served in the first seconds too
  for (size_t i = 0; i < 10; ++i) {
    // credit@v1 and v2 are trained on train; fraud reads train when i % 4 == 0.
    expected += (i % 3 != 2) || (i % 4 == 0) ? 1 : 0;
  }
  EXPECT_EQ(bounded.total_predictions(), expected);
}

TEST_F(LineageTest, LineageAsOfAnEarlierRegistryShowsWhatWasNotRegisteredYet) {
  ASSERT_NO_FATAL_FAILURE(RegisterTheFiveLevelsAndLog());
  predlog::v1::Lineage now;
  ASSERT_TRUE(Lineage("p-1", &now).ok());
  // The registry as it was after its first record: only train@2026-10.
  predlog::v1::AsOf as_of;
  as_of.set_index(1);
  predlog::v1::Lineage then;
  ASSERT_TRUE(Lineage("p-1", &then, &as_of).ok());
  EXPECT_EQ(then.registry_cut().index(), 1u);
  const std::map<std::string, bool> nodes = NodesOf(then);
  EXPECT_EQ(nodes.at("model:credit@v2"), false);
  EXPECT_EQ(nodes.at("dataset:features@2026-10"), false);
  EXPECT_EQ(nodes.count("dataset:train@2026-10"), 0u) << "credit@v2 was not registered yet";
  EXPECT_EQ(NodesOf(now).at("dataset:train@2026-10"), true);
}

// Pages keep to the cut of the first page: predictions logged (and a model
// registered) between pages are in none of them.
TEST_F(LineageTest, PagesAgreeWhileTheLogGrows) {
  ASSERT_NO_FATAL_FAILURE(RegisterTheFiveLevelsAndLog());
  const std::map<std::string, std::string> oracle = ImpactedByBruteForce("features", "2026-10");
  predlog::v1::GetImpactRequest request;
  request.mutable_dataset()->set_name("features");
  request.mutable_dataset()->set_version("2026-10");
  std::map<std::string, std::string> listed;
  predlog::v1::Impact first;
  int pages = 0;
  ASSERT_NO_FATAL_FAILURE(AllPages(request, 5, &listed, &first, &pages, [&] {
    RegisterModel({"credit", "v4", {{"features", "2026-10"}}, {}});
    LogPredictions({{"mid-1", "c-3", "credit", "v1", {}},
                    {"mid-2", "c-4", "credit", "v4", {}},
                    {"mid-3", "c-5", "fraud", "v1", {{"features", "2026-10"}}}});
  }));
  EXPECT_EQ(listed, oracle);
  EXPECT_EQ(first.total_predictions(), oracle.size());
  EXPECT_GT(pages, 3);
  // A later page asked with another served range is refused.
  request.set_page_size(5);
  predlog::v1::Impact page;
  ASSERT_TRUE(Impact(request, &page).ok());
  request.set_page_token(page.next_page_token());
  storage::TimeToProto(absl::FromUnixSeconds(1'790'000'000), request.mutable_from());
  const grpc::Status status = Impact(request, &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_token"));
}

// The impact exported as a trail: exactly the predictions GetImpact lists,
// picked by the same set the manifest carries.
TEST_F(LineageTest, ThePredictionSetExportHoldsExactlyTheImpactedPredictions) {
  ASSERT_NO_FATAL_FAILURE(RegisterTheFiveLevelsAndLog());
  predlog::v1::GetImpactRequest graph_request;
  graph_request.mutable_dataset()->set_name("clean");
  graph_request.mutable_dataset()->set_version("2026-10");
  graph_request.set_graph_only(true);
  predlog::v1::Impact graph;
  ASSERT_TRUE(Impact(graph_request, &graph).ok());
  EXPECT_EQ(graph.predictions_size(), 0);
  EXPECT_EQ(graph.models_size(), 0);
  EXPECT_TRUE(graph.next_page_token().empty());
  predlog::v1::ExportTrailRequest request;
  for (const predlog::v1::LineageNode& node : graph.graph().nodes()) {
    if (node.kind() == predlog::v1::LineageNode::MODEL) {
      *request.mutable_predictions()->add_models() = node.model().registration().model();
    } else {
      *request.mutable_predictions()->add_data_sources() = node.dataset().registration().dataset();
    }
  }
  auto export_ids = [&](const predlog::v1::ExportTrailRequest& r, grpc::Status* status) {
    std::map<std::string, std::string> ids;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    auto reader = audit_->ExportTrail(&context, r);
    predlog::v1::ExportBatch batch;
    while (reader->Read(&batch)) {
      for (const predlog::v1::ExportedRecord& record : batch.records()) {
        predlog::v1::AuditEvent event;
        EXPECT_TRUE(event.ParseFromString(record.event_bytes()));
        const auto& p = event.prediction_logged();
        EXPECT_TRUE(
            ids.emplace(p.prediction_id(), p.model().name() + "@" + p.model().version()).second)
            << p.prediction_id() << " exported twice";
      }
    }
    *status = reader->Finish();
    return ids;
  };
  grpc::Status status;
  EXPECT_EQ(export_ids(request, &status), ImpactedByBruteForce("clean", "2026-10"));
  EXPECT_TRUE(status.ok()) << status.error_message();

  // Only the datasets: the predictions that read one of them, whatever
  // their model.
  request.mutable_predictions()->clear_models();
  std::map<std::string, std::string> readers;
  for (const Logged& p : logged_) {
    for (const auto& [dn, dv] : p.data_sources) {
      if (dn == "features" || dn == "train" || dn == "test" || dn == "clean") {
        readers[p.id] = p.model + "@" + p.version;
      }
    }
  }
  EXPECT_EQ(export_ids(request, &status), readers);
  EXPECT_TRUE(status.ok()) << status.error_message();

  predlog::v1::ExportTrailRequest empty;
  empty.mutable_predictions();
  export_ids(empty, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("names no model and no dataset"));
  predlog::v1::ExportTrailRequest nameless;
  nameless.mutable_predictions()->add_data_sources()->set_version("1");
  export_ids(nameless, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("predictions.data_sources[0]"));
}

// A model chain longer than the walk's bound: the lineage stops, says so,
// and every edge still names a node.
TEST_F(LineageTest, ALongModelChainIsCutAtTheBoundAndSaysSo) {
  ASSERT_NO_FATAL_FAILURE(RegisterTheFiveLevelsAndLog());
  std::vector<Logged> chain;
  std::map<std::string, std::vector<std::string>> parents;
  for (int i = 0; i < 1002; ++i) {
    chain.push_back({absl::StrCat("chain-", i), "c-1", "credit", "v1", {}});
    if (i > 0) parents[absl::StrCat("chain-", i)] = {absl::StrCat("chain-", i - 1)};
  }
  ASSERT_NO_FATAL_FAILURE(LogPredictions(chain, parents));
  predlog::v1::Lineage lineage;
  ASSERT_TRUE(Lineage("chain-1001", &lineage).ok());
  EXPECT_TRUE(lineage.truncated());
  const std::map<std::string, bool> nodes = NodesOf(lineage);
  for (const LineageEdge& edge : lineage.edges()) {
    EXPECT_TRUE(nodes.count(edge.to())) << edge.to();
  }
  int not_walked = 0;
  for (const predlog::v1::LineageNode& node : lineage.nodes()) {
    if (node.note() == "not walked") ++not_walked;
  }
  EXPECT_EQ(not_walked, 1);  // chain-1, the 1001st prediction from the root
  EXPECT_EQ(nodes.count("prediction:chain-0"), 0u);

  predlog::v1::Lineage short_chain;
  ASSERT_TRUE(Lineage("chain-5", &short_chain).ok());
  EXPECT_FALSE(short_chain.truncated());
  EXPECT_TRUE(NodesOf(short_chain).at("prediction:chain-0"));
}

// exclusions@2026-10 is named as a parent of clean but was never registered;
// registering it now as derived from the train split (which descends from
// clean) would close a cycle: refused, and the graph is what it was.
TEST_F(LineageTest, ACycleAttemptIsRefusedAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(RegisterTheFiveLevelsAndLog());
  predlog::v1::Impact before;
  predlog::v1::GetImpactRequest request;
  request.mutable_dataset()->set_name("exclusions");
  request.mutable_dataset()->set_version("2026-10");
  ASSERT_TRUE(Impact(request, &before).ok());

  const grpc::Status status =
      RegisterDataset({"exclusions", "2026-10", {{"train", "2026-10"}}, "cleaning"});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("cycle"));
  EXPECT_THAT(status.error_message(), HasSubstr("train@2026-10"));

  predlog::v1::Impact after;
  ASSERT_TRUE(Impact(request, &after).ok());
  EXPECT_EQ(EdgesOf(after.graph()), EdgesOf(before.graph()));
  EXPECT_EQ(NodesOf(after.graph()).at("dataset:exclusions@2026-10"), false);
  EXPECT_EQ(after.total_predictions(), before.total_predictions());
  // Without the cycle, the same dataset registers.
  EXPECT_TRUE(RegisterDataset({"exclusions", "2026-10", {{"bureau", "2026-10"}}, ""}).ok());
}

TEST_F(LineageTest, BadRequestsAreNamed) {
  ASSERT_NO_FATAL_FAILURE(RegisterTheFiveLevelsAndLog());
  predlog::v1::Lineage lineage;
  grpc::Status status = Lineage("", &lineage);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("prediction_id"));
  status = Lineage("no-such-prediction", &lineage);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  predlog::v1::Impact impact;
  predlog::v1::GetImpactRequest request;
  request.mutable_dataset()->set_version("1");
  status = Impact(request, &impact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dataset.name"));
  request.mutable_dataset()->set_name("features");
  request.mutable_dataset()->set_version("2026-10");
  request.mutable_as_of()->set_index(3);
  status = Impact(request, &impact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("as_of.index"));
  request.clear_as_of();
  request.set_page_size(10001);
  status = Impact(request, &impact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_size"));
  request.set_page_size(5);
  request.set_page_token("garbage!");
  status = Impact(request, &impact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_token"));
  // A token of another dataset's answer.
  request.set_page_token("");
  ASSERT_TRUE(Impact(request, &impact).ok());
  ASSERT_FALSE(impact.next_page_token().empty());
  request.set_page_token(impact.next_page_token());
  request.mutable_dataset()->set_name("train");
  status = Impact(request, &impact);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_token"));
}

}  // namespace
}  // namespace predlog::services
