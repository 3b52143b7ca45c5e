#include "storage/event_validation.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "storage/sha256.h"

namespace predlog::storage {
namespace {

using ::predlog::v1::AuditEvent;

absl::Status CheckId(absl::string_view field, absl::string_view value, const EventLimits& limits) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (value.size() > limits.max_id_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " bytes; the limit is ", limits.max_id_bytes));
  }
  return absl::OkStatus();
}

// The range google/protobuf/timestamp.proto allows: 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59.999999999Z, nanos in [0, 1e9). Outside it, protobuf's
// JSON mapping (and so a JSON export) cannot render the time.
absl::Status CheckTimestamp(absl::string_view field, const google::protobuf::Timestamp& ts) {
  using google::protobuf::util::TimeUtil;
  if (ts.seconds() < TimeUtil::kTimestampMinSeconds ||
      ts.seconds() > TimeUtil::kTimestampMaxSeconds) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".seconds is ", ts.seconds(), "; a Timestamp lies in years 1 to 9999 (seconds ",
        TimeUtil::kTimestampMinSeconds, " to ", TimeUtil::kTimestampMaxSeconds, ")"));
  }
  if (ts.nanos() < 0 || ts.nanos() > 999'999'999) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".nanos is ", ts.nanos(), "; it must be in [0, 999999999]"));
  }
  return absl::OkStatus();
}

absl::Status CheckModelRef(absl::string_view field, const predlog::v1::ModelRef& model,
                           bool require_digest, const EventLimits& limits) {
  if (auto s = CheckId(absl::StrCat(field, ".name"), model.name(), limits); !s.ok()) return s;
  // '@' separates name@version wherever a model is named in one string (the
  // CLI, registry keys): a name containing it would be ambiguous.
  if (model.name().find('@') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".name may not contain '@'"));
  }
  if (auto s = CheckId(absl::StrCat(field, ".version"), model.version(), limits); !s.ok()) {
    return s;
  }
  if (require_digest || !model.artifact_sha256().empty()) {
    // Lower-case only: the artifact store is keyed by this exact string.
    const std::optional<Digest> digest = DigestFromHex(model.artifact_sha256());
    if (!digest.has_value() || ToHex(*digest) != model.artifact_sha256()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".artifact_sha256 is not 64 lower-case hex characters"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePrediction(const predlog::v1::PredictionLogged& p, const EventLimits& limits) {
  if (auto s = CheckId("prediction_logged.prediction_id", p.prediction_id(), limits); !s.ok()) {
    return s;
  }
  if (auto s = CheckId("prediction_logged.subject_id", p.subject_id(), limits); !s.ok()) return s;
  if (!p.has_served_at()) {
    return absl::InvalidArgumentError("prediction_logged.served_at is missing");
  }
  if (auto s = CheckTimestamp("prediction_logged.served_at", p.served_at()); !s.ok()) return s;
  if (!p.has_model()) return absl::InvalidArgumentError("prediction_logged.model is missing");
  if (auto s = CheckModelRef("prediction_logged.model", p.model(), false, limits); !s.ok()) {
    return s;
  }
  if (p.inputs_size() == 0) return absl::InvalidArgumentError("prediction_logged.inputs is empty");
  if (p.inputs_size() > limits.max_features) {
    return absl::InvalidArgumentError(absl::StrCat("prediction_logged.inputs has ", p.inputs_size(),
                                                   " features; the limit is ",
                                                   limits.max_features));
  }
  for (int i = 0; i < p.inputs_size(); ++i) {
    if (p.inputs(i).name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("prediction_logged.inputs[", i, "].name is empty"));
    }
  }
  return absl::OkStatus();
}

// A dataset named in a registration: name and version required ('@'
// separates them in the CLI's name@version), digest lower-case hex when given.
absl::Status CheckDatasetRef(absl::string_view field, const predlog::v1::DatasetRef& dataset,
                             const EventLimits& limits) {
  if (auto s = CheckId(absl::StrCat(field, ".name"), dataset.name(), limits); !s.ok()) return s;
  if (dataset.name().find('@') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".name may not contain '@'"));
  }
  if (auto s = CheckId(absl::StrCat(field, ".version"), dataset.version(), limits); !s.ok()) {
    return s;
  }
  if (!dataset.digest().empty()) {
    const std::optional<Digest> digest = DigestFromHex(dataset.digest());
    if (!digest.has_value() || ToHex(*digest) != dataset.digest()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".digest is not 64 lower-case hex characters"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateModelRegistered(const predlog::v1::ModelRegistered& m,
                                     const EventLimits& limits) {
  if (!m.has_model()) return absl::InvalidArgumentError("model_registered.model is missing");
  if (auto s = CheckModelRef("model_registered.model", m.model(), true, limits); !s.ok()) {
    return s;
  }
  if (auto s = CheckId("model_registered.framework", m.framework(), limits); !s.ok()) return s;
  for (int i = 0; i < m.metrics_size(); ++i) {
    const std::string field = absl::StrCat("model_registered.metrics[", i, "]");
    if (auto s = CheckId(absl::StrCat(field, ".name"), m.metrics(i).name(), limits); !s.ok()) {
      return s;
    }
    if (m.metrics(i).has_dataset()) {
      if (auto s = CheckDatasetRef(absl::StrCat(field, ".dataset"), m.metrics(i).dataset(), limits);
          !s.ok()) {
        return s;
      }
    }
  }
  if (m.has_training_started_at()) {
    if (auto s = CheckTimestamp("model_registered.training_started_at", m.training_started_at());
        !s.ok()) {
      return s;
    }
  }
  if (m.training_duration_ms() < 0) {
    return absl::InvalidArgumentError("model_registered.training_duration_ms is negative");
  }
  return absl::OkStatus();
}

absl::Status ValidateDatasetRegistered(const predlog::v1::DatasetRegistered& d,
                                       const EventLimits& limits) {
  if (!d.has_dataset()) return absl::InvalidArgumentError("dataset_registered.dataset is missing");
  if (auto s = CheckDatasetRef("dataset_registered.dataset", d.dataset(), limits); !s.ok()) {
    return s;
  }
  for (int i = 0; i < d.derived_from_size(); ++i) {
    if (auto s = CheckDatasetRef(absl::StrCat("dataset_registered.derived_from[", i, "]"),
                                 d.derived_from(i), limits);
        !s.ok()) {
      return s;
    }
  }
  for (int i = 0; i < d.derived_from_models_size(); ++i) {
    if (auto s = CheckModelRef(absl::StrCat("dataset_registered.derived_from_models[", i, "]"),
                               d.derived_from_models(i), false, limits);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateEvent(const AuditEvent& event, const EventLimits& limits) {
  if (event.schema_version() > kSchemaVersion) {
    return absl::InvalidArgumentError(absl::StrCat("schema_version ", event.schema_version(),
                                                   " is newer than this build understands (",
                                                   kSchemaVersion, ")"));
  }
  if (event.has_recorded_at()) {
    if (auto s = CheckTimestamp("recorded_at", event.recorded_at()); !s.ok()) return s;
  }
  switch (event.body_case()) {
    case AuditEvent::kPredictionLogged:
      return ValidatePrediction(event.prediction_logged(), limits);
    case AuditEvent::kModelRegistered:
      return ValidateModelRegistered(event.model_registered(), limits);
    case AuditEvent::kModelDeployed: {
      const auto& d = event.model_deployed();
      if (auto s = CheckId("model_deployed.route", d.route(), limits); !s.ok()) return s;
      if (!d.has_model()) return absl::InvalidArgumentError("model_deployed.model is missing");
      if (auto s = CheckModelRef("model_deployed.model", d.model(), false, limits); !s.ok()) {
        return s;
      }
      if (!(d.traffic_fraction() >= 0.0 && d.traffic_fraction() <= 1.0)) {
        return absl::InvalidArgumentError("model_deployed.traffic_fraction is outside [0, 1]");
      }
      return absl::OkStatus();
    }
    case AuditEvent::kEntityChanged: {
      const auto& e = event.entity_changed();
      if (auto s = CheckId("entity_changed.entity_type", e.entity_type(), limits); !s.ok()) {
        return s;
      }
      return CheckId("entity_changed.entity_id", e.entity_id(), limits);
    }
    case AuditEvent::kDatasetRegistered:
      return ValidateDatasetRegistered(event.dataset_registered(), limits);
    case AuditEvent::kAccessRecorded:
      return CheckId("access_recorded.method", event.access_recorded().method(), limits);
    case AuditEvent::kSourceReset:
      return absl::InvalidArgumentError("source_reset is written by predlog only");
    case AuditEvent::kSourceGap:
      return absl::InvalidArgumentError("source_gap is written by predlog only");
    case AuditEvent::kRecordsLost:
      return absl::InvalidArgumentError("records_lost is written by predlog only");
    case AuditEvent::BODY_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("body is not set");
}

}  // namespace predlog::storage
