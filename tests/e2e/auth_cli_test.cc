// Who may do what, end to end: tokens made by `predlog auth new-token`, a
// predlogd child with TLS and that identities file, and the predlog CLI
// talking to it with PREDLOG_TOKEN or --token_file and --tls_ca; and the
// predlogd binary refusing to serve off loopback without TLS and identities.
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/sha256.h"
#include "tests/e2e/child_process.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/test_certs.h"

namespace predlog {
namespace {

using ::predlog::testing::RunCommand;
using ::predlog::testing::TempDir;
using ::predlog::testing::WriteTextFile;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

struct NewToken {
  std::string token;
  std::string identities_line;
};

// Runs `predlog auth new-token NAME --roles=ROLES`; its token (line 2) and
// identities line (line 4).
NewToken MakeToken(const std::string& name, const std::string& roles) {
  auto [code, out] =
      RunCommand(absl::StrCat(PREDLOG_CLI_BINARY, " auth new-token ", name, " --roles=", roles));
  EXPECT_EQ(code, 0) << out;
  const std::vector<std::string> lines = absl::StrSplit(out, '\n');
  EXPECT_GE(lines.size(), 4u) << out;
  if (lines.size() < 4) return {};
  return {lines[1], lines[3]};
}

class AuthCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    absl::StatusOr<testing::TestCertificate> ca = testing::MakeCa("predlog e2e CA");
    ASSERT_TRUE(ca.ok()) << ca.status();
    testing::CertificateSpec spec;
    spec.common_name = "predlogd";
    spec.ip_addresses = {"127.0.0.1"};
    absl::StatusOr<testing::TestCertificate> server = testing::MakeCertificate(*ca, spec);
    ASSERT_TRUE(server.ok()) << server.status();
    ASSERT_TRUE(WriteTextFile(dir_->Sub("ca.pem"), ca->cert_pem));
    ASSERT_TRUE(WriteTextFile(dir_->Sub("server.pem"), server->cert_pem));
    ASSERT_TRUE(WriteTextFile(dir_->Sub("server.key"), server->key_pem));
    writer_ = new NewToken(MakeToken("limits-api", "writer"));
    reader_ = new NewToken(MakeToken("ada", "support,auditor"));
    ASSERT_TRUE(WriteTextFile(dir_->Sub("identities"), "# made by predlog auth new-token\n" +
                                                           writer_->identities_line + "\n" +
                                                           reader_->identities_line + "\n"));
    server_ = new testing::Predlogd(
        PREDLOGD_BINARY,
        {"--data_dir=" + dir_->Sub("data"), "--grpc_listen=127.0.0.1:0",
         "--http_listen=", "--partitions=2", "--tls_cert=" + dir_->Sub("server.pem"),
         "--tls_key=" + dir_->Sub("server.key"), "--identities=" + dir_->Sub("identities")});
    ASSERT_FALSE(server_->grpc().empty()) << server_->startup_line();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete writer_;
    delete reader_;
    delete dir_;
  }

  // The CLI over TLS to the suite's predlogd, with `token` in PREDLOG_TOKEN
  // (none when empty).
  static std::string Cli(const std::string& token) {
    return absl::StrCat(token.empty() ? "env -u PREDLOG_TOKEN " : "PREDLOG_TOKEN=" + token + " ",
                        PREDLOG_CLI_BINARY, " --server=", server_->grpc(),
                        " --tls_ca=", dir_->Sub("ca.pem"));
  }

  static TempDir* dir_;
  static testing::Predlogd* server_;
  static NewToken* writer_;
  static NewToken* reader_;
};

TempDir* AuthCliTest::dir_ = nullptr;
testing::Predlogd* AuthCliTest::server_ = nullptr;
NewToken* AuthCliTest::writer_ = nullptr;
NewToken* AuthCliTest::reader_ = nullptr;

TEST_F(AuthCliTest, NewTokenPrintsTheTokenOnceAndTheLineHoldingItsHash) {
  EXPECT_TRUE(absl::StartsWith(writer_->token, "plt_")) << writer_->token;
  EXPECT_EQ(writer_->token.size(), 47u);
  EXPECT_EQ(writer_->identities_line,
            "limits-api writer token-sha256:" + storage::ToHex(storage::Sha256(writer_->token)));
  EXPECT_THAT(writer_->identities_line, Not(HasSubstr(writer_->token)));
  EXPECT_NE(writer_->token, reader_->token);
  EXPECT_THAT(reader_->identities_line, HasSubstr("ada support,auditor token-sha256:"));

  auto [bad_role, bad_role_out] =
      RunCommand(absl::StrCat(PREDLOG_CLI_BINARY, " auth new-token x --roles=writer,root"));
  EXPECT_EQ(bad_role, 2);
  EXPECT_THAT(bad_role_out, HasSubstr("--roles: unknown role \"root\""));
  auto [no_roles, no_roles_out] = RunCommand(absl::StrCat(PREDLOG_CLI_BINARY, " auth new-token x"));
  EXPECT_EQ(no_roles, 2);
  EXPECT_THAT(no_roles_out, HasSubstr("--roles is required"));
  auto [bad_name, bad_name_out] =
      RunCommand(absl::StrCat(PREDLOG_CLI_BINARY, " auth new-token 'a b' --roles=writer"));
  EXPECT_EQ(bad_name, 2);
  EXPECT_THAT(bad_name_out, HasSubstr("may only hold letters, digits"));
}

TEST_F(AuthCliTest, WithATokenAndTheCaTheCliTalksToATlsPredlogd) {
  const std::string lines = dir_->Sub("predictions.jsonl");
  std::ofstream(lines)
      << R"({"prediction":{"predictionId":"tls-1","subjectId":"c1","servedAt":"2026-11-27T10:00:00Z",)"
      << R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"income","doubleValue":1}]},)"
      << R"("actor":"the-ceo"})"
      << "\n";
  auto [log_code, log_out] = RunCommand(Cli(writer_->token) + " log < " + lines);
  ASSERT_EQ(log_code, 0) << log_out;
  EXPECT_THAT(log_out, HasSubstr("APPLIED"));

  // The recorded actor is the identity; the request's actor is its claim.
  auto [get_code, get_out] = RunCommand(Cli(reader_->token) + " get tls-1");
  ASSERT_EQ(get_code, 0) << get_out;
  EXPECT_THAT(get_out, HasSubstr("limits-api (claimed: the-ceo)"));
  auto [json_code, json_out] = RunCommand(Cli(reader_->token) + " get --json tls-1");
  ASSERT_EQ(json_code, 0) << json_out;
  EXPECT_THAT(json_out, AllOf(HasSubstr(R"("actor":"limits-api")"),
                              HasSubstr(R"("claimedActor":"the-ceo")")));

  // --token_file instead of the environment.
  ASSERT_TRUE(WriteTextFile(dir_->Sub("ada.token"), reader_->token + "\n"));
  auto [status_code, status_out] =
      RunCommand(Cli("") + " status --token_file=" + dir_->Sub("ada.token"));
  EXPECT_EQ(status_code, 0) << status_out;
  EXPECT_THAT(status_out, HasSubstr("predlog.events-0"));
}

TEST_F(AuthCliTest, ServerRefusalsShowWithTheirStatusCode) {
  auto [anonymous, anonymous_out] = RunCommand(Cli("") + " get tls-1");
  EXPECT_EQ(anonymous, 1);
  EXPECT_THAT(anonymous_out, HasSubstr("predlog get: UNAUTHENTICATED: no credentials"));
  auto [denied, denied_out] = RunCommand(Cli(writer_->token) + " get tls-1");
  EXPECT_EQ(denied, 1);
  EXPECT_THAT(denied_out,
              HasSubstr("predlog get: PERMISSION_DENIED: predlog.v1.PredictionLog/GetPrediction "
                        "needs the role support; limits-api has writer"));
  auto [unknown, unknown_out] = RunCommand(Cli("plt_not-a-real-token") + " status");
  EXPECT_EQ(unknown, 1);
  EXPECT_THAT(unknown_out, HasSubstr("UNAUTHENTICATED: the bearer token is not in"));
}

TEST_F(AuthCliTest, WithoutTheCaTheCliCannotTalkToATlsPredlogd) {
  auto [code, out] =
      RunCommand(absl::StrCat("PREDLOG_TOKEN=", reader_->token, " ", PREDLOG_CLI_BINARY,
                              " --server=", server_->grpc(), " status --timeout_seconds=5"));
  EXPECT_EQ(code, 1);
  EXPECT_THAT(out, HasSubstr("cannot reach predlogd at " + server_->grpc()));
}

TEST_F(AuthCliTest, TheCliWillNotSendATokenInClearOffLoopback) {
  auto [code, out] =
      RunCommand(absl::StrCat("PREDLOG_TOKEN=", reader_->token, " ", PREDLOG_CLI_BINARY,
                              " status --server=10.1.2.3:50051"));
  EXPECT_EQ(code, 2);
  EXPECT_THAT(out, HasSubstr("will not send a bearer token to 10.1.2.3:50051 in clear"));
  auto [bad_ca, bad_ca_out] =
      RunCommand(absl::StrCat(PREDLOG_CLI_BINARY, " status --tls_ca=", dir_->Sub("none.pem")));
  EXPECT_EQ(bad_ca, 2);
  EXPECT_THAT(bad_ca_out, HasSubstr("--tls_ca " + dir_->Sub("none.pem") + ": cannot read it"));
}

TEST_F(AuthCliTest, PredlogdRefusesToServeOffLoopbackWithoutTlsAndIdentities) {
  auto [code, out] = RunCommand(absl::StrCat(PREDLOGD_BINARY, " --data_dir=", dir_->Sub("refused"),
                                             " --grpc_listen=0.0.0.0:0 --http_listen="));
  EXPECT_EQ(code, 2) << out;
  EXPECT_THAT(out, AllOf(HasSubstr("--grpc_listen 0.0.0.0:0 is not a loopback address"),
                         HasSubstr("Add --tls_cert, --tls_key and --identities")));
}

TEST_F(AuthCliTest, PredlogdRefusesAnIdentitiesFileHoldingAToken) {
  ASSERT_TRUE(WriteTextFile(dir_->Sub("leaky"),
                            writer_->identities_line + "\nbob support " + reader_->token + "\n"));
  auto [code, out] = RunCommand(
      absl::StrCat(PREDLOGD_BINARY, " --data_dir=", dir_->Sub("leaky-data"),
                   " --grpc_listen=127.0.0.1:0 --http_listen= --identities=", dir_->Sub("leaky")));
  EXPECT_EQ(code, 2) << out;
  EXPECT_THAT(out, AllOf(HasSubstr(dir_->Sub("leaky") + " line 2"), HasSubstr("plain text"),
                         Not(HasSubstr(reader_->token))));
}

TEST_F(AuthCliTest, WithTlsAndIdentitiesPredlogdMayListenOnEveryInterface) {
  testing::Predlogd open(
      PREDLOGD_BINARY,
      {"--data_dir=" + dir_->Sub("open"), "--grpc_listen=0.0.0.0:0",
       "--http_listen=", "--partitions=1", "--tls_cert=" + dir_->Sub("server.pem"),
       "--tls_key=" + dir_->Sub("server.key"), "--identities=" + dir_->Sub("identities")});
  ASSERT_TRUE(absl::StartsWith(open.grpc(), "0.0.0.0:")) << open.startup_line();
  EXPECT_THAT(open.startup_line(), HasSubstr("grpc_security=tls,identities"));
  const std::string port = open.grpc().substr(open.grpc().find(':') + 1);
  auto [code, out] = RunCommand(absl::StrCat("PREDLOG_TOKEN=", reader_->token, " ",
                                             PREDLOG_CLI_BINARY, " --server=127.0.0.1:", port,
                                             " --tls_ca=", dir_->Sub("ca.pem"), " status"));
  EXPECT_EQ(code, 0) << out;
}

}  // namespace
}  // namespace predlog
