// predlog case and demo: the case file for a disputed decision, and the credit demo.

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/cli/case_file.h"
#include "services/cli/cli_format.h"
#include "services/cli/cli_internal.h"
#include "services/cli/credit_demo.h"
#include "services/export/trail_export.h"
#include "storage/timestamps.h"

namespace predlog::services::cli_internal {

// ---------------------------------------------------------------- case, demo

// A case file's answers from predlogd over gRPC, one call each.
class Cli::GrpcCaseSources final : public CaseSources {
 public:
  explicit GrpcCaseSources(Cli* cli) : cli_(cli) {}

  absl::StatusOr<v1::PredictionRecord> GetPrediction(
      const v1::GetPredictionRequest& request) override {
    return Call(&v1::PredictionLog::Stub::GetPrediction,
                v1::PredictionLog::NewStub(cli_->Channel()), request, v1::PredictionRecord());
  }
  absl::StatusOr<v1::ModelRecord> GetModel(const v1::GetModelRequest& request) override {
    return Call(&v1::Registry::Stub::GetModel, v1::Registry::NewStub(cli_->Channel()), request,
                v1::ModelRecord());
  }
  absl::StatusOr<v1::Lineage> GetLineage(const v1::GetLineageRequest& request) override {
    return Call(&v1::Replay::Stub::GetLineage, v1::Replay::NewStub(cli_->Channel()), request,
                v1::Lineage());
  }
  absl::StatusOr<v1::RerunReport> Rerun(const v1::RerunRequest& request) override {
    return Call(&v1::Replay::Stub::Rerun, v1::Replay::NewStub(cli_->Channel()), request,
                v1::RerunReport());
  }
  absl::StatusOr<v1::EntityAtResponse> GetEntityAt(const v1::GetEntityAtRequest& request) override {
    return Call(&v1::Replay::Stub::GetEntityAt, v1::Replay::NewStub(cli_->Channel()), request,
                v1::EntityAtResponse());
  }
  absl::StatusOr<v1::ListPredictionsResponse> ListPredictions(
      const v1::ListPredictionsRequest& request) override {
    return Call(&v1::PredictionLog::Stub::ListPredictions,
                v1::PredictionLog::NewStub(cli_->Channel()), request,
                v1::ListPredictionsResponse());
  }
  absl::StatusOr<v1::ExportManifest> Export(const v1::ExportTrailRequest& request,
                                            const std::string& path) override {
    return cli_->ExportTo(request, path, ExportFormat::kJsonl, false);
  }

 private:
  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Call(grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                             Response*),
                                std::unique_ptr<Stub> stub, const Request& request,
                                Response response) {
    grpc::ClientContext context;
    cli_->SetDeadline(&context);
    const grpc::Status status = ((*stub).*method)(&context, request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return response;
  }

  Cli* const cli_;
};

int Cli::Case() {
  if (!args_.Has("out")) return Usage("--out is required");
  CaseOptions options;
  options.prediction_id = args_.positional[0];
  if (args_.Has("window-days") &&
      (!absl::SimpleAtoi(args_.Get("window-days"), &options.window_days) ||
       options.window_days <= 0)) {
    return Usage("--window-days must be a positive integer");
  }
  if (args_.Has("against")) {
    absl::StatusOr<std::pair<std::string, std::string>> ref =
        ParseModelRef(args_.Get("against"), "--against");
    if (!ref.ok()) return Usage(std::string(ref.status().message()));
    options.against.set_name(ref->first);
    options.against.set_version(ref->second);
  }
  options.entity_type = args_.Get("entity-type", "customer");
  options.built_from = server_;
  const std::string dir = args_.Get("out");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Usage(absl::StrCat("--out: cannot create ", dir, ": ", ec.message()));
  GrpcCaseSources sources(this);
  absl::StatusOr<CaseResult> result = WriteCaseFile(sources, options, dir);
  if (!result.ok()) {
    return CallFailed(grpc::Status(static_cast<grpc::StatusCode>(result.status().code()),
                                   std::string(result.status().message())));
  }
  if (json_) {
    out_ << ToJson(result->report) << "\n";
  } else {
    out_ << "case file for " << result->prediction_id << " in " << dir << "/ (summary.md first)\n";
    for (const auto& problem : result->problems) out_ << "  problem: " << problem << "\n";
  }
  return result->clean() ? kExitOk : kExitFailed;
}

int Cli::Demo() {
  if (args_.positional[0] != "credit") {
    return Usage(absl::StrCat("unknown demo '", args_.positional[0], "' (want credit)"));
  }
  CreditDemoOptions options;
  if (args_.Has("customers") && !absl::SimpleAtoi(args_.Get("customers"), &options.customers)) {
    return Usage("--customers must be an integer");
  }
  if (args_.Has("predictions") &&
      !absl::SimpleAtoi(args_.Get("predictions"), &options.predictions)) {
    return Usage("--predictions must be an integer");
  }
  if (args_.Has("seed") && !absl::SimpleAtoi(args_.Get("seed"), &options.seed)) {
    return Usage("--seed must be an integer");
  }
  if (args_.Has("server")) options.server_flag = "--server=" + server_;
  absl::StatusOr<CreditDemoResult> result = RunCreditDemo(Channel(), options, out_, err_);
  if (!result.ok()) {
    if (absl::IsInvalidArgument(result.status()))
      return Usage(std::string(result.status().message()));
    return CallFailed(grpc::Status(static_cast<grpc::StatusCode>(result.status().code()),
                                   std::string(result.status().message())));
  }
  return kExitOk;
}

}  // namespace predlog::services::cli_internal
