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
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/service.grpc.pb.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/temp_dir.h"

namespace predlog {
namespace {

using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;
using ::predlog::v1::LogReceipt;

// One predlogd child process; its startup line gives the addresses.
class Predlogd {
 public:
  explicit Predlogd(std::vector<std::string> args) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(PREDLOGD_BINARY));
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(PREDLOGD_BINARY, argv.data());
      _exit(127);
    }
    close(fds[1]);
    std::string line;
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') line.push_back(c);
    close(fds[0]);
    startup_line_ = line;
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      if (absl::ConsumePrefix(&field, "grpc=")) grpc_ = std::string(field);
      if (absl::ConsumePrefix(&field, "kafka=")) kafka_ = std::string(field);
    }
  }
  ~Predlogd() {
    if (pid_ > 0) Kill();
  }

  void Kill() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // SIGTERM; returns the exit code (-1 if it did not exit normally).
  int Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  const std::string& grpc() const { return grpc_; }
  const std::string& kafka() const { return kafka_; }
  const std::string& startup_line() const { return startup_line_; }

 private:
  pid_t pid_ = -1;
  std::string startup_line_, grpc_, kafka_;
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
  // Wait (bounded) until the restarted ingest has caught up with Kafka.
  std::map<std::string, int> counts;
  for (int attempt = 0; attempt < 100; ++attempt) {
    counts = CountInTrails(stub.get());
    bool all = true;
    for (int i : acked) all &= counts.count(Spec(i).prediction_id) > 0;
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ExpectEachAckedExactlyOnce(counts, acked);
  EXPECT_EQ(ingest.Stop(), 0);
  EXPECT_EQ(broker.Stop(), 0);
  ExpectShardsHoldExactly(dir.Sub("data"), counts.size());
}

// Runs `command` through the shell; returns its exit code and stdout+stderr.
std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) output.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(PredlogCli, LogsJsonLinesAndReadsThemBackWithPreciseExitCodes) {
  TempDir dir;
  Predlogd server({"--data_dir=" + dir.Sub("data"), "--grpc_listen=127.0.0.1:0",
                   "--http_listen=127.0.0.1:0", "--partitions=2"});
  ASSERT_FALSE(server.grpc().empty()) << server.startup_line();
  const std::string cli = std::string(PREDLOG_CLI_BINARY) + " --server=" + server.grpc();
  const std::string lines = dir.Sub("predictions.jsonl");
  {
    std::ofstream out(lines);
    out << R"({"predictionId":"cli-1","subjectId":"c1","servedAt":"2026-11-27T10:00:00Z",)"
        << R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"income","doubleValue":52000}]})"
        << "\n"
        << R"({"prediction":{"predictionId":"cli-2","subjectId":"c2","servedAt":"2026-11-27T10:00:01Z",)"
        << R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"debt","doubleValue":3}]},)"
        << R"("actor":"support"})"
        << "\n";
  }
  auto [log_code, log_out] = RunCommand(cli + " log < " + lines);
  EXPECT_EQ(log_code, 0) << log_out;
  EXPECT_THAT(log_out, ::testing::HasSubstr(R"("predictionId":"cli-1","outcome":"APPLIED")"));
  EXPECT_THAT(log_out, ::testing::HasSubstr(R"("predictionId":"cli-2","outcome":"APPLIED")"));

  auto [get_code, get_out] = RunCommand(cli + " get cli-2");
  EXPECT_EQ(get_code, 0) << get_out;
  EXPECT_THAT(get_out, ::testing::HasSubstr(R"("actor":"support")"));
  EXPECT_THAT(get_out, ::testing::HasSubstr(R"("name":"debt")"));

  // Unknown id: exit 1 with the id named.
  auto [missing_code, missing_out] = RunCommand(cli + " get no-such-id");
  EXPECT_EQ(missing_code, 1);
  EXPECT_THAT(missing_out, ::testing::HasSubstr("prediction_id no-such-id is not recorded"));
  // A bad line: its number named, exit 1, the good line still logged.
  const std::string mixed = dir.Sub("mixed.jsonl");
  std::ofstream(mixed)
      << "{not json\n"
      << R"({"predictionId":"cli-3","subjectId":"c3","servedAt":"2026-11-27T10:00:02Z",)"
      << R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"x","doubleValue":1}]})"
      << "\n";
  auto [mixed_code, mixed_out] = RunCommand(cli + " log < " + mixed);
  EXPECT_EQ(mixed_code, 1);
  EXPECT_THAT(mixed_out, ::testing::HasSubstr("line 1: not a LogRequest"));
  EXPECT_EQ(RunCommand(cli + " get cli-3").first, 0);
  // An invalid prediction: the receipt carries INVALID_ARGUMENT naming the field.
  const std::string invalid = dir.Sub("invalid.jsonl");
  std::ofstream(invalid) << R"({"predictionId":"cli-4","servedAt":"2026-11-27T10:00:02Z",)"
                         << R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"x"}]})"
                         << "\n";
  auto [invalid_code, invalid_out] = RunCommand(cli + " log < " + invalid);
  EXPECT_EQ(invalid_code, 1);
  EXPECT_THAT(invalid_out, ::testing::HasSubstr("prediction.subject_id is empty"));
  // Usage errors: exit 2 naming what is wrong.
  auto [usage_code, usage_out] = RunCommand(cli + " frobnicate");
  EXPECT_EQ(usage_code, 2);
  EXPECT_THAT(usage_out, ::testing::HasSubstr("unknown subcommand 'frobnicate'"));
  EXPECT_EQ(RunCommand(cli + " get").first, 2);
  EXPECT_EQ(server.Stop(), 0);
  // Unreachable server: exit 1 naming the address.
  auto [down_code, down_out] = RunCommand(cli + " get cli-1");
  EXPECT_EQ(down_code, 1);
  EXPECT_THAT(down_out, ::testing::HasSubstr(server.grpc()));
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
