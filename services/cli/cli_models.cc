// predlog models and model register|deploy: the model registry.

#include <fstream>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "services/cli/cli_format.h"
#include "services/cli/cli_internal.h"
#include "services/cli/registry_client.h"
#include "storage/sha256.h"
#include "storage/timestamps.h"

namespace predlog::services::cli_internal {

// ---------------------------------------------------------------- models

int Cli::Models() {
  auto stub = v1::Registry::NewStub(Channel());
  v1::ListModelsRequest request;
  request.set_name(args_.Get("name"));
  v1::ListModelsResponse response;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->ListModels(&context, request, &response);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(response);
    return kExitOk;
  }
  Table table({"MODEL", "FRAMEWORK", "ARTIFACT", "BYTES", "PIPELINE", "COMMIT", "DEPLOYED"});
  for (const v1::ModelRecord& m : response.models()) {
    const v1::ModelRegistered& r = m.registration();
    std::vector<std::string> deployed;
    for (const v1::ModelDeployed& d : m.deployments()) {
      deployed.push_back(
          absl::StrCat(d.route(), " ", std::lround(d.traffic_fraction() * 100), "%"));
    }
    table.AddRow({absl::StrCat(r.model().name(), "@", r.model().version()), r.framework(),
                  r.model().artifact_sha256().substr(0, 16), absl::StrCat(r.artifact_size_bytes()),
                  r.provenance().pipeline().name().empty()
                      ? "-"
                      : absl::StrCat(r.provenance().pipeline().name(), "@",
                                     r.provenance().pipeline().version()),
                  r.provenance().code_commit().empty() ? "-" : r.provenance().code_commit(),
                  deployed.empty() ? "-" : absl::StrJoin(deployed, ", ")});
  }
  table.Print(out_);
  return kExitOk;
}

int Cli::Model() {
  const std::string& sub = args_.positional[0];
  if (sub == "get") {
    if (args_.positional.size() != 2) return Usage("model get takes one name@version");
    return ModelGet();
  }
  if (args_.positional.size() != 1) return Usage(absl::StrCat("model ", sub, " takes flags only"));
  if (sub == "register") return ModelRegister();
  if (sub == "deploy") return ModelDeploy();
  return Usage(absl::StrCat("unknown model subcommand '", sub, "' (want register, deploy or get)"));
}

int Cli::ModelRegister() {
  for (const char* required : {"name", "version", "file"}) {
    if (!args_.Has(required)) return Usage(absl::StrCat("--", required, " is required"));
  }
  v1::RegisterModelRequest first;
  first.set_actor(args_.Get("actor"));
  v1::ModelRegistered* m = first.mutable_metadata();
  m->mutable_model()->set_name(args_.Get("name"));
  m->mutable_model()->set_version(args_.Get("version"));
  m->set_framework(args_.Get("framework", "xgboost"));
  m->set_description(args_.Get("description"));
  v1::TrainingProvenance* p = m->mutable_provenance();
  p->set_code_commit(args_.Get("code-commit"));
  if (args_.Has("pipeline")) {
    absl::StatusOr<std::pair<std::string, std::string>> pipeline =
        ParseModelRef(args_.Get("pipeline"), "--pipeline");
    if (!pipeline.ok()) return Usage(std::string(pipeline.status().message()));
    p->mutable_pipeline()->set_name(pipeline->first);
    p->mutable_pipeline()->set_version(pipeline->second);
  }
  for (const std::string& d : args_.All("dataset")) {
    std::pair<std::string, std::string> ref_digest = absl::StrSplit(d, absl::MaxSplits('=', 1));
    absl::StatusOr<std::pair<std::string, std::string>> ref =
        ParseModelRef(ref_digest.first, "--dataset");
    if (!ref.ok())
      return Usage(std::string(ref.status().message()) + " (want name@version=sha256)");
    v1::DatasetRef* dataset = p->add_datasets();
    dataset->set_name(ref->first);
    dataset->set_version(ref->second);
    dataset->set_digest(ref_digest.second);
  }
  for (const auto& [flag, map] : {std::make_pair("hyperparameter", p->mutable_hyperparameters()),
                                  std::make_pair("library", p->mutable_library_versions())}) {
    for (const std::string& kv : args_.All(flag)) {
      std::pair<std::string, std::string> parts = absl::StrSplit(kv, absl::MaxSplits('=', 1));
      if (parts.first.empty() || kv.find('=') == std::string::npos) {
        return Usage(absl::StrCat("--", flag, ": '", kv, "' is not key=value"));
      }
      (*map)[parts.first] = parts.second;
    }
  }
  for (const std::string& text : args_.All("metric")) {
    // name=value[@dataset@version]
    std::pair<std::string, std::string> name_rest = absl::StrSplit(text, absl::MaxSplits('=', 1));
    std::pair<std::string, std::string> value_dataset =
        absl::StrSplit(name_rest.second, absl::MaxSplits('@', 1));
    v1::EvaluationMetric* metric = m->add_metrics();
    double value = 0;
    if (name_rest.first.empty() || text.find('=') == std::string::npos ||
        !absl::SimpleAtod(value_dataset.first, &value)) {
      return Usage(absl::StrCat("--metric: '", text, "' is not name=value[@dataset@version]"));
    }
    metric->set_name(name_rest.first);
    metric->set_value(value);
    if (!value_dataset.second.empty()) {
      absl::StatusOr<std::pair<std::string, std::string>> ref =
          ParseModelRef(value_dataset.second, "--metric's dataset");
      if (!ref.ok()) return Usage(std::string(ref.status().message()));
      metric->mutable_dataset()->set_name(ref->first);
      metric->mutable_dataset()->set_version(ref->second);
    }
  }
  bool bad_time = false;
  if (std::optional<absl::Time> started = TimeFlag("training-started", &bad_time)) {
    storage::TimeToProto(*started, m->mutable_training_started_at());
  }
  if (bad_time) return kExitUsage;
  if (args_.Has("training-duration")) {
    absl::Duration duration;
    if (!absl::ParseDuration(args_.Get("training-duration"), &duration) ||
        duration < absl::ZeroDuration()) {
      return Usage("--training-duration: want a duration such as 1h30m or 95s");
    }
    m->set_training_duration_ms(absl::ToInt64Milliseconds(duration));
  }
  m->set_external_run_id(args_.Get("run-id"));
  if (args_.Has("feature-names")) {
    for (absl::string_view name : absl::StrSplit(args_.Get("feature-names"), ',')) {
      p->add_feature_names(std::string(name));
    }
  }
  std::ifstream file(args_.Get("file"), std::ios::binary);
  if (!file) return Usage(absl::StrCat("--file: cannot open ", args_.Get("file")));
  // The digest goes with the metadata, so the server refuses an upload that
  // arrives other than it left (end-to-end integrity, not only TCP's).
  {
    storage::Sha256Hasher hasher;
    std::string buffer(1 << 20, '\0');
    while (file) {
      file.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      hasher.Update(absl::string_view(buffer.data(), static_cast<size_t>(file.gcount())));
    }
    if (file.bad()) return Usage(absl::StrCat("--file: cannot read ", args_.Get("file")));
    m->mutable_model()->set_artifact_sha256(storage::ToHex(hasher.Finish()));
    file.clear();
    file.seekg(0);
  }
  auto stub = v1::Registry::NewStub(Channel());
  v1::RegisterModelResponse response;
  grpc::ClientContext context;
  // Models can be hundreds of MB: no deadline unless one is asked for.
  if (args_.Has("timeout_seconds")) SetDeadline(&context);
  const grpc::Status status = UploadModel(stub.get(), &context, first, file, &response);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(response);
  } else {
    out_ << v1::LogReceipt::Outcome_Name(response.receipt().outcome()) << " "
         << response.model().name() << "@" << response.model().version()
         << "  artifact sha256:" << response.model().artifact_sha256() << " ("
         << response.artifact_size_bytes() << " bytes)  at "
         << response.receipt().position().shard() << "#" << response.receipt().position().index()
         << "\n";
  }
  return kExitOk;
}

int Cli::ModelDeploy() {
  for (const char* required : {"route", "model"}) {
    if (!args_.Has(required)) return Usage(absl::StrCat("--", required, " is required"));
  }
  absl::StatusOr<std::pair<std::string, std::string>> model =
      ParseModelRef(args_.Get("model"), "--model");
  if (!model.ok()) return Usage(std::string(model.status().message()));
  double traffic = 1.0;
  if (args_.Has("traffic") &&
      (!absl::SimpleAtod(args_.Get("traffic"), &traffic) || traffic < 0 || traffic > 1)) {
    return Usage("--traffic must be a fraction in [0, 1]");
  }
  v1::DeployModelRequest request;
  request.set_actor(args_.Get("actor"));
  v1::ModelDeployed* d = request.mutable_deployment();
  d->set_route(args_.Get("route"));
  d->mutable_model()->set_name(model->first);
  d->mutable_model()->set_version(model->second);
  d->set_traffic_fraction(traffic);
  d->set_reason(args_.Get("reason"));
  auto stub = v1::Registry::NewStub(Channel());
  v1::RegistryReceipt receipt;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->DeployModel(&context, request, &receipt);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(receipt);
  } else {
    out_ << v1::LogReceipt::Outcome_Name(receipt.outcome()) << " " << model->first << "@"
         << model->second << " on " << d->route() << " at " << traffic * 100 << "% traffic  ("
         << receipt.position().shard() << "#" << receipt.position().index() << ")\n";
  }
  return kExitOk;
}

int Cli::ModelGet() {
  absl::StatusOr<std::pair<std::string, std::string>> ref =
      ParseModelRef(args_.positional[1], "model");
  if (!ref.ok()) return Usage(std::string(ref.status().message()));
  v1::GetModelRequest request;
  request.set_name(ref->first);
  request.set_version(ref->second);
  auto stub = v1::Registry::NewStub(Channel());
  v1::ModelRecord record;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->GetModel(&context, request, &record);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(record);
    return kExitOk;
  }
  const v1::ModelRegistered& r = record.registration();
  const v1::TrainingProvenance& p = r.provenance();
  auto line = [&](absl::string_view label, absl::string_view value) {
    if (!value.empty()) out_ << label << value << "\n";
  };
  out_ << "model " << r.model().name() << "@" << r.model().version() << "\n";
  line("  framework:          ", r.framework());
  line("  artifact:           ", absl::StrCat("sha256:", r.model().artifact_sha256(), " (",
                                              r.artifact_size_bytes(), " bytes)"));
  line("  description:        ", r.description());
  if (p.has_pipeline()) {
    line("  pipeline:           ", absl::StrCat(p.pipeline().name(), "@", p.pipeline().version()));
  }
  line("  code commit:        ", p.code_commit());
  for (const v1::DatasetRef& d : p.datasets()) {
    line("  trained on:         ",
         absl::StrCat(d.name(), "@", d.version(),
                      d.digest().empty() ? "" : absl::StrCat("  sha256:", d.digest())));
  }
  for (const v1::EvaluationMetric& metric : r.metrics()) {
    line("  metric:             ",
         absl::StrCat(metric.name(), " = ", metric.value(),
                      metric.has_dataset() ? absl::StrCat("  on ", metric.dataset().name(), "@",
                                                          metric.dataset().version())
                                           : ""));
  }
  if (r.has_training_started_at()) {
    line("  training started:   ", IsoTime(r.training_started_at()));
  }
  if (r.training_duration_ms() > 0) {
    line("  training duration:  ",
         absl::FormatDuration(absl::Milliseconds(r.training_duration_ms())));
  }
  line("  run id:             ", r.external_run_id());
  for (const v1::ModelDeployed& d : record.deployments()) {
    line("  deployed:           ",
         absl::StrCat(d.route(), " ", std::lround(d.traffic_fraction() * 100), "%"));
  }
  line("  record:             ",
       absl::StrCat(record.position().shard(), "#", record.position().index(), "  leaf ",
                    record.leaf_sha256()));
  return kExitOk;
}

}  // namespace predlog::services::cli_internal
