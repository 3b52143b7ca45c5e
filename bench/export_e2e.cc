// End-to-end export throughput: `predlog export --all --format jsonl` against
// a predlogd holding N demo-shaped prediction events, server and client on the
// same machine (bench/RESULTS.md, "Export writer and verifier").
//
// Filling the log through the gateway would take longer than the export, so
// the shards are written directly (storage::ShardStore::ApplyBatch into the
// data_dir layout predlogd opens, data_dir/shards/predlog.events-<p>) before
// the server starts. The events look like `predlog demo credit`'s: 10 float
// features named as the credit model's columns, a float score, a label, a
// two-entry context map, a model ref with its artifact digest, a pipeline.
//
//   export_e2e --events=500000
//       in-process predlogd, then the CLI's own code (RunCli "export --all");
//   export_e2e --events=500000 --data_dir=/tmp/exp --fill_only
//       only writes the shards, for timing the real binaries:
//       predlogd --data_dir=/tmp/exp --grpc_listen=127.0.0.1:50077 --http_listen= &
//       time predlog --server=127.0.0.1:50077 export --all --out=/tmp/exp.jsonl
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/events.pb.h"
#include "services/cli/cli.h"
#include "services/server/server.h"
#include "storage/event_validation.h"
#include "storage/logging.h"
#include "storage/shard_store.h"
#include "storage/timestamps.h"
#include "tests/testing/temp_dir.h"

ABSL_FLAG(uint64_t, events, 500'000, "Prediction events in the log (spread over 4 shards).");
ABSL_FLAG(std::string, data_dir, "",
          "Where the shards go; empty: a temporary directory, removed at exit. An existing "
          "data_dir with shards is used as it is (not refilled).");
ABSL_FLAG(bool, fill_only, false, "Write the shards and exit (to time the real binaries).");
ABSL_FLAG(std::string, out_dir, "",
          "Directory of the export file; empty: a temporary directory (under $TMPDIR). "
          "/dev/shm takes the disk out of the measurement.");
ABSL_FLAG(bool, stream_only, false,
          "Only read the ExportTrail stream (no writer): the server and transport's share.");
ABSL_FLAG(bool, verify, false, "Also run `predlog verify` on the export and time it.");

namespace predlog::services {
namespace {

constexpr int kPartitions = 4;
constexpr const char* kColumns[] = {
    "income",       "debt_ratio",      "age",         "utilization", "late_payments_12m",
    "credit_lines", "months_employed", "loan_amount", "savings",     "inquiries_6m"};

std::string DemoEvent(uint64_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> unit(0, 1);
  predlog::v1::AuditEvent event;
  event.set_event_id(absl::StrFormat("%016x%016x", rng(), rng()));
  const absl::Time t = absl::FromUnixSeconds(1'700'000'000) + absl::Microseconds(n * 1237);
  storage::TimeToProto(t + absl::Microseconds(350), event.mutable_recorded_at());
  event.set_actor("demo:limits-api");
  event.set_schema_version(storage::kSchemaVersion);
  predlog::v1::PredictionLogged* p = event.mutable_prediction_logged();
  p->set_prediction_id(absl::StrFormat("p-%07d", n));
  p->set_subject_id(absl::StrFormat("cust-%05d", rng() % 20'000));
  storage::TimeToProto(t, p->mutable_served_at());
  p->set_service("limits-api");
  const bool canary = rng() % 10 == 0;
  p->mutable_model()->set_name("credit-default");
  p->mutable_model()->set_version(canary ? "v2" : "v1");
  p->mutable_model()->set_artifact_sha256(
      canary ? "b1946ac92492d2347c6235b4d2611184b1946ac92492d2347c6235b4d2611184"
             : "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592");
  p->mutable_pipeline()->set_name("credit-features");
  p->mutable_pipeline()->set_version("2024.06.1");
  for (const char* column : kColumns) {
    predlog::v1::Feature* input = p->add_inputs();
    input->set_name(column);
    // months_employed is missing for ~5% of rows, as in the demo data.
    if (std::string_view(column) == "months_employed" && rng() % 20 == 0) continue;
    input->set_float_value(unit(rng) * 1000);
  }
  const float score = unit(rng);
  p->mutable_output()->add_float_scores(score);
  p->mutable_output()->set_score_kind("probability_of_default");
  p->mutable_output()->set_label(score >= 0.5f ? "deny" : "approve");
  (*p->mutable_context())["route"] = "credit-limit";
  (*p->mutable_context())["arm"] = canary ? "canary" : "control";
  return event.SerializeAsString();
}

// Writes `events` predictions round-robin into the shards under `data_dir`.
void Fill(const std::string& data_dir, uint64_t events) {
  constexpr size_t kBatch = 1000;
  std::mt19937_64 rng(42);
  for (int p = 0; p < kPartitions; ++p) {
    storage::ShardOptions options;
    options.name = absl::StrCat("predlog.events-", p);
    options.dir = absl::StrCat(data_dir, "/shards/", options.name);
    auto shard = storage::ShardStore::Open(options);
    PREDLOG_CHECK(shard.ok()) << shard.status();
    if ((*shard)->Head().next_index > 0) continue;  // filled by an earlier run
    const uint64_t count = events / kPartitions + (static_cast<uint64_t>(p) < events % kPartitions);
    std::vector<std::string> payloads;
    std::vector<storage::SourceMessage> batch;
    for (uint64_t i = 0; i < count; i += kBatch) {
      payloads.clear();
      batch.clear();
      for (uint64_t j = i; j < std::min<uint64_t>(count, i + kBatch); ++j) {
        payloads.push_back(DemoEvent(j * kPartitions + static_cast<uint64_t>(p), rng));
      }
      for (size_t j = 0; j < payloads.size(); ++j) {
        batch.push_back({"export-bench", static_cast<int64_t>(i + j), payloads[j]});
      }
      auto applied = (*shard)->ApplyBatch(batch);
      PREDLOG_CHECK(applied.ok()) << applied.status();
    }
  }
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int Run() {
  const uint64_t events = absl::GetFlag(FLAGS_events);
  std::unique_ptr<testing::TempDir> temp;
  std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (data_dir.empty()) {
    temp = std::make_unique<testing::TempDir>();
    data_dir = temp->Sub("data");
  }
  auto start = std::chrono::steady_clock::now();
  Fill(data_dir, events);
  std::cerr << "filled " << data_dir << " in " << SecondsSince(start) << " s\n";
  if (absl::GetFlag(FLAGS_fill_only)) return 0;

  ServerOptions options;
  options.data_dir = data_dir;
  options.grpc_listen = "127.0.0.1:0";
  options.http_listen = "";
  options.partitions = kPartitions;
  auto server = Server::Start(options);
  PREDLOG_CHECK(server.ok()) << server.status();

  if (absl::GetFlag(FLAGS_stream_only)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    auto stub = predlog::v1::Audit::NewStub(grpc::CreateCustomChannel(
        (*server)->grpc_address(), grpc::InsecureChannelCredentials(), args));
    grpc::ClientContext context;
    predlog::v1::ExportTrailRequest request;
    request.set_all(true);
    start = std::chrono::steady_clock::now();
    auto stream = stub->ExportTrail(&context, request);
    predlog::v1::ExportBatch batch;
    uint64_t records = 0;
    while (stream->Read(&batch)) records += static_cast<uint64_t>(batch.records_size());
    const grpc::Status status = stream->Finish();
    PREDLOG_CHECK(status.ok()) << status.error_message();
    const double seconds = SecondsSince(start);
    std::cout << absl::StrFormat("stream only: %d records in %.3f s = %.0f records/s\n", records,
                                 seconds, static_cast<double>(records) / seconds);
    return 0;
  }

  testing::TempDir temp_out;
  const std::string out =
      (absl::GetFlag(FLAGS_out_dir).empty() ? temp_out.path() : absl::GetFlag(FLAGS_out_dir)) +
      "/export_e2e.jsonl";
  std::istringstream in;
  std::ostringstream stdout_text, stderr_text;
  start = std::chrono::steady_clock::now();
  const int rc = RunCli({"--server=" + (*server)->grpc_address(), "export", "--all",
                         "--format=jsonl", "--out=" + out},
                        in, stdout_text, stderr_text);
  const double seconds = SecondsSince(start);
  PREDLOG_CHECK(rc == kExitOk) << stderr_text.str();
  std::cout << stdout_text.str();
  std::cout << absl::StrFormat("export --all: %d events in %.3f s = %.0f events/s\n", events,
                               seconds, static_cast<double>(events) / seconds);
  if (absl::GetFlag(FLAGS_verify)) {
    std::ostringstream verify_out, verify_err;
    start = std::chrono::steady_clock::now();
    const int verified =
        RunCli({"verify", out, out + ".manifest.json"}, in, verify_out, verify_err);
    const double verify_seconds = SecondsSince(start);
    PREDLOG_CHECK(verified == kExitOk) << verify_out.str() << verify_err.str();
    std::cout << absl::StrFormat("verify: %.3f s = %.0f events/s\n", verify_seconds,
                                 static_cast<double>(events) / verify_seconds);
  }
  return 0;
}

}  // namespace
}  // namespace predlog::services

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return predlog::services::Run();
}
