// predlog replay, trace and state: re-running decisions and state as of a moment.

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "services/cli/cli_format.h"
#include "services/cli/cli_internal.h"
#include "storage/timestamps.h"

namespace predlog::services::cli_internal {

// ---------------------------------------------------------------- replay, trace

void Cli::PrintRerun(const v1::RerunReport& r) {
  // Stored strings go through Printable: a newline in one must not forge a line.
  out_ << "prediction   " << Printable(r.prediction_id()) << "  (" << r.position().shard() << "#"
       << r.position().index() << ")\n";
  out_ << "model        " << Printable(r.model().name()) << "@" << Printable(r.model().version())
       << "  " << Printable(r.framework()) << " " << r.runtime_version() << "\n";
  out_ << "artifact     sha256:" << r.artifact_sha256() << "  "
       << (r.artifact_verified()
               ? absl::StrCat("verified (bytes hashed ", IsoTime(r.artifact_hashed_at()),
                              ", file unchanged since)")
               : std::string("NOT VERIFIED"))
       << "\n";
  out_ << "recorded     " << OutputText(r.recorded_output()) << "\n";
  out_ << "reproduced   " << OutputText(r.reproduced_output()) << "\n";
  out_ << "match        "
       << (r.exact_match() ? "exact (bit for bit)"
                           : absl::StrCat("NO: max abs diff ", r.max_abs_diff()))
       << "\n";
  if (r.input_names_mismatch()) {
    out_ << "inputs       MISMATCH: " << Printable(r.input_mismatch()) << "\n";
  }
  out_ << "pipeline     "
       << (r.prediction_pipeline_unrecorded()
               ? std::string("not recorded")
               : Printable(absl::StrCat(r.prediction_pipeline().name(), "@",
                                        r.prediction_pipeline().version())))
       << "  (trained with "
       << Printable(
              absl::StrCat(r.training_pipeline().name(), "@", r.training_pipeline().version()))
       << ")" << (r.pipeline_skew() ? "  SKEW" : "") << "\n";
  if (r.runtime_version_skew()) {
    out_ << "runtime      SKEW: trained with " << r.training_runtime_version() << ", re-run with "
         << r.runtime_version() << "\n";
  }
  for (const std::string& f : r.findings()) out_ << "finding      " << Printable(f) << "\n";
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
  // A rerun that does not reproduce, or reproduces on inputs named otherwise
  // than the model's features, is a failed verification.
  return report.exact_match() && !report.input_names_mismatch() ? kExitOk : kExitFailed;
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
  if (absl::Status s = AsOfFlags(/*allow_position=*/true, request.mutable_as_of()); !s.ok()) {
    return Usage(std::string(s.message()));
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
    const std::string as_of = args_.Has("at")      ? args_.Get("at")
                              : args_.Has("after") ? absl::StrCat("after ", args_.Get("after"))
                              : args_.Has("position")
                                  ? absl::StrCat("position ", args_.Get("position"))
                                  : std::string("now");
    out_ << entity << " as of " << as_of << " (" << response.cut().shard() << " after "
         << response.cut().index() << " records; from "
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

}  // namespace predlog::services::cli_internal
