#include "services/cli/cli.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/cli/cli_format.h"
#include "services/cli/credit_demo.h"
#include "services/cli/registry_client.h"
#include "services/export/trail_export.h"
#include "storage/sha256.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services {
namespace {

namespace v1 = ::predlog::v1;

// Flags every subcommand takes.
const std::set<std::string> kGlobalFlags = {"server", "json", "timeout_seconds"};
// Flags without a value.
const std::set<std::string> kBoolFlags = {"json", "explain", "all"};

// A subcommand's parsed command line.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> flags;

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = flags.find(name);
    return it == flags.end() || it->second.empty() ? fallback : it->second.back();
  }
  const std::vector<std::string>& All(const std::string& name) const {
    static const std::vector<std::string> kNone;
    auto it = flags.find(name);
    return it == flags.end() ? kNone : it->second;
  }
};

// A usage error: exit 2 with this message.
struct UsageError {
  std::string message;
};

// `known`: every flag some subcommand takes; anything else is named as
// unknown before its value is looked for.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& raw,
                               const std::set<std::string>& known) {
  Args args;
  for (size_t i = 0; i < raw.size(); ++i) {
    const std::string& a = raw[i];
    if (!absl::StartsWith(a, "--") || a == "--") {
      args.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (known.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    } else if (kBoolFlags.count(name) > 0) {
      value = "true";
    } else if (i + 1 < raw.size()) {
      value = raw[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
    args.flags[name].push_back(value);
  }
  return args;
}

// One call's context: the server, output mode and streams.
class Cli {
 public:
  Cli(Args args, std::istream& in, std::ostream& out, std::ostream& err)
      : args_(std::move(args)), in_(in), out_(out), err_(err) {
    server_ = args_.Get("server");
    if (server_.empty()) {
      const char* env = std::getenv("PREDLOG_SERVER");
      server_ = env != nullptr && *env != '\0' ? env : "127.0.0.1:50051";
    }
    json_ = args_.Has("json");
    int timeout = 30;
    if (args_.Has("timeout_seconds") &&
        (!absl::SimpleAtoi(args_.Get("timeout_seconds"), &timeout) || timeout <= 0)) {
      bad_timeout_ = true;
    }
    timeout_ = std::chrono::seconds(timeout);
  }

  int Run(const std::string& command);
  // Every flag of every subcommand, and the global ones.
  static std::set<std::string> KnownFlags() {
    std::set<std::string> flags = kGlobalFlags;
    for (const auto& [name, command] : Commands())
      flags.insert(command.flags.begin(), command.flags.end());
    return flags;
  }

 private:
  struct Command {
    std::string usage;
    std::set<std::string> flags;
    size_t min_positional, max_positional;
    int (Cli::*run)();
  };
  static const std::map<std::string, Command>& Commands();

  std::shared_ptr<grpc::Channel> Channel() {
    if (channel_ == nullptr) {
      grpc::ChannelArguments channel_args;
      channel_args.SetMaxReceiveMessageSize(64 << 20);
      channel_ =
          grpc::CreateCustomChannel(server_, grpc::InsecureChannelCredentials(), channel_args);
    }
    return channel_;
  }
  void SetDeadline(grpc::ClientContext* context) const {
    context->set_deadline(std::chrono::system_clock::now() + timeout_);
  }
  // Reports a failed call; exit 1.
  int CallFailed(const grpc::Status& status) {
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      err_ << "predlog " << command_ << ": cannot reach predlogd at " << server_ << ": "
           << status.error_message() << "\n";
    } else {
      err_ << "predlog " << command_ << ": " << status.error_message() << "\n";
    }
    return kExitFailed;
  }
  int Usage(const std::string& message) {
    err_ << "predlog " << command_ << ": " << message << "\n";
    return kExitUsage;
  }
  // Parses --name as a time; nullopt (and a usage message) when bad.
  std::optional<absl::Time> TimeFlag(const std::string& name, bool* bad) {
    if (!args_.Has(name)) return std::nullopt;
    absl::StatusOr<absl::Time> t = ParseTime(args_.Get(name));
    if (!t.ok()) {
      Usage(absl::StrCat("--", name, ": ", t.status().message()));
      *bad = true;
      return std::nullopt;
    }
    return *t;
  }
  void PrintJson(const google::protobuf::Message& message) { out_ << ToJson(message) << "\n"; }

  int Log();
  int Get();
  int Trail();
  int Replay();
  int Trace();
  int State();
  int Models();
  int Model();
  int ModelRegister();
  int ModelDeploy();
  int Export();
  int Verify();
  int Status();
  int Case();
  int Demo();
  // Streams `request`'s export into `path` and its manifest beside it;
  // returns the manifest, or an error message.
  absl::StatusOr<v1::ExportManifest> ExportTo(const v1::ExportTrailRequest& request,
                                              const std::string& path, ExportFormat format,
                                              bool show_progress);

  void PrintRerun(const v1::RerunReport& report);

  Args args_;
  std::istream& in_;
  std::ostream& out_;
  std::ostream& err_;
  std::string server_;
  std::string command_;
  bool json_ = false;
  bool bad_timeout_ = false;
  std::chrono::seconds timeout_{30};
  std::shared_ptr<grpc::Channel> channel_;
};

const std::map<std::string, Cli::Command>& Cli::Commands() {
  static const auto* commands = new std::map<std::string, Command>{
      {"log",
       {"log < predictions.jsonl   (LogRequest or PredictionLogged per line, protobuf JSON)",
        {},
        0,
        0,
        &Cli::Log}},
      {"get", {"get PREDICTION_ID", {}, 1, 1, &Cli::Get}},
      {"trail",
       {"trail --subject S [--from T] [--to T] [--model name@version]   (or --model alone)",
        {"subject", "from", "to", "model", "limit"},
        0,
        0,
        &Cli::Trail}},
      {"replay",
       {"replay PREDICTION_ID [--explain] [--against name@version]",
        {"explain", "against", "subject"},
        1,
        1,
        &Cli::Replay}},
      {"trace", {"trace TRACE_ID", {}, 1, 1, &Cli::Trace}},
      {"state",
       {"state --entity TYPE/ID [--at TIME | --position N]",
        {"entity", "at", "position"},
        0,
        0,
        &Cli::State}},
      {"models", {"models [--name NAME]", {"name"}, 0, 0, &Cli::Models}},
      {"model",
       {"model register --name N --version V --file F [--framework xgboost] "
        "[--pipeline name@version] [--code-commit C] [--dataset name@version=sha256]... "
        "[--hyperparameter k=v]... [--library k=v]... [--feature-names a,b,...] "
        "[--description D]\n"
        "  model deploy --route R --model name@version [--traffic 1.0] [--reason TEXT]",
        {"name", "version", "file", "framework", "pipeline", "code-commit", "dataset",
         "hyperparameter", "library", "feature-names", "description", "route", "model", "traffic",
         "reason", "actor"},
        1,
        1,
        &Cli::Model}},
      {"export",
       {"export (--subject S | --model name@version | --all) [--from T] [--to T] "
        "--format jsonl|csv --out FILE   (writes FILE.manifest.json beside it)",
        {"subject", "model", "all", "from", "to", "format", "out"},
        0,
        0,
        &Cli::Export}},
      {"verify", {"verify FILE MANIFEST   (offline)", {}, 2, 2, &Cli::Verify}},
      {"status", {"status", {}, 0, 0, &Cli::Status}},
      {"case",
       {"case PREDICTION_ID --out DIR [--against name@version] [--entity-type customer] "
        "[--window-days 30]",
        {"out", "against", "entity-type", "window-days"},
        1,
        1,
        &Cli::Case}},
      {"demo",
       {"demo credit [--customers 1000] [--predictions 20000] [--seed 1]",
        {"customers", "predictions", "seed"},
        1,
        1,
        &Cli::Demo}},
  };
  return *commands;
}

int Cli::Run(const std::string& command) {
  command_ = command;
  auto it = Commands().find(command);
  if (it == Commands().end()) {
    std::vector<std::string> names;
    for (const auto& [name, c] : Commands()) names.push_back(name);
    err_ << "predlog: unknown subcommand '" << command << "' (want one of "
         << absl::StrJoin(names, ", ") << ")\n";
    return kExitUsage;
  }
  const Command& c = it->second;
  for (const auto& [name, values] : args_.flags) {
    if (kGlobalFlags.count(name) == 0 && c.flags.count(name) == 0) {
      return Usage(absl::StrCat("unknown flag --", name, "; usage: predlog ", c.usage));
    }
  }
  if (bad_timeout_) return Usage("--timeout_seconds must be a positive integer");
  if (args_.positional.size() < c.min_positional || args_.positional.size() > c.max_positional) {
    return Usage(absl::StrCat("usage: predlog ", c.usage));
  }
  return (this->*c.run)();
}

// ---------------------------------------------------------------- log, get

int Cli::Log() {
  auto stub = v1::PredictionLog::NewStub(Channel());
  grpc::ClientContext context;
  auto stream = stub->LogStream(&context);
  int failed = 0, line_number = 0, sent = 0;
  std::string line;
  while (std::getline(in_, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    v1::LogRequest request;
    google::protobuf::util::JsonParseOptions options;
    // A line is a LogRequest, or (for convenience) a bare PredictionLogged.
    bool parsed = google::protobuf::util::JsonStringToMessage(line, &request, options).ok() &&
                  request.has_prediction();
    if (!parsed) {
      request.Clear();
      const auto status =
          google::protobuf::util::JsonStringToMessage(line, request.mutable_prediction(), options);
      if (!status.ok()) {
        err_ << "predlog log: line " << line_number
             << ": not a LogRequest or PredictionLogged in JSON: " << status.message() << "\n";
        ++failed;
        continue;
      }
    }
    if (!stream->Write(request)) break;
    ++sent;
  }
  stream->WritesDone();
  v1::LogReceipt receipt;
  int received = 0;
  Table table({"OUTCOME", "PREDICTION", "POSITION", "LEAF", "REASON"});
  while (stream->Read(&receipt)) {
    ++received;
    if (receipt.error_code() != 0) ++failed;
    if (json_) {
      PrintJson(receipt);
      continue;
    }
    const std::string outcome = receipt.error_code() != 0
                                    ? absl::StrCat("ERROR(", receipt.error_code(), ")")
                                    : v1::LogReceipt::Outcome_Name(receipt.outcome());
    table.AddRow({outcome, receipt.prediction_id(),
                  receipt.position().shard().empty()
                      ? receipt.shard()
                      : absl::StrCat(receipt.position().shard(), "#", receipt.position().index()),
                  receipt.leaf_sha256().substr(0, 16), receipt.reason()});
  }
  if (!json_ && table.rows() > 0) table.Print(out_);
  const grpc::Status status = stream->Finish();
  if (!status.ok()) return CallFailed(status);
  if (received != sent) {
    err_ << "predlog log: " << sent - received << " requests got no receipt\n";
    return kExitFailed;
  }
  return failed == 0 ? kExitOk : kExitFailed;
}

int Cli::Get() {
  auto stub = v1::PredictionLog::NewStub(Channel());
  v1::GetPredictionRequest request;
  request.set_prediction_id(args_.positional[0]);
  v1::PredictionRecord record;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->GetPrediction(&context, request, &record);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(record);
    return kExitOk;
  }
  const v1::AuditEvent& e = record.event();
  const v1::PredictionLogged& p = e.prediction_logged();
  Table fields({"FIELD", "VALUE"});
  fields.AddRow({"prediction", p.prediction_id()});
  fields.AddRow({"subject", p.subject_id()});
  fields.AddRow({"served_at", IsoTime(p.served_at())});
  fields.AddRow({"recorded_at", IsoTime(e.recorded_at())});
  fields.AddRow({"actor", e.actor()});
  fields.AddRow({"service", p.service()});
  fields.AddRow({"model", absl::StrCat(p.model().name(), "@", p.model().version())});
  if (!p.model().artifact_sha256().empty())
    fields.AddRow({"artifact", p.model().artifact_sha256()});
  if (!p.pipeline().name().empty()) {
    fields.AddRow({"pipeline", absl::StrCat(p.pipeline().name(), "@", p.pipeline().version())});
  }
  fields.AddRow({"output", OutputText(p.output())});
  if (!p.trace_id().empty()) fields.AddRow({"trace", p.trace_id()});
  if (p.parent_prediction_ids_size() > 0) {
    fields.AddRow({"parents", absl::StrJoin(p.parent_prediction_ids(), ", ")});
  }
  for (const auto& [k, v] : p.context()) fields.AddRow({absl::StrCat("context.", k), v});
  fields.AddRow(
      {"position", absl::StrCat(record.position().shard(), "#", record.position().index())});
  fields.AddRow(
      {"source", absl::StrCat(record.source().incarnation(), " partition ",
                              record.source().partition(), " offset ", record.source().offset())});
  fields.AddRow({"leaf_sha256", record.leaf_sha256()});
  fields.Print(out_);
  out_ << "\n";
  Table inputs({"INPUT", "VALUE"});
  for (const v1::Feature& f : p.inputs()) inputs.AddRow({f.name(), FeatureValue(f)});
  inputs.Print(out_);
  return kExitOk;
}

// ---------------------------------------------------------------- trail

int Cli::Trail() {
  if (!args_.Has("subject") && !args_.Has("model")) {
    return Usage("--subject (or --model name@version) is required");
  }
  bool bad = false;
  std::optional<absl::Time> from = TimeFlag("from", &bad), to = TimeFlag("to", &bad);
  if (bad) return kExitUsage;
  std::optional<std::pair<std::string, std::string>> model;
  if (args_.Has("model")) {
    absl::StatusOr<std::pair<std::string, std::string>> parsed =
        ParseModelRef(args_.Get("model"), "--model");
    if (!parsed.ok()) return Usage(std::string(parsed.status().message()));
    model = *parsed;
  }
  int limit = 0;
  if (args_.Has("limit") && (!absl::SimpleAtoi(args_.Get("limit"), &limit) || limit <= 0)) {
    return Usage("--limit must be a positive integer");
  }
  auto stub = v1::PredictionLog::NewStub(Channel());
  v1::ListPredictionsRequest request;
  if (args_.Has("subject")) {
    request.set_subject_id(args_.Get("subject"));
  } else {
    request.mutable_model()->set_name(model->first);
    request.mutable_model()->set_version(model->second);
  }
  if (from) storage::TimeToProto(*from, request.mutable_served_from());
  if (to) storage::TimeToProto(*to, request.mutable_served_to());
  request.set_page_size(1000);
  Table table({"SERVED_AT", "PREDICTION", "SUBJECT", "MODEL", "OUTPUT", "POSITION"});
  int shown = 0;
  do {
    v1::ListPredictionsResponse page;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = stub->ListPredictions(&context, request, &page);
    if (!status.ok()) return CallFailed(status);
    for (const v1::PredictionRecord& record : page.records()) {
      const v1::PredictionLogged& p = record.event().prediction_logged();
      // With both --subject and --model, the model narrows the subject's trail.
      if (model && args_.Has("subject") &&
          (p.model().name() != model->first || p.model().version() != model->second)) {
        continue;
      }
      if (limit > 0 && shown >= limit) break;
      ++shown;
      if (json_) {
        PrintJson(record);
        continue;
      }
      table.AddRow({IsoTime(p.served_at()), p.prediction_id(), p.subject_id(),
                    absl::StrCat(p.model().name(), "@", p.model().version()),
                    OutputText(p.output()),
                    absl::StrCat(record.position().shard(), "#", record.position().index())});
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && (limit == 0 || shown < limit));
  if (!json_) {
    if (table.rows() == 0) {
      err_ << "predlog trail: no predictions match\n";
      return kExitFailed;
    }
    table.Print(out_);
  }
  return shown > 0 ? kExitOk : kExitFailed;
}

// ---------------------------------------------------------------- replay, trace

void Cli::PrintRerun(const v1::RerunReport& r) {
  out_ << "prediction   " << r.prediction_id() << "  (" << r.position().shard() << "#"
       << r.position().index() << ")\n";
  out_ << "model        " << r.model().name() << "@" << r.model().version() << "  " << r.framework()
       << " " << r.runtime_version() << "\n";
  out_ << "artifact     sha256:" << r.artifact_sha256() << "  "
       << (r.artifact_verified() ? "verified" : "NOT VERIFIED") << "\n";
  out_ << "recorded     " << OutputText(r.recorded_output()) << "\n";
  out_ << "reproduced   " << OutputText(r.reproduced_output()) << "\n";
  out_ << "match        "
       << (r.exact_match() ? "exact (bit for bit)"
                           : absl::StrCat("NO: max abs diff ", r.max_abs_diff()))
       << "\n";
  out_ << "pipeline     " << r.prediction_pipeline().name() << "@"
       << r.prediction_pipeline().version() << "  (trained with " << r.training_pipeline().name()
       << "@" << r.training_pipeline().version() << ")" << (r.pipeline_skew() ? "  SKEW" : "")
       << "\n";
  if (r.runtime_version_skew()) {
    out_ << "runtime      SKEW: trained with " << r.training_runtime_version() << ", re-run with "
         << r.runtime_version() << "\n";
  }
  for (const std::string& f : r.findings()) out_ << "finding      " << f << "\n";
  if (r.has_explanation()) {
    const v1::Explanation& e = r.explanation();
    out_ << "\nwhy: contributions to the margin " << e.margin() << " (base value " << e.bias()
         << "), largest first\n";
    double scale = 0;
    size_t name_width = 0, value_width = 0;
    for (const auto& c : e.contributions()) {
      scale = std::max(scale, std::fabs(c.contribution()));
      name_width = std::max(name_width, c.feature().name().size());
      value_width = std::max(value_width, FeatureValue(c.feature()).size());
    }
    for (const auto& c : e.contributions()) {
      out_ << BarRow(c.feature().name(), FeatureValue(c.feature()), c.contribution(), scale,
                     name_width, value_width)
           << "\n";
    }
  }
  if (r.has_counterfactual()) {
    const v1::Counterfactual& c = r.counterfactual();
    std::vector<std::string> deltas;
    for (double d : c.score_deltas()) deltas.push_back(absl::StrFormat("%+.6f", d));
    out_ << "\ncounterfactual " << c.model().name() << "@" << c.model().version() << " says "
         << OutputText(c.output()) << "  (delta " << absl::StrJoin(deltas, ", ") << ")\n";
  }
}

int Cli::Replay() {
  v1::RerunRequest request;
  request.set_prediction_id(args_.positional[0]);
  request.set_subject_id(args_.Get("subject"));
  request.set_explain(args_.Has("explain"));
  if (args_.Has("against")) {
    absl::StatusOr<std::pair<std::string, std::string>> against =
        ParseModelRef(args_.Get("against"), "--against");
    if (!against.ok()) return Usage(std::string(against.status().message()));
    request.mutable_against()->set_name(against->first);
    request.mutable_against()->set_version(against->second);
  }
  auto stub = v1::Replay::NewStub(Channel());
  v1::RerunReport report;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->Rerun(&context, request, &report);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(report);
  } else {
    PrintRerun(report);
  }
  // A rerun that does not reproduce is a failed verification.
  return report.exact_match() ? kExitOk : kExitFailed;
}

int Cli::Trace() {
  v1::RerunTraceRequest request;
  request.set_trace_id(args_.positional[0]);
  auto stub = v1::Replay::NewStub(Channel());
  v1::RerunTraceReport report;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->RerunTrace(&context, request, &report);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(report);
  } else {
    Table table({"STEP", "PREDICTION", "MODEL", "RECORDED", "REPRODUCED", "MATCH"});
    for (int i = 0; i < report.steps_size(); ++i) {
      const v1::RerunReport& s = report.steps(i);
      table.AddRow({absl::StrCat(i + 1), s.prediction_id(),
                    absl::StrCat(s.model().name(), "@", s.model().version()),
                    OutputText(s.recorded_output()), OutputText(s.reproduced_output()),
                    s.exact_match() ? "exact"
                    : s.reproduced_output().float_scores().empty()
                        ? "CANNOT RE-RUN"
                        : absl::StrCat("DIVERGES ", s.max_abs_diff())});
    }
    table.Print(out_);
    if (report.first_divergent_step() >= 0) {
      const v1::RerunReport& s = report.steps(report.first_divergent_step());
      out_ << "\nfirst divergent step: " << report.first_divergent_step() + 1 << " ("
           << s.prediction_id() << ")\n";
      for (const std::string& f : s.findings()) out_ << "  " << f << "\n";
    } else {
      out_ << "\nevery step reproduces exactly\n";
    }
  }
  return report.first_divergent_step() < 0 ? kExitOk : kExitFailed;
}

// ---------------------------------------------------------------- state

int Cli::State() {
  const std::string entity = args_.Get("entity");
  const size_t slash = entity.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == entity.size()) {
    return Usage("--entity: want TYPE/ID, e.g. customer/c-1042");
  }
  v1::GetEntityAtRequest request;
  request.set_entity_type(entity.substr(0, slash));
  request.set_entity_id(entity.substr(slash + 1));
  if (args_.Has("at") && args_.Has("position")) return Usage("give --at or --position, not both");
  bool bad = false;
  if (std::optional<absl::Time> at = TimeFlag("at", &bad); at) {
    storage::TimeToProto(*at, request.mutable_as_of()->mutable_time());
  }
  if (bad) return kExitUsage;
  if (args_.Has("position")) {
    uint64_t position = 0;
    if (!absl::SimpleAtoi(args_.Get("position"), &position)) {
      return Usage("--position must be a record count (an index in the entity's shard)");
    }
    request.mutable_as_of()->set_index(position);
  }
  auto stub = v1::Replay::NewStub(Channel());
  v1::EntityAtResponse response;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->GetEntityAt(&context, request, &response);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(response);
  } else {
    out_ << entity << " as of " << (args_.Has("at") ? args_.Get("at") : "now") << " ("
         << response.cut().shard() << " after " << response.cut().index() << " records; from "
         << (response.snapshot_index() > 0 ? absl::StrCat("snapshot ", response.snapshot_index())
                                           : std::string("the start"))
         << " + " << response.records_folded() << " records folded)\n";
    if (!response.exists()) {
      out_ << (response.state().deleted() ? "deleted" : "did not exist") << "\n";
    } else {
      Table table({"FIELD", "VALUE"});
      std::map<std::string, std::string> sorted;
      for (const auto& [k, v] : response.state().fields()) sorted[k] = ValueText(v);
      for (const auto& [k, v] : sorted) table.AddRow({k, v});
      table.Print(out_);
      out_ << "(last changed by record " << response.state().last_changed_index() << ")\n";
    }
  }
  return response.exists() ? kExitOk : kExitFailed;
}

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
  if (sub == "register") return ModelRegister();
  if (sub == "deploy") return ModelDeploy();
  return Usage(absl::StrCat("unknown model subcommand '", sub, "' (want register or deploy)"));
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

// ---------------------------------------------------------------- export, verify, status

int Cli::Export() {
  const int filters = args_.Has("subject") + args_.Has("model") + args_.Has("all");
  if (filters != 1) return Usage("give exactly one of --subject, --model, --all");
  if (!args_.Has("out")) return Usage("--out is required");
  absl::StatusOr<ExportFormat> format = ParseExportFormat(args_.Get("format", "jsonl"));
  if (!format.ok()) return Usage(absl::StrCat("--format: ", format.status().message()));
  v1::ExportTrailRequest request;
  if (args_.Has("subject")) request.set_subject_id(args_.Get("subject"));
  if (args_.Has("all")) request.set_all(true);
  if (args_.Has("model")) {
    absl::StatusOr<std::pair<std::string, std::string>> model =
        ParseModelRef(args_.Get("model"), "--model");
    if (!model.ok()) return Usage(std::string(model.status().message()));
    request.mutable_model()->set_name(model->first);
    request.mutable_model()->set_version(model->second);
  }
  bool bad = false;
  if (std::optional<absl::Time> t = TimeFlag("from", &bad); t) {
    storage::TimeToProto(*t, request.mutable_from());
  }
  if (std::optional<absl::Time> t = TimeFlag("to", &bad); t) {
    storage::TimeToProto(*t, request.mutable_to());
  }
  if (bad) return kExitUsage;

  const std::string path = args_.Get("out");
  absl::StatusOr<v1::ExportManifest> written = ExportTo(request, path, *format, true);
  if (!written.ok()) {
    if (absl::IsUnavailable(written.status()) || absl::IsDeadlineExceeded(written.status())) {
      return CallFailed(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(written.status().message())));
    }
    err_ << "predlog export: " << written.status().message() << "\n";
    return kExitFailed;
  }
  const std::string manifest_path = path + ".manifest.json";
  if (json_) {
    PrintJson(*written);
  } else {
    out_ << "exported " << written->record_count() << " records to " << path << " ("
         << written->file_bytes() << " bytes, sha256:" << written->file_sha256() << ")\n"
         << "manifest " << manifest_path << "\n";
    for (const auto& shard : written->shards()) {
      out_ << "  " << shard.shard() << ": " << shard.records() << " records in "
           << shard.ranges_size() << " contiguous range" << (shard.ranges_size() == 1 ? "" : "s")
           << "\n";
    }
  }
  return kExitOk;
}

absl::StatusOr<v1::ExportManifest> Cli::ExportTo(const v1::ExportTrailRequest& request,
                                                 const std::string& path, ExportFormat format,
                                                 bool show_progress) {
  ASSIGN_OR_RETURN(std::unique_ptr<TrailWriter> writer, TrailWriter::Create(path, format));
  // The expected total for the progress bar, when cheap to know.
  uint64_t total = 0;
  if (show_progress && request.all() && isatty(STDERR_FILENO) == 1) {
    auto audit = v1::Audit::NewStub(Channel());
    v1::StatusResponse shards;
    grpc::ClientContext context;
    SetDeadline(&context);
    if (audit->GetStatus(&context, v1::GetStatusRequest(), &shards).ok()) {
      for (const auto& s : shards.shards()) total += s.records();
    }
  }
  auto stub = v1::Audit::NewStub(Channel());
  grpc::ClientContext context;  // no deadline: an export takes as long as it takes
  auto stream = stub->ExportTrail(&context, request);
  Progress progress("exporting", show_progress ? total : 0);
  // This thread only reads the stream; the writer checks and renders batches
  // on its own threads meanwhile.
  v1::ExportBatch batch;
  while (stream->Read(&batch)) {
    if (absl::Status added = writer->AddBatch(std::move(batch)); !added.ok()) {
      context.TryCancel();
      stream->Finish();
      return added;
    }
    batch.Clear();
    if (show_progress) progress.Update(writer->records());
  }
  progress.Done();
  const grpc::Status status = stream->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  v1::ExportManifest manifest;
  *manifest.mutable_filter() = request;
  storage::TimeToProto(absl::Now(), manifest.mutable_created_at());
  const char* user = std::getenv("USER");
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  manifest.set_exported_by(absl::StrCat(user != nullptr ? user : "unknown", "@", host));
  manifest.set_server(server_);
  return writer->Finish(manifest, path + ".manifest.json");
}

int Cli::Verify() {
  absl::StatusOr<ExportVerification> result =
      VerifyExport(args_.positional[0], args_.positional[1]);
  if (!result.ok()) {
    err_ << "predlog verify: " << result.status().message() << "\n";
    return kExitFailed;
  }
  if (result->ok) {
    out_ << "OK: " << result->records_checked
         << " records verified (leaf hashes, chain continuity, manifest ranges, file digest)\n";
    return kExitOk;
  }
  out_ << "FAILED: " << result->failure << "\n";
  return kExitFailed;
}

int Cli::Status() {
  auto stub = v1::Audit::NewStub(Channel());
  v1::StatusResponse response;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->GetStatus(&context, v1::GetStatusRequest(), &response);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(response);
    return kExitOk;
  }
  Table table({"SHARD", "RECORDS", "LAST_OFFSET", "LAG", "SNAPSHOTS", "LATEST_SNAPSHOT", "REJECTED",
               "CONFLICTS", "GAPS", "CHAIN_HEAD"});
  for (const v1::ShardStatus& s : response.shards()) {
    const bool has_source = !s.last_source().incarnation().empty();
    table.AddRow({s.shard(), absl::StrCat(s.records()),
                  has_source ? absl::StrCat(s.last_source().offset()) : "-",
                  s.folded_elsewhere()   ? "elsewhere"
                  : s.consumer_lag() < 0 ? "?"
                                         : absl::StrCat(s.consumer_lag()),
                  absl::StrCat(s.snapshots_size()),
                  s.snapshots().empty()
                      ? "-"
                      : absl::StrCat("#", s.snapshots().rbegin()->index(), " ",
                                     IsoTime(s.snapshots().rbegin()->created_at())),
                  absl::StrCat(s.rejected()), absl::StrCat(s.conflicts()), absl::StrCat(s.gaps()),
                  s.chain_head_sha256().substr(0, 16)});
  }
  table.Print(out_);
  return kExitOk;
}

// ---------------------------------------------------------------- case, demo

namespace {

std::string PrettyJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

absl::Status WriteFile(const std::string& path, absl::string_view content) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(content.data(), static_cast<std::streamsize>(content.size()));
  file.close();
  if (!file) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

int Cli::Case() {
  if (!args_.Has("out")) return Usage("--out is required");
  int window_days = 30;
  if (args_.Has("window-days") &&
      (!absl::SimpleAtoi(args_.Get("window-days"), &window_days) || window_days <= 0)) {
    return Usage("--window-days must be a positive integer");
  }
  v1::ModelRef against;
  if (args_.Has("against")) {
    absl::StatusOr<std::pair<std::string, std::string>> ref =
        ParseModelRef(args_.Get("against"), "--against");
    if (!ref.ok()) return Usage(std::string(ref.status().message()));
    against.set_name(ref->first);
    against.set_version(ref->second);
  }
  const std::string dir = args_.Get("out");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Usage(absl::StrCat("--out: cannot create ", dir, ": ", ec.message()));
  const std::string entity_type = args_.Get("entity-type", "customer");
  std::vector<std::string> problems;  // what could not be established
  auto file = [&](const std::string& name, absl::string_view content) {
    if (absl::Status s = WriteFile(dir + "/" + name, content); !s.ok()) {
      problems.push_back(std::string(s.message()));
    }
  };

  // 1. The event.
  auto log = v1::PredictionLog::NewStub(Channel());
  v1::GetPredictionRequest get;
  get.set_prediction_id(args_.positional[0]);
  v1::PredictionRecord record;
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = log->GetPrediction(&context, get, &record);
    if (!status.ok()) return CallFailed(status);
  }
  const v1::PredictionLogged& p = record.event().prediction_logged();
  file("event.json", PrettyJson(record));

  // 2. Lineage: model -> artifact -> datasets, commit, hyperparameters.
  auto registry = v1::Registry::NewStub(Channel());
  v1::GetModelRequest get_model;
  get_model.set_name(p.model().name());
  get_model.set_version(p.model().version());
  v1::ModelRecord model;
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = registry->GetModel(&context, get_model, &model);
    if (status.ok()) {
      file("lineage.json", PrettyJson(model));
    } else {
      problems.push_back(absl::StrCat("lineage: ", status.error_message()));
    }
  }

  // 3. The re-run, explained, with the counterfactual when asked.
  auto replay = v1::Replay::NewStub(Channel());
  v1::RerunRequest rerun;
  rerun.set_prediction_id(p.prediction_id());
  rerun.set_subject_id(p.subject_id());
  rerun.set_explain(true);
  *rerun.mutable_against() = against;
  v1::RerunReport report;
  bool reran = false;
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = replay->Rerun(&context, rerun, &report);
    if (status.ok()) {
      reran = true;
      file("rerun.json", PrettyJson(report));
    } else {
      problems.push_back(absl::StrCat("re-run: ", status.error_message()));
    }
  }

  // 4. The customer record as it was at decision time, and now.
  auto entity_at = [&](bool at_decision, v1::EntityAtResponse* response) {
    v1::GetEntityAtRequest request;
    request.set_entity_type(entity_type);
    request.set_entity_id(p.subject_id());
    if (at_decision) *request.mutable_as_of()->mutable_time() = p.served_at();
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = replay->GetEntityAt(&context, request, response);
    if (!status.ok()) problems.push_back(absl::StrCat("entity: ", status.error_message()));
    return status.ok();
  };
  v1::EntityAtResponse then, now;
  if (entity_at(true, &then)) file("record_at_decision.json", PrettyJson(then));
  if (entity_at(false, &now)) file("record_now.json", PrettyJson(now));

  // 5. The customer's trail around the decision.
  v1::ListPredictionsRequest trail_request;
  trail_request.set_subject_id(p.subject_id());
  const absl::Time served = storage::TimeFromProto(p.served_at());
  storage::TimeToProto(served - absl::Hours(24) * window_days, trail_request.mutable_served_from());
  storage::TimeToProto(served + absl::Hours(24) * window_days, trail_request.mutable_served_to());
  trail_request.set_page_size(1000);
  std::vector<v1::PredictionRecord> trail;
  do {
    v1::ListPredictionsResponse page;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = log->ListPredictions(&context, trail_request, &page);
    if (!status.ok()) {
      problems.push_back(absl::StrCat("trail: ", status.error_message()));
      break;
    }
    for (const auto& r : page.records()) trail.push_back(r);
    trail_request.set_page_token(page.next_page_token());
  } while (!trail_request.page_token().empty());
  {
    std::string lines;
    for (const auto& r : trail) absl::StrAppend(&lines, ToJson(r), "\n");
    file("trail.jsonl", lines);
  }

  // 6. The customer's full trail as a verifiable export.
  v1::ExportTrailRequest export_request;
  export_request.set_subject_id(p.subject_id());
  const std::string export_path = dir + "/export.jsonl";
  absl::StatusOr<v1::ExportManifest> exported =
      ExportTo(export_request, export_path, ExportFormat::kJsonl, false);
  std::string verification;
  if (!exported.ok()) {
    problems.push_back(absl::StrCat("export: ", exported.status().message()));
  } else {
    absl::StatusOr<ExportVerification> verified =
        VerifyExport(export_path, export_path + ".manifest.json");
    verification = !verified.ok() ? std::string(verified.status().message())
                   : verified->ok
                       ? absl::StrCat("OK, ", verified->records_checked, " records verified")
                       : absl::StrCat("FAILED: ", verified->failure);
    if (!verified.ok() || !verified->ok) problems.push_back("export verification: " + verification);
  }

  // 7. summary.md, for a person to read first.
  std::ostringstream md;
  md << "# Case file: prediction " << p.prediction_id() << "\n\n";
  md << "| | |\n|---|---|\n";
  md << "| Subject | " << p.subject_id() << " |\n";
  md << "| Decision | " << OutputText(p.output()) << " |\n";
  md << "| Served at | " << IsoTime(p.served_at()) << " by " << p.service() << " |\n";
  md << "| Model | " << p.model().name() << "@" << p.model().version() << " |\n";
  md << "| Recorded at | " << record.position().shard() << "#" << record.position().index()
     << ", leaf sha256 `" << record.leaf_sha256() << "` |\n";
  md << "| Case built | " << IsoTime(absl::Now()) << " from " << server_ << " |\n\n";
  md << "## Lineage\n\n";
  if (model.has_registration()) {
    const v1::ModelRegistered& r = model.registration();
    md << "- Model " << r.model().name() << "@" << r.model().version() << " (" << r.framework()
       << "), artifact sha256 `" << r.model().artifact_sha256() << "` (" << r.artifact_size_bytes()
       << " bytes)\n";
    for (const auto& d : r.provenance().datasets()) {
      md << "- Trained on dataset " << d.name() << "@" << d.version() << ", digest `" << d.digest()
         << "`\n";
    }
    md << "- Code commit `" << r.provenance().code_commit() << "`, feature pipeline "
       << r.provenance().pipeline().name() << "@" << r.provenance().pipeline().version() << "\n";
    std::map<std::string, std::string> hp(r.provenance().hyperparameters().begin(),
                                          r.provenance().hyperparameters().end());
    for (const auto& [k, v] : hp) md << "- Hyperparameter " << k << " = " << v << "\n";
    std::map<std::string, std::string> libs(r.provenance().library_versions().begin(),
                                            r.provenance().library_versions().end());
    for (const auto& [k, v] : libs) md << "- Trained with " << k << " " << v << "\n";
  } else {
    md << "The model is not registered: no lineage.\n";
  }
  md << "\n## Re-run\n\n";
  if (reran) {
    md << "- Recorded output: " << OutputText(report.recorded_output()) << "\n";
    md << "- Reproduced output: " << OutputText(report.reproduced_output()) << " — "
       << (report.exact_match()
               ? "**exact match, bit for bit**"
               : absl::StrCat("**does not match** (max abs diff ", report.max_abs_diff(), ")"))
       << "\n";
    md << "- Artifact " << (report.artifact_verified() ? "verified" : "NOT verified")
       << " against its digest; pipeline skew: " << (report.pipeline_skew() ? "yes" : "no")
       << "; runtime " << report.framework() << " " << report.runtime_version()
       << (report.runtime_version_skew() ? " (differs from training)" : "") << "\n";
    for (const auto& f : report.findings()) md << "- Finding: " << f << "\n";
    md << "\n### Why: contributions to the model's margin (largest first)\n\n";
    md << "| Input | Value | Contribution |\n|---|---|---|\n";
    for (const auto& c : report.explanation().contributions()) {
      md << "| " << c.feature().name() << " | " << FeatureValue(c.feature()) << " | "
         << absl::StrFormat("%+.4f", c.contribution()) << " |\n";
    }
    md << "\nBase value " << report.explanation().bias() << ", margin "
       << report.explanation().margin() << ".\n";
    if (report.has_counterfactual()) {
      md << "\n### Counterfactual\n\n"
         << report.counterfactual().model().name() << "@"
         << report.counterfactual().model().version() << " would have said "
         << OutputText(report.counterfactual().output()) << ".\n";
    }
  } else {
    md << "The prediction could not be re-run (see Problems).\n";
  }
  md << "\n## The " << entity_type << " record at decision time\n\n";
  if (then.exists()) {
    md << "As of " << IsoTime(p.served_at()) << " (" << then.cut().shard() << " after "
       << then.cut().index() << " records):\n\n| Field | Then | Now |\n|---|---|---|\n";
    std::map<std::string, std::string> fields;
    for (const auto& [k, v] : then.state().fields()) fields[k] = ValueText(v);
    for (const auto& [k, v] : now.state().fields()) fields.emplace(k, "-");
    for (const auto& [k, v] : fields) {
      auto it = now.state().fields().find(k);
      md << "| " << k << " | " << v << " | "
         << (it == now.state().fields().end() ? std::string("-") : ValueText(it->second)) << " |\n";
    }
  } else {
    md << "No " << entity_type << "/" << p.subject_id() << " record existed at decision time.\n";
  }
  md << "\n## Trail (±" << window_days << " days)\n\n| Served at | Prediction | Model | Output |\n"
     << "|---|---|---|---|\n";
  for (const auto& r : trail) {
    const auto& t = r.event().prediction_logged();
    md << "| " << IsoTime(t.served_at()) << " | " << t.prediction_id()
       << (t.prediction_id() == p.prediction_id() ? " **(this one)**" : "") << " | "
       << t.model().name() << "@" << t.model().version() << " | " << OutputText(t.output())
       << " |\n";
  }
  md << "\n## Verifiable export\n\n`export.jsonl` with `export.jsonl.manifest.json`: the "
     << "subject's whole trail with leaf hashes and chain values. Check it offline with\n\n"
     << "    predlog verify export.jsonl export.jsonl.manifest.json\n\nResult when the case "
     << "was built: " << (verification.empty() ? "not exported" : verification) << "\n";
  if (!problems.empty()) {
    md << "\n## Problems\n\n";
    for (const auto& problem : problems) md << "- " << problem << "\n";
  }
  file("summary.md", md.str());
  if (json_) {
    out_ << ToJson(report) << "\n";
  } else {
    out_ << "case file for " << p.prediction_id() << " in " << dir << "/ (summary.md first)\n";
    for (const auto& problem : problems) out_ << "  problem: " << problem << "\n";
  }
  return problems.empty() && reran && report.exact_match() ? kExitOk : kExitFailed;
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

}  // namespace

int RunCli(const std::vector<std::string>& raw, std::istream& in, std::ostream& out,
           std::ostream& err) {
  absl::StatusOr<Args> args = ParseArgs(raw, Cli::KnownFlags());
  if (!args.ok()) {
    err << "predlog: " << args.status().message() << "\n";
    return kExitUsage;
  }
  if (args->positional.empty()) {
    err << "predlog: missing subcommand; one of log, get, trail, replay, trace, state, models, "
           "model, export, verify, status, case, demo (--server or $PREDLOG_SERVER picks "
           "predlogd; --json for scripts)\n";
    return kExitUsage;
  }
  const std::string command = args->positional.front();
  args->positional.erase(args->positional.begin());
  Cli cli(std::move(*args), in, out, err);
  return cli.Run(command);
}

}  // namespace predlog::services
