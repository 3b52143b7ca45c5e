#include "services/cli/case_file.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"
#include "services/cli/cli_format.h"
#include "services/export/trail_export.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services {
namespace {

namespace v1 = ::predlog::v1;

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

absl::StatusOr<CaseResult> WriteCaseFile(CaseSources& sources, const CaseOptions& options,
                                         const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  CaseResult result;
  result.prediction_id = options.prediction_id;
  std::vector<std::string>& problems = result.problems;  // what could not be established
  auto file = [&](const std::string& name, absl::string_view content) {
    if (absl::Status s = WriteFile(dir + "/" + name, content); !s.ok()) {
      problems.push_back(std::string(s.message()));
    }
  };

  // 1. The event.
  v1::GetPredictionRequest get;
  get.set_prediction_id(options.prediction_id);
  ASSIGN_OR_RETURN(const v1::PredictionRecord record, sources.GetPrediction(get));
  const v1::PredictionLogged& p = record.event().prediction_logged();
  file("event.json", PrettyJson(record));

  // 2. Lineage: model -> artifact -> datasets, commit, hyperparameters.
  v1::GetModelRequest get_model;
  get_model.set_name(p.model().name());
  get_model.set_version(p.model().version());
  v1::ModelRecord model;
  if (absl::StatusOr<v1::ModelRecord> got = sources.GetModel(get_model); got.ok()) {
    model = *std::move(got);
    file("model.json", PrettyJson(model));
  } else {
    problems.push_back(absl::StrCat("model: ", got.status().message()));
  }
  // ... and the whole graph upstream: the data the model was trained on,
  // where that came from, the pipelines, parent predictions.
  v1::Lineage lineage;
  bool has_lineage = false;
  {
    v1::GetLineageRequest request;
    request.set_prediction_id(p.prediction_id());
    request.set_subject_id(p.subject_id());
    // The registry as it stood when the decision was logged.
    *request.mutable_as_of()->mutable_after() = record.position();
    if (absl::StatusOr<v1::Lineage> got = sources.GetLineage(request); got.ok()) {
      lineage = *std::move(got);
      has_lineage = true;
      file("lineage.json", PrettyJson(lineage));
      std::ostringstream dot;
      PrintLineageDot(lineage, dot);
      file("lineage.dot", dot.str());
    } else {
      problems.push_back(absl::StrCat("lineage: ", got.status().message()));
    }
  }

  // 3. The re-run, explained, with the counterfactual when asked.
  v1::RerunRequest rerun;
  rerun.set_prediction_id(p.prediction_id());
  rerun.set_subject_id(p.subject_id());
  rerun.set_explain(true);
  *rerun.mutable_against() = options.against;
  v1::RerunReport& report = result.report;
  bool& reran = result.reran;
  if (absl::StatusOr<v1::RerunReport> got = sources.Rerun(rerun); got.ok()) {
    report = *std::move(got);
    reran = true;
    file("rerun.json", PrettyJson(report));
  } else {
    problems.push_back(absl::StrCat("re-run: ", got.status().message()));
  }

  // 4. The customer record as it was at decision time, and now.
  auto entity_at = [&](bool at_decision, v1::EntityAtResponse* response) {
    v1::GetEntityAtRequest request;
    request.set_entity_type(options.entity_type);
    request.set_entity_id(p.subject_id());
    // Right after the prediction's own record: what predlog held for the
    // customer when the decision was logged, whatever the serving clock said.
    if (at_decision) *request.mutable_as_of()->mutable_after() = record.position();
    absl::StatusOr<v1::EntityAtResponse> got = sources.GetEntityAt(request);
    if (!got.ok()) {
      problems.push_back(absl::StrCat("entity: ", got.status().message()));
      return false;
    }
    *response = *std::move(got);
    return true;
  };
  v1::EntityAtResponse then, now;
  if (entity_at(true, &then)) file("record_at_decision.json", PrettyJson(then));
  if (entity_at(false, &now)) file("record_now.json", PrettyJson(now));

  // 5. The customer's trail around the decision.
  v1::ListPredictionsRequest trail_request;
  trail_request.set_subject_id(p.subject_id());
  const absl::Time served = storage::TimeFromProto(p.served_at());
  storage::TimeToProto(served - absl::Hours(24) * options.window_days,
                       trail_request.mutable_served_from());
  storage::TimeToProto(served + absl::Hours(24) * options.window_days,
                       trail_request.mutable_served_to());
  trail_request.set_page_size(1000);
  std::vector<v1::PredictionRecord> trail;
  do {
    absl::StatusOr<v1::ListPredictionsResponse> page = sources.ListPredictions(trail_request);
    if (!page.ok()) {
      problems.push_back(absl::StrCat("trail: ", page.status().message()));
      break;
    }
    for (const auto& r : page->records()) trail.push_back(r);
    trail_request.set_page_token(page->next_page_token());
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
  absl::StatusOr<v1::ExportManifest> exported = sources.Export(export_request, export_path);
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
  md << "| Logged by | " << ActorText(record.event()) << " |\n";
  md << "| Model | " << p.model().name() << "@" << p.model().version() << " |\n";
  md << "| Recorded at | " << record.position().shard() << "#" << record.position().index()
     << ", leaf sha256 `" << record.leaf_sha256() << "` |\n";
  md << "| Case built | " << IsoTime(absl::Now()) << " from " << options.built_from << " |\n\n";
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
  if (has_lineage) {
    md << "\nThe whole graph upstream, with the registry as it stood when the decision was "
          "logged (`lineage.json`, `lineage.dot` for Graphviz):\n\n```\n";
    PrintLineageTree(lineage, /*downstream=*/false, md);
    md << "```\n";
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
       << " against its digest; pipeline skew: "
       << (report.prediction_pipeline_unrecorded() ? "unknown (no pipeline recorded)"
           : report.training_pipeline().name().empty() &&
                   report.training_pipeline().version().empty()
               ? "unknown (training pipeline not recorded)"
           : report.pipeline_skew() ? "yes"
                                    : "no")
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
  md << "\n## The " << options.entity_type << " record at decision time\n\n";
  if (then.exists()) {
    md << "As logged with the decision (" << then.cut().shard() << " after " << then.cut().index()
       << " records):\n\n| Field | Then | Now |\n|---|---|---|\n";
    std::map<std::string, std::string> fields;
    for (const auto& [k, v] : then.state().fields()) fields[k] = ValueText(v);
    for (const auto& [k, v] : now.state().fields()) fields.emplace(k, "-");
    for (const auto& [k, v] : fields) {
      auto it = now.state().fields().find(k);
      md << "| " << k << " | " << v << " | "
         << (it == now.state().fields().end() ? std::string("-") : ValueText(it->second)) << " |\n";
    }
  } else {
    md << "No " << options.entity_type << "/" << p.subject_id()
       << " record existed at decision time.\n";
  }
  md << "\n## Trail (±" << options.window_days
     << " days)\n\n| Served at | Prediction | Model | Output |\n"
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
  return result;
}

}  // namespace predlog::services
