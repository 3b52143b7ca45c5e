// predlog.v1.Audit over gRPC against an in-process predlogd: exports carry
// each record's exact bytes with leaf and chain values that check out, in log
// order per shard; status reports every shard; GetChainValues answers the
// stored leaf and chain value of each position, with precise statuses.
#include "services/server/audit.h"

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/server/server.h"
#include "storage/sha256.h"
#include "storage/timestamps.h"
#include "tests/testing/events.h"
#include "tests/testing/loopback_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;

class AuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        predlog::testing::LoopbackServer started,
        predlog::testing::StartLoopbackServer(ServerOptions(), dir_.Sub("data"), 3));
    server_ = std::move(started.server);
    auto channel = started.channel;
    log_ = predlog::v1::PredictionLog::NewStub(channel);
    audit_ = predlog::v1::Audit::NewStub(channel);
    // 30 predictions of 5 customers, served in reverse of logging order for
    // customer-0, so served order and log order differ.
    for (int i = 0; i < 30; ++i) {
      PredictionSpec spec;
      spec.prediction_id = "p" + std::to_string(i);
      spec.subject_id = "customer-" + std::to_string(i % 5);
      spec.served_at = absl::FromUnixSeconds(1'800'000'000 - i);
      spec.model_version = i % 2 == 0 ? "v1" : "v2";
      predlog::v1::LogRequest request;
      *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
      predlog::v1::LogReceipt receipt;
      grpc::ClientContext context;
      ASSERT_TRUE(log_->Log(&context, request, &receipt).ok());
    }
  }

  std::vector<predlog::v1::ExportedRecord> Export(const predlog::v1::ExportTrailRequest& request,
                                                  grpc::Status* status) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto stream = audit_->ExportTrail(&context, request);
    std::vector<predlog::v1::ExportedRecord> out;
    predlog::v1::ExportBatch batch;
    while (stream->Read(&batch)) {
      for (const auto& r : batch.records()) out.push_back(r);
    }
    *status = stream->Finish();
    return out;
  }

  // Every record's leaf and chain check out; within a shard, indexes increase.
  static void ExpectVerifiable(const std::vector<predlog::v1::ExportedRecord>& records) {
    std::map<std::string, uint64_t> last_index;
    for (const auto& r : records) {
      EXPECT_EQ(r.leaf_sha256(), storage::ToHex(storage::Sha256(r.event_bytes())));
      EXPECT_EQ(r.chain_sha256(),
                storage::ToHex(storage::ChainNext(*storage::DigestFromHex(r.prev_chain_sha256()),
                                                  *storage::DigestFromHex(r.leaf_sha256()))));
      if (auto it = last_index.find(r.shard()); it != last_index.end()) {
        EXPECT_GT(r.index(), it->second) << r.shard();
      }
      last_index[r.shard()] = r.index();
    }
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> log_;
  std::unique_ptr<predlog::v1::Audit::Stub> audit_;
};

TEST_F(AuditTest, ExportAllIsEveryRecordOfEveryShardContiguousAndChained) {
  predlog::v1::ExportTrailRequest request;
  request.set_all(true);
  grpc::Status status;
  std::vector<predlog::v1::ExportedRecord> records = Export(request, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(records.size(), 30u);
  ExpectVerifiable(records);
  // Contiguous from 0 in each shard: each record's prev_chain is the chain of
  // the record before it.
  std::map<std::string, std::string> chain;
  for (const auto& r : records) {
    if (r.index() == 0) {
      EXPECT_EQ(r.prev_chain_sha256(), storage::ToHex(storage::kChainGenesis));
    } else {
      EXPECT_EQ(r.prev_chain_sha256(), chain[r.shard()]) << r.shard() << "#" << r.index();
    }
    chain[r.shard()] = r.chain_sha256();
  }
}

TEST_F(AuditTest, ExportOfASubjectIsItsRecordsInLogOrderWithChainAnchors) {
  predlog::v1::ExportTrailRequest request;
  request.set_subject_id("customer-0");
  grpc::Status status;
  std::vector<predlog::v1::ExportedRecord> records = Export(request, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(records.size(), 6u);
  ExpectVerifiable(records);
  std::vector<std::string> ids;
  for (const auto& r : records) {
    predlog::v1::AuditEvent event;
    ASSERT_TRUE(event.ParseFromString(r.event_bytes()));
    ids.push_back(event.prediction_logged().prediction_id());
  }
  // Log order (p0 was logged first), not served order (p25 was served first).
  EXPECT_THAT(ids, ::testing::ElementsAre("p0", "p5", "p10", "p15", "p20", "p25"));

  // A served-time window narrows it.
  storage::TimeToProto(absl::FromUnixSeconds(1'800'000'000 - 15), request.mutable_from());
  records = Export(request, &status);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(records.size(), 4u);  // p0, p5, p10, p15
}

TEST_F(AuditTest, ExportOfAModelVersionAndBadFilters) {
  predlog::v1::ExportTrailRequest request;
  request.mutable_model()->set_name("credit-limit");
  request.mutable_model()->set_version("v2");
  grpc::Status status;
  std::vector<predlog::v1::ExportedRecord> records = Export(request, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(records.size(), 15u);
  ExpectVerifiable(records);

  predlog::v1::ExportTrailRequest none;
  Export(none, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("filter"));
  request.mutable_model()->clear_version();
  Export(request, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AuditTest, ExportOfLargeEventsStaysUnderTheClientsMessageLimit) {
  // 60 predictions of ~100 KB: one batch of them would be 6 MB, above gRPC's
  // default 4 MB receive limit this client keeps.
  PredictionSpec spec;
  spec.subject_id = "big-customer";
  spec.raw_request_bytes = 100 << 10;
  for (int i = 0; i < 60; ++i) {
    spec.prediction_id = "big-" + std::to_string(i);
    predlog::v1::LogRequest request;
    *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
    predlog::v1::LogReceipt receipt;
    grpc::ClientContext context;
    ASSERT_TRUE(log_->Log(&context, request, &receipt).ok());
  }
  predlog::v1::ExportTrailRequest request;
  request.set_subject_id("big-customer");
  grpc::Status status;
  std::vector<predlog::v1::ExportedRecord> records = Export(request, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(records.size(), 60u);
  ExpectVerifiable(records);
}

TEST_F(AuditTest, GetChainValuesAnswersEachPositionsStoredLeafAndChainInRequestOrder) {
  predlog::v1::ExportTrailRequest all;
  all.set_all(true);
  grpc::Status status;
  const std::vector<predlog::v1::ExportedRecord> records = Export(all, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  predlog::v1::GetChainValuesRequest request;
  for (auto it = records.rbegin(); it != records.rend(); ++it) {  // any order
    auto* p = request.add_positions();
    p->set_shard(it->shard());
    p->set_index(it->index());
  }
  predlog::v1::GetChainValuesResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(audit_->GetChainValues(&context, request, &response).ok());
  ASSERT_EQ(response.values_size(), static_cast<int>(records.size()));
  for (int i = 0; i < response.values_size(); ++i) {
    const auto& want = records[records.size() - 1 - i];
    const auto& got = response.values(i);
    EXPECT_EQ(got.position().shard(), want.shard());
    EXPECT_EQ(got.position().index(), want.index());
    EXPECT_EQ(got.leaf_sha256(), want.leaf_sha256());
    EXPECT_EQ(got.chain_sha256(), want.chain_sha256());
  }
}

TEST_F(AuditTest, GetChainValuesNamesAnUnknownShardAnIndexPastTheLogAndTooManyPositions) {
  predlog::v1::StatusResponse shards;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(audit_->GetStatus(&context, {}, &shards).ok());
  }
  const auto call = [&](const predlog::v1::GetChainValuesRequest& request) {
    predlog::v1::GetChainValuesResponse response;
    grpc::ClientContext context;
    return audit_->GetChainValues(&context, request, &response);
  };
  predlog::v1::GetChainValuesRequest request;
  auto* good = request.add_positions();
  good->set_shard(shards.shards(0).shard());
  good->set_index(0);
  EXPECT_TRUE(call(request).ok());

  predlog::v1::GetChainValuesRequest unknown = request;
  unknown.add_positions()->set_shard("predlog.events-9");
  grpc::Status status = call(unknown);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("no shard named \"predlog.events-9\""));

  predlog::v1::GetChainValuesRequest past = request;
  auto* p = past.add_positions();
  p->set_shard(shards.shards(0).shard());
  p->set_index(shards.shards(0).records());
  status = call(past);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(),
              ::testing::HasSubstr(absl::StrCat(shards.shards(0).shard(), " has ",
                                                shards.shards(0).records(), " records: no index ",
                                                shards.shards(0).records())));

  predlog::v1::GetChainValuesRequest too_many;
  for (int i = 0; i <= Audit::kMaxChainPositions; ++i) *too_many.add_positions() = *good;
  status = call(too_many);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("at most 1000"));
  status = call(predlog::v1::GetChainValuesRequest());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AuditTest, StatusReportsEveryShardWithItsPosition) {
  predlog::v1::StatusResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(audit_->GetStatus(&context, predlog::v1::GetStatusRequest(), &response).ok());
  ASSERT_EQ(response.shards_size(), 5);  // 3 event shards, the registry and the access trail
  uint64_t records = 0;
  for (const auto& s : response.shards()) {
    records += s.records();
    EXPECT_EQ(s.chain_head_sha256().size(), 64u);
  }
  EXPECT_EQ(records, 30u);
  EXPECT_EQ(response.shards(3).shard(), "predlog.registry-0");
  EXPECT_EQ(response.shards(4).shard(), "predlog.access-0");
}

}  // namespace
}  // namespace predlog::services
