#include "services/cli/cli_format.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"
#include "storage/timestamps.h"

namespace predlog::services {
namespace {

// Display width of UTF-8 text: code points, not bytes (the bars are
// multi-byte).
size_t Width(absl::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string Shortest(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  for (int precision = 6; precision <= 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    double back = 0;
    if (absl::SimpleAtod(s, &back) && back == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

void AppendByteEscape(unsigned char byte, std::string* out) {
  absl::StrAppend(out, "\\x", absl::Hex(byte, absl::kZeroPad2));
}

// The length of the UTF-8 sequence at the start of `s` (1 to 4) and its code
// point; 0 when the bytes are not UTF-8, -1 when `s` ends inside a sequence
// that could still complete. The ranges are RFC 3629's: no overlong forms,
// no surrogates, nothing above U+10FFFF.
int DecodeUtf8(absl::string_view s, uint32_t* code_point) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  int length;
  unsigned char low = 0x80, high = 0xBF;  // the second byte's range
  if (lead < 0x80) {
    *code_point = lead;
    return 1;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    *code_point = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    *code_point = lead & 0x0F;
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    *code_point = lead & 0x07;
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  for (int i = 1; i < length; ++i) {
    if (static_cast<size_t>(i) >= s.size()) return -1;
    const unsigned char c = byte(i);
    if (c < (i == 1 ? low : 0x80) || c > (i == 1 ? high : 0xBF)) return 0;
    *code_point = (*code_point << 6) | (c & 0x3F);
  }
  return length;
}

// C1 controls, U+2028/U+2029 and the bidi embeddings, overrides and isolates.
bool IsFormatControl(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

// Appends `in` escaped as Printable does (a newline kept when
// `keep_newline`); returns how many bytes it used. Unless `final`, an
// unfinished UTF-8 sequence at the end is left unused.
size_t AppendPrintable(absl::string_view in, bool keep_newline, bool final, std::string* out) {
  size_t i = 0;
  while (i < in.size()) {
    uint32_t cp = 0;
    const int length = DecodeUtf8(in.substr(i), &cp);
    if (length < 0 && !final) break;
    if (length <= 0) {
      AppendByteEscape(static_cast<unsigned char>(in[i]), out);
      ++i;
      continue;
    }
    if (cp == '\n' && keep_newline) {
      out->push_back('\n');
    } else if (cp < 0x20 || cp == 0x7F) {
      AppendByteEscape(static_cast<unsigned char>(cp), out);
    } else if (IsFormatControl(cp)) {
      absl::StrAppend(out, "\\u", absl::Hex(cp, absl::kZeroPad4));
    } else {
      out->append(in.data() + i, static_cast<size_t>(length));
    }
    i += static_cast<size_t>(length);
  }
  return i;
}

}  // namespace

std::string Printable(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  AppendPrintable(text, /*keep_newline=*/false, /*final=*/true, &out);
  return out;
}

PrintableStreambuf::~PrintableStreambuf() { WritePending(/*final=*/true); }

PrintableStreambuf::int_type PrintableStreambuf::overflow(int_type c) {
  if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
  const char ch = traits_type::to_char_type(c);
  return xsputn(&ch, 1) == 1 ? c : traits_type::eof();
}

std::streamsize PrintableStreambuf::xsputn(const char* s, std::streamsize n) {
  pending_.append(s, static_cast<size_t>(n));
  return WritePending(/*final=*/false) ? n : 0;
}

int PrintableStreambuf::sync() { return dest_->pubsync(); }

bool PrintableStreambuf::WritePending(bool final) {
  std::string escaped;
  pending_.erase(0, AppendPrintable(pending_, /*keep_newline=*/true, final, &escaped));
  return dest_->sputn(escaped.data(), static_cast<std::streamsize>(escaped.size())) ==
         static_cast<std::streamsize>(escaped.size());
}

void Table::Print(std::ostream& out) const {
  std::vector<std::string> header;
  for (const std::string& cell : header_) header.push_back(Printable(cell));
  std::vector<std::vector<std::string>> rows;
  for (const auto& row : rows_) {
    rows.emplace_back();
    for (const std::string& cell : row) rows.back().push_back(Printable(cell));
  }
  std::vector<size_t> widths(header.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], Width(row[i]));
    }
  };
  measure(header);
  for (const auto& row : rows) measure(row);
  auto print = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - Width(row[i]) + 2, ' ');
    }
    out << line << "\n";
  };
  print(header);
  for (const auto& row : rows) print(row);
}

std::string IsoTime(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

std::string IsoTime(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "-";
  return IsoTime(storage::TimeFromProto(ts));
}

absl::StatusOr<absl::Time> ParseTime(absl::string_view text) {
  absl::Time t;
  std::string error;
  const std::string s(text);
  if (absl::ParseTime(absl::RFC3339_full, s, &t, &error)) return t;
  if (absl::ParseTime("%Y-%m-%d", s, absl::UTCTimeZone(), &t, &error)) return t;
  return absl::InvalidArgumentError(absl::StrCat(
      "'", text, "' is not a time: want RFC 3339 like 2026-11-27T10:00:00Z, or a date"));
}

std::string ShortestFloat(float v) {
  if (std::isnan(v) || std::isinf(v)) return Shortest(v);
  for (int precision = 6; precision <= 9; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    float back = 0;
    if (absl::SimpleAtof(s, &back) && back == v) return s;
  }
  return absl::StrFormat("%.9g", v);
}

std::string ValueText(const predlog::v1::Value& value) {
  switch (value.kind_case()) {
    case predlog::v1::Value::kDoubleValue:
      return Shortest(value.double_value());
    case predlog::v1::Value::kFloatValue:
      return ShortestFloat(value.float_value());
    case predlog::v1::Value::kInt64Value:
      return absl::StrCat(value.int64_value());
    case predlog::v1::Value::kBoolValue:
      return value.bool_value() ? "true" : "false";
    case predlog::v1::Value::kStringValue:
      return value.string_value();
    case predlog::v1::Value::kBytesValue:
      return absl::StrCat("0x", absl::BytesToHexString(value.bytes_value()));
    case predlog::v1::Value::KIND_NOT_SET:
      break;
  }
  return "missing";
}

std::string FeatureValue(const predlog::v1::Feature& feature) {
  switch (feature.value_case()) {
    case predlog::v1::Feature::kDoubleValue:
      return Shortest(feature.double_value());
    case predlog::v1::Feature::kFloatValue:
      return ShortestFloat(feature.float_value());
    case predlog::v1::Feature::kInt64Value:
      return absl::StrCat(feature.int64_value());
    case predlog::v1::Feature::kBoolValue:
      return feature.bool_value() ? "true" : "false";
    case predlog::v1::Feature::kStringValue:
      return feature.string_value();
    case predlog::v1::Feature::kBytesValue:
      return absl::StrCat("0x", absl::BytesToHexString(feature.bytes_value()));
    case predlog::v1::Feature::VALUE_NOT_SET:
      break;
  }
  return "missing";
}

std::string OutputText(const predlog::v1::PredictionOutput& output) {
  std::vector<std::string> scores;
  for (float s : output.float_scores()) scores.push_back(ShortestFloat(s));
  for (double s : output.double_scores()) scores.push_back(Shortest(s));
  std::string text = scores.empty() ? "-" : absl::StrJoin(scores, ", ");
  if (!output.label().empty()) absl::StrAppend(&text, " (", output.label(), ")");
  return text;
}

std::string BarRow(absl::string_view name, absl::string_view value, double contribution,
                   double scale, size_t name_width, size_t value_width) {
  constexpr int kBarWidth = 30;
  const int cells =
      scale > 0 ? static_cast<int>(std::lround(std::fabs(contribution) / scale * kBarWidth)) : 0;
  std::string bar;
  // Raising the score and lowering it look different even without color.
  for (int i = 0; i < cells; ++i) bar += contribution >= 0 ? "█" : "░";
  return absl::StrFormat("  %-*s = %-*s  %+.4f  %s", static_cast<int>(name_width), Printable(name),
                         static_cast<int>(value_width), Printable(value), contribution, bar);
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

absl::StatusOr<std::pair<std::string, std::string>> ParseModelRef(absl::string_view text,
                                                                  absl::string_view flag) {
  const size_t at = text.rfind('@');
  if (at == absl::string_view::npos || at == 0 || at + 1 == text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' is not name@version (e.g. credit@v2)"));
  }
  return std::make_pair(std::string(text.substr(0, at)), std::string(text.substr(at + 1)));
}

Progress::Progress(absl::string_view what, uint64_t total)
    : what_(what), total_(total), tty_(isatty(STDERR_FILENO) == 1), start_(absl::Now()) {}

Progress::~Progress() { Done(); }

void Progress::Update(uint64_t done) {
  if (!tty_ || done_) return;
  const absl::Time now = absl::Now();
  if (now - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = now;
  const double seconds = std::max(1e-3, absl::ToDoubleSeconds(now - start_));
  std::string line;
  if (total_ > 0) {
    constexpr int kWidth = 30;
    const double fraction = std::min(1.0, double(done) / double(total_));
    const int filled = static_cast<int>(fraction * kWidth);
    line =
        absl::StrFormat("\r%s [%s%s] %3.0f%% %d/%d  %.0f/s", what_,
                        std::string(size_t(filled), '#'), std::string(size_t(kWidth - filled), '.'),
                        fraction * 100, done, total_, double(done) / seconds);
  } else {
    line = absl::StrFormat("\r%s %d  %.0f/s", what_, done, double(done) / seconds);
  }
  std::cerr << line << std::flush;
}

void Progress::Done() {
  if (tty_ && !done_ && last_draw_ != absl::InfinitePast()) std::cerr << "\n";
  done_ = true;
}

}  // namespace predlog::services
