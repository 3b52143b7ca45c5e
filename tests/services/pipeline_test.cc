// End to end in one process: gRPC Log -> producer -> embedded broker ->
// ingest -> shard, then GetPrediction over gRPC. Real librdkafka, real gRPC on
// loopback, real RocksDB in a temp dir.
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/server.h"
#include "storage/sha256.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;
using ::predlog::v1::LogReceipt;
using ::testing::HasSubstr;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(); }

  void StartServer() {
    ServerOptions options;
    options.data_dir = dir_.Sub("data");
    options.grpc_listen = "127.0.0.1:0";
    options.partitions = 3;
    ASSERT_OK_AND_ASSIGN(server_, Server::Start(options));
    stub_ = predlog::v1::PredictionLog::NewStub(
        grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Log(const PredictionSpec& spec, LogReceipt* receipt) {
    predlog::v1::LogRequest request;
    *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
    request.set_actor("limits-api");
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return stub_->Log(&context, request, receipt);
  }

  grpc::Status Get(const std::string& id, predlog::v1::PredictionRecord* record) {
    predlog::v1::GetPredictionRequest request;
    request.set_prediction_id(id);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub_->GetPrediction(&context, request, record);
  }

  static PredictionSpec Spec(int i) {
    PredictionSpec spec;
    spec.prediction_id = "pred-" + std::to_string(i);
    spec.subject_id = "customer-" + std::to_string(i % 7);
    return spec;
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> stub_;
};

TEST_F(PipelineTest, LoggedPredictionsAreFoldedBeforeTheAckAndReadable) {
  constexpr int kPredictions = 300;
  for (int i = 0; i < kPredictions; ++i) {
    LogReceipt receipt;
    grpc::Status status = Log(Spec(i), &receipt);
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message();
    // Embedded mode: the ack waits for the fold.
    ASSERT_EQ(receipt.outcome(), LogReceipt::APPLIED) << i;
    ASSERT_EQ(receipt.leaf_sha256().size(), 64u);
    ASSERT_EQ(receipt.position().shard(), receipt.shard());
  }
  for (int i = 0; i < kPredictions; ++i) {
    predlog::v1::PredictionRecord record;
    grpc::Status status = Get(Spec(i).prediction_id, &record);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(record.event().prediction_logged().subject_id(), Spec(i).subject_id);
    EXPECT_EQ(record.event().actor(), "limits-api");
    // The leaf is the hash of the exact stored event bytes.
    EXPECT_EQ(record.leaf_sha256(),
              storage::ToHex(storage::Sha256(record.event().SerializeAsString())));
  }
}

TEST_F(PipelineTest, OneSubjectAlwaysLandsInOneShard) {
  std::string shard;
  for (int i = 0; i < 20; ++i) {
    PredictionSpec spec = Spec(i);
    spec.subject_id = "customer-42";
    LogReceipt receipt;
    ASSERT_TRUE(Log(spec, &receipt).ok());
    if (shard.empty()) shard = receipt.shard();
    EXPECT_EQ(receipt.shard(), shard);
  }
}

TEST_F(PipelineTest, RetryIsDuplicateAndChangedContentIsConflict) {
  LogReceipt first, retry, changed;
  ASSERT_TRUE(Log(Spec(1), &first).ok());
  ASSERT_TRUE(Log(Spec(1), &retry).ok());
  EXPECT_EQ(retry.outcome(), LogReceipt::DUPLICATE);
  EXPECT_EQ(retry.position().index(), first.position().index());
  EXPECT_EQ(retry.leaf_sha256(), first.leaf_sha256());
  PredictionSpec other = Spec(1);
  other.score = 0.99f;
  ASSERT_TRUE(Log(other, &changed).ok());
  EXPECT_EQ(changed.outcome(), LogReceipt::CONFLICT);
  EXPECT_THAT(changed.reason(), HasSubstr("already recorded"));
  predlog::v1::PredictionRecord record;
  ASSERT_TRUE(Get(Spec(1).prediction_id, &record).ok());
  EXPECT_FLOAT_EQ(record.event().prediction_logged().output().float_scores(0), Spec(1).score);
}

TEST_F(PipelineTest, InvalidPredictionIsInvalidArgumentNamingTheField) {
  PredictionSpec no_subject = Spec(1);
  no_subject.subject_id.clear();
  LogReceipt receipt;
  grpc::Status status = Log(no_subject, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("prediction.subject_id is empty"));

  PredictionSpec no_inputs = Spec(2);
  no_inputs.features = 0;
  status = Log(no_inputs, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("prediction.inputs is empty"));

  predlog::v1::LogRequest empty;
  grpc::ClientContext context;
  status = stub_->Log(&context, empty, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("prediction is missing"));
}

TEST_F(PipelineTest, UnknownPredictionIsNotFound) {
  predlog::v1::PredictionRecord record;
  grpc::Status status = Get("never-logged", &record);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("never-logged"));
}

TEST_F(PipelineTest, RestartWithFreshEmbeddedBrokerContinuesTheLog) {
  // The embedded broker starts empty on every start: offsets restart at 0,
  // the shards' logs must continue without collision or loss.
  std::vector<LogReceipt> before(30);
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(Log(Spec(i), &before[i]).ok());
  server_.reset();
  StartServer();
  for (int i = 30; i < 60; ++i) {
    LogReceipt receipt;
    ASSERT_TRUE(Log(Spec(i), &receipt).ok());
    EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);
  }
  for (int i = 0; i < 60; ++i) {
    predlog::v1::PredictionRecord record;
    ASSERT_TRUE(Get(Spec(i).prediction_id, &record).ok()) << i;
    if (i < 30) {
      EXPECT_EQ(record.position().index(), before[i].position().index());
    }
  }
  // A retry after the restart is still a duplicate of the original.
  LogReceipt retry;
  ASSERT_TRUE(Log(Spec(3), &retry).ok());
  EXPECT_EQ(retry.outcome(), LogReceipt::DUPLICATE);
  EXPECT_EQ(retry.position().index(), before[3].position().index());
}

}  // namespace
}  // namespace predlog::services
