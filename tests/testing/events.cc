#include "tests/testing/events.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "storage/event_validation.h"
#include "storage/sha256.h"
#include "storage/timestamps.h"

namespace predlog::testing {

predlog::v1::AuditEvent MakePrediction(const PredictionSpec& spec) {
  predlog::v1::AuditEvent event;
  event.set_event_id(absl::StrCat("evt-", spec.prediction_id));
  storage::TimeToProto(spec.recorded_at, event.mutable_recorded_at());
  event.set_actor("limits-api");
  event.set_schema_version(storage::kSchemaVersion);
  auto* p = event.mutable_prediction_logged();
  p->set_prediction_id(spec.prediction_id);
  p->set_subject_id(spec.subject_id);
  storage::TimeToProto(spec.served_at, p->mutable_served_at());
  p->set_service("limits-api");
  p->mutable_model()->set_name(spec.model_name);
  p->mutable_model()->set_version(spec.model_version);
  p->mutable_model()->set_artifact_sha256(storage::ToHex(storage::Sha256(spec.model_version)));
  p->mutable_pipeline()->set_name("credit-features");
  p->mutable_pipeline()->set_version("2024.11");
  std::mt19937_64 rng(std::hash<std::string>()(spec.prediction_id));
  for (int i = 0; i < spec.features; ++i) {
    auto* f = p->add_inputs();
    f->set_name(absl::StrCat("feature_", i));
    f->set_double_value(spec.random_content ? std::uniform_real_distribution<double>(0, 1e5)(rng)
                                            : i * 1.5 + spec.score);
  }
  if (spec.raw_request_bytes > 0) {
    std::string raw(spec.raw_request_bytes, 'r');
    if (spec.random_content) {
      for (char& c : raw) c = static_cast<char>(rng());
    }
    p->set_raw_request(std::move(raw));
  }
  p->mutable_output()->add_float_scores(spec.score);
  p->mutable_output()->set_label(spec.score > 0.5f ? "deny" : "approve");
  p->mutable_output()->set_score_kind("probability");
  p->set_trace_id(absl::StrCat("trace-", spec.prediction_id));
  (*p->mutable_context())["region"] = "eu-west-1";
  for (const auto& [name, version] : spec.data_sources) {
    auto* source = p->add_data_sources();
    source->set_name(name);
    source->set_version(version);
  }
  return event;
}

std::string MakePredictionPayload(const PredictionSpec& spec) {
  return MakePrediction(spec).SerializeAsString();
}

std::string MakeSizedPredictionPayload(uint64_t n, size_t target_bytes, uint64_t subjects,
                                       int data_sources) {
  PredictionSpec spec;
  for (int k = 0; k < data_sources; ++k) {
    if (k == 0) {
      spec.data_sources.emplace_back("applications", absl::StrCat("2026-", n % 12 + 1));
    } else {
      spec.data_sources.emplace_back(absl::StrCat("bureau-", k), "2026-10");
    }
  }
  spec.prediction_id = absl::StrCat("p", n);
  spec.subject_id = absl::StrCat("s", n % subjects);
  spec.features = 30;
  spec.served_at = absl::FromUnixSeconds(1'700'000'000) + absl::Milliseconds(n);
  spec.recorded_at = spec.served_at;
  spec.score = static_cast<float>(n % 1000) / 1000.0f;
  spec.random_content = true;
  const size_t base = MakePrediction(spec).ByteSizeLong();
  spec.raw_request_bytes = target_bytes > base + 4 ? target_bytes - base - 4 : 0;
  return MakePredictionPayload(spec);
}

predlog::v1::AuditEvent MakeEntityChange(const std::string& type, const std::string& id,
                                         const std::vector<std::pair<std::string, double>>& set,
                                         const std::vector<std::string>& unset, bool deleted) {
  predlog::v1::AuditEvent event;
  event.set_event_id(absl::StrCat("entity-", type, "-", id));
  event.set_actor("crm");
  event.set_schema_version(storage::kSchemaVersion);
  auto* change = event.mutable_entity_changed();
  change->set_entity_type(type);
  change->set_entity_id(id);
  for (const auto& [name, value] : set) {
    (*change->mutable_set_fields())[name].set_double_value(value);
  }
  for (const auto& name : unset) change->add_unset_fields(name);
  change->set_deleted(deleted);
  return event;
}

predlog::v1::AuditEvent MakeModelRegistered(const std::string& name, const std::string& version,
                                            const std::string& artifact_sha256_hex) {
  predlog::v1::AuditEvent event;
  event.set_event_id(absl::StrCat("model-", name, "-", version));
  event.set_actor("ml-platform");
  event.set_schema_version(storage::kSchemaVersion);
  auto* m = event.mutable_model_registered();
  m->mutable_model()->set_name(name);
  m->mutable_model()->set_version(version);
  m->mutable_model()->set_artifact_sha256(artifact_sha256_hex);
  m->set_framework("xgboost");
  m->mutable_provenance()->set_code_commit("abc123");
  return event;
}

}  // namespace predlog::testing
