#include "storage/key_codec.h"

namespace predlog::storage {
namespace {

constexpr uint64_t kSignBit = uint64_t{1} << 63;

template <typename T>
void AppendBigEndian(std::string* out, T v) {
  char buf[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i) {
    buf[sizeof(T) - 1 - i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(buf, sizeof(T));
}

template <typename T>
bool ReadBigEndian(absl::string_view* in, T* v) {
  if (in->size() < sizeof(T)) return false;
  T r = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    r = static_cast<T>((r << 8) | static_cast<uint8_t>((*in)[i]));
  }
  in->remove_prefix(sizeof(T));
  *v = r;
  return true;
}

}  // namespace

void AppendU8(std::string* out, uint8_t v) { out->push_back(static_cast<char>(v)); }
void AppendU32(std::string* out, uint32_t v) { AppendBigEndian(out, v); }
void AppendU64(std::string* out, uint64_t v) { AppendBigEndian(out, v); }
void AppendI64(std::string* out, int64_t v) {
  AppendBigEndian(out, static_cast<uint64_t>(v) ^ kSignBit);
}
void AppendLengthPrefixed(std::string* out, absl::string_view s) {
  AppendU32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}
void AppendTime(std::string* out, absl::Time t) { AppendI64(out, absl::ToUnixMicros(t)); }

bool ReadU8(absl::string_view* in, uint8_t* v) {
  if (in->empty()) return false;
  *v = static_cast<uint8_t>((*in)[0]);
  in->remove_prefix(1);
  return true;
}
bool ReadU32(absl::string_view* in, uint32_t* v) { return ReadBigEndian(in, v); }
bool ReadU64(absl::string_view* in, uint64_t* v) { return ReadBigEndian(in, v); }
bool ReadI64(absl::string_view* in, int64_t* v) {
  uint64_t u;
  if (!ReadBigEndian(in, &u)) return false;
  *v = static_cast<int64_t>(u ^ kSignBit);
  return true;
}
bool ReadLengthPrefixed(absl::string_view* in, absl::string_view* s) {
  uint32_t n;
  absl::string_view rest = *in;
  if (!ReadU32(&rest, &n) || !ReadBytes(&rest, n, s)) return false;
  *in = rest;
  return true;
}
bool ReadTime(absl::string_view* in, absl::Time* t) {
  int64_t micros;
  if (!ReadI64(in, &micros)) return false;
  *t = absl::FromUnixMicros(micros);
  return true;
}
bool ReadBytes(absl::string_view* in, size_t n, absl::string_view* bytes) {
  if (in->size() < n) return false;
  *bytes = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}

std::string IndexKey(uint64_t index) {
  std::string key;
  AppendU64(&key, index);
  return key;
}

bool DecodeIndexKey(absl::string_view key, uint64_t* index) {
  return key.size() == 8 && ReadU64(&key, index);
}

std::string PrefixSuccessor(absl::string_view prefix) {
  std::string s(prefix);
  while (!s.empty()) {
    const uint8_t last = static_cast<uint8_t>(s.back());
    if (last != 0xff) {
      s.back() = static_cast<char>(last + 1);
      return s;
    }
    s.pop_back();
  }
  return s;
}

}  // namespace predlog::storage
