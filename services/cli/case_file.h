// The case file for a disputed decision: everything a support engineer or an
// auditor needs about one prediction, as files in a directory, summary.md
// first. `predlog case` builds it over gRPC; the support page builds the
// same one from predlogd's service classes (services/web/), so the two are
// one code path that differs only in where the answers come from.
//
// The files: event.json (the record), model.json (the model's registration),
// lineage.json and lineage.dot (the graph upstream, the registry as it stood
// when the decision was logged), rerun.json (the re-run, explained, with the
// counterfactual when asked), record_at_decision.json and record_now.json
// (the customer record), trail.jsonl (the customer's predictions within
// window_days of the decision), export.jsonl + export.jsonl.manifest.json
// (the customer's whole trail as a verifiable export, checked with
// VerifyExport before it is kept), and summary.md.
#ifndef PREDLOG_SERVICES_CLI_CASE_FILE_H_
#define PREDLOG_SERVICES_CLI_CASE_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "predlog/v1/audit.pb.h"
#include "predlog/v1/registry.pb.h"
#include "predlog/v1/replay.pb.h"
#include "predlog/v1/service.pb.h"

namespace predlog::services {

// Where a case file's answers come from: one method per call it makes, each
// answering as the gRPC method of its name does (its status codes too).
// A caller's implementation checks, per call, what its caller may read.
class CaseSources {
 public:
  virtual ~CaseSources() = default;
  virtual absl::StatusOr<predlog::v1::PredictionRecord> GetPrediction(
      const predlog::v1::GetPredictionRequest& request) = 0;
  virtual absl::StatusOr<predlog::v1::ModelRecord> GetModel(
      const predlog::v1::GetModelRequest& request) = 0;
  virtual absl::StatusOr<predlog::v1::Lineage> GetLineage(
      const predlog::v1::GetLineageRequest& request) = 0;
  virtual absl::StatusOr<predlog::v1::RerunReport> Rerun(
      const predlog::v1::RerunRequest& request) = 0;
  virtual absl::StatusOr<predlog::v1::EntityAtResponse> GetEntityAt(
      const predlog::v1::GetEntityAtRequest& request) = 0;
  virtual absl::StatusOr<predlog::v1::ListPredictionsResponse> ListPredictions(
      const predlog::v1::ListPredictionsRequest& request) = 0;
  // Writes the export of `request` to `path` (JSON lines) and its manifest to
  // `path` + ".manifest.json", as TrailWriter does (services/export/).
  virtual absl::StatusOr<predlog::v1::ExportManifest> Export(
      const predlog::v1::ExportTrailRequest& request, const std::string& path) = 0;
};

struct CaseOptions {
  std::string prediction_id;  // required
  // A registered model version to re-run the decision with too (the
  // counterfactual); empty name: none.
  predlog::v1::ModelRef against;
  // The trail kept is the customer's predictions served within this many
  // days of the decision, either side. > 0.
  int window_days = 30;
  // The type of the customer's record (EntityChanged.entity_type); its id is
  // the prediction's subject_id.
  std::string entity_type = "customer";
  // Where the answers came from, as summary.md says ("127.0.0.1:50051").
  std::string built_from;
};

struct CaseResult {
  std::string prediction_id;
  // What could not be established, one line each (a call refused, a file
  // not written, an export that does not verify); summary.md lists them.
  std::vector<std::string> problems;
  bool reran = false;
  predlog::v1::RerunReport report;  // when reran
  // Whether the case is clean: no problems, and the decision re-runs to
  // exactly what was recorded.
  bool clean() const {
    return problems.empty() && reran && report.exact_match() && !report.input_names_mismatch();
  }
};

// Writes the case file of options.prediction_id into `dir` (created if
// missing). Fails only when the prediction itself cannot be read (its
// GetPrediction status: NOT_FOUND for an unknown id), or for a `dir` that
// cannot be created (INTERNAL naming it); anything else that fails is a
// problem in the result and in summary.md. Uses `sources` from this thread.
absl::StatusOr<CaseResult> WriteCaseFile(CaseSources& sources, const CaseOptions& options,
                                         const std::string& dir);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_CLI_CASE_FILE_H_
