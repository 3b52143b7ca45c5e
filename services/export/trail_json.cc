#include "services/export/trail_json.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/type_resolver.h"
#include "google/protobuf/util/type_resolver_util.h"
#include "predlog/v1/audit.pb.h"
#include "storage/deterministic_bytes.h"

namespace predlog::services {

namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::Timestamp;

// Protobuf's Timestamp range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

// Appends the digits of a %g conversion: `digits` (no leading zeros, the
// first is non-zero unless the value is 0) with decimal exponent `exponent`,
// trailing zeros dropped, in %g's fixed or scientific style for `precision`.
void AppendGDigits(bool negative, const char* digits, int n, int exponent, int precision,
                   std::string* out) {
  while (n > 1 && digits[n - 1] == '0') --n;
  if (negative) out->push_back('-');
  if (exponent < -4 || exponent >= precision) {
    out->push_back(digits[0]);
    if (n > 1) {
      out->push_back('.');
      out->append(digits + 1, n - 1);
    }
    out->push_back('e');
    out->push_back(exponent < 0 ? '-' : '+');
    const int magnitude = exponent < 0 ? -exponent : exponent;
    if (magnitude < 10) out->push_back('0');
    char buf[8];
    const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), magnitude);
    out->append(buf, r.ptr);
  } else if (exponent >= 0) {
    if (n <= exponent + 1) {
      out->append(digits, n);
      out->append(exponent + 1 - n, '0');
    } else {
      out->append(digits, exponent + 1);
      out->push_back('.');
      out->append(digits + exponent + 1, n - exponent - 1);
    }
  } else {
    out->append("0.");
    out->append(-exponent - 1, '0');
    out->append(digits, n);
  }
}

// printf("%.17g") of a finite double, computed exactly in 128-bit integers
// (libstdc++'s precision to_chars costs ~100 ns and glibc's printf ~350 ns on
// this VM; a 1 KB prediction has dozens of doubles that need 17 digits).
// False when the arithmetic does not fit (|value| beyond ~1e-6..1e38 in the
// worst case, subnormals): the caller uses to_chars then.
bool AppendG17Exact(double value, std::string* out) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const int biased = static_cast<int>((bits >> 52) & 0x7ff);
  if (biased == 0 || biased == 0x7ff) return false;
  const uint64_t mantissa = (bits & ((uint64_t{1} << 52) - 1)) | (uint64_t{1} << 52);
  const int e = biased - 1075;  // |value| = mantissa * 2^e
  using u128 = unsigned __int128;
  struct Powers {
    u128 of10[23];
    Powers() {
      of10[0] = 1;
      for (int i = 1; i < 23; ++i) of10[i] = of10[i - 1] * 10;
    }
  };
  static const Powers kPowers;
  const auto pow10 = [](int k) { return kPowers.of10[k]; };
  const u128 lo = pow10(16), hi = pow10(17);
  int exponent = static_cast<int>(std::floor(std::log10(std::fabs(value))));
  for (int attempt = 0; attempt < 4; ++attempt) {
    const int s = 16 - exponent;  // want round(|value| * 10^s) in [10^16, 10^17)
    u128 r;
    if (s >= 0) {
      if (s > 22) return false;
      const u128 n = static_cast<u128>(mantissa) * pow10(s);  // < 2^53 * 10^22 < 2^127
      if (e >= 0) {
        if (e > 8) return false;  // cannot happen for |value| < 1e17; stay safe
        r = n << e;
      } else {
        const int shift = -e;
        if (shift >= 127) return false;
        r = n >> shift;
        const u128 rem = n & ((u128{1} << shift) - 1);
        const u128 half = u128{1} << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) ++r;
      }
    } else {
      if (-s > 22 || e > 73) return false;
      const u128 v = static_cast<u128>(mantissa) << e;  // < 2^127
      const u128 d = pow10(-s);
      r = v / d;
      const u128 rem = v % d;
      if (2 * rem > d || (2 * rem == d && (r & 1))) ++r;
    }
    if (r < lo) {
      --exponent;
      continue;
    }
    if (r >= hi) {
      ++exponent;
      continue;
    }
    // r < 10^17 < 2^57: 64-bit arithmetic (128-bit division is a libcall).
    uint64_t q = static_cast<uint64_t>(r);
    char digits[17];
    for (int i = 16; i >= 0; --i) {
      digits[i] = static_cast<char>('0' + q % 10);
      q /= 10;
    }
    AppendGDigits(std::signbit(value), digits, 17, exponent, 17, out);
    return true;
  }
  return false;
}

// printf("%.<precision>g") of `value` through the shortest round-trip digits
// when they prove the result: for a normal number whose shortest digits D are
// at most `precision` (FLT_DIG/DBL_DIG) long, D survives the trip to binary
// and back at that precision, so "%.<precision>g" prints exactly D and it
// round-trips; with longer D no <= precision digit string round-trips, and
// protobuf prints "%.<fallback>g". Subnormals have fewer significant bits than
// the theorem needs, so they take the slow path (protobuf's own rule there:
// doubles re-parse the "%.15g" output; floats always fail safe_strtof, whose
// strtof reports ERANGE for subnormal results).
template <typename T>
void AppendPrintfG(T value, int precision, int fallback, bool subnormal_fallback,
                   std::string* out) {
  char buf[64];
  char* const buf_end = buf + sizeof(buf);
  const bool subnormal = value != 0 && std::fpclassify(value) == FP_SUBNORMAL;
  if (!subnormal) {
    const std::to_chars_result r =
        std::to_chars(buf, buf_end, value, std::chars_format::scientific);
    // buf is [-]d[.ddd]e(+|-)dd[d]
    const char* p = buf;
    const bool negative = *p == '-';
    if (negative) ++p;
    const char* e = std::find(p, static_cast<const char*>(r.ptr), 'e');
    char digits[32];
    int n = 0;
    for (const char* q = p; q < e; ++q) {
      if (*q != '.') digits[n++] = *q;
    }
    if (n <= precision) {
      int exponent = 0;
      std::from_chars(e + (e[1] == '+' ? 2 : 1), r.ptr, exponent);
      AppendGDigits(negative, digits, n, exponent, precision, out);
      return;
    }
    if constexpr (std::is_same_v<T, double>) {
      if (fallback == 17 && AppendG17Exact(value, out)) return;
    }
  } else if (!subnormal_fallback) {
    const std::to_chars_result r =
        std::to_chars(buf, buf_end, value, std::chars_format::general, precision);
    T parsed{};
    std::from_chars(buf, r.ptr, parsed);
    if (parsed == value) {
      out->append(buf, r.ptr);
      return;
    }
  }
  const std::to_chars_result r =
      std::to_chars(buf, buf_end, value, std::chars_format::general, fallback);
  out->append(buf, r.ptr);
}

constexpr char kHexDigits[] = "0123456789abcdef";

void AppendU16Escape(uint32_t unit, std::string* out) {
  char esc[6] = {'\\',
                 'u',
                 kHexDigits[(unit >> 12) & 0xf],
                 kHexDigits[(unit >> 8) & 0xf],
                 kHexDigits[(unit >> 4) & 0xf],
                 kHexDigits[unit & 0xf]};
  out->append(esc, sizeof(esc));
}

// Code points >= 0xa0 that protobuf's JsonEscaping escapes anyway (invisible
// and formatting characters, escaped "to prevent security bugs in javascript").
bool EscapedAboveLatin1(uint32_t cp) {
  switch (cp) {
    case 0xfeff:
    case 0xfff9:
    case 0xfffa:
    case 0xfffb:
    case 0x00ad:
    case 0x06dd:
    case 0x070f:
    case 0x17b4:
    case 0x17b5:
      return true;
    default:
      return (cp >= 0x0600 && cp <= 0x0603) || (cp >= 0x200b && cp <= 0x200f) ||
             (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2064) ||
             (cp >= 0x206a && cp <= 0x206f) || cp == 0xe0001 || (cp >= 0x1d173 && cp <= 0x1d17a) ||
             (cp >= 0xe0020 && cp <= 0xe007f);
  }
}

// Decodes one well-formed UTF-8 sequence at s[i] (strict: no overlongs, no
// surrogates, <= U+10FFFF). Returns its length, 0 when malformed.
int DecodeUtf8(const unsigned char* s, size_t left, uint32_t* cp) {
  const unsigned char c = s[0];
  int len;
  uint32_t min;
  if (c < 0xc2) return 0;  // continuation byte or overlong 2-byte lead
  if (c < 0xe0) {
    len = 2, min = 0x80, *cp = c & 0x1f;
  } else if (c < 0xf0) {
    len = 3, min = 0x800, *cp = c & 0x0f;
  } else if (c < 0xf5) {
    len = 4, min = 0x10000, *cp = c & 0x07;
  } else {
    return 0;
  }
  if (left < static_cast<size_t>(len)) return 0;
  for (int k = 1; k < len; ++k) {
    if ((s[k] & 0xc0) != 0x80) return 0;
    *cp = (*cp << 6) | (s[k] & 0x3f);
  }
  if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff)) return 0;
  return len;
}

// Writes days since 1970-01-01 as a civil date (proleptic Gregorian).
void CivilFromDays(int64_t z, int64_t* year, unsigned* month, unsigned* day) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *day = doy - (153 * mp + 2) / 5 + 1;
  *month = mp < 10 ? mp + 3 : mp - 9;
  *year = static_cast<int64_t>(yoe) + era * 400 + (*month <= 2 ? 1 : 0);
}

void AppendDigits(uint64_t value, int width, std::string* out) {
  char buf[20];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  out->append(buf, width);
}

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

bool EmitModelRegistered(const predlog::v1::ModelRegistered& m, std::string* out) {
  ObjectWriter w(out);
  if (m.has_model() && !EmitModelRef(m.model(), w.Key("\"model\":"))) return false;
  if (!w.String("\"framework\":", m.framework())) return false;
  w.QuotedInt("\"artifactSizeBytes\":", m.artifact_size_bytes());
  if (m.has_provenance() && !EmitProvenance(m.provenance(), w.Key("\"provenance\":"))) {
    return false;
  }
  return w.String("\"description\":", m.description());
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
  return !d.has_pipeline() || EmitPipelineRef(d.pipeline(), w.Key("\"pipeline\":"));
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

bool EmitEvent(const predlog::v1::AuditEvent& e, std::string* out) {
  using E = predlog::v1::AuditEvent;
  ObjectWriter w(out);
  if (!w.String("\"eventId\":", e.event_id()) ||
      !w.Time("\"recordedAt\":", e.has_recorded_at(), e.recorded_at()) ||
      !w.String("\"actor\":", e.actor())) {
    return false;
  }
  if (e.schema_version() != 0) AppendInt(e.schema_version(), w.Key("\"schemaVersion\":"));
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
    case E::kSourceReset:
      return EmitSourceReset(e.source_reset(), w.Key("\"sourceReset\":"));
    case E::kSourceGap:
      return EmitSourceGap(e.source_gap(), w.Key("\"sourceGap\":"));
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
          Mappable(e.prediction_logged().has_served_at(), e.prediction_logged().served_at()));
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

void AppendJsonDouble(double value, std::string* out) {
  AppendPrintfG(value, DBL_DIG, DBL_DIG + 2, /*subnormal_fallback=*/false, out);
}

void AppendJsonFloat(float value, std::string* out) {
  AppendPrintfG(value, FLT_DIG, FLT_DIG + 3, /*subnormal_fallback=*/true, out);
}

absl::string_view NonFiniteName(double value) {
  if (std::isnan(value)) return "NaN";
  return value > 0 ? "Infinity" : "-Infinity";
}

void AppendBase64(absl::string_view bytes, std::string* out) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const size_t start = out->size();
  out->resize(start + (bytes.size() + 2) / 3 * 4);
  char* dst = &(*out)[start];
  const auto* src = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{src[i]} << 16) | (uint32_t{src[i + 1]} << 8) | src[i + 2];
    *dst++ = kAlphabet[v >> 18];
    *dst++ = kAlphabet[(v >> 12) & 63];
    *dst++ = kAlphabet[(v >> 6) & 63];
    *dst++ = kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    const bool two = i + 1 < bytes.size();
    const uint32_t v = (uint32_t{src[i]} << 16) | (two ? uint32_t{src[i + 1]} << 8 : 0);
    *dst++ = kAlphabet[v >> 18];
    *dst++ = kAlphabet[(v >> 12) & 63];
    *dst++ = two ? kAlphabet[(v >> 6) & 63] : '=';
    *dst++ = '=';
  }
}

bool AppendJsonString(absl::string_view value, std::string* out) {
  const size_t mark = out->size();
  out->push_back('"');
  const auto* s = reinterpret_cast<const unsigned char*>(value.data());
  const size_t n = value.size();
  // Bytes copied as they are: printable ASCII but for " \\ < >.
  static const auto* const kPlain = [] {
    auto* plain = new std::array<bool, 256>{};
    for (int c = 0x20; c < 0x7f; ++c) plain->at(c) = c != '"' && c != '\\' && c != '<' && c != '>';
    return plain;
  }();
  size_t run = 0;  // start of the pending run of bytes copied unchanged
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    if ((*kPlain)[c]) {
      ++i;
      continue;
    }
    out->append(value.data() + run, i - run);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out->append("\\\"");
          break;
        case '\\':
          out->append("\\\\");
          break;
        case '\b':
          out->append("\\b");
          break;
        case '\t':
          out->append("\\t");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\f':
          out->append("\\f");
          break;
        case '\r':
          out->append("\\r");
          break;
        default:  // other C0 controls, '<', '>', DEL
          AppendU16Escape(c, out);
      }
      ++i;
      run = i;
      continue;
    }
    uint32_t cp = 0;
    const int len = DecodeUtf8(s + i, n - i, &cp);
    if (len == 0) {
      out->resize(mark);
      return false;
    }
    if (cp < 0xa0) {  // C1 controls
      AppendU16Escape(cp, out);
    } else if (EscapedAboveLatin1(cp)) {
      if (cp < 0x10000) {
        AppendU16Escape(cp, out);
      } else {
        const uint32_t v = cp - 0x10000;
        AppendU16Escape(0xd800 + (v >> 10), out);
        AppendU16Escape(0xdc00 + (v & 0x3ff), out);
      }
    } else {
      out->append(value.data() + i, len);
    }
    i += len;
    run = i;
  }
  out->append(value.data() + run, n - run);
  out->push_back('"');
  return true;
}

bool AppendTimestamp(const Timestamp& ts, std::string* out) {
  const int64_t seconds = ts.seconds();
  const int32_t nanos = ts.nanos();
  if (seconds < kMinTimestampSeconds || seconds > kMaxTimestampSeconds || nanos < 0 ||
      nanos > 999'999'999) {
    return false;
  }
  int64_t days = seconds / 86400;
  int64_t second_of_day = seconds % 86400;
  if (second_of_day < 0) {
    second_of_day += 86400;
    --days;
  }
  int64_t year;
  unsigned month, day;
  CivilFromDays(days, &year, &month, &day);
  out->push_back('"');
  AppendDigits(static_cast<uint64_t>(year), 4, out);
  out->push_back('-');
  AppendDigits(month, 2, out);
  out->push_back('-');
  AppendDigits(day, 2, out);
  out->push_back('T');
  AppendDigits(static_cast<uint64_t>(second_of_day / 3600), 2, out);
  out->push_back(':');
  AppendDigits(static_cast<uint64_t>(second_of_day / 60 % 60), 2, out);
  out->push_back(':');
  AppendDigits(static_cast<uint64_t>(second_of_day % 60), 2, out);
  if (nanos != 0) {
    out->push_back('.');
    if (nanos % 1'000'000 == 0) {
      AppendDigits(nanos / 1'000'000, 3, out);
    } else if (nanos % 1'000 == 0) {
      AppendDigits(nanos / 1'000, 6, out);
    } else {
      AppendDigits(nanos, 9, out);
    }
  }
  out->append("Z\"");
  return true;
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
          {7, "eventBytes"}}},
        {v1::AuditEvent::descriptor(),
         {{1, "eventId"},
          {2, "recordedAt"},
          {3, "actor"},
          {4, "schemaVersion"},
          {10, "predictionLogged"},
          {11, "modelRegistered"},
          {12, "modelDeployed"},
          {13, "entityChanged"},
          {14, "datasetRegistered"},
          {20, "sourceReset"},
          {21, "sourceGap"}}},
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
          {5, "description"}}},
        {v1::ModelDeployed::descriptor(),
         {{1, "route"}, {2, "model"}, {3, "trafficFraction"}, {4, "reason"}}},
        {v1::EntityChanged::descriptor(),
         {{1, "entityType"},
          {2, "entityId"},
          {3, "setFields"},
          {4, "unsetFields"},
          {5, "deleted"}}},
        {v1::DatasetRegistered::descriptor(),
         {{1, "dataset"}, {2, "derivedFrom"}, {3, "pipeline"}}},
        {v1::SourceReset::descriptor(),
         {{1, "previousIncarnation"},
          {2, "previousLastOffset"},
          {3, "newIncarnation"},
          {4, "newFirstOffset"}}},
        {v1::SourceGap::descriptor(),
         {{1, "incarnation"}, {2, "firstMissingOffset"}, {3, "lastMissingOffset"}, {4, "reason"}}},
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

void AppendUtf8(uint32_t code_point, std::string* out) {
  const uint32_t cp = code_point;
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

}  // namespace predlog::services
