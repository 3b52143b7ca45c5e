// CSV rendering of export records: the header and rows of the CSV format
// written as a grammar at the top of trail_export.cc (the columns are in
// trail_internal.h), with the spreadsheet-injection rule for text cells.
// The writer and the verifier render rows with these same functions, so the
// verifier can compare a row byte for byte with what its event_bytes give.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "services/export/trail_export.h"
#include "services/export/trail_internal.h"
#include "services/export/trail_json.h"

namespace predlog::services::export_internal {

namespace {

using ::predlog::v1::AuditEvent;

void AppendCell(absl::string_view value, std::string* out) {
  if (value.find_first_of(",\"\r\n") == absl::string_view::npos) {
    out->append(value.data(), value.size());
    return;
  }
  out->push_back('"');
  for (const char c : value) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
}

// The characters that make Excel, LibreOffice or Sheets read a cell as a
// formula when it begins with one: OWASP's CSV Injection list (= + - @, tab,
// carriage return, line feed). A cell may begin with a line break: a quoted
// cell keeps it, and the spreadsheet still evaluates what follows.
constexpr absl::string_view kFormulaLeaders = "=+-@\t\r\n";

// `text` as a spreadsheet shows it literally: a leading formula character
// gets a ' before it.
std::string SpreadsheetText(absl::string_view text) {
  if (!text.empty() && kFormulaLeaders.find(text.front()) != absl::string_view::npos) {
    return absl::StrCat("'", text);
  }
  return std::string(text);
}

void AppendNumber(double value, bool is_float, std::string* out) {
  if (!std::isfinite(value)) {
    const absl::string_view name = NonFiniteName(value);
    out->append(name.data(), name.size());
  } else if (is_float) {
    AppendJsonFloat(static_cast<float>(value), out);
  } else {
    AppendJsonDouble(value, out);
  }
}

std::string CsvTime(bool present, const google::protobuf::Timestamp& ts) {
  if (!present) return std::string();
  std::string quoted;
  if (!AppendTimestamp(ts, &quoted)) {
    return absl::StrCat("invalid(seconds=", ts.seconds(), " nanos=", ts.nanos(), ")");
  }
  return quoted.substr(1, quoted.size() - 2);
}

// A feature's value as a CSV cell.
std::string FeatureCell(const predlog::v1::Feature& f) {
  using F = predlog::v1::Feature;
  std::string cell;
  switch (f.value_case()) {
    case F::kDoubleValue:
      AppendNumber(f.double_value(), false, &cell);
      break;
    case F::kFloatValue:
      AppendNumber(f.float_value(), true, &cell);
      break;
    case F::kInt64Value:
      absl::StrAppend(&cell, f.int64_value());
      break;
    case F::kBoolValue:
      cell = f.bool_value() ? "true" : "false";
      break;
    case F::kStringValue:
      cell = SpreadsheetText(f.string_value());
      break;
    case F::kBytesValue:
      AppendBase64(f.bytes_value(), &cell);
      cell = SpreadsheetText(cell);  // base64 may start with '+'
      break;
    case F::VALUE_NOT_SET:
      break;
  }
  return cell;
}

// A JSON string for CSV's extra_inputs; strings from a parsed proto3 message
// are valid UTF-8, so the fallback only keeps the output well-formed.
void AppendJsonStringOrEmpty(absl::string_view value, std::string* out) {
  if (!AppendJsonString(value, out)) out->append("\"\"");
}

// A feature's value as a JSON value (the protobuf JSON mapping of the oneof member).
void AppendFeatureJson(const predlog::v1::Feature& f, std::string* out) {
  using F = predlog::v1::Feature;
  switch (f.value_case()) {
    case F::kDoubleValue:
    case F::kFloatValue: {
      const bool is_float = f.value_case() == F::kFloatValue;
      const double v = is_float ? f.float_value() : f.double_value();
      if (std::isfinite(v)) {
        AppendNumber(v, is_float, out);
      } else {
        absl::StrAppend(out, "\"", NonFiniteName(v), "\"");
      }
      break;
    }
    case F::kInt64Value:
      absl::StrAppend(out, "\"", f.int64_value(), "\"");
      break;
    case F::kBoolValue:
      out->append(f.bool_value() ? "true" : "false");
      break;
    case F::kStringValue:
      AppendJsonStringOrEmpty(f.string_value(), out);
      break;
    case F::kBytesValue:
      out->push_back('"');
      AppendBase64(f.bytes_value(), out);
      out->push_back('"');
      break;
    case F::VALUE_NOT_SET:
      out->append("null");
      break;
  }
}

}  // namespace

void AppendCsvHeader(const CsvColumns& columns, std::string* out) {
  for (size_t i = 0; i < kCsvFixedCount; ++i) {
    if (i > 0) out->push_back(',');
    out->append(kCsvFixedColumns[i]);
  }
  for (const std::string& name : columns.names()) {
    out->push_back(',');
    AppendCell(absl::StrCat(kInputPrefix, name), out);
  }
  out->append(",extra_inputs,event_bytes_base64\r\n");
}

void AppendCsvRow(const CsvColumns& columns, const RowKey& key, const AuditEvent& event,
                  std::string* out) {
  AppendCell(key.shard, out);
  absl::StrAppend(out, ",", key.index, ",");
  absl::StrAppend(out, key.leaf, ",", key.prev_chain, ",", key.chain, ",");
  if (key.appended_at != nullptr) AppendCell(CsvTime(true, *key.appended_at), out);
  out->push_back(',');
  AppendCell(CsvTime(event.has_recorded_at(), event.recorded_at()), out);
  out->push_back(',');
  AppendCell(SpreadsheetText(::predlog::services::ActorText(event)), out);
  out->push_back(',');
  if (event.body_case() != AuditEvent::BODY_NOT_SET) {
    const auto* field = AuditEvent::descriptor()->FindFieldByNumber(event.body_case());
    if (field != nullptr) out->append(field->name());
  }
  if (!event.has_prediction_logged()) {
    // prediction_id .. trace_id, the input columns and extra_inputs.
    out->append(kCsvFixedCount - kCsvFirstPredictionColumn + columns.names().size() + 1, ',');
  } else {
    const auto& p = event.prediction_logged();
    const std::string cells[] = {
        p.prediction_id(),   p.subject_id(),        CsvTime(p.has_served_at(), p.served_at()),
        p.model().name(),    p.model().version(),   p.model().artifact_sha256(),
        p.pipeline().name(), p.pipeline().version()};
    for (const std::string& cell : cells) {
      out->push_back(',');
      AppendCell(SpreadsheetText(cell), out);
    }
    std::string scores;
    for (const float s : p.output().float_scores()) {
      if (!scores.empty()) scores.push_back(';');
      AppendNumber(s, true, &scores);
    }
    for (const double s : p.output().double_scores()) {
      if (!scores.empty()) scores.push_back(';');
      AppendNumber(s, false, &scores);
    }
    out->push_back(',');
    AppendCell(scores, out);
    out->push_back(',');
    AppendCell(SpreadsheetText(p.output().label()), out);
    out->push_back(',');
    AppendCell(SpreadsheetText(p.trace_id()), out);

    std::vector<const predlog::v1::Feature*> by_column(columns.names().size(), nullptr);
    std::string extra;
    for (const auto& input : p.inputs()) {
      const int column = columns.Find(input.name());
      if (column >= 0 && by_column[column] == nullptr) {
        by_column[column] = &input;
        continue;
      }
      extra.push_back(extra.empty() ? '{' : ',');
      AppendJsonStringOrEmpty(input.name(), &extra);
      extra.push_back(':');
      AppendFeatureJson(input, &extra);
    }
    if (!extra.empty()) extra.push_back('}');
    for (const auto* input : by_column) {
      out->push_back(',');
      if (input != nullptr) AppendCell(FeatureCell(*input), out);
    }
    out->push_back(',');
    AppendCell(extra, out);
  }
  out->push_back(',');
  AppendBase64(key.event_bytes, out);
  out->append("\r\n");
}

}  // namespace predlog::services::export_internal
