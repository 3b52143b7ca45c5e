// A shard whose WAL lost acknowledged records (truncated as a power loss or a
// failing disk can leave it) says so instead of going on silently, and an
// accepted loss never gives a lost index to another record. Real RocksDB in a
// temp dir; the WAL is truncated by hand between a close and a reopen.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/acked_mark.h"
#include "storage/key_codec.h"
#include "storage/merkle.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

namespace fs = std::filesystem;
using ::predlog::testing::IsOk;
using ::predlog::testing::IsOkAndHolds;
using ::predlog::testing::MakePredictionPayload;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;

class LostRecordsTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<ShardStore>> Open(const std::string& accept = "",
                                                   bool read_only = false, bool sync = true) {
    ShardOptions options;
    options.dir = dir_.Sub("shard");
    options.name = "predlog.events-2";
    options.sync_writes = sync;
    options.accept_lost_range = accept;
    options.read_only = read_only;
    return ShardStore::Open(options);
  }

  // Folds predictions [first, first + n), one synced batch each.
  void Fold(ShardStore& shard, int first, int n) {
    for (int i = first; i < first + n; ++i) {
      PredictionSpec spec;
      spec.prediction_id = "p-" + std::to_string(i);
      const std::string payload = MakePredictionPayload(spec);
      const SourceMessage m{"broker-a", i, payload};
      ASSERT_OK_AND_ASSIGN(BatchResult r, shard.ApplyBatch({&m, 1}));
      ASSERT_EQ(r.messages[0].outcome, FoldOutcome::kApplied);
    }
  }

  // Cuts the newest WAL of the closed shard to `keep` of its bytes.
  void TruncateNewestWal(double keep) {
    fs::path newest;
    for (const auto& entry : fs::directory_iterator(dir_.Sub("shard/db"))) {
      if (entry.path().extension() == ".log" && entry.path() > newest) newest = entry.path();
    }
    ASSERT_FALSE(newest.empty()) << "no WAL in " << dir_.Sub("shard/db");
    const auto size = fs::file_size(newest);
    fs::resize_file(newest, static_cast<uintmax_t>(static_cast<double>(size) * keep));
  }

  TempDir dir_;
};

TEST_F(LostRecordsTest, IntactShardReopensWithNothingLost) {
  {
    ASSERT_OK_AND_ASSIGN(auto shard, Open());
    Fold(*shard, 0, 10);
  }
  ASSERT_OK_AND_ASSIGN(auto shard, Open());
  EXPECT_FALSE(shard->lost().has_value());
  EXPECT_OK(shard->CheckNotLost());
  ASSERT_OK_AND_ASSIGN(std::optional<AckedMark::Value> mark,
                       AckedMark::Read(dir_.Sub("shard/acked")));
  ASSERT_TRUE(mark.has_value());
  EXPECT_EQ(mark->next_index, 10u);
  EXPECT_EQ(mark->chain_head, shard->Head().chain_head);
}

TEST_F(LostRecordsTest, TruncatedWalIsRefusedNamingTheLostRange) {
  {
    ASSERT_OK_AND_ASSIGN(auto shard, Open());
    Fold(*shard, 0, 40);
  }
  TruncateNewestWal(0.5);
  ASSERT_OK_AND_ASSIGN(auto shard, Open());
  ASSERT_TRUE(shard->lost().has_value()) << "the loss went unnoticed";
  const uint64_t intact = shard->Head().next_index;
  ASSERT_LT(intact, 40u);
  EXPECT_EQ(shard->lost()->first_index, intact);
  EXPECT_EQ(shard->lost()->end_index, 40u);
  EXPECT_THAT(shard->CheckNotLost(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr(absl::StrCat("predlog.events-2 lost acknowledged records ", intact,
                                              "..39"))));
  // Nothing is written, so no lost index can be given to a new record.
  PredictionSpec spec;
  spec.prediction_id = "after";
  const std::string payload = MakePredictionPayload(spec);
  const SourceMessage m{"broker-a", 100, payload};
  EXPECT_THAT(shard->ApplyBatch({&m, 1}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("accepts the loss")));
  EXPECT_EQ(shard->Head().next_index, intact);
  // A read-only open (an inspection) sees the same.
  shard.reset();
  ASSERT_OK_AND_ASSIGN(auto inspected, Open(/*accept=*/"", /*read_only=*/true));
  EXPECT_TRUE(inspected->lost().has_value());
}

TEST_F(LostRecordsTest, AcceptedLossIsRecordedAndLostIndexesAreNeverReused) {
  Digest acked_chain;
  {
    ASSERT_OK_AND_ASSIGN(auto shard, Open());
    Fold(*shard, 0, 40);
    acked_chain = shard->Head().chain_head;
  }
  TruncateNewestWal(0.5);
  uint64_t intact;
  {
    ASSERT_OK_AND_ASSIGN(auto shard, Open());
    intact = shard->Head().next_index;
  }
  {
    // Accepting another range than the one lost accepts nothing.
    ASSERT_OK_AND_ASSIGN(auto other, Open(absl::StrCat(intact + 1, "..39")));
    EXPECT_TRUE(other->lost().has_value());
  }
  ASSERT_OK_AND_ASSIGN(auto shard, Open(absl::StrCat(intact, "..39")));
  EXPECT_FALSE(shard->lost().has_value());
  EXPECT_EQ(shard->Head().next_index, 41u);  // the loss record takes index 40
  ASSERT_OK_AND_ASSIGN(StoredRecord record, shard->Get(40));
  ASSERT_OK_AND_ASSIGN(predlog::v1::AuditEvent event, record.Event());
  ASSERT_TRUE(event.has_records_lost());
  EXPECT_EQ(event.records_lost().first_lost_index(), intact);
  EXPECT_EQ(event.records_lost().last_lost_index(), 39u);
  EXPECT_EQ(event.records_lost().acked_chain_sha256(), ToHex(acked_chain));
  EXPECT_THAT(shard->Get(intact),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(std::to_string(intact))));

  // Writing goes on after the hole, and the shard verifies with it.
  Fold(*shard, 100, 3);
  EXPECT_EQ(shard->Head().next_index, 44u);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, shard->Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
  EXPECT_EQ(report.records_checked, 44u - (40u - intact));
  // The Merkle tree keeps leaf i = index i: a lost index has the lost leaf,
  // and records on both sides of the hole are proven in the tree.
  ASSERT_OK_AND_ASSIGN(Digest root, shard->TreeRoot(44));
  for (uint64_t i : {uint64_t{0}, intact - 1, intact, uint64_t{39}, uint64_t{40}, uint64_t{43}}) {
    Digest leaf = LostMerkleLeaf(i);
    if (i < intact || i >= 40) {
      ASSERT_OK_AND_ASSIGN(StoredRecord r, shard->Get(i));
      leaf = RecordMerkleLeaf(r.appended_at, Sha256(r.payload));
    }
    ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof, shard->InclusionProof(i, 44));
    EXPECT_THAT(VerifyMerkleInclusion(i, 44, leaf, proof, root), IsOk()) << i;
  }
  // Reopened without the flag, the recorded loss is history, not a new one.
  shard.reset();
  ASSERT_OK_AND_ASSIGN(auto again, Open());
  EXPECT_FALSE(again->lost().has_value());
  EXPECT_THAT(again->TreeRoot(44), IsOkAndHolds(root));
}

TEST_F(LostRecordsTest, WithoutSyncALostTailIsAWarningNotARefusal) {
  // --sync=false accepted losing the newest acks on a power loss: the mark
  // says it was not synced, so the shard goes on from what survived.
  {
    ASSERT_OK_AND_ASSIGN(auto shard, Open("", false, /*sync=*/false));
    Fold(*shard, 0, 40);
  }
  TruncateNewestWal(0.5);
  ASSERT_OK_AND_ASSIGN(auto shard, Open("", false, /*sync=*/true));
  EXPECT_FALSE(shard->lost().has_value());
  const uint64_t survived = shard->Head().next_index;
  EXPECT_LT(survived, 40u);
  Fold(*shard, 200, 1);
  EXPECT_EQ(shard->Head().next_index, survived + 1);
}

TEST_F(LostRecordsTest, ADatabaseReplacedBehindItsMarkIsNotALoss) {
  // An operator deletes db/ to re-ingest from Kafka and leaves the mark.
  {
    ASSERT_OK_AND_ASSIGN(auto shard, Open());
    Fold(*shard, 0, 10);
  }
  fs::remove_all(dir_.Sub("shard/db"));
  ASSERT_OK_AND_ASSIGN(auto shard, Open());
  EXPECT_FALSE(shard->lost().has_value());
  EXPECT_EQ(shard->Head().next_index, 0u);
  Fold(*shard, 0, 1);
  EXPECT_EQ(shard->Head().next_index, 1u);
}

TEST_F(LostRecordsTest, AHoleWithoutItsLossRecordFailsVerify) {
  // Verify accepts a hole only where a RecordsLost record names it: a record
  // deleted behind the shard's back is still found.
  {
    ASSERT_OK_AND_ASSIGN(auto shard, Open());
    Fold(*shard, 0, 5);
  }
  {
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir_.Sub("shard/db"), &names).ok());
    for (const std::string& name : names)
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(rocksdb::DBOptions(), dir_.Sub("shard/db"), families, &handles, &raw)
            .ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "events") {
        ASSERT_TRUE(db->Delete({}, handles[i], IndexKey(2)).ok());
      }
    }
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  }
  ASSERT_OK_AND_ASSIGN(auto shard, Open());
  ASSERT_OK_AND_ASSIGN(VerifyReport report, shard->Verify());
  ASSERT_TRUE(report.first_bad_index.has_value());
  EXPECT_EQ(*report.first_bad_index, 2u);
  EXPECT_THAT(report.problem, HasSubstr("record 2 is missing"));
}

}  // namespace
}  // namespace predlog::storage
