#include "storage/snapshot_retention.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace predlog::storage {
namespace {

using ::testing::UnorderedElementsAre;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000 / 86400 * 86400 + 12 * 3600);

SnapshotInfo At(uint64_t index, absl::Duration age) { return SnapshotInfo{index, kNow - age, ""}; }

TEST(SnapshotsToPrune, KeepsTheLastNWhenHorizonsAreZero) {
  RetentionPolicy policy{2, absl::ZeroDuration(), absl::ZeroDuration()};
  std::vector<SnapshotInfo> s = {At(100, absl::Minutes(30)), At(300, absl::Minutes(10)),
                                 At(200, absl::Minutes(20)), At(50, absl::Minutes(40))};
  EXPECT_THAT(SnapshotsToPrune(s, policy, kNow), UnorderedElementsAre(100, 50));
}

TEST(SnapshotsToPrune, KeepsNewestPerHourWithinHorizon) {
  RetentionPolicy policy{1, absl::Hours(3), absl::ZeroDuration()};
  // kNow is 12:00 UTC. Hour 11: 11:50 and 11:10; hour 10: 10:30; hour 8: 08:30 (too old).
  std::vector<SnapshotInfo> s = {At(1, absl::Minutes(210)), At(2, absl::Minutes(90)),
                                 At(3, absl::Minutes(50)), At(4, absl::Minutes(10))};
  EXPECT_THAT(SnapshotsToPrune(s, policy, kNow), UnorderedElementsAre(1, 3));
}

TEST(SnapshotsToPrune, KeepsNewestPerDayWithinHorizon) {
  RetentionPolicy policy{1, absl::ZeroDuration(), absl::Hours(24 * 3)};
  std::vector<SnapshotInfo> s = {At(1, absl::Hours(24 * 5)), At(2, absl::Hours(24 + 2)),
                                 At(3, absl::Hours(24 + 1)), At(4, absl::Hours(1))};
  EXPECT_THAT(SnapshotsToPrune(s, policy, kNow), UnorderedElementsAre(1, 2));
}

TEST(SnapshotsToPrune, NeverPrunesTheNewest) {
  RetentionPolicy policy{0, absl::ZeroDuration(), absl::ZeroDuration()};
  std::vector<SnapshotInfo> s = {At(1, absl::Hours(2)), At(2, absl::Hours(1))};
  EXPECT_THAT(SnapshotsToPrune(s, policy, kNow), UnorderedElementsAre(1));
}

}  // namespace
}  // namespace predlog::storage
