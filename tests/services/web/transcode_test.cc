// HTTP/JSON transcoding: query parameters onto request messages, by proto
// and JSON names, dotted paths, every scalar kind and Timestamps, and the
// errors that name the parameter.
#include "services/web/transcode.h"

#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.pb.h"
#include "predlog/v1/replay.pb.h"
#include "predlog/v1/service.pb.h"
#include "tests/testing/status_matchers.h"

namespace predlog::web {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(SetParameterTest, SetsFieldsByProtoOrJsonNameAndDottedPaths) {
  v1::RerunRequest rerun;
  ASSERT_THAT(SetParameter(&rerun, "prediction_id", "p-1"), IsOk());
  ASSERT_THAT(SetParameter(&rerun, "subjectId", "c-1"), IsOk());
  ASSERT_THAT(SetParameter(&rerun, "explain", "true"), IsOk());
  ASSERT_THAT(SetParameter(&rerun, "against.name", "credit"), IsOk());
  ASSERT_THAT(SetParameter(&rerun, "against.version", "v2"), IsOk());
  EXPECT_EQ(rerun.prediction_id(), "p-1");
  EXPECT_EQ(rerun.subject_id(), "c-1");
  EXPECT_TRUE(rerun.explain());
  EXPECT_EQ(rerun.against().name(), "credit");
  EXPECT_EQ(rerun.against().version(), "v2");

  v1::GetEntityAtRequest at;
  ASSERT_THAT(SetParameter(&at, "as_of.after.shard", "predlog.events-3"), IsOk());
  ASSERT_THAT(SetParameter(&at, "as_of.after.index", "18446744073709551615"), IsOk());
  EXPECT_EQ(at.as_of().after().shard(), "predlog.events-3");
  EXPECT_EQ(at.as_of().after().index(), 18446744073709551615ull);
}

TEST(SetParameterTest, TimestampsAreRfc3339) {
  v1::ListPredictionsRequest list;
  ASSERT_THAT(SetParameter(&list, "served_from", "2026-11-27T05:54:27.576Z"), IsOk());
  ASSERT_THAT(SetParameter(&list, "servedTo", "2026-11-28T01:00:00+01:00"), IsOk());
  EXPECT_EQ(google::protobuf::util::TimeUtil::ToString(list.served_from()),
            "2026-11-27T05:54:27.576Z");
  EXPECT_EQ(google::protobuf::util::TimeUtil::ToString(list.served_to()), "2026-11-28T00:00:00Z");
  EXPECT_THAT(SetParameter(&list, "page_token", "x"), IsOk());
}

TEST(SetParameterTest, BadValuesAreRefusedNamingTheParameterAndTheType) {
  v1::ListPredictionsRequest list;
  EXPECT_THAT(SetParameter(&list, "page_size", "abc"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("parameter page_size"), HasSubstr("\"abc\""),
                             HasSubstr("unsigned 32-bit integer"))));
  EXPECT_THAT(SetParameter(&list, "page_size", "-1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parameter page_size")));
  EXPECT_THAT(SetParameter(&list, "page_size", "4294967296"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("parameter page_size")));
  EXPECT_THAT(SetParameter(&list, "served_from", "yesterday"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("parameter served_from"), HasSubstr("RFC 3339"))));
  v1::RerunRequest rerun;
  EXPECT_THAT(SetParameter(&rerun, "explain", "maybe"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("parameter explain"), HasSubstr("true or false"))));
  EXPECT_THAT(SetParameter(&rerun, "prediction_id", "\xff\xfe"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("parameter prediction_id"), HasSubstr("UTF-8"))));
}

TEST(SetParameterTest, UnknownFieldsMessagesTwiceAndOneofsAreRefused) {
  v1::ListPredictionsRequest list;
  EXPECT_THAT(SetParameter(&list, "bogus", "1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unknown parameter bogus"),
                             HasSubstr("predlog.v1.ListPredictionsRequest"))));
  EXPECT_THAT(
      SetParameter(&list, "model.bogus", "1"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown parameter model.bogus")));
  EXPECT_THAT(SetParameter(&list, "model", "credit@v1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model.<field>")));
  EXPECT_THAT(
      SetParameter(&list, "page_size.x", "1"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown parameter page_size.x")));
  ASSERT_THAT(SetParameter(&list, "subject_id", "c-1"), IsOk());
  EXPECT_THAT(SetParameter(&list, "subject_id", "c-2"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("parameter subject_id is given twice")));
  // A oneof keeps the first: the second is refused, not silently swapped in.
  EXPECT_THAT(SetParameter(&list, "model.name", "credit"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("parameter model.name"), HasSubstr("subject_id"))));
  EXPECT_EQ(list.subject_id(), "c-1");
}

TEST(SetParameterTest, RepeatedScalarsAppend) {
  v1::PredictionOutput output;
  ASSERT_THAT(SetParameter(&output, "float_scores", "0.5"), IsOk());
  ASSERT_THAT(SetParameter(&output, "float_scores", "0.25"), IsOk());
  ASSERT_EQ(output.float_scores_size(), 2);
  EXPECT_FLOAT_EQ(output.float_scores(1), 0.25f);
  EXPECT_THAT(SetParameter(&output, "float_scores", "nan"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("finite number")));
}

TEST(HttpStatusTest, FollowsGoogleRpcCodeMapping) {
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kOk), 200);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kDataLoss), 500);
}

TEST(ErrorJsonTest, EscapesTheMessage) {
  const std::string json = ErrorJson(absl::NotFoundError("prediction_id \"a\\b\" is not recorded"));
  EXPECT_THAT(json, HasSubstr(R"("message":"prediction_id \"a\\b\" is not recorded")"));
  EXPECT_THAT(json, HasSubstr(R"("status":"NOT_FOUND")"));
  EXPECT_THAT(json, HasSubstr(R"("code":5)"));
}

}  // namespace
}  // namespace predlog::web
