// Who may do what on predlogd: identities (a name, its roles, and the
// credential that proves a caller is it), the role table (which roles may call
// each gRPC method), and the check of one call against both.
//
// An identity is authenticated by a bearer token (the `authorization: Bearer
// <token>` metadata of a call) or by a client certificate that the TLS
// handshake verified against predlogd's --tls_client_ca. predlogd keeps only
// the SHA-256 of each token (the identities file format is written out at the
// top of identities.cc). A token is 32 random bytes (kTokenPrefix + unpadded
// base64url), so its plain SHA-256 cannot be inverted by guessing: slow,
// salted hashes are for passwords people choose, not for 256-bit secrets.
//
// Without an identities file predlogd knows nobody: Authorizer() is disabled,
// every call is allowed and its Caller is unauthenticated (the zero-config
// default, which predlogd only serves on loopback).
//
// gRPC glue (the metadata processor that enforces this on every call, and the
// Caller of a running call) is in grpc_auth.h.
#ifndef PREDLOG_SERVICES_AUTH_AUTH_H_
#define PREDLOG_SERVICES_AUTH_AUTH_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "storage/sha256.h"

namespace predlog::auth {

enum class Role : uint8_t { kWriter, kSupport, kAuditor, kAdmin };
inline constexpr Role kAllRoles[] = {Role::kWriter, Role::kSupport, Role::kAuditor, Role::kAdmin};

// "writer", "support", "auditor", "admin".
absl::string_view RoleName(Role role);

// A set of roles. A value type; thread-compatible.
class RoleSet {
 public:
  constexpr RoleSet() = default;
  constexpr RoleSet(std::initializer_list<Role> roles) {
    for (Role r : roles) bits_ |= Bit(r);
  }
  constexpr bool Has(Role role) const { return (bits_ & Bit(role)) != 0; }
  constexpr bool Intersects(RoleSet other) const { return (bits_ & other.bits_) != 0; }
  constexpr bool empty() const { return bits_ == 0; }
  void Add(Role role) { bits_ |= Bit(role); }
  // The role names in the order of kAllRoles, ','-joined ("writer,support");
  // "no role" when empty.
  std::string ToString() const;
  friend constexpr bool operator==(RoleSet a, RoleSet b) { return a.bits_ == b.bits_; }
  friend constexpr bool operator!=(RoleSet a, RoleSet b) { return a.bits_ != b.bits_; }

 private:
  static constexpr uint8_t Bit(Role role) { return uint8_t{1} << static_cast<uint8_t>(role); }
  uint8_t bits_ = 0;
};

// Parses "writer,support" (no spaces, at least one role, no repeats).
// INVALID_ARGUMENT names the unknown or repeated role.
absl::StatusOr<RoleSet> ParseRoles(absl::string_view text);

// ---------------------------------------------------------------- role table

// Who may call a method.
enum class Access : uint8_t {
  kOpen,         // anyone, authenticated or not (gRPC health)
  kAnyIdentity,  // any authenticated identity, whatever its roles (reflection)
  kRoles,        // an identity holding one of `roles`
};

// Whether a call leaves a record in the access trail.
enum class Trail : uint8_t {
  kNone,
  // The call reads recorded data (a prediction, a replay, a state as of a
  // cut, an export, the registry, the trail): before it runs, predlogd
  // appends an AccessRecorded to predlog.access (services/server/access_trail.h).
  kRecorded,
};

struct MethodAccess {
  // The gRPC path: "/predlog.v1.Audit/ExportTrail".
  absl::string_view method;
  Access access;
  RoleSet roles;  // kRoles only
  Trail trail = Trail::kNone;
};

// Every method predlogd serves, by path. A method that is not here may be
// called by no one (PERMISSION_DENIED "no role may call ..."): a new RPC is
// denied until it is given its roles here (tests/services/auth/ checks every
// method of proto/predlog/v1 has an entry).
absl::Span<const MethodAccess> RoleTable();
// The entry for `method`; nullptr when it has none.
const MethodAccess* FindMethodAccess(absl::string_view method);

// ---------------------------------------------------------------- tokens

// Every token starts with this, so that a token pasted where its hash belongs
// (the identities file) is recognised and refused.
inline constexpr absl::string_view kTokenPrefix = "plt_";

// A new bearer token: kTokenPrefix + 32 random bytes (OpenSSL RAND_bytes) in
// unpadded base64url, 47 characters. INTERNAL if the random generator fails.
absl::StatusOr<std::string> NewToken();
// The SHA-256 of the token's bytes, as the identities file holds it (hex).
storage::Digest TokenHash(absl::string_view token);
// The identities-file line for an identity authenticated by a token whose
// hash is `token_hash`: "NAME ROLES token-sha256:HEX".
std::string IdentityLine(absl::string_view name, RoleSet roles, const storage::Digest& token_hash);
// INVALID_ARGUMENT unless `name` is a valid identity name (1 to 128 of
// A-Z a-z 0-9 . _ @ : / + -), saying why.
absl::Status CheckIdentityName(absl::string_view name);

// ---------------------------------------------------------------- identities

// The parsed identities file. Immutable after Parse/Load; thread-safe.
class Identities {
 public:
  // Parses the text of an identities file; `file` names it in errors.
  // INVALID_ARGUMENT "identities file F line N: what is wrong" for a bad
  // line, a token in plain text (never echoed), an unknown role, a name given
  // two role sets, a token hash or certificate name listed twice, or a file
  // without identities.
  static absl::StatusOr<Identities> Parse(absl::string_view text, absl::string_view file);
  // Reads and parses `path`. NOT_FOUND / PERMISSION_DENIED / INVALID_ARGUMENT
  // name the file.
  static absl::StatusOr<Identities> Load(const std::string& path);

  struct Identity {
    std::string name;
    RoleSet roles;
  };

  // The identity whose token hash is SHA-256(token); nullptr when none.
  // Compares the hash with every stored one in constant time (CRYPTO_memcmp,
  // no early exit), so timing tells nothing about which bytes matched.
  const Identity* FindByToken(absl::string_view token) const;
  // The identity listed as "cert:<name>" for one of `certificate_names` (a
  // verified client certificate's subject CN and subject alternative names),
  // and which of them matched; nullptr when none.
  const Identity* FindByCertificate(absl::Span<const std::string> certificate_names,
                                    std::string* matched) const;
  // Whether some identity is authenticated by a client certificate (predlogd
  // then needs --tls_client_ca).
  bool has_certificate_identities() const { return !certificates_.empty(); }
  size_t size() const { return identities_.size(); }

 private:
  std::vector<Identity> identities_;
  struct TokenEntry {
    storage::Digest hash;
    size_t identity;
  };
  std::vector<TokenEntry> tokens_;
  struct CertificateEntry {
    std::string name;
    size_t identity;
  };
  std::vector<CertificateEntry> certificates_;
};

// ---------------------------------------------------------------- addresses

// Whether `address` ("host:port" or "[v6]:port", as --grpc_listen and
// --server take it) names a loopback interface: localhost, 127.0.0.0/8, ::1
// (also IPv4-mapped). A unix: socket counts as local. Host names other than
// localhost are not resolved: they are not loopback. Where predlogd may serve
// without TLS and identities, and where predlog may send a token in clear.
bool IsLoopbackAddress(absl::string_view address);

// ---------------------------------------------------------------- one call

// The caller of one call, as predlogd authenticated it.
struct Caller {
  // False when predlogd has no identities file (it knows nobody and allows
  // every call), and for open methods (gRPC health).
  bool authenticated = false;
  // The identity's name (recorded as AuditEvent.actor); "" when not authenticated.
  std::string name;
  RoleSet roles;
  // How it was authenticated, for messages: "bearer token" or "client
  // certificate <name>"; "" when not.
  std::string credential;
};

// What a call presented.
struct Credentials {
  // The values of its `authorization` metadata (none, one, or several).
  std::vector<absl::string_view> authorization;
  // Its client certificate's subject CN and subject alternative names, when
  // the TLS handshake verified one against --tls_client_ca; empty otherwise.
  std::vector<std::string> certificate_names;
};

// Authenticates calls against an identities file and authorizes them by the
// role table. Immutable; thread-safe.
class Authorizer {
 public:
  // No identities file: every call allowed, every Caller unauthenticated.
  Authorizer() = default;
  explicit Authorizer(Identities identities) : identities_(std::move(identities)) {}

  bool enabled() const { return identities_.has_value(); }
  const Identities* identities() const { return identities_ ? &*identities_ : nullptr; }

  // Who presented `credentials`. A bearer token, when there is one, decides
  // (it must be known); otherwise the client certificate. Disabled: an
  // unauthenticated Caller. UNAUTHENTICATED says which: no credentials, more
  // than one authorization value, one that is not "Bearer <token>", a token
  // that is not in the identities file, a certificate none of whose names is.
  absl::StatusOr<Caller> Authenticate(const Credentials& credentials) const;

  // Whether `caller` may call `method` (a gRPC path). OK when disabled.
  // PERMISSION_DENIED "no role may call M" for a method without a role table
  // entry; "M needs the role R (or ...); NAME has ROLES" otherwise.
  // UNAUTHENTICATED when the method needs an identity and `caller` has none.
  absl::Status Authorize(absl::string_view method, const Caller& caller) const;

  // The check of one call: open methods pass without looking at credentials
  // (an unauthenticated Caller); otherwise Authenticate, then Authorize.
  absl::StatusOr<Caller> Check(absl::string_view method, const Credentials& credentials) const;

 private:
  std::optional<Identities> identities_;
};

}  // namespace predlog::auth

#endif  // PREDLOG_SERVICES_AUTH_AUTH_H_
