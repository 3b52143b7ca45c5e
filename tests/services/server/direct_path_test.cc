// The single-machine default: the gateway appends straight into its shards
// (group commit) while the embedded Kafka listener folds what Kafka clients
// produce into the same shards through the same writer. Real gRPC on
// loopback, the embedded broker, RocksDB in a temp dir.
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.grpc.pb.h"
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
  void SetUp() override { StartServer(); }

  void StartServer() {
    ServerOptions options = options_;
    if (options.data_dir == ServerOptions().data_dir) options.data_dir = dir_.Sub("data");
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

  grpc::Status Log(int i, LogReceipt* receipt) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub_->Log(&context, Request(Spec(i)), receipt);
  }

  // Stops the server and cuts the newest WAL of `shard` in half: what a power
  // loss can leave.
  void StopAndTruncateNewestWal(const std::string& shard) {
    server_.reset();
    std::filesystem::path newest;
    for (const auto& e :
         std::filesystem::directory_iterator(dir_.Sub("data/shards/" + shard + "/db"))) {
      if (e.path().extension() == ".log" && e.path() > newest) newest = e.path();
    }
    ASSERT_FALSE(newest.empty());
    std::filesystem::resize_file(newest, std::filesystem::file_size(newest) / 2);
  }

  TempDir dir_;
  ServerOptions options_;  // StartServer fills in the data dir (unless set) and ports
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
  // Each shard numbers its direct appends from 0.
  std::map<std::string, std::vector<int64_t>> offsets;
  for (int i = 0; i < 20; ++i) {
    offsets[response.receipts(i).shard()].push_back(response.receipts(i).source().offset());
  }
  for (auto& [shard, seen] : offsets) {
    std::sort(seen.begin(), seen.end());
    for (size_t k = 0; k < seen.size(); ++k) EXPECT_EQ(seen[k], static_cast<int64_t>(k)) << shard;
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
  StartServer();  // a new predlogd on the same data dir; its embedded broker is new and empty
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

// Through Kafka, the first write after the restart fails its fold and pauses
// the partition; later writes to it must hear DATA_LOSS at once too, not wait
// for a fold that never comes until their deadline.
TEST_F(DirectPathTest, ThroughKafkaEveryWriteToALostShardIsDataLossAtOnce) {
  LogReceipt receipt;
  for (int i = 2; i < 200; i += 5) ASSERT_TRUE(Log(i, &receipt).ok());
  StopAndTruncateNewestWal(receipt.shard());
  options_.direct_writes = false;
  StartServer();
  for (int i : {1002, 1007, 1012}) {  // customer-2, in the lost shard
    const grpc::Status status = Log(i, &receipt);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS)
        << i << ": " << status.error_message();
  }
}

TEST_F(DirectPathTest, AShardThatLostAcknowledgedRecordsRefusesUntilTheLossIsAccepted) {
  // Spec(i) with i % 5 == 2 all belong to customer-2, so to one shard.
  LogReceipt receipt;
  for (int i = 2; i < 200; i += 5) ASSERT_TRUE(Log(i, &receipt).ok());
  const std::string shard = receipt.shard();
  const uint64_t acked_end = receipt.position().index() + 1;
  StopAndTruncateNewestWal(shard);

  StartServer();
  grpc::Status status = Log(1002, &receipt);  // customer-2 again
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(status.error_message(), HasSubstr(shard + " lost acknowledged records"));
  predlog::v1::GetPredictionRequest get;
  get.set_prediction_id(Spec(2).prediction_id);
  get.set_subject_id(Spec(2).subject_id);
  predlog::v1::PredictionRecord record;
  {
    grpc::ClientContext context;
    status = stub_->GetPrediction(&context, get, &record);
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  auto audit = predlog::v1::Audit::NewStub(
      grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
  predlog::v1::StatusResponse shards;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(audit->GetStatus(&context, {}, &shards).ok());
  }
  int flagged = 0;
  for (const auto& s : shards.shards()) {
    if (s.shard() == shard) {
      EXPECT_THAT(s.lost_records(), HasSubstr(absl::StrCat("..", acked_end - 1)));
      ++flagged;
    } else {
      EXPECT_EQ(s.lost_records(), "") << s.shard();
    }
  }
  EXPECT_EQ(flagged, 1);
  // Other shards go on meanwhile.
  EXPECT_TRUE(Log(1000, &receipt).ok());  // customer-0

  // The operator accepts the loss: recorded at the index after the lost
  // ones, and writing goes on after it.
  server_.reset();
  options_.accept_data_loss = {"predlog.events-0:0..0"};  // another shard's: no effect here
  StartServer();
  EXPECT_EQ(Log(1007, &receipt).error_code(), grpc::StatusCode::DATA_LOSS);
  const std::string refusal = Log(1007, &receipt).error_message();
  const std::string flag = "--accept_data_loss=";
  ASSERT_NE(refusal.find(flag), std::string::npos) << refusal;
  const std::string accepted =
      refusal.substr(refusal.find(flag) + flag.size(),
                     refusal.find(',', refusal.find(flag)) - refusal.find(flag) - flag.size());
  EXPECT_THAT(accepted, HasSubstr(shard + ":"));
  server_.reset();
  options_.accept_data_loss = {accepted};  // exactly what the refusal named
  StartServer();
  ASSERT_TRUE(Log(1002, &receipt).ok());
  EXPECT_EQ(receipt.shard(), shard);
  EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);
  EXPECT_EQ(receipt.position().index(), acked_end + 1) << "a lost index was given again";
}

TEST_F(DirectPathTest, AFullDiskIsResourceExhaustedAndLoggingResumesOnceSpaceIsFreed) {
  server_.reset();
  const std::string small = dir_.Sub("small");
  std::filesystem::create_directories(small);
  if (mount("tmpfs", small.c_str(), "tmpfs", 0, "size=32m") != 0) {
    GTEST_SKIP() << "cannot mount a small tmpfs here (" << std::strerror(errno)
                 << "); this test needs root";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{small};
  options_.data_dir = small + "/data";
  options_.min_free_bytes = 4 << 20;
  StartServer();
  LogReceipt receipt;
  const grpc::Status first = Log(1, &receipt);
  ASSERT_TRUE(first.ok()) << first.error_message();
  // Fill the filesystem to just above the reserve, then log until refused.
  const std::string ballast = small + "/ballast";
  {
    struct statvfs fs;
    ASSERT_EQ(statvfs(small.c_str(), &fs), 0);
    const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    std::ofstream out(ballast, std::ios::binary);
    const std::string chunk(1 << 16, 'x');
    for (uint64_t n = 0; n + (5 << 20) < free_bytes; n += chunk.size()) out << chunk;
  }
  grpc::Status status;
  int i = 2;
  for (; i < 5000; ++i) {
    status = Log(i, &receipt);
    if (!status.ok()) break;
  }
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(small + "/data"));
  const int refused = i;
  // The process stays up and answers; once space is freed, logging resumes.
  std::filesystem::remove(ballast);
  ASSERT_TRUE(Log(refused, &receipt).ok());
  EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);
  // Nothing acknowledged was lost.
  const auto counts = CountInTrails();
  EXPECT_EQ(counts.size(), static_cast<size_t>(refused));
  EXPECT_EQ(counts.count(Spec(refused).prediction_id), 1u);
}

}  // namespace
}  // namespace predlog::services
