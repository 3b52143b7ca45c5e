// loadgen: end-to-end load against predlogd, with the raw producer baseline
// measured in the same run against the same broker.
//
//   build/bench/loadgen --mode=stream --clients=4 --events=200000
//   build/bench/loadgen --mode=unary --clients=32 --rate=5000 --events=50000
//   build/bench/loadgen --target=127.0.0.1:50051 --target_kafka=127.0.0.1:9092 ...
//
// Without --target it starts predlogd in-process (embedded broker, shards in a
// temp dir), so every ack means "folded". It reports acked events/s, ack
// latency percentiles, and then the raw baseline: librdkafka alone producing
// the same bytes to the same broker (topic loadgen.raw), acks=all.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/measure.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/kafka/producer.h"
#include "services/server/server.h"
#include "storage/logging.h"
#include "tests/testing/events.h"
#include "tests/testing/temp_dir.h"

using ::predlog::bench::Percentile;
using ::predlog::bench::ProcessCpuSeconds;

ABSL_FLAG(std::string, mode, "stream",
          "unary (asynchronous calls at the paced rate: open loop, up to --window in flight per "
          "client), unary_sync (one blocking call at a time per client thread), stream, or "
          "batch (one blocking LogBatch of --batch_size requests at a time per client)");
ABSL_FLAG(int, batch_size, 500, "batch: requests per LogBatch call.");
ABSL_FLAG(int, window, 256, "unary: most calls in flight per client.");
ABSL_FLAG(int64_t, warmup_events, 200, "Events logged one by one before the measured run.");
ABSL_FLAG(int, clients, 4, "Concurrent clients (streams or unary callers).");
ABSL_FLAG(int64_t, events, 100000, "Events to log in total.");
ABSL_FLAG(int64_t, rate, 0, "Target events/s over all clients; 0 = as fast as possible.");
ABSL_FLAG(int, event_bytes, 1024, "Approximate serialized event size.");
ABSL_FLAG(int64_t, subjects, 10000, "Distinct subjects the events are spread over.");
ABSL_FLAG(int, partitions, 4, "Partitions of the in-process predlogd.");
ABSL_FLAG(bool, sync, true,
          "In-process predlogd: fsync the shards' WAL in every group commit (predlogd --sync).");
ABSL_FLAG(bool, direct, true,
          "In-process predlogd: the gateway appends straight into its shards; false sends "
          "its writes through the embedded broker and the ingest (the Kafka path).");
ABSL_FLAG(bool, raw_baseline, true, "Also measure librdkafka alone on the same broker.");
ABSL_FLAG(std::string, target, "",
          "gRPC address of a running predlogd; empty starts one in-process (embedded broker, "
          "shards in a temp dir).");
ABSL_FLAG(std::string, target_kafka, "",
          "With --target: its Kafka bootstrap address, for the raw baseline (none without it).");

namespace {

using predlog::v1::LogReceipt;
using predlog::v1::LogRequest;

struct Result {
  int64_t acked = 0;
  int64_t failed = 0;
  absl::Duration elapsed;
  std::vector<double> latencies_ms;

  // Folds one client's counts into the run's (caller serializes).
  void Add(const Result& client) {
    acked += client.acked;
    failed += client.failed;
    latencies_ms.insert(latencies_ms.end(), client.latencies_ms.begin(), client.latencies_ms.end());
  }
};

// All requests are built before the clock starts, so the client's own cost of
// making events is not charged to the 2 cores under test.
std::vector<LogRequest>* requests = nullptr;

LogRequest MakeRequest(int64_t n, int event_bytes) {
  LogRequest request;
  predlog::v1::AuditEvent event;
  event.ParseFromString(predlog::testing::MakeSizedPredictionPayload(
      static_cast<uint64_t>(n), static_cast<size_t>(event_bytes),
      static_cast<uint64_t>(absl::GetFlag(FLAGS_subjects))));
  *request.mutable_prediction() = event.prediction_logged();
  request.set_actor("loadgen");
  return request;
}

// When event n (of all clients) is due at `rate` events/s overall: events are
// evenly spaced, and client c sends events c, c + clients, ..., so clients
// are not in phase (32 clients firing together would be a burst every 32
// ms, not a steady rate). Now when rate is 0 (as fast as possible).
absl::Time DueTime(absl::Time start, int64_t n, int64_t rate) {
  if (rate <= 0) return absl::Now();
  return start + absl::Seconds(static_cast<double>(n) / static_cast<double>(rate));
}

// Sleeps until event n is due.
void Pace(absl::Time start, int64_t n, int64_t rate) {
  const absl::Time due = DueTime(start, n, rate);
  const absl::Time now = absl::Now();
  if (due > now) absl::SleepFor(due - now);
}

// Open loop, as a serving fleet behaves: each client sends its calls when
// they are due, whether or not earlier ones were answered (up to `window` in
// flight), so a slow ack cannot slow the offered load. Latency counts from
// the moment a call was due, so a client that fell behind is charged too.
Result RunUnary(predlog::v1::PredictionLog::Stub* stub, int clients, int64_t events, int64_t rate,
                int window) {
  struct Call {
    grpc::ClientContext context;
    LogReceipt receipt;
    absl::Time due;
  };
  Result result;
  absl::Mutex mu;
  std::vector<int> in_flight(clients, 0);
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int64_t n = c; n < events; n += clients) {
        Pace(start, n, rate);
        auto* call = new Call;
        call->due = DueTime(start, n, rate);
        call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        {
          absl::MutexLock lock(&mu);
          std::pair<int*, int> limit(&in_flight[c], window);
          mu.Await(absl::Condition(
              +[](std::pair<int*, int>* arg) { return *arg->first < arg->second; }, &limit));
          ++in_flight[c];
        }
        stub->async()->Log(&call->context, &(*requests)[n], &call->receipt,
                           [&, c, call](grpc::Status status) {
                             const double ms = absl::ToDoubleMilliseconds(absl::Now() - call->due);
                             delete call;
                             absl::MutexLock lock(&mu);
                             --in_flight[c];
                             if (status.ok()) {
                               ++result.acked;
                               result.latencies_ms.push_back(ms);
                             } else {
                               ++result.failed;
                             }
                           });
      }
    });
  }
  for (auto& t : threads) t.join();
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](std::vector<int>* v) {
        return std::all_of(v->begin(), v->end(), [](int i) { return i == 0; });
      },
      &in_flight));
  result.elapsed = absl::Now() - start;
  return result;
}

// Closed loop: each client thread makes one blocking call at a time.
Result RunUnarySync(predlog::v1::PredictionLog::Stub* stub, int clients, int64_t events,
                    int64_t rate) {
  Result result;
  std::mutex mu;
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      Result mine;
      for (int64_t n = c; n < events; n += clients) {
        const LogRequest& request = (*requests)[n];
        Pace(start, n, rate);
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        LogReceipt receipt;
        const absl::Time sent = absl::Now();
        if (stub->Log(&context, request, &receipt).ok()) {
          ++mine.acked;
          mine.latencies_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - sent));
        } else {
          ++mine.failed;
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      result.Add(mine);
    });
  }
  for (auto& t : threads) t.join();
  result.elapsed = absl::Now() - start;
  return result;
}

Result RunStream(predlog::v1::PredictionLog::Stub* stub, int clients, int64_t events,
                 int64_t rate) {
  Result result;
  std::mutex mu;
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      grpc::ClientContext context;
      auto stream = stub->LogStream(&context);
      absl::Mutex sent_mu;
      std::map<std::string, absl::Time> sent_at;
      std::thread writer([&] {
        for (int64_t n = c; n < events; n += clients) {
          const LogRequest& request = (*requests)[n];
          Pace(start, n, rate);
          {
            absl::MutexLock lock(&sent_mu);
            sent_at[request.prediction().prediction_id()] = absl::Now();
          }
          if (!stream->Write(request)) break;
        }
        stream->WritesDone();
      });
      Result mine;
      LogReceipt receipt;
      while (stream->Read(&receipt)) {
        const absl::Time now = absl::Now();
        if (receipt.error_code() != 0) {
          ++mine.failed;
          continue;
        }
        ++mine.acked;
        absl::MutexLock lock(&sent_mu);
        auto it = sent_at.find(receipt.prediction_id());
        if (it != sent_at.end()) {
          mine.latencies_ms.push_back(absl::ToDoubleMilliseconds(now - it->second));
          sent_at.erase(it);
        }
      }
      writer.join();
      stream->Finish();
      std::lock_guard<std::mutex> lock(mu);
      result.Add(mine);
    });
  }
  for (auto& t : threads) t.join();
  result.elapsed = absl::Now() - start;
  return result;
}

// Closed loop: each client sends its events as LogBatch calls of
// `batch_size`, one call at a time. Latency is the call's, charged to each of
// its events. The batches take the requests (moved, before the clock).
Result RunBatch(predlog::v1::PredictionLog::Stub* stub, int clients, int64_t events,
                int batch_size) {
  std::vector<std::vector<predlog::v1::LogBatchRequest>> batches(clients);
  for (int c = 0; c < clients; ++c) {
    for (int64_t n = c; n < events; n += clients) {
      if (batches[c].empty() || batches[c].back().requests_size() == batch_size) {
        batches[c].emplace_back();
      }
      *batches[c].back().add_requests() = std::move((*requests)[n]);
    }
  }
  Result result;
  std::mutex mu;
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      Result mine;
      for (const predlog::v1::LogBatchRequest& batch : batches[c]) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        predlog::v1::LogBatchResponse response;
        const absl::Time sent = absl::Now();
        const grpc::Status status = stub->LogBatch(&context, batch, &response);
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - sent);
        if (!status.ok()) {
          mine.failed += batch.requests_size();
          continue;
        }
        for (const LogReceipt& receipt : response.receipts()) {
          if (receipt.error_code() != 0) {
            ++mine.failed;
          } else {
            ++mine.acked;
            mine.latencies_ms.push_back(ms);
          }
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      result.Add(mine);
    });
  }
  for (auto& t : threads) t.join();
  result.elapsed = absl::Now() - start;
  return result;
}

// librdkafka alone: the same bytes, the same broker, acks=all, idempotent.
double RawProducerRate(const std::string& bootstrap, int64_t events, int event_bytes) {
  predlog::services::ProducerOptions options;
  options.bootstrap_servers = bootstrap;
  options.max_queued_messages = 1'000'000;
  auto producer = predlog::services::Producer::Open(options);
  PREDLOG_CHECK(producer.ok()) << producer.status();
  std::vector<std::string> payloads;
  for (int64_t n = 0; n < std::min<int64_t>(events, 10'000); ++n) {
    predlog::v1::AuditEvent event;
    event.set_schema_version(1);
    *event.mutable_prediction_logged() = MakeRequest(n, event_bytes).prediction();
    payloads.push_back(event.SerializeAsString());
  }
  std::atomic<int64_t> delivered{0};
  const absl::Time start = absl::Now();
  for (int64_t n = 0; n < events; ++n) {
    const std::string& p = payloads[n % payloads.size()];
    absl::Status s;
    while (!(s = (*producer)->Produce("loadgen.raw", absl::StrCat("s", n % 10'000), p,
                                      [&](absl::StatusOr<predlog::services::Delivery> d) {
                                        if (d.ok()) delivered.fetch_add(1);
                                      }))
                .ok()) {
      absl::SleepFor(absl::Microseconds(100));  // queue full: back off, never drop
    }
  }
  PREDLOG_CHECK((*producer)->Flush(absl::Seconds(60)).ok());
  const absl::Duration elapsed = absl::Now() - start;
  return static_cast<double>(delivered.load()) / absl::ToDoubleSeconds(elapsed);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // Debian builds abseil with assertions, which turns on Mutex deadlock
  // detection: a global graph updated on every lock (~2% of the CPU of a
  // Log call). Tests keep it; the service and benchmarks do not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode != "unary" && mode != "unary_sync" && mode != "stream" && mode != "batch") {
    std::fprintf(stderr, "loadgen: --mode must be unary, unary_sync, stream or batch\n");
    return 2;
  }
  predlog::SetMinLogSeverity(predlog::LogSeverity::kWarning);
  predlog::testing::TempDir dir;
  predlog::services::ServerOptions options;
  options.data_dir = dir.Sub("data");
  options.sync = absl::GetFlag(FLAGS_sync);
  options.direct_writes = absl::GetFlag(FLAGS_direct);
  options.grpc_listen = "127.0.0.1:0";
  options.http_listen = "";
  options.partitions = absl::GetFlag(FLAGS_partitions);
  std::unique_ptr<predlog::services::Server> server;
  std::string grpc_address = absl::GetFlag(FLAGS_target);
  std::string kafka_address = absl::GetFlag(FLAGS_target_kafka);
  if (grpc_address.empty()) {
    auto started = predlog::services::Server::Start(options);
    if (!started.ok()) {
      std::fprintf(stderr, "loadgen: %s\n", started.status().ToString().c_str());
      return 1;
    }
    server = std::move(*started);
    grpc_address = server->grpc_address();
    kafka_address = server->kafka_address();
  }
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  auto stub = predlog::v1::PredictionLog::NewStub(
      grpc::CreateCustomChannel(grpc_address, grpc::InsecureChannelCredentials(), args));

  const int clients = absl::GetFlag(FLAGS_clients);
  const int64_t events = absl::GetFlag(FLAGS_events);
  const int64_t rate = absl::GetFlag(FLAGS_rate);
  const int event_bytes = absl::GetFlag(FLAGS_event_bytes);
  requests = new std::vector<LogRequest>();
  requests->reserve(events);
  for (int64_t n = 0; n < events; ++n) requests->push_back(MakeRequest(n, event_bytes));
  // Warm up before the clock: the first calls pay for connections, the
  // idempotent producer's id and the consumer's first fetches (hundreds of
  // ms), which is start-up, not the steady state the run measures.
  for (int64_t n = 0; n < absl::GetFlag(FLAGS_warmup_events); ++n) {
    LogRequest warmup = MakeRequest(n, event_bytes);
    warmup.mutable_prediction()->set_prediction_id(absl::StrCat("warmup-", n));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    LogReceipt receipt;
    if (!stub->Log(&context, warmup, &receipt).ok()) {
      std::fprintf(stderr, "loadgen: warm-up call failed\n");
      return 1;
    }
  }
  const double cpu_before = ProcessCpuSeconds();
  Result r =
      mode == "unary" ? RunUnary(stub.get(), clients, events, rate, absl::GetFlag(FLAGS_window))
      : mode == "unary_sync" ? RunUnarySync(stub.get(), clients, events, rate)
      : mode == "batch" ? RunBatch(stub.get(), clients, events, absl::GetFlag(FLAGS_batch_size))
                        : RunStream(stub.get(), clients, events, rate);
  const double cpu_seconds = ProcessCpuSeconds() - cpu_before;
  const double acked_rate = static_cast<double>(r.acked) / absl::ToDoubleSeconds(r.elapsed);
  std::printf("mode=%s clients=%d events=%lld rate=%s event_bytes=%d %s\n", mode.c_str(), clients,
              static_cast<long long>(events), rate == 0 ? "max" : absl::StrCat(rate, "/s").c_str(),
              event_bytes,
              server != nullptr ? absl::StrCat("partitions=", options.partitions).c_str()
                                : absl::StrCat("target=", grpc_address).c_str());
  std::printf("acked (folded) %lld, failed %lld in %.2f s: %.0f events/s\n",
              static_cast<long long>(r.acked), static_cast<long long>(r.failed),
              absl::ToDoubleSeconds(r.elapsed), acked_rate);
  std::printf("ack latency ms: p50 %.2f  p99 %.2f  p999 %.2f\n", Percentile(r.latencies_ms, 0.5),
              Percentile(r.latencies_ms, 0.99), Percentile(r.latencies_ms, 0.999));
  std::printf("CPU of this process while logging: %.1f µs per acked event (%s)\n",
              cpu_seconds * 1e6 / static_cast<double>(std::max<int64_t>(r.acked, 1)),
              server != nullptr ? "clients and predlogd" : "clients only");
  if (absl::GetFlag(FLAGS_raw_baseline) && !kafka_address.empty()) {
    const double raw = RawProducerRate(kafka_address, events, event_bytes);
    std::printf("raw producer baseline (librdkafka, same broker, acks=all): %.0f events/s\n", raw);
    std::printf("ratio acked/raw: %.2f\n", acked_rate / raw);
  }
  return r.failed == 0 ? 0 : 1;
}
