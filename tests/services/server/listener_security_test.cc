// predlogd's startup refusals: the loopback rule (no serving everyone in
// clear), and TLS and identities files that are wrong, each named with its
// flag, its file and, for the identities file, its line.
#include "services/server/listener_security.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/auth/auth.h"
#include "services/kafka/embedded_broker.h"
#include "services/server/server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/test_certs.h"

namespace predlog::services {
namespace {

using ::predlog::testing::CertificateSpec;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::predlog::testing::TestCertificate;
using ::predlog::testing::WriteTextFile;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class ListenerSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(ca_, testing::MakeCa("test CA"));
    CertificateSpec spec;
    spec.common_name = "predlogd";
    spec.ip_addresses = {"127.0.0.1"};
    ASSERT_OK_AND_ASSIGN(server_, testing::MakeCertificate(ca_, spec));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("ca.pem"), ca_.cert_pem));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("server.pem"), server_.cert_pem));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("server.key"), server_.key_pem));
    ASSERT_OK_AND_ASSIGN(const std::string token, auth::NewToken());
    ASSERT_TRUE(WriteTextFile(
        dir_.Sub("identities"),
        auth::IdentityLine("limits-api", {auth::Role::kWriter}, auth::TokenHash(token)) + "\n"));
    options_.data_dir = dir_.Sub("data");
    options_.http_listen = "";
    options_.partitions = 1;
  }

  void Tls() {
    options_.tls_cert_file = dir_.Sub("server.pem");
    options_.tls_key_file = dir_.Sub("server.key");
  }
  void Identities() { options_.identities_file = dir_.Sub("identities"); }

  TempDir dir_;
  TestCertificate ca_, server_;
  ServerOptions options_;
};

TEST_F(ListenerSecurityTest, ANonLoopbackListenWithoutTlsAndIdentitiesIsRefused) {
  for (const char* listen : {"0.0.0.0:0", "[::]:0", "192.168.1.10:50051", "predlog.example:1"}) {
    options_.grpc_listen = listen;
    EXPECT_THAT(
        Server::Start(options_),
        StatusIs(
            absl::StatusCode::kInvalidArgument,
            AllOf(HasSubstr(absl::StrCat("--grpc_listen ", listen, " is not a loopback address")),
                  HasSubstr("anyone who reaches it"),
                  HasSubstr("Add --tls_cert, --tls_key and --identities"),
                  HasSubstr("or listen on 127.0.0.1"))))
        << listen;
  }
}

TEST_F(ListenerSecurityTest, IdentitiesWithoutTlsOffLoopbackAreRefusedForTokensInClear) {
  options_.grpc_listen = "0.0.0.0:0";
  Identities();
  EXPECT_THAT(Server::Start(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("is not a loopback address"), HasSubstr("in clear"),
                             HasSubstr("Add --tls_cert and --tls_key"))));
}

TEST_F(ListenerSecurityTest, TlsWithoutIdentitiesOffLoopbackIsRefused) {
  options_.grpc_listen = "0.0.0.0:0";
  Tls();
  EXPECT_THAT(Server::Start(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("is not a loopback address"),
                             HasSubstr("predlogd knows nobody"), HasSubstr("Add --identities"))));
}

TEST_F(ListenerSecurityTest, TlsAndIdentitiesMayListenOffLoopback) {
  options_.grpc_listen = "0.0.0.0:0";
  Tls();
  Identities();
  ASSERT_OK_AND_ASSIGN(GrpcSecurity security, PrepareGrpcSecurity(options_));
  EXPECT_TRUE(security.authorizer->enabled());
  EXPECT_NE(security.credentials, nullptr);
}

TEST_F(ListenerSecurityTest, IdentitiesOnLoopbackWithoutTlsAreAllowed) {
  options_.grpc_listen = "127.0.0.1:0";
  Identities();
  ASSERT_OK_AND_ASSIGN(GrpcSecurity security, PrepareGrpcSecurity(options_));
  EXPECT_TRUE(security.authorizer->enabled());
}

TEST_F(ListenerSecurityTest, AnEmbeddedKafkaListenOffLoopbackIsAlwaysRefused) {
  options_.grpc_listen = "127.0.0.1:0";
  options_.embedded_kafka_listen = "0.0.0.0:19092";
  Tls();
  Identities();
  EXPECT_THAT(Server::Start(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--embedded_kafka_listen 0.0.0.0:19092 is not a loopback"),
                             HasSubstr("has no authentication"), HasSubstr("SASL"))));
}

TEST_F(ListenerSecurityTest, AnIdentitiesFileWithAPlainTextTokenIsRefusedNamingTheLine) {
  ASSERT_OK_AND_ASSIGN(const std::string token, auth::NewToken());
  ASSERT_TRUE(WriteTextFile(dir_.Sub("identities"),
                            absl::StrCat("# serving code\nlimits-api writer token:", token, "\n")));
  options_.grpc_listen = "127.0.0.1:0";
  Identities();
  EXPECT_THAT(Server::Start(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--identities: identities file " + dir_.Sub("identities") +
                                       " line 2"),
                             HasSubstr("plain text"), Not(HasSubstr(token)))));
}

TEST_F(ListenerSecurityTest, AnIdentitiesFileWithABadLineIsRefusedNamingTheLine) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub("identities"), "\n\nalice superuser cert:alice\n"));
  options_.grpc_listen = "127.0.0.1:0";
  Identities();
  EXPECT_THAT(Server::Start(options_), StatusIs(absl::StatusCode::kInvalidArgument,
                                                AllOf(HasSubstr(dir_.Sub("identities") + " line 3"),
                                                      HasSubstr("unknown role \"superuser\""))));
}

TEST_F(ListenerSecurityTest, CertificateIdentitiesNeedAClientCa) {
  ASSERT_TRUE(WriteTextFile(dir_.Sub("identities"), "bot admin cert:bot.internal\n"));
  options_.grpc_listen = "127.0.0.1:0";
  Tls();
  Identities();
  EXPECT_THAT(PrepareGrpcSecurity(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("cert:"), HasSubstr("needs --tls_client_ca"))));
  options_.tls_client_ca_file = dir_.Sub("ca.pem");
  EXPECT_OK(PrepareGrpcSecurity(options_));
}

TEST_F(ListenerSecurityTest, TlsFilesAreCheckedNamingFlagAndFile) {
  options_.grpc_listen = "127.0.0.1:0";
  options_.tls_cert_file = dir_.Sub("server.pem");
  EXPECT_THAT(PrepareGrpcSecurity(options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("go together")));
  options_.tls_key_file = dir_.Sub("missing.key");
  EXPECT_THAT(PrepareGrpcSecurity(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--tls_key " + dir_.Sub("missing.key") + ": cannot read it")));
  options_.tls_key_file = dir_.Sub("server.key");
  options_.tls_cert_file = dir_.Sub("server.key");  // a key where the certificate belongs
  EXPECT_THAT(
      PrepareGrpcSecurity(options_),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("--tls_cert " + dir_.Sub("server.key") + ": not a PEM certificate")));
  // Another key than the certificate's.
  ASSERT_OK_AND_ASSIGN(TestCertificate other, testing::MakeCa("other"));
  ASSERT_TRUE(WriteTextFile(dir_.Sub("other.key"), other.key_pem));
  options_.tls_cert_file = dir_.Sub("server.pem");
  options_.tls_key_file = dir_.Sub("other.key");
  EXPECT_THAT(PrepareGrpcSecurity(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not the key of the certificate in --tls_cert")));
  options_.tls_key_file = dir_.Sub("server.key");
  options_.tls_client_ca_file = dir_.Sub("nope.pem");
  EXPECT_THAT(PrepareGrpcSecurity(options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--tls_client_ca " + dir_.Sub("nope.pem"))));
  options_.tls_client_ca_file = dir_.Sub("ca.pem");
  EXPECT_OK(PrepareGrpcSecurity(options_));
}

TEST_F(ListenerSecurityTest, AClientCaWithoutTlsIsRefused) {
  options_.grpc_listen = "127.0.0.1:0";
  options_.tls_client_ca_file = dir_.Sub("ca.pem");
  EXPECT_THAT(PrepareGrpcSecurity(options_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls_client_ca needs TLS")));
}

// --kafka_properties reaches predlogd's Kafka clients and is checked at start.
TEST(KafkaPropertiesFlagTest, ConfiguresTheClientsOfKafkaBrokersOnly) {
  TempDir dir;
  ServerOptions options;
  options.data_dir = dir.Sub("data");
  options.http_listen = "";
  options.partitions = 1;
  options.kafka_properties_file = dir.Sub("client.properties");
  ASSERT_TRUE(WriteTextFile(options.kafka_properties_file, "security.protocol=SSL\n"));
  EXPECT_THAT(Server::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--kafka_properties configures the clients of --kafka_brokers")));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EmbeddedBroker> broker, EmbeddedBroker::Start({1}));
  options.roles = {/*broker=*/false, /*ingest=*/true, /*gateway=*/false};
  options.kafka_brokers = broker->bootstrap_servers();
  ASSERT_TRUE(WriteTextFile(options.kafka_properties_file, "# tuned\nacks=1\n"));
  EXPECT_THAT(Server::Start(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--kafka_properties: kafka properties file " +
                                       options.kafka_properties_file +
                                       " line 2: acks is set by "
                                       "predlog itself"))));
  ASSERT_TRUE(
      WriteTextFile(options.kafka_properties_file,
                    "security.protocol=SSL\nssl.ca.location=" + dir.Sub("none.pem") + "\n"));
  EXPECT_THAT(Server::Start(options),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("ssl.ca.location")));
  ASSERT_TRUE(WriteTextFile(options.kafka_properties_file, "client.id=predlog-ingest-a\n"));
  EXPECT_OK(Server::Start(options));
}

}  // namespace
}  // namespace predlog::services
