#include "storage/shard_store.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/key_codec.h"
#include "storage/merkle.h"
#include "storage/sha256.h"
#include "storage/signed_note.h"
#include "storage/timestamps.h"
#include "tests/testing/events.h"
#include "tests/testing/raw_shard_db.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::IsOkAndHolds;
using ::predlog::testing::MakeEntityChange;
using ::predlog::testing::MakeModelRegistered;
using ::predlog::testing::MakePrediction;
using ::predlog::testing::MakePredictionPayload;
using ::predlog::testing::Msg;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr char kInc[] = "broker-A";

class ShardStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    ShardOptions options;
    options.dir = dir_.Sub("shard");
    options.name = "predlog.events-0";
    auto store = ShardStore::Open(options);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  // Applies `payloads` at consecutive offsets from next_offset_.
  BatchResult Apply(const std::vector<std::string>& payloads, const std::string& inc = kInc) {
    std::vector<SourceMessage> messages;
    for (const auto& p : payloads) messages.push_back(Msg(inc, next_offset_++, p));
    auto result = store_->ApplyBatch(messages);
    EXPECT_THAT(result, IsOk());
    return result.ok() ? *result : BatchResult{};
  }

  static std::string Pred(const std::string& id, const std::string& subject = "customer-1",
                          int seconds = 0, const std::string& version = "v1") {
    PredictionSpec spec;
    spec.prediction_id = id;
    spec.subject_id = subject;
    spec.model_version = version;
    spec.served_at = absl::FromUnixSeconds(1'700'000'000 + seconds);
    spec.recorded_at = spec.served_at;
    return MakePredictionPayload(spec);
  }

  static std::vector<std::string> Ids(const std::vector<StoredRecord>& records) {
    std::vector<std::string> ids;
    for (const auto& r : records) ids.push_back(r.Event()->prediction_logged().prediction_id());
    return ids;
  }

  TempDir dir_;
  std::unique_ptr<ShardStore> store_;
  int64_t next_offset_ = 0;
};

TEST_F(ShardStoreTest, ApplyBatch_AppendsAtGapFreeIndexesWithLeafOfExactBytes) {
  const std::string a = Pred("a"), b = Pred("b");
  BatchResult r = Apply({a, b});
  ASSERT_THAT(r.messages, SizeIs(2));
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[0].index, 0u);
  EXPECT_EQ(r.messages[1].index, 1u);
  EXPECT_EQ(r.messages[1].leaf, Sha256(b));

  ASSERT_OK_AND_ASSIGN(StoredRecord rec, store_->Get(1));
  EXPECT_EQ(rec.payload, b);
  EXPECT_EQ(rec.leaf, Sha256(b));
  EXPECT_EQ(rec.chain, ChainNext(ChainNext(kChainGenesis, Sha256(a)), Sha256(b)));
  EXPECT_EQ(rec.source.incarnation, kInc);
  EXPECT_EQ(rec.source.offset, 1);

  const ShardHead head = store_->Head();
  EXPECT_EQ(head.next_index, 2u);
  EXPECT_EQ(head.chain_head, rec.chain);
  ASSERT_TRUE(head.last_source.has_value());
  EXPECT_EQ(head.last_source->offset, 1);
  EXPECT_EQ(head.counters.applied, 2u);
}

TEST_F(ShardStoreTest, ApplyBatch_DuplicateWithSameContentIsNoOp) {
  const std::string a = Pred("a");
  Apply({a});
  // A retry whose envelope differs (event id, actor, recorded_at) but whose
  // prediction is the same.
  predlog::v1::AuditEvent retry;
  ASSERT_TRUE(retry.ParseFromString(a));
  retry.set_event_id("evt-retry-2");
  retry.set_actor("limits-api-replica-2");
  retry.mutable_recorded_at()->set_seconds(1);
  BatchResult r = Apply({retry.SerializeAsString()});
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kDuplicate);
  EXPECT_EQ(r.messages[0].index, 0u);
  EXPECT_EQ(r.messages[0].leaf, Sha256(a));
  EXPECT_EQ(store_->Head().next_index, 1u);
  EXPECT_EQ(store_->Head().counters.duplicates, 1u);
  ASSERT_OK_AND_ASSIGN(auto rejected, store_->ListRejected(0, 10));
  EXPECT_THAT(rejected, SizeIs(0));
}

TEST_F(ShardStoreTest, ApplyBatch_RetryWithNaNInputIsDuplicate) {
  // Missing values are often NaN; a retry of such a prediction is the same content.
  predlog::v1::AuditEvent event = ::predlog::testing::MakePrediction(PredictionSpec{});
  event.mutable_prediction_logged()->mutable_inputs(0)->set_double_value(std::nan(""));
  const std::string original = event.SerializeAsString();
  BatchResult r = Apply({original, original});
  EXPECT_EQ(r.messages[1].outcome, FoldOutcome::kDuplicate);
  Reopen();
  BatchResult again = Apply({original});
  EXPECT_EQ(again.messages[0].outcome, FoldOutcome::kDuplicate);
}

TEST_F(ShardStoreTest, ApplyBatch_NegativeZeroIsDifferentContent) {
  predlog::v1::AuditEvent event = ::predlog::testing::MakePrediction(PredictionSpec{});
  event.mutable_prediction_logged()->mutable_output()->set_float_scores(0, 0.0f);
  const std::string positive = event.SerializeAsString();
  event.mutable_prediction_logged()->mutable_output()->set_float_scores(0, -0.0f);
  BatchResult r = Apply({positive, event.SerializeAsString()});
  EXPECT_EQ(r.messages[1].outcome, FoldOutcome::kConflict);
}

TEST_F(ShardStoreTest, ApplyBatch_DuplicateWithinOneBatchIsNoOp) {
  const std::string a = Pred("a");
  BatchResult r = Apply({a, a});
  EXPECT_EQ(r.messages[1].outcome, FoldOutcome::kDuplicate);
  EXPECT_EQ(r.messages[1].index, 0u);
  EXPECT_EQ(store_->Head().next_index, 1u);
}

TEST_F(ShardStoreTest, ApplyBatch_ConflictIsKeptInRejectedAndOriginalUntouched) {
  const std::string original = Pred("a", "customer-1", 0);
  const std::string other = Pred("a", "customer-1", 99);
  Apply({original});
  BatchResult r = Apply({other});
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kConflict);
  EXPECT_EQ(r.messages[0].index, 0u);
  EXPECT_THAT(r.messages[0].reason, HasSubstr("prediction_id a is already recorded at index 0"));

  ASSERT_OK_AND_ASSIGN(StoredRecord rec, store_->GetByPredictionId("a"));
  EXPECT_EQ(rec.payload, original);
  ASSERT_OK_AND_ASSIGN(auto rejected, store_->ListRejected(0, 10));
  ASSERT_THAT(rejected, SizeIs(1));
  EXPECT_EQ(rejected[0].kind, RejectKind::kConflict);
  EXPECT_EQ(rejected[0].original_index, 0u);
  EXPECT_EQ(rejected[0].payload, other);
  EXPECT_EQ(rejected[0].source.offset, 1);
  EXPECT_EQ(rejected[0].source.incarnation, kInc);
  EXPECT_EQ(store_->Head().counters.conflicts, 1u);
}

TEST_F(ShardStoreTest, ApplyBatch_GarbageIsRejectedAndNeighboursAreFolded) {
  const std::string garbage("\xff\xff\xff\x07not a protobuf", 18);
  PredictionSpec no_subject;
  no_subject.prediction_id = "x";
  no_subject.subject_id = "";
  BatchResult r = Apply({Pred("a"), garbage, "", MakePredictionPayload(no_subject), Pred("b")});
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[1].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(r.messages[1].reason, HasSubstr("not a serialized predlog.v1.AuditEvent"));
  EXPECT_EQ(r.messages[2].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(r.messages[2].reason, HasSubstr("empty message"));
  EXPECT_EQ(r.messages[3].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(r.messages[3].reason, HasSubstr("prediction_logged.subject_id is empty"));
  EXPECT_EQ(r.messages[4].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[4].index, 1u);

  ASSERT_OK_AND_ASSIGN(auto rejected, store_->ListRejected(0, 10));
  ASSERT_THAT(rejected, SizeIs(3));
  EXPECT_EQ(rejected[0].payload, garbage);
  EXPECT_EQ(rejected[0].source.offset, 1);
  EXPECT_EQ(rejected[1].seq, 1u);
  EXPECT_EQ(rejected[2].source.offset, 3);
  EXPECT_EQ(store_->Head().counters.rejected, 3u);
  EXPECT_EQ(store_->Head().last_source->offset, 4);
}

// The access trail is a shard of its own: AccessRecorded goes there and
// nowhere else, and nothing else goes there (a producer writing straight to
// Kafka cannot mix them), each refusal kept in `rejected`.
TEST_F(ShardStoreTest, ApplyBatch_AccessRecordedGoesIntoTheAccessTrailOnly) {
  predlog::v1::AuditEvent access;
  access.set_actor("auditor-ana");
  access.mutable_access_recorded()->set_method("/predlog.v1.Audit/ExportTrail");
  access.mutable_access_recorded()->set_request_json(R"({"all":true})");
  const std::string access_payload = access.SerializeAsString();
  predlog::v1::AuditEvent no_method = access;
  no_method.mutable_access_recorded()->clear_method();
  const std::string no_method_payload = no_method.SerializeAsString();

  BatchResult r = Apply({Pred("a"), access_payload, Pred("b")});
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[1].outcome, FoldOutcome::kRejected);
  EXPECT_EQ(r.messages[1].reason,
            "access_recorded belongs in the access trail (predlog.access), not in shard "
            "predlog.events-0");
  EXPECT_EQ(r.messages[2].outcome, FoldOutcome::kApplied);

  ShardOptions options;
  options.dir = dir_.Sub("access");
  options.name = "predlog.access-0";
  options.access_trail = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShardStore> trail, ShardStore::Open(options));
  const std::string prediction = Pred("c");
  ASSERT_OK_AND_ASSIGN(
      BatchResult t,
      trail->ApplyBatch({Msg(kInc, 0, access_payload), Msg(kInc, 1, prediction),
                         Msg(kInc, 2, no_method_payload), Msg(kInc, 3, access_payload)}));
  EXPECT_EQ(t.messages[0].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(t.messages[0].index, 0u);
  EXPECT_EQ(t.messages[1].outcome, FoldOutcome::kRejected);
  EXPECT_EQ(t.messages[1].reason,
            "shard predlog.access-0 is the access trail: it takes access_recorded events only");
  EXPECT_EQ(t.messages[2].outcome, FoldOutcome::kRejected);
  EXPECT_EQ(t.messages[2].reason, "access_recorded.method is empty");
  // Every access is its own record, even the same bytes again: no
  // idempotency key, nothing deduplicated.
  EXPECT_EQ(t.messages[3].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(t.messages[3].index, 1u);
  ASSERT_OK_AND_ASSIGN(StoredRecord first, trail->Get(0));
  EXPECT_EQ(first.payload, access_payload);
  EXPECT_EQ(trail->Head().counters.rejected, 2u);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, trail->Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
}

TEST_F(ShardStoreTest, ApplyBatch_TimestampOutOfRangeIsRejectedNamingTheFieldAndNeighboursFold) {
  predlog::v1::AuditEvent year_one = MakePrediction(PredictionSpec{});
  year_one.mutable_prediction_logged()->set_prediction_id("year-one");
  year_one.mutable_prediction_logged()->mutable_served_at()->set_seconds(-62135596801);
  predlog::v1::AuditEvent bad_nanos = MakePrediction(PredictionSpec{});
  bad_nanos.mutable_prediction_logged()->set_prediction_id("bad-nanos");
  bad_nanos.mutable_recorded_at()->set_nanos(1'000'000'000);
  BatchResult r = Apply({year_one.SerializeAsString(), bad_nanos.SerializeAsString(), Pred("b")});
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(r.messages[0].reason,
              HasSubstr("prediction_logged.served_at.seconds is -62135596801"));
  EXPECT_EQ(r.messages[1].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(r.messages[1].reason, HasSubstr("recorded_at.nanos is 1000000000"));
  EXPECT_EQ(r.messages[2].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[2].index, 0u);
}

TEST_F(ShardStoreTest, ApplyBatch_OversizedMessageIsRejectedWithTheLimit) {
  store_.reset();
  ShardOptions options;
  options.dir = dir_.Sub("small");
  options.max_message_bytes = 100;
  ASSERT_OK_AND_ASSIGN(store_, ShardStore::Open(options));
  BatchResult r = Apply({std::string(101, 'x')});
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(r.messages[0].reason, HasSubstr("message is 101 bytes; the limit is 100"));
}

TEST_F(ShardStoreTest, ApplyBatch_RedeliveredOffsetsAreSkipped) {
  Apply({Pred("a"), Pred("b")});
  const std::string a = Pred("a"), b = Pred("b"), c = Pred("c");
  // The consumer re-reads offsets 0..1 after a restart, then sees new offset 2.
  std::vector<SourceMessage> again = {Msg(kInc, 0, a), Msg(kInc, 1, b), Msg(kInc, 2, c)};
  ASSERT_OK_AND_ASSIGN(BatchResult r, store_->ApplyBatch(again));
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kRedelivered);
  EXPECT_EQ(r.messages[1].outcome, FoldOutcome::kRedelivered);
  EXPECT_EQ(r.messages[2].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[2].index, 2u);
  EXPECT_EQ(store_->Head().counters.redelivered, 2u);
}

TEST_F(ShardStoreTest, ApplyBatch_SourceRestartAtOffsetZeroContinuesTheLog) {
  Apply({Pred("a"), Pred("b"), Pred("c")});
  // A restarted embedded broker: new incarnation, offsets from 0 again.
  next_offset_ = 0;
  BatchResult r = Apply({Pred("d"), Pred("e")}, "broker-B");
  EXPECT_EQ(r.source_resets, 1);
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[0].index, 4u);  // index 3 is the SourceReset record
  EXPECT_EQ(r.messages[1].index, 5u);

  ASSERT_OK_AND_ASSIGN(StoredRecord reset, store_->Get(3));
  ASSERT_OK_AND_ASSIGN(auto event, reset.Event());
  ASSERT_TRUE(event.has_source_reset());
  EXPECT_EQ(event.source_reset().previous_incarnation(), kInc);
  EXPECT_EQ(event.source_reset().previous_last_offset(), 2);
  EXPECT_EQ(event.source_reset().new_incarnation(), "broker-B");
  EXPECT_EQ(event.source_reset().new_first_offset(), 0);
  // The reset sits before the new incarnation's first message, colliding with no message.
  EXPECT_EQ(reset.source.incarnation, "broker-B");
  EXPECT_EQ(reset.source.offset, -1);

  ASSERT_OK_AND_ASSIGN(StoredRecord d, store_->GetByPredictionId("d"));
  EXPECT_EQ(d.source.incarnation, "broker-B");
  EXPECT_EQ(d.source.offset, 0);
  ASSERT_OK_AND_ASSIGN(StoredRecord a, store_->GetByPredictionId("a"));
  EXPECT_EQ(a.source.incarnation, kInc);
  EXPECT_EQ(a.index, 0u);

  // Late messages of the old incarnation: what was folded is a redelivery;
  // anything after its last folded offset is kept in rejected, never dropped.
  const std::string b_again = Pred("b"), late = Pred("late");
  std::vector<SourceMessage> stale = {Msg(kInc, 1, b_again), Msg(kInc, 7, late)};
  ASSERT_OK_AND_ASSIGN(BatchResult l, store_->ApplyBatch(stale));
  EXPECT_EQ(l.messages[0].outcome, FoldOutcome::kRedelivered);
  EXPECT_EQ(l.messages[1].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(l.messages[1].reason,
              HasSubstr("from superseded source incarnation broker-A: offset 7 is after its "
                        "last folded offset 2"));
  ASSERT_OK_AND_ASSIGN(auto rejected, store_->ListRejected(0, 10));
  ASSERT_THAT(rejected, SizeIs(1));
  EXPECT_EQ(rejected[0].source.incarnation, kInc);
  EXPECT_EQ(rejected[0].source.offset, 7);
  EXPECT_EQ(rejected[0].payload, late);

  ASSERT_OK_AND_ASSIGN(VerifyReport v, store_->Verify());
  EXPECT_FALSE(v.first_bad_index.has_value()) << v.problem;
  EXPECT_EQ(v.records_checked, 6u);

  // And it all survives a reopen.
  Reopen();
  EXPECT_EQ(store_->Head().last_source->incarnation, "broker-B");
  EXPECT_EQ(store_->Head().last_source->offset, 1);
  EXPECT_EQ(store_->Head().next_index, 6u);
  EXPECT_EQ(store_->Head().counters.source_resets, 1u);
  // The superseded incarnation's last offset survives the reopen too.
  std::vector<SourceMessage> after_reopen = {Msg(kInc, 2, b_again), Msg(kInc, 3, late)};
  ASSERT_OK_AND_ASSIGN(BatchResult ar, store_->ApplyBatch(after_reopen));
  EXPECT_EQ(ar.messages[0].outcome, FoldOutcome::kRedelivered);
  EXPECT_EQ(ar.messages[1].outcome, FoldOutcome::kRejected);
}

TEST_F(ShardStoreTest, ApplyBatch_GapIsARecordAndMovesThePositionPastIt) {
  Apply({Pred("a")});  // offset 0
  const std::string reason = "offsets 1..41 were no longer in Kafka";
  SourceMessage gap{kInc, 41, reason, 1};
  ASSERT_OK_AND_ASSIGN(BatchResult r, store_->ApplyBatch({&gap, 1}));
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[0].index, 1u);
  ASSERT_OK_AND_ASSIGN(StoredRecord record, store_->Get(1));
  ASSERT_OK_AND_ASSIGN(auto event, record.Event());
  ASSERT_TRUE(event.has_source_gap());
  EXPECT_EQ(event.source_gap().first_missing_offset(), 1);
  EXPECT_EQ(event.source_gap().last_missing_offset(), 41);
  EXPECT_EQ(event.source_gap().reason(), reason);
  EXPECT_EQ(store_->Head().last_source->offset, 41);
  EXPECT_EQ(store_->Head().counters.gaps, 1u);
  EXPECT_EQ(store_->Head().counters.applied, 1u);
  // Folding resumes after the gap; a late message from inside it is a redelivery.
  const std::string b = Pred("b"), late = Pred("late");
  std::vector<SourceMessage> next = {Msg(kInc, 20, late), Msg(kInc, 42, b)};
  ASSERT_OK_AND_ASSIGN(BatchResult n, store_->ApplyBatch(next));
  EXPECT_EQ(n.messages[0].outcome, FoldOutcome::kRedelivered);
  EXPECT_EQ(n.messages[1].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(n.messages[1].index, 2u);
  // A producer cannot forge a gap record.
  next_offset_ = 43;
  predlog::v1::AuditEvent forged;
  forged.mutable_source_gap()->set_reason("forged");
  BatchResult f = Apply({forged.SerializeAsString()});
  EXPECT_EQ(f.messages[0].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(f.messages[0].reason, HasSubstr("source_gap is written by predlog only"));
}

TEST_F(ShardStoreTest, Reopen_ResumesAtStoredSourcePositionAndIndex) {
  Apply({Pred("a"), Pred("b")});
  Apply({Pred("c")});
  const ShardHead before = store_->Head();
  Reopen();
  const ShardHead after = store_->Head();
  EXPECT_EQ(after.next_index, 3u);
  EXPECT_EQ(after.last_source->incarnation, kInc);
  EXPECT_EQ(after.last_source->offset, 2);
  EXPECT_EQ(after.chain_head, before.chain_head);
  EXPECT_EQ(after.counters.applied, 3u);
  BatchResult r = Apply({Pred("d")});
  EXPECT_EQ(r.messages[0].index, 3u);
}

TEST_F(ShardStoreTest, GetByPredictionId_UnknownIdIsNotFoundNamingTheId) {
  EXPECT_THAT(store_->GetByPredictionId("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("prediction_id nope")));
  EXPECT_THAT(store_->Get(5), StatusIs(absl::StatusCode::kNotFound, HasSubstr("index 5")));
}

TEST_F(ShardStoreTest, ScanSubject_ReturnsTrailInServedOrderWithinRange) {
  // Logged out of served order on purpose.
  Apply({Pred("s1-late", "s1", 30), Pred("s2-a", "s2", 5), Pred("s1-early", "s1", 10),
         Pred("s1-mid", "s1", 20), Pred("s10-x", "s10", 15)});
  ASSERT_OK_AND_ASSIGN(ScanPage all, store_->ScanSubject("s1", TimeRange{}, "", 100));
  EXPECT_THAT(Ids(all.records), ElementsAre("s1-early", "s1-mid", "s1-late"));
  EXPECT_TRUE(all.next_cursor.empty());

  TimeRange range{absl::FromUnixSeconds(1'700'000'010), absl::FromUnixSeconds(1'700'000'030)};
  ASSERT_OK_AND_ASSIGN(ScanPage some, store_->ScanSubject("s1", range, "", 100));
  EXPECT_THAT(Ids(some.records), ElementsAre("s1-early", "s1-mid"));
}

TEST_F(ShardStoreTest, ScanSubject_PagesWithCursorWithoutRepeatsOrGaps) {
  std::vector<std::string> payloads;
  for (int i = 0; i < 7; ++i) payloads.push_back(Pred("p" + std::to_string(i), "s", i));
  Apply(payloads);
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(ScanPage page, store_->ScanSubject("s", TimeRange{}, cursor, 3));
    for (const auto& id : Ids(page.records)) seen.push_back(id);
    cursor = page.next_cursor;
    ++pages;
  } while (!cursor.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(seen, ElementsAre("p0", "p1", "p2", "p3", "p4", "p5", "p6"));
  EXPECT_THAT(store_->ScanSubject("other", TimeRange{}, seen.empty() ? "" : "bogus", 3),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cursor")));
}

TEST_F(ShardStoreTest, ScanModel_SeparatesVersions) {
  Apply({Pred("a", "s", 1, "v1"), Pred("b", "s", 2, "v2"), Pred("c", "s", 3, "v1")});
  ASSERT_OK_AND_ASSIGN(ScanPage v1, store_->ScanModel("credit-limit", "v1", TimeRange{}, "", 10));
  EXPECT_THAT(Ids(v1.records), ElementsAre("a", "c"));
  ASSERT_OK_AND_ASSIGN(ScanPage v2, store_->ScanModel("credit-limit", "v2", TimeRange{}, "", 10));
  EXPECT_THAT(Ids(v2.records), ElementsAre("b"));
}

TEST_F(ShardStoreTest, ReadRange_ReturnsRecordsInLogOrder) {
  Apply({Pred("a"), Pred("b"), Pred("c"), Pred("d")});
  ASSERT_OK_AND_ASSIGN(auto records, store_->ReadRange(1, 2));
  ASSERT_THAT(records, SizeIs(2));
  EXPECT_EQ(records[0].index, 1u);
  EXPECT_EQ(records[1].index, 2u);
  ASSERT_OK_AND_ASSIGN(auto tail, store_->ReadRange(3, 100));
  EXPECT_THAT(tail, SizeIs(1));
}

// RocksDB directly, as an attacker with disk access would.
void TamperWithRecord(const std::string& dir, uint64_t index,
                      const std::function<void(std::string*)>& edit) {
  testing::EditRawShardDb(dir, "events", [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events) {
    std::string key;
    AppendU64(&key, index);
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), events, key, &value).ok());
    edit(&value);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), events, key, value).ok());
  });
}

constexpr size_t kPayloadOffset = 1 + 32 + 32 + 4 + 8 + 8;  // record header, shard_store_impl.h

// Every record of the shard proven in its Merkle tree at every size, and
// every size consistent with every later one.
void ExpectTreeProvesEveryRecord(const ShardStore& store) {
  const uint64_t n = store.Head().next_index;
  std::vector<Digest> leaves;
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_OK_AND_ASSIGN(StoredRecord r, store.Get(i));
    leaves.push_back(RecordMerkleLeaf(r.appended_at, Sha256(r.payload)));
  }
  MerkleFrontier reference;
  std::vector<MerkleNode> ignored;
  std::vector<Digest> roots;
  for (uint64_t size = 1; size <= n; ++size) {
    reference.Append(leaves[size - 1], &ignored);
    ASSERT_OK_AND_ASSIGN(Digest root, store.TreeRoot(size));
    ASSERT_EQ(root, reference.Root()) << size;
    roots.push_back(root);
    for (uint64_t i = 0; i < size; ++i) {
      ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof, store.InclusionProof(i, size));
      ASSERT_THAT(VerifyMerkleInclusion(i, size, leaves[i], proof, root), IsOk())
          << i << " of " << size;
    }
  }
  for (uint64_t old_size = 1; old_size <= n; ++old_size) {
    ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof, store.ConsistencyProof(old_size, n));
    ASSERT_THAT(VerifyMerkleConsistency(old_size, n, roots[old_size - 1], roots[n - 1], proof),
                IsOk())
        << old_size;
  }
}

// A shard clock the test sets: what each batch is stamped with.
class SteppedClock {
 public:
  std::function<absl::Time()> Fn() {
    return [this] { return now_; };
  }
  void Set(absl::Time t) { now_ = t; }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

absl::Time At(int hour, int minute = 0) {
  return absl::FromCivil(absl::CivilMinute(2026, 11, 30, hour, minute), absl::UTCTimeZone());
}

class ShardTimeTest : public ShardStoreTest {
 protected:
  void SetUp() override {
    ShardOptions options;
    options.dir = dir_.Sub("shard");
    options.name = "predlog.events-0";
    options.clock = clock_.Fn();
    ASSERT_OK_AND_ASSIGN(store_, ShardStore::Open(options));
  }

  std::string Change(const std::string& field, double value, absl::Time recorded_at) {
    predlog::v1::AuditEvent e = MakeEntityChange("customer", "c1", {{field, value}});
    TimeToProto(recorded_at, e.mutable_recorded_at());
    return e.SerializeAsString();
  }

  SteppedClock clock_;
};

TEST_F(ShardTimeTest, CutAtTimeCountsRecordsAppendedBeforeItNotProducerTimes) {
  // The issue's input: producers stamp credit_limit 12:00 and then income
  // 10:00 (a clock two hours behind). The shard appended them at 12:00 and
  // 12:05 by its own clock.
  clock_.Set(At(12));
  Apply({Change("credit_limit", 2000, At(12))});
  clock_.Set(At(12, 5));
  Apply({Change("income", 50000, At(10))});

  auto cut = [&](absl::Time t) {
    absl::StatusOr<uint64_t> c = store_->CutAtTime(t);
    EXPECT_THAT(c, IsOk());
    return c.value_or(999);
  };
  EXPECT_EQ(cut(At(11)), 0u);     // nothing was in the log at 11:00
  EXPECT_EQ(cut(At(12, 1)), 1u);  // credit_limit only
  EXPECT_EQ(cut(At(12, 30)), 2u);
  // Monotone in t, and never past a record appended at or after t.
  uint64_t previous = 0;
  for (int minute = 0; minute < 60; ++minute) {
    const absl::Time t = At(11) + absl::Minutes(minute * 2);
    const uint64_t c = cut(t);
    EXPECT_GE(c, previous) << t;
    for (uint64_t i = 0; i < c; ++i) {
      ASSERT_OK_AND_ASSIGN(StoredRecord r, store_->Get(i));
      ASSERT_TRUE(r.appended_at.has_value());
      EXPECT_LT(*r.appended_at, t);
    }
    previous = c;
  }
  // The producer's time stays in the event.
  ASSERT_OK_AND_ASSIGN(StoredRecord income, store_->Get(1));
  EXPECT_EQ(income.appended_at, At(12, 5));
  EXPECT_EQ(TimeFromProto(income.Event()->recorded_at()), At(10));
}

TEST_F(ShardTimeTest, AppendTimeNeverGoesBackWhenTheShardClockDoes) {
  clock_.Set(At(12));
  Apply({Pred("a")});
  // The host clock steps back an hour (NTP, a VM restore); then a new broker
  // incarnation makes the shard write a SourceReset record of its own.
  clock_.Set(At(11));
  Apply({Pred("b")}, "broker-B");
  ASSERT_EQ(store_->Head().next_index, 3u);  // a, SourceReset, b
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(StoredRecord rec, store_->Get(i));
    EXPECT_EQ(rec.appended_at, At(12)) << i;
  }
  ASSERT_OK_AND_ASSIGN(StoredRecord reset, store_->Get(1));
  ASSERT_TRUE(reset.Event()->has_source_reset());
  EXPECT_EQ(TimeFromProto(reset.Event()->recorded_at()), At(12));
  EXPECT_THAT(store_->CutAtTime(At(11, 30)), IsOkAndHolds(0u));
  EXPECT_THAT(store_->CutAtTime(At(12) + absl::Microseconds(1)), IsOkAndHolds(3u));

  // The latest append time survives a restart: a clock still behind after it
  // does not go back either.
  store_.reset();
  SetUp();
  clock_.Set(At(11, 59));
  Apply({Pred("c")}, "broker-B");
  ASSERT_OK_AND_ASSIGN(StoredRecord c, store_->Get(3));
  EXPECT_EQ(c.appended_at, At(12));
  clock_.Set(At(13));
  Apply({Pred("d")}, "broker-B");
  ASSERT_OK_AND_ASSIGN(StoredRecord d, store_->Get(4));
  EXPECT_EQ(d.appended_at, At(13));
}

TEST_F(ShardTimeTest, AShardOfFormat2GetsItsTimeIndexInLogOrderOnOpen) {
  clock_.Set(At(12));
  Apply({Pred("a"), Pred("b"), Pred("c")});
  store_.reset();
  // What format 2 wrote: by_time keyed by the producers' recorded_at (here
  // 12:20, 12:10 and, from a clock far ahead, 2099), records without an
  // append time, no merkle column family, and format 2 in meta.
  testing::EditRawShardDb(dir_.Sub("shard"), "by_time",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* by_time) {
                            const absl::Time producer[] = {At(12, 20), At(12, 10),
                                                           absl::FromUnixSeconds(4'070'908'800)};
                            for (uint64_t i = 0; i < 3; ++i) {
                              std::string now, old;
                              AppendTime(&now, At(12));
                              AppendTime(&old, producer[i]);
                              now += IndexKey(i);
                              old += IndexKey(i);
                              ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), by_time, now).ok());
                              ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), by_time, old, "").ok());
                            }
                          });
  testing::EditRawShardDb(dir_.Sub("shard"), "merkle",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* merkle) {
                            ASSERT_TRUE(db->DropColumnFamily(merkle).ok());
                          });
  for (uint64_t i = 0; i < 3; ++i) {
    TamperWithRecord(dir_.Sub("shard"), i, [](std::string* v) {
      // Record format 1: the header without appended_at.
      *v = std::string(1, '\x01') + v->substr(1, kPayloadOffset - 9) + v->substr(kPayloadOffset);
    });
  }
  testing::EditRawShardDb(dir_.Sub("shard"), "meta",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta) {
                            std::string v;
                            AppendU32(&v, 2);
                            ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), meta, "format", v).ok());
                          });
  {
    // Read-only, it cannot be upgraded: its tree is missing, and says so.
    ShardOptions options;
    options.dir = dir_.Sub("shard");
    options.read_only = true;
    ASSERT_OK_AND_ASSIGN(auto read_only, ShardStore::Open(options));
    EXPECT_THAT(read_only->TreeRoot(3),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("open it writable")));
  }
  clock_.Set(At(12, 30));
  SetUp();
  ExpectTreeProvesEveryRecord(*store_);
  ASSERT_OK_AND_ASSIGN(StoredRecord a, store_->Get(0));
  EXPECT_FALSE(a.appended_at.has_value());
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store_->Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
  // Running maximum in log order, capped at the shard's clock when it
  // opened: 12:20, 12:20, 12:30 (not 2099).
  EXPECT_THAT(store_->CutAtTime(At(12, 15)), IsOkAndHolds(0u));
  EXPECT_THAT(store_->CutAtTime(At(12, 25)), IsOkAndHolds(2u));
  EXPECT_THAT(store_->CutAtTime(At(12, 31)), IsOkAndHolds(3u));
  // New records come at or after the latest of them, whatever the clock says.
  clock_.Set(At(12, 1));
  Apply({Pred("d")});
  ASSERT_OK_AND_ASSIGN(StoredRecord d, store_->Get(3));
  EXPECT_EQ(d.appended_at, At(12, 30));
  EXPECT_THAT(store_->CutAtTime(At(12, 30)), IsOkAndHolds(2u));
  EXPECT_THAT(store_->CutAtTime(At(12, 30) + absl::Microseconds(1)), IsOkAndHolds(4u));
  store_.reset();
  testing::EditRawShardDb(dir_.Sub("shard"), "meta",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta) {
                            std::string v;
                            ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), meta, "format", &v).ok());
                            absl::string_view in = v;
                            uint32_t format = 0;
                            ASSERT_TRUE(ReadU32(&in, &format));
                            EXPECT_EQ(format, 5u);  // the current format: every upgrade ran
                          });
}

TEST_F(ShardTimeTest, TheMerkleTreeProvesEveryRecordAcrossRestarts) {
  EXPECT_THAT(store_->TreeRoot(0), IsOkAndHolds(MerkleEmptyRoot()));
  Apply({Pred("a"), Pred("b"), Change("income", 1, At(9))});
  clock_.Set(At(13));
  Apply({Pred("c")}, "broker-B");  // with a SourceReset of the shard's own
  ExpectTreeProvesEveryRecord(*store_);
  ASSERT_OK_AND_ASSIGN(Digest root5, store_->TreeRoot(5));
  store_.reset();
  SetUp();
  EXPECT_THAT(store_->TreeRoot(5), IsOkAndHolds(root5));
  for (int i = 0; i < 12; ++i) Apply({Pred("d" + std::to_string(i))}, "broker-B");
  ExpectTreeProvesEveryRecord(*store_);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store_->Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;

  EXPECT_THAT(store_->TreeRoot(18),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("has 17 records")));
  EXPECT_THAT(store_->InclusionProof(17, 17),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in a tree")));
  EXPECT_THAT(store_->ConsistencyProof(3, 18), StatusIs(absl::StatusCode::kOutOfRange, _));
}

TEST_F(ShardTimeTest, SignedCheckpointsAreKeptAndProvenConsistent) {
  ASSERT_OK_AND_ASSIGN(NoteKeyPair key, GenerateNoteKey("predlog.test"));
  ASSERT_OK_AND_ASSIGN(auto signer, NoteSigner::Create(key.signer_key));
  ASSERT_OK_AND_ASSIGN(auto verifier, NoteVerifier::Create(key.verifier_key));
  EXPECT_THAT(store_->LatestCheckpoint(), StatusIs(absl::StatusCode::kNotFound, _));
  Apply({Pred("a"), Pred("b"), Pred("c")});
  ASSERT_OK_AND_ASSIGN(std::string first, store_->SignCheckpoint(*signer, "predlog.test/s-0"));
  EXPECT_THAT(store_->SignCheckpoint(*signer, "predlog.test/s-0"), IsOkAndHolds(first));
  Apply({Pred("d"), Pred("e")});
  ASSERT_OK_AND_ASSIGN(std::string second, store_->SignCheckpoint(*signer, "predlog.test/s-0"));
  EXPECT_THAT(store_->LatestCheckpoint(), IsOkAndHolds(second));
  EXPECT_THAT(store_->CheckpointAt(3), IsOkAndHolds(first));

  ASSERT_OK_AND_ASSIGN(std::string old_text, verifier->Open(first));
  ASSERT_OK_AND_ASSIGN(std::string new_text, verifier->Open(second));
  ASSERT_OK_AND_ASSIGN(Checkpoint old_checkpoint, ParseCheckpoint(old_text));
  ASSERT_OK_AND_ASSIGN(Checkpoint new_checkpoint, ParseCheckpoint(new_text));
  EXPECT_EQ(old_checkpoint.origin, "predlog.test/s-0");
  EXPECT_EQ(old_checkpoint.size, 3u);
  EXPECT_EQ(new_checkpoint.size, 5u);
  EXPECT_THAT(store_->TreeRoot(5), IsOkAndHolds(new_checkpoint.root));
  ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof, store_->ConsistencyProof(3, 5));
  EXPECT_THAT(VerifyMerkleConsistency(3, 5, old_checkpoint.root, new_checkpoint.root, proof),
              IsOk());
  // Kept across a restart.
  store_.reset();
  SetUp();
  EXPECT_THAT(store_->LatestCheckpoint(), IsOkAndHolds(second));
  // After a key rotation the same tree gets a note the new key signed.
  ASSERT_OK_AND_ASSIGN(NoteKeyPair rotated, GenerateNoteKey("predlog.test"));
  ASSERT_OK_AND_ASSIGN(auto new_signer, NoteSigner::Create(rotated.signer_key));
  ASSERT_OK_AND_ASSIGN(auto new_verifier, NoteVerifier::Create(rotated.verifier_key));
  ASSERT_OK_AND_ASSIGN(std::string resigned,
                       store_->SignCheckpoint(*new_signer, "predlog.test/s-0"));
  EXPECT_THAT(new_verifier->Open(resigned), IsOk());
  EXPECT_THAT(store_->SignCheckpoint(*signer, "two\nlines"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("origin")));
}

TEST_F(ShardTimeTest, ACheckpointCarriesItsSigningTimeAndExtensionsAndIsReusedOnlyWhileRecent) {
  ASSERT_OK_AND_ASSIGN(NoteKeyPair key, GenerateNoteKey("predlog.test"));
  ASSERT_OK_AND_ASSIGN(auto signer, NoteSigner::Create(key.signer_key));
  ASSERT_OK_AND_ASSIGN(auto verifier, NoteVerifier::Create(key.verifier_key));
  const std::vector<std::string> shards = {"predlog-shards predlog.events/1"};
  clock_.Set(At(12));
  Apply({Pred("a")});
  const auto open = [&](const std::string& note) {
    absl::StatusOr<std::string> text = verifier->Open(note);
    EXPECT_THAT(text, IsOk());
    absl::StatusOr<Checkpoint> checkpoint = ParseCheckpoint(text.value_or(""));
    EXPECT_THAT(checkpoint, IsOk());
    return checkpoint.value_or(Checkpoint());
  };
  clock_.Set(At(12, 1));
  ASSERT_OK_AND_ASSIGN(std::string first,
                       store_->SignCheckpoint(*signer, "predlog.test/s-0", shards));
  // The signed-at line first (the shard's clock), then the caller's lines.
  EXPECT_EQ(open(first).extensions, (std::vector<std::string>{SignedAtLine(At(12, 1)), shards[0]}));
  // Recent enough: the kept one; too old, or other extensions: signed anew.
  clock_.Set(At(12, 2));
  EXPECT_THAT(store_->SignCheckpoint(*signer, "predlog.test/s-0", shards, absl::Minutes(5)),
              IsOkAndHolds(first));
  ASSERT_OK_AND_ASSIGN(std::string fresh, store_->SignCheckpoint(*signer, "predlog.test/s-0",
                                                                 shards, absl::ZeroDuration()));
  EXPECT_EQ(open(fresh).extensions[0], SignedAtLine(At(12, 2)));
  EXPECT_THAT(store_->CheckpointAt(1), IsOkAndHolds(first));  // the first handed out stays
  ASSERT_OK_AND_ASSIGN(std::string other, store_->SignCheckpoint(*signer, "predlog.test/s-0"));
  EXPECT_EQ(open(other).extensions, std::vector<std::string>{SignedAtLine(At(12, 2))});
  EXPECT_THAT(store_->CheckpointAt(1), IsOkAndHolds(other));  // other lines: replaced
  EXPECT_THAT(store_->SignCheckpoint(*signer, "predlog.test/s-0", {"predlog-signed-at x"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signed-at")));
  EXPECT_THAT(store_->SignCheckpoint(*signer, "predlog.test/s-0", {"a\nb"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("one non-empty line")));
}

TEST_F(ShardTimeTest, VerifyFindsATimeIndexThatDisagreesWithTheRecords) {
  Apply({Pred("a"), Pred("b"), Pred("c")});
  store_.reset();
  // Record 1 moved in the time index, as a hand edit to change what a cut
  // holds would.
  testing::EditRawShardDb(dir_.Sub("shard"), "by_time",
                          [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* by_time) {
                            std::string key, moved;
                            AppendTime(&key, absl::FromUnixSeconds(1'800'000'000));
                            key += IndexKey(1);
                            AppendTime(&moved, absl::FromUnixSeconds(1'700'000'000));
                            moved += IndexKey(1);
                            ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), by_time, key).ok());
                            ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), by_time, moved, "").ok());
                          });
  SetUp();
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store_->Verify());
  EXPECT_EQ(report.first_bad_index, 1u);
  EXPECT_THAT(report.problem, HasSubstr("time index does not hold it"));
}

TEST_F(ShardTimeTest, VerifyFindsAChangedMerkleNode) {
  Apply({Pred("a"), Pred("b"), Pred("c"), Pred("d")});
  store_.reset();
  testing::EditRawShardDb(
      dir_.Sub("shard"), "merkle", [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* merkle) {
        std::string key;
        AppendU8(&key, 1);  // the parent of records 2 and 3
        AppendU64(&key, 1);
        ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), merkle, key, std::string(32, 'x')).ok());
      });
  SetUp();
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store_->Verify());
  ASSERT_TRUE(report.first_bad_index.has_value());
  EXPECT_THAT(report.problem, HasSubstr("Merkle tree does not match"));
}

TEST_F(ShardStoreTest, EntityChanges_FoldIntoCurrentState) {
  Apply(
      {MakeEntityChange("customer", "c1", {{"income", 50000}, {"limit", 2000}}).SerializeAsString(),
       MakeEntityChange("customer", "c1", {{"limit", 1500}}, {"income"}).SerializeAsString()});
  ASSERT_OK_AND_ASSIGN(auto state, store_->GetEntity("customer", "c1"));
  EXPECT_EQ(state.fields().size(), 1u);
  EXPECT_EQ(state.fields().at("limit").double_value(), 1500);
  EXPECT_EQ(state.last_changed_index(), 1u);

  Apply({MakeEntityChange("customer", "c1", {}, {}, true).SerializeAsString()});
  ASSERT_OK_AND_ASSIGN(auto deleted, store_->GetEntity("customer", "c1"));
  EXPECT_TRUE(deleted.deleted());
  EXPECT_TRUE(deleted.fields().empty());
  EXPECT_THAT(store_->GetEntity("customer", "c2"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("entity customer/c2")));
}

TEST_F(ShardStoreTest, ModelRegistered_RepeatIsDuplicateAndChangedDigestIsConflict) {
  const std::string digest1 = ToHex(Sha256("artifact-1"));
  const std::string digest2 = ToHex(Sha256("artifact-2"));
  BatchResult r = Apply({MakeModelRegistered("credit", "v1", digest1).SerializeAsString(),
                         MakeModelRegistered("credit", "v1", digest1).SerializeAsString()});
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[1].outcome, FoldOutcome::kDuplicate);
  EXPECT_EQ(r.messages[1].leaf, r.messages[0].leaf);
  BatchResult c = Apply({MakeModelRegistered("credit", "v1", digest2).SerializeAsString()});
  EXPECT_EQ(c.messages[0].outcome, FoldOutcome::kConflict);
  ASSERT_OK_AND_ASSIGN(auto model, store_->GetModel("credit", "v1"));
  EXPECT_EQ(model.model().artifact_sha256(), digest1);
}

TEST_F(ShardStoreTest, ScanTrace_ReturnsTheChainInServedOrderAndOnlyIt) {
  auto traced = [](const std::string& id, const std::string& trace, int seconds) {
    PredictionSpec spec;
    spec.prediction_id = id;
    spec.served_at = absl::FromUnixSeconds(1'700'000'000 + seconds);
    predlog::v1::AuditEvent event = MakePrediction(spec);
    event.mutable_prediction_logged()->set_trace_id(trace);
    return event.SerializeAsString();
  };
  Apply({traced("fraud", "t1", 2), traced("income", "t1", 1), traced("other", "t2", 1),
         Pred("untraced"), traced("limit", "t1", 3)});
  ASSERT_OK_AND_ASSIGN(ScanPage t1, store_->ScanTrace("t1", "", 10));
  EXPECT_THAT(Ids(t1.records), ElementsAre("income", "fraud", "limit"));
  ASSERT_OK_AND_ASSIGN(ScanPage first, store_->ScanTrace("t1", "", 2));
  EXPECT_THAT(Ids(first.records), ElementsAre("income", "fraud"));
  ASSERT_OK_AND_ASSIGN(ScanPage rest, store_->ScanTrace("t1", first.next_cursor, 2));
  EXPECT_THAT(Ids(rest.records), ElementsAre("limit"));
  ASSERT_OK_AND_ASSIGN(ScanPage none, store_->ScanTrace("t", "", 10));
  EXPECT_TRUE(none.records.empty());
}

TEST_F(ShardStoreTest, ModelDeployed_OfAnUnregisteredVersionOrAnotherDigestIsRejected) {
  const std::string digest = ToHex(Sha256("a1"));
  auto deploy = [](const std::string& version, const std::string& artifact_sha256) {
    predlog::v1::AuditEvent event;
    auto* d = event.mutable_model_deployed();
    d->set_route("credit-limit");
    d->mutable_model()->set_name("credit");
    d->mutable_model()->set_version(version);
    d->mutable_model()->set_artifact_sha256(artifact_sha256);
    d->set_traffic_fraction(1.0);
    return event.SerializeAsString();
  };
  BatchResult r = Apply({deploy("v1", ""),  // before its registration
                         MakeModelRegistered("credit", "v1", digest).SerializeAsString(),
                         deploy("v1", digest),                  // registered in this batch
                         deploy("v1", ToHex(Sha256("other"))),  // another artifact
                         deploy("v9", ""),                      // never registered
                         Pred("neighbour")});
  EXPECT_EQ(r.messages[0].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(r.messages[0].reason, HasSubstr("model_deployed.model credit@v1 is not registered"));
  EXPECT_EQ(r.messages[1].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[2].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[3].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(r.messages[3].reason,
              HasSubstr("but credit@v1 was registered at index 0 with " + digest));
  EXPECT_EQ(r.messages[4].outcome, FoldOutcome::kRejected);
  EXPECT_THAT(r.messages[4].reason, HasSubstr("model_deployed.model credit@v9 is not registered"));
  EXPECT_EQ(r.messages[5].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r.messages[5].index, 2u);

  ASSERT_OK_AND_ASSIGN(RegistryState registry, store_->GetRegistry());
  ASSERT_EQ(registry.deployments.size(), 1u);
  EXPECT_EQ((registry.deployments.at({"credit-limit", "credit@v1"}).index), 1u);
  EXPECT_EQ(store_->Head().counters.rejected, 3u);
}

TEST_F(ShardStoreTest, GetRegistry_EqualsAFoldOfTheLogIncludingCanaryDeploys) {
  auto deploy = [](const std::string& version, double fraction) {
    predlog::v1::AuditEvent event;
    auto* d = event.mutable_model_deployed();
    d->set_route("credit-limit");
    d->mutable_model()->set_name("credit");
    d->mutable_model()->set_version(version);
    d->set_traffic_fraction(fraction);
    d->set_reason("test");
    return event.SerializeAsString();
  };
  Apply({MakeModelRegistered("credit", "v1", ToHex(Sha256("a1"))).SerializeAsString(),
         deploy("v1", 1.0),
         MakeModelRegistered("credit", "v2", ToHex(Sha256("a2"))).SerializeAsString(),
         deploy("v1", 0.9), deploy("v2", 0.1)});
  ASSERT_OK_AND_ASSIGN(RegistryState registry, store_->GetRegistry());
  ASSERT_EQ(registry.models.size(), 2u);
  EXPECT_EQ((registry.models.at({"credit", "v2"}).index), 2u);
  ASSERT_EQ(registry.deployments.size(), 2u);
  EXPECT_EQ((registry.deployments.at({"credit-limit", "credit@v1"}).body.traffic_fraction()), 0.9);
  EXPECT_EQ((registry.deployments.at({"credit-limit", "credit@v2"}).index), 4u);

  RegistryState folded;
  ASSERT_OK_AND_ASSIGN(auto records, store_->ReadRange(0, 100));
  for (const auto& record : records) {
    ASSERT_OK_AND_ASSIGN(auto event, record.Event());
    ApplyRegistryRecord(event, record.index, record.leaf, &folded);
  }
  ASSERT_EQ(folded.deployments.size(), registry.deployments.size());
  for (const auto& [key, entry] : registry.deployments) {
    EXPECT_EQ(folded.deployments.at(key).leaf, entry.leaf);
  }
  for (const auto& [key, entry] : registry.models) {
    EXPECT_EQ(folded.models.at(key).leaf, entry.leaf);
  }
}

TEST_F(ShardStoreTest, CorruptDataBlockFailsItsReadsAsDataLossAndIsCounted) {
  // What a damaged disk leaves: bytes flipped in the middle of the shard's
  // largest table file (the events column family's data blocks).
  std::vector<std::string> payloads;
  for (int i = 0; i < 400; ++i) payloads.push_back(Pred("p" + std::to_string(i)));
  Apply(payloads);
  ASSERT_OK(store_->Compact());
  store_.reset();
  std::string largest;
  uintmax_t largest_size = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.Sub("shard/db"))) {
    if (entry.path().extension() == ".sst" && entry.file_size() > largest_size) {
      largest = entry.path().string();
      largest_size = entry.file_size();
    }
  }
  ASSERT_FALSE(largest.empty());
  {
    std::fstream file(largest, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(largest_size / 3));
    const std::string garbage(64, '\x5a');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  Reopen();
  EXPECT_EQ(store_->read_corruptions(), 0u);
  int data_loss = 0, ok = 0;
  for (uint64_t i = 0; i < 400; ++i) {
    absl::StatusOr<StoredRecord> record = store_->Get(i);
    if (record.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(record.status().code(), absl::StatusCode::kDataLoss) << record.status();
      ++data_loss;
    }
  }
  EXPECT_GT(data_loss, 0);
  EXPECT_GT(ok, 0);  // the rest of the shard still reads
  EXPECT_EQ(store_->read_corruptions(), static_cast<uint64_t>(data_loss));
}

TEST_F(ShardStoreTest, Verify_IntactShardChecksEveryRecord) {
  Apply({Pred("a"), Pred("b"), Pred("c")});
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store_->Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
  EXPECT_EQ(report.records_checked, 3u);
}

TEST_F(ShardStoreTest, Verify_NamesTheRecordWhoseBytesWereChanged) {
  Apply({Pred("a"), Pred("b"), Pred("c")});
  store_.reset();
  TamperWithRecord(dir_.Sub("shard"), 1, [](std::string* v) { (*v)[kPayloadOffset + 5] ^= 1; });
  Reopen();
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store_->Verify());
  EXPECT_EQ(report.first_bad_index, 1u);
  EXPECT_THAT(report.problem, HasSubstr("leaf does not match"));
}

TEST_F(ShardStoreTest, Verify_NamesTheRecordWhoseLeafWasRecomputed) {
  Apply({Pred("a"), Pred("b"), Pred("c")});
  store_.reset();
  // A careful attacker rewrites bytes and leaf together; the chain still breaks.
  TamperWithRecord(dir_.Sub("shard"), 1, [](std::string* v) {
    std::string forged = Pred("b", "someone-else");
    const Digest leaf = Sha256(forged);
    *v = v->substr(0, 1) + std::string(leaf.begin(), leaf.end()) +
         v->substr(33, kPayloadOffset - 33) + forged;
  });
  Reopen();
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store_->Verify());
  EXPECT_EQ(report.first_bad_index, 1u);
  EXPECT_THAT(report.problem, HasSubstr("chain"));
}

TEST_F(ShardStoreTest, ApplyBatch_OnReadOnlyStoreIsFailedPrecondition) {
  Apply({Pred("a")});
  ShardOptions options;
  options.dir = dir_.Sub("shard");
  options.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto ro, ShardStore::Open(options));
  ASSERT_OK_AND_ASSIGN(StoredRecord rec, ro->GetByPredictionId("a"));
  EXPECT_EQ(rec.index, 0u);
  std::string p = Pred("b");
  std::vector<SourceMessage> m = {Msg(kInc, 10, p)};
  EXPECT_THAT(ro->ApplyBatch(m),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("read-only")));
}

// SST files under the shard's db/ directory.
int SstFiles(const std::string& shard_dir) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(shard_dir + "/db")) {
    if (entry.path().extension() == ".sst") ++n;
  }
  return n;
}

TEST_F(ShardStoreTest, Compact_MovesEverythingIntoTablesAndKeepsRecordsIndexesAndChain) {
  std::vector<std::string> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(Pred(absl::StrCat("c", i), "subject-7", i));
  Apply(batch);
  ASSERT_EQ(SstFiles(dir_.Sub("shard")), 0) << "200 small records should still be in the memtable";

  ASSERT_OK(store_->Compact());
  EXPECT_GT(SstFiles(dir_.Sub("shard")), 0);
  Reopen();
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store_->Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
  EXPECT_EQ(report.records_checked, 200u);
  ASSERT_OK_AND_ASSIGN(StoredRecord record, store_->GetByPredictionId("c123"));
  EXPECT_EQ(record.index, 123u);
  ASSERT_OK_AND_ASSIGN(ScanPage page, store_->ScanSubject("subject-7", TimeRange{}, "", 1000));
  EXPECT_EQ(page.records.size(), 200u);
  Apply({Pred("after-compaction")});
  EXPECT_EQ(store_->Head().next_index, 201u);
}

TEST_F(ShardStoreTest, Compact_OnReadOnlyStoreIsFailedPrecondition) {
  Apply({Pred("a")});
  ShardOptions options;
  options.dir = dir_.Sub("shard");
  options.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto ro, ShardStore::Open(options));
  EXPECT_THAT(ro->Compact(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("read-only")));
}

TEST(ShardStoreOpen, BadOptionsAreInvalidArgumentNamingTheField) {
  EXPECT_THAT(ShardStore::Open(ShardOptions{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ShardOptions.dir")));
  TempDir dir;
  ShardOptions options;
  options.dir = dir.Sub("x");
  options.max_message_bytes = 0;
  EXPECT_THAT(ShardStore::Open(options), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  HasSubstr("ShardOptions.max_message_bytes")));
  options.max_message_bytes = 10;
  options.read_only = true;
  EXPECT_THAT(ShardStore::Open(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no shard at")));
}

}  // namespace
}  // namespace predlog::storage
