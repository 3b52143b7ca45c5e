// End to end in one process: gRPC Log -> producer -> embedded broker ->
// ingest -> shard, then GetPrediction over gRPC. Real librdkafka, real gRPC on
// loopback, real RocksDB in a temp dir.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/kafka/kafka_config.h"
#include "services/kafka/producer.h"
#include "services/server/server.h"
#include "storage/event_validation.h"
#include "storage/sha256.h"
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

// Every PipelineTest runs down both write paths of the embedded default: the
// gateway's direct appends (the default) and produce-to-the-embedded-broker
// then fold (what a Kafka deployment does).
class PipelineTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { StartServer(); }

  void StartServer() {
    ServerOptions options = options_;
    options.data_dir = dir_.Sub("data");
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.partitions = 3;
    options.direct_writes = GetParam();
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

  // Events produced straight to Kafka are folded asynchronously: poll (for at
  // most 20 s; a bound, not a timing assertion) until the id is readable.
  grpc::Status WaitUntilReadable(const std::string& id, predlog::v1::PredictionRecord* record) {
    grpc::Status status;
    for (int attempt = 0; attempt < 200; ++attempt) {
      status = Get(id, record);
      if (status.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return status;
  }

  static PredictionSpec Spec(int i) {
    PredictionSpec spec;
    spec.prediction_id = "pred-" + std::to_string(i);
    spec.subject_id = "customer-" + std::to_string(i % 7);
    return spec;
  }

  TempDir dir_;
  ServerOptions options_;  // StartServer() fills in dirs and ports
  std::unique_ptr<Server> server_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> stub_;
};

TEST_P(PipelineTest, LoggedPredictionsAreFoldedBeforeTheAckAndReadable) {
  // 10k unary Log calls from 8 concurrent clients.
  constexpr int kPredictions = 10'000;
  constexpr int kClients = 8;
  std::vector<LogReceipt> receipts(kPredictions);
  std::vector<grpc::Status> statuses(kPredictions);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = c; i < kPredictions; i += kClients) statuses[i] = Log(Spec(i), &receipts[i]);
    });
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < kPredictions; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << i << ": " << statuses[i].error_message();
    // Embedded mode: the ack waits for the fold.
    ASSERT_EQ(receipts[i].outcome(), LogReceipt::APPLIED) << i;
    ASSERT_EQ(receipts[i].leaf_sha256().size(), 64u);
    ASSERT_EQ(receipts[i].position().shard(), receipts[i].shard());
  }
  for (int i = 0; i < kPredictions; ++i) {
    predlog::v1::PredictionRecord record;
    grpc::Status status = Get(Spec(i).prediction_id, &record);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(record.event().prediction_logged().subject_id(), Spec(i).subject_id);
    // Without an identities file predlogd knows nobody: the actor is empty
    // and the request's actor is kept as the client's claim.
    ASSERT_EQ(record.event().actor(), "");
    ASSERT_EQ(record.event().claimed_actor(), "limits-api");
    ASSERT_EQ(record.position().index(), receipts[i].position().index());
    // The leaf is the hash of the exact stored event bytes.
    ASSERT_EQ(record.leaf_sha256(), receipts[i].leaf_sha256());
    ASSERT_EQ(record.leaf_sha256(),
              storage::ToHex(storage::Sha256(record.event().SerializeAsString())));
  }
}

TEST_P(PipelineTest, LogStream_EveryRequestGetsOneReceiptAndIsReadableInItsTrail) {
  constexpr int kPredictions = 100'000;
  constexpr int kInvalid = 777;  // this one has no subject
  grpc::ClientContext context;
  auto stream = stub_->LogStream(&context);
  std::thread writer([&] {
    for (int i = 0; i < kPredictions; ++i) {
      predlog::v1::LogRequest request;
      PredictionSpec spec = Spec(i);
      spec.subject_id = "customer-" + std::to_string(i % 100);
      spec.served_at = absl::FromUnixSeconds(1'700'000'000) + absl::Seconds(i);
      if (i == kInvalid) spec.subject_id.clear();
      *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  std::map<std::string, LogReceipt> receipts;
  LogReceipt receipt;
  while (stream->Read(&receipt)) {
    EXPECT_TRUE(receipts.emplace(receipt.prediction_id(), receipt).second)
        << "two receipts for " << receipt.prediction_id();
  }
  writer.join();
  grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(receipts.size(), static_cast<size_t>(kPredictions));
  for (const auto& [id, r] : receipts) {
    if (id == Spec(kInvalid).prediction_id) {
      EXPECT_EQ(r.error_code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      EXPECT_THAT(r.reason(), HasSubstr("prediction.subject_id is empty"));
    } else {
      ASSERT_EQ(r.error_code(), 0) << id << ": " << r.reason();
      ASSERT_EQ(r.outcome(), LogReceipt::APPLIED) << id;
    }
  }
  // Every subject's trail holds its predictions in served order.
  for (int subject = 0; subject < 100; subject += 11) {  // 77 holds the invalid one
    predlog::v1::ListPredictionsRequest request;
    request.set_subject_id("customer-" + std::to_string(subject));
    request.set_page_size(1000);
    predlog::v1::ListPredictionsResponse response;
    grpc::ClientContext list_context;
    ASSERT_TRUE(stub_->ListPredictions(&list_context, request, &response).ok());
    const int expected = kPredictions / 100 - (kInvalid % 100 == subject ? 1 : 0);
    ASSERT_EQ(response.records_size(), expected) << subject;
    for (int k = 0; k < response.records_size(); ++k) {
      EXPECT_EQ(response.records(k).event().prediction_logged().prediction_id(),
                Spec(subject + 100 * k +
                     (subject == kInvalid % 100 && 100 * k + subject >= kInvalid ? 100 : 0))
                    .prediction_id);
    }
  }
}

TEST_P(PipelineTest, LogStream_ClientThatReadsLateStillGetsEveryReceipt) {
  // The client writes far more than the server keeps in flight before it
  // reads a single receipt: the server must pause reading (not buffer without
  // bound, not drop) and resume as receipts drain.
  constexpr int kRequests = 3000;
  grpc::ClientContext context;
  auto stream = stub_->LogStream(&context);
  std::thread writer([&] {
    for (int i = 0; i < kRequests; ++i) {
      predlog::v1::LogRequest request;
      *request.mutable_prediction() = MakePrediction(Spec(i)).prediction_logged();
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));  // not reading yet
  std::set<std::string> ids;
  LogReceipt receipt;
  while (stream->Read(&receipt)) {
    EXPECT_EQ(receipt.error_code(), 0) << receipt.reason();
    ids.insert(receipt.prediction_id());
  }
  writer.join();
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kRequests));
}

TEST_P(PipelineTest, OneSubjectAlwaysLandsInOneShard) {
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

TEST_P(PipelineTest, RetryIsDuplicateAndChangedContentIsConflict) {
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

TEST_P(PipelineTest, InvalidPredictionIsInvalidArgumentNamingTheField) {
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

  PredictionSpec year_10000 = Spec(3);
  year_10000.served_at = absl::FromUnixSeconds(253402300800);
  status = Log(year_10000, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("prediction.served_at.seconds is 253402300800"));

  predlog::v1::LogRequest empty;
  grpc::ClientContext context;
  status = stub_->Log(&context, empty, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("prediction is missing"));
}

// One size limit (storage::kMaxEventBytes, 1 MiB) on both paths: an event
// between librdkafka's default message.max.bytes (1,000,000) and the limit is
// folded, one byte over the limit is INVALID_ARGUMENT naming it, and nothing
// around either is lost.
TEST_P(PipelineTest, EventsUpToTheOneSizeLimitAreFoldedAndLargerOnesAreInvalidArgument) {
  auto sized = [](int i, size_t serialized_bytes) {
    PredictionSpec spec = Spec(i);
    const size_t base = MakePrediction(spec).ByteSizeLong();
    // raw_request's own tag and 3-byte length take 4 bytes.
    spec.raw_request_bytes = serialized_bytes - base - 4;
    return spec;
  };
  LogReceipt receipt;
  const PredictionSpec under = sized(1, 1'040'000);
  ASSERT_GT(MakePrediction(under).ByteSizeLong(), 1'000'000u);
  grpc::Status status = Log(under, &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);

  const PredictionSpec over = sized(2, storage::kMaxEventBytes + 1);
  status = Log(over, &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("the limit is 1048576"));

  ASSERT_TRUE(Log(Spec(3), &receipt).ok());
  EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);
  predlog::v1::PredictionRecord record;
  ASSERT_TRUE(Get(under.prediction_id, &record).ok());
  EXPECT_EQ(record.event().prediction_logged().raw_request().size(), under.raw_request_bytes);
  EXPECT_FALSE(Get(over.prediction_id, &record).ok());
}

TEST_P(PipelineTest, OversizeKafkaMessagesNeverCostANeighbour) {
  // Straight to the embedded broker with kcat (its own limit raised to 30 MB),
  // one message per file, each large one followed by a valid neighbour:
  // an event of exactly the limit (folded), one byte over (a rejected record,
  // kept whole), and 6 MB and 20 MB messages, which the embedded broker
  // refuses like a broker's max.message.bytes (the producer gets
  // MSG_SIZE_TOO_LARGE), so they never evict anything from its ~5 MiB
  // partition. Every neighbour is folded; no gap is recorded.
  auto sized = [](int i, size_t serialized_bytes) {
    PredictionSpec spec = Spec(i);
    spec.raw_request_bytes = serialized_bytes - MakePrediction(spec).ByteSizeLong();
    while (MakePrediction(spec).ByteSizeLong() > serialized_bytes) --spec.raw_request_bytes;
    return spec;
  };
  const std::vector<PredictionSpec> specs = {sized(100, storage::kMaxEventBytes),
                                             Spec(101),
                                             sized(102, storage::kMaxEventBytes + 1),
                                             Spec(103),
                                             sized(104, 6'000'000),
                                             Spec(105),
                                             sized(106, 20'000'000),
                                             Spec(107)};
  ASSERT_EQ(MakePrediction(specs[0]).ByteSizeLong(), storage::kMaxEventBytes);
  ASSERT_EQ(MakePrediction(specs[2]).ByteSizeLong(), storage::kMaxEventBytes + 1);
  std::string files;
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string path = dir_.Sub("m" + std::to_string(i) + ".bin");
    std::ofstream(path, std::ios::binary) << MakePrediction(specs[i]).SerializeAsString();
    files += " " + path;
  }
  // kcat exits non-zero because two deliveries failed; what was kept is checked below.
  const std::string command = "kcat -P -X message.max.bytes=30000000 -b " +
                              server_->kafka_address() + " -t predlog.events -p 1" + files + " 2>" +
                              dir_.Sub("kcat.err");
  (void)std::system(command.c_str());
  std::ifstream errors(dir_.Sub("kcat.err"));
  const std::string kcat_errors((std::istreambuf_iterator<char>(errors)),
                                std::istreambuf_iterator<char>());
  EXPECT_THAT(kcat_errors, HasSubstr("too large"));

  predlog::v1::PredictionRecord record;
  for (int i : {0, 1, 3, 5, 7}) {
    grpc::Status status = WaitUntilReadable(specs[static_cast<size_t>(i)].prediction_id, &record);
    EXPECT_TRUE(status.ok()) << i << ": " << status.error_message();
  }
  EXPECT_FALSE(Get(specs[4].prediction_id, &record).ok());
  EXPECT_FALSE(Get(specs[6].prediction_id, &record).ok());

  server_.reset();
  storage::ShardOptions options;
  options.dir = dir_.Sub("data/shards/predlog.events-1");
  options.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto shard, storage::ShardStore::Open(options));
  EXPECT_EQ(shard->Head().counters.gaps, 0u);
  ASSERT_OK_AND_ASSIGN(auto rejected, shard->ListRejected(0, 10));
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_THAT(rejected[0].reason, HasSubstr("message is 1048577 bytes; the limit is 1048576"));
  EXPECT_EQ(rejected[0].payload, MakePrediction(specs[2]).SerializeAsString());
}

TEST_P(PipelineTest, ListPredictions_SubjectTrailPagesInServedOrder) {
  for (int i = 0; i < 25; ++i) {
    PredictionSpec spec = Spec(i);
    spec.subject_id = "customer-trail";
    // Logged in reverse served order; the trail comes back in served order.
    spec.served_at = absl::FromUnixSeconds(1'700'000'000) + absl::Seconds(100 - i);
    LogReceipt receipt;
    ASSERT_TRUE(Log(spec, &receipt).ok());
  }
  std::vector<std::string> ids;
  std::string token;
  int pages = 0;
  do {
    predlog::v1::ListPredictionsRequest request;
    request.set_subject_id("customer-trail");
    request.set_page_size(10);
    request.set_page_token(token);
    predlog::v1::ListPredictionsResponse response;
    grpc::ClientContext context;
    grpc::Status status = stub_->ListPredictions(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const auto& r : response.records()) {
      ids.push_back(r.event().prediction_logged().prediction_id());
    }
    token = response.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(ids.size(), 25u);
  EXPECT_EQ(ids.front(), "pred-24");
  EXPECT_EQ(ids.back(), "pred-0");

  predlog::v1::ListPredictionsRequest by_model;
  by_model.mutable_model()->set_name("credit-limit");
  by_model.mutable_model()->set_version("v1");
  by_model.set_page_size(1000);
  predlog::v1::ListPredictionsResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->ListPredictions(&context, by_model, &response).ok());
  EXPECT_EQ(response.records_size(), 25);
}

TEST_P(PipelineTest, ListPredictions_BadRequestsAreInvalidArgument) {
  predlog::v1::ListPredictionsResponse response;
  {
    predlog::v1::ListPredictionsRequest request;
    grpc::ClientContext context;
    grpc::Status status = stub_->ListPredictions(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("filter is missing"));
  }
  {
    predlog::v1::ListPredictionsRequest request;
    request.set_subject_id("c");
    request.set_page_token("not-a-token");
    grpc::ClientContext context;
    grpc::Status status = stub_->ListPredictions(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("page_token"));
  }
  {
    predlog::v1::ListPredictionsRequest request;
    request.set_subject_id("c");
    request.set_page_size(5000);
    grpc::ClientContext context;
    grpc::Status status = stub_->ListPredictions(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("page_size 5000"));
  }
}

TEST_P(PipelineTest, GetPrediction_WithSubjectLooksInTheProducersPartition) {
  // The query side computes the subject's shard itself; it must be the one the
  // producer's murmur2 partitioner chose.
  for (int i = 0; i < 20; ++i) {
    LogReceipt receipt;
    ASSERT_TRUE(Log(Spec(i), &receipt).ok());
    predlog::v1::GetPredictionRequest request;
    request.set_prediction_id(Spec(i).prediction_id);
    request.set_subject_id(Spec(i).subject_id);
    predlog::v1::PredictionRecord record;
    grpc::ClientContext context;
    grpc::Status status = stub_->GetPrediction(&context, request, &record);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(record.position().shard(), receipt.shard());
  }
}

TEST_P(PipelineTest, DirectKafkaProducersAreFoldedAndGarbageIsRejected) {
  // Any Kafka client may produce AuditEvents straight to predlog.events: here
  // kcat sends one garbage message and one valid event (one message per file).
  const std::string garbage = dir_.Sub("garbage.bin");
  const std::string valid = dir_.Sub("valid.bin");
  std::ofstream(garbage, std::ios::binary) << "\xff\xfe definitely not protobuf";
  PredictionSpec spec = Spec(77);
  std::ofstream(valid, std::ios::binary) << MakePrediction(spec).SerializeAsString();
  const std::string command =
      "kcat -P -b " + server_->kafka_address() + " -t predlog.events -p 1 " + garbage + " " + valid;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  // The valid event becomes readable once folded (bounded wait, not a timing assertion).
  predlog::v1::PredictionRecord record;
  grpc::Status status = WaitUntilReadable(spec.prediction_id, &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(record.position().shard(), "predlog.events-1");

  // The service kept going: a gateway Log still works.
  LogReceipt receipt;
  ASSERT_TRUE(Log(Spec(78), &receipt).ok());
  EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);

  // The garbage is kept in the shard's rejected records with its reason.
  server_.reset();
  storage::ShardOptions options;
  options.dir = dir_.Sub("data/shards/predlog.events-1");
  options.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto shard, storage::ShardStore::Open(options));
  ASSERT_OK_AND_ASSIGN(auto rejected, shard->ListRejected(0, 10));
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_THAT(rejected[0].reason, HasSubstr("not a serialized predlog.v1.AuditEvent"));
  EXPECT_EQ(rejected[0].payload, "\xff\xfe definitely not protobuf");
}

// The value of the first series line starting with `series` in `metrics`.
double MetricValue(const std::string& metrics, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (absl::ConsumePrefix(&line, series + " ")) {
      double v = 0;
      EXPECT_TRUE(absl::SimpleAtod(line, &v)) << line;
      return v;
    }
  }
  ADD_FAILURE() << "no series " << series;
  return -1;
}

// Produces `events` straight to predlog.events with a librdkafka producer
// configured with `partitioner` (empty: librdkafka's default,
// consistent_random), keyed by subject_id or with no key; waits for every
// delivery.
void ProduceStraightToKafka(const std::string& kafka_address, const std::string& partitioner,
                            bool keyed, const std::vector<predlog::v1::AuditEvent>& events) {
  KafkaSettings settings = {{"bootstrap.servers", kafka_address}, {"log_level", "3"}};
  if (!partitioner.empty()) settings.emplace_back("partitioner", partitioner);
  ASSERT_OK_AND_ASSIGN(rd_kafka_t * producer, NewKafkaClient(RD_KAFKA_PRODUCER, settings));
  for (const predlog::v1::AuditEvent& event : events) {
    std::string bytes = event.SerializeAsString();
    const std::string& key = event.prediction_logged().subject_id();
    ASSERT_EQ(
        rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC("predlog.events"), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE(bytes.data(), bytes.size()),
            RD_KAFKA_V_KEY(keyed ? key.data() : nullptr, keyed ? key.size() : 0), RD_KAFKA_V_END),
        RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  EXPECT_EQ(rd_kafka_flush(producer, 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(producer);
}

TEST_P(PipelineTest, EverySubjectsEventsAreFoundWhateverPartitionerTheProducerUsed) {
  // librdkafka's default partitioner (CRC32), no key (random partition), and
  // the one predlog documents (murmur2, Java's default): 40 events each, for
  // 8 subjects.
  struct Producer {
    std::string name;
    std::string partitioner;
    bool keyed;
  };
  const std::vector<Producer> producers = {
      {"default", "", true}, {"nokey", "", false}, {"murmur2", "murmur2_random", true}};
  std::map<std::string, std::set<std::string>> by_subject;
  for (const Producer& producer : producers) {
    std::vector<predlog::v1::AuditEvent> events;
    for (int i = 0; i < 40; ++i) {
      PredictionSpec spec;
      spec.prediction_id = producer.name + "-" + std::to_string(i);
      spec.subject_id = "subject-" + std::to_string(i % 8);
      spec.served_at = absl::FromUnixSeconds(1'700'000'000 + i);
      events.push_back(MakePrediction(spec));
      by_subject[spec.subject_id].insert(spec.prediction_id);
    }
    ProduceStraightToKafka(server_->kafka_address(), producer.partitioner, producer.keyed, events);
  }
  // Folded asynchronously: wait (bounded) until each is readable.
  predlog::v1::PredictionRecord record;
  for (const auto& [subject, ids] : by_subject) {
    for (const std::string& id : ids) ASSERT_TRUE(WaitUntilReadable(id, &record).ok()) << id;
  }

  auto audit = predlog::v1::Audit::NewStub(
      grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials()));
  for (const auto& [subject, ids] : by_subject) {
    // The trail, page by page.
    std::set<std::string> listed;
    predlog::v1::ListPredictionsRequest request;
    request.set_subject_id(subject);
    request.set_page_size(7);
    do {
      predlog::v1::ListPredictionsResponse page;
      grpc::ClientContext context;
      ASSERT_TRUE(stub_->ListPredictions(&context, request, &page).ok());
      for (const auto& r : page.records()) {
        EXPECT_EQ(r.event().prediction_logged().subject_id(), subject);
        EXPECT_TRUE(listed.insert(r.event().prediction_logged().prediction_id()).second);
      }
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty());
    EXPECT_EQ(listed, ids) << subject;

    // Each one by id with its subject (what `predlog replay ID --subject S` asks).
    for (const std::string& id : ids) {
      predlog::v1::GetPredictionRequest get;
      get.set_prediction_id(id);
      get.set_subject_id(subject);
      grpc::ClientContext context;
      grpc::Status status = stub_->GetPrediction(&context, get, &record);
      EXPECT_TRUE(status.ok()) << id << ": " << status.error_message();
    }

    // The subject's export.
    predlog::v1::ExportTrailRequest export_request;
    export_request.set_subject_id(subject);
    grpc::ClientContext context;
    auto stream = audit->ExportTrail(&context, export_request);
    std::set<std::string> exported;
    predlog::v1::ExportBatch batch;
    while (stream->Read(&batch)) {
      for (const auto& r : batch.records()) {
        predlog::v1::AuditEvent event;
        ASSERT_TRUE(event.ParseFromString(r.event_bytes()));
        exported.insert(event.prediction_logged().prediction_id());
      }
    }
    ASSERT_TRUE(stream->Finish().ok());
    EXPECT_EQ(exported, ids) << subject;
  }

  // The operator sees the producers are misconfigured.
  httplib::Client http(server_->http_address());
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  double misrouted = 0;
  for (int p = 0; p < 3; ++p) {
    misrouted +=
        MetricValue(metrics->body, "predlog_events_misrouted_total{shard=\"predlog.events-" +
                                       std::to_string(p) + "\"}");
  }
  EXPECT_GT(misrouted, 0);
  EXPECT_LE(misrouted, 80);  // never the murmur2 producer's
  predlog::v1::StatusResponse status;
  grpc::ClientContext context;
  ASSERT_TRUE(audit->GetStatus(&context, predlog::v1::GetStatusRequest(), &status).ok());
  double reported = 0;
  for (const auto& shard : status.shards()) reported += static_cast<double>(shard.misrouted());
  EXPECT_EQ(reported, misrouted);
}

TEST_P(PipelineTest, RegistryEventsStraightToKafkaAreValidatedLikeTheGatewaysOwn) {
  // Produced to predlog.registry past the gateway: a model whose artifact was
  // never uploaded, a deploy of a model never registered, a deploy with a
  // traffic fraction of 1.5. Each becomes a rejected record with its reason,
  // and the registry lists none of them.
  const std::string missing_digest = storage::ToHex(storage::Sha256("never uploaded"));
  predlog::v1::AuditEvent unknown_artifact =
      testing::MakeModelRegistered("credit", "v9", missing_digest);
  predlog::v1::AuditEvent unknown_model;
  unknown_model.set_event_id("deploy-1");
  unknown_model.set_schema_version(storage::kSchemaVersion);
  auto* deploy = unknown_model.mutable_model_deployed();
  deploy->set_route("credit-limit");
  deploy->mutable_model()->set_name("never");
  deploy->mutable_model()->set_version("v1");
  deploy->set_traffic_fraction(1.0);
  predlog::v1::AuditEvent bad_fraction = unknown_model;
  bad_fraction.set_event_id("deploy-2");
  bad_fraction.mutable_model_deployed()->set_traffic_fraction(1.5);
  std::string files;
  int n = 0;
  for (const auto* event : {&unknown_artifact, &unknown_model, &bad_fraction}) {
    const std::string path = dir_.Sub("registry-" + std::to_string(n++) + ".bin");
    std::ofstream(path, std::ios::binary) << event->SerializeAsString();
    files += " " + path;
  }
  const std::string command =
      "kcat -P -b " + server_->kafka_address() + " -t predlog.registry -p 0" + files;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  // Folded asynchronously: wait (bounded) until all three are rejected.
  httplib::Client http(server_->http_address());
  double rejected = 0;
  for (int attempt = 0; attempt < 200 && rejected < 3; ++attempt) {
    auto metrics = http.Get("/metrics");
    ASSERT_TRUE(metrics);
    rejected =
        MetricValue(metrics->body, "predlog_events_rejected_total{shard=\"predlog.registry-0\"}");
    if (rejected < 3) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(rejected, 3);

  server_.reset();
  storage::ShardOptions options;
  options.dir = dir_.Sub("data/shards/predlog.registry-0");
  options.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto registry, storage::ShardStore::Open(options));
  ASSERT_OK_AND_ASSIGN(auto records, registry->ListRejected(0, 10));
  ASSERT_EQ(records.size(), 3u);
  EXPECT_THAT(records[0].reason, HasSubstr("model_registered.model.artifact_sha256 " +
                                           missing_digest + " is not in the artifact store"));
  EXPECT_THAT(records[1].reason, HasSubstr("model_deployed.model never@v1 is not registered"));
  EXPECT_THAT(records[2].reason, HasSubstr("model_deployed.traffic_fraction is outside [0, 1]"));
  ASSERT_OK_AND_ASSIGN(storage::RegistryState state, registry->GetRegistry());
  EXPECT_TRUE(state.models.empty());
  EXPECT_TRUE(state.deployments.empty());
}

TEST_P(PipelineTest, OnePredictionIdIsOneRecordWhicheverPartitionsItsCopiesArriveOn) {
  // Logged through the gateway for alice, then produced straight to Kafka
  // for bob (another partition): a conflict, kept, never a second record.
  // And a retry of alice's event that arrives on every partition is a duplicate.
  PredictionSpec alice = Spec(1);
  alice.prediction_id = "shared-id";
  alice.subject_id = "alice";
  LogReceipt receipt;
  ASSERT_TRUE(Log(alice, &receipt).ok());
  ASSERT_EQ(receipt.outcome(), LogReceipt::APPLIED);
  const std::string home = receipt.position().shard();

  PredictionSpec bob = alice;
  bob.subject_id = "bob";
  int bob_partition = 0;
  while ("predlog.events-" + std::to_string(bob_partition) == home) ++bob_partition;
  std::vector<std::string> files;
  files.push_back(dir_.Sub("bob.bin"));
  std::ofstream(files.back(), std::ios::binary) << MakePrediction(bob).SerializeAsString();
  for (int p = 0; p < 3; ++p) {
    files.push_back(dir_.Sub("retry-" + std::to_string(p) + ".bin"));
    std::ofstream(files.back(), std::ios::binary) << MakePrediction(alice).SerializeAsString();
  }
  std::string command = "kcat -P -b " + server_->kafka_address() + " -t predlog.events -p " +
                        std::to_string(bob_partition) + " " + files[0];
  for (int p = 0; p < 3; ++p) {
    command += " && kcat -P -b " + server_->kafka_address() + " -t predlog.events -p " +
               std::to_string(p) + " " + files[static_cast<size_t>(p) + 1];
  }
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  // Wait (bounded) until all four copies are folded: 1 conflict + 3 duplicates.
  httplib::Client http(server_->http_address());
  double conflicts = 0, duplicates = 0, folded = 0;
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto metrics = http.Get("/metrics");
    ASSERT_TRUE(metrics);
    conflicts = duplicates = folded = 0;
    for (int p = 0; p < 3; ++p) {
      const std::string shard = "{shard=\"predlog.events-" + std::to_string(p) + "\"}";
      conflicts += MetricValue(metrics->body, "predlog_events_conflict_total" + shard);
      duplicates += MetricValue(metrics->body, "predlog_events_duplicate_total" + shard);
      folded += MetricValue(metrics->body, "predlog_events_folded_total" + shard);
    }
    if (conflicts + duplicates >= 4) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(conflicts, 1);
  EXPECT_EQ(duplicates, 3);
  EXPECT_EQ(folded, 1);

  // get returns alice's, wherever it is asked for.
  predlog::v1::PredictionRecord record;
  ASSERT_TRUE(Get("shared-id", &record).ok());
  EXPECT_EQ(record.event().prediction_logged().subject_id(), "alice");
  EXPECT_EQ(record.position().shard(), home);

  // A gateway retry through any path is a duplicate pointing at the record.
  ASSERT_TRUE(Log(alice, &receipt).ok());
  EXPECT_EQ(receipt.outcome(), LogReceipt::DUPLICATE);
  EXPECT_EQ(receipt.position().shard(), home);
}

// grpc.health.v1.Health/Check for `service` through a generic stub (the
// request and response are tiny protobufs, encoded here by hand: request
// field 1 = service name; response field 1 = status, 1 = SERVING).
grpc::Status HealthCheck(const std::string& address, const std::string& service,
                         std::string* response_bytes) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::string request_bytes = std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::Status status;
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  call->Finish(&response, &status, &stub);
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) return grpc::Status(grpc::StatusCode::INTERNAL, "no completion");
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    response_bytes->clear();
    for (const grpc::Slice& s : slices) {
      response_bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return status;
}

TEST_P(PipelineTest, EveryServiceAnswersTheHealthCheckByItsName) {
  for (const std::string service : {"", "predlog.v1.PredictionLog", "predlog.v1.Registry",
                                    "predlog.v1.Replay", "predlog.v1.Audit", "predlog.v1.Admin"}) {
    std::string response;
    grpc::Status status = HealthCheck(server_->grpc_address(), service, &response);
    ASSERT_TRUE(status.ok()) << "'" << service << "': " << status.error_message();
    EXPECT_EQ(response, std::string("\x08\x01", 2)) << "'" << service << "' is not SERVING";
  }
  std::string response;
  EXPECT_EQ(
      HealthCheck(server_->grpc_address(), "predlog.v1.NoSuchService", &response).error_code(),
      grpc::StatusCode::NOT_FOUND);
}

TEST_P(PipelineTest, MetricsCountEveryOutcome) {
  for (int i = 0; i < 30; ++i) {
    LogReceipt receipt;
    ASSERT_TRUE(Log(Spec(i), &receipt).ok());
  }
  LogReceipt receipt;
  ASSERT_TRUE(Log(Spec(0), &receipt).ok());  // a duplicate
  PredictionSpec bad = Spec(99);
  bad.subject_id.clear();
  ASSERT_FALSE(Log(bad, &receipt).ok());

  httplib::Client http("http://" + server_->http_address());
  auto response = http.Get("/metrics");
  ASSERT_TRUE(response) << "no answer from " << server_->http_address();
  ASSERT_EQ(response->status, 200);
  const std::string& m = response->body;
  EXPECT_EQ(MetricValue(m, "predlog_log_acked_total"), 31);
  EXPECT_EQ(MetricValue(m, "predlog_log_failed_total{code=\"INVALID_ARGUMENT\"}"), 1);
  EXPECT_EQ(MetricValue(m, "predlog_ack_latency_seconds_count"), 31);
  double folded = 0, duplicates = 0, group_commits = 0;
  for (int p = 0; p < 3; ++p) {
    const std::string shard = "{shard=\"predlog.events-" + std::to_string(p) + "\"}";
    folded += MetricValue(m, "predlog_events_folded_total" + shard);
    duplicates += MetricValue(m, "predlog_events_duplicate_total" + shard);
    group_commits += MetricValue(m, "predlog_shard_group_commits_total" + shard);
    // Nothing went through Kafka (the gateway appends directly): no lag, or
    // none known before the listener's first fetch answered.
    const double lag = MetricValue(m, "predlog_consumer_lag" + shard);
    EXPECT_TRUE(lag == 0 || lag == -1) << shard << " lag " << lag;
    // The embedded default folds every partition itself (no consumer group).
    EXPECT_EQ(MetricValue(m, "predlog_shard_assigned" + shard), 1) << shard;
    EXPECT_EQ(MetricValue(m, "predlog_shard_read_corruptions_total" + shard), 0) << shard;
    EXPECT_EQ(MetricValue(m, "predlog_events_misrouted_total" + shard), 0) << shard;
  }
  EXPECT_EQ(folded, 30);
  EXPECT_EQ(duplicates, 1);
  // Each of the 31 events was written in some group commit, at most one each.
  EXPECT_GE(group_commits, 1);
  EXPECT_LE(group_commits, 31);
  EXPECT_EQ(MetricValue(m, "predlog_worker_threads"), options_.worker_threads);
  EXPECT_EQ(MetricValue(m, "predlog_worker_queue_depth"), 0);
}

TEST_P(PipelineTest, ShardsAreSnapshottedOnTheirSchedule) {
  server_.reset();
  options_.snapshot_every_events = 20;
  options_.snapshot_every_seconds = 0;
  StartServer();
  for (int i = 0; i < 150; ++i) {
    LogReceipt receipt;
    ASSERT_TRUE(Log(Spec(i), &receipt).ok());
  }
  server_.reset();
  uint64_t records = 0;
  for (int p = 0; p < 3; ++p) {
    storage::ShardOptions shard_options;
    shard_options.dir = dir_.Sub("data/shards/predlog.events-" + std::to_string(p));
    shard_options.read_only = true;
    ASSERT_OK_AND_ASSIGN(auto shard, storage::ShardStore::Open(shard_options));
    records += shard->Head().next_index;
    ASSERT_OK_AND_ASSIGN(auto snapshots, shard->ListSnapshots());
    ASSERT_FALSE(snapshots.empty()) << "shard " << p;
    // Each snapshot opens and holds exactly the records before its index.
    ASSERT_OK_AND_ASSIGN(auto old, shard->OpenSnapshot(snapshots.back()));
    EXPECT_EQ(old->Head().next_index, snapshots.back().index);
    EXPECT_GE(snapshots.back().index, 20u);
  }
  EXPECT_EQ(records, 150u);
}

TEST(PipelineGapTest, OffsetsGoneFromKafkaBecomeARecordedGapNotASilentSkip) {
  // The embedded broker keeps only the last ~5 MB per partition. Stop the
  // ingest, let 12 MB pass, restart it: the offsets it missed are gone.
  TempDir dir;
  ServerOptions broker_options;
  broker_options.roles = Roles{true, false, false};
  broker_options.data_dir = dir.Sub("broker");
  broker_options.http_listen = "";
  broker_options.partitions = 1;
  ASSERT_OK_AND_ASSIGN(auto broker, Server::Start(broker_options));
  ServerOptions options;
  options.roles = Roles{false, true, true};
  options.kafka_brokers = broker->kafka_address();
  options.data_dir = dir.Sub("data");
  options.grpc_listen = "127.0.0.1:0";
  options.http_listen = "";
  options.partitions = 1;
  {
    ASSERT_OK_AND_ASSIGN(auto ingest, Server::Start(options));
    auto stub = predlog::v1::PredictionLog::NewStub(
        grpc::CreateChannel(ingest->grpc_address(), grpc::InsecureChannelCredentials()));
    for (int i = 0; i < 10; ++i) {
      predlog::v1::LogRequest request;
      PredictionSpec spec;
      spec.prediction_id = "kept-" + std::to_string(i);
      *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
      request.set_wait_durable(true);
      LogReceipt receipt;
      grpc::ClientContext context;
      ASSERT_TRUE(stub->Log(&context, request, &receipt).ok());
      ASSERT_EQ(receipt.outcome(), LogReceipt::APPLIED);
    }
  }
  constexpr int kFlood = 12'000;
  {
    ProducerOptions producer_options;
    producer_options.bootstrap_servers = broker->kafka_address();
    ASSERT_OK_AND_ASSIGN(auto producer, Producer::Open(producer_options));
    for (int i = 0; i < kFlood; ++i) {
      const std::string payload = testing::MakeSizedPredictionPayload(i, 1024, 100);
      ASSERT_OK(producer->Produce("predlog.events", "k", payload, [](auto) {}));
    }
    ASSERT_OK(producer->Flush(absl::Seconds(30)));
  }
  ASSERT_OK_AND_ASSIGN(auto ingest, Server::Start(options));
  auto stub = predlog::v1::PredictionLog::NewStub(
      grpc::CreateChannel(ingest->grpc_address(), grpc::InsecureChannelCredentials()));
  // The newest flood event becomes readable once the ingest resumed past the gap.
  grpc::Status status;
  for (int attempt = 0; attempt < 300; ++attempt) {
    predlog::v1::GetPredictionRequest request;
    request.set_prediction_id("p" + std::to_string(kFlood - 1));
    predlog::v1::PredictionRecord record;
    grpc::ClientContext context;
    status = stub->GetPrediction(&context, request, &record);
    if (status.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(status.ok()) << status.error_message();
  ingest.reset();

  storage::ShardOptions shard_options;
  shard_options.dir = dir.Sub("data/shards/predlog.events-0");
  shard_options.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto shard, storage::ShardStore::Open(shard_options));
  EXPECT_EQ(shard->Head().counters.gaps, 1u);
  ASSERT_OK_AND_ASSIGN(auto records, shard->ReadRange(0, 100'000));
  int gaps = 0;
  int64_t last_missing = -1;
  for (const auto& record : records) {
    ASSERT_OK_AND_ASSIGN(auto event, record.Event());
    if (!event.has_source_gap()) continue;
    ++gaps;
    EXPECT_EQ(event.source_gap().first_missing_offset(), 10);
    last_missing = event.source_gap().last_missing_offset();
    EXPECT_THAT(event.source_gap().reason(), HasSubstr("no longer in Kafka"));
  }
  ASSERT_EQ(gaps, 1);
  // Every surviving flood event was folded, exactly the ones after the gap.
  EXPECT_EQ(static_cast<int64_t>(shard->Head().counters.applied),
            10 + (10 + kFlood - 1 - last_missing));
  EXPECT_THAT(shard->GetByPredictionId("p0"),
              testing::StatusIs(absl::StatusCode::kNotFound, HasSubstr("p0")));
}

// A port that was free a moment ago on 127.0.0.1.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST_P(PipelineTest, EmbeddedBrokerAnswersOnAFixedAddress) {
  server_.reset();
  options_.embedded_kafka_listen = "127.0.0.1:" + std::to_string(FreePort());
  StartServer();
  EXPECT_EQ(server_->kafka_address(), options_.embedded_kafka_listen);
  // kcat bootstraps from the fixed address and produces through the broker.
  const std::string event = dir_.Sub("event.bin");
  PredictionSpec spec = Spec(5);
  std::ofstream(event, std::ios::binary) << MakePrediction(spec).SerializeAsString();
  const std::string command =
      "kcat -P -b " + options_.embedded_kafka_listen + " -t predlog.events -p 0 " + event;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  predlog::v1::PredictionRecord record;
  grpc::Status status = WaitUntilReadable(spec.prediction_id, &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(record.position().shard(), "predlog.events-0");
}

TEST(PipelineSplitTest, IngestInAnotherProcessNoticesAnEmbeddedBrokerRestart) {
  // Broker and ingest as separate servers (as separate predlogd processes
  // would be). The broker restarts empty between two runs of the ingest: the
  // ingest must see a new incarnation, not mistake offset 0.. for old data.
  TempDir dir;
  auto start_broker = [&] {
    ServerOptions options;
    options.roles = Roles{true, false, false};
    options.data_dir = dir.Sub("broker");
    options.http_listen = "";
    options.partitions = 1;
    return Server::Start(options);
  };
  auto log_some = [&](const std::string& kafka, int first, int n) {
    ServerOptions options;
    options.roles = Roles{false, true, true};
    options.kafka_brokers = kafka;
    options.data_dir = dir.Sub("data");
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "";
    options.partitions = 1;
    auto server = Server::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    auto stub = predlog::v1::PredictionLog::NewStub(
        grpc::CreateChannel((*server)->grpc_address(), grpc::InsecureChannelCredentials()));
    for (int i = first; i < first + n; ++i) {
      predlog::v1::LogRequest request;
      PredictionSpec spec;
      spec.prediction_id = "split-" + std::to_string(i);
      *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
      LogReceipt receipt;
      grpc::ClientContext context;
      ASSERT_TRUE(stub->Log(&context, request, &receipt).ok());
      // The broker is embedded, so even across processes the ack means folded.
      ASSERT_EQ(receipt.outcome(), LogReceipt::APPLIED) << i;
    }
  };
  {
    ASSERT_OK_AND_ASSIGN(auto broker, start_broker());
    log_some(broker->kafka_address(), 0, 10);
  }
  ASSERT_OK_AND_ASSIGN(auto broker, start_broker());
  log_some(broker->kafka_address(), 10, 10);

  storage::ShardOptions shard_options;
  shard_options.dir = dir.Sub("data/shards/predlog.events-0");
  shard_options.read_only = true;
  ASSERT_OK_AND_ASSIGN(auto shard, storage::ShardStore::Open(shard_options));
  EXPECT_EQ(shard->Head().counters.applied, 20u);
  EXPECT_EQ(shard->Head().counters.source_resets, 1u);
  EXPECT_EQ(shard->Head().next_index, 21u);  // 20 events + the SourceReset record
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(shard->GetByPredictionId("split-" + std::to_string(i)).ok()) << i;
  }
}

TEST(PipelineSplitTest, GatewayWithoutIngestInFrontOfTheEmbeddedBrokerIsRefused) {
  TempDir dir;
  ServerOptions options;
  options.roles = Roles{true, false, true};
  options.data_dir = dir.path();
  options.grpc_listen = "127.0.0.1:0";
  options.http_listen = "";
  EXPECT_THAT(Server::Start(options),
              testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("needs the ingest role in the same process")));
}

TEST_P(PipelineTest, UnknownPredictionIsNotFound) {
  predlog::v1::PredictionRecord record;
  grpc::Status status = Get("never-logged", &record);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("never-logged"));
}

TEST_P(PipelineTest, RestartWithFreshEmbeddedBrokerContinuesTheLog) {
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

INSTANTIATE_TEST_SUITE_P(WritePaths, PipelineTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Direct" : "ThroughKafka";
                         });

}  // namespace
}  // namespace predlog::services
