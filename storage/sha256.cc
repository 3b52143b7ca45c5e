#include "storage/sha256.h"

#include <openssl/evp.h>

#include "storage/logging.h"

namespace predlog::storage {

// EVP calls fail only when OpenSSL cannot allocate or its SHA-256
// implementation is missing: never because of the input. So they are
// checked as invariants instead of returned as Status.

namespace {

// SHA-256 fetched from OpenSSL's provider once: initializing a context with
// the legacy EVP_sha256() would look it up again on every initialization,
// which doubles the cost of hashing a small event.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  PREDLOG_CHECK(md != nullptr) << "EVP_MD_fetch SHA2-256";
  return md;
}

}  // namespace

void Sha256Hasher::CtxDeleter::operator()(evp_md_ctx_st* ctx) const { EVP_MD_CTX_free(ctx); }

Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new()) {
  PREDLOG_CHECK(ctx_ != nullptr) << "EVP_MD_CTX_new";
  PREDLOG_CHECK(EVP_DigestInit_ex(ctx_.get(), Sha256Md(), nullptr) == 1) << "EVP_DigestInit_ex";
}

Sha256Hasher::~Sha256Hasher() = default;

void Sha256Hasher::Update(absl::string_view bytes) {
  PREDLOG_CHECK(EVP_DigestUpdate(ctx_.get(), bytes.data(), bytes.size()) == 1)
      << "EVP_DigestUpdate";
}

Digest Sha256Hasher::Finish() {
  Digest d;
  unsigned int len = 0;
  PREDLOG_CHECK(EVP_DigestFinal_ex(ctx_.get(), d.data(), &len) == 1 && len == d.size())
      << "EVP_DigestFinal_ex";
  PREDLOG_CHECK(EVP_DigestInit_ex(ctx_.get(), Sha256Md(), nullptr) == 1) << "EVP_DigestInit_ex";
  return d;
}

Digest Sha256(absl::string_view bytes) {
  Sha256Hasher hasher;
  hasher.Update(bytes);
  return hasher.Finish();
}

Digest ChainNext(const Digest& previous, const Digest& leaf) {
  Sha256Hasher hasher;
  hasher.Update(AsBytes(previous));
  hasher.Update(AsBytes(leaf));
  return hasher.Finish();
}

std::string ToHex(const Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (size_t i = 0; i < digest.size(); ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return out;
}

std::optional<Digest> DigestFromHex(absl::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Digest d;
  for (size_t i = 0; i < d.size(); ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return d;
}

}  // namespace predlog::storage
