// Certificates for TLS tests, made in memory with OpenSSL's C API: a
// self-signed CA and certificates it signs (P-256 keys, SHA-256 signatures,
// valid from an hour ago for a day). No openssl binary, no files unless asked.
#ifndef PREDLOG_TESTS_TESTING_TEST_CERTS_H_
#define PREDLOG_TESTS_TESTING_TEST_CERTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace predlog::testing {

struct TestCertificate {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8, unencrypted
};

struct CertificateSpec {
  std::string common_name;
  // Subject alternative names.
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::vector<std::string> uris;
};

// A self-signed CA certificate (basicConstraints CA:TRUE) and its key.
// INTERNAL when OpenSSL fails.
absl::StatusOr<TestCertificate> MakeCa(const std::string& common_name);

// A leaf certificate for `spec` signed by `ca`, good for both TLS servers
// and clients (extendedKeyUsage serverAuth, clientAuth). INTERNAL when
// OpenSSL fails or `ca` does not parse.
absl::StatusOr<TestCertificate> MakeCertificate(const TestCertificate& ca,
                                                const CertificateSpec& spec);

// Writes `content` to `path`; false when it cannot.
bool WriteTextFile(const std::string& path, const std::string& content);

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_TESTING_TEST_CERTS_H_
