// The scalar renderings of services/export/trail_json.h: numbers, base64,
// strings and timestamps exactly as protobuf 3.21's JSON printer writes them
// (the TrailLine emitter in trail_json.cc and the CSV export use them).
#include <algorithm>
#include <array>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "services/export/trail_json.h"
#include "services/export/trail_json_internal.h"

namespace predlog::services {

namespace {

using ::google::protobuf::Timestamp;
using ::predlog::services::export_internal::kMaxTimestampSeconds;
using ::predlog::services::export_internal::kMinTimestampSeconds;

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

}  // namespace

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
