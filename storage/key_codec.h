// Order-preserving encodings for RocksDB keys, and the small fixed-width codec
// shared by stored values. Integers are big-endian so byte order equals numeric
// order; signed values (times) have their sign bit flipped for the same reason.
// Strings inside keys are length-prefixed (u32 BE) so one key's string can never
// be a prefix that runs into the next field.
//
// Appenders write into a caller-owned std::string so hot paths reuse one buffer
// instead of allocating per key. Readers consume from the front of a string_view
// and return false when the input is too short (corrupt or foreign bytes).
#ifndef PREDLOG_STORAGE_KEY_CODEC_H_
#define PREDLOG_STORAGE_KEY_CODEC_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace predlog::storage {

void AppendU8(std::string* out, uint8_t v);
void AppendU32(std::string* out, uint32_t v);
void AppendU64(std::string* out, uint64_t v);
// Signed, order-preserving: INT64_MIN encodes as 00..00.
void AppendI64(std::string* out, int64_t v);
// u32 BE length, then the bytes.
void AppendLengthPrefixed(std::string* out, absl::string_view s);
// Microseconds since the Unix epoch, order-preserving (AppendI64).
void AppendTime(std::string* out, absl::Time t);

bool ReadU8(absl::string_view* in, uint8_t* v);
bool ReadU32(absl::string_view* in, uint32_t* v);
bool ReadU64(absl::string_view* in, uint64_t* v);
bool ReadI64(absl::string_view* in, int64_t* v);
bool ReadLengthPrefixed(absl::string_view* in, absl::string_view* s);
bool ReadTime(absl::string_view* in, absl::Time* t);
// Consumes exactly n bytes.
bool ReadBytes(absl::string_view* in, size_t n, absl::string_view* bytes);

// The 8-byte big-endian key of a shard index.
std::string IndexKey(uint64_t index);
// Decodes IndexKey(); false if `key` is not 8 bytes.
bool DecodeIndexKey(absl::string_view key, uint64_t* index);

// The smallest key greater than every key with this prefix, or "" if none
// exists (prefix of all 0xff). Used as an exclusive scan bound.
std::string PrefixSuccessor(absl::string_view prefix);

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_KEY_CODEC_H_
