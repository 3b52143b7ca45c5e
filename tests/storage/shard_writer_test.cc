// ShardWriter: the one writer of a shard, shared by direct appends and Kafka
// batches, against a real RocksDB shard in a temp dir.
#include "storage/shard_writer.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/logging.h"
#include "storage/sha256.h"
#include "tests/testing/events.h"
#include "tests/testing/raw_shard_db.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::MakePrediction;
using ::predlog::testing::Msg;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;

class ShardWriterTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  // Closes the writer and opens the shard again under a writer with `options`.
  void Restart(ShardWriterOptions options) {
    writer_.reset();
    ShardOptions shard_options;
    shard_options.dir = dir_.Sub("shard");
    shard_options.name = "predlog.events-0";
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShardStore> shard, ShardStore::Open(shard_options));
    ASSERT_OK_AND_ASSIGN(writer_, ShardWriter::Start(std::move(shard), std::move(options)));
  }

  void Open() {
    ShardOptions options;
    options.dir = dir_.Sub("shard");
    options.name = "predlog.events-0";
    options.sync_writes = true;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShardStore> shard, ShardStore::Open(options));
    ASSERT_OK_AND_ASSIGN(writer_, ShardWriter::Start(std::move(shard), {}));
  }

  static predlog::v1::AuditEvent Prediction(int i) {
    PredictionSpec spec;
    spec.prediction_id = "p-" + std::to_string(i);
    spec.subject_id = "s-" + std::to_string(i % 7);
    return MakePrediction(spec);
  }

  // Appends and waits for the answer.
  absl::StatusOr<MessageResult> AppendAndWait(const predlog::v1::AuditEvent& event) {
    absl::Mutex mu;
    std::optional<absl::StatusOr<MessageResult>> answer;
    writer_->Append(event, event.SerializeAsString(), [&](absl::StatusOr<MessageResult> r) {
      absl::MutexLock lock(&mu);
      answer = std::move(r);
    });
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](std::optional<absl::StatusOr<MessageResult>>* a) { return a->has_value(); }, &answer));
    return std::move(**answer);
  }

  TempDir dir_;
  std::unique_ptr<ShardWriter> writer_;
};

TEST_F(ShardWriterTest, ConcurrentAppendsAreEachFoldedOnceInFewerGroupsThanCalls) {
  constexpr int kThreads = 8, kPerThread = 200;
  std::atomic<int> applied{0}, answered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<MessageResult> r = AppendAndWait(Prediction(t * kPerThread + i));
        ++answered;
        if (r.ok() && r->outcome == FoldOutcome::kApplied) ++applied;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(answered.load(), kThreads * kPerThread);
  EXPECT_EQ(applied.load(), kThreads * kPerThread);
  const ShardHead head = writer_->shard().Head();
  EXPECT_EQ(head.next_index, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_EQ(head.direct_appends, static_cast<uint64_t>(kThreads * kPerThread));
  // Eight callers at once share group commits.
  EXPECT_LT(writer_->groups_written(), static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_FALSE(head.last_source.has_value()) << "a direct append moved the Kafka position";
  ASSERT_OK_AND_ASSIGN(VerifyReport report, writer_->shard().Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
}

TEST_F(ShardWriterTest, DirectRecordsKeepTheirOwnSourceAndTheBytesGiven) {
  const predlog::v1::AuditEvent event = Prediction(1);
  ASSERT_OK_AND_ASSIGN(MessageResult first, AppendAndWait(event));
  ASSERT_OK_AND_ASSIGN(MessageResult second, AppendAndWait(Prediction(2)));
  ASSERT_EQ(first.outcome, FoldOutcome::kApplied);
  ASSERT_OK_AND_ASSIGN(StoredRecord record, writer_->shard().Get(first.index));
  EXPECT_EQ(record.payload, event.SerializeAsString());
  EXPECT_EQ(record.leaf, Sha256(event.SerializeAsString()));
  EXPECT_EQ(record.source.incarnation, kDirectSource);
  EXPECT_EQ(record.source.offset, 0);
  ASSERT_OK_AND_ASSIGN(StoredRecord next, writer_->shard().Get(second.index));
  EXPECT_EQ(next.source.offset, 1);
}

TEST_F(ShardWriterTest, RetryIsDuplicateAndOtherContentIsConflictOnTheDirectPath) {
  predlog::v1::AuditEvent event = Prediction(1);
  ASSERT_OK_AND_ASSIGN(MessageResult first, AppendAndWait(event));
  ASSERT_OK_AND_ASSIGN(MessageResult again, AppendAndWait(event));
  EXPECT_EQ(again.outcome, FoldOutcome::kDuplicate);
  EXPECT_EQ(again.index, first.index);
  event.mutable_prediction_logged()->set_subject_id("someone-else");
  ASSERT_OK_AND_ASSIGN(MessageResult other, AppendAndWait(event));
  EXPECT_EQ(other.outcome, FoldOutcome::kConflict);
  EXPECT_EQ(other.index, first.index);
}

TEST_F(ShardWriterTest, KafkaAndDirectSourcesNeverMakeEachOtherLookRestartedOrRedelivered) {
  const std::string k0 = Prediction(100).SerializeAsString();
  const std::string k1 = Prediction(101).SerializeAsString();
  const std::string k2 = Prediction(102).SerializeAsString();
  const std::vector<SourceMessage> first = {Msg("broker-a", 0, k0), Msg("broker-a", 1, k1)};
  ASSERT_OK_AND_ASSIGN(BatchResult r1, writer_->ApplyBatch(first));
  ASSERT_OK_AND_ASSIGN(MessageResult direct, AppendAndWait(Prediction(1)));
  EXPECT_EQ(direct.outcome, FoldOutcome::kApplied);
  // The Kafka source goes on where it was: a redelivery is still one, and
  // its next offset is folded with no SourceReset.
  const std::vector<SourceMessage> second = {Msg("broker-a", 1, k1), Msg("broker-a", 2, k2)};
  ASSERT_OK_AND_ASSIGN(BatchResult r2, writer_->ApplyBatch(second));
  EXPECT_EQ(r2.messages[0].outcome, FoldOutcome::kRedelivered);
  EXPECT_EQ(r2.messages[1].outcome, FoldOutcome::kApplied);
  EXPECT_EQ(r2.source_resets, 0);
  const ShardHead head = writer_->shard().Head();
  EXPECT_EQ(head.counters.source_resets, 0u);
  ASSERT_TRUE(head.last_source.has_value());
  EXPECT_EQ(head.last_source->incarnation, "broker-a");
  EXPECT_EQ(head.last_source->offset, 2);
  EXPECT_EQ(head.direct_appends, 1u);
  EXPECT_EQ(head.next_index, 4u);
}

TEST_F(ShardWriterTest, PositionsOfBothSourcesSurviveAReopen) {
  const std::string k0 = Prediction(100).SerializeAsString();
  const std::vector<SourceMessage> batch = {Msg("broker-a", 7, k0)};
  ASSERT_OK(writer_->ApplyBatch(batch).status());
  ASSERT_OK(AppendAndWait(Prediction(1)).status());
  ASSERT_OK(AppendAndWait(Prediction(2)).status());
  writer_.reset();
  Open();
  const ShardHead head = writer_->shard().Head();
  EXPECT_EQ(head.direct_appends, 2u);
  ASSERT_TRUE(head.last_source.has_value());
  EXPECT_EQ(head.last_source->offset, 7);
  ASSERT_OK_AND_ASSIGN(MessageResult third, AppendAndWait(Prediction(3)));
  ASSERT_OK_AND_ASSIGN(StoredRecord record, writer_->shard().Get(third.index));
  EXPECT_EQ(record.source.offset, 2);  // numbering of direct appends continues
}

TEST_F(ShardWriterTest, AppendsQueuedAtDestructionAreFoldedBeforeItReturns) {
  std::atomic<int> answered{0};
  for (int i = 0; i < 500; ++i) {
    const predlog::v1::AuditEvent event = Prediction(i);
    writer_->Append(event, event.SerializeAsString(),
                    [&](absl::StatusOr<MessageResult> r) { answered += r.ok() ? 1 : 0; });
  }
  writer_.reset();
  EXPECT_EQ(answered.load(), 500);
  Open();
  EXPECT_EQ(writer_->shard().Head().next_index, 500u);
}

// A checkpoint signing key and its verifier.
struct SigningKey {
  std::unique_ptr<NoteSigner> signer;
  std::unique_ptr<NoteVerifier> verifier;
  static SigningKey Make() {
    absl::StatusOr<NoteKeyPair> pair = GenerateNoteKey("test-log");
    PREDLOG_CHECK(pair.ok()) << pair.status();
    SigningKey key;
    key.signer = *NoteSigner::Create(pair->signer_key);
    key.verifier = *NoteVerifier::Create(pair->verifier_key);
    return key;
  }
};

// The checkpoint a writer keeps last, opened with `key`.
Checkpoint LatestOpened(const ShardWriter& writer, const NoteVerifier& key) {
  absl::StatusOr<std::string> note = writer.shard().LatestCheckpoint();
  if (!note.ok()) return Checkpoint{};
  absl::StatusOr<std::string> text = key.Open(*note);
  EXPECT_TRUE(text.ok()) << text.status();
  absl::StatusOr<Checkpoint> checkpoint = ParseCheckpoint(text.value_or(""));
  EXPECT_TRUE(checkpoint.ok()) << checkpoint.status();
  return checkpoint.value_or(Checkpoint{});
}

// Waits until the writer kept a checkpoint of at least `size` records: it
// signs after a group's callers were answered, or on its own timer. The
// bound is for a loaded machine, not a speed requirement.
Checkpoint AwaitCheckpoint(const ShardWriter& writer, const NoteVerifier& key, uint64_t size) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (LatestOpened(writer, key).size < size && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  return LatestOpened(writer, key);
}

TEST_F(ShardWriterTest, SignsACheckpointEveryNRecordsOfItsShardsLog) {
  SigningKey signing = SigningKey::Make();
  ShardWriterOptions writer_options;
  writer_options.checkpoint_signer = signing.signer.get();
  writer_options.checkpoint_origin = "test-log/predlog.events-0";
  writer_options.checkpoint_every_events = 5;
  writer_options.checkpoint_every = absl::ZeroDuration();
  Restart(writer_options);
  const NoteVerifier& key = *signing.verifier;
  for (int i = 0; i < 4; ++i) ASSERT_OK(AppendAndWait(Prediction(i)).status());
  EXPECT_THAT(writer_->shard().LatestCheckpoint(),
              ::predlog::testing::StatusIs(absl::StatusCode::kNotFound,
                                           ::testing::HasSubstr("no checkpoint yet")));
  ASSERT_OK(AppendAndWait(Prediction(4)).status());
  // One append at a time: the group that made 5 records signed them.
  const Checkpoint checkpoint = AwaitCheckpoint(*writer_, key, 5);
  EXPECT_EQ(checkpoint.origin, "test-log/predlog.events-0");
  EXPECT_EQ(checkpoint.size, 5u);
  ASSERT_OK_AND_ASSIGN(Digest root, writer_->shard().TreeRoot(5));
  EXPECT_EQ(checkpoint.root, root);
  // On request, of the log as it is now.
  ASSERT_OK(AppendAndWait(Prediction(5)).status());
  ASSERT_OK_AND_ASSIGN(std::string note, writer_->SignCheckpoint());
  ASSERT_OK_AND_ASSIGN(std::string text, key.Open(note));
  ASSERT_OK_AND_ASSIGN(Checkpoint now, ParseCheckpoint(text));
  EXPECT_EQ(now.size, 6u);
}

TEST_F(ShardWriterTest, AnIdleWriterStillSignsItsNewestRecordsWhenTheTimeComes) {
  SigningKey signing = SigningKey::Make();
  ShardWriterOptions writer_options;
  writer_options.checkpoint_signer = signing.signer.get();
  writer_options.checkpoint_origin = "test-log/predlog.events-0";
  writer_options.checkpoint_every_events = 0;
  writer_options.checkpoint_every = absl::Milliseconds(50);
  Restart(writer_options);
  const NoteVerifier& key = *signing.verifier;
  for (int i = 0; i < 3; ++i) ASSERT_OK(AppendAndWait(Prediction(i)).status());
  // No more appends: only the writer's own timer can sign record 3.
  EXPECT_EQ(AwaitCheckpoint(*writer_, key, 3).size, 3u);
  // Without a key the writer signs nothing and says why.
  Restart({});
  EXPECT_THAT(writer_->SignCheckpoint(),
              ::predlog::testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                           ::testing::HasSubstr("no checkpoint signing key")));
}

TEST_F(ShardWriterTest, ADamagedKeptCheckpointNeverKeepsTheShardFromOpening) {
  SigningKey signing = SigningKey::Make();
  ShardWriterOptions writer_options;
  writer_options.checkpoint_signer = signing.signer.get();
  writer_options.checkpoint_origin = "test-log/predlog.events-0";
  Restart(writer_options);
  ASSERT_OK(AppendAndWait(Prediction(0)).status());
  ASSERT_OK(writer_->SignCheckpoint().status());
  writer_.reset();
  // Every kept checkpoint's bytes replaced by something that is no note.
  testing::EditRawShardDb(dir_.Sub("shard"), "meta", [](rocksdb::DB* db, auto* cf) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf));
    for (it->Seek("checkpoint/"); it->Valid() && it->key().starts_with("checkpoint/"); it->Next()) {
      PREDLOG_CHECK(db->Put(rocksdb::WriteOptions(), cf, it->key(), "not a note").ok());
    }
  });
  Restart(writer_options);
  ASSERT_OK(AppendAndWait(Prediction(1)).status());
  ASSERT_OK_AND_ASSIGN(std::string note, writer_->SignCheckpoint());
  ASSERT_OK_AND_ASSIGN(std::string text, signing.verifier->Open(note));
  ASSERT_OK_AND_ASSIGN(Checkpoint checkpoint, ParseCheckpoint(text));
  EXPECT_EQ(checkpoint.size, 2u);
}

}  // namespace
}  // namespace predlog::storage
