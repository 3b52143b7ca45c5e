// PredictionLog without gRPC, against the embedded broker and a real ingest.
#include "services/server/prediction_log.h"

#include <atomic>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/events.h"
#include "tests/testing/kafka_pipeline.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::testing::KafkaPipeline;
using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;

TEST(PredictionLogBackpressure, AboveTheInFlightBoundLogIsResourceExhaustedAndNothingIsLost) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(KafkaPipeline kafka, KafkaPipeline::Start(2));
  ASSERT_OK(kafka.StartIngest(dir.path()));

  predlog::v1::LogRequest request;
  *request.mutable_prediction() = MakePrediction(PredictionSpec{}).prediction_logged();
  const size_t event_bytes = request.prediction().ByteSizeLong() + 64;
  PredictionLogOptions options;
  options.writer.always_wait_durable = true;
  options.writer.max_in_flight_bytes = 3 * event_bytes;  // room for about three events
  PredictionLog log(kafka.producer.get(), kafka.ingest.get(), options);

  constexpr int kCalls = 200;
  absl::Mutex mu;
  int answered = 0, ok = 0, exhausted = 0;
  for (int i = 0; i < kCalls; ++i) {
    request.mutable_prediction()->set_prediction_id("bp-" + std::to_string(i));
    log.Log(request, [&](absl::StatusOr<predlog::v1::LogReceipt> result) {
      absl::MutexLock lock(&mu);
      ++answered;
      if (result.ok()) {
        ++ok;
      } else {
        EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
        EXPECT_THAT(result.status().message(), HasSubstr("waiting to be folded"));
        ++exhausted;
      }
    });
  }
  {
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(absl::Condition(
                            +[](int* n) { return *n == kCalls; }, &answered),
                        absl::Seconds(60));
    ASSERT_EQ(answered, kCalls);  // every call answered exactly once
    EXPECT_GT(exhausted, 0);
    EXPECT_GT(ok, 0);
  }
  EXPECT_EQ(log.metrics().log_acked.load(), static_cast<uint64_t>(ok));
  // What was acked is folded; what was refused was never produced.
  int found = 0;
  for (int i = 0; i < kCalls; ++i) {
    predlog::v1::GetPredictionRequest get;
    get.set_prediction_id("bp-" + std::to_string(i));
    found += log.GetPrediction(get).ok() ? 1 : 0;
  }
  EXPECT_EQ(found, ok);
  // Once the burst is answered the bound is free again.
  request.mutable_prediction()->set_prediction_id("bp-after");
  absl::Notification after;
  log.Log(request, [&](absl::StatusOr<predlog::v1::LogReceipt> result) {
    EXPECT_TRUE(result.ok()) << result.status();
    after.Notify();
  });
  EXPECT_TRUE(after.WaitForNotificationWithTimeout(absl::Seconds(30)));
}

}  // namespace
}  // namespace predlog::services
