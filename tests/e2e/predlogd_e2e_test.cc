// predlogd and predlog as child processes: kill -9 at any moment loses no
// acknowledged event and duplicates none; the CLI's happy and error paths.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/kafka/producer.h"
#include "storage/shard_store.h"
#include "tests/e2e/child_process.h"
#include "tests/testing/events.h"
#include "tests/testing/temp_dir.h"

namespace predlog {
namespace {

using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;
using ::predlog::v1::LogReceipt;

// A predlogd child process of this build.
class Predlogd : public testing::Predlogd {
 public:
  explicit Predlogd(std::vector<std::string> args)
      : testing::Predlogd(PREDLOGD_BINARY, std::move(args)) {}
};

std::unique_ptr<v1::PredictionLog::Stub> Connect(const std::string& address) {
  return v1::PredictionLog::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

PredictionSpec Spec(int i) {
  PredictionSpec spec;
  spec.prediction_id = "kill-" + std::to_string(i);
  spec.subject_id = "customer-" + std::to_string(i % 10);
  spec.served_at = absl::FromUnixSeconds(1'700'000'000) + absl::Milliseconds(i);
  return spec;
}

// Logs from 4 client threads until stopped; remembers which ids were acked.
class LoadUntilStopped {
 public:
  LoadUntilStopped(v1::PredictionLog::Stub* stub, int first_id) {
    for (int c = 0; c < 4; ++c) {
      threads_.emplace_back([this, stub, first_id, c] {
        for (int i = first_id + c; !stop_.load(); i += 4) {
          v1::LogRequest request;
          *request.mutable_prediction() = MakePrediction(Spec(i)).prediction_logged();
          LogReceipt receipt;
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
          if (stub->Log(&context, request, &receipt).ok()) {
            std::lock_guard<std::mutex> lock(mu_);
            acked_.push_back(i);
          }
        }
      });
    }
  }
  std::vector<int> Stop() {
    stop_.store(true);
    for (auto& t : threads_) t.join();
    return acked_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::vector<int> acked_;
};

// How many times each prediction id appears in the 10 subject trails.
std::map<std::string, int> CountInTrails(v1::PredictionLog::Stub* stub) {
  std::map<std::string, int> counts;
  for (int s = 0; s < 10; ++s) {
    std::string token;
    do {
      v1::ListPredictionsRequest request;
      request.set_subject_id("customer-" + std::to_string(s));
      request.set_page_size(1000);
      request.set_page_token(token);
      v1::ListPredictionsResponse response;
      grpc::ClientContext context;
      grpc::Status status = stub->ListPredictions(&context, request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) return counts;
      for (const auto& r : response.records()) {
        ++counts[r.event().prediction_logged().prediction_id()];
      }
      token = response.next_page_token();
    } while (!token.empty());
  }
  return counts;
}

// After the processes stopped: every shard verifies, and its log holds exactly
// the distinct events the trails show (nothing folded twice, nothing extra).
void ExpectShardsHoldExactly(const std::string& data_dir, size_t distinct_events) {
  uint64_t applied = 0;
  for (int p = 0; p < 3; ++p) {
    storage::ShardOptions options;
    options.dir = data_dir + "/shards/predlog.events-" + std::to_string(p);
    options.read_only = true;
    auto shard = storage::ShardStore::Open(options);
    ASSERT_TRUE(shard.ok()) << shard.status();
    auto report = (*shard)->Verify();
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_FALSE(report->first_bad_index.has_value()) << report->problem;
    const storage::ShardCounters c = (*shard)->Head().counters;
    EXPECT_EQ(c.conflicts, 0u);
    EXPECT_EQ(c.rejected, 0u);
    applied += c.applied;
  }
  EXPECT_EQ(applied, distinct_events);
}

void ExpectEachAckedExactlyOnce(const std::map<std::string, int>& counts,
                                const std::vector<int>& acked) {
  for (int i : acked) {
    auto it = counts.find(Spec(i).prediction_id);
    ASSERT_NE(it, counts.end()) << "acknowledged " << Spec(i).prediction_id << " is missing";
    EXPECT_EQ(it->second, 1) << Spec(i).prediction_id;
  }
  for (const auto& [id, n] : counts) EXPECT_EQ(n, 1) << id << " is recorded " << n << " times";
}

// The value of `series` in a Prometheus text page, or -1 when absent.
double Metric(const std::string& page, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(page, '\n')) {
    if (absl::ConsumePrefix(&line, series + " ")) {
      double v = 0;
      return absl::SimpleAtod(line, &v) ? v : -1;
    }
  }
  return -1;
}

// An ingest-only predlogd's /metrics page ("" when it does not answer).
std::string MetricsOf(const Predlogd& process) {
  std::string http;
  for (absl::string_view field : absl::StrSplit(process.startup_line(), ' ')) {
    if (absl::ConsumePrefix(&field, "http=")) http = std::string(field);
  }
  httplib::Client client("http://" + http);
  auto response = client.Get("/metrics");
  return response && response->status == 200 ? response->body : "";
}

TEST(PredlogdKill, AllInOneEmbeddedKilledMidStreamLosesNoAckedEventAndContinues) {
  TempDir dir;
  const std::vector<std::string> args = {"--data_dir=" + dir.Sub("data"),
                                         "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
                                         "--partitions=3"};
  std::vector<int> acked;
  {
    Predlogd first(args);
    ASSERT_FALSE(first.grpc().empty()) << first.startup_line();
    auto stub = Connect(first.grpc());
    LoadUntilStopped load(stub.get(), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    first.Kill();
    acked = load.Stop();
  }
  ASSERT_GT(acked.size(), 50u) << "the load never got going";

  // The restarted embedded broker is empty and starts at offset 0 again.
  Predlogd second(args);
  ASSERT_FALSE(second.grpc().empty()) << second.startup_line();
  auto stub = Connect(second.grpc());
  std::vector<int> after;
  for (int i = 1'000'000; i < 1'000'200; ++i) {
    v1::LogRequest request;
    *request.mutable_prediction() = MakePrediction(Spec(i)).prediction_logged();
    LogReceipt receipt;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->Log(&context, request, &receipt).ok());
    ASSERT_EQ(receipt.outcome(), LogReceipt::APPLIED);
    after.push_back(i);
  }
  const auto counts = CountInTrails(stub.get());
  ExpectEachAckedExactlyOnce(counts, acked);
  ExpectEachAckedExactlyOnce(counts, after);
  EXPECT_EQ(second.Stop(), 0);
  ExpectShardsHoldExactly(dir.Sub("data"), counts.size());
}

TEST(PredlogdKill, IngestKilledWithBrokerInItsOwnProcessResumesExactlyOnce) {
  TempDir dir;
  Predlogd broker({"--data_dir=" + dir.Sub("broker"), "--roles=broker", "--partitions=3",
                   "--http_listen=127.0.0.1:0"});
  ASSERT_FALSE(broker.kafka().empty()) << broker.startup_line();
  const std::vector<std::string> args = {
      "--data_dir=" + dir.Sub("data"), "--grpc_listen=127.0.0.1:0",
      "--http_listen=127.0.0.1:0",     "--partitions=3",
      "--roles=gateway,ingest,query",  "--kafka_brokers=" + broker.kafka()};
  std::vector<int> acked;
  {
    Predlogd ingest(args);
    ASSERT_FALSE(ingest.grpc().empty()) << ingest.startup_line();
    auto stub = Connect(ingest.grpc());
    // The broker is embedded (in another process), so acks wait for the fold;
    // the kill still lands between Kafka and the shard for in-flight events,
    // which the restarted ingest must fold exactly once.
    LoadUntilStopped load(stub.get(), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    ingest.Kill();
    acked = load.Stop();
  }
  ASSERT_GT(acked.size(), 50u) << "the load never got going";

  Predlogd ingest(args);
  ASSERT_FALSE(ingest.grpc().empty()) << ingest.startup_line();
  auto stub = Connect(ingest.grpc());
  // Wait (bounded) until the restarted ingest has folded everything Kafka
  // holds and the trails show it: every shard's consumer lag is 0 and the
  // shards' applied counters (predlog_events_folded_total) equal the distinct
  // predictions in the trails, the same at two reads in a row. Events that
  // were produced but not yet acked at the kill are in Kafka too and are
  // folded after the restart; counting the trails before they land would
  // leave the applied counters (read after Stop) above the count. That race
  // failed this test on slow fresh machines (one extra record per shard,
  // issue 11) while it waited on the lag alone: the lag comes from the
  // consumer's cached high watermark, which can trail what the broker holds.
  // A record applied twice never converges: the counters stay above the
  // trails, and the checks below fail with both numbers.
  std::map<std::string, int> counts;
  double folded = -1;
  int stable = 0;
  for (int attempt = 0; attempt < 150 && stable < 2; ++attempt) {
    const std::string page = MetricsOf(ingest);
    bool caught_up = true;
    double sum = 0;
    for (int p = 0; p < 3; ++p) {
      const std::string shard = "{shard=\"predlog.events-" + std::to_string(p) + "\"}";
      caught_up &= Metric(page, "predlog_consumer_lag" + shard) == 0;
      sum += Metric(page, "predlog_events_folded_total" + shard);
    }
    counts = CountInTrails(stub.get());
    const bool agree = caught_up && sum == static_cast<double>(counts.size()) && sum == folded;
    stable = agree ? stable + 1 : 0;
    folded = sum;
    if (stable < 2) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(folded, static_cast<double>(counts.size()))
      << "the shards applied " << folded << " records, the trails hold " << counts.size()
      << " distinct predictions";
  ExpectEachAckedExactlyOnce(counts, acked);
  EXPECT_EQ(ingest.Stop(), 0);
  EXPECT_EQ(broker.Stop(), 0);
  ExpectShardsHoldExactly(dir.Sub("data"), counts.size());
}

// Events 0..n-1 of the e2e Spec, produced straight to predlog.events (the
// gateway cannot run beside a group member in front of the embedded broker).
void ProduceDirect(const std::string& kafka, int first, int n) {
  services::ProducerOptions options;
  options.bootstrap_servers = kafka;
  auto producer = services::Producer::Open(options);
  ASSERT_TRUE(producer.ok()) << producer.status();
  std::atomic<int> failed{0};
  for (int i = first; i < first + n; ++i) {
    v1::AuditEvent event = MakePrediction(Spec(i));
    ASSERT_TRUE((*producer)
                    ->Produce("predlog.events", Spec(i).subject_id, event.SerializeAsString(),
                              [&](absl::StatusOr<services::Delivery> d) {
                                if (!d.ok()) failed.fetch_add(1);
                              })
                    .ok());
  }
  ASSERT_TRUE((*producer)->Flush(absl::Seconds(30)).ok());
  ASSERT_EQ(failed.load(), 0);
}

TEST(PredlogdGroup, AMemberKilledWithSigkillHasItsPartitionsFoldedByTheOther) {
  TempDir dir;
  Predlogd broker({"--data_dir=" + dir.Sub("broker"), "--roles=broker", "--partitions=3",
                   "--http_listen=127.0.0.1:0"});
  ASSERT_FALSE(broker.kafka().empty()) << broker.startup_line();
  auto member = [&](const std::string& name) {
    return std::make_unique<Predlogd>(std::vector<std::string>{
        "--data_dir=" + dir.Sub(name), "--roles=ingest", "--partitions=3",
        "--artifact_dir=" + dir.Sub("artifacts"), "--http_listen=127.0.0.1:0",
        "--ingest_group=e2e-group", "--kafka_brokers=" + broker.kafka()});
  };
  auto a = member("a");
  auto b = member("b");
  const auto shard = [](int p) { return "{shard=\"predlog.events-" + std::to_string(p) + "\"}"; };
  auto owned_by = [&](const Predlogd& m) {
    const std::string page = MetricsOf(m);
    int owned = 0;
    for (int p = 0; p < 3; ++p) owned += Metric(page, "predlog_shard_assigned" + shard(p)) == 1;
    return owned;
  };
  auto folded_by = [&](const Predlogd& m) {
    const std::string page = MetricsOf(m);
    double folded = 0;
    for (int p = 0; p < 3; ++p) folded += Metric(page, "predlog_events_folded_total" + shard(p));
    return static_cast<int>(folded);
  };
  // Bounded waits (the group's first join takes ~3 s on the embedded broker).
  auto wait_until = [](const std::function<bool()>& done) {
    for (int i = 0; i < 300 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return done();
  };
  ASSERT_TRUE(wait_until([&] {
    return owned_by(*a) >= 1 && owned_by(*b) >= 1 && owned_by(*a) + owned_by(*b) == 3;
  })) << "the two members never split the 3 partitions";

  ProduceDirect(broker.kafka(), 0, 300);
  ASSERT_TRUE(wait_until([&] { return folded_by(*a) + folded_by(*b) == 300; }));
  const int b_before = folded_by(*b);

  a->Kill();  // no revocation, no commit: the group notices by the session timeout
  ProduceDirect(broker.kafka(), 300, 300);
  ASSERT_TRUE(wait_until([&] { return owned_by(*b) == 3; }))
      << "b never took over the killed member's partitions";
  // b folds the partitions new to it from the source's start, plus the rest.
  ASSERT_TRUE(wait_until([&] { return folded_by(*b) == 600; }))
      << "b folded " << folded_by(*b) << " (had " << b_before << " before the kill)";
  EXPECT_EQ(b->Stop(), 0);
  // Every event exactly once in b's shards, chains intact.
  ExpectShardsHoldExactly(dir.Sub("b"), 600);
  EXPECT_EQ(broker.Stop(), 0);
}

TEST(PredlogdFlags, ZeroWorkerThreadsIsAUsageErrorNamingTheFlag) {
  TempDir dir;
  const auto [code, output] =
      testing::RunCommand(std::string(PREDLOGD_BINARY) +
                          " --worker_threads=0 --http_listen= --data_dir=" + dir.Sub("data"));
  EXPECT_EQ(code, 2) << output;
  EXPECT_THAT(output, ::testing::HasSubstr("--worker_threads must be >= 1, not 0"));
}

TEST(PredlogdFlags, ZeroShardCacheIsAUsageErrorNamingTheFlag) {
  TempDir dir;
  const auto [code, output] =
      testing::RunCommand(std::string(PREDLOGD_BINARY) +
                          " --shard_cache_mb=0 --http_listen= --data_dir=" + dir.Sub("data"));
  EXPECT_EQ(code, 2) << output;
  EXPECT_THAT(output, ::testing::HasSubstr("--shard_cache_mb must be >= 1"));
}

TEST(PredlogdFlags, BadRolesAreAUsageErrorNamingTheFlag) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(PREDLOGD_BINARY, PREDLOGD_BINARY, "--roles=brokr", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string err;
  char buf[256];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) err.append(buf, n);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_THAT(err, ::testing::HasSubstr("--roles: unknown role 'brokr'"));
}

}  // namespace
}  // namespace predlog
