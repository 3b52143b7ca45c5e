// gtest matchers for absl::Status / absl::StatusOr (Debian's abseil has none):
//   EXPECT_THAT(store.Get(7), IsOk());
//   EXPECT_THAT(Open(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dir")));
//   ASSERT_OK_AND_ASSIGN(auto store, ShardStore::Open(options));
#ifndef PREDLOG_TESTS_TESTING_STATUS_MATCHERS_H_
#define PREDLOG_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace predlog::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P(IsOkAndHolds, value, "is OK and holds " + ::testing::PrintToString(value)) {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  *result_listener << "holds " << ::testing::PrintToString(*arg);
  return *arg == value;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code) + " and a matching message") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code && ::testing::Matches(message_matcher)(std::string(s.message()));
}

}  // namespace predlog::testing

#define PREDLOG_TESTING_CONCAT_INNER_(a, b) a##b
#define PREDLOG_TESTING_CONCAT_(a, b) PREDLOG_TESTING_CONCAT_INNER_(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(PREDLOG_TESTING_CONCAT_(statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                               \
  ASSERT_TRUE(statusor.ok()) << statusor.status();      \
  lhs = std::move(statusor).value()
#define ASSERT_OK(expr) ASSERT_THAT(expr, ::predlog::testing::IsOk())
#define EXPECT_OK(expr) EXPECT_THAT(expr, ::predlog::testing::IsOk())

#endif  // PREDLOG_TESTS_TESTING_STATUS_MATCHERS_H_
