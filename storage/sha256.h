// SHA-256 (OpenSSL libcrypto) for leaves, the hash chain and artifact digests.
#ifndef PREDLOG_STORAGE_SHA256_H_
#define PREDLOG_STORAGE_SHA256_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace predlog::storage {

using Digest = std::array<uint8_t, 32>;

Digest Sha256(absl::string_view bytes);

// The hash chain link: chain_i = SHA-256(chain_{i-1} || leaf_i), with
// chain_{-1} = 32 zero bytes (kChainGenesis).
Digest ChainNext(const Digest& previous, const Digest& leaf);
inline constexpr Digest kChainGenesis{};

// Lower-case hex, 64 characters.
std::string ToHex(const Digest& digest);
// Parses 64 hex characters (either case); nullopt otherwise.
std::optional<Digest> DigestFromHex(absl::string_view hex);

inline absl::string_view AsBytes(const Digest& d) {
  return absl::string_view(reinterpret_cast<const char*>(d.data()), d.size());
}

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_SHA256_H_
