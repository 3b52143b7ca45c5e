#include "services/server/listener_security.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/server_credentials.h"
#include "services/auth/grpc_auth.h"
#include "storage/status_macros.h"

namespace predlog::services {
namespace {

// The last OpenSSL error, for messages.
std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no PEM data";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;
Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The contents of `path`, given as --`flag`.
absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " ", path, ": cannot read it: ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The number of certificates in `pem`; INVALID_ARGUMENT naming the flag and
// file when there is none or one does not parse.
absl::StatusOr<int> CheckCertificates(absl::string_view flag, const std::string& path,
                                      const std::string& pem) {
  Bio bio = MemoryBio(pem);
  int count = 0;
  ERR_clear_error();
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_free(cert);
    ++count;
  }
  // The loop ends at the end of the data (PEM_R_NO_START_LINE) or at a
  // certificate that does not parse.
  const unsigned long error = ERR_peek_last_error();
  if (count == 0 || (error != 0 && ERR_GET_REASON(error) != PEM_R_NO_START_LINE)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " ", path, ": not a PEM certificate (", OpenSslError(), ")"));
  }
  ERR_clear_error();
  return count;
}

// Checks that the key parses and belongs to the (first) certificate.
absl::Status CheckKeyMatches(const ServerOptions& options, const std::string& cert_pem,
                             const std::string& key_pem) {
  ERR_clear_error();
  Bio key_bio = MemoryBio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--tls_key ", options.tls_key_file,
                                                   ": not a PEM private key without a passphrase (",
                                                   OpenSslError(), ")"));
  }
  Bio cert_bio = MemoryBio(cert_pem);
  X509* cert = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr);
  const bool matches = cert != nullptr && X509_check_private_key(cert, key) == 1;
  X509_free(cert);
  EVP_PKEY_free(key);
  ERR_clear_error();
  if (!matches) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key ", options.tls_key_file,
                     " is not the key of the certificate in --tls_cert ", options.tls_cert_file));
  }
  return absl::OkStatus();
}

// The SslServerCredentials of --tls_cert, --tls_key and --tls_client_ca.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TlsCredentials(
    const ServerOptions& options) {
  ASSIGN_OR_RETURN(std::string cert, ReadFlagFile("tls_cert", options.tls_cert_file));
  ASSIGN_OR_RETURN(std::string key, ReadFlagFile("tls_key", options.tls_key_file));
  RETURN_IF_ERROR(CheckCertificates("tls_cert", options.tls_cert_file, cert).status());
  RETURN_IF_ERROR(CheckKeyMatches(options, cert, key));
  // Client certificates are asked for only when they are verified: a
  // certificate nobody checked must never name an identity.
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!options.tls_client_ca_file.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFlagFile("tls_client_ca", options.tls_client_ca_file));
    RETURN_IF_ERROR(
        CheckCertificates("tls_client_ca", options.tls_client_ca_file, ssl.pem_root_certs)
            .status());
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  ssl.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<GrpcSecurity> PrepareGrpcSecurity(const ServerOptions& options) {
  const bool tls = !options.tls_cert_file.empty() || !options.tls_key_file.empty();
  if (tls && (options.tls_cert_file.empty() || options.tls_key_file.empty())) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key go together: the certificate (PEM) and its private key");
  }
  if (!options.tls_client_ca_file.empty() && !tls) {
    return absl::InvalidArgumentError(
        "--tls_client_ca needs TLS: add --tls_cert and --tls_key (client certificates are "
        "part of the TLS handshake)");
  }
  const bool identities = !options.identities_file.empty();
  if (!auth::IsLoopbackAddress(options.grpc_listen)) {
    const std::string where =
        absl::StrCat("--grpc_listen ", options.grpc_listen, " is not a loopback address");
    if (!tls && !identities) {
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          ", and predlogd without TLS and an identities file would let anyone who reaches "
          "it log, read, replay and export everything under any name. Add --tls_cert, "
          "--tls_key and --identities (deploy/README.md, \"Security\"), or listen on "
          "127.0.0.1"));
    }
    if (!tls) {
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          ", and without TLS the bearer tokens of --identities and every event would "
          "cross the network in clear. Add --tls_cert and --tls_key (and --tls_client_ca "
          "for client certificates), or listen on 127.0.0.1"));
    }
    if (!identities) {
      return absl::InvalidArgumentError(
          absl::StrCat(where,
                       ", and without --identities predlogd knows nobody: anyone who reaches it "
                       "could call everything under any name. Add --identities FILE "
                       "(predlog auth new-token prints its lines), or listen on 127.0.0.1"));
    }
  }
  GrpcSecurity security;
  if (identities) {
    absl::StatusOr<auth::Identities> loaded = auth::Identities::Load(options.identities_file);
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--identities: ", loaded.status().message()));
    }
    if (loaded->has_certificate_identities() && options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--identities ", options.identities_file,
          " names identities by client certificate (cert:), which needs --tls_client_ca: the "
          "CA that signs client certificates, so predlogd asks for them and verifies them"));
    }
    security.authorizer = std::make_shared<const auth::Authorizer>(std::move(*loaded));
  } else {
    security.authorizer = std::make_shared<const auth::Authorizer>();
  }
  if (tls) {
    ASSIGN_OR_RETURN(security.credentials, TlsCredentials(options));
  } else if (identities) {
    // Local credentials: the same plaintext HTTP/2 as insecure ones (any
    // client connects as it would without them), but "secure" to gRPC, so
    // they take the metadata processor; they refuse peers that are not local.
    security.credentials = grpc::experimental::LocalServerCredentials(
        absl::StartsWith(options.grpc_listen, "unix") ? UDS : LOCAL_TCP);
  } else {
    security.credentials = grpc::InsecureServerCredentials();
  }
  if (identities) {
    security.credentials->SetAuthMetadataProcessor(
        auth::NewAuthMetadataProcessor(security.authorizer));
  }
  return security;
}

absl::Status CheckEmbeddedKafkaListen(const ServerOptions& options) {
  if (options.embedded_kafka_listen.empty() ||
      auth::IsLoopbackAddress(options.embedded_kafka_listen)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--embedded_kafka_listen ", options.embedded_kafka_listen,
      " is not a loopback address: the embedded Kafka-protocol broker has no authentication, so "
      "anyone who reaches it could produce events past the gateway under any name. Keep it on "
      "127.0.0.1; across machines use a real Kafka cluster with SASL and ACLs (--kafka_brokers, "
      "--kafka_properties; deploy/README.md)"));
}

}  // namespace predlog::services
