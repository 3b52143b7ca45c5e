#include "replay/model_cache.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/xgboost_runtime.h"
#include "services/cli/credit_models.h"
#include "storage/sha256.h"
#include "tests/testing/status_matchers.h"

namespace predlog::replay {
namespace {

using ::predlog::storage::Digest;
using ::predlog::storage::Sha256;
using ::predlog::testing::IsOk;
using ::predlog::testing::StatusIs;
using ::testing::HasSubstr;

// A model whose memory_bytes() is its artifact's size, so tests set sizes exactly.
class FakeModel final : public LoadedModel {
 public:
  explicit FakeModel(size_t bytes) : bytes_(bytes) {}
  absl::StatusOr<std::vector<float>> Predict(absl::Span<const float>) const override {
    return std::vector<float>{0.5f};
  }
  absl::StatusOr<std::vector<float>> PredictMargin(absl::Span<const float>) const override {
    return std::vector<float>{0.0f};
  }
  absl::StatusOr<std::vector<float>> Contributions(absl::Span<const float>) const override {
    return std::vector<float>{0.0f};
  }
  int num_features() const override { return 0; }
  std::vector<std::string> feature_names() const override { return {}; }
  size_t memory_bytes() const override { return bytes_; }

 private:
  size_t bytes_;
};

class FakeRuntime final : public ModelRuntime {
 public:
  explicit FakeRuntime(std::string framework = "fake") : framework_(std::move(framework)) {}
  std::string framework() const override { return framework_; }
  std::string library_version() const override { return "0"; }
  absl::StatusOr<std::unique_ptr<LoadedModel>> Load(absl::string_view artifact) const override {
    ++loads;
    return std::make_unique<FakeModel>(artifact.size());
  }
  mutable std::atomic<int> loads{0};

 private:
  std::string framework_;
};

// An artifact of `bytes` bytes, distinct per `tag`.
std::string Artifact(char tag, size_t bytes) { return std::string(bytes, tag); }

// read_artifact for `artifact`, counting its calls in *reads.
auto Reader(const std::string& artifact, std::atomic<int>* reads) {
  return [&artifact, reads]() -> absl::StatusOr<std::string> {
    ++*reads;
    return artifact;
  };
}

TEST(ModelCacheTest, GetOrLoad_SecondCallIsAHitOnTheSameModel) {
  ModelCache cache(/*max_bytes=*/1000);
  FakeRuntime runtime;
  const std::string artifact = Artifact('a', 100);
  std::atomic<int> reads{0};
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const LoadedModel> first,
                       cache.GetOrLoad(Sha256(artifact), runtime, Reader(artifact, &reads)));
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const LoadedModel> second,
                       cache.GetOrLoad(Sha256(artifact), runtime, Reader(artifact, &reads)));
  EXPECT_EQ(first.get(), second.get());
  EXPECT_EQ(reads, 1);
  const ModelCache::Stats stats = cache.stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.evictions, 0u);
  EXPECT_EQ(stats.bytes, 100u);
  EXPECT_EQ(stats.models, 1u);
}

TEST(ModelCacheTest, GetOrLoad_KeyIncludesTheFramework) {
  ModelCache cache(/*max_bytes=*/1000);
  FakeRuntime fake("fake");
  FakeRuntime other("other");
  const std::string artifact = Artifact('a', 100);
  std::atomic<int> reads{0};
  ASSERT_OK_AND_ASSIGN(auto first,
                       cache.GetOrLoad(Sha256(artifact), fake, Reader(artifact, &reads)));
  ASSERT_OK_AND_ASSIGN(auto second,
                       cache.GetOrLoad(Sha256(artifact), other, Reader(artifact, &reads)));
  EXPECT_NE(first.get(), second.get());
  EXPECT_EQ(cache.stats().misses, 2u);
  EXPECT_EQ(cache.stats().models, 2u);
}

TEST(ModelCacheTest, GetOrLoad_EvictsTheLeastRecentlyUsedToStayUnderTheBound) {
  ModelCache cache(/*max_bytes=*/250);
  FakeRuntime runtime;
  const std::string a = Artifact('a', 100), b = Artifact('b', 100), c = Artifact('c', 100);
  std::atomic<int> reads{0};
  ASSERT_THAT(cache.GetOrLoad(Sha256(a), runtime, Reader(a, &reads)), IsOk());
  ASSERT_THAT(cache.GetOrLoad(Sha256(b), runtime, Reader(b, &reads)), IsOk());
  ASSERT_THAT(cache.GetOrLoad(Sha256(a), runtime, Reader(a, &reads)), IsOk());  // b is now LRU.
  ASSERT_THAT(cache.GetOrLoad(Sha256(c), runtime, Reader(c, &reads)), IsOk());
  ModelCache::Stats stats = cache.stats();
  EXPECT_EQ(stats.evictions, 1u);
  EXPECT_EQ(stats.models, 2u);
  EXPECT_EQ(stats.bytes, 200u);
  EXPECT_EQ(reads, 3);

  ASSERT_THAT(cache.GetOrLoad(Sha256(a), runtime, Reader(a, &reads)), IsOk());
  ASSERT_THAT(cache.GetOrLoad(Sha256(c), runtime, Reader(c, &reads)), IsOk());
  EXPECT_EQ(reads, 3) << "a and c stayed";
  ASSERT_THAT(cache.GetOrLoad(Sha256(b), runtime, Reader(b, &reads)), IsOk());
  EXPECT_EQ(reads, 4) << "b was evicted";
  stats = cache.stats();
  EXPECT_EQ(stats.evictions, 2u);
  EXPECT_EQ(stats.bytes, 200u);
}

TEST(ModelCacheTest, GetOrLoad_OneLoadEvictsAsManyAsNeeded) {
  ModelCache cache(/*max_bytes=*/300);
  FakeRuntime runtime;
  const std::string a = Artifact('a', 100), b = Artifact('b', 100), big = Artifact('z', 250);
  std::atomic<int> reads{0};
  ASSERT_THAT(cache.GetOrLoad(Sha256(a), runtime, Reader(a, &reads)), IsOk());
  ASSERT_THAT(cache.GetOrLoad(Sha256(b), runtime, Reader(b, &reads)), IsOk());
  ASSERT_THAT(cache.GetOrLoad(Sha256(big), runtime, Reader(big, &reads)), IsOk());
  const ModelCache::Stats stats = cache.stats();
  EXPECT_EQ(stats.evictions, 2u);
  EXPECT_EQ(stats.models, 1u);
  EXPECT_EQ(stats.bytes, 250u);
}

TEST(ModelCacheTest, GetOrLoad_ModelLargerThanTheBoundIsReturnedButNotKept) {
  ModelCache cache(/*max_bytes=*/150);
  FakeRuntime runtime;
  const std::string small = Artifact('s', 100), huge = Artifact('h', 200);
  std::atomic<int> reads{0};
  ASSERT_THAT(cache.GetOrLoad(Sha256(small), runtime, Reader(small, &reads)), IsOk());
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const LoadedModel> model,
                       cache.GetOrLoad(Sha256(huge), runtime, Reader(huge, &reads)));
  EXPECT_EQ(model->memory_bytes(), 200u);
  ModelCache::Stats stats = cache.stats();
  EXPECT_EQ(stats.models, 1u) << "the small model is not evicted for one that cannot fit";
  EXPECT_EQ(stats.bytes, 100u);
  EXPECT_EQ(stats.evictions, 0u);
  ASSERT_THAT(cache.GetOrLoad(Sha256(huge), runtime, Reader(huge, &reads)), IsOk());
  EXPECT_EQ(reads, 3) << "the huge model is loaded again";
  EXPECT_EQ(cache.stats().misses, 3u);
}

TEST(ModelCacheTest, GetOrLoad_ConcurrentMissesOnOneDigestReadTheArtifactOnce) {
  constexpr int kThreads = 4;
  ModelCache cache(/*max_bytes=*/1000);
  FakeRuntime runtime;
  const std::string artifact = Artifact('a', 100);
  std::atomic<int> reads{0};
  // The one load holds on until every other caller is waiting on it (each counts as a hit
  // when it starts waiting), so none of them can arrive after the model is cached.
  auto slow_reader = [&]() -> absl::StatusOr<std::string> {
    ++reads;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (cache.stats().hits < kThreads - 1 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return artifact;
  };
  std::vector<std::shared_ptr<const LoadedModel>> models(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      absl::StatusOr<std::shared_ptr<const LoadedModel>> model =
          cache.GetOrLoad(Sha256(artifact), runtime, slow_reader);
      if (model.ok()) models[t] = *model;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(reads, 1);
  EXPECT_EQ(runtime.loads, 1);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_NE(models[t], nullptr) << "thread " << t;
    EXPECT_EQ(models[t].get(), models[0].get());
  }
  EXPECT_EQ(cache.stats().misses, 1u);
  EXPECT_EQ(cache.stats().hits, kThreads - 1u);
}

TEST(ModelCacheTest, GetOrLoad_FailedReadIsNotCached) {
  ModelCache cache(/*max_bytes=*/1000);
  FakeRuntime runtime;
  const std::string artifact = Artifact('a', 100);
  EXPECT_THAT(cache.GetOrLoad(Sha256(artifact), runtime,
                              []() -> absl::StatusOr<std::string> {
                                return absl::UnavailableError("artifact store down");
                              }),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("artifact store down")));
  EXPECT_EQ(cache.stats().models, 0u);
  std::atomic<int> reads{0};
  EXPECT_THAT(cache.GetOrLoad(Sha256(artifact), runtime, Reader(artifact, &reads)), IsOk());
  EXPECT_EQ(reads, 1);
  EXPECT_EQ(cache.stats().misses, 2u);
  EXPECT_EQ(cache.stats().models, 1u);
}

TEST(ModelCacheTest, GetOrLoad_FailedModelLoadIsNotCached) {
  ModelCache cache(/*max_bytes=*/1 << 30);
  std::unique_ptr<ModelRuntime> xgboost = NewXgboostRuntime();
  const std::string garbage = "definitely not a model";
  std::atomic<int> reads{0};
  EXPECT_THAT(cache.GetOrLoad(Sha256(garbage), *xgboost, Reader(garbage, &reads)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("xgboost")));
  EXPECT_THAT(cache.GetOrLoad(Sha256(garbage), *xgboost, Reader(garbage, &reads)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("xgboost")));
  EXPECT_EQ(reads, 2);
  EXPECT_EQ(cache.stats().models, 0u);
  EXPECT_EQ(cache.stats().bytes, 0u);
}

TEST(ModelCacheTest, GetOrLoad_RealXgboostModelPredicts) {
  demo::TrainOptions options;
  options.trees = 5;
  const demo::CreditData data = demo::MakeCreditData(300, 8, /*seed=*/2);
  ASSERT_OK_AND_ASSIGN(std::string artifact, demo::TrainXgboostModel(data, options));
  ModelCache cache(/*max_bytes=*/64 << 20);
  std::unique_ptr<ModelRuntime> xgboost = NewXgboostRuntime();
  std::atomic<int> reads{0};
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<const LoadedModel> model,
                       cache.GetOrLoad(Sha256(artifact), *xgboost, Reader(artifact, &reads)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<demo::ServingBooster> serving,
                       demo::ServingBooster::Load(artifact));
  const absl::Span<const float> row = absl::MakeConstSpan(data.x).subspan(0, data.features);
  ASSERT_OK_AND_ASSIGN(std::vector<float> replayed, model->Predict(row));
  ASSERT_OK_AND_ASSIGN(std::vector<float> served, serving->Predict(row));
  EXPECT_EQ(replayed, served);
  EXPECT_EQ(cache.stats().bytes, artifact.size() * 2);
}

}  // namespace
}  // namespace predlog::replay
