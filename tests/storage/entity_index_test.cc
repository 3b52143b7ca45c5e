// The entity index (by_entity): an entity's history of changes, written by
// the fold for applied EntityChanged records only, scanned in recorded_at
// order, and built on open for shards of format 4.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/key_codec.h"
#include "storage/shard_store.h"
#include "storage/timestamps.h"
#include "tests/testing/events.h"
#include "tests/testing/raw_shard_db.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::MakeEntityChange;
using ::predlog::testing::MakePredictionPayload;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kShard[] = "predlog.events-0";
constexpr int64_t kT0 = 1'700'000'000;

absl::Time At(int seconds) { return absl::FromUnixSeconds(kT0 + seconds); }

// An EntityChanged of customer/`id` recorded at At(`seconds`) setting
// limit = `limit`; the event id tells changes apart.
std::string Change(const std::string& id, int seconds, double limit) {
  predlog::v1::AuditEvent event = MakeEntityChange("customer", id, {{"limit", limit}});
  event.set_event_id(absl::StrCat("change-", id, "-", seconds, "-", limit));
  TimeToProto(At(seconds), event.mutable_recorded_at());
  return event.SerializeAsString();
}

std::string Prediction(const std::string& id, const std::string& subject, int seconds) {
  PredictionSpec spec;
  spec.prediction_id = id;
  spec.subject_id = subject;
  spec.served_at = At(seconds);
  spec.recorded_at = At(seconds);
  return MakePredictionPayload(spec);
}

class EntityIndexTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(bool read_only = false) {
    store_.reset();
    ShardOptions options;
    options.dir = dir_.Sub("shard");
    options.name = kShard;
    options.read_only = read_only;
    options.clock = clock_;
    auto store = ShardStore::Open(options);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  // Folds `payloads` at the next offsets of one broker incarnation.
  BatchResult Apply(const std::vector<std::string>& payloads) {
    std::vector<SourceMessage> messages;
    for (const auto& p : payloads) messages.push_back({"broker-A", next_offset_++, p});
    auto result = store_->ApplyBatch(messages);
    EXPECT_THAT(result, IsOk());
    return result.ok() ? *result : BatchResult{};
  }

  // The `limit` values of customer/`id`'s changes in `recorded`, in scan
  // order, read in pages of `page_size`.
  std::vector<double> Limits(const std::string& id, const TimeRange& recorded = TimeRange{},
                             size_t page_size = 100) const {
    std::vector<double> out;
    std::string cursor;
    do {
      absl::StatusOr<ScanPage> page =
          store_->ScanEntity("customer", id, recorded, cursor, page_size);
      EXPECT_THAT(page, IsOk());
      if (!page.ok()) break;
      EXPECT_LE(page->records.size(), page_size);
      for (const StoredRecord& r : page->records) {
        absl::StatusOr<predlog::v1::AuditEvent> event = r.Event();
        EXPECT_THAT(event, IsOk());
        if (!event.ok() || !event->has_entity_changed()) {
          ADD_FAILURE() << "record " << r.index << " in " << id << "'s changes is no change";
          continue;
        }
        EXPECT_EQ(event->entity_changed().entity_id(), id);
        out.push_back(event->entity_changed().set_fields().at("limit").double_value());
      }
      cursor = page->next_cursor;
    } while (!cursor.empty());
    return out;
  }

  // Every by_entity key, raw, in key order (the shard must be closed).
  std::vector<std::string> RawEntityKeys() {
    store_.reset();
    std::vector<std::string> keys;
    testing::EditRawShardDb(dir_.Sub("shard"), "by_entity",
                            [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
                              std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, cf));
                              for (it->SeekToFirst(); it->Valid(); it->Next()) {
                                keys.push_back(it->key().ToString());
                              }
                              ASSERT_TRUE(it->status().ok());
                            });
    return keys;
  }

  // Rewrites the shard (closed) as format 4 wrote it: no by_entity.
  void MakeFormat4() {
    store_.reset();
    testing::DowngradeShard(dir_.Sub("shard"), 4, {"by_entity"});
  }
  void SetFormat(uint32_t format) { testing::DowngradeShard(dir_.Sub("shard"), format, {}); }
  uint32_t Format() { return testing::ShardFormat(dir_.Sub("shard")); }

  TempDir dir_;
  // The shard's append clock: fixed, so a test knows each record's appended_at.
  absl::Time now_ = At(100);
  std::function<absl::Time()> clock_ = [this] { return now_; };
  std::unique_ptr<ShardStore> store_;
  int64_t next_offset_ = 0;
};

TEST_F(EntityIndexTest, Fold_IndexesAppliedChangesOnlyUnderTheirOwnEntity) {
  BatchResult first = Apply(
      {Change("a", 1, 100), Prediction("p1", "a", 2), Change("b", 3, 200), Change("a", 4, 101)});
  ASSERT_EQ(first.messages[3].outcome, FoldOutcome::kApplied);
  // A change of a schema this build does not know is rejected; one the
  // source delivers again (an offset already folded) is not folded twice.
  predlog::v1::AuditEvent newer;
  ASSERT_TRUE(newer.ParseFromString(Change("a", 5, 666)));
  newer.set_schema_version(newer.schema_version() + 1);
  BatchResult rejected = Apply({newer.SerializeAsString()});
  EXPECT_EQ(rejected.messages[0].outcome, FoldOutcome::kRejected);
  const std::string redelivered = Change("a", 6, 777);
  ASSERT_OK_AND_ASSIGN(BatchResult again,
                       store_->ApplyBatch({{"broker-A", next_offset_ - 1, redelivered}}));
  EXPECT_EQ(again.messages[0].outcome, FoldOutcome::kRedelivered);

  EXPECT_THAT(Limits("a"), ElementsAre(100, 101));
  EXPECT_THAT(Limits("b"), ElementsAre(200));
  // Neither the prediction of subject a nor the refused messages have a key.
  EXPECT_THAT(RawEntityKeys(), SizeIs(3));
}

TEST_F(EntityIndexTest, ScanEntity_OrdersByRecordedAtThenIndexWithinRangeAndPages) {
  // Logged out of recorded order; 102 and 103 share a recorded_at.
  Apply({Change("a", 30, 104), Change("a", 10, 102), Change("b", 10, 900), Change("a", 5, 101)});
  Apply({Change("a", 10, 103)});
  EXPECT_THAT(Limits("a"), ElementsAre(101, 102, 103, 104));
  // [from, to): from inclusive, to exclusive.
  EXPECT_THAT(Limits("a", TimeRange{At(10), At(30)}), ElementsAre(102, 103));
  EXPECT_THAT(Limits("a", TimeRange{At(11), At(30)}), IsEmpty());
  // Pages of 1 and of 3 give the same history.
  EXPECT_THAT(Limits("a", TimeRange{}, 1), ElementsAre(101, 102, 103, 104));
  EXPECT_THAT(Limits("a", TimeRange{}, 3), ElementsAre(101, 102, 103, 104));
  ASSERT_OK_AND_ASSIGN(ScanPage first, store_->ScanEntity("customer", "a", TimeRange{}, "", 3));
  EXPECT_THAT(first.records, SizeIs(3));
  EXPECT_FALSE(first.next_cursor.empty());
  // Another entity's cursor does not continue this scan.
  EXPECT_THAT(store_->ScanEntity("customer", "b", TimeRange{}, first.next_cursor, 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cursor")));
  // The type is part of the key.
  ASSERT_OK_AND_ASSIGN(ScanPage other, store_->ScanEntity("account", "a", TimeRange{}, "", 10));
  EXPECT_THAT(other.records, IsEmpty());
}

TEST_F(EntityIndexTest, ScanEntity_AChangeWithoutRecordedAtIsKeyedByItsAppendTime) {
  predlog::v1::AuditEvent timeless = MakeEntityChange("customer", "a", {{"limit", 1}});
  ASSERT_FALSE(timeless.has_recorded_at());
  now_ = At(500);
  Apply({timeless.SerializeAsString()});
  EXPECT_THAT(Limits("a", TimeRange{At(500), At(501)}), ElementsAre(1));
  EXPECT_THAT(Limits("a", TimeRange{absl::InfinitePast(), At(500)}), IsEmpty());
}

TEST_F(EntityIndexTest, AShardOfFormat4GetsItsIndexWhenOpenedWritableAndNotBefore) {
  Apply({Change("a", 3, 103), Prediction("p1", "a", 2), Change("a", 1, 101), Change("b", 2, 201)});
  predlog::v1::AuditEvent timeless = MakeEntityChange("customer", "b", {{"limit", 202}});
  now_ = At(700);
  Apply({timeless.SerializeAsString()});
  // Outcomes that must stay out of the index after the rebuild too.
  predlog::v1::AuditEvent newer;
  ASSERT_TRUE(newer.ParseFromString(Change("a", 5, 666)));
  newer.set_schema_version(newer.schema_version() + 1);
  Apply({newer.SerializeAsString()});
  std::vector<std::string> bulk;
  for (int i = 0; i < 5000; ++i) {  // more than one of the upgrade's WriteBatches
    bulk.push_back(Change("bulk-" + std::to_string(i % 7), 10 + i, i));
  }
  Apply(bulk);
  const std::vector<std::string> fresh = RawEntityKeys();
  ASSERT_THAT(fresh, SizeIs(5004));

  MakeFormat4();
  {
    // Read-only (a snapshot, an inspection) it cannot be built, and says so.
    Reopen(/*read_only=*/true);
    EXPECT_THAT(store_->ScanEntity("customer", "a", TimeRange{}, "", 10),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr(kShard), HasSubstr("predates the entity index"),
                               HasSubstr("open it writable once"))));
    // The other indexes read as before.
    ASSERT_OK_AND_ASSIGN(ScanPage subject, store_->ScanSubject("a", TimeRange{}, "", 10));
    EXPECT_THAT(subject.records, SizeIs(1));
    ASSERT_OK_AND_ASSIGN(ScanPage sources,
                         store_->ScanDataSource("applications", "2026-10", TimeRange{}, "", 10));
    EXPECT_THAT(sources.records, IsEmpty());
  }
  Reopen();
  EXPECT_THAT(Limits("a"), ElementsAre(101, 103));
  EXPECT_THAT(Limits("b"), ElementsAre(201, 202));
  EXPECT_THAT(Limits("b", TimeRange{At(700), At(701)}), ElementsAre(202));
  // The rebuilt index is the one the fold wrote, key for key.
  EXPECT_EQ(RawEntityKeys(), fresh);
  EXPECT_EQ(Format(), 5u);
  // New changes are indexed as they fold.
  Reopen();
  Apply({Change("a", 4, 104)});
  EXPECT_THAT(Limits("a"), ElementsAre(101, 103, 104));
}

TEST_F(EntityIndexTest, AnUnfinishedUpgradeIsNotReadAsAnIndexAndIsRedone) {
  // A crash during the upgrade leaves by_entity partly written and the
  // format at 4.
  Apply({Change("a", 1, 101), Change("a", 2, 102)});
  store_.reset();
  testing::EditRawShardDb(dir_.Sub("shard"), "by_entity",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
                            std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, cf));
                            it->SeekToLast();
                            ASSERT_TRUE(it->Valid());
                            const std::string key = it->key().ToString();
                            it.reset();
                            ASSERT_TRUE(db->Delete({}, cf, key).ok());
                          });
  SetFormat(4);
  Reopen(/*read_only=*/true);
  EXPECT_THAT(store_->ScanEntity("customer", "a", TimeRange{}, "", 10),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(kShard)));
  Reopen();
  EXPECT_THAT(Limits("a"), ElementsAre(101, 102));
}

}  // namespace
}  // namespace predlog::storage
