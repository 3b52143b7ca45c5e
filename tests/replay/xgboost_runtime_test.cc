#include "replay/xgboost_runtime.h"

#include <xgboost/c_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/model_runtime.h"
#include "services/cli/credit_models.h"
#include "tests/testing/status_matchers.h"

namespace predlog::replay {
namespace {

using ::predlog::demo::CreditData;
using ::predlog::demo::MakeCreditData;
using ::predlog::demo::ServingBooster;
using ::predlog::demo::TrainOptions;
using ::predlog::demo::TrainXgboostModel;
using ::predlog::testing::IsOk;
using ::predlog::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

constexpr int kFeatures = 30;
constexpr int kRows = 200;

uint32_t Bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

std::vector<uint32_t> Bits(const std::vector<float>& values) {
  std::vector<uint32_t> bits;
  for (float v : values) bits.push_back(Bits(v));
  return bits;
}

absl::Span<const float> Row(const CreditData& data, int i) {
  return absl::MakeConstSpan(data.x).subspan(static_cast<size_t>(i) * data.features, data.features);
}

// One model for the whole suite: training is the slow part.
class XgboostRuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    TrainOptions options;
    options.trees = 100;
    absl::StatusOr<std::string> artifact =
        TrainXgboostModel(MakeCreditData(2000, kFeatures, /*seed=*/7), options);
    ASSERT_THAT(artifact, IsOk());
    artifact_ = new std::string(*std::move(artifact));
  }
  static void TearDownTestSuite() {
    delete artifact_;
    artifact_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(artifact_, nullptr);
    absl::StatusOr<std::unique_ptr<LoadedModel>> model = runtime_->Load(*artifact_);
    ASSERT_THAT(model, IsOk());
    model_ = *std::move(model);
  }

  static std::string* artifact_;
  std::unique_ptr<ModelRuntime> runtime_ = NewXgboostRuntime();
  std::unique_ptr<LoadedModel> model_;
  // Rows the model was not trained on; months_employed is NaN in some of them.
  CreditData holdout_ = MakeCreditData(kRows, kFeatures, /*seed=*/8);
};
std::string* XgboostRuntimeTest::artifact_ = nullptr;

TEST_F(XgboostRuntimeTest, Framework_IsXgboost) { EXPECT_EQ(runtime_->framework(), "xgboost"); }

TEST_F(XgboostRuntimeTest, LibraryVersion_IsTheLinkedXgboostVersion) {
  int major = -1, minor = -1, patch = -1;
  XGBoostVersion(&major, &minor, &patch);
  EXPECT_EQ(runtime_->library_version(),
            std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch));
}

TEST_F(XgboostRuntimeTest, Predict_EqualsServingBoosterBitwise) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingBooster> serving, ServingBooster::Load(*artifact_));
  int rows_with_missing = 0;
  for (int i = 0; i < kRows; ++i) {
    absl::Span<const float> row = Row(holdout_, i);
    for (float v : row) rows_with_missing += std::isnan(v) ? 1 : 0;
    ASSERT_OK_AND_ASSIGN(std::vector<float> served, serving->Predict(row));
    ASSERT_OK_AND_ASSIGN(std::vector<float> replayed, model_->Predict(row));
    ASSERT_THAT(replayed, SizeIs(1));
    EXPECT_EQ(Bits(replayed), Bits(served)) << "row " << i;
  }
  EXPECT_GT(rows_with_missing, 0) << "the holdout should exercise missing values";
}

TEST_F(XgboostRuntimeTest, PredictMargin_EqualsServingBoosterBitwise) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingBooster> serving, ServingBooster::Load(*artifact_));
  for (int i = 0; i < kRows; ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<float> served, serving->PredictMargin(Row(holdout_, i)));
    ASSERT_OK_AND_ASSIGN(std::vector<float> replayed, model_->PredictMargin(Row(holdout_, i)));
    EXPECT_EQ(Bits(replayed), Bits(served)) << "row " << i;
  }
}

TEST_F(XgboostRuntimeTest, Predict_AllMissingRowEqualsServingBooster) {
  const std::vector<float> row(kFeatures, std::numeric_limits<float>::quiet_NaN());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingBooster> serving, ServingBooster::Load(*artifact_));
  ASSERT_OK_AND_ASSIGN(std::vector<float> served, serving->Predict(row));
  ASSERT_OK_AND_ASSIGN(std::vector<float> replayed, model_->Predict(row));
  EXPECT_EQ(Bits(replayed), Bits(served));
}

TEST_F(XgboostRuntimeTest, PredictMargin_ThroughSigmoidIsPredict) {
  for (int i = 0; i < kRows; ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<float> margin, model_->PredictMargin(Row(holdout_, i)));
    ASSERT_OK_AND_ASSIGN(std::vector<float> value, model_->Predict(Row(holdout_, i)));
    ASSERT_THAT(margin, SizeIs(1));
    ASSERT_THAT(value, SizeIs(1));
    EXPECT_NEAR(1 / (1 + std::exp(-static_cast<double>(margin[0]))), value[0], 1e-6) << "row " << i;
  }
}

TEST_F(XgboostRuntimeTest, Contributions_OnePerFeaturePlusBiasSummingToMargin) {
  for (int i = 0; i < kRows; ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<float> contributions, model_->Contributions(Row(holdout_, i)));
    ASSERT_OK_AND_ASSIGN(std::vector<float> margin, model_->PredictMargin(Row(holdout_, i)));
    ASSERT_THAT(contributions, SizeIs(kFeatures + 1));
    double sum = 0;
    for (float c : contributions) sum += c;
    EXPECT_NEAR(sum, margin[0], 1e-4 * std::max(1.0, std::fabs(static_cast<double>(margin[0]))))
        << "row " << i;
  }
}

TEST_F(XgboostRuntimeTest, Contributions_ChangeWithTheInput) {
  // Guards against a constant (e.g. bias-only) answer passing the sum check.
  ASSERT_OK_AND_ASSIGN(std::vector<float> first, model_->Contributions(Row(holdout_, 0)));
  ASSERT_OK_AND_ASSIGN(std::vector<float> second, model_->Contributions(Row(holdout_, 1)));
  EXPECT_NE(Bits(first), Bits(second));
  EXPECT_EQ(first.back(), second.back()) << "the bias term does not depend on the row";
}

TEST_F(XgboostRuntimeTest, Predict_WrongRowWidthIsInvalidArgumentNamingBothCounts) {
  const std::vector<float> narrow(kFeatures - 1, 0.5f);
  EXPECT_THAT(model_->Predict(narrow), StatusIs(absl::StatusCode::kInvalidArgument,
                                                AllOf(HasSubstr("29"), HasSubstr("30"))));
  const std::vector<float> wide(kFeatures + 1, 0.5f);
  EXPECT_THAT(model_->PredictMargin(wide), StatusIs(absl::StatusCode::kInvalidArgument,
                                                    AllOf(HasSubstr("31"), HasSubstr("30"))));
  EXPECT_THAT(model_->Contributions({}),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("0"), HasSubstr("30"))));
}

TEST_F(XgboostRuntimeTest, NumFeaturesAndFeatureNames_ComeFromTheModel) {
  EXPECT_EQ(model_->num_features(), kFeatures);
  ASSERT_EQ(model_->feature_names(), holdout_.feature_names);
  EXPECT_EQ(model_->feature_names()[0], "income");
  EXPECT_EQ(model_->feature_names()[29], "f29");
}

TEST_F(XgboostRuntimeTest, MemoryBytes_IsTwiceTheArtifact) {
  EXPECT_EQ(model_->memory_bytes(), artifact_->size() * 2);
}

TEST_F(XgboostRuntimeTest, ConcurrentPredictions_AreBitwiseIdentical) {
  std::vector<uint32_t> expected;
  for (int i = 0; i < kRows; ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<float> value, model_->Predict(Row(holdout_, i)));
    ASSERT_OK_AND_ASSIGN(std::vector<float> contributions, model_->Contributions(Row(holdout_, i)));
    for (float v : value) expected.push_back(Bits(v));
    for (float v : contributions) expected.push_back(Bits(v));
  }
  constexpr int kThreads = 4;
  std::vector<std::vector<uint32_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRows; ++i) {
        absl::StatusOr<std::vector<float>> value = model_->Predict(Row(holdout_, i));
        absl::StatusOr<std::vector<float>> contributions = model_->Contributions(Row(holdout_, i));
        if (!value.ok() || !contributions.ok()) return;  // Caught by the size check below.
        for (float v : *value) got[t].push_back(Bits(v));
        for (float v : *contributions) got[t].push_back(Bits(v));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(got[t], expected) << "thread " << t;
}

TEST_F(XgboostRuntimeTest, Load_ModelWithoutNamesHasNoFeatureNames) {
  CreditData data = MakeCreditData(200, 5, /*seed=*/3);
  data.feature_names.clear();
  TrainOptions options;
  options.trees = 3;
  ASSERT_OK_AND_ASSIGN(std::string artifact, TrainXgboostModel(data, options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<LoadedModel> model, runtime_->Load(artifact));
  EXPECT_EQ(model->num_features(), 5);
  EXPECT_THAT(model->feature_names(), ::testing::IsEmpty());
}

TEST_F(XgboostRuntimeTest, Load_GarbageIsInvalidArgument) {
  std::string random_bytes;
  for (int i = 0; i < 4096; ++i) random_bytes.push_back(static_cast<char>((i * 7919 + 13) % 251));
  const std::string truncated = artifact_->substr(0, artifact_->size() / 2);
  for (const std::string& garbage : {std::string(), std::string("not a model"),
                                     std::string("{\"learner\": 1}"), random_bytes, truncated}) {
    EXPECT_THAT(runtime_->Load(garbage),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("xgboost"), Not(HasSubstr("Stack trace")))))
        << "artifact of " << garbage.size() << " bytes";
  }
}

TEST_F(XgboostRuntimeTest, Load_ErrorCarriesTheLibrarysMessage) {
  // XGBoost 1.7's own words for bytes that are neither JSON nor its legacy binary format.
  EXPECT_THAT(runtime_->Load("not a model"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wrong model format")));
}

TEST(RuntimeRegistryTest, WithBuiltins_FindsXgboost) {
  RuntimeRegistry registry = RuntimeRegistry::WithBuiltins();
  EXPECT_THAT(registry.frameworks(), ElementsAre("xgboost"));
  ASSERT_OK_AND_ASSIGN(const ModelRuntime* runtime, registry.Find("xgboost"));
  EXPECT_EQ(runtime->framework(), "xgboost");
}

TEST(RuntimeRegistryTest, Find_UnknownFrameworkIsUnimplementedNamingItAndTheSupportedOnes) {
  RuntimeRegistry registry = RuntimeRegistry::WithBuiltins();
  EXPECT_THAT(registry.Find("sklearn"),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr("sklearn"), HasSubstr("xgboost"))));
  EXPECT_THAT(registry.Find("XGBoost"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("XGBoost")));
}

TEST(CreditDataTest, SameSeedSameData_DriftChangesTheModel) {
  const CreditData a = MakeCreditData(500, 12, /*seed=*/5);
  const CreditData b = MakeCreditData(500, 12, /*seed=*/5);
  EXPECT_EQ(Bits(a.x), Bits(b.x));  // Bitwise: NaN != NaN.
  EXPECT_EQ(a.y, b.y);
  const CreditData drifted = MakeCreditData(500, 12, /*seed=*/5, /*drift=*/1);
  TrainOptions options;
  options.trees = 10;
  ASSERT_OK_AND_ASSIGN(std::string base_artifact, TrainXgboostModel(a, options));
  ASSERT_OK_AND_ASSIGN(std::string drifted_artifact, TrainXgboostModel(drifted, options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingBooster> base, ServingBooster::Load(base_artifact));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ServingBooster> moved,
                       ServingBooster::Load(drifted_artifact));
  int differing = 0;
  double default_rate = 0, drifted_default_rate = 0;
  for (int i = 0; i < a.rows; ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<float> p, base->Predict(Row(a, i)));
    ASSERT_OK_AND_ASSIGN(std::vector<float> q, moved->Predict(Row(a, i)));
    differing += p != q ? 1 : 0;
    default_rate += a.y[i] / a.rows;
    drifted_default_rate += drifted.y[i] / a.rows;
  }
  EXPECT_GT(differing, a.rows / 2);
  EXPECT_GT(drifted_default_rate, default_rate);
  EXPECT_GT(default_rate, 0.05) << "both classes should occur";
  EXPECT_LT(default_rate, 0.95) << "both classes should occur";
}

TEST(CreditDataTest, TrainXgboostModel_RejectsInconsistentData) {
  CreditData data = MakeCreditData(10, 3, /*seed=*/1);
  data.y.pop_back();
  EXPECT_THAT(TrainXgboostModel(data, TrainOptions()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("y 9")));
}

}  // namespace
}  // namespace predlog::replay
