#include "replay/replayer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::replay {
namespace {

using ::predlog::v1::Feature;
using ::predlog::v1::PredictionLogged;
using ::predlog::v1::PredictionOutput;
using ::predlog::v1::RerunReport;

// Most trace members RerunTrace reads (a chain is a handful of models; this
// only bounds a misused trace id).
constexpr size_t kMaxTraceSteps = 1000;

std::string ModelName(const predlog::v1::ModelRef& ref) {
  return absl::StrCat(ref.name(), "@", ref.version());
}

// The recorded inputs as one dense row, in recorded order. Tree runtimes take
// numbers: a string or bytes input cannot be fed to them.
absl::StatusOr<std::vector<float>> DenseRow(const PredictionLogged& p) {
  std::vector<float> row;
  row.reserve(p.inputs_size());
  for (const Feature& f : p.inputs()) {
    switch (f.value_case()) {
      case Feature::kFloatValue:
        row.push_back(f.float_value());
        break;
      case Feature::kDoubleValue:
        row.push_back(static_cast<float>(f.double_value()));
        break;
      case Feature::kInt64Value:
        row.push_back(static_cast<float>(f.int64_value()));
        break;
      case Feature::kBoolValue:
        row.push_back(f.bool_value() ? 1.0f : 0.0f);
        break;
      case Feature::VALUE_NOT_SET:
        row.push_back(std::nanf(""));  // recorded as missing
        break;
      case Feature::kStringValue:
      case Feature::kBytesValue:
        return absl::FailedPreconditionError(
            absl::StrCat("input ", f.name(), " of prediction ", p.prediction_id(),
                         " is a string; the model takes numbers (encode it in the pipeline)"));
    }
  }
  return row;
}

bool SameBits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
// |a - b|, infinite when either is NaN and they are not both NaN (a NaN
// difference would otherwise vanish in std::max).
double AbsDiff(double a, double b) {
  if (std::isnan(a) && std::isnan(b)) return 0;
  const double d = std::fabs(a - b);
  return std::isnan(d) ? INFINITY : d;
}
bool SameBits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Compares reproduced float scores with the recorded output, in the recorded
// float type.
void Compare(const std::vector<float>& reproduced, const PredictionOutput& recorded,
             RerunReport* report) {
  double max_diff = 0;
  bool exact = false;
  if (recorded.float_scores_size() > 0) {
    exact = recorded.float_scores_size() == static_cast<int>(reproduced.size());
    for (size_t i = 0; i < reproduced.size() && i < size_t(recorded.float_scores_size()); ++i) {
      exact = exact && SameBits(reproduced[i], recorded.float_scores(i));
      max_diff = std::max(max_diff, AbsDiff(reproduced[i], recorded.float_scores(i)));
    }
  } else if (recorded.double_scores_size() > 0) {
    exact = recorded.double_scores_size() == static_cast<int>(reproduced.size());
    for (size_t i = 0; i < reproduced.size() && i < size_t(recorded.double_scores_size()); ++i) {
      exact = exact && SameBits(double(reproduced[i]), recorded.double_scores(i));
      max_diff = std::max(max_diff, AbsDiff(reproduced[i], recorded.double_scores(i)));
    }
  } else {
    report->add_findings("the prediction recorded no scores, so there is nothing to compare");
  }
  if (recorded.float_scores_size() + recorded.double_scores_size() > 0 &&
      static_cast<size_t>(recorded.float_scores_size() + recorded.double_scores_size()) !=
          reproduced.size()) {
    report->add_findings(
        absl::StrCat("the model gives ", reproduced.size(), " scores but the prediction recorded ",
                     recorded.float_scores_size() + recorded.double_scores_size()));
  }
  report->set_exact_match(exact);
  report->set_max_abs_diff(max_diff);
}

bool SamePipeline(const predlog::v1::PipelineRef& a, const predlog::v1::PipelineRef& b) {
  return a.name() == b.name() && a.version() == b.version() &&
         (a.code_digest().empty() || b.code_digest().empty() || a.code_digest() == b.code_digest());
}

std::string PipelineName(const predlog::v1::PipelineRef& p) {
  return absl::StrCat(p.name(), "@", p.version(),
                      p.code_digest().empty() ? "" : absl::StrCat(" (", p.code_digest(), ")"));
}

}  // namespace

predlog::v1::ModelRecord ToModelRecord(
    const storage::RegistryState& registry,
    const storage::RegistryEntry<predlog::v1::ModelRegistered>& entry,
    absl::string_view shard_name) {
  predlog::v1::ModelRecord record;
  *record.mutable_registration() = entry.body;
  record.mutable_position()->set_shard(std::string(shard_name));
  record.mutable_position()->set_index(entry.index);
  record.set_leaf_sha256(storage::ToHex(entry.leaf));
  const predlog::v1::ModelRef& model = entry.body.model();
  for (const auto& [deploy_key, deploy] : registry.deployments) {
    if (deploy.body.traffic_fraction() > 0 && deploy.body.model().name() == model.name() &&
        deploy.body.model().version() == model.version()) {
      *record.add_deployments() = deploy.body;
    }
  }
  return record;
}

std::vector<predlog::v1::ModelRecord> ToModelRecords(const storage::RegistryState& registry,
                                                     absl::string_view shard_name) {
  std::vector<predlog::v1::ModelRecord> out;
  for (const auto& [key, entry] : registry.models) {
    out.push_back(ToModelRecord(registry, entry, shard_name));
  }
  return out;
}

Replayer::Replayer(storage::ShardSet shards, const storage::ArtifactStore* artifacts,
                   RuntimeRegistry runtimes, ReplayerOptions options)
    : shards_(std::move(shards)),
      artifacts_(artifacts),
      runtimes_(std::move(runtimes)),
      cache_(options.model_cache_bytes),
      state_at_(options.state_at) {}

absl::StatusOr<Replayer::Located> Replayer::Find(absl::string_view prediction_id,
                                                 absl::string_view subject_id) const {
  ASSIGN_OR_RETURN(storage::LocatedRecord found,
                   storage::FindPrediction(shards_, prediction_id, subject_id));
  Located located{found.shard, std::move(found.record), {}};
  ASSIGN_OR_RETURN(located.event, located.record.Event());
  return located;
}

absl::StatusOr<Replayer::Model> Replayer::LoadModel(const predlog::v1::ModelRef& ref,
                                                    absl::StatusCode missing_code,
                                                    absl::string_view role) const {
  absl::StatusOr<predlog::v1::ModelRegistered> registration =
      shards_.registry->GetModel(ref.name(), ref.version());
  if (absl::IsNotFound(registration.status())) {
    return absl::Status(missing_code,
                        absl::StrCat(role, " model ", ModelName(ref), " is not registered"));
  }
  RETURN_IF_ERROR(registration.status());
  Model model;
  model.registration = std::move(*registration);
  // The prediction names the artifact that made it when it can; otherwise the
  // registration does.
  const std::string& hex = ref.artifact_sha256().empty()
                               ? model.registration.model().artifact_sha256()
                               : ref.artifact_sha256();
  std::optional<storage::Digest> digest = storage::DigestFromHex(hex);
  if (!digest.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        role, " model ", ModelName(ref), " names no valid artifact digest: '", hex, "'"));
  }
  model.digest = *digest;
  ASSIGN_OR_RETURN(model.runtime, runtimes_.Find(model.registration.framework()));
  absl::StatusOr<std::shared_ptr<const LoadedModel>> loaded =
      cache_.GetOrLoad(model.digest, *model.runtime, [&]() -> absl::StatusOr<std::string> {
        // The fingerprint before the read: a change after it shows at the next check.
        ASSIGN_OR_RETURN(FileFingerprint before, FingerprintOf(model.digest));
        ASSIGN_OR_RETURN(std::string bytes, artifacts_->Read(model.digest));
        absl::MutexLock lock(&hashed_mu_);
        hashed_[std::string(model.digest.begin(), model.digest.end())] = {before, absl::Now()};
        return bytes;
      });
  absl::StatusOr<absl::Time> hashed_at =
      loaded.ok() ? CheckArtifact(model.digest) : absl::StatusOr<absl::Time>(loaded.status());
  if (!hashed_at.ok()) loaded = hashed_at.status();
  if (!loaded.ok()) {
    // Missing or tampered bytes are a precondition of the replay, not a
    // server fault; the store's message names the digest.
    if (absl::IsNotFound(loaded.status()) || absl::IsDataLoss(loaded.status()) ||
        absl::IsInvalidArgument(loaded.status())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "artifact of ", role, " model ", ModelName(ref), ": ", loaded.status().message()));
    }
    return loaded.status();
  }
  model.loaded = std::move(*loaded);
  model.hashed_at = *hashed_at;
  return model;
}

absl::StatusOr<Replayer::FileFingerprint> Replayer::FingerprintOf(
    const storage::Digest& digest) const {
  ASSIGN_OR_RETURN(storage::ArtifactInfo info, artifacts_->Stat(digest));
  return FileFingerprint{info.inode, static_cast<int64_t>(info.size_bytes), info.ctime_ns};
}

absl::StatusOr<absl::Time> Replayer::CheckArtifact(const storage::Digest& digest) const {
  const std::string key(digest.begin(), digest.end());
  ASSIGN_OR_RETURN(FileFingerprint now, FingerprintOf(digest));
  {
    absl::MutexLock lock(&hashed_mu_);
    // A fingerprint is trusted only when its ctime was well before the hash
    // ("racy clean", as git's index does): ctime advances in timer ticks on
    // older kernels, so a write in the same tick as the hash would keep it.
    if (auto it = hashed_.find(key);
        it != hashed_.end() && it->second.first == now &&
        absl::FromUnixNanos(now.ctime_ns) + kRacyCtimeWindow < it->second.second) {
      return it->second.second;
    }
  }
  // Changed (or never hashed here): hash the bytes again. The cached model
  // was loaded from the bytes hashed then; matching bytes mean it still is
  // the artifact's model.
  RETURN_IF_ERROR(artifacts_->Read(digest).status());
  const absl::Time hashed_at = absl::Now();
  absl::MutexLock lock(&hashed_mu_);
  hashed_[key] = {now, hashed_at};
  return hashed_at;
}

absl::StatusOr<RerunReport> Replayer::Rerun(const predlog::v1::RerunRequest& request) const {
  ASSIGN_OR_RETURN(Located located, Find(request.prediction_id(), request.subject_id()));
  return RerunLocated(located, request.explain(), request.against());
}

absl::StatusOr<RerunReport> Replayer::RerunLocated(const Located& located, bool explain,
                                                   const predlog::v1::ModelRef& against) const {
  if (!located.event.has_prediction_logged()) {
    return absl::InvalidArgumentError(absl::StrCat("record ", located.record.index, " of ",
                                                   located.shard->name(), " is not a prediction"));
  }
  const PredictionLogged& p = located.event.prediction_logged();
  RerunReport report;
  report.set_prediction_id(p.prediction_id());
  report.mutable_position()->set_shard(located.shard->name());
  report.mutable_position()->set_index(located.record.index);
  *report.mutable_model() = p.model();
  *report.mutable_recorded_output() = p.output();
  *report.mutable_prediction_pipeline() = p.pipeline();

  ASSIGN_OR_RETURN(Model model,
                   LoadModel(p.model(), absl::StatusCode::kFailedPrecondition, "the prediction's"));
  report.set_framework(model.registration.framework());
  report.set_artifact_sha256(storage::ToHex(model.digest));
  report.set_artifact_verified(true);  // CheckArtifact checked it for this call
  storage::TimeToProto(model.hashed_at, report.mutable_artifact_hashed_at());
  const std::string& registered_hex = model.registration.model().artifact_sha256();
  if (!p.model().artifact_sha256().empty() && registered_hex != p.model().artifact_sha256()) {
    report.set_artifact_verified(false);
    report.add_findings(absl::StrCat("the prediction names artifact ", p.model().artifact_sha256(),
                                     " but ", ModelName(p.model()), " is registered with ",
                                     registered_hex, "; re-ran the artifact the prediction names"));
  }

  ASSIGN_OR_RETURN(std::vector<float> row, DenseRow(p));
  const LoadedModel& loaded = *model.loaded;
  if (static_cast<int>(row.size()) != loaded.num_features()) {
    return absl::FailedPreconditionError(
        absl::StrCat("prediction ", p.prediction_id(), " recorded ", row.size(), " inputs but ",
                     ModelName(p.model()), " takes ", loaded.num_features()));
  }
  // Names are the pipeline's contract: inputs in another order than the
  // model was trained with reproduce a number, but not a meaningful one. The
  // artifact's own names (the runtime reads them) are the truth; the
  // registration's stand in when the artifact carries none.
  std::vector<std::string> expected = loaded.feature_names();
  const char* source = "the artifact";
  if (expected.empty()) {
    const auto& registered = model.registration.provenance().feature_names();
    expected.assign(registered.begin(), registered.end());
    source = "the registration";
  }
  if (!expected.empty()) {
    std::string mismatch;
    if (static_cast<size_t>(p.inputs_size()) != expected.size()) {
      mismatch = absl::StrCat("the prediction logged ", p.inputs_size(), " inputs but ", source,
                              " names ", expected.size(), " features");
    } else {
      for (int i = 0; i < p.inputs_size(); ++i) {
        if (p.inputs(i).name() != expected[static_cast<size_t>(i)]) {
          mismatch = absl::StrCat("input ", i, " is named ", p.inputs(i).name(), " but ", source,
                                  " names feature ", i, " ", expected[static_cast<size_t>(i)]);
          break;
        }
      }
    }
    if (!mismatch.empty()) {
      report.set_input_names_mismatch(true);
      report.set_input_mismatch(mismatch);
      report.add_findings(absl::StrCat("input names: ", mismatch,
                                       "; the model computed on other columns than it was "
                                       "trained with, whatever the match says"));
    }
  }

  ASSIGN_OR_RETURN(std::vector<float> scores, loaded.Predict(row));
  for (float s : scores) report.mutable_reproduced_output()->add_float_scores(s);
  report.mutable_reproduced_output()->set_score_kind(p.output().score_kind());
  Compare(scores, p.output(), &report);
  if (!report.exact_match() &&
      (p.output().float_scores_size() > 0 || p.output().double_scores_size() > 0)) {
    report.add_findings(absl::StrCat(
        "the recorded output is not reproduced (max abs diff ", report.max_abs_diff(),
        "): the artifact is verified, so the recorded output or inputs differ from what the "
        "model computes on them"));
  }

  // Skews that explain a difference (and are worth knowing without one).
  const predlog::v1::PipelineRef& trained = model.registration.provenance().pipeline();
  *report.mutable_training_pipeline() = trained;
  const bool prediction_pipeline_unrecorded =
      p.pipeline().name().empty() && p.pipeline().version().empty();
  report.set_prediction_pipeline_unrecorded(prediction_pipeline_unrecorded);
  if (prediction_pipeline_unrecorded) {
    report.add_findings("the prediction recorded no feature pipeline; pipeline skew unknown");
  } else if (trained.name().empty() && trained.version().empty()) {
    report.add_findings("the model's training pipeline is not recorded; pipeline skew unknown");
  } else if (!SamePipeline(p.pipeline(), trained)) {
    report.set_pipeline_skew(true);
    report.add_findings(absl::StrCat("pipeline skew: the prediction's features came from ",
                                     PipelineName(p.pipeline()), ", the model was trained with ",
                                     PipelineName(trained)));
  }
  report.set_runtime_version(model.runtime->library_version());
  const auto& versions = model.registration.provenance().library_versions();
  if (auto it = versions.find(model.registration.framework()); it != versions.end()) {
    report.set_training_runtime_version(it->second);
    if (it->second != report.runtime_version()) {
      report.set_runtime_version_skew(true);
      report.add_findings(absl::StrCat("runtime version skew: trained with ",
                                       model.registration.framework(), " ", it->second,
                                       ", re-run with ", report.runtime_version()));
    }
  } else {
    report.add_findings(absl::StrCat("the model's training ", model.registration.framework(),
                                     " version is not recorded; runtime skew unknown"));
  }

  if (explain) {
    ASSIGN_OR_RETURN(std::vector<float> contributions, loaded.Contributions(row));
    ASSIGN_OR_RETURN(std::vector<float> margin, loaded.PredictMargin(row));
    if (contributions.size() < row.size() + 1 || margin.empty()) {
      return absl::InternalError(absl::StrCat("the runtime returned ", contributions.size(),
                                              " contributions for ", row.size(), " inputs"));
    }
    // Multi-output models: the first output's explanation.
    predlog::v1::Explanation* explanation = report.mutable_explanation();
    std::vector<predlog::v1::FeatureContribution> sorted(row.size());
    for (size_t i = 0; i < row.size(); ++i) {
      *sorted[i].mutable_feature() = p.inputs(static_cast<int>(i));
      sorted[i].set_contribution(contributions[i]);
    }
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
      return std::fabs(a.contribution()) > std::fabs(b.contribution());
    });
    for (auto& c : sorted) *explanation->add_contributions() = std::move(c);
    explanation->set_bias(contributions[row.size()]);
    explanation->set_margin(margin[0]);
  }

  if (!against.name().empty()) {
    if (against.version().empty()) {
      return absl::InvalidArgumentError("against.version is empty (give name and version)");
    }
    ASSIGN_OR_RETURN(Model other, LoadModel(against, absl::StatusCode::kNotFound, "the against"));
    if (other.loaded->num_features() != loaded.num_features()) {
      return absl::FailedPreconditionError(absl::StrCat(
          ModelName(against), " takes ", other.loaded->num_features(), " inputs, ",
          ModelName(p.model()), " took ", loaded.num_features(), "; they cannot be compared"));
    }
    ASSIGN_OR_RETURN(std::vector<float> other_scores, other.loaded->Predict(row));
    if (other_scores.size() != scores.size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          ModelName(against), " gives ", other_scores.size(), " scores, ", ModelName(p.model()),
          " gave ", scores.size(), "; their outputs cannot be compared"));
    }
    predlog::v1::Counterfactual* counterfactual = report.mutable_counterfactual();
    *counterfactual->mutable_model() = other.registration.model();
    for (size_t i = 0; i < other_scores.size(); ++i) {
      counterfactual->mutable_output()->add_float_scores(other_scores[i]);
      const double recorded =
          i < size_t(p.output().float_scores_size())    ? p.output().float_scores(i)
          : i < size_t(p.output().double_scores_size()) ? p.output().double_scores(i)
                                                        : double(scores[i]);
      counterfactual->add_score_deltas(double(other_scores[i]) - recorded);
    }
    counterfactual->mutable_output()->set_score_kind(p.output().score_kind());
  }
  return report;
}

absl::StatusOr<predlog::v1::RerunTraceReport> Replayer::RerunTrace(
    const predlog::v1::RerunTraceRequest& request) const {
  if (request.trace_id().empty()) return absl::InvalidArgumentError("trace_id is empty");
  // Members of the trace from every shard (a chain's steps have their own subjects).
  std::vector<Located> members;
  for (const storage::ShardStore* shard : shards_.events) {
    std::string cursor;
    do {
      ASSIGN_OR_RETURN(storage::ScanPage page, shard->ScanTrace(request.trace_id(), cursor, 256));
      for (storage::StoredRecord& record : page.records) {
        Located located{shard, std::move(record), {}};
        ASSIGN_OR_RETURN(located.event, located.record.Event());
        members.push_back(std::move(located));
      }
      cursor = std::move(page.next_cursor);
      if (members.size() > kMaxTraceSteps) {
        return absl::FailedPreconditionError(absl::StrCat(
            "trace ", request.trace_id(), " has more than ", kMaxTraceSteps, " predictions"));
      }
    } while (!cursor.empty());
  }
  if (members.empty()) {
    return absl::NotFoundError(
        absl::StrCat("trace_id ", request.trace_id(), " has no predictions"));
  }
  // Dependency order: a step comes after every parent that is in the trace;
  // among ready steps, served order. (Kahn's algorithm; a cycle, which only a
  // producer bug can make, falls back to served order for what remains.)
  auto served = [&](size_t i) {
    return std::make_tuple(storage::TimeFromProto(members[i].event.prediction_logged().served_at()),
                           members[i].shard->name(), members[i].record.index);
  };
  std::map<std::string, size_t> by_id;
  for (size_t i = 0; i < members.size(); ++i) {
    by_id[members[i].event.prediction_logged().prediction_id()] = i;
  }
  std::vector<int> waiting_on(members.size(), 0);
  std::vector<std::vector<size_t>> children(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    for (const std::string& parent : members[i].event.prediction_logged().parent_prediction_ids()) {
      if (auto it = by_id.find(parent); it != by_id.end() && it->second != i) {
        ++waiting_on[i];
        children[it->second].push_back(i);
      }
    }
  }
  auto later = [&](size_t a, size_t b) { return served(a) > served(b); };
  std::vector<size_t> ready;
  for (size_t i = 0; i < members.size(); ++i) {
    if (waiting_on[i] == 0) ready.push_back(i);
  }
  std::vector<size_t> order;
  std::vector<bool> placed(members.size(), false);
  while (order.size() < members.size()) {
    if (ready.empty()) {  // a cycle: take the earliest unplaced step
      size_t next = members.size();
      for (size_t i = 0; i < members.size(); ++i) {
        if (!placed[i] && (next == members.size() || served(i) < served(next))) next = i;
      }
      ready.push_back(next);
    }
    std::sort(ready.begin(), ready.end(), later);
    const size_t next = ready.back();
    ready.pop_back();
    if (placed[next]) continue;
    placed[next] = true;
    order.push_back(next);
    for (size_t child : children[next]) {
      if (--waiting_on[child] == 0 && !placed[child]) ready.push_back(child);
    }
  }

  predlog::v1::RerunTraceReport out;
  out.set_trace_id(request.trace_id());
  out.set_first_divergent_step(-1);
  for (size_t i : order) {
    absl::StatusOr<RerunReport> step = RerunLocated(members[i], false, {});
    RerunReport* report = out.add_steps();
    if (step.ok()) {
      *report = std::move(*step);
    } else {
      // A step that cannot be re-run is reported, not fatal for the chain.
      const PredictionLogged& p = members[i].event.prediction_logged();
      report->set_prediction_id(p.prediction_id());
      report->mutable_position()->set_shard(members[i].shard->name());
      report->mutable_position()->set_index(members[i].record.index);
      *report->mutable_model() = p.model();
      *report->mutable_recorded_output() = p.output();
      report->add_findings(absl::StrCat("cannot re-run: ", step.status().ToString()));
    }
    if (!report->exact_match() && out.first_divergent_step() < 0) {
      out.set_first_divergent_step(out.steps_size() - 1);
      out.set_first_divergent_prediction_id(report->prediction_id());
    }
  }
  return out;
}

absl::StatusOr<uint64_t> Replayer::CutOf(const storage::ShardStore& shard,
                                         const predlog::v1::AsOf& as_of) const {
  switch (as_of.at_case()) {
    case predlog::v1::AsOf::kTime:
      return shard.CutAtTime(storage::TimeFromProto(as_of.time()));
    case predlog::v1::AsOf::kIndex:
      return as_of.index();
    case predlog::v1::AsOf::kAfter:
      return CutAfter(shard, as_of.after());
    case predlog::v1::AsOf::AT_NOT_SET:
      break;
  }
  return shard.Head().next_index;
}

absl::StatusOr<uint64_t> Replayer::CutAfter(const storage::ShardStore& shard,
                                            const predlog::v1::Position& after) const {
  if (after.shard() == shard.name()) {
    RETURN_IF_ERROR(shard.Get(after.index()).status());
    return after.index() + 1;
  }
  const storage::ShardStore* source = shards_.registry;
  for (const storage::ShardStore* s : shards_.events) {
    if (s->name() == after.shard()) source = s;
  }
  if (source == nullptr || source->name() != after.shard()) {
    return absl::NotFoundError(absl::StrCat("as_of.after: no shard ", after.shard()));
  }
  ASSIGN_OR_RETURN(storage::StoredRecord record, source->Get(after.index()));
  if (!record.appended_at.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "as_of.after: record ", after.shard(), "#", after.index(),
        " was written before records carried their append time; give a time or an index"));
  }
  // Inclusive: what `shard` had appended up to the same microsecond.
  return shard.CutAtTime(*record.appended_at + absl::Microseconds(1));
}

absl::StatusOr<predlog::v1::EntityAtResponse> Replayer::GetEntityAt(
    const predlog::v1::GetEntityAtRequest& request) const {
  if (request.entity_type().empty()) return absl::InvalidArgumentError("entity_type is empty");
  if (request.entity_id().empty()) return absl::InvalidArgumentError("entity_id is empty");
  const int partition = shards_.partition_of(request.entity_id());
  RETURN_IF_ERROR(shards_.CheckFolded(
      {partition}, absl::StrCat("entity ", request.entity_type(), "/", request.entity_id())));
  const storage::ShardStore& shard = *shards_.events[static_cast<size_t>(partition)];
  ASSIGN_OR_RETURN(uint64_t cut, CutOf(shard, request.as_of()));
  ASSIGN_OR_RETURN(EntityAt at,
                   state_at_.Entity(shard, request.entity_type(), request.entity_id(), cut));
  predlog::v1::EntityAtResponse out;
  out.set_exists(at.exists);
  *out.mutable_state() = std::move(at.state);
  out.mutable_cut()->set_shard(shard.name());
  out.mutable_cut()->set_index(at.stats.cut);
  out.set_snapshot_index(at.stats.snapshot_index);
  out.set_records_folded(at.stats.records_folded);
  return out;
}

absl::StatusOr<predlog::v1::RegistryAtResponse> Replayer::GetRegistryAt(
    const predlog::v1::GetRegistryAtRequest& request) const {
  const storage::ShardStore& shard = *shards_.registry;
  ASSIGN_OR_RETURN(uint64_t cut, CutOf(shard, request.as_of()));
  ASSIGN_OR_RETURN(RegistryAt at, state_at_.Registry(shard, cut));
  predlog::v1::RegistryAtResponse out;
  for (predlog::v1::ModelRecord& record : ToModelRecords(at.registry, shard.name())) {
    *out.add_models() = std::move(record);
  }
  for (const auto& [key, entry] : at.registry.deployments) {
    if (entry.body.traffic_fraction() > 0) *out.add_deployments() = entry.body;
  }
  out.mutable_cut()->set_shard(shard.name());
  out.mutable_cut()->set_index(at.stats.cut);
  out.set_snapshot_index(at.stats.snapshot_index);
  out.set_records_folded(at.stats.records_folded);
  return out;
}

}  // namespace predlog::replay
