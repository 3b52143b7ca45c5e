// A full disk: writes fail with RESOURCE_EXHAUSTED naming the shard, nothing
// acknowledged is lost, and writing resumes by itself once space is freed.
// The shard lives on a small tmpfs mounted for the test (needs root, as CI
// and the developers' machines run; skipped elsewhere).
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/shard_writer.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

namespace fs = std::filesystem;
using ::predlog::testing::MakeSizedPredictionPayload;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;

class DiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_point_ = dir_.Sub("small");
    fs::create_directories(mount_point_);
    if (mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=6m") != 0) {
      GTEST_SKIP() << "cannot mount a small tmpfs here (" << std::strerror(errno)
                   << "); this test needs root";
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) umount2(mount_point_.c_str(), MNT_DETACH);
  }

  TempDir dir_;
  std::string mount_point_;
  bool mounted_ = false;
};

TEST_F(DiskFullTest, FullDiskIsResourceExhaustedAndWritingResumesOnceSpaceIsFreed) {
  ShardOptions options;
  options.dir = mount_point_ + "/shard";
  options.name = "predlog.events-0";
  options.sync_writes = true;
  options.min_free_bytes = 1 << 20;  // of the 6 MB
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ShardStore> shard, ShardStore::Open(options));
  // A file that holds most of the space, to be freed later.
  const std::string ballast = mount_point_ + "/ballast";
  {
    std::ofstream out(ballast, std::ios::binary);
    const std::string mb(1 << 20, 'x');
    for (int i = 0; i < 3; ++i) out << mb;
  }
  // Fold 8 KB events until the disk is full.
  uint64_t acked = 0;
  absl::Status full;
  for (uint64_t n = 0; n < 10'000 && full.ok(); ++n) {
    const std::string payload = MakeSizedPredictionPayload(n, 8 << 10, 100);
    const SourceMessage m{"broker-a", static_cast<int64_t>(n), payload};
    absl::StatusOr<BatchResult> r = shard->ApplyBatch({&m, 1});
    if (r.ok()) {
      ++acked;
    } else {
      full = r.status();
    }
  }
  ASSERT_FALSE(full.ok()) << "the disk never filled";
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_THAT(full.message(), HasSubstr("predlog.events-0"));
  EXPECT_THAT(full.message(), HasSubstr(mount_point_ + "/shard"));
  EXPECT_EQ(shard->Head().next_index, acked);

  // Space comes back: the next write succeeds without a restart.
  fs::remove(ballast);
  absl::Status resumed = absl::UnknownError("not tried");
  for (int attempt = 0; attempt < 50 && !resumed.ok(); ++attempt) {
    const std::string payload = MakeSizedPredictionPayload(acked, 8 << 10, 100);
    const SourceMessage m{"broker-a", static_cast<int64_t>(acked), payload};
    absl::StatusOr<BatchResult> r = shard->ApplyBatch({&m, 1});
    resumed = r.status();
    if (!resumed.ok()) absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_OK(resumed);
  ++acked;
  EXPECT_EQ(shard->Head().next_index, acked);

  // Nothing acknowledged was lost: a reopen finds every record, intact.
  shard.reset();
  ASSERT_OK_AND_ASSIGN(shard, ShardStore::Open(options));
  EXPECT_FALSE(shard->lost().has_value());
  EXPECT_EQ(shard->Head().next_index, acked);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, shard->Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
}

}  // namespace
}  // namespace predlog::storage
