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

namespace {

// One context per thread, reused (Finish starts it over): allocating and
// initializing an EVP context per digest cost about as much as hashing a
// ~600-byte event, and exports and folds take two digests per record.
Sha256Hasher& ThreadHasher() {
  thread_local Sha256Hasher hasher;
  return hasher;
}

}  // namespace

Digest Sha256(absl::string_view bytes) {
  Sha256Hasher& hasher = ThreadHasher();
  hasher.Update(bytes);
  return hasher.Finish();
}

Digest Sha256(std::initializer_list<absl::string_view> parts) {
  Sha256Hasher& hasher = ThreadHasher();
  for (absl::string_view part : parts) hasher.Update(part);
  return hasher.Finish();
}

Digest ChainNext(const Digest& previous, const Digest& leaf) {
  return Sha256({AsBytes(previous), AsBytes(leaf)});
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

namespace {

// Nibble value of each byte, -1 for a non-hex one: a table instead of three
// range tests per character, since exports parse three digests per record.
constexpr std::array<int8_t, 256> MakeNibbleTable() {
  std::array<int8_t, 256> table{};
  for (int c = 0; c < 256; ++c) {
    table[c] = c >= '0' && c <= '9'   ? static_cast<int8_t>(c - '0')
               : c >= 'a' && c <= 'f' ? static_cast<int8_t>(c - 'a' + 10)
               : c >= 'A' && c <= 'F' ? static_cast<int8_t>(c - 'A' + 10)
                                      : int8_t{-1};
  }
  return table;
}
constexpr std::array<int8_t, 256> kNibble = MakeNibbleTable();

}  // namespace

std::optional<Digest> DigestFromHex(absl::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Digest d;
  int bad = 0;  // any -1 sets the sign bit; checked once at the end
  for (size_t i = 0; i < d.size(); ++i) {
    const int hi = kNibble[static_cast<uint8_t>(hex[2 * i])];
    const int lo = kNibble[static_cast<uint8_t>(hex[2 * i + 1])];
    bad |= hi | lo;
    d[i] = static_cast<uint8_t>(static_cast<unsigned>(hi) << 4 | static_cast<unsigned>(lo));
  }
  if (bad < 0) return std::nullopt;
  return d;
}

}  // namespace predlog::storage
