// Who can reach predlogd's listeners, decided at startup: TLS and identities
// on the gRPC port, and the loopback rule.
//
// The loopback rule: predlogd's zero-config default (no TLS, no identities
// file) lets anyone who reaches the gRPC port log, read, replay and export
// everything, so it serves only loopback. Any other --grpc_listen (0.0.0.0,
// [::], a LAN address, a host name other than localhost) needs both TLS
// (tokens and data must not cross a network in clear) and an identities file
// (someone must be known). An identities file on loopback without TLS is
// allowed (one machine; tests). The embedded Kafka-protocol broker has no
// authentication at all, so --embedded_kafka_listen must be loopback always.
// /metrics holds counters per shard and per status code, no event data, and
// stays open on any --http_listen. The support page and its JSON API on the
// same listener (services/web/) hold customer data: served on loopback, or
// off loopback only over TLS with identities (server.cc, StartHttp).
//
// The functions keep no state: thread-safe.
#ifndef PREDLOG_SERVICES_SERVER_LISTENER_SECURITY_H_
#define PREDLOG_SERVICES_SERVER_LISTENER_SECURITY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/server_credentials.h"
#include "services/auth/auth.h"
#include "services/server/server.h"

namespace predlog::services {

// The gRPC port's credentials and the Authorizer its handlers ask for their
// caller (disabled without --identities).
struct GrpcSecurity {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::shared_ptr<const auth::Authorizer> authorizer;
};

// Loads options.tls_* and options.identities_file and applies the loopback
// rule to options.grpc_listen. With identities, the credentials carry the metadata
// processor (services/auth/grpc_auth.h) that checks every call: over TLS, or
// gRPC's local credentials on loopback without TLS. Without identities: TLS
// or insecure credentials, and nobody is checked. INVALID_ARGUMENT names the
// flag and the file (unreadable, not PEM, a key that is not the
// certificate's, a bad identities line, certificate identities without
// --tls_client_ca), or the address and why it is refused and which flags to
// add.
absl::StatusOr<GrpcSecurity> PrepareGrpcSecurity(const ServerOptions& options);

// The loopback rule for options.embedded_kafka_listen (empty passes).
// INVALID_ARGUMENT names the address and says what to do instead.
absl::Status CheckEmbeddedKafkaListen(const ServerOptions& options);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_LISTENER_SECURITY_H_
