// The single-machine default: the gateway appends straight into its shards
// (group commit) while the embedded Kafka listener folds what Kafka clients
// produce into the same shards through the same writer. Real gRPC on
// loopback, the embedded broker, RocksDB in a temp dir.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/kafka/kafka_config.h"
#include "services/kafka/producer.h"
#include "services/server/server.h"
#include "storage/shard_store.h"
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

constexpr int kPartitions = 3;

class DirectPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.data_dir = dir_.Sub("data");
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "";
    options.partitions = kPartitions;
    ASSERT_OK_AND_ASSIGN(server_, Server::Start(options));
    stub_ = predlog::v1::PredictionLog::NewStub(
        grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
  }

  static PredictionSpec Spec(int i) {
    PredictionSpec spec;
    spec.prediction_id = "pred-" + std::to_string(i);
    spec.subject_id = "customer-" + std::to_string(i % 5);
    return spec;
  }

  static predlog::v1::LogRequest Request(const PredictionSpec& spec) {
    predlog::v1::LogRequest request;
    *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
    return request;
  }

  grpc::Status LogBatch(const predlog::v1::LogBatchRequest& request,
                        predlog::v1::LogBatchResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub_->LogBatch(&context, request, response);
  }

  // How many times each prediction id shows in the subjects' trails.
  std::map<std::string, int> CountInTrails() {
    std::map<std::string, int> counts;
    for (int s = 0; s < 5; ++s) {
      predlog::v1::ListPredictionsRequest request;
      request.set_subject_id("customer-" + std::to_string(s));
      request.set_page_size(1000);
      predlog::v1::ListPredictionsResponse response;
      grpc::ClientContext context;
      EXPECT_TRUE(stub_->ListPredictions(&context, request, &response).ok());
      for (const auto& r : response.records()) {
        ++counts[r.event().prediction_logged().prediction_id()];
      }
    }
    return counts;
  }

  std::unique_ptr<storage::ShardStore> OpenShardReadOnly(int partition) {
    storage::ShardOptions options;
    options.dir = dir_.Sub("data/shards/predlog.events-" + std::to_string(partition));
    options.read_only = true;
    auto shard = storage::ShardStore::Open(options);
    EXPECT_TRUE(shard.ok()) << shard.status();
    return shard.ok() ? std::move(*shard) : nullptr;
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> stub_;
};

TEST_F(DirectPathTest, LogBatch_EachRequestGetsItsOwnReceiptInRequestOrder) {
  predlog::v1::LogBatchRequest request;
  for (int i = 0; i < 20; ++i) *request.add_requests() = Request(Spec(i));
  *request.add_requests() = Request(Spec(3));  // a retry of request 3: a duplicate
  PredictionSpec bad = Spec(100);
  bad.subject_id.clear();
  *request.add_requests() = Request(bad);  // invalid, between valid neighbours
  *request.add_requests() = Request(Spec(21));
  predlog::v1::LogBatchResponse response;
  const grpc::Status status = LogBatch(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.receipts_size(), 23);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(response.receipts(i).prediction_id(), Spec(i).prediction_id);
    EXPECT_EQ(response.receipts(i).outcome(), LogReceipt::APPLIED) << i;
    EXPECT_EQ(response.receipts(i).source().incarnation(), storage::kDirectSource);
    EXPECT_EQ(response.receipts(i).shard(),
              absl::StrCat("predlog.events-", PartitionForKey(Spec(i).subject_id, kPartitions)));
  }
  EXPECT_EQ(response.receipts(20).outcome(), LogReceipt::DUPLICATE);
  EXPECT_EQ(response.receipts(20).position().index(), response.receipts(3).position().index());
  EXPECT_EQ(response.receipts(21).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(response.receipts(21).reason(), HasSubstr("prediction.subject_id"));
  EXPECT_EQ(response.receipts(22).outcome(), LogReceipt::APPLIED);
  const auto counts = CountInTrails();
  EXPECT_EQ(counts.size(), 21u);
  for (const auto& [id, n] : counts) EXPECT_EQ(n, 1) << id;
}

TEST_F(DirectPathTest, LogBatch_EmptyOrOversizedBatchIsInvalidArgument) {
  predlog::v1::LogBatchResponse response;
  grpc::Status status = LogBatch({}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("requests is empty"));
  predlog::v1::LogBatchRequest big;
  const predlog::v1::LogRequest one = Request(Spec(1));
  for (int i = 0; i < 10'001; ++i) *big.add_requests() = one;
  status = LogBatch(big, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("limit is 10000"));
  EXPECT_TRUE(CountInTrails().empty()) << "a refused batch wrote something";
}

TEST_F(DirectPathTest, DirectAppendsAndKafkaProducersIntoOneShardAreEachFoldedOnce) {
  constexpr int kEach = 300;
  // Gateway calls (direct appends) ...
  std::atomic<int> acked{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 3; ++c) {
    clients.emplace_back([&, c] {
      for (int i = c; i < kEach; i += 3) {
        LogReceipt receipt;
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        if (stub_->Log(&context, Request(Spec(i)), &receipt).ok() &&
            receipt.outcome() == LogReceipt::APPLIED) {
          ++acked;
        }
      }
    });
  }
  // ... while a Kafka client produces other events for the same subjects.
  ProducerOptions producer_options;
  producer_options.bootstrap_servers = server_->kafka_address();
  ASSERT_OK_AND_ASSIGN(auto producer, Producer::Open(producer_options));
  std::atomic<int> delivered{0};
  for (int i = kEach; i < 2 * kEach; ++i) {
    ASSERT_OK(producer->Produce(kEventsTopic, Spec(i).subject_id,
                                MakePrediction(Spec(i)).SerializeAsString(),
                                [&](absl::StatusOr<Delivery> d) { delivered += d.ok() ? 1 : 0; }));
  }
  ASSERT_OK(producer->Flush(absl::Seconds(30)));
  for (auto& t : clients) t.join();
  EXPECT_EQ(acked.load(), kEach);
  EXPECT_EQ(delivered.load(), kEach);

  // Kafka's events fold asynchronously: wait (bounded) until all show.
  std::map<std::string, int> counts;
  for (int attempt = 0; attempt < 200; ++attempt) {
    counts = CountInTrails();
    if (counts.size() == 2u * kEach) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(counts.size(), 2u * kEach);
  for (const auto& [id, n] : counts) EXPECT_EQ(n, 1) << id;

  server_.reset();
  uint64_t applied = 0, direct = 0;
  for (int p = 0; p < kPartitions; ++p) {
    auto shard = OpenShardReadOnly(p);
    ASSERT_NE(shard, nullptr);
    ASSERT_OK_AND_ASSIGN(storage::VerifyReport report, shard->Verify());
    EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
    const storage::ShardHead head = shard->Head();
    EXPECT_EQ(head.counters.source_resets, 0u) << "one source made the other look restarted";
    EXPECT_EQ(head.counters.redelivered, 0u);
    applied += head.counters.applied;
    direct += head.direct_appends;
  }
  EXPECT_EQ(applied, 2u * kEach);
  EXPECT_EQ(direct, static_cast<uint64_t>(kEach));
}

TEST_F(DirectPathTest, RestartKeepsTheLogAndBothSourcesGoOn) {
  LogReceipt first;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Log(&context, Request(Spec(1)), &first).ok());
  }
  server_.reset();
  SetUp();  // a new predlogd on the same data dir; its embedded broker is new and empty
  LogReceipt again, second;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Log(&context, Request(Spec(1)), &again).ok());
  }
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->Log(&context, Request(Spec(6)), &second).ok());  // same subject
  }
  EXPECT_EQ(again.outcome(), LogReceipt::DUPLICATE);
  EXPECT_EQ(again.position().index(), first.position().index());
  EXPECT_EQ(second.outcome(), LogReceipt::APPLIED);
  EXPECT_EQ(second.position().index(), first.position().index() + 1);
}

}  // namespace
}  // namespace predlog::services
