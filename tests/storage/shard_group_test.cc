// The shards of one process as a group: misrouted arrivals are counted, one
// record per prediction_id holds across the shards (also when copies arrive
// at once), and the registry fold checks the artifact store. Real RocksDB in
// temp dirs.
#include "storage/shard_group.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/artifact_store.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/raw_shard_db.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::MakeEntityChange;
using ::predlog::testing::MakeModelRegistered;
using ::predlog::testing::MakePredictionPayload;
using ::predlog::testing::Msg;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;

constexpr char kInc[] = "broker-A";

// Keys ending in an even digit belong to partition 0, odd ones to 1.
int32_t LastDigitParity(absl::string_view key) { return key.empty() ? 0 : (key.back() - '0') % 2; }

class ShardGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int p = 0; p < 2; ++p) {
      ShardOptions options;
      options.dir = dir_.Sub("shard-" + std::to_string(p));
      options.name = "predlog.events-" + std::to_string(p);
      options.group = &group_;
      options.partition = p;
      ASSERT_OK_AND_ASSIGN(shards_[p], ShardStore::Open(options));
    }
  }

  static std::string Pred(const std::string& id, const std::string& subject, float score = 0.25f) {
    PredictionSpec spec;
    spec.prediction_id = id;
    spec.subject_id = subject;
    spec.score = score;
    return MakePredictionPayload(spec);
  }

  MessageResult ApplyOne(int partition, const std::string& payload) {
    const SourceMessage m = Msg(kInc, next_offset_[partition]++, payload);
    absl::StatusOr<BatchResult> result = shards_[partition]->ApplyBatch({&m, 1});
    EXPECT_THAT(result, IsOk());
    return result.ok() ? result->messages[0] : MessageResult{};
  }

  TempDir dir_;
  ShardGroup group_{2, LastDigitParity};
  std::unique_ptr<ShardStore> shards_[2];
  int64_t next_offset_[2] = {0, 0};
};

TEST_F(ShardGroupTest, EventsOnAnotherPartitionThanTheirKeysAreCountedAndStillFolded) {
  EXPECT_EQ(ApplyOne(0, Pred("p1", "customer-2")).outcome, FoldOutcome::kApplied);  // home
  EXPECT_EQ(shards_[0]->Head().counters.misrouted, 0u);
  const MessageResult misrouted = ApplyOne(0, Pred("p2", "customer-3"));  // belongs to 1
  EXPECT_EQ(misrouted.outcome, FoldOutcome::kApplied);
  EXPECT_EQ(shards_[0]->Head().counters.misrouted, 1u);
  ASSERT_OK_AND_ASSIGN(StoredRecord record, shards_[0]->GetByPredictionId("p2"));
  EXPECT_EQ(record.index, misrouted.index);

  // The counter is part of the durable head.
  shards_[0].reset();
  ShardOptions options;
  options.dir = dir_.Sub("shard-0");
  options.group = &group_;
  options.partition = 0;
  ASSERT_OK_AND_ASSIGN(shards_[0], ShardStore::Open(options));
  EXPECT_EQ(shards_[0]->Head().counters.misrouted, 1u);
}

// Rewrites the head of the shard in `dir` as format 2 wrote it (no misrouted
// count): what a shard written before misrouted arrivals were counted has.
void DowngradeHeadToFormat2(const std::string& dir) {
  testing::EditRawShardDb(dir, "meta", [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta) {
    std::string head;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), meta, "head", &head).ok());
    ASSERT_EQ(head[0], 3);
    head[0] = 2;
    head.resize(head.size() - 8);  // the misrouted counter
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), meta, "head", head).ok());
  });
}

TEST_F(ShardGroupTest, AShardFromBeforeTheCountCountsItsMisroutedEventsOnOpen) {
  ApplyOne(0, Pred("p1", "customer-2"));  // home
  ApplyOne(0, Pred("p2", "customer-3"));  // misrouted
  ApplyOne(0, Pred("p3", "customer-5"));  // misrouted
  shards_[0].reset();
  DowngradeHeadToFormat2(dir_.Sub("shard-0"));
  ShardOptions options;
  options.dir = dir_.Sub("shard-0");
  options.group = &group_;
  options.partition = 0;
  ASSERT_OK_AND_ASSIGN(shards_[0], ShardStore::Open(options));
  EXPECT_EQ(shards_[0]->Head().counters.misrouted, 2u);
  EXPECT_EQ(shards_[0]->Head().next_index, 3u);
}

TEST_F(ShardGroupTest, AnEntityChangeOnAnotherPartitionIsRejectedNamingItsPartition) {
  const std::string change =
      MakeEntityChange("customer", "customer-3", {{"income", 1.0}}).SerializeAsString();
  const MessageResult result = ApplyOne(0, change);
  EXPECT_EQ(result.outcome, FoldOutcome::kRejected);
  EXPECT_THAT(result.reason, HasSubstr("belongs to partition 1"));
  EXPECT_THAT(result.reason, HasSubstr("murmur2_random"));
  EXPECT_EQ(shards_[0]->Head().counters.misrouted, 1u);
  ASSERT_OK_AND_ASSIGN(std::vector<RejectedRecord> rejected, shards_[0]->ListRejected(0, 10));
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].payload, change);
  // On its own partition it is folded.
  EXPECT_EQ(ApplyOne(1, change).outcome, FoldOutcome::kApplied);
}

TEST_F(ShardGroupTest, ALaterCopyOnAnotherShardIsADuplicateOrAConflictOfTheFirst) {
  const MessageResult first = ApplyOne(0, Pred("p1", "customer-2"));
  ASSERT_EQ(first.outcome, FoldOutcome::kApplied);

  // The same content through another route: a duplicate pointing at shard 0.
  const MessageResult retry = ApplyOne(1, Pred("p1", "customer-2"));
  EXPECT_EQ(retry.outcome, FoldOutcome::kDuplicate);
  EXPECT_EQ(retry.original_shard, "predlog.events-0");
  EXPECT_EQ(retry.index, first.index);
  EXPECT_EQ(retry.leaf, first.leaf);

  // The id logged again for another subject (whose home is shard 1): a conflict.
  const MessageResult other = ApplyOne(1, Pred("p1", "customer-3"));
  EXPECT_EQ(other.outcome, FoldOutcome::kConflict);
  EXPECT_EQ(other.original_shard, "predlog.events-0");
  EXPECT_EQ(other.index, first.index);
  EXPECT_THAT(other.reason, HasSubstr("already recorded in predlog.events-0"));

  EXPECT_EQ(shards_[1]->Head().next_index, 0u);  // nothing appended there
  EXPECT_EQ(shards_[1]->Head().counters.duplicates, 1u);
  EXPECT_EQ(shards_[1]->Head().counters.conflicts, 1u);
  EXPECT_FALSE(shards_[1]->GetByPredictionId("p1").ok());
  ASSERT_OK_AND_ASSIGN(std::vector<RejectedRecord> rejected, shards_[1]->ListRejected(0, 10));
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].kind, RejectKind::kConflict);
}

TEST_F(ShardGroupTest, CopiesArrivingAtOnceOnTwoShardsLeaveExactlyOneRecordPerId) {
  // Two writers fold batches of the same ids at the same time; every id is
  // applied exactly once across both shards, and the other copy is its
  // duplicate (even ids: same content) or conflict (odd ids: other score).
  constexpr int kIds = 600;
  constexpr int kBatch = 20;
  std::atomic<bool> go{false};
  std::vector<std::vector<MessageResult>> results(2);
  std::vector<std::thread> writers;
  for (int p = 0; p < 2; ++p) {
    writers.emplace_back([&, p] {
      while (!go.load()) {
      }
      for (int first = 0; first < kIds; first += kBatch) {
        std::vector<std::string> payloads;
        for (int i = first; i < first + kBatch; ++i) {
          const float score = (i % 2 == 1 && p == 1) ? 0.75f : 0.25f;
          payloads.push_back(Pred("p" + std::to_string(i), "customer-" + std::to_string(i), score));
        }
        std::vector<SourceMessage> messages;
        for (const std::string& payload : payloads) {
          messages.push_back(Msg(kInc, next_offset_[p]++, payload));
        }
        absl::StatusOr<BatchResult> result = shards_[p]->ApplyBatch(messages);
        ASSERT_THAT(result, IsOk());
        for (const MessageResult& r : result->messages) results[p].push_back(r);
      }
    });
  }
  go = true;
  for (std::thread& t : writers) t.join();
  ASSERT_EQ(results[0].size(), static_cast<size_t>(kIds));
  ASSERT_EQ(results[1].size(), static_cast<size_t>(kIds));
  for (int i = 0; i < kIds; ++i) {
    const MessageResult& a = results[0][static_cast<size_t>(i)];
    const MessageResult& b = results[1][static_cast<size_t>(i)];
    const int applied =
        (a.outcome == FoldOutcome::kApplied ? 1 : 0) + (b.outcome == FoldOutcome::kApplied ? 1 : 0);
    ASSERT_EQ(applied, 1) << "p" << i;
    const MessageResult& later = a.outcome == FoldOutcome::kApplied ? b : a;
    EXPECT_EQ(later.outcome, i % 2 == 0 ? FoldOutcome::kDuplicate : FoldOutcome::kConflict)
        << "p" << i;
    EXPECT_FALSE(later.original_shard.empty()) << "p" << i;
  }
  const ShardCounters c0 = shards_[0]->Head().counters;
  const ShardCounters c1 = shards_[1]->Head().counters;
  EXPECT_EQ(c0.applied + c1.applied, static_cast<uint64_t>(kIds));
  EXPECT_EQ(c0.duplicates + c1.duplicates, static_cast<uint64_t>(kIds / 2));
  EXPECT_EQ(c0.conflicts + c1.conflicts, static_cast<uint64_t>(kIds / 2));
}

TEST(RegistryFoldTest, AModelWhoseArtifactIsNotStoredIsRejectedAndAStoredOneFolded) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ArtifactStore> artifacts,
                       ArtifactStore::Open(dir.Sub("artifacts")));
  ASSERT_OK_AND_ASSIGN(ArtifactInfo stored, artifacts->Put("model bytes"));
  ShardOptions options;
  options.dir = dir.Sub("registry");
  options.artifacts = artifacts.get();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShardStore> registry, ShardStore::Open(options));

  const std::string missing_digest = ToHex(Sha256("never uploaded"));
  const std::string missing =
      MakeModelRegistered("credit", "v1", missing_digest).SerializeAsString();
  predlog::v1::AuditEvent wrong_size = MakeModelRegistered("credit", "v2", ToHex(stored.digest));
  wrong_size.mutable_model_registered()->set_artifact_size_bytes(stored.size_bytes + 1);
  const std::string wrong_size_bytes = wrong_size.SerializeAsString();
  const std::string good =
      MakeModelRegistered("credit", "v3", ToHex(stored.digest)).SerializeAsString();
  const std::vector<SourceMessage> messages = {Msg(kInc, 0, missing),
                                               Msg(kInc, 1, wrong_size_bytes), Msg(kInc, 2, good)};
  ASSERT_OK_AND_ASSIGN(BatchResult result, registry->ApplyBatch(messages));
  EXPECT_EQ(result.messages[0].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(result.messages[0].reason,
              HasSubstr("model_registered.model.artifact_sha256 " + missing_digest +
                        " is not in the artifact store"));
  EXPECT_EQ(result.messages[1].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(result.messages[1].reason, HasSubstr("model_registered.artifact_size_bytes is"));
  EXPECT_EQ(result.messages[2].outcome, FoldOutcome::kApplied);
  ASSERT_OK_AND_ASSIGN(RegistryState state, registry->GetRegistry());
  EXPECT_EQ(state.models.size(), 1u);
}

TEST(OversizeFoldTest, AMessageTooLargeToKeepKeepsItsDigestAndAPrefix) {
  TempDir dir;
  ShardOptions options;
  options.dir = dir.Sub("shard");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShardStore> shard, ShardStore::Open(options));
  const std::string over_by_one(kMaxEventBytes + 1, 'x');
  const std::string huge(6'000'000, 'y');
  PredictionSpec spec;
  const std::string neighbour = MakePredictionPayload(spec);
  const std::vector<SourceMessage> messages = {Msg(kInc, 0, over_by_one), Msg(kInc, 1, huge),
                                               Msg(kInc, 2, neighbour)};
  ASSERT_OK_AND_ASSIGN(BatchResult result, shard->ApplyBatch(messages));
  EXPECT_EQ(result.messages[0].outcome, FoldOutcome::kRejected);
  EXPECT_EQ(result.messages[1].outcome, FoldOutcome::kRejected);
  EXPECT_EQ(result.messages[2].outcome, FoldOutcome::kApplied);
  ASSERT_OK_AND_ASSIGN(std::vector<RejectedRecord> rejected, shard->ListRejected(0, 10));
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_EQ(rejected[0].payload, over_by_one);  // kept whole
  EXPECT_EQ(rejected[1].payload, huge.substr(0, kRejectedPrefixBytes));
  EXPECT_THAT(rejected[1].reason, HasSubstr("message is 6000000 bytes"));
  EXPECT_THAT(rejected[1].reason, HasSubstr(ToHex(Sha256(huge))));
  EXPECT_EQ(rejected[1].source.offset, 1);
}

}  // namespace
}  // namespace predlog::storage
