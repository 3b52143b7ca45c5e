// The TrailLine JSON of services/export/trail_json.h: the reflection-free
// emitter (one walker per message of events.proto), the check that it covers
// the compiled-in schema, and the reference rendering it falls back to. The
// scalars (numbers, strings, base64, times) are in trail_json_scalars.cc.
#include "services/export/trail_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/type_resolver.h"
#include "google/protobuf/util/type_resolver_util.h"
#include "predlog/v1/audit.pb.h"
#include "services/export/trail_json_internal.h"
#include "storage/deterministic_bytes.h"

namespace predlog::services {

namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::Timestamp;
using ::predlog::services::export_internal::kMaxTimestampSeconds;
using ::predlog::services::export_internal::kMinTimestampSeconds;

template <typename Int>
void AppendInt(Int value, std::string* out) {
  char buf[24];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), value);
  out->append(buf, r.ptr);
}

// ---------------------------------------------------------------------------
// The fast emitter. Each function appends one message's JSON object and
// returns false when it meets something it cannot render exactly; the caller
// then discards the partial output. Fields go in field-number order (the order
// of a generated serializer), proto3 defaults are left out (a double is
// written when its bits are not all zero, so -0.0 is written), oneof members
// and message fields are written whenever present, maps sorted by key.

class ObjectWriter {
 public:
  explicit ObjectWriter(std::string* out) : out_(out) { out_->push_back('{'); }
  ~ObjectWriter() { out_->push_back('}'); }
  ObjectWriter(const ObjectWriter&) = delete;
  ObjectWriter& operator=(const ObjectWriter&) = delete;

  // `key` is the quoted JSON name with its colon, e.g. "\"eventId\":".
  std::string* Key(absl::string_view key) {
    if (!first_) out_->push_back(',');
    first_ = false;
    out_->append(key.data(), key.size());
    return out_;
  }

  bool String(absl::string_view key, absl::string_view value) {
    return value.empty() || AppendJsonString(value, Key(key));
  }
  void Bytes(absl::string_view key, absl::string_view value) {
    if (value.empty()) return;
    std::string* out = Key(key);
    out->push_back('"');
    AppendBase64(value, out);
    out->push_back('"');
  }
  template <typename Int>
  void QuotedInt(absl::string_view key, Int value) {  // 64-bit integers
    if (value == 0) return;
    std::string* out = Key(key);
    out->push_back('"');
    AppendInt(value, out);
    out->push_back('"');
  }
  bool Time(absl::string_view key, bool present, const Timestamp& ts) {
    if (!present) return true;
    std::string* out = Key(key);
    const size_t mark = out->size();
    if (!AppendTimestamp(ts, out)) {
      out->resize(mark);
      return false;
    }
    return true;
  }

 private:
  std::string* out_;
  bool first_ = true;
};

void AppendDoubleValue(double value, std::string* out) {
  if (std::isfinite(value)) {
    AppendJsonDouble(value, out);
  } else {
    absl::StrAppend(out, "\"", NonFiniteName(value), "\"");
  }
}

void AppendFloatValue(float value, std::string* out) {
  if (std::isfinite(value)) {
    AppendJsonFloat(value, out);
  } else {
    absl::StrAppend(out, "\"", NonFiniteName(value), "\"");
  }
}

bool DoubleBitsNonZero(double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits != 0;
}

bool EmitStringMap(const google::protobuf::Map<std::string, std::string>& map, std::string* out) {
  std::vector<const google::protobuf::MapPair<std::string, std::string>*> entries;
  entries.reserve(map.size());
  for (const auto& entry : map) entries.push_back(&entry);
  std::sort(entries.begin(), entries.end(),
            [](const auto* a, const auto* b) { return a->first < b->first; });
  out->push_back('{');
  bool first = true;
  for (const auto* entry : entries) {
    if (!first) out->push_back(',');
    first = false;
    if (!AppendJsonString(entry->first, out)) return false;
    out->push_back(':');
    if (!AppendJsonString(entry->second, out)) return false;
  }
  out->push_back('}');
  return true;
}

bool EmitModelRef(const predlog::v1::ModelRef& m, std::string* out) {
  ObjectWriter w(out);
  return w.String("\"name\":", m.name()) && w.String("\"version\":", m.version()) &&
         w.String("\"artifactSha256\":", m.artifact_sha256());
}

bool EmitPipelineRef(const predlog::v1::PipelineRef& p, std::string* out) {
  ObjectWriter w(out);
  return w.String("\"name\":", p.name()) && w.String("\"version\":", p.version()) &&
         w.String("\"codeDigest\":", p.code_digest());
}

bool EmitDatasetRef(const predlog::v1::DatasetRef& d, std::string* out) {
  ObjectWriter w(out);
  return w.String("\"name\":", d.name()) && w.String("\"version\":", d.version()) &&
         w.String("\"digest\":", d.digest());
}

template <typename Repeated, typename Fn>
bool EmitList(ObjectWriter& w, absl::string_view key, const Repeated& items, Fn emit_one) {
  if (items.empty()) return true;
  std::string* out = w.Key(key);
  out->push_back('[');
  bool first = true;
  for (const auto& item : items) {
    if (!first) out->push_back(',');
    first = false;
    if (!emit_one(item, out)) return false;
  }
  out->push_back(']');
  return true;
}

bool EmitStrings(ObjectWriter& w, absl::string_view key,
                 const google::protobuf::RepeatedPtrField<std::string>& items) {
  return EmitList(w, key, items,
                  [](const std::string& s, std::string* out) { return AppendJsonString(s, out); });
}

bool EmitDatasets(ObjectWriter& w, absl::string_view key,
                  const google::protobuf::RepeatedPtrField<predlog::v1::DatasetRef>& items) {
  return EmitList(w, key, items, EmitDatasetRef);
}

bool EmitValue(const predlog::v1::Value& v, std::string* out) {
  using V = predlog::v1::Value;
  ObjectWriter w(out);
  switch (v.kind_case()) {
    case V::kDoubleValue:
      AppendDoubleValue(v.double_value(), w.Key("\"doubleValue\":"));
      return true;
    case V::kFloatValue:
      AppendFloatValue(v.float_value(), w.Key("\"floatValue\":"));
      return true;
    case V::kInt64Value:
      absl::StrAppend(w.Key("\"int64Value\":"), "\"", v.int64_value(), "\"");
      return true;
    case V::kBoolValue:
      w.Key("\"boolValue\":")->append(v.bool_value() ? "true" : "false");
      return true;
    case V::kStringValue:
      return AppendJsonString(v.string_value(), w.Key("\"stringValue\":"));
    case V::kBytesValue: {
      std::string* o = w.Key("\"bytesValue\":");
      o->push_back('"');
      AppendBase64(v.bytes_value(), o);
      o->push_back('"');
      return true;
    }
    case V::KIND_NOT_SET:
      return true;
  }
  return false;
}

bool EmitFeature(const predlog::v1::Feature& f, std::string* out) {
  using F = predlog::v1::Feature;
  ObjectWriter w(out);
  if (!w.String("\"name\":", f.name())) return false;
  switch (f.value_case()) {
    case F::kDoubleValue:
      AppendDoubleValue(f.double_value(), w.Key("\"doubleValue\":"));
      return true;
    case F::kFloatValue:
      AppendFloatValue(f.float_value(), w.Key("\"floatValue\":"));
      return true;
    case F::kInt64Value:
      absl::StrAppend(w.Key("\"int64Value\":"), "\"", f.int64_value(), "\"");
      return true;
    case F::kBoolValue:
      w.Key("\"boolValue\":")->append(f.bool_value() ? "true" : "false");
      return true;
    case F::kStringValue:
      return AppendJsonString(f.string_value(), w.Key("\"stringValue\":"));
    case F::kBytesValue: {
      std::string* o = w.Key("\"bytesValue\":");
      o->push_back('"');
      AppendBase64(f.bytes_value(), o);
      o->push_back('"');
      return true;
    }
    case F::VALUE_NOT_SET:
      return true;
  }
  return false;
}

bool EmitOutput(const predlog::v1::PredictionOutput& o, std::string* out) {
  ObjectWriter w(out);
  EmitList(w, "\"floatScores\":", o.float_scores(), [](float v, std::string* s) {
    AppendFloatValue(v, s);
    return true;
  });
  EmitList(w, "\"doubleScores\":", o.double_scores(), [](double v, std::string* s) {
    AppendDoubleValue(v, s);
    return true;
  });
  return w.String("\"label\":", o.label()) && w.String("\"scoreKind\":", o.score_kind());
}

bool EmitPrediction(const predlog::v1::PredictionLogged& p, std::string* out) {
  ObjectWriter w(out);
  if (!w.String("\"predictionId\":", p.prediction_id()) ||
      !w.String("\"subjectId\":", p.subject_id()) ||
      !w.Time("\"servedAt\":", p.has_served_at(), p.served_at()) ||
      !w.String("\"service\":", p.service())) {
    return false;
  }
  if (p.has_model() && !EmitModelRef(p.model(), w.Key("\"model\":"))) return false;
  if (p.has_pipeline() && !EmitPipelineRef(p.pipeline(), w.Key("\"pipeline\":"))) return false;
  if (!EmitList(w, "\"inputs\":", p.inputs(), EmitFeature)) return false;
  w.Bytes("\"rawRequest\":", p.raw_request());
  if (p.has_output() && !EmitOutput(p.output(), w.Key("\"output\":"))) return false;
  if (!w.String("\"traceId\":", p.trace_id()) ||
      !EmitStrings(w, "\"parentPredictionIds\":", p.parent_prediction_ids())) {
    return false;
  }
  if (!p.context().empty() && !EmitStringMap(p.context(), w.Key("\"context\":"))) return false;
  return EmitDatasets(w, "\"dataSources\":", p.data_sources());
}

bool EmitProvenance(const predlog::v1::TrainingProvenance& t, std::string* out) {
  ObjectWriter w(out);
  if (!EmitDatasets(w, "\"datasets\":", t.datasets()) ||
      !w.String("\"codeCommit\":", t.code_commit())) {
    return false;
  }
  if (!t.hyperparameters().empty() &&
      !EmitStringMap(t.hyperparameters(), w.Key("\"hyperparameters\":"))) {
    return false;
  }
  if (!t.library_versions().empty() &&
      !EmitStringMap(t.library_versions(), w.Key("\"libraryVersions\":"))) {
    return false;
  }
  if (t.has_pipeline() && !EmitPipelineRef(t.pipeline(), w.Key("\"pipeline\":"))) return false;
  return EmitStrings(w, "\"featureNames\":", t.feature_names());
}

bool EmitMetric(const predlog::v1::EvaluationMetric& m, std::string* out) {
  ObjectWriter w(out);
  if (!w.String("\"name\":", m.name())) return false;
  if (DoubleBitsNonZero(m.value())) AppendDoubleValue(m.value(), w.Key("\"value\":"));
  return !m.has_dataset() || EmitDatasetRef(m.dataset(), w.Key("\"dataset\":"));
}

bool EmitModelRegistered(const predlog::v1::ModelRegistered& m, std::string* out) {
  ObjectWriter w(out);
  if (m.has_model() && !EmitModelRef(m.model(), w.Key("\"model\":"))) return false;
  if (!w.String("\"framework\":", m.framework())) return false;
  w.QuotedInt("\"artifactSizeBytes\":", m.artifact_size_bytes());
  if (m.has_provenance() && !EmitProvenance(m.provenance(), w.Key("\"provenance\":"))) {
    return false;
  }
  if (!w.String("\"description\":", m.description()) ||
      !EmitList(w, "\"metrics\":", m.metrics(), EmitMetric) ||
      !w.Time("\"trainingStartedAt\":", m.has_training_started_at(), m.training_started_at())) {
    return false;
  }
  w.QuotedInt("\"trainingDurationMs\":", m.training_duration_ms());
  return w.String("\"externalRunId\":", m.external_run_id());
}

bool EmitModelDeployed(const predlog::v1::ModelDeployed& d, std::string* out) {
  ObjectWriter w(out);
  if (!w.String("\"route\":", d.route())) return false;
  if (d.has_model() && !EmitModelRef(d.model(), w.Key("\"model\":"))) return false;
  if (DoubleBitsNonZero(d.traffic_fraction())) {
    AppendDoubleValue(d.traffic_fraction(), w.Key("\"trafficFraction\":"));
  }
  return w.String("\"reason\":", d.reason());
}

bool EmitEntityChanged(const predlog::v1::EntityChanged& e, std::string* out) {
  ObjectWriter w(out);
  if (!w.String("\"entityType\":", e.entity_type()) || !w.String("\"entityId\":", e.entity_id())) {
    return false;
  }
  if (!e.set_fields().empty()) {
    std::vector<const google::protobuf::MapPair<std::string, predlog::v1::Value>*> entries;
    entries.reserve(e.set_fields().size());
    for (const auto& entry : e.set_fields()) entries.push_back(&entry);
    std::sort(entries.begin(), entries.end(),
              [](const auto* a, const auto* b) { return a->first < b->first; });
    std::string* o = w.Key("\"setFields\":");
    o->push_back('{');
    bool first = true;
    for (const auto* entry : entries) {
      if (!first) o->push_back(',');
      first = false;
      if (!AppendJsonString(entry->first, o)) return false;
      o->push_back(':');
      if (!EmitValue(entry->second, o)) return false;
    }
    o->push_back('}');
  }
  if (!EmitStrings(w, "\"unsetFields\":", e.unset_fields())) return false;
  if (e.deleted()) w.Key("\"deleted\":")->append("true");
  return true;
}

bool EmitDatasetRegistered(const predlog::v1::DatasetRegistered& d, std::string* out) {
  ObjectWriter w(out);
  if (d.has_dataset() && !EmitDatasetRef(d.dataset(), w.Key("\"dataset\":"))) return false;
  if (!EmitDatasets(w, "\"derivedFrom\":", d.derived_from())) return false;
  if (d.has_pipeline() && !EmitPipelineRef(d.pipeline(), w.Key("\"pipeline\":"))) return false;
  w.QuotedInt("\"sizeBytes\":", d.size_bytes());
  w.QuotedInt("\"rowCount\":", d.row_count());
  return w.String("\"source\":", d.source()) &&
         EmitList(w, "\"derivedFromModels\":", d.derived_from_models(), EmitModelRef) &&
         w.String("\"reason\":", d.reason());
}

bool EmitSourceReset(const predlog::v1::SourceReset& r, std::string* out) {
  ObjectWriter w(out);
  if (!w.String("\"previousIncarnation\":", r.previous_incarnation())) return false;
  w.QuotedInt("\"previousLastOffset\":", r.previous_last_offset());
  if (!w.String("\"newIncarnation\":", r.new_incarnation())) return false;
  w.QuotedInt("\"newFirstOffset\":", r.new_first_offset());
  return true;
}

bool EmitSourceGap(const predlog::v1::SourceGap& g, std::string* out) {
  ObjectWriter w(out);
  if (!w.String("\"incarnation\":", g.incarnation())) return false;
  w.QuotedInt("\"firstMissingOffset\":", g.first_missing_offset());
  w.QuotedInt("\"lastMissingOffset\":", g.last_missing_offset());
  return w.String("\"reason\":", g.reason());
}

bool EmitRecordsLost(const predlog::v1::RecordsLost& l, std::string* out) {
  ObjectWriter w(out);
  w.QuotedInt("\"firstLostIndex\":", l.first_lost_index());
  w.QuotedInt("\"lastLostIndex\":", l.last_lost_index());
  return w.String("\"intactChainSha256\":", l.intact_chain_sha256()) &&
         w.String("\"ackedChainSha256\":", l.acked_chain_sha256()) &&
         w.String("\"reason\":", l.reason());
}

bool EmitAccessRecorded(const predlog::v1::AccessRecorded& a, std::string* out) {
  ObjectWriter w(out);
  return w.String("\"method\":", a.method()) && w.String("\"requestJson\":", a.request_json()) &&
         w.String("\"peer\":", a.peer()) && w.String("\"credential\":", a.credential());
}

bool EmitEvent(const predlog::v1::AuditEvent& e, std::string* out) {
  using E = predlog::v1::AuditEvent;
  ObjectWriter w(out);
  if (!w.String("\"eventId\":", e.event_id()) ||
      !w.Time("\"recordedAt\":", e.has_recorded_at(), e.recorded_at()) ||
      !w.String("\"actor\":", e.actor())) {
    return false;
  }
  if (e.schema_version() != 0) AppendInt(e.schema_version(), w.Key("\"schemaVersion\":"));
  if (!w.String("\"claimedActor\":", e.claimed_actor())) return false;
  switch (e.body_case()) {
    case E::kPredictionLogged:
      return EmitPrediction(e.prediction_logged(), w.Key("\"predictionLogged\":"));
    case E::kModelRegistered:
      return EmitModelRegistered(e.model_registered(), w.Key("\"modelRegistered\":"));
    case E::kModelDeployed:
      return EmitModelDeployed(e.model_deployed(), w.Key("\"modelDeployed\":"));
    case E::kEntityChanged:
      return EmitEntityChanged(e.entity_changed(), w.Key("\"entityChanged\":"));
    case E::kDatasetRegistered:
      return EmitDatasetRegistered(e.dataset_registered(), w.Key("\"datasetRegistered\":"));
    case E::kAccessRecorded:
      return EmitAccessRecorded(e.access_recorded(), w.Key("\"accessRecorded\":"));
    case E::kSourceReset:
      return EmitSourceReset(e.source_reset(), w.Key("\"sourceReset\":"));
    case E::kSourceGap:
      return EmitSourceGap(e.source_gap(), w.Key("\"sourceGap\":"));
    case E::kRecordsLost:
      return EmitRecordsLost(e.records_lost(), w.Key("\"recordsLost\":"));
    case E::BODY_NOT_SET:
      return true;
  }
  return false;
}

bool Mappable(bool present, const Timestamp& ts) {
  return !present ||
         (ts.seconds() >= kMinTimestampSeconds && ts.seconds() <= kMaxTimestampSeconds &&
          ts.nanos() >= 0 && ts.nanos() <= 999'999'999);
}

// The event's Timestamps are all in the range protobuf's JSON printer maps.
bool TimestampsMappable(const predlog::v1::AuditEvent& e) {
  return Mappable(e.has_recorded_at(), e.recorded_at()) &&
         (!e.has_prediction_logged() ||
          Mappable(e.prediction_logged().has_served_at(), e.prediction_logged().served_at())) &&
         (!e.has_model_registered() || Mappable(e.model_registered().has_training_started_at(),
                                                e.model_registered().training_started_at()));
}

// The fields (number and JSON name) the emitter above writes, per message.
struct KnownMessage {
  const Descriptor* descriptor;
  std::vector<std::pair<int, const char*>> fields;
};

bool Covers(const KnownMessage& known) {
  if (known.descriptor->field_count() != static_cast<int>(known.fields.size())) return false;
  for (const auto& [number, json_name] : known.fields) {
    const auto* field = known.descriptor->FindFieldByNumber(number);
    if (field == nullptr || field->json_name() != json_name) return false;
  }
  return true;
}

}  // namespace

google::protobuf::util::JsonPrintOptions TrailJsonOptions() {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.always_print_primitive_fields = false;
  options.always_print_enums_as_ints = false;
  options.preserve_proto_field_names = false;
  return options;
}

bool FastTrailJsonCoversSchema() {
  static const bool covers = [] {
    namespace v1 = predlog::v1;
    const std::vector<KnownMessage> known = {
        {v1::TrailLine::descriptor(),
         {{1, "shard"},
          {2, "index"},
          {3, "event"},
          {4, "leafSha256"},
          {5, "prevChainSha256"},
          {6, "chainSha256"},
          {7, "eventBytes"},
          {8, "appendedAt"}}},
        {v1::AuditEvent::descriptor(),
         {{1, "eventId"},
          {2, "recordedAt"},
          {3, "actor"},
          {4, "schemaVersion"},
          {5, "claimedActor"},
          {10, "predictionLogged"},
          {11, "modelRegistered"},
          {12, "modelDeployed"},
          {13, "entityChanged"},
          {14, "datasetRegistered"},
          {15, "accessRecorded"},
          {20, "sourceReset"},
          {21, "sourceGap"},
          {22, "recordsLost"}}},
        {v1::ModelRef::descriptor(), {{1, "name"}, {2, "version"}, {3, "artifactSha256"}}},
        {v1::PipelineRef::descriptor(), {{1, "name"}, {2, "version"}, {3, "codeDigest"}}},
        {v1::Value::descriptor(),
         {{1, "doubleValue"},
          {2, "floatValue"},
          {3, "int64Value"},
          {4, "boolValue"},
          {5, "stringValue"},
          {6, "bytesValue"}}},
        {v1::Feature::descriptor(),
         {{1, "name"},
          {2, "doubleValue"},
          {3, "floatValue"},
          {4, "int64Value"},
          {5, "boolValue"},
          {6, "stringValue"},
          {7, "bytesValue"}}},
        {v1::DatasetRef::descriptor(), {{1, "name"}, {2, "version"}, {3, "digest"}}},
        {v1::PredictionOutput::descriptor(),
         {{1, "floatScores"}, {2, "doubleScores"}, {3, "label"}, {4, "scoreKind"}}},
        {v1::PredictionLogged::descriptor(),
         {{1, "predictionId"},
          {2, "subjectId"},
          {3, "servedAt"},
          {4, "service"},
          {5, "model"},
          {6, "pipeline"},
          {7, "inputs"},
          {8, "rawRequest"},
          {9, "output"},
          {10, "traceId"},
          {11, "parentPredictionIds"},
          {12, "context"},
          {13, "dataSources"}}},
        {v1::TrainingProvenance::descriptor(),
         {{1, "datasets"},
          {2, "codeCommit"},
          {3, "hyperparameters"},
          {4, "libraryVersions"},
          {5, "pipeline"},
          {6, "featureNames"}}},
        {v1::ModelRegistered::descriptor(),
         {{1, "model"},
          {2, "framework"},
          {3, "artifactSizeBytes"},
          {4, "provenance"},
          {5, "description"},
          {6, "metrics"},
          {7, "trainingStartedAt"},
          {8, "trainingDurationMs"},
          {9, "externalRunId"}}},
        {v1::EvaluationMetric::descriptor(), {{1, "name"}, {2, "value"}, {3, "dataset"}}},
        {v1::ModelDeployed::descriptor(),
         {{1, "route"}, {2, "model"}, {3, "trafficFraction"}, {4, "reason"}}},
        {v1::EntityChanged::descriptor(),
         {{1, "entityType"},
          {2, "entityId"},
          {3, "setFields"},
          {4, "unsetFields"},
          {5, "deleted"}}},
        {v1::DatasetRegistered::descriptor(),
         {{1, "dataset"},
          {2, "derivedFrom"},
          {3, "pipeline"},
          {4, "sizeBytes"},
          {5, "rowCount"},
          {6, "source"},
          {7, "derivedFromModels"},
          {8, "reason"}}},
        {v1::SourceReset::descriptor(),
         {{1, "previousIncarnation"},
          {2, "previousLastOffset"},
          {3, "newIncarnation"},
          {4, "newFirstOffset"}}},
        {v1::AccessRecorded::descriptor(),
         {{1, "method"}, {2, "requestJson"}, {3, "peer"}, {4, "credential"}}},
        {v1::SourceGap::descriptor(),
         {{1, "incarnation"}, {2, "firstMissingOffset"}, {3, "lastMissingOffset"}, {4, "reason"}}},
        {v1::RecordsLost::descriptor(),
         {{1, "firstLostIndex"},
          {2, "lastLostIndex"},
          {3, "intactChainSha256"},
          {4, "ackedChainSha256"},
          {5, "reason"}}},
    };
    return std::all_of(known.begin(), known.end(), Covers);
  }();
  return covers;
}

bool AppendTrailLineJsonFast(const TrailLineFields& fields, std::string* out) {
  if (!FastTrailJsonCoversSchema()) return false;
  const size_t mark = out->size();
  bool ok = true;
  {
    ObjectWriter w(out);
    ok = w.String("\"shard\":", fields.shard);
    w.QuotedInt("\"index\":", fields.index);
    if (ok && fields.event != nullptr) ok = EmitEvent(*fields.event, w.Key("\"event\":"));
    // The hex digests and base64 are ASCII without characters to escape.
    const std::pair<absl::string_view, absl::string_view> digests[] = {
        {"\"leafSha256\":", fields.leaf_sha256},
        {"\"prevChainSha256\":", fields.prev_chain_sha256},
        {"\"chainSha256\":", fields.chain_sha256}};
    for (const auto& [key, value] : digests) {
      if (ok && !value.empty()) {
        ok = AppendJsonString(value, w.Key(key));
      }
    }
    if (ok && !fields.event_bytes.empty()) {
      std::string* o = w.Key("\"eventBytes\":");
      o->push_back('"');
      AppendBase64(fields.event_bytes, o);
      o->push_back('"');
    }
    if (ok && fields.appended_at != nullptr) {
      ok = AppendTimestamp(*fields.appended_at, w.Key("\"appendedAt\":"));
    }
  }
  if (!ok) out->resize(mark);
  return ok;
}

absl::StatusOr<std::string> TrailLineJsonReference(const TrailLineFields& fields) {
  predlog::v1::TrailLine line;
  line.set_shard(fields.shard.data(), fields.shard.size());
  line.set_index(fields.index);
  if (fields.event != nullptr) *line.mutable_event() = *fields.event;
  line.set_leaf_sha256(fields.leaf_sha256.data(), fields.leaf_sha256.size());
  line.set_prev_chain_sha256(fields.prev_chain_sha256.data(), fields.prev_chain_sha256.size());
  line.set_chain_sha256(fields.chain_sha256.data(), fields.chain_sha256.size());
  line.set_event_bytes(fields.event_bytes.data(), fields.event_bytes.size());
  if (fields.appended_at != nullptr) *line.mutable_appended_at() = *fields.appended_at;
  const std::string binary = storage::DeterministicBytes(line);
  // Leaked on purpose: shared by every thread for the life of the process.
  static google::protobuf::util::TypeResolver* const resolver =
      google::protobuf::util::NewTypeResolverForDescriptorPool(
          "type.googleapis.com", google::protobuf::DescriptorPool::generated_pool());
  std::string json;
  const auto status = google::protobuf::util::BinaryToJsonString(
      resolver, "type.googleapis.com/predlog.v1.TrailLine", binary, &json, TrailJsonOptions());
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("protobuf cannot print this line as JSON: ", status.ToString()));
  }
  return json;
}

void AppendTrailLine(const TrailLineFields& fields, std::string* out) {
  if (!AppendTrailLineJsonFast(fields, out)) {
    absl::StatusOr<std::string> json = absl::InternalError("unmapped timestamp");
    // Asking protobuf to print an unmappable event would fail after logging
    // a warning per line.
    if (fields.event == nullptr || TimestampsMappable(*fields.event)) {
      json = TrailLineJsonReference(fields);
    }
    if (!json.ok() && fields.event != nullptr) {
      // No JSON mapping for the event (see the header): the line without it.
      TrailLineFields without_event = fields;
      without_event.event = nullptr;
      json = TrailLineJsonReference(without_event);
    }
    // Without the event, a line is strings and an integer: protobuf prints
    // those unconditionally.
    out->append(json.ok() ? *json : std::string());
  }
  out->push_back('\n');
}

}  // namespace predlog::services
