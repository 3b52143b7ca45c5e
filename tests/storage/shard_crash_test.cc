// Crash safety: a child process folds a long stream and is killed with SIGKILL
// at random moments. After each kill, reopening the shard must show every
// message up to the stored source position exactly once (as the model says),
// nothing beyond it, gap-free indexes, and a chain that verifies.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/shard_store.h"
#include "tests/storage/shard_model.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::ShardModel;
using ::predlog::testing::StreamPayload;
using ::predlog::testing::TempDir;

constexpr uint64_t kSeed = 42;
constexpr int64_t kTotal = 1'000'000;  // never reached: the writer is killed first
constexpr int kRounds = 25;

// Starts the writer and waits for its "ready" line; returns its pid.
pid_t StartWriter(const std::string& dir) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    const std::string seed = std::to_string(kSeed), total = std::to_string(kTotal);
    execl(PREDLOG_CRASH_WRITER, PREDLOG_CRASH_WRITER, dir.c_str(), seed.c_str(), total.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  char c;
  while (read(fds[0], &c, 1) == 1 && c != '\n') {
  }
  close(fds[0]);
  return pid;
}

TEST(ShardCrashTest, KilledWriterLosesNothingAndDuplicatesNothing) {
  TempDir dir;
  const std::string shard_dir = dir.Sub("shard");
  std::mt19937_64 rng(7);
  ShardModel model;
  int64_t modelled_through = -1;  // the model has folded offsets [0, this]
  uint64_t redelivered = 0;

  for (int round = 0; round < kRounds; ++round) {
    const pid_t pid = StartWriter(shard_dir);
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 120));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "writer exited early with " << WEXITSTATUS(wstatus);

    ShardOptions options;
    options.dir = shard_dir;
    ASSERT_OK_AND_ASSIGN(auto store, ShardStore::Open(options));
    const ShardHead head = store->Head();
    const int64_t last = head.last_source ? head.last_source->offset : -1;
    ASSERT_GE(last, modelled_through) << "the stored source position went backwards";
    for (int64_t o = modelled_through + 1; o <= last; ++o) model.Apply(o, StreamPayload(kSeed, o));
    modelled_through = last;

    // Exactly the model's records, in order, nothing beyond the stored position.
    ASSERT_EQ(head.next_index, model.log().size()) << "round " << round;
    ASSERT_OK_AND_ASSIGN(auto records, store->ReadRange(0, model.log().size() + 10));
    ASSERT_EQ(records.size(), model.log().size());
    for (size_t i = 0; i < records.size(); ++i) {
      ASSERT_EQ(records[i].index, i);
      ASSERT_EQ(records[i].source.offset, model.log()[i].offset) << "round " << round;
      ASSERT_EQ(records[i].payload, model.log()[i].payload);
      ASSERT_LE(records[i].source.offset, last);
    }
    ASSERT_OK_AND_ASSIGN(auto rejected, store->ListRejected(0, model.rejected().size() + 10));
    ASSERT_EQ(rejected.size(), model.rejected().size());
    for (size_t i = 0; i < rejected.size(); ++i) {
      ASSERT_EQ(rejected[i].source.offset, model.rejected()[i].offset);
      ASSERT_EQ(rejected[i].kind, model.rejected()[i].kind);
    }
    // Every applied prediction is found by its id at its index.
    for (size_t i = 0; i < records.size(); i += 97) {
      ASSERT_OK_AND_ASSIGN(auto event, records[i].Event());
      ASSERT_OK_AND_ASSIGN(auto by_id,
                           store->GetByPredictionId(event.prediction_logged().prediction_id()));
      ASSERT_EQ(by_id.index, i);
    }
    ASSERT_OK_AND_ASSIGN(VerifyReport report, store->Verify());
    ASSERT_FALSE(report.first_bad_index.has_value()) << report.problem;
    redelivered = head.counters.redelivered;
  }
  // The rounds actually exercised something.
  EXPECT_GT(model.log().size(), 1000u);
  EXPECT_GT(model.rejected().size(), 100u);
  // Writers restart behind the stored position, so redeliveries were exercised.
  EXPECT_GT(redelivered, 0u);
}

}  // namespace
}  // namespace predlog::storage
