// PredictionLog without gRPC, against the embedded broker and a real ingest.
#include "services/server/prediction_log.h"

#include <atomic>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/kafka/kafka_config.h"
#include "services/server/event_writer.h"
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
    log.Log(request, "limits-api", [&](absl::StatusOr<predlog::v1::LogReceipt> result) {
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
  log.Log(request, "limits-api", [&](absl::StatusOr<predlog::v1::LogReceipt> result) {
    EXPECT_TRUE(result.ok()) << result.status();
    after.Notify();
  });
  EXPECT_TRUE(after.WaitForNotificationWithTimeout(absl::Seconds(30)));
}

TEST(EventWriterPaths, ADirectAppendStoresTheSameBytesAsTheKafkaPath) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(KafkaPipeline direct_side, KafkaPipeline::Start(2));
  ASSERT_OK(direct_side.StartIngest(dir.Sub("direct")));
  ASSERT_OK_AND_ASSIGN(KafkaPipeline kafka_side, KafkaPipeline::Start(2));
  ASSERT_OK(kafka_side.StartIngest(dir.Sub("kafka")));
  EventWriterOptions direct_options;
  direct_options.direct = true;
  EventWriter direct(direct_side.producer.get(), direct_side.ingest.get(), direct_options);
  EventWriter through_kafka(kafka_side.producer.get(), kafka_side.ingest.get(), {});

  // One stamped event, written once down each path.
  predlog::v1::AuditEvent event = MakePrediction(PredictionSpec{});
  EventWriter::StampEnvelope("limits-api", "limits-api-claim", &event);
  auto write = [&](EventWriter& writer) {
    absl::Notification done;
    absl::StatusOr<predlog::v1::LogReceipt> receipt;
    writer.Write(kEventsTopic, event.prediction_logged().subject_id(), event,
                 /*wait_durable=*/true, "prediction",
                 [&](absl::StatusOr<predlog::v1::LogReceipt> r) {
                   receipt = std::move(r);
                   done.Notify();
                 });
    EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
    return receipt;
  };
  ASSERT_OK_AND_ASSIGN(predlog::v1::LogReceipt direct_receipt, write(direct));
  ASSERT_OK_AND_ASSIGN(predlog::v1::LogReceipt kafka_receipt, write(through_kafka));
  ASSERT_EQ(direct_receipt.outcome(), predlog::v1::LogReceipt::APPLIED);
  ASSERT_EQ(kafka_receipt.outcome(), predlog::v1::LogReceipt::APPLIED);
  EXPECT_EQ(direct_receipt.shard(), kafka_receipt.shard());
  EXPECT_EQ(direct_receipt.leaf_sha256(), kafka_receipt.leaf_sha256());
  EXPECT_EQ(direct_receipt.source().incarnation(), storage::kDirectSource);
  EXPECT_EQ(kafka_receipt.source().incarnation(), "");  // a Kafka receipt names the offset

  const int partition = PartitionForKey(event.prediction_logged().subject_id(), 2);
  ASSERT_OK_AND_ASSIGN(storage::StoredRecord a,
                       direct_side.ingest->shard(partition).Get(direct_receipt.position().index()));
  ASSERT_OK_AND_ASSIGN(storage::StoredRecord b,
                       kafka_side.ingest->shard(partition).Get(kafka_receipt.position().index()));
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.payload, event.SerializeAsString());
  EXPECT_EQ(a.leaf, b.leaf);
  EXPECT_EQ(a.chain, b.chain);  // both the first record of a fresh shard
  EXPECT_EQ(a.source.incarnation, storage::kDirectSource);
  EXPECT_EQ(b.source.incarnation, kafka_side.broker->incarnation());
}

}  // namespace
}  // namespace predlog::services
