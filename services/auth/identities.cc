// Identities file (predlogd --identities FILE): one identity per line.
//
//   file       := line*
//   line       := blank* [identity blank*] [comment] ("\n" | end of file)
//   comment    := "#" any*                -- a whole line, or after the fields
//   identity   := name blank+ roles blank+ credential
//   blank      := " " | "\t"              ("\r" before "\n" is ignored)
//   name       := 1 to 128 of [A-Za-z0-9._@:/+-]
//                                         -- what events record as AuditEvent.actor
//   roles      := role ("," role)*        -- no spaces, no repeats
//   role       := "writer" | "support" | "auditor" | "admin"
//   credential := "token-sha256:" hex64   -- the SHA-256 of the bearer token's bytes,
//                                            64 hex digits (as `predlog auth new-token`
//                                            prints the line)
//               | "cert:" certname        -- a client certificate verified against
//                                            --tls_client_ca whose subject CN, or one
//                                            of whose subject alternative names (DNS,
//                                            URI, e-mail, IP as gRPC reports them), is
//                                            certname exactly
//   certname   := 1 or more of any character but blanks and "#"
//
// One name may be on several lines (several credentials, e.g. while a token
// is rotated), always with the same roles. A token hash or a certificate name
// belongs to one line only. A credential that is not one of the two forms is
// refused; one that holds a token itself ("plt_...", or token-sha256: with
// anything but 64 hex digits) is refused as a token in plain text, and its
// value is never repeated in the message.
//
// Example:
//   # serving code
//   limits-api   writer            token-sha256:3f0a...e19c
//   # people
//   alice        support,auditor   token-sha256:8be1...02d4
//   release-bot  admin             cert:release-bot.ml.internal
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/auth/auth.h"

namespace predlog::auth {
namespace {

constexpr absl::string_view kTokenCredential = "token-sha256:";
constexpr absl::string_view kCertificateCredential = "cert:";
constexpr size_t kMaxNameBytes = 128;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// The line's fields, up to a comment.
std::vector<absl::string_view> Fields(absl::string_view line) {
  std::vector<absl::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && IsBlank(line[i])) ++i;
    if (i == line.size() || line[i] == '#') break;
    const size_t start = i;
    while (i < line.size() && !IsBlank(line[i]) && line[i] != '#') ++i;
    fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

// A token ("plt_" and its 43 characters), alone or after a "kind:" prefix.
bool HoldsToken(absl::string_view field) {
  if (!absl::StartsWith(field, kTokenPrefix)) {
    const size_t colon = field.find(':');
    if (colon != absl::string_view::npos) field.remove_prefix(colon + 1);
  }
  return absl::StartsWith(field, kTokenPrefix) && field.size() >= kTokenPrefix.size() + 43;
}

bool IsHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

absl::Status CheckIdentityName(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("the identity name is empty");
  if (name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the identity name is ", name.size(), " bytes; at most ", kMaxNameBytes));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && !absl::StrContains("._@:/+-", c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the identity name \"", absl::CHexEscape(name),
                       "\" may only hold letters, digits and . _ @ : / + -"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NewToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("the random number generator failed (OpenSSL RAND_bytes)");
  }
  std::string encoded;
  absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)),
                            &encoded);
  OPENSSL_cleanse(bytes, sizeof(bytes));
  return absl::StrCat(kTokenPrefix, encoded);
}

storage::Digest TokenHash(absl::string_view token) { return storage::Sha256(token); }

std::string IdentityLine(absl::string_view name, RoleSet roles, const storage::Digest& token_hash) {
  return absl::StrCat(name, " ", roles.ToString(), " ", kTokenCredential,
                      storage::ToHex(token_hash));
}

absl::StatusOr<Identities> Identities::Parse(absl::string_view text, absl::string_view file) {
  Identities out;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    absl::ConsumeSuffix(&line, "\r");
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("identities file ", file, " line ", line_number, ": ", why));
    };
    const std::vector<absl::string_view> fields = Fields(line);
    if (fields.empty()) continue;
    // A token anywhere on the line is refused before anything else is said
    // about it, and never repeated.
    for (absl::string_view field : fields) {
      if (HoldsToken(field)) {
        return bad(absl::StrCat(
            "holds a bearer token in plain text; the file keeps only its SHA-256: write ",
            kTokenCredential,
            "<64 hex digits> (predlog auth new-token prints the line), and "
            "treat that token as leaked"));
      }
    }
    if (fields.size() != 3) {
      return bad(absl::StrCat("want NAME ROLES CREDENTIAL (3 fields), found ", fields.size()));
    }
    const absl::string_view name = fields[0];
    if (absl::Status ok = CheckIdentityName(name); !ok.ok()) return bad(ok.message());
    absl::StatusOr<RoleSet> roles = ParseRoles(fields[1]);
    if (!roles.ok()) return bad(roles.status().message());
    size_t identity = out.identities_.size();
    for (size_t i = 0; i < out.identities_.size(); ++i) {
      if (out.identities_[i].name != name) continue;
      if (out.identities_[i].roles != *roles) {
        return bad(absl::StrCat(name, " is given the roles ", roles->ToString(), " here and ",
                                out.identities_[i].roles.ToString(),
                                " on an earlier line; an identity has one set of roles"));
      }
      identity = i;
    }
    absl::string_view credential = fields[2];
    if (absl::ConsumePrefix(&credential, kTokenCredential)) {
      if (credential.size() != 64 || !IsHex(credential)) {
        return bad(absl::StrCat(kTokenCredential,
                                " wants the token's SHA-256 as 64 hex digits, "
                                "not ",
                                credential.size(), " characters",
                                IsHex(credential) ? "" : " that are not all hex",
                                " (if that is the token itself, it is in plain text: store "
                                "its hash, as predlog auth new-token prints it)"));
      }
      const storage::Digest hash = *storage::DigestFromHex(credential);
      for (const TokenEntry& t : out.tokens_) {
        if (t.hash == hash) {
          return bad(absl::StrCat("this token hash is already listed for ",
                                  out.identities_[t.identity].name,
                                  "; one token authenticates one identity"));
        }
      }
      out.tokens_.push_back({hash, identity});
    } else if (absl::ConsumePrefix(&credential, kCertificateCredential)) {
      if (credential.empty()) return bad("cert: wants the certificate's CN or a SAN after it");
      for (const CertificateEntry& c : out.certificates_) {
        if (c.name == credential) {
          return bad(absl::StrCat("the certificate name ", credential, " is already listed for ",
                                  out.identities_[c.identity].name));
        }
      }
      out.certificates_.push_back({std::string(credential), identity});
    } else {
      return bad(absl::StrCat("the credential must be ", kTokenCredential, "<hex> or ",
                              kCertificateCredential, "<name>"));
    }
    if (identity == out.identities_.size()) {
      out.identities_.push_back({std::string(name), *roles});
    }
  }
  if (out.identities_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "identities file ", file, " holds no identity: predlogd would refuse every call"));
  }
  return out;
}

absl::StatusOr<Identities> Identities::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    const std::string why = absl::StrCat("identities file ", path, ": ", std::strerror(error));
    if (error == ENOENT) return absl::NotFoundError(why);
    if (error == EACCES) return absl::PermissionDeniedError(why);
    return absl::InvalidArgumentError(why);
  }
  std::ostringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

const Identities::Identity* Identities::FindByToken(absl::string_view token) const {
  const storage::Digest hash = TokenHash(token);
  // Every stored hash is compared whole, and the loop never stops early.
  const Identity* found = nullptr;
  for (const TokenEntry& t : tokens_) {
    const bool equal = CRYPTO_memcmp(t.hash.data(), hash.data(), hash.size()) == 0;
    if (equal) found = &identities_[t.identity];
  }
  return found;
}

const Identities::Identity* Identities::FindByCertificate(
    absl::Span<const std::string> certificate_names, std::string* matched) const {
  for (const std::string& name : certificate_names) {
    for (const CertificateEntry& c : certificates_) {
      if (c.name == name) {
        if (matched != nullptr) *matched = name;
        return &identities_[c.identity];
      }
    }
  }
  return nullptr;
}

}  // namespace predlog::auth
