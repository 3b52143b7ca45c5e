// The predlog side of bench/compare's reads: one client, one call at a time
// (as a support tool or a Python script would ask), against a predlogd on
// loopback already filled by loadgen (predictions "p<n>" of subjects
// "s<n % subjects>"). Prints the p50/p99 latency (µs) of GetPrediction by id
// and of ListPredictions for a subject's trail, and of gRPC's own health
// check (grpc.health.v1.Health/Check: no work behind it), the floor any call
// through this gRPC client and server pays on this machine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "bench/measure.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/service.grpc.pb.h"

using ::predlog::bench::Percentile;

ABSL_FLAG(std::string, target, "", "predlogd's gRPC address (required).");
ABSL_FLAG(int64_t, events, 100000, "Predictions loaded (ids p0 .. p<events-1>).");
ABSL_FLAG(int64_t, subjects, 50000, "Subjects they were spread over.");
ABSL_FLAG(int, queries, 20000, "Queries of each kind.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_target), grpc::InsecureChannelCredentials());
  auto stub = predlog::v1::PredictionLog::NewStub(channel);
  const int64_t events = absl::GetFlag(FLAGS_events);
  const int64_t subjects = std::min(events, absl::GetFlag(FLAGS_subjects));
  // The health check through a generic stub: its request (an empty service
  // name) serializes to no bytes. Polled on this thread, as a blocking call is.
  grpc::GenericStub health(channel);
  grpc::CompletionQueue cq;
  std::vector<double> health_us;
  for (int q = 0; q < absl::GetFlag(FLAGS_queries); ++q) {
    grpc::ClientContext context;
    grpc::ByteBuffer request, response;
    grpc::Slice empty;
    request = grpc::ByteBuffer(&empty, 1);
    grpc::Status status;
    const auto start = std::chrono::steady_clock::now();
    auto call = health.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &cq);
    call->StartCall();
    call->Finish(&response, &status, &health);
    void* tag = nullptr;
    bool ok = false;
    if (!cq.Next(&tag, &ok) || !ok || !status.ok()) {
      std::cerr << "grpc_reads: health check: " << status.error_message() << "\n";
      return 1;
    }
    health_us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::mt19937_64 rng(42);
  std::vector<double> get_us, trail_us;
  size_t trail_rows = 0;
  for (int q = 0; q < absl::GetFlag(FLAGS_queries); ++q) {
    const int64_t n = static_cast<int64_t>(rng() % static_cast<uint64_t>(events));
    predlog::v1::GetPredictionRequest get;
    get.set_prediction_id(absl::StrCat("p", n));
    predlog::v1::PredictionRecord record;
    auto start = std::chrono::steady_clock::now();
    grpc::ClientContext get_context;
    grpc::Status status = stub->GetPrediction(&get_context, get, &record);
    get_us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
    if (!status.ok()) {
      std::cerr << "grpc_reads: get p" << n << ": " << status.error_message() << "\n";
      return 1;
    }
    predlog::v1::ListPredictionsRequest list;
    list.set_subject_id(absl::StrCat("s", n % subjects));
    predlog::v1::ListPredictionsResponse trail;
    start = std::chrono::steady_clock::now();
    grpc::ClientContext list_context;
    status = stub->ListPredictions(&list_context, list, &trail);
    trail_us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
    if (!status.ok()) {
      std::cerr << "grpc_reads: trail s" << n % subjects << ": " << status.error_message() << "\n";
      return 1;
    }
    trail_rows += static_cast<size_t>(trail.records_size());
  }
  std::printf(
      "get_p50_us=%.0f get_p99_us=%.0f trail_p50_us=%.0f trail_p99_us=%.0f health_p50_us=%.0f "
      "health_p99_us=%.0f rows_per_trail=%.1f\n",
      Percentile(get_us, 0.5), Percentile(get_us, 0.99), Percentile(trail_us, 0.5),
      Percentile(trail_us, 0.99), Percentile(health_us, 0.5), Percentile(health_us, 0.99),
      static_cast<double>(trail_rows) / static_cast<double>(trail_us.size()));
  return 0;
}
