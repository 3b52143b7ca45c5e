// gRPC glue of auth.h: the metadata processor that checks every call on
// predlogd's port before any handler runs, and the Caller of a running call.
//
// Why a metadata processor (what gRPC 1.51, Debian 12's, allows; measured):
// - grpc::AuthMetadataProcessor runs in gRPC core for every call on the port,
//   before the method is dispatched. It sees the method (":path") with the
//   call's metadata, and the connection's AuthContext (the client certificate
//   the TLS handshake verified); a non-OK status ends the call with that code
//   and message. Methods added later, gRPC health and reflection pass through
//   it without any code of their own: nothing to forget.
// - A server interceptor (experimental::ServerInterceptorFactoryInterface)
//   sees the method but cannot fail a call before its handler runs: Hijack()
//   is client-only, and a callback handler runs after the interceptors
//   whatever they did (ModifySendStatus only rewrites the final status).
// - A check at the top of each handler must be repeated in every new handler,
//   and cannot reach gRPC's own reflection service.
// A processor attaches only to secure server credentials: TLS
// (SslServerCredentials), or, for an identities file on loopback without TLS,
// gRPC's local credentials (LOCAL_TCP), which speak the same plaintext HTTP/2
// as insecure credentials but accept loopback peers only.
//
// The processor writes nothing into the AuthContext: gRPC shares it between
// all the calls of a connection, and two calls on one connection may carry
// different tokens. A handler that needs its caller authenticates the call
// again (CallerOf: one SHA-256 of the token, or a look-up of the certificate).
#ifndef PREDLOG_SERVICES_AUTH_GRPC_AUTH_H_
#define PREDLOG_SERVICES_AUTH_GRPC_AUTH_H_

#include <map>
#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/security/auth_context.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/string_ref.h"
#include "services/auth/auth.h"

namespace predlog::auth {

// What a call presented: its `authorization` metadata values (borrowed from
// `metadata`) and, when `auth_context` has a verified peer (a client
// certificate checked against --tls_client_ca; predlogd never asks for one
// it does not verify), the certificate's subject CN (x509_common_name) and
// subject alternative names (x509_subject_alternative_name: DNS names, URIs,
// e-mail and IP addresses). `auth_context` may be null (no security).
Credentials CredentialsOf(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                          const grpc::AuthContext* auth_context);

// The processor for ServerCredentials::SetAuthMetadataProcessor: answers each
// call with Authorizer::Check(its method, its credentials), UNAUTHENTICATED
// or PERMISSION_DENIED as Check says, before any handler. Non-blocking (runs
// on gRPC's thread; Check does no I/O). Keeps `authorizer`. Thread-safe.
std::shared_ptr<grpc::AuthMetadataProcessor> NewAuthMetadataProcessor(
    std::shared_ptr<const Authorizer> authorizer);

// The caller of a running call: Authorizer::Authenticate of the call's
// credentials. On a port guarded by the processor the call has already
// passed Check, so this fails only for an open method called without valid
// credentials (gRPC health); disabled, an unauthenticated Caller.
// UNAUTHENTICATED as Authenticate. Thread-safe; `context` is borrowed.
absl::StatusOr<Caller> CallerOf(const Authorizer& authorizer,
                                const grpc::ServerContextBase& context);

}  // namespace predlog::auth

#endif  // PREDLOG_SERVICES_AUTH_GRPC_AUTH_H_
