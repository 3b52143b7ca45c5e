// Randomized: random streams with duplicates, conflicts and garbage, folded in
// random batch sizes with random reopens, must leave the shard exactly as the
// simple in-memory ShardModel says.
#include "tests/storage/shard_model.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/shard_store.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::ShardModel;
using ::predlog::testing::StreamPayload;
using ::predlog::testing::TempDir;

void ExpectShardMatchesModel(const ShardStore& store, const ShardModel& model) {
  const ShardHead head = store.Head();
  ASSERT_EQ(head.next_index, model.log().size());
  ASSERT_OK_AND_ASSIGN(auto records, store.ReadRange(0, model.log().size() + 1));
  ASSERT_EQ(records.size(), model.log().size());
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].index, i);
    EXPECT_EQ(records[i].source.offset, model.log()[i].offset) << "record " << i;
    ASSERT_EQ(records[i].payload, model.log()[i].payload) << "record " << i;
  }
  ASSERT_OK_AND_ASSIGN(auto rejected, store.ListRejected(0, model.rejected().size() + 1));
  ASSERT_EQ(rejected.size(), model.rejected().size());
  for (size_t i = 0; i < rejected.size(); ++i) {
    EXPECT_EQ(rejected[i].seq, i);
    EXPECT_EQ(rejected[i].source.offset, model.rejected()[i].offset);
    EXPECT_EQ(rejected[i].kind, model.rejected()[i].kind) << "rejected " << i;
  }
  EXPECT_EQ(head.counters.duplicates, model.duplicates());
  ASSERT_OK_AND_ASSIGN(VerifyReport report, store.Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
}

class ShardModelTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ShardModelTest, RandomStreamFoldsExactlyAsTheModelSays) {
  const uint64_t seed = GetParam();
  std::mt19937_64 rng(seed);
  TempDir dir;
  ShardOptions options;
  options.dir = dir.Sub("shard");
  ASSERT_OK_AND_ASSIGN(auto store, ShardStore::Open(options));
  ShardModel model;

  constexpr int64_t kMessages = 3000;
  int64_t offset = 0;
  while (offset < kMessages) {
    const int64_t n = std::min<int64_t>(1 + rng() % 120, kMessages - offset);
    std::vector<std::string> payloads;
    for (int64_t i = 0; i < n; ++i) payloads.push_back(StreamPayload(seed, offset + i));
    std::vector<SourceMessage> messages;
    for (int64_t i = 0; i < n; ++i) messages.push_back({"inc", offset + i, payloads[i]});
    // Sometimes the consumer re-delivers the tail of the previous batch first.
    std::vector<std::string> again;
    if (offset > 0 && rng() % 4 == 0) {
      const int64_t back = 1 + rng() % std::min<int64_t>(offset, 10);
      for (int64_t o = offset - back; o < offset; ++o) again.push_back(StreamPayload(seed, o));
      std::vector<SourceMessage> with_redelivery;
      for (int64_t i = 0; i < back; ++i) {
        with_redelivery.push_back({"inc", offset - back + i, again[i]});
      }
      with_redelivery.insert(with_redelivery.end(), messages.begin(), messages.end());
      messages = std::move(with_redelivery);
    }
    ASSERT_OK_AND_ASSIGN(BatchResult result, store->ApplyBatch(messages));
    const size_t skip = again.size();
    for (size_t i = 0; i < skip; ++i) {
      EXPECT_EQ(result.messages[i].outcome, FoldOutcome::kRedelivered);
    }
    for (int64_t i = 0; i < n; ++i) {
      const FoldOutcome expected = model.Apply(offset + i, payloads[i]);
      EXPECT_EQ(result.messages[skip + i].outcome, expected)
          << "offset " << offset + i << ": " << result.messages[skip + i].reason;
    }
    offset += n;
    if (rng() % 10 == 0) {
      store.reset();
      ASSERT_OK_AND_ASSIGN(store, ShardStore::Open(options));
    }
  }
  ExpectShardMatchesModel(*store, model);
}

INSTANTIATE_TEST_SUITE_P(Seeds, ShardModelTest, ::testing::Values(1, 2, 3, 4, 5));

}  // namespace
}  // namespace predlog::storage
