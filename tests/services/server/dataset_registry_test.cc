// Registry/RegisterDataset and Registry/GetDataset on a running Server (gRPC
// on loopback, shards in a temp dir): write-once by name@version, parents
// that are not registered, bad input named by field, the access trail of
// GetDataset, lineage cycles refused; and the tracker fields of
// ModelRegistered read back by GetModel.
#include <chrono>
#include <memory>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "services/cli/registry_client.h"
#include "services/server/server.h"
#include "storage/sha256.h"
#include "tests/testing/loopback_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::predlog::testing::TempDir;
using ::predlog::v1::LogReceipt;
using ::testing::HasSubstr;

class DatasetRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        predlog::testing::LoopbackServer started,
        predlog::testing::StartLoopbackServer(ServerOptions(), dir_.Sub("data"), 2));
    server_ = std::move(started.server);
    auto channel = started.channel;
    registry_ = predlog::v1::Registry::NewStub(channel);
    audit_ = predlog::v1::Audit::NewStub(channel);
  }

  static std::string Hex(const std::string& content) {
    return storage::ToHex(storage::Sha256(content));
  }

  // A registration with every field set.
  static predlog::v1::DatasetRegistered Full(const std::string& version,
                                             const std::string& content) {
    predlog::v1::DatasetRegistered d;
    d.mutable_dataset()->set_name("features");
    d.mutable_dataset()->set_version(version);
    d.mutable_dataset()->set_digest(Hex(content));
    auto* parent = d.add_derived_from();
    parent->set_name("applications-clean");
    parent->set_version("2026-10");
    parent->set_digest(Hex("clean"));
    auto* pipeline = d.mutable_pipeline();
    pipeline->set_name("credit-features");
    pipeline->set_version("3");
    pipeline->set_code_digest("4f2a9c1");
    d.set_size_bytes(123456);
    d.set_row_count(5000);
    d.set_source("SELECT * FROM applications WHERE month = '2026-10'");
    auto* model = d.add_derived_from_models();
    model->set_name("fraud-score");
    model->set_version("v2");
    d.set_reason("monthly feature build");
    return d;
  }

  grpc::Status Register(const predlog::v1::DatasetRegistered& dataset,
                        predlog::v1::RegistryReceipt* receipt) {
    predlog::v1::RegisterDatasetRequest request;
    *request.mutable_dataset() = dataset;
    request.set_actor("data-eng");
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    return registry_->RegisterDataset(&context, request, receipt);
  }

  grpc::Status Get(const std::string& name, const std::string& version,
                   predlog::v1::DatasetRecord* record) {
    predlog::v1::GetDatasetRequest request;
    request.set_name(name);
    request.set_version(version);
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    return registry_->GetDataset(&context, request, record);
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<predlog::v1::Registry::Stub> registry_;
  std::unique_ptr<predlog::v1::Audit::Stub> audit_;
};

TEST_F(DatasetRegistryTest, RegisterDatasetRoundTripsEveryFieldThroughGetDataset) {
  const predlog::v1::DatasetRegistered dataset = Full("2026-10", "rows");
  predlog::v1::RegistryReceipt receipt;
  grpc::Status status = Register(dataset, &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);

  predlog::v1::DatasetRecord record;
  status = Get("features", "2026-10", &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(MessageDifferencer::Equals(record.registration(), dataset))
      << record.registration().DebugString();
  EXPECT_EQ(record.position().shard(), receipt.position().shard());
  EXPECT_EQ(record.position().index(), receipt.position().index());
  EXPECT_EQ(record.leaf_sha256(), receipt.leaf_sha256());
  // Without identities predlogd knows nobody; the client's claim is kept.
  EXPECT_EQ(record.registered_by(), "");
  EXPECT_EQ(record.claimed_by(), "data-eng");
  EXPECT_TRUE(record.has_recorded_at());
}

TEST_F(DatasetRegistryTest, SameContentAgainIsDuplicateAtTheEarlierPosition) {
  predlog::v1::RegistryReceipt first;
  ASSERT_TRUE(Register(Full("2026-10", "rows"), &first).ok());
  predlog::v1::RegistryReceipt again;
  grpc::Status status = Register(Full("2026-10", "rows"), &again);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(again.outcome(), LogReceipt::DUPLICATE);
  EXPECT_EQ(again.position().index(), first.position().index());
  EXPECT_EQ(again.leaf_sha256(), first.leaf_sha256());
}

TEST_F(DatasetRegistryTest, OtherContentForTheSameVersionIsAlreadyExistsNamingTheEarlierRecord) {
  predlog::v1::RegistryReceipt first;
  ASSERT_TRUE(Register(Full("2026-10", "rows"), &first).ok());
  predlog::v1::RegistryReceipt second;
  const grpc::Status status = Register(Full("2026-10", "other rows"), &second);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr("features@2026-10"));
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("at index ", first.position().index())));
  EXPECT_THAT(status.error_message(), HasSubstr(first.position().shard()));
  // The first registration stands.
  predlog::v1::DatasetRecord record;
  ASSERT_TRUE(Get("features", "2026-10", &record).ok());
  EXPECT_EQ(record.registration().dataset().digest(), Hex("rows"));
}

TEST_F(DatasetRegistryTest, ParentsThatAreNotRegisteredAreAccepted) {
  // applications-clean@2026-10 and fraud-score@v2 are registered nowhere.
  predlog::v1::RegistryReceipt receipt;
  const grpc::Status status = Register(Full("2026-10", "rows"), &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);
  predlog::v1::DatasetRecord parent;
  EXPECT_EQ(Get("applications-clean", "2026-10", &parent).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(DatasetRegistryTest, BadInputIsInvalidArgumentNamingTheField) {
  predlog::v1::RegistryReceipt receipt;
  predlog::v1::DatasetRegistered no_name = Full("2026-10", "rows");
  no_name.mutable_dataset()->clear_name();
  grpc::Status status = Register(no_name, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dataset.dataset.name is empty"));

  predlog::v1::DatasetRegistered bad_digest = Full("2026-10", "rows");
  bad_digest.mutable_dataset()->set_digest("ABCDEF");
  status = Register(bad_digest, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dataset.dataset.digest"));

  predlog::v1::DatasetRegistered no_digest = Full("2026-10", "rows");
  no_digest.mutable_dataset()->clear_digest();
  status = Register(no_digest, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dataset.dataset.digest is empty"));

  predlog::v1::DatasetRegistered bad_parent = Full("2026-10", "rows");
  bad_parent.mutable_derived_from(0)->set_digest("not-hex");
  status = Register(bad_parent, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dataset.derived_from[0].digest"));

  // Nothing was registered.
  predlog::v1::DatasetRecord record;
  EXPECT_EQ(Get("features", "2026-10", &record).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(DatasetRegistryTest, GetDatasetOfAnUnknownVersionIsNotFoundNamingIt) {
  predlog::v1::DatasetRecord record;
  const grpc::Status status = Get("features", "1999-01", &record);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("features@1999-01"));
}

TEST_F(DatasetRegistryTest, GetDatasetIsRecordedInTheAccessTrail) {
  predlog::v1::RegistryReceipt receipt;
  ASSERT_TRUE(Register(Full("2026-10", "rows"), &receipt).ok());
  predlog::v1::DatasetRecord record;
  ASSERT_TRUE(Get("features", "2026-10", &record).ok());

  predlog::v1::ListAccessRequest request;
  request.set_method("/predlog.v1.Registry/GetDataset");
  predlog::v1::ListAccessResponse response;
  grpc::ClientContext context;
  predlog::testing::SetTestDeadline(&context);
  const grpc::Status status = audit_->ListAccess(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.entries_size(), 1);
  const predlog::v1::AccessRecorded& access = response.entries(0).event().access_recorded();
  EXPECT_EQ(access.method(), "/predlog.v1.Registry/GetDataset");
  EXPECT_THAT(access.request_json(), HasSubstr("2026-10"));
}

TEST_F(DatasetRegistryTest, ModelTrackerFieldsRoundTripThroughGetModel) {
  predlog::v1::RegisterModelRequest first;
  predlog::v1::ModelRegistered* metadata = first.mutable_metadata();
  metadata->mutable_model()->set_name("credit");
  metadata->mutable_model()->set_version("v1");
  metadata->set_framework("xgboost");
  auto* auc = metadata->add_metrics();
  auc->set_name("auc");
  auc->set_value(0.913);
  auc->mutable_dataset()->set_name("holdout");
  auc->mutable_dataset()->set_version("2026-10");
  auto* logloss = metadata->add_metrics();
  logloss->set_name("logloss");
  logloss->set_value(0.25);
  metadata->mutable_training_started_at()->set_seconds(1790000000);
  metadata->set_training_duration_ms(5'400'000);
  metadata->set_external_run_id("mlflow:0a1b2c3d");
  predlog::v1::RegisterModelResponse response;
  {
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    std::istringstream artifact("not really a booster");
    const grpc::Status status = UploadModel(registry_.get(), &context, first, artifact, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  predlog::v1::GetModelRequest request;
  request.set_name("credit");
  request.set_version("v1");
  predlog::v1::ModelRecord record;
  grpc::ClientContext context;
  predlog::testing::SetTestDeadline(&context);
  ASSERT_TRUE(registry_->GetModel(&context, request, &record).ok());
  const predlog::v1::ModelRegistered& got = record.registration();
  ASSERT_EQ(got.metrics_size(), 2);
  EXPECT_TRUE(MessageDifferencer::Equals(got.metrics(0), *auc));
  EXPECT_TRUE(MessageDifferencer::Equals(got.metrics(1), *logloss));
  EXPECT_EQ(got.training_started_at().seconds(), 1790000000);
  EXPECT_EQ(got.training_duration_ms(), 5'400'000);
  EXPECT_EQ(got.external_run_id(), "mlflow:0a1b2c3d");
}

TEST_F(DatasetRegistryTest, ModelWithANamelessMetricIsInvalidArgumentNamingIt) {
  predlog::v1::RegisterModelRequest first;
  predlog::v1::ModelRegistered* metadata = first.mutable_metadata();
  metadata->mutable_model()->set_name("credit");
  metadata->mutable_model()->set_version("v1");
  metadata->set_framework("xgboost");
  metadata->add_metrics()->set_value(1);
  predlog::v1::RegisterModelResponse response;
  grpc::ClientContext context;
  predlog::testing::SetTestDeadline(&context);
  std::istringstream artifact("bytes");
  const grpc::Status status = UploadModel(registry_.get(), &context, first, artifact, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("metadata.metrics[0].name is empty"));
}

// A lineage cycle is refused by the registry shard's fold, whatever path the
// event came by; the gateway answers it as a state the caller must fix first.
TEST_F(DatasetRegistryTest, ADatasetThatWouldCloseALineageCycleIsFailedPreconditionNamingThePath) {
  auto dataset = [](const std::string& name, const std::string& parent) {
    predlog::v1::DatasetRegistered d;
    d.mutable_dataset()->set_name(name);
    d.mutable_dataset()->set_version("1");
    d.mutable_dataset()->set_digest(Hex(name));
    d.add_derived_from()->set_name(parent);
    d.mutable_derived_from(0)->set_version("1");
    return d;
  };
  // B@1 from A@1, not registered yet: history arrives out of order.
  predlog::v1::RegistryReceipt receipt;
  grpc::Status status = Register(dataset("B", "A"), &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // A@1 from B@1 would make A its own ancestor.
  status = Register(dataset("A", "B"), &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(),
              HasSubstr("would close a lineage cycle: dataset A@1 <- dataset B@1 <- dataset A@1"));
  // The registry is as before: B@1 as registered, no A@1.
  predlog::v1::DatasetRecord record;
  EXPECT_EQ(Get("A", "1", &record).error_code(), grpc::StatusCode::NOT_FOUND);
  status = Get("B", "1", &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(MessageDifferencer::Equals(record.registration(), dataset("B", "A")));
}

TEST_F(DatasetRegistryTest, AModelTrainedOnItsOwnOutputsIsFailedPreconditionNamingThePath) {
  predlog::v1::DatasetRegistered scores;
  scores.mutable_dataset()->set_name("scores");
  scores.mutable_dataset()->set_version("1");
  scores.mutable_dataset()->set_digest(Hex("scores"));
  scores.add_derived_from_models()->set_name("credit");
  scores.mutable_derived_from_models(0)->set_version("v1");
  predlog::v1::RegistryReceipt receipt;
  grpc::Status status = Register(scores, &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();

  predlog::v1::RegisterModelRequest first;
  predlog::v1::ModelRegistered* metadata = first.mutable_metadata();
  metadata->mutable_model()->set_name("credit");
  metadata->mutable_model()->set_version("v1");
  metadata->set_framework("xgboost");
  auto* trained_on = metadata->mutable_provenance()->add_datasets();
  trained_on->set_name("scores");
  trained_on->set_version("1");
  predlog::v1::RegisterModelResponse response;
  {
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    std::istringstream artifact("not really a booster");
    status = UploadModel(registry_.get(), &context, first, artifact, &response);
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(),
              HasSubstr("model credit@v1 <- dataset scores@1 <- model credit@v1"));
  predlog::v1::GetModelRequest request;
  request.set_name("credit");
  request.set_version("v1");
  predlog::v1::ModelRecord record;
  grpc::ClientContext context;
  predlog::testing::SetTestDeadline(&context);
  EXPECT_EQ(registry_->GetModel(&context, request, &record).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace predlog::services
