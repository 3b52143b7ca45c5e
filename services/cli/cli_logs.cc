// predlog log, get, trail and changes: writing predictions and reading them
// back, and an entity's recorded changes.

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/cli/cli_format.h"
#include "services/cli/cli_internal.h"
#include "services/export/trail_export.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services::cli_internal {

// ---------------------------------------------------------------- log, get

namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;

absl::Status CheckJsonValue(const google::protobuf::Value& value, const FieldDescriptor& field,
                            const std::string& path);

// Why protobuf's JSON parser refuses `object` as a `type`, for the two
// refusals it reports vaguely: it names only the innermost field and says
// "invalid value ... for type TYPE_BYTES" or "Invalid time format". Finds a
// bytes field whose value is not base64 and a Timestamp that is not RFC 3339
// with a zone; OK when neither is there. `path` names fields from the top,
// as the line spells them (prediction.inputs[1].bytesValue).
absl::Status CheckJsonObject(const google::protobuf::Struct& object, const Descriptor& type,
                             const std::string& path) {
  for (const auto& [key, value] : object.fields()) {
    const FieldDescriptor* field = type.FindFieldByName(key);
    for (int i = 0; field == nullptr && i < type.field_count(); ++i) {
      if (type.field(i)->json_name() == key) field = type.field(i);
    }
    if (field == nullptr) continue;  // protobuf names unknown fields itself
    const std::string field_path = path.empty() ? key : absl::StrCat(path, ".", key);
    if (field->is_map()) {
      if (!value.has_struct_value()) continue;
      const FieldDescriptor& map_value = *field->message_type()->map_value();
      for (const auto& [map_key, map_entry] : value.struct_value().fields()) {
        RETURN_IF_ERROR(
            CheckJsonValue(map_entry, map_value, absl::StrCat(field_path, "[\"", map_key, "\"]")));
      }
    } else if (field->is_repeated() && value.has_list_value()) {
      for (int i = 0; i < value.list_value().values_size(); ++i) {
        RETURN_IF_ERROR(CheckJsonValue(value.list_value().values(i), *field,
                                       absl::StrCat(field_path, "[", i, "]")));
      }
    } else {
      RETURN_IF_ERROR(CheckJsonValue(value, *field, field_path));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckJsonValue(const google::protobuf::Value& value, const FieldDescriptor& field,
                            const std::string& path) {
  if (field.type() == FieldDescriptor::TYPE_BYTES && value.has_string_value()) {
    // The protobuf JSON mapping takes standard or URL-safe base64, padded or not.
    std::string bytes;
    if (!absl::Base64Unescape(value.string_value(), &bytes) &&
        !absl::WebSafeBase64Unescape(value.string_value(), &bytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": '", value.string_value(),
                       "' is not base64 (a bytes field is base64 in protobuf JSON)"));
    }
  }
  if (field.type() != FieldDescriptor::TYPE_MESSAGE) return absl::OkStatus();
  const Descriptor& type = *field.message_type();
  if (type.full_name() == "google.protobuf.Timestamp" && value.has_string_value()) {
    const std::string& text = value.string_value();
    absl::Time t;
    std::string error;
    if (absl::ParseTime(absl::RFC3339_full, text, &t, &error)) return absl::OkStatus();
    if (absl::ParseTime("%Y-%m-%dT%H:%M:%E*S", text, absl::UTCTimeZone(), &t, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": '", text,
                       "' has no time zone; want RFC 3339 with Z or an offset, like "
                       "2026-11-27T10:00:00Z"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": '", text, "' is not an RFC 3339 time, like 2026-11-27T10:00:00Z"));
  }
  if (value.has_struct_value() && !absl::StartsWith(type.full_name(), "google.protobuf.")) {
    return CheckJsonObject(value.struct_value(), type, path);
  }
  return absl::OkStatus();
}

// A line is a LogRequest (it has "prediction"), or for convenience a bare
// PredictionLogged. Deciding that first keeps the error of the right type:
// trying one and then the other answered a LogRequest line's bad value with
// "prediction: Cannot find field.". Protobuf's own message is kept when the
// check above finds nothing more precise. On error `request` holds part of
// the line.
absl::Status ParseLogLine(const std::string& line, v1::LogRequest* request) {
  google::protobuf::Struct object;
  if (const auto status = google::protobuf::util::JsonStringToMessage(line, &object);
      !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("not a LogRequest or PredictionLogged in JSON: ",
                                                   status.message().as_string()));
  }
  const bool is_request = object.fields().count("prediction") > 0;
  google::protobuf::Message* target =
      is_request ? static_cast<google::protobuf::Message*>(request) : request->mutable_prediction();
  const auto status = google::protobuf::util::JsonStringToMessage(line, target);
  if (status.ok()) return absl::OkStatus();
  RETURN_IF_ERROR(CheckJsonObject(object, *target->GetDescriptor(), ""));
  return absl::InvalidArgumentError(
      absl::StrCat("not a ", is_request ? "LogRequest" : "PredictionLogged",
                   " in protobuf JSON: ", status.message().as_string()));
}

}  // namespace

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
    if (const absl::Status parsed = ParseLogLine(line, &request); !parsed.ok()) {
      err_ << "predlog log: line " << line_number << ": " << parsed.message() << "\n";
      ++failed;
      continue;
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
    // A CONFLICT or REJECTED line is not recorded as given.
    if (receipt.error_code() != 0 || receipt.outcome() == v1::LogReceipt::CONFLICT ||
        receipt.outcome() == v1::LogReceipt::REJECTED) {
      ++failed;
    }
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
  fields.AddRow({"actor", ActorText(e)});
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
  if (record.has_appended_at()) fields.AddRow({"appended_at", IsoTime(record.appended_at())});
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
  const bool trace = args_.Has("trace");
  if (!args_.Has("subject") && !args_.Has("model") && !trace) {
    return Usage("--subject (or --model name@version, or --trace ID) is required");
  }
  if (trace && (args_.Has("subject") || args_.Has("model"))) {
    return Usage("--trace goes alone: a trace's predictions are listed whatever their subject");
  }
  if (trace && (args_.Has("from") || args_.Has("to"))) {
    return Usage("--from and --to do not apply to --trace: a trace is listed whole");
  }
  if (trace && args_.Get("trace").empty()) return Usage("--trace: want a trace id");
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
  if (trace) {
    request.set_trace_id(args_.Get("trace"));
  } else if (args_.Has("subject")) {
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
  auto show = [&](const v1::PredictionRecord& record) {
    const v1::PredictionLogged& p = record.event().prediction_logged();
    ++shown;
    if (json_) {
      PrintJson(record);
      return;
    }
    table.AddRow({IsoTime(p.served_at()), p.prediction_id(), p.subject_id(),
                  absl::StrCat(p.model().name(), "@", p.model().version()), OutputText(p.output()),
                  absl::StrCat(record.position().shard(), "#", record.position().index())});
  };
  // Pages come shard by shard. A subject's trail is one shard unless a
  // producer misrouted some of its events, and a trace is a handful of steps
  // on several shards: either is gathered whole and put in served order
  // before --limit applies. A model's listing streams.
  const bool subject_trail = args_.Has("subject") || trace;
  std::vector<v1::PredictionRecord> trail;
  do {
    v1::ListPredictionsResponse page;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = stub->ListPredictions(&context, request, &page);
    if (!status.ok()) return CallFailed(status);
    for (v1::PredictionRecord& record : *page.mutable_records()) {
      const v1::PredictionLogged& p = record.event().prediction_logged();
      // With both --subject and --model, the model narrows the subject's trail.
      if (model && subject_trail &&
          (p.model().name() != model->first || p.model().version() != model->second)) {
        continue;
      }
      if (subject_trail) {
        trail.push_back(std::move(record));
        continue;
      }
      if (limit > 0 && shown >= limit) break;
      show(record);
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && (subject_trail || limit == 0 || shown < limit));
  std::stable_sort(trail.begin(), trail.end(), [](const auto& a, const auto& b) {
    const auto& x = a.event().prediction_logged().served_at();
    const auto& y = b.event().prediction_logged().served_at();
    return std::make_pair(x.seconds(), x.nanos()) < std::make_pair(y.seconds(), y.nanos());
  });
  for (const v1::PredictionRecord& record : trail) {
    if (limit > 0 && shown >= limit) break;
    show(record);
  }
  if (!json_) {
    if (table.rows() == 0) {
      err_ << "predlog trail: no predictions match\n";
      return kExitFailed;
    }
    table.Print(out_);
  }
  return shown > 0 ? kExitOk : kExitFailed;
}

// ---------------------------------------------------------------- changes

namespace {

// What a change did, as "set a=1, b=2; unset c; deleted" (fields by name).
std::string ChangeText(const v1::EntityChanged& change) {
  std::vector<std::string> parts;
  if (!change.set_fields().empty()) {
    std::map<std::string, std::string> set;
    for (const auto& [name, value] : change.set_fields()) set[name] = ValueText(value);
    std::vector<std::string> fields;
    for (const auto& [name, value] : set) fields.push_back(absl::StrCat(name, "=", value));
    parts.push_back(absl::StrCat("set ", absl::StrJoin(fields, ", ")));
  }
  if (change.unset_fields_size() > 0) {
    std::vector<std::string> unset(change.unset_fields().begin(), change.unset_fields().end());
    std::sort(unset.begin(), unset.end());
    parts.push_back(absl::StrCat("unset ", absl::StrJoin(unset, ", ")));
  }
  if (change.deleted()) parts.push_back("deleted");
  return parts.empty() ? "(nothing)" : absl::StrJoin(parts, "; ");
}

}  // namespace

int Cli::Changes() {
  const std::string entity = args_.Get("entity");
  const size_t slash = entity.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == entity.size()) {
    return Usage("--entity: want TYPE/ID, e.g. customer/c-1042");
  }
  bool bad = false;
  std::optional<absl::Time> from = TimeFlag("from", &bad), to = TimeFlag("to", &bad);
  if (bad) return kExitUsage;
  int limit = 0;
  if (args_.Has("limit") && (!absl::SimpleAtoi(args_.Get("limit"), &limit) || limit <= 0)) {
    return Usage("--limit must be a positive integer");
  }
  v1::ListEntityChangesRequest request;
  request.set_entity_type(entity.substr(0, slash));
  request.set_entity_id(entity.substr(slash + 1));
  if (from) storage::TimeToProto(*from, request.mutable_from());
  if (to) storage::TimeToProto(*to, request.mutable_to());
  request.set_page_size(limit > 0 ? std::min(limit, 1000) : 1000);
  auto stub = v1::PredictionLog::NewStub(Channel());
  Table table({"RECORDED_AT", "CHANGE", "POSITION", "ACTOR"});
  int shown = 0;
  do {
    v1::ListEntityChangesResponse page;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = stub->ListEntityChanges(&context, request, &page);
    if (!status.ok()) return CallFailed(status);
    for (const v1::PredictionRecord& record : page.changes()) {
      if (limit > 0 && shown >= limit) break;
      ++shown;
      if (json_) {
        PrintJson(record);
        continue;
      }
      table.AddRow({IsoTime(record.event().recorded_at()),
                    ChangeText(record.event().entity_changed()),
                    absl::StrCat(record.position().shard(), "#", record.position().index()),
                    ActorText(record.event())});
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && (limit == 0 || shown < limit));
  if (shown == 0) {
    err_ << "predlog changes: no changes of " << entity << " match\n";
    return kExitFailed;
  }
  if (!json_) table.Print(out_);
  return kExitOk;
}

}  // namespace predlog::services::cli_internal
