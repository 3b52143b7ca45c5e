// The data-source index (by_source): which predictions read a dataset
// version (PredictionLogged.data_sources), written by the fold for applied
// predictions only, scanned like by_model, walked key-only with the model of
// each prediction, and built on open for shards of format 3.
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/key_codec.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/raw_shard_db.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::MakePrediction;
using ::predlog::testing::MakePredictionPayload;
using ::predlog::testing::Msg;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kShard[] = "predlog.events-0";
using Sources = std::vector<std::pair<std::string, std::string>>;
// An IndexEntry as a value: index, served_at (seconds after T0), model name, version.
using Entry = std::tuple<uint64_t, int64_t, std::string, std::string>;

constexpr int64_t kT0 = 1'700'000'000;

absl::Time At(int seconds) { return absl::FromUnixSeconds(kT0 + seconds); }

class DataSourceIndexTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(bool read_only = false) {
    store_.reset();
    ShardOptions options;
    options.dir = dir_.Sub("shard");
    options.name = kShard;
    options.read_only = read_only;
    auto store = ShardStore::Open(options);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  BatchResult Apply(const std::vector<std::string>& payloads) {
    std::vector<SourceMessage> messages;
    for (const auto& p : payloads) messages.push_back(Msg("broker-A", next_offset_++, p));
    auto result = store_->ApplyBatch(messages);
    EXPECT_THAT(result, IsOk());
    return result.ok() ? *result : BatchResult{};
  }

  static PredictionSpec Spec(const std::string& id, int seconds, const Sources& sources,
                             const std::string& version = "v1") {
    PredictionSpec spec;
    spec.prediction_id = id;
    spec.model_version = version;
    spec.served_at = At(seconds);
    spec.recorded_at = spec.served_at;
    spec.data_sources = sources;
    return spec;
  }
  static std::string Pred(const std::string& id, int seconds, const Sources& sources,
                          const std::string& version = "v1") {
    return MakePredictionPayload(Spec(id, seconds, sources, version));
  }

  std::vector<Entry> Visit(const std::string& name, const std::string& version,
                           const TimeRange& served = TimeRange{}) const {
    std::vector<Entry> out;
    const absl::Status status =
        store_->VisitDataSourceIndex(name, version, served, [&](const IndexEntry& e) {
          out.emplace_back(e.index, absl::ToUnixSeconds(e.served_at) - kT0,
                           std::string(e.model_name), std::string(e.model_version));
          return true;
        });
    EXPECT_THAT(status, IsOk());
    return out;
  }

  static std::vector<std::string> Ids(const std::vector<StoredRecord>& records) {
    std::vector<std::string> ids;
    for (const auto& r : records) ids.push_back(r.Event()->prediction_logged().prediction_id());
    return ids;
  }

  // Rewrites the shard (closed) as format 3 wrote it: no by_source (nor
  // by_entity, which format 5 added).
  void MakeFormat3() {
    store_.reset();
    testing::DowngradeShard(dir_.Sub("shard"), 3, {"by_source", "by_entity"});
  }
  void SetFormat(uint32_t format) { testing::DowngradeShard(dir_.Sub("shard"), format, {}); }
  uint32_t Format() { return testing::ShardFormat(dir_.Sub("shard")); }

  TempDir dir_;
  std::unique_ptr<ShardStore> store_;
  int64_t next_offset_ = 0;
};

TEST_F(DataSourceIndexTest, Fold_IndexesEachDistinctSourceOnceWithThePredictionsModel) {
  Sources many;  // past the pairwise comparison: distinct through a set
  for (int i = 0; i < 20; ++i) many.emplace_back("wide", std::to_string(i));
  many.emplace_back("wide", "3");
  many.emplace_back("applications", "2026-10");
  Apply({Pred("a", 1, {{"applications", "2026-10"}, {"bureau", "7"}, {"applications", "2026-10"}}),
         Pred("b", 2, {{"applications", "2026-10"}}, "v2"), Pred("c", 3, {}), Pred("d", 4, many)});
  EXPECT_THAT(Visit("applications", "2026-10"),
              ElementsAre(Entry{0, 1, "credit-limit", "v1"}, Entry{1, 2, "credit-limit", "v2"},
                          Entry{3, 4, "credit-limit", "v1"}));
  EXPECT_THAT(Visit("bureau", "7"), ElementsAre(Entry{0, 1, "credit-limit", "v1"}));
  for (int i = 0; i < 20; ++i) {
    EXPECT_THAT(Visit("wide", std::to_string(i)), ElementsAre(Entry{3, 4, "credit-limit", "v1"}))
        << i;
  }
  // Another version of the same dataset is another key.
  EXPECT_THAT(Visit("applications", "2026-11"), IsEmpty());
  ASSERT_OK_AND_ASSIGN(ScanPage page,
                       store_->ScanDataSource("applications", "2026-10", TimeRange{}, "", 10));
  EXPECT_THAT(Ids(page.records), ElementsAre("a", "b", "d"));
}

TEST_F(DataSourceIndexTest, Fold_IndexesNeitherDuplicatesNorConflictsNorRejectedMessages) {
  const std::string a = Pred("a", 1, {{"applications", "2026-10"}});
  // A retry with another envelope is a duplicate, in the same batch and later.
  predlog::v1::AuditEvent retry;
  ASSERT_TRUE(retry.ParseFromString(a));
  retry.set_event_id("evt-retry");
  BatchResult first = Apply({a, retry.SerializeAsString()});
  EXPECT_EQ(first.messages[1].outcome, FoldOutcome::kDuplicate);
  BatchResult again = Apply({retry.SerializeAsString()});
  EXPECT_EQ(again.messages[0].outcome, FoldOutcome::kDuplicate);
  // The same id with other sources is a conflict; an invalid prediction is
  // rejected: neither names a dataset in the index.
  BatchResult conflict = Apply({Pred("a", 1, {{"conflicting", "1"}})});
  EXPECT_EQ(conflict.messages[0].outcome, FoldOutcome::kConflict);
  predlog::v1::AuditEvent invalid = MakePrediction(Spec("r", 2, {{"rejected", "1"}}));
  invalid.mutable_prediction_logged()->clear_subject_id();
  BatchResult rejected = Apply({invalid.SerializeAsString()});
  EXPECT_EQ(rejected.messages[0].outcome, FoldOutcome::kRejected);

  EXPECT_THAT(Visit("applications", "2026-10"), ElementsAre(Entry{0, 1, "credit-limit", "v1"}));
  EXPECT_THAT(Visit("conflicting", "1"), IsEmpty());
  EXPECT_THAT(Visit("rejected", "1"), IsEmpty());
}

TEST_F(DataSourceIndexTest, ScanDataSource_OrdersByServedAtThenIndexWithinRangeAndPages) {
  const Sources apps = {{"applications", "2026-10"}};
  // Logged out of served order; "e" and "b" share a served_at.
  Apply({Pred("late", 30, apps), Pred("b", 10, apps), Pred("other", 5, {{"bureau", "7"}}),
         Pred("early", 5, apps), Pred("e", 10, apps)});
  ASSERT_OK_AND_ASSIGN(ScanPage all,
                       store_->ScanDataSource("applications", "2026-10", TimeRange{}, "", 100));
  EXPECT_THAT(Ids(all.records), ElementsAre("early", "b", "e", "late"));
  EXPECT_TRUE(all.next_cursor.empty());

  ASSERT_OK_AND_ASSIGN(ScanPage some, store_->ScanDataSource("applications", "2026-10",
                                                             TimeRange{At(10), At(30)}, "", 100));
  EXPECT_THAT(Ids(some.records), ElementsAre("b", "e"));
  EXPECT_THAT(Visit("applications", "2026-10", TimeRange{At(10), At(30)}),
              ElementsAre(Entry{1, 10, "credit-limit", "v1"}, Entry{4, 10, "credit-limit", "v1"}));

  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(ScanPage page,
                         store_->ScanDataSource("applications", "2026-10", TimeRange{}, cursor, 3));
    for (const auto& id : Ids(page.records)) seen.push_back(id);
    cursor = page.next_cursor;
    ++pages;
  } while (!cursor.empty());
  EXPECT_EQ(pages, 2);
  EXPECT_THAT(seen, ElementsAre("early", "b", "e", "late"));
}

TEST_F(DataSourceIndexTest, VisitModelIndex_WalksScanModelsEntriesWithoutTheModelAndStops) {
  Apply({Pred("a", 3, {}), Pred("b", 1, {}, "v2"), Pred("c", 2, {}), Pred("d", 4, {})});
  std::vector<Entry> seen;
  ASSERT_THAT(store_->VisitModelIndex(
                  "credit-limit", "v1", TimeRange{At(0), At(4)},
                  [&](const IndexEntry& e) {
                    seen.emplace_back(e.index, absl::ToUnixSeconds(e.served_at) - kT0,
                                      std::string(e.model_name), std::string(e.model_version));
                    return true;
                  }),
              IsOk());
  EXPECT_THAT(seen, ElementsAre(Entry{2, 2, "", ""}, Entry{0, 3, "", ""}));

  // Returning false stops the walk.
  int visits = 0;
  ASSERT_THAT(store_->VisitModelIndex("credit-limit", "v1", TimeRange{},
                                      [&](const IndexEntry&) { return ++visits < 2; }),
              IsOk());
  EXPECT_EQ(visits, 2);
  visits = 0;
  Apply({Pred("e", 5, {{"applications", "2026-10"}}), Pred("f", 6, {{"applications", "2026-10"}})});
  ASSERT_THAT(store_->VisitDataSourceIndex("applications", "2026-10", TimeRange{},
                                           [&](const IndexEntry&) { return ++visits < 1; }),
              IsOk());
  EXPECT_EQ(visits, 1);
}

TEST_F(DataSourceIndexTest, VisitIndex_AnEntryThatDoesNotDecodeIsDataLossNamingTheShard) {
  Apply({Pred("a", 1, {{"applications", "2026-10"}})});
  store_.reset();
  std::string prefix;
  AppendLengthPrefixed(&prefix, "applications");
  AppendLengthPrefixed(&prefix, "2026-10");
  std::string model_prefix;
  AppendLengthPrefixed(&model_prefix, "credit-limit");
  AppendLengthPrefixed(&model_prefix, "v1");
  testing::EditRawShardDb(dir_.Sub("shard"), "by_source",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
                            // A key cut short after its time.
                            ASSERT_TRUE(db->Put({}, cf, prefix + std::string(11, '\x80'), "").ok());
                          });
  testing::EditRawShardDb(dir_.Sub("shard"), "by_model",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
                            ASSERT_TRUE(db->Put({}, cf, model_prefix + "x", "").ok());
                          });
  Reopen();
  auto visit = [](const IndexEntry&) { return true; };
  EXPECT_THAT(
      store_->VisitDataSourceIndex("applications", "2026-10", TimeRange{}, visit),
      StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(kShard), HasSubstr("by_source"))));
  EXPECT_THAT(
      store_->VisitModelIndex("credit-limit", "v1", TimeRange{}, visit),
      StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(kShard), HasSubstr("by_model"))));
}

TEST_F(DataSourceIndexTest, VisitDataSourceIndex_AValueWithoutTheModelIsDataLoss) {
  Apply({Pred("a", 1, {{"applications", "2026-10"}})});
  store_.reset();
  testing::EditRawShardDb(dir_.Sub("shard"), "by_source",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
                            std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, cf));
                            it->SeekToFirst();
                            ASSERT_TRUE(it->Valid());
                            const std::string key = it->key().ToString();
                            it.reset();
                            // A model name whose length runs past the value.
                            std::string value;
                            AppendU32(&value, 5);
                            value += "ab";
                            ASSERT_TRUE(db->Put({}, cf, key, value).ok());
                          });
  Reopen();
  EXPECT_THAT(
      store_->VisitDataSourceIndex("applications", "2026-10", TimeRange{},
                                   [](const IndexEntry&) { return true; }),
      StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(kShard), HasSubstr("by_source"))));
}

TEST_F(DataSourceIndexTest, AShardOfFormat3GetsItsIndexWhenOpenedWritableAndNotBefore) {
  const Sources apps = {{"applications", "2026-10"}};
  const std::string a = Pred("a", 2, {{"applications", "2026-10"}, {"bureau", "7"}});
  Apply({a, Pred("b", 1, apps, "v2"), Pred("c", 3, {})});
  // Outcomes that must stay out of the index after the rebuild too.
  Apply({a, Pred("a", 2, {{"conflicting", "1"}})});
  std::vector<std::string> payloads;
  for (int i = 0; i < 5000; ++i) {  // more than one of the upgrade's WriteBatches
    payloads.push_back(Pred("bulk-" + std::to_string(i), 10 + i, {{"bulk", "1"}}));
  }
  Apply(payloads);
  const std::vector<Entry> apps_before = Visit("applications", "2026-10");
  ASSERT_THAT(apps_before, SizeIs(2));
  ASSERT_THAT(Visit("bulk", "1"), SizeIs(5000));

  MakeFormat3();
  {
    // Read-only (a snapshot, an inspection) it cannot be built, and says so.
    Reopen(/*read_only=*/true);
    EXPECT_THAT(store_->ScanDataSource("applications", "2026-10", TimeRange{}, "", 10),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         AllOf(HasSubstr(kShard), HasSubstr("predates the data-source index"),
                               HasSubstr("open it writable once"))));
    EXPECT_THAT(store_->VisitDataSourceIndex("applications", "2026-10", TimeRange{},
                                             [](const IndexEntry&) { return true; }),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(kShard)));
    // The other indexes read as before.
    ASSERT_OK_AND_ASSIGN(ScanPage v2, store_->ScanModel("credit-limit", "v2", TimeRange{}, "", 10));
    EXPECT_THAT(Ids(v2.records), ElementsAre("b"));
  }
  Reopen();
  EXPECT_EQ(Visit("applications", "2026-10"), apps_before);
  EXPECT_THAT(Visit("bureau", "7"), ElementsAre(Entry{0, 2, "credit-limit", "v1"}));
  EXPECT_THAT(Visit("conflicting", "1"), IsEmpty());
  EXPECT_THAT(Visit("bulk", "1"), SizeIs(5000));
  // New predictions are indexed as they fold.
  Apply({Pred("d", 4, apps)});
  EXPECT_THAT(Visit("applications", "2026-10"), SizeIs(3));
  store_.reset();
  EXPECT_EQ(Format(), 5u);  // and by_entity was built too (tests/storage/entity_index_test.cc)
}

TEST_F(DataSourceIndexTest, AnUnfinishedUpgradeIsNotReadAsAnIndexAndIsRedone) {
  // A crash during the upgrade leaves by_source partly written and the
  // format at 3.
  Apply({Pred("a", 1, {{"applications", "2026-10"}}), Pred("b", 2, {{"applications", "2026-10"}})});
  store_.reset();
  testing::EditRawShardDb(dir_.Sub("shard"), "by_source",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) {
                            std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, cf));
                            it->SeekToLast();
                            ASSERT_TRUE(it->Valid());
                            const std::string key = it->key().ToString();
                            it.reset();
                            ASSERT_TRUE(db->Delete({}, cf, key).ok());
                          });
  SetFormat(3);
  Reopen(/*read_only=*/true);
  EXPECT_THAT(store_->ScanDataSource("applications", "2026-10", TimeRange{}, "", 10),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(kShard)));
  Reopen();
  EXPECT_THAT(Visit("applications", "2026-10"),
              ElementsAre(Entry{0, 1, "credit-limit", "v1"}, Entry{1, 2, "credit-limit", "v1"}));
}

}  // namespace
}  // namespace predlog::storage
