// SHA-256 (OpenSSL libcrypto) for leaves, the hash chain and artifact digests.
#ifndef PREDLOG_STORAGE_SHA256_H_
#define PREDLOG_STORAGE_SHA256_H_

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

// OpenSSL's digest context, forward-declared so users of this header do not
// include OpenSSL (storage links it privately).
struct evp_md_ctx_st;

namespace predlog::storage {

using Digest = std::array<uint8_t, 32>;

// Incremental SHA-256 for inputs that arrive in pieces (artifact uploads of
// hundreds of MB): Update(a); Update(b); Finish() == Sha256(a + b).
// Finish() returns the digest of everything passed to Update since
// construction or the previous Finish(), and starts over with an empty input.
// Single-threaded (externally synchronized).
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;

  void Update(absl::string_view bytes);
  Digest Finish();

 private:
  struct CtxDeleter {
    void operator()(evp_md_ctx_st* ctx) const;
  };
  std::unique_ptr<evp_md_ctx_st, CtxDeleter> ctx_;
};

// One-shot SHA-256 of `bytes`.
Digest Sha256(absl::string_view bytes);
// One-shot SHA-256 of the concatenation of `parts`, without copying them.
Digest Sha256(std::initializer_list<absl::string_view> parts);

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
