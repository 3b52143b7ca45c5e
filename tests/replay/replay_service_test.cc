// Replay end to end in one process, as a support engineer meets it: two
// XGBoost credit models trained in the test are registered over gRPC, a
// serving loop scores customers with its own booster and logs every
// prediction, and Rerun / RerunTrace / GetEntityAt answer over gRPC on
// loopback. Real librdkafka (embedded broker), real RocksDB, real XGBoost.
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/cli/credit_models.h"
#include "services/cli/registry_client.h"
#include "services/server/server.h"
#include "storage/sha256.h"
#include "storage/timestamps.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "xgboost/c_api.h"

namespace predlog::replay {
namespace {

using ::predlog::demo::CreditData;
using ::predlog::demo::ServingBooster;
using ::predlog::testing::TempDir;
using ::predlog::v1::LogReceipt;
using ::testing::HasSubstr;

constexpr int kFeatures = 12;
constexpr char kRoute[] = "credit-limit";

std::string XgboostVersion() {
  int major = 0, minor = 0, patch = 0;
  XGBoostVersion(&major, &minor, &patch);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

std::chrono::system_clock::time_point Deadline(int seconds = 20) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

// Models trained once for the whole suite: v1 on today's data, v2 on drifted
// data, v3 for the chain.
struct Models {
  CreditData data;
  std::string v1, v2, v3;
};
const Models& TrainedModels() {
  static const Models* models = [] {
    auto* m = new Models();
    m->data = demo::MakeCreditData(1000, kFeatures, /*seed=*/7);
    demo::TrainOptions options;
    options.trees = 30;
    m->v1 = *demo::TrainXgboostModel(m->data, options);
    m->v2 = *demo::TrainXgboostModel(demo::MakeCreditData(1000, kFeatures, 8, 1.0f), options);
    options.trees = 10;
    m->v3 = *demo::TrainXgboostModel(demo::MakeCreditData(1000, kFeatures, 9, 0.5f), options);
    return m;
  }();
  return *models;
}

class ReplayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    services::ServerOptions options;
    options.data_dir = dir_.Sub("data");
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.partitions = 2;
    ASSERT_OK_AND_ASSIGN(server_, services::Server::Start(options));
    auto channel = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    log_ = predlog::v1::PredictionLog::NewStub(channel);
    registry_ = predlog::v1::Registry::NewStub(channel);
    replay_ = predlog::v1::Replay::NewStub(channel);
  }

  static predlog::v1::PipelineRef Pipeline(const std::string& version) {
    predlog::v1::PipelineRef p;
    p.set_name("credit-features");
    p.set_version(version);
    return p;
  }

  // Registers `artifact` as name@version, uploaded in 64 KB chunks.
  grpc::Status Register(const std::string& name, const std::string& version,
                        const std::string& artifact, predlog::v1::RegisterModelResponse* response,
                        const std::string& framework = "xgboost",
                        const std::string& declared_digest = "", bool feature_names = true) {
    predlog::v1::RegisterModelRequest first;
    first.set_actor("ml-platform");
    predlog::v1::ModelRegistered* metadata = first.mutable_metadata();
    metadata->mutable_model()->set_name(name);
    metadata->mutable_model()->set_version(version);
    metadata->mutable_model()->set_artifact_sha256(declared_digest);
    metadata->set_framework(framework);
    auto* provenance = metadata->mutable_provenance();
    provenance->set_code_commit("4f2a9c1");
    (*provenance->mutable_hyperparameters())["max_depth"] = "4";
    (*provenance->mutable_library_versions())["xgboost"] = XgboostVersion();
    *provenance->mutable_pipeline() = Pipeline("3");
    if (feature_names) {
      for (const auto& f : TrainedModels().data.feature_names) provenance->add_feature_names(f);
    }
    auto* dataset = provenance->add_datasets();
    dataset->set_name("applications");
    dataset->set_version(version == "v1" ? "2026-10" : "2026-11");
    dataset->set_digest(storage::ToHex(storage::Sha256(dataset->version())));
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    std::istringstream bytes(artifact);
    // Small chunks, so an upload is many messages.
    return services::UploadModel(registry_.get(), &context, first, bytes, response, 64 << 10);
  }

  void RegisterOrDie(const std::string& version, const std::string& artifact,
                     const std::string& name = "credit") {
    predlog::v1::RegisterModelResponse response;
    grpc::Status status = Register(name, version, artifact, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.receipt().outcome(), LogReceipt::APPLIED);
  }

  // What the serving service does: score `row` with its own booster and log it.
  struct Served {
    std::string prediction_id;
    std::vector<float> scores;
  };
  Served Serve(ServingBooster& booster, const std::string& version, int row_index,
               const std::string& pipeline_version = "3", const std::string& trace_id = "",
               const std::vector<std::string>& parents = {}, float corrupt_by = 0,
               const std::vector<std::string>& input_names = {}) {
    const CreditData& data = TrainedModels().data;
    absl::Span<const float> row(&data.x[size_t(row_index) * kFeatures], kFeatures);
    Served served;
    served.prediction_id = "p-" + version + "-" + std::to_string(row_index) + trace_id;
    served.scores = *booster.Predict(row);
    predlog::v1::LogRequest request;
    auto* p = request.mutable_prediction();
    p->set_prediction_id(served.prediction_id);
    p->set_subject_id("customer-" + std::to_string(row_index));
    storage::TimeToProto(absl::Now(), p->mutable_served_at());
    p->set_service("limits-api");
    p->mutable_model()->set_name("credit");
    p->mutable_model()->set_version(version);
    if (!pipeline_version.empty()) *p->mutable_pipeline() = Pipeline(pipeline_version);
    for (int f = 0; f < kFeatures; ++f) {
      auto* input = p->add_inputs();
      input->set_name(input_names.empty() ? data.feature_names[f] : input_names[size_t(f)]);
      if (!std::isnan(row[f])) input->set_float_value(row[f]);  // NaN: recorded as missing
    }
    for (float s : served.scores) p->mutable_output()->add_float_scores(s + corrupt_by);
    p->mutable_output()->set_score_kind("probability_of_default");
    p->set_trace_id(trace_id);
    for (const auto& parent : parents) p->add_parent_prediction_ids(parent);
    LogReceipt receipt;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::Status status = log_->Log(&context, request, &receipt);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);
    return served;
  }

  grpc::Status Rerun(const predlog::v1::RerunRequest& request, predlog::v1::RerunReport* report) {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return replay_->Rerun(&context, request, report);
  }
  grpc::Status Rerun(const std::string& id, predlog::v1::RerunReport* report) {
    predlog::v1::RerunRequest request;
    request.set_prediction_id(id);
    return Rerun(request, report);
  }

  std::string ArtifactPath(const std::string& artifact) const {
    const std::string hex = storage::ToHex(storage::Sha256(artifact));
    return dir_.Sub("data") + "/artifacts/sha256/" + hex.substr(0, 2) + "/" + hex;
  }

  // What an attacker with disk access does: change one byte in the middle of
  // the stored artifact `artifact` (a weight's digit).
  void FlipAByteOfTheStoredArtifact(const std::string& artifact) const {
    const std::string path = ArtifactPath(artifact);
    ASSERT_EQ(chmod(path.c_str(), 0644), 0);
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(artifact.size() / 2));
    char c;
    file.read(&c, 1);
    file.seekp(static_cast<std::streamoff>(artifact.size() / 2));
    c = c == '1' ? '2' : '1';
    file.write(&c, 1);
  }

  TempDir dir_;
  std::unique_ptr<services::Server> server_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> log_;
  std::unique_ptr<predlog::v1::Registry::Stub> registry_;
  std::unique_ptr<predlog::v1::Replay::Stub> replay_;
};

TEST_F(ReplayServiceTest, RerunReproducesEveryServedPredictionBitForBit) {
  const Models& models = TrainedModels();
  RegisterOrDie("v1", models.v1);
  RegisterOrDie("v2", models.v2);
  ASSERT_OK_AND_ASSIGN(auto v1, ServingBooster::Load(models.v1));
  ASSERT_OK_AND_ASSIGN(auto v2, ServingBooster::Load(models.v2));
  std::vector<Served> served;
  for (int i = 0; i < 60; ++i) served.push_back(Serve(*v1, "v1", i));

  for (size_t i = 0; i < served.size(); ++i) {
    predlog::v1::RerunRequest request;
    request.set_prediction_id(served[i].prediction_id);
    request.mutable_against()->set_name("credit");
    request.mutable_against()->set_version("v2");
    predlog::v1::RerunReport report;
    grpc::Status status = Rerun(request, &report);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_TRUE(report.exact_match()) << i << ": " << report.DebugString();
    ASSERT_EQ(report.max_abs_diff(), 0.0);
    ASSERT_EQ(report.reproduced_output().float_scores_size(), 1);
    ASSERT_EQ(Bits(report.reproduced_output().float_scores(0)), Bits(served[i].scores[0]));
    ASSERT_TRUE(report.artifact_verified());
    ASSERT_EQ(report.artifact_sha256(), storage::ToHex(storage::Sha256(models.v1)));
    ASSERT_FALSE(report.pipeline_skew());
    ASSERT_FALSE(report.runtime_version_skew());
    ASSERT_EQ(report.runtime_version(), XgboostVersion());
    // The counterfactual is v2's own output on the same row.
    const float* row = &models.data.x[i * kFeatures];
    ASSERT_OK_AND_ASSIGN(std::vector<float> v2_scores,
                         v2->Predict(absl::Span<const float>(row, kFeatures)));
    ASSERT_EQ(report.counterfactual().model().version(), "v2");
    ASSERT_EQ(report.counterfactual().model().artifact_sha256(),
              storage::ToHex(storage::Sha256(models.v2)));
    ASSERT_EQ(Bits(report.counterfactual().output().float_scores(0)), Bits(v2_scores[0]));
    ASSERT_DOUBLE_EQ(report.counterfactual().score_deltas(0),
                     double(v2_scores[0]) - double(served[i].scores[0]));
  }
  // Drifted training makes v2 disagree with v1 somewhere; otherwise the
  // counterfactual check above proves nothing.
  int differ = 0;
  for (size_t i = 0; i < served.size(); ++i) {
    const float* row = &models.data.x[i * kFeatures];
    differ += (*v2->Predict(absl::Span<const float>(row, kFeatures)))[0] != served[i].scores[0];
  }
  EXPECT_GT(differ, 30);

  // Two artifacts loaded once each; every other rerun used the cache.
  httplib::Client http("http://" + server_->http_address());
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics) << "no /metrics";
  EXPECT_THAT(metrics->body, HasSubstr("predlog_model_cache_loads_total 2\n"));
  EXPECT_THAT(metrics->body, HasSubstr("predlog_model_cache_hits_total 118\n"));
}

TEST_F(ReplayServiceTest, ExplanationContributionsSumToTheMargin) {
  const Models& models = TrainedModels();
  RegisterOrDie("v1", models.v1);
  ASSERT_OK_AND_ASSIGN(auto v1, ServingBooster::Load(models.v1));
  for (int i = 0; i < 10; ++i) {
    Served served = Serve(*v1, "v1", i);
    predlog::v1::RerunRequest request;
    request.set_prediction_id(served.prediction_id);
    request.set_explain(true);
    predlog::v1::RerunReport report;
    grpc::Status status = Rerun(request, &report);
    ASSERT_TRUE(status.ok()) << status.error_message();
    const predlog::v1::Explanation& explanation = report.explanation();
    ASSERT_EQ(explanation.contributions_size(), kFeatures);
    const float* row = &models.data.x[size_t(i) * kFeatures];
    ASSERT_OK_AND_ASSIGN(std::vector<float> margin,
                         v1->PredictMargin(absl::Span<const float>(row, kFeatures)));
    EXPECT_FLOAT_EQ(explanation.margin(), margin[0]);
    double sum = explanation.bias();
    double previous = INFINITY;
    for (const auto& c : explanation.contributions()) {
      sum += c.contribution();
      EXPECT_LE(std::fabs(c.contribution()), previous) << "sorted by magnitude";
      previous = std::fabs(c.contribution());
      // Each contribution carries the feature's recorded value.
      const auto& names = models.data.feature_names;
      const int f = int(std::find(names.begin(), names.end(), c.feature().name()) - names.begin());
      ASSERT_LT(f, kFeatures) << c.feature().name();
      if (!std::isnan(row[f])) {
        EXPECT_EQ(c.feature().float_value(), row[f]);
      }
    }
    EXPECT_NEAR(sum, margin[0], 1e-4 * std::max(1.0, std::fabs(double(margin[0]))));
    // The probability is the logistic of the margin.
    EXPECT_NEAR(1 / (1 + std::exp(-explanation.margin())), served.scores[0], 1e-6);
  }
}

TEST_F(ReplayServiceTest, TamperedArtifactIsAnErrorNamingTheDigestNotAnAnswer) {
  const Models& models = TrainedModels();
  RegisterOrDie("v1", models.v1);
  ASSERT_OK_AND_ASSIGN(auto v1, ServingBooster::Load(models.v1));
  Served served = Serve(*v1, "v1", 3);
  const std::string path = ArtifactPath(models.v1);
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  FlipAByteOfTheStoredArtifact(models.v1);
  predlog::v1::RerunReport report;
  grpc::Status status = Rerun(served.prediction_id, &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr(storage::ToHex(storage::Sha256(models.v1))));
  EXPECT_THAT(status.error_message(), HasSubstr("corrupt"));

  std::filesystem::remove(path);
  status = Rerun(served.prediction_id, &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr(storage::ToHex(storage::Sha256(models.v1))));
  EXPECT_THAT(status.error_message(), HasSubstr("not in the artifact store"));
}

TEST_F(ReplayServiceTest, AnArtifactChangedAfterItsModelWasLoadedIsFoundByTheNextRerun) {
  // The first rerun loads and caches the model; then one byte of the
  // artifact file changes. The next rerun must not say "verified".
  const Models& models = TrainedModels();
  RegisterOrDie("v1", models.v1);
  ASSERT_OK_AND_ASSIGN(auto v1, ServingBooster::Load(models.v1));
  Served served = Serve(*v1, "v1", 9);
  predlog::v1::RerunReport report;
  ASSERT_TRUE(Rerun(served.prediction_id, &report).ok());
  ASSERT_TRUE(report.artifact_verified());
  const absl::Time first_hash = storage::TimeFromProto(report.artifact_hashed_at());

  const std::string path = ArtifactPath(models.v1);
  // A changed ctime with the same bytes: hashed again, still verified.
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  ASSERT_TRUE(Rerun(served.prediction_id, &report).ok());
  EXPECT_TRUE(report.artifact_verified());
  EXPECT_GT(storage::TimeFromProto(report.artifact_hashed_at()), first_hash);
  FlipAByteOfTheStoredArtifact(models.v1);
  grpc::Status status = Rerun(served.prediction_id, &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("corrupt"));
}

TEST_F(ReplayServiceTest, PipelineSkewIsFlaggedAndOutputsStillCompared) {
  const Models& models = TrainedModels();
  RegisterOrDie("v1", models.v1);
  ASSERT_OK_AND_ASSIGN(auto v1, ServingBooster::Load(models.v1));
  Served served = Serve(*v1, "v1", 5, /*pipeline_version=*/"4");
  predlog::v1::RerunReport report;
  grpc::Status status = Rerun(served.prediction_id, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(report.pipeline_skew());
  EXPECT_EQ(report.prediction_pipeline().version(), "4");
  EXPECT_EQ(report.training_pipeline().version(), "3");
  EXPECT_THAT(report.findings(), ::testing::Contains(HasSubstr("pipeline skew")));
  EXPECT_TRUE(report.exact_match());
}

TEST_F(ReplayServiceTest, InputNamesAreComparedWithTheArtifactsAndTheFirstMismatchNamed) {
  // The serving code swapped two columns: the model computed on the values in
  // the order it was given, so the output reproduces bit for bit, but the
  // logged names say the columns were not the ones it was trained on. The
  // model is registered without feature names: the artifact's own are used.
  const Models& models = TrainedModels();
  predlog::v1::RegisterModelResponse response;
  ASSERT_TRUE(Register("credit", "v1", models.v1, &response, "xgboost", "",
                       /*feature_names=*/false)
                  .ok());
  ASSERT_OK_AND_ASSIGN(auto v1, ServingBooster::Load(models.v1));
  std::vector<std::string> swapped = models.data.feature_names;
  std::swap(swapped[0], swapped[1]);
  Served served = Serve(*v1, "v1", 6, "3", "", {}, 0, swapped);
  predlog::v1::RerunReport report;
  grpc::Status status = Rerun(served.prediction_id, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(report.exact_match());
  EXPECT_TRUE(report.input_names_mismatch());
  EXPECT_EQ(report.input_mismatch(),
            absl::StrCat("input 0 is named ", swapped[0], " but the artifact names feature 0 ",
                         models.data.feature_names[0]));
  EXPECT_THAT(report.findings(), ::testing::Contains(HasSubstr("input names")));

  // Inputs in the trained order: no finding.
  Served fine = Serve(*v1, "v1", 7);
  ASSERT_TRUE(Rerun(fine.prediction_id, &report).ok());
  EXPECT_FALSE(report.input_names_mismatch());
}

TEST_F(ReplayServiceTest, AnUnrecordedPipelineIsUnknownNotSkew) {
  const Models& models = TrainedModels();
  RegisterOrDie("v1", models.v1);
  ASSERT_OK_AND_ASSIGN(auto v1, ServingBooster::Load(models.v1));
  Served served = Serve(*v1, "v1", 8, /*pipeline_version=*/"");
  predlog::v1::RerunReport report;
  grpc::Status status = Rerun(served.prediction_id, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(report.pipeline_skew());
  EXPECT_TRUE(report.prediction_pipeline_unrecorded());
  EXPECT_THAT(report.findings(),
              ::testing::Contains(HasSubstr("the prediction recorded no feature pipeline")));
  EXPECT_THAT(report.findings(), ::testing::Not(::testing::Contains(HasSubstr("pipeline skew:"))));
}

TEST_F(ReplayServiceTest, PreciseErrorsForUnknownPredictionsModelsAndFrameworks) {
  const Models& models = TrainedModels();
  predlog::v1::RerunReport report;
  grpc::Status status = Rerun("no-such-prediction", &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no-such-prediction"));
  EXPECT_EQ(Rerun("", &report).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // A prediction of a model nobody registered.
  ASSERT_OK_AND_ASSIGN(auto v1, ServingBooster::Load(models.v1));
  Served orphan = Serve(*v1, "v9", 1);
  status = Rerun(orphan.prediction_id, &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("credit@v9 is not registered"));

  // A framework predlogd cannot run.
  predlog::v1::RegisterModelResponse response;
  ASSERT_TRUE(Register("credit", "sk1", "pickled-bytes", &response, "sklearn").ok());
  Served sk = Serve(*v1, "sk1", 2);
  status = Rerun(sk.prediction_id, &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(status.error_message(), HasSubstr("sklearn"));

  // A counterfactual model that does not exist.
  RegisterOrDie("v1", models.v1);
  Served ok = Serve(*v1, "v1", 4);
  predlog::v1::RerunRequest request;
  request.set_prediction_id(ok.prediction_id);
  request.mutable_against()->set_name("credit");
  request.mutable_against()->set_version("v7");
  status = Rerun(request, &report);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("credit@v7"));
}

TEST_F(ReplayServiceTest, RegistryIsWriteOnceAndDeploysNeedARegisteredModel) {
  const Models& models = TrainedModels();
  predlog::v1::RegisterModelResponse response;
  ASSERT_TRUE(Register("credit", "v1", models.v1, &response).ok());
  EXPECT_EQ(response.receipt().outcome(), LogReceipt::APPLIED);
  EXPECT_EQ(response.model().artifact_sha256(), storage::ToHex(storage::Sha256(models.v1)));
  EXPECT_EQ(response.artifact_size_bytes(), models.v1.size());
  // Same bytes and metadata again: a no-op.
  ASSERT_TRUE(Register("credit", "v1", models.v1, &response).ok());
  EXPECT_EQ(response.receipt().outcome(), LogReceipt::DUPLICATE);
  // Other bytes under the same name@version: refused.
  grpc::Status status = Register("credit", "v1", models.v2, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << status.error_message();
  // A declared digest that the upload does not match: refused, nothing recorded.
  status = Register("credit", "v5", models.v2, &response, "xgboost",
                    storage::ToHex(storage::Sha256("something else")));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("artifact_sha256"));
  // An upload cancelled midway registers nothing: the complete one still can.
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    predlog::v1::RegisterModelResponse partial;
    auto stream = registry_->RegisterModel(&context, &partial);
    predlog::v1::RegisterModelRequest first;
    first.mutable_metadata()->mutable_model()->set_name("credit");
    first.mutable_metadata()->mutable_model()->set_version("v6");
    first.mutable_metadata()->set_framework("xgboost");
    ASSERT_TRUE(stream->Write(first));
    predlog::v1::RegisterModelRequest chunk;
    chunk.set_chunk(models.v2.substr(0, models.v2.size() / 2));
    ASSERT_TRUE(stream->Write(chunk));
    context.TryCancel();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
    predlog::v1::GetModelRequest get;
    get.set_name("credit");
    get.set_version("v6");
    predlog::v1::ModelRecord record;
    grpc::ClientContext get_context;
    EXPECT_EQ(registry_->GetModel(&get_context, get, &record).error_code(),
              grpc::StatusCode::NOT_FOUND);
    ASSERT_TRUE(Register("credit", "v6", models.v2, &response).ok());
    EXPECT_EQ(response.receipt().outcome(), LogReceipt::APPLIED);
    EXPECT_EQ(response.artifact_size_bytes(), models.v2.size());
  }
  // No metadata first.
  {
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    auto stream = registry_->RegisterModel(&context, &response);
    predlog::v1::RegisterModelRequest chunk;
    chunk.set_chunk("bytes");
    stream->Write(chunk);
    stream->WritesDone();
    status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("metadata"));
  }

  auto deploy = [&](const std::string& version, double fraction,
                    predlog::v1::RegistryReceipt* receipt) {
    predlog::v1::DeployModelRequest request;
    request.set_actor("release-bot");
    auto* d = request.mutable_deployment();
    d->set_route(kRoute);
    d->mutable_model()->set_name("credit");
    d->mutable_model()->set_version(version);
    d->set_traffic_fraction(fraction);
    d->set_reason("test");
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return registry_->DeployModel(&context, request, receipt);
  };
  predlog::v1::RegistryReceipt receipt;
  status = deploy("v2", 0.1, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("credit@v2 is not registered"));
  ASSERT_TRUE(deploy("v1", 1.0, &receipt).ok());
  const absl::Time before_canary = absl::Now();
  RegisterOrDie("v2", models.v2);
  ASSERT_TRUE(deploy("v1", 0.9, &receipt).ok());
  ASSERT_TRUE(deploy("v2", 0.1, &receipt).ok());
  EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);
  EXPECT_EQ(receipt.position().shard(), "predlog.registry-0");

  predlog::v1::ListModelsRequest list_request;
  predlog::v1::ListModelsResponse list;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(registry_->ListModels(&context, list_request, &list).ok());
  }
  ASSERT_EQ(list.models_size(), 3);  // v1, v2, v6
  EXPECT_EQ(list.models(0).registration().model().version(), "v1");
  ASSERT_EQ(list.models(1).deployments_size(), 1);
  EXPECT_EQ(list.models(1).deployments(0).traffic_fraction(), 0.1);
  EXPECT_EQ(list.models(1).deployments(0).model().artifact_sha256(),
            storage::ToHex(storage::Sha256(models.v2)));

  // The registry as it was before the canary: v1 alone, at full traffic.
  predlog::v1::GetRegistryAtRequest at_request;
  storage::TimeToProto(before_canary, at_request.mutable_as_of()->mutable_time());
  predlog::v1::RegistryAtResponse at;
  {
    grpc::ClientContext context;
    grpc::Status s = replay_->GetRegistryAt(&context, at_request, &at);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  ASSERT_EQ(at.models_size(), 2);  // v1 and v6; v2 came later
  EXPECT_EQ(at.models(0).registration().provenance().code_commit(), "4f2a9c1");
  EXPECT_EQ(at.models(1).registration().model().version(), "v6");
  ASSERT_EQ(at.deployments_size(), 1);
  EXPECT_EQ(at.deployments(0).model().version(), "v1");
  EXPECT_EQ(at.deployments(0).traffic_fraction(), 1.0);
}

TEST_F(ReplayServiceTest, RerunTraceOrdersTheChainAndNamesTheCorruptStep) {
  const Models& models = TrainedModels();
  RegisterOrDie("v1", models.v1);
  RegisterOrDie("v2", models.v2);
  RegisterOrDie("v3", models.v3);
  ASSERT_OK_AND_ASSIGN(auto v1, ServingBooster::Load(models.v1));
  ASSERT_OK_AND_ASSIGN(auto v2, ServingBooster::Load(models.v2));
  ASSERT_OK_AND_ASSIGN(auto v3, ServingBooster::Load(models.v3));
  // Logged children first, so served order alone would be wrong; the middle
  // step's recorded output is off by 1e-3.
  const std::string third = "p-v3-20t1", second = "p-v2-20t1", first = "p-v1-20t1";
  Serve(*v3, "v3", 20, "3", "t1", {second});
  Serve(*v2, "v2", 20, "3", "t1", {first}, /*corrupt_by=*/1e-3f);
  Serve(*v1, "v1", 20, "3", "t1");
  Serve(*v1, "v1", 21, "3", "t2");  // another trace

  predlog::v1::RerunTraceRequest request;
  request.set_trace_id("t1");
  predlog::v1::RerunTraceReport report;
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  grpc::Status status = replay_->RerunTrace(&context, request, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(report.steps_size(), 3);
  EXPECT_EQ(report.steps(0).prediction_id(), first);
  EXPECT_EQ(report.steps(1).prediction_id(), second);
  EXPECT_EQ(report.steps(2).prediction_id(), third);
  EXPECT_TRUE(report.steps(0).exact_match());
  EXPECT_FALSE(report.steps(1).exact_match());
  EXPECT_NEAR(report.steps(1).max_abs_diff(), 1e-3, 1e-4);
  EXPECT_TRUE(report.steps(2).exact_match());
  EXPECT_EQ(report.first_divergent_prediction_id(), second);
  EXPECT_EQ(report.first_divergent_step(), 1);

  grpc::ClientContext unknown_context;
  request.set_trace_id("t404");
  EXPECT_EQ(replay_->RerunTrace(&unknown_context, request, &report).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ReplayServiceTest, EntityAtShowsTheCustomerRecordAsItWasAtDecisionTime) {
  auto change = [&](const std::vector<std::pair<std::string, double>>& set) {
    predlog::v1::ChangeEntityRequest request;
    request.set_actor("crm");
    auto* c = request.mutable_change();
    c->set_entity_type("customer");
    c->set_entity_id("customer-42");
    for (const auto& [name, value] : set) (*c->mutable_set_fields())[name].set_double_value(value);
    LogReceipt receipt;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::Status status = log_->ChangeEntity(&context, request, &receipt);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);
    return receipt;
  };
  change({{"income", 52000}, {"credit_limit", 5000}});
  absl::SleepFor(absl::Milliseconds(5));
  const absl::Time decision = absl::Now();
  absl::SleepFor(absl::Milliseconds(5));
  // The decision, logged by a serving clock an hour behind: its served_at
  // and recorded_at say nothing about where it is in the log.
  LogReceipt logged;
  {
    predlog::v1::LogRequest request;
    auto* p = request.mutable_prediction();
    p->set_prediction_id("p-decision-42");
    p->set_subject_id("customer-42");
    storage::TimeToProto(absl::Now() - absl::Hours(1), p->mutable_served_at());
    p->mutable_model()->set_name("credit");
    p->mutable_model()->set_version("v1");
    p->mutable_output()->add_float_scores(0.5f);
    auto* input = p->add_inputs();
    input->set_name("income");
    input->set_double_value(52000);
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::Status status = log_->Log(&context, request, &logged);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_EQ(logged.outcome(), LogReceipt::APPLIED);
  // A registry record appended after the decision, before the change below.
  RegisterOrDie("v1", TrainedModels().v1);
  absl::SleepFor(absl::Milliseconds(5));
  LogReceipt later = change({{"credit_limit", 2000}});

  auto at = [&](absl::Time t) {
    predlog::v1::GetEntityAtRequest request;
    request.set_entity_type("customer");
    request.set_entity_id("customer-42");
    storage::TimeToProto(t, request.mutable_as_of()->mutable_time());
    predlog::v1::EntityAtResponse response;
    grpc::ClientContext context;
    grpc::Status status = replay_->GetEntityAt(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  };
  predlog::v1::EntityAtResponse then = at(decision);
  EXPECT_TRUE(then.exists());
  EXPECT_EQ(then.state().fields().at("credit_limit").double_value(), 5000);
  EXPECT_EQ(then.cut().shard(), later.position().shard());
  predlog::v1::EntityAtResponse now = at(absl::Now());
  EXPECT_EQ(now.state().fields().at("credit_limit").double_value(), 2000);
  EXPECT_EQ(now.state().fields().at("income").double_value(), 52000);
  EXPECT_FALSE(at(absl::FromUnixSeconds(0)).exists());

  // Right after a record: the prediction's own (same shard: up to and
  // including it), the registration's (another shard: what this one had
  // appended by then), the later change's.
  auto after = [&](const predlog::v1::Position& position, grpc::Status* status) {
    predlog::v1::GetEntityAtRequest request;
    request.set_entity_type("customer");
    request.set_entity_id("customer-42");
    *request.mutable_as_of()->mutable_after() = position;
    predlog::v1::EntityAtResponse response;
    grpc::ClientContext context;
    *status = replay_->GetEntityAt(&context, request, &response);
    return response;
  };
  grpc::Status status;
  predlog::v1::EntityAtResponse at_decision = after(logged.position(), &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(at_decision.state().fields().at("credit_limit").double_value(), 5000);
  EXPECT_EQ(at_decision.cut().index(), logged.position().index() + 1);
  predlog::v1::Position registered;
  registered.set_shard("predlog.registry-0");
  registered.set_index(0);
  predlog::v1::EntityAtResponse at_registration = after(registered, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(at_registration.state().fields().at("credit_limit").double_value(), 5000);
  EXPECT_EQ(at_registration.cut().index(), logged.position().index() + 1);
  EXPECT_EQ(after(later.position(), &status).state().fields().at("credit_limit").double_value(),
            2000);
  predlog::v1::Position unknown = logged.position();
  unknown.set_shard("predlog.events-99");
  after(unknown, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("predlog.events-99"));
  predlog::v1::Position beyond = later.position();
  beyond.set_index(beyond.index() + 1);
  after(beyond, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  // Bad requests name the field.
  predlog::v1::GetEntityAtRequest bad;
  bad.set_entity_type("customer");
  predlog::v1::EntityAtResponse response;
  grpc::ClientContext context;
  status = replay_->GetEntityAt(&context, bad, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("entity_id"));
}

}  // namespace
}  // namespace predlog::replay
