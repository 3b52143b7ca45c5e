#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::MakeEntityChange;
using ::predlog::testing::MakePredictionPayload;
using ::predlog::testing::Msg;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class ShardSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(Open()); }

  absl::Status Open() {
    store_.reset();
    ShardOptions options;
    options.dir = dir_.Sub("shard");
    auto store = ShardStore::Open(options);
    if (!store.ok()) return store.status();
    store_ = std::move(*store);
    return absl::OkStatus();
  }

  void ApplyPredictions(int n) {
    std::vector<std::string> payloads;
    for (int i = 0; i < n; ++i) {
      PredictionSpec spec;
      spec.prediction_id = "p" + std::to_string(next_offset_ + i);
      spec.subject_id = "s";
      payloads.push_back(MakePredictionPayload(spec));
    }
    std::vector<SourceMessage> messages;
    for (const auto& p : payloads) messages.push_back(Msg("inc", next_offset_++, p));
    ASSERT_THAT(store_->ApplyBatch(messages), IsOk());
  }

  void SetLimit(double limit) {
    const std::string p =
        MakeEntityChange("customer", "c1", {{"limit", limit}}).SerializeAsString();
    std::vector<SourceMessage> messages = {Msg("inc", next_offset_++, p)};
    ASSERT_THAT(store_->ApplyBatch(messages), IsOk());
  }

  TempDir dir_;
  std::unique_ptr<ShardStore> store_;
  int64_t next_offset_ = 0;
};

TEST_F(ShardSnapshotTest, OpenedSnapshotShowsExactlyTheStateAtItsIndex) {
  ApplyPredictions(5);
  SetLimit(1000);
  ASSERT_OK_AND_ASSIGN(SnapshotInfo snap, store_->CreateSnapshot());
  EXPECT_EQ(snap.index, 6u);
  ApplyPredictions(4);
  SetLimit(500);

  ASSERT_OK_AND_ASSIGN(auto old, store_->OpenSnapshot(snap));
  const ShardHead head = old->Head();
  EXPECT_EQ(head.next_index, 6u);
  EXPECT_EQ(head.last_source->offset, 5);
  ASSERT_OK_AND_ASSIGN(StoredRecord last, old->Get(5));
  EXPECT_EQ(head.chain_head, last.chain);
  EXPECT_THAT(old->Get(6), StatusIs(absl::StatusCode::kNotFound, HasSubstr("index 6")));
  EXPECT_THAT(old->GetByPredictionId("p6"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("p6")));
  ASSERT_OK_AND_ASSIGN(auto entity, old->GetEntity("customer", "c1"));
  EXPECT_EQ(entity.fields().at("limit").double_value(), 1000);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, old->Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
  EXPECT_EQ(report.records_checked, 6u);

  // The live shard moved on.
  ASSERT_OK_AND_ASSIGN(auto now, store_->GetEntity("customer", "c1"));
  EXPECT_EQ(now.fields().at("limit").double_value(), 500);
  // Snapshots are read-only.
  std::string p = "x";
  std::vector<SourceMessage> m = {Msg("inc", 100, p)};
  EXPECT_THAT(old->ApplyBatch(m),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("read-only")));
}

TEST_F(ShardSnapshotTest, SnapshotsAreListedAfterReopenAndRepeatAtSameIndexIsReused) {
  ApplyPredictions(3);
  ASSERT_OK_AND_ASSIGN(SnapshotInfo a, store_->CreateSnapshot(absl::FromUnixSeconds(1000)));
  ASSERT_OK_AND_ASSIGN(SnapshotInfo again, store_->CreateSnapshot(absl::FromUnixSeconds(2000)));
  EXPECT_EQ(again.index, a.index);
  EXPECT_EQ(again.created_at, absl::FromUnixSeconds(1000));
  ApplyPredictions(3);
  ASSERT_OK_AND_ASSIGN(SnapshotInfo b, store_->CreateSnapshot(absl::FromUnixSeconds(3000)));
  ASSERT_OK(Open());
  ASSERT_OK_AND_ASSIGN(auto list, store_->ListSnapshots());
  ASSERT_THAT(list, SizeIs(2));
  EXPECT_EQ(list[0].index, 3u);
  EXPECT_EQ(list[1].index, 6u);
  EXPECT_EQ(list[1].created_at, absl::FromUnixSeconds(3000));
  EXPECT_EQ(list[1].path, b.path);
}

TEST_F(ShardSnapshotTest, PruneDeletesWhatThePolicyDropsAndKeepsTheRest) {
  for (int i = 0; i < 4; ++i) {
    ApplyPredictions(2);
    ASSERT_THAT(store_->CreateSnapshot(absl::FromUnixSeconds(1000 + i)), IsOk());
  }
  RetentionPolicy policy{2, absl::ZeroDuration(), absl::ZeroDuration()};
  ASSERT_OK_AND_ASSIGN(int removed, store_->PruneSnapshots(policy, absl::FromUnixSeconds(5000)));
  EXPECT_EQ(removed, 2);
  ASSERT_OK_AND_ASSIGN(auto list, store_->ListSnapshots());
  ASSERT_THAT(list, SizeIs(2));
  EXPECT_EQ(list[0].index, 6u);
  EXPECT_EQ(list[1].index, 8u);
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("shard/snapshots/00000000000000000002")));
  EXPECT_TRUE(std::filesystem::exists(list[0].path));
  ASSERT_OK_AND_ASSIGN(auto old, store_->OpenSnapshot(list[0]));
  EXPECT_EQ(old->Head().next_index, 6u);
}

TEST_F(ShardSnapshotTest, UncataloguedSnapshotDirectoryIsRemovedOnOpen) {
  ApplyPredictions(1);
  ASSERT_THAT(store_->CreateSnapshot(), IsOk());
  // A crash between checkpoint and catalog entry leaves a directory behind.
  const std::string orphan = dir_.Sub("shard/snapshots/00000000000000000099");
  std::filesystem::create_directories(orphan);
  ASSERT_OK(Open());
  EXPECT_FALSE(std::filesystem::exists(orphan));
  ASSERT_OK_AND_ASSIGN(auto list, store_->ListSnapshots());
  EXPECT_THAT(list, SizeIs(1));
  EXPECT_TRUE(std::filesystem::exists(list[0].path));
}

}  // namespace
}  // namespace predlog::storage
