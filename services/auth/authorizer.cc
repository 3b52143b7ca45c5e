#include <arpa/inet.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "services/auth/auth.h"

namespace predlog::auth {
namespace {

// "/predlog.v1.Audit/ExportTrail" -> "predlog.v1.Audit/ExportTrail".
absl::string_view Shown(absl::string_view method) {
  absl::ConsumePrefix(&method, "/");
  return method;
}

std::string NeededRoles(RoleSet roles) {
  std::vector<absl::string_view> names;
  for (Role role : kAllRoles) {
    if (roles.Has(role)) names.push_back(RoleName(role));
  }
  if (names.size() == 1) return absl::StrCat("the role ", names[0]);
  return absl::StrCat("one of the roles ", absl::StrJoin(names, ", "));
}

// The host of "host:port" or "[v6]:port"; the whole address without a port.
absl::string_view HostOf(absl::string_view address) {
  if (absl::StartsWith(address, "[")) {
    const size_t close = address.find(']');
    return close == absl::string_view::npos ? address : address.substr(1, close - 1);
  }
  const size_t colon = address.rfind(':');
  return colon == absl::string_view::npos ? address : address.substr(0, colon);
}

}  // namespace

bool IsLoopbackAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")) {
    return true;
  }
  const std::string host(HostOf(address));
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

absl::StatusOr<Caller> Authorizer::Authenticate(const Credentials& credentials) const {
  if (!enabled()) return Caller{};
  if (credentials.authorization.size() > 1) {
    return absl::UnauthenticatedError(
        absl::StrCat("the call carries ", credentials.authorization.size(),
                     " authorization values; send one: 'authorization: Bearer <token>'"));
  }
  if (credentials.authorization.size() == 1) {
    absl::string_view value = credentials.authorization[0];
    // RFC 6750: the scheme is case-insensitive, one or more spaces follow it.
    constexpr absl::string_view kScheme = "bearer ";
    if (value.size() <= kScheme.size() ||
        !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
      return absl::UnauthenticatedError(
          "the authorization metadata is not 'Bearer <token>' (predlogd takes bearer tokens)");
    }
    value.remove_prefix(kScheme.size());
    value = absl::StripAsciiWhitespace(value);
    const Identities::Identity* identity = identities_->FindByToken(value);
    if (identity == nullptr) {
      return absl::UnauthenticatedError(
          "the bearer token is not in predlogd's identities file (unknown or revoked token)");
    }
    return Caller{true, identity->name, identity->roles, "bearer token"};
  }
  if (!credentials.certificate_names.empty()) {
    std::string matched;
    const Identities::Identity* identity =
        identities_->FindByCertificate(credentials.certificate_names, &matched);
    if (identity == nullptr) {
      return absl::UnauthenticatedError(absl::StrCat(
          "the client certificate (", absl::StrJoin(credentials.certificate_names, ", "),
          ") is not in predlogd's identities file: no cert: line names its CN or a SAN"));
    }
    return Caller{true, identity->name, identity->roles,
                  absl::StrCat("client certificate ", matched)};
  }
  return absl::UnauthenticatedError(
      "no credentials: send 'authorization: Bearer <token>' (predlog: PREDLOG_TOKEN or "
      "--token_file) or a client certificate");
}

absl::Status Authorizer::Authorize(absl::string_view method, const Caller& caller) const {
  if (!enabled()) return absl::OkStatus();
  const MethodAccess* access = FindMethodAccess(method);
  if (access == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("no role may call ", Shown(method),
                                                    ": it has no entry in predlogd's role "
                                                    "table (services/auth/role_table.cc)"));
  }
  if (access->access == Access::kOpen) return absl::OkStatus();
  if (!caller.authenticated) {
    return absl::UnauthenticatedError(
        absl::StrCat(Shown(method), " needs an authenticated identity"));
  }
  if (access->access == Access::kAnyIdentity || caller.roles.Intersects(access->roles)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(Shown(method), " needs ",
                                                  NeededRoles(access->roles), "; ", caller.name,
                                                  " has ", caller.roles.ToString()));
}

absl::StatusOr<Caller> Authorizer::Check(absl::string_view method,
                                         const Credentials& credentials) const {
  if (!enabled()) return Caller{};
  if (const MethodAccess* access = FindMethodAccess(method);
      access != nullptr && access->access == Access::kOpen) {
    return Caller{};
  }
  absl::StatusOr<Caller> caller = Authenticate(credentials);
  if (!caller.ok()) return caller.status();
  if (absl::Status allowed = Authorize(method, *caller); !allowed.ok()) return allowed;
  return caller;
}

}  // namespace predlog::auth
