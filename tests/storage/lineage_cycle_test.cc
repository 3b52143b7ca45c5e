// Lineage cycles refused by the fold: a DatasetRegistered or ModelRegistered
// for a new name@version whose parents, followed upstream through registered
// datasets and models, lead back to it is rejected (kept in `rejected`,
// naming the path); chains, diamonds and out-of-order parents are accepted.
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::MakeModelRegistered;
using ::predlog::testing::Msg;
using ::predlog::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::SizeIs;

// name@version pairs.
using Refs = std::vector<std::pair<std::string, std::string>>;

std::string Dataset(const std::string& name, const std::string& version, const Refs& derived_from,
                    const Refs& derived_from_models = {}) {
  predlog::v1::AuditEvent event;
  event.set_event_id("dataset-" + name + "-" + version);
  event.set_actor("data-eng");
  event.set_schema_version(kSchemaVersion);
  auto* d = event.mutable_dataset_registered();
  d->mutable_dataset()->set_name(name);
  d->mutable_dataset()->set_version(version);
  d->mutable_dataset()->set_digest(ToHex(Sha256(name + "@" + version)));
  for (const auto& [n, v] : derived_from) {
    auto* parent = d->add_derived_from();
    parent->set_name(n);
    parent->set_version(v);
  }
  for (const auto& [n, v] : derived_from_models) {
    auto* model = d->add_derived_from_models();
    model->set_name(n);
    model->set_version(v);
  }
  return event.SerializeAsString();
}

std::string Model(const std::string& name, const std::string& version, const Refs& trained_on) {
  predlog::v1::AuditEvent event = MakeModelRegistered(name, version, ToHex(Sha256(name + version)));
  for (const auto& [n, v] : trained_on) {
    auto* dataset = event.mutable_model_registered()->mutable_provenance()->add_datasets();
    dataset->set_name(n);
    dataset->set_version(v);
  }
  return event.SerializeAsString();
}

class LineageCycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ShardOptions options;
    options.dir = dir_.Sub("shard");
    options.name = "predlog.registry-0";
    auto store = ShardStore::Open(options);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  // The outcomes of folding `payloads` as one batch.
  std::vector<FoldOutcome> Apply(const std::vector<std::string>& payloads) {
    std::vector<SourceMessage> messages;
    for (const auto& p : payloads) messages.push_back(Msg("registry", next_offset_++, p));
    auto result = store_->ApplyBatch(messages);
    EXPECT_THAT(result, IsOk());
    std::vector<FoldOutcome> outcomes;
    if (!result.ok()) return outcomes;
    for (const MessageResult& r : result->messages) {
      outcomes.push_back(r.outcome);
      last_reasons_.push_back(r.reason);
    }
    return outcomes;
  }

  std::string LastReason() const { return last_reasons_.empty() ? "" : last_reasons_.back(); }

  // The rejected records' reasons, oldest first.
  std::vector<std::string> RejectedReasons() const {
    auto rejected = store_->ListRejected(0, 100);
    EXPECT_THAT(rejected, IsOk());
    std::vector<std::string> reasons;
    if (!rejected.ok()) return reasons;
    for (const RejectedRecord& r : *rejected) {
      EXPECT_EQ(r.kind, RejectKind::kRejected);
      reasons.push_back(r.reason);
    }
    return reasons;
  }

  size_t Datasets() const {
    auto registry = store_->GetRegistry();
    EXPECT_THAT(registry, IsOk());
    return registry.ok() ? registry->datasets.size() : 0;
  }
  size_t Models() const {
    auto registry = store_->GetRegistry();
    EXPECT_THAT(registry, IsOk());
    return registry.ok() ? registry->models.size() : 0;
  }

  TempDir dir_;
  std::unique_ptr<ShardStore> store_;
  int64_t next_offset_ = 0;
  std::vector<std::string> last_reasons_;
};

constexpr FoldOutcome kApplied = FoldOutcome::kApplied;
constexpr FoldOutcome kRejected = FoldOutcome::kRejected;

TEST_F(LineageCycleTest, ADatasetDerivedFromItselfIsRejectedNamingTheCycle) {
  EXPECT_THAT(Apply({Dataset("A", "1", {{"A", "1"}})}), ElementsAre(kRejected));
  const std::string reason =
      "dataset_registered would close a lineage cycle: dataset A@1 <- dataset A@1";
  EXPECT_EQ(LastReason(), reason);
  EXPECT_THAT(RejectedReasons(), ElementsAre(reason));
  EXPECT_EQ(Datasets(), 0u);
  EXPECT_EQ(store_->Head().next_index, 0u);
}

TEST_F(LineageCycleTest, AnOutOfOrderRegistrationThatClosesATwoCycleIsRejected) {
  // B@1 names A@1 before A@1 is registered (history arrives out of order) ...
  EXPECT_THAT(Apply({Dataset("B", "1", {{"A", "1"}})}), ElementsAre(kApplied));
  // ... and A@1 then says it was derived from B@1.
  EXPECT_THAT(Apply({Dataset("A", "1", {{"B", "1"}})}), ElementsAre(kRejected));
  EXPECT_EQ(LastReason(),
            "dataset_registered would close a lineage cycle: dataset A@1 <- dataset B@1 <- "
            "dataset A@1");
  EXPECT_EQ(Datasets(), 1u);
  // Another version of A is another node: no cycle.
  EXPECT_THAT(Apply({Dataset("A", "2", {{"B", "1"}})}), ElementsAre(kApplied));
}

TEST_F(LineageCycleTest, ACycleThroughAModelIsRejected) {
  // D@1 holds scores of model M@1, not registered yet ...
  EXPECT_THAT(Apply({Dataset("D", "1", {}, {{"M", "1"}})}), ElementsAre(kApplied));
  // ... which then claims to have been trained on D@1.
  EXPECT_THAT(Apply({Model("M", "1", {{"D", "1"}})}), ElementsAre(kRejected));
  EXPECT_EQ(LastReason(),
            "model_registered would close a lineage cycle: model M@1 <- dataset D@1 <- model M@1");
  EXPECT_EQ(Models(), 0u);
  EXPECT_THAT(RejectedReasons(), SizeIs(1));
}

TEST_F(LineageCycleTest, DatasetsAndModelsAreSeparateNamespaces) {
  // Dataset credit@v1 holds the outputs of model credit@v1: not itself.
  EXPECT_THAT(Apply({Dataset("credit", "v1", {}, {{"credit", "v1"}})}), ElementsAre(kApplied));
  // Model credit@v1 trained on another dataset: no cycle either.
  EXPECT_THAT(Apply({Model("credit", "v1", {{"train", "1"}})}), ElementsAre(kApplied));
}

TEST_F(LineageCycleTest, ACycleClosedWithinOneBatchIsRejected) {
  // Registrations earlier in the batch are part of the graph the check walks.
  EXPECT_THAT(Apply({Dataset("B", "1", {{"A", "1"}}), Dataset("C", "1", {{"B", "1"}}),
                     Dataset("A", "1", {{"C", "1"}})}),
              ElementsAre(kApplied, kApplied, kRejected));
  EXPECT_EQ(LastReason(),
            "dataset_registered would close a lineage cycle: dataset A@1 <- dataset C@1 <- "
            "dataset B@1 <- dataset A@1");
  EXPECT_EQ(Datasets(), 2u);
}

TEST_F(LineageCycleTest, TheFirstPathInListedOrderIsNamed) {
  // D from L and R, both from T; then T from D: two paths close the cycle,
  // and the one through L, listed first, is named.
  EXPECT_THAT(Apply({Dataset("D", "1", {{"X", "1"}, {"L", "1"}, {"R", "1"}}),
                     Dataset("R", "1", {{"T", "1"}}), Dataset("L", "1", {{"T", "1"}})}),
              ElementsAre(kApplied, kApplied, kApplied));
  EXPECT_THAT(Apply({Dataset("T", "1", {{"D", "1"}})}), ElementsAre(kRejected));
  EXPECT_EQ(LastReason(),
            "dataset_registered would close a lineage cycle: dataset T@1 <- dataset D@1 <- "
            "dataset L@1 <- dataset T@1");
}

TEST_F(LineageCycleTest, ALongChainADiamondAndOutOfOrderParentsAreAccepted) {
  // 300 datasets, each derived from the one before, registered newest first
  // (every parent unregistered when named), then a model trained on the last.
  std::vector<std::string> chain;
  for (int i = 299; i >= 0; --i) {
    chain.push_back(Dataset("chain", std::to_string(i),
                            i == 0 ? Refs{} : Refs{{"chain", std::to_string(i - 1)}}));
  }
  for (const FoldOutcome outcome : Apply(chain)) EXPECT_EQ(outcome, kApplied);
  // A diamond: left and right from top, bottom from both and from the chain's
  // head, a model trained on bottom and left, a dataset scored by the model.
  EXPECT_THAT(Apply({Dataset("top", "1", {{"chain", "299"}}), Dataset("left", "1", {{"top", "1"}}),
                     Dataset("right", "1", {{"top", "1"}}),
                     Dataset("bottom", "1", {{"left", "1"}, {"right", "1"}, {"chain", "0"}}),
                     Model("m", "1", {{"bottom", "1"}, {"left", "1"}}),
                     Dataset("scored", "1", {{"bottom", "1"}}, {{"m", "1"}})}),
              ElementsAre(kApplied, kApplied, kApplied, kApplied, kApplied, kApplied));
  EXPECT_EQ(Datasets(), 305u);
  EXPECT_EQ(Models(), 1u);
  EXPECT_THAT(RejectedReasons(), SizeIs(0));
}

TEST_F(LineageCycleTest, ARegisteredNameAndVersionIsADuplicateOrConflictBeforeAnyCycleCheck) {
  const std::string a = Dataset("A", "1", {});
  EXPECT_THAT(Apply({a, Dataset("B", "1", {{"A", "1"}})}), ElementsAre(kApplied, kApplied));
  EXPECT_THAT(Apply({a}), ElementsAre(FoldOutcome::kDuplicate));
  // Other content for A@1 (which would also close a cycle) is a conflict.
  EXPECT_THAT(Apply({Dataset("A", "1", {{"B", "1"}})}), ElementsAre(FoldOutcome::kConflict));
}

}  // namespace
}  // namespace predlog::storage
