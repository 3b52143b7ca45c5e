// Large reads run on their own worker pool, so a read that takes long never
// holds up a Log ack, and small reads (a point lookup, a default page) are
// answered inline, even while the pool is busy: real gRPC on loopback, the
// embedded broker, a real ingest.
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "services/server/grpc_services.h"
#include "services/server/prediction_log.h"
#include "services/server/worker_pool.h"
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

TEST(WorkerPoolTest, RunsEveryTaskInOrderOnOneThreadAndDrainsOnDestruction) {
  std::vector<int> ran;
  {
    WorkerPool pool(1);
    absl::Notification release;
    pool.Submit([&] { release.WaitForNotification(); });
    for (int i = 0; i < 100; ++i) pool.Submit([&ran, i] { ran.push_back(i); });
    EXPECT_GE(pool.queued(), 99u);  // held behind the first task
    release.Notify();
  }  // the destructor runs what is queued before it joins
  ASSERT_EQ(ran.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(ran[i], i);
}

class ReadPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(kafka_, KafkaPipeline::Start(2));
    ASSERT_OK(kafka_.StartIngest(dir_.path()));
    PredictionLogOptions log_options;
    log_options.writer.always_wait_durable = true;  // as in the embedded default
    log_ = std::make_unique<PredictionLog>(kafka_.producer.get(), kafka_.ingest.get(), log_options);
    workers_ = std::make_unique<WorkerPool>(1);
    CallGate gate;
    gate.authorizer = &authorizer_;
    gate.workers = workers_.get();
    service_ = std::make_unique<PredictionLogService>(log_.get(), gate);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = predlog::v1::PredictionLog::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  grpc::Status Log(const std::string& prediction_id) {
    PredictionSpec spec;
    spec.prediction_id = prediction_id;
    predlog::v1::LogRequest request;
    *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    predlog::v1::LogReceipt receipt;
    return stub_->Log(&context, request, &receipt);
  }

  TempDir dir_;
  KafkaPipeline kafka_;
  std::unique_ptr<PredictionLog> log_;
  std::unique_ptr<WorkerPool> workers_;
  const auth::Authorizer authorizer_;  // no identities: the zero-config default
  std::unique_ptr<PredictionLogService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> stub_;
};

TEST_F(ReadPoolTest, LogAcksAndSmallReadsAreAnsweredWhileEveryPoolThreadIsBusy) {
  ASSERT_TRUE(Log("pool-1").ok());

  // The only pool thread is busy (as with a long state-at fold or export).
  absl::Notification release;
  workers_->Submit([&] { release.WaitForNotification(); });

  // A large page arrives and waits for it ...
  grpc::ClientContext large_context;
  large_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  predlog::v1::ListPredictionsRequest large;
  large.set_subject_id(PredictionSpec{}.subject_id);
  large.set_page_size(PredictionLog::kDefaultPageSize + 1);
  predlog::v1::ListPredictionsResponse large_page;
  grpc::Status large_status;
  absl::Notification large_answered;
  stub_->async()->ListPredictions(&large_context, &large, &large_page, [&](grpc::Status status) {
    large_status = std::move(status);
    large_answered.Notify();
  });

  // ... while a Log call, produced, folded and acked on gRPC's threads, is not,
  const grpc::Status logged = Log("pool-2");
  EXPECT_TRUE(logged.ok()) << logged.error_message();
  // nor are a point read and a default page.
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    predlog::v1::GetPredictionRequest get;
    get.set_prediction_id("pool-2");
    predlog::v1::PredictionRecord record;
    const grpc::Status status = stub_->GetPrediction(&context, get, &record);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(record.event().prediction_logged().prediction_id(), "pool-2");
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    predlog::v1::ListPredictionsRequest small = large;
    small.clear_page_size();
    predlog::v1::ListPredictionsResponse page;
    const grpc::Status status = stub_->ListPredictions(&context, small, &page);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(page.records_size(), 2);
  }
  EXPECT_FALSE(large_answered.HasBeenNotified())
      << "the large page ran on a gRPC thread, not on the pool";

  release.Notify();
  ASSERT_TRUE(large_answered.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_TRUE(large_status.ok()) << large_status.error_message();
  ASSERT_EQ(large_page.records_size(), 2);
  EXPECT_EQ(large_page.records(0).event().prediction_logged().prediction_id(), "pool-1");
}

}  // namespace
}  // namespace predlog::services
