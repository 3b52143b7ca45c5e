// The access trail on a running Server: every call that reads recorded data
// leaves an AccessRecorded in predlog.access-0 before it is answered, writes
// and status calls leave none, ListAccess reads it back (newest first,
// filtered, paged), a call whose access cannot be recorded is refused, and
// the trail goes through Kafka when writes do.
#include "services/server/access_trail.h"

#include <chrono>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/server/server.h"
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
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class AccessTrailTest : public ::testing::Test {
 protected:
  void Start(ServerOptions options = ServerOptions()) {
    server_.reset();
    ASSERT_OK_AND_ASSIGN(predlog::testing::LoopbackServer started,
                         predlog::testing::StartLoopbackServer(options, dir_.Sub("data"), 2));
    server_ = std::move(started.server);
    auto channel = started.channel;
    log_ = predlog::v1::PredictionLog::NewStub(channel);
    audit_ = predlog::v1::Audit::NewStub(channel);
    registry_ = predlog::v1::Registry::NewStub(channel);
  }

  void LogPredictions(int n) {
    for (int i = 0; i < n; ++i) {
      PredictionSpec spec;
      spec.prediction_id = absl::StrCat("p", i);
      spec.subject_id = absl::StrCat("customer-", i);
      predlog::v1::LogRequest request;
      *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
      predlog::v1::LogReceipt receipt;
      grpc::ClientContext context;
      predlog::testing::SetTestDeadline(&context);
      ASSERT_TRUE(log_->Log(&context, request, &receipt).ok());
    }
  }

  grpc::Status Get(const std::string& prediction_id) {
    predlog::v1::GetPredictionRequest request;
    request.set_prediction_id(prediction_id);
    predlog::v1::PredictionRecord record;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    return log_->GetPrediction(&context, request, &record);
  }

  grpc::Status ExportAll(int* records) {
    predlog::v1::ExportTrailRequest request;
    request.set_all(true);
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    auto reader = audit_->ExportTrail(&context, request);
    predlog::v1::ExportBatch batch;
    *records = 0;
    while (reader->Read(&batch)) *records += batch.records_size();
    return reader->Finish();
  }

  absl::StatusOr<predlog::v1::ListAccessResponse> List(predlog::v1::ListAccessRequest request) {
    predlog::v1::ListAccessResponse response;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    const grpc::Status status = audit_->ListAccess(&context, request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return response;
  }

  // The methods of `response`'s entries, newest first.
  static std::vector<std::string> Methods(const predlog::v1::ListAccessResponse& response) {
    std::vector<std::string> methods;
    for (const auto& entry : response.entries()) {
      methods.push_back(entry.event().access_recorded().method());
    }
    return methods;
  }

  uint64_t TrailRecords() {
    predlog::v1::StatusResponse status;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    EXPECT_TRUE(audit_->GetStatus(&context, predlog::v1::GetStatusRequest(), &status).ok());
    for (const auto& shard : status.shards()) {
      if (shard.shard() == "predlog.access-0") return shard.records();
    }
    ADD_FAILURE() << "no predlog.access-0 in status";
    return 0;
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> log_;
  std::unique_ptr<predlog::v1::Audit::Stub> audit_;
  std::unique_ptr<predlog::v1::Registry::Stub> registry_;
};

TEST_F(AccessTrailTest, EveryReadIsRecordedBeforeItIsAnsweredAndWritesAndStatusAreNot) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(LogPredictions(3));
  const absl::Time before = absl::Now();
  EXPECT_TRUE(Get("p1").ok());
  // A read that finds nothing was still a read: recorded.
  EXPECT_EQ(Get("no-such-id").error_code(), grpc::StatusCode::NOT_FOUND);
  {
    predlog::v1::ListPredictionsRequest request;
    request.set_subject_id("customer-2");
    predlog::v1::ListPredictionsResponse response;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    ASSERT_TRUE(log_->ListPredictions(&context, request, &response).ok());
    EXPECT_EQ(response.records_size(), 1);
  }
  {
    predlog::v1::GetModelRequest request;
    request.set_name("credit-limit");
    request.set_version("v9");
    predlog::v1::ModelRecord model;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    EXPECT_EQ(registry_->GetModel(&context, request, &model).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  int exported = 0;
  ASSERT_TRUE(ExportAll(&exported).ok());
  // The export of everything does not hold the trail (nor its own record).
  EXPECT_EQ(exported, 3);
  EXPECT_EQ(TrailRecords(), 5u);  // GetStatus is not recorded
  ASSERT_NO_FATAL_FAILURE(LogPredictions(1));

  ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse trail, List({}));
  // Newest first; ListAccess recorded itself before it read.
  EXPECT_THAT(
      Methods(trail),
      ElementsAre("/predlog.v1.Audit/ListAccess", "/predlog.v1.Audit/ExportTrail",
                  "/predlog.v1.Registry/GetModel", "/predlog.v1.PredictionLog/ListPredictions",
                  "/predlog.v1.PredictionLog/GetPrediction",
                  "/predlog.v1.PredictionLog/GetPrediction"));
  EXPECT_TRUE(trail.next_page_token().empty());
  for (int i = 0; i < trail.entries_size(); ++i) {
    const predlog::v1::AccessEntry& entry = trail.entries(i);
    SCOPED_TRACE(entry.event().access_recorded().method());
    EXPECT_EQ(entry.index(), static_cast<uint64_t>(trail.entries_size() - 1 - i));
    // Without identities predlogd knows nobody: no name, no credential.
    EXPECT_EQ(entry.event().actor(), "");
    EXPECT_EQ(entry.event().access_recorded().credential(), "");
    EXPECT_THAT(entry.event().access_recorded().peer(), StartsWith("ipv4:127.0.0.1:"));
    EXPECT_GE(storage::TimeFromProto(entry.appended_at()), before);
  }
  EXPECT_EQ(trail.entries(5).event().access_recorded().request_json(), R"({"predictionId":"p1"})");
  EXPECT_EQ(trail.entries(4).event().access_recorded().request_json(),
            R"({"predictionId":"no-such-id"})");
  EXPECT_EQ(trail.entries(1).event().access_recorded().request_json(), R"({"all":true})");
}

TEST_F(AccessTrailTest, ListAccessFiltersByIdentityMethodAndTimeAndPages) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(LogPredictions(2));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Get(i % 2 == 0 ? "p0" : "p1").ok());
  const absl::Time after_gets = absl::Now();

  // Pages of 2, newest first, each page's own record first in the next.
  predlog::v1::ListAccessRequest request;
  request.set_method("GetPrediction");
  request.set_page_size(2);
  std::vector<uint64_t> indexes;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse page, List(request));
    ++pages;
    for (const auto& entry : page.entries()) {
      EXPECT_EQ(entry.event().access_recorded().method(),
                "/predlog.v1.PredictionLog/GetPrediction");
      indexes.push_back(entry.index());
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(indexes, ElementsAre(4, 3, 2, 1, 0));

  // The full path names the method too; another method matches none of them.
  request = {};
  request.set_method("/predlog.v1.PredictionLog/GetPrediction");
  ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse full, List(request));
  EXPECT_EQ(full.entries_size(), 5);
  request.set_method("Rerun");
  ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse none, List(request));
  EXPECT_EQ(none.entries_size(), 0);

  // Identity: "" is the calls made while predlogd knew nobody (all of them).
  request = {};
  request.set_identity("");
  request.set_method("GetPrediction");
  ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse nobody, List(request));
  EXPECT_EQ(nobody.entries_size(), 5);
  request.set_identity("auditor-ana");
  ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse ana, List(request));
  EXPECT_EQ(ana.entries_size(), 0);

  // Time: [from, to) by the trail's append time.
  request = {};
  storage::TimeToProto(after_gets, request.mutable_to());
  ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse before, List(request));
  EXPECT_EQ(before.entries_size(), 5);  // the GetPredictions, not the ListAccess calls
  request = {};
  storage::TimeToProto(after_gets, request.mutable_from());
  ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse since, List(request));
  for (const auto& entry : since.entries()) {
    EXPECT_EQ(entry.event().access_recorded().method(), "/predlog.v1.Audit/ListAccess");
  }
  EXPECT_EQ(since.entries_size(), 9);  // this call and the eight before it

  // Bad requests are INVALID_ARGUMENT, naming what is wrong (and recorded).
  request = {};
  request.set_page_token("not-a-token");
  EXPECT_THAT(List(request), ::predlog::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                                          HasSubstr("page_token")));
  request = {};
  request.set_page_size(1001);
  EXPECT_THAT(List(request), ::predlog::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                                          HasSubstr("page_size 1001")));
  request = {};
  storage::TimeToProto(after_gets, request.mutable_from());
  storage::TimeToProto(after_gets - absl::Seconds(1), request.mutable_to());
  EXPECT_THAT(List(request), ::predlog::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                                          HasSubstr("to is before from")));
}

// Fail closed: with the disk below its reserve no record can be written, so
// every recorded call is refused, naming the access trail, and reads nothing;
// calls that are not recorded (status) still answer.
TEST_F(AccessTrailTest, ACallWhoseAccessCannotBeRecordedIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_NO_FATAL_FAILURE(LogPredictions(2));
  ServerOptions full;
  full.min_free_bytes = std::numeric_limits<uint64_t>::max();
  ASSERT_NO_FATAL_FAILURE(Start(full));
  const grpc::Status get = Get("p0");
  EXPECT_EQ(get.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(get.error_message(),
              HasSubstr("the access trail could not record this call, so it is refused"));
  EXPECT_THAT(get.error_message(), HasSubstr("predlog.access-0"));
  int exported = -1;
  const grpc::Status exported_status = ExportAll(&exported);
  EXPECT_EQ(exported_status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(exported, 0);
  EXPECT_EQ(TrailRecords(), 0u);

  // Space again: the same read is recorded and answered.
  ASSERT_NO_FATAL_FAILURE(Start());
  EXPECT_TRUE(Get("p0").ok());
  EXPECT_EQ(TrailRecords(), 1u);
}

// Through Kafka (writes not direct): the record is produced to
// predlog.access, folded by the ingest, and answered once folded; it
// survives a restart.
TEST_F(AccessTrailTest, TheTrailGoesThroughKafkaWhenWritesDoAndSurvivesARestart) {
  ServerOptions through_kafka;
  through_kafka.direct_writes = false;
  ASSERT_NO_FATAL_FAILURE(Start(through_kafka));
  ASSERT_NO_FATAL_FAILURE(LogPredictions(1));
  EXPECT_TRUE(Get("p0").ok());
  predlog::v1::StatusResponse status;
  {
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    ASSERT_TRUE(audit_->GetStatus(&context, predlog::v1::GetStatusRequest(), &status).ok());
  }
  const predlog::v1::ShardStatus* trail = nullptr;
  for (const auto& shard : status.shards()) {
    if (shard.shard() == "predlog.access-0") trail = &shard;
  }
  ASSERT_NE(trail, nullptr);
  EXPECT_EQ(trail->records(), 1u);
  EXPECT_THAT(trail->last_source().incarnation(), StartsWith("embedded-"));

  ASSERT_NO_FATAL_FAILURE(Start());
  predlog::v1::ListAccessRequest request;
  request.set_method("GetPrediction");
  ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse after_restart, List(request));
  ASSERT_EQ(after_restart.entries_size(), 1);
  EXPECT_EQ(after_restart.entries(0).event().access_recorded().request_json(),
            R"({"predictionId":"p0"})");
}

TEST_F(AccessTrailTest, ALongRequestIsCutAtACharacterBoundaryAndSaysSo) {
  ASSERT_NO_FATAL_FAILURE(Start());
  // 3-byte characters, so a cut at the byte limit would split one.
  std::string id;
  while (id.size() < AccessTrail::kMaxRequestJsonBytes + 100) id += "\xe2\x82\xac";
  {
    // On a connection of its own: the answer's message repeats the id, a
    // trailer above gRPC's 8 KB header limit, which the client refuses and
    // which would spoil the connection's header table for the next call.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto stub = predlog::v1::PredictionLog::NewStub(grpc::CreateCustomChannel(
        server_->grpc_address(), grpc::InsecureChannelCredentials(), args));
    predlog::v1::GetPredictionRequest request;
    request.set_prediction_id(id);
    predlog::v1::PredictionRecord record;
    grpc::ClientContext context;
    predlog::testing::SetTestDeadline(&context);
    EXPECT_FALSE(stub->GetPrediction(&context, request, &record).ok());
  }
  predlog::v1::ListAccessRequest request;
  request.set_method("GetPrediction");
  ASSERT_OK_AND_ASSIGN(predlog::v1::ListAccessResponse trail, List(request));
  ASSERT_EQ(trail.entries_size(), 1);
  const std::string& json = trail.entries(0).event().access_recorded().request_json();
  // (It was stored and parsed back, so the cut left valid UTF-8.)
  EXPECT_THAT(json, StartsWith("{\"predictionId\":\""));
  EXPECT_THAT(json, HasSubstr("... (cut: the request is "));
  EXPECT_LE(json.size(), AccessTrail::kMaxRequestJsonBytes + 64);
}

}  // namespace
}  // namespace predlog::services
