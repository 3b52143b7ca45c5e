// Authorizer: authentication by token or certificate, authorization by the
// role table, and the messages that say which check failed and why.
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/auth/auth.h"
#include "storage/sha256.h"
#include "tests/testing/status_matchers.h"

namespace predlog::auth {
namespace {

using ::predlog::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kExport[] = "/predlog.v1.Audit/ExportTrail";
constexpr char kLog[] = "/predlog.v1.PredictionLog/Log";
constexpr char kModels[] = "/predlog.v1.Registry/ListModels";

class AuthorizerTest : public ::testing::Test {
 protected:
  AuthorizerTest() {
    const std::string text = absl::StrCat(
        "limits-api writer token-sha256:", storage::ToHex(TokenHash("plt_writer")), "\n",
        "alice support,auditor token-sha256:", storage::ToHex(TokenHash("plt_alice")), "\n",
        "release-bot admin cert:release-bot.internal\n");
    absl::StatusOr<Identities> identities = Identities::Parse(text, "ids");
    EXPECT_TRUE(identities.ok()) << identities.status();
    authorizer_ = Authorizer(std::move(*identities));
  }

  static Credentials Bearer(absl::string_view value) {
    Credentials c;
    c.authorization.push_back(value);
    return c;
  }
  static Credentials Certificate(std::vector<std::string> names) {
    Credentials c;
    c.certificate_names = std::move(names);
    return c;
  }

  Authorizer authorizer_;
};

TEST_F(AuthorizerTest, ATokenAuthenticatesItsIdentity) {
  ASSERT_OK_AND_ASSIGN(Caller caller, authorizer_.Check(kLog, Bearer("Bearer plt_writer")));
  EXPECT_TRUE(caller.authenticated);
  EXPECT_EQ(caller.name, "limits-api");
  EXPECT_EQ(caller.roles, RoleSet({Role::kWriter}));
  EXPECT_EQ(caller.credential, "bearer token");
  // The scheme is case-insensitive; spaces after it are skipped.
  ASSERT_OK_AND_ASSIGN(caller, authorizer_.Check(kLog, Bearer("bearer   plt_writer")));
  EXPECT_EQ(caller.name, "limits-api");
}

TEST_F(AuthorizerTest, NoCredentialsIsUnauthenticatedSayingSo) {
  EXPECT_THAT(authorizer_.Check(kLog, Credentials{}),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("no credentials")));
}

TEST_F(AuthorizerTest, AnUnknownTokenIsUnauthenticatedSayingSo) {
  EXPECT_THAT(authorizer_.Check(kLog, Bearer("Bearer plt_stolen")),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("bearer token is not in predlogd's identities file")));
  EXPECT_THAT(authorizer_.Check(kLog, Bearer("Basic YWxpY2U6cHc=")),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not 'Bearer <token>'")));
  EXPECT_THAT(authorizer_.Check(kLog, Bearer("Bearer ")),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not 'Bearer <token>'")));
  Credentials two = Bearer("Bearer plt_writer");
  two.authorization.push_back("Bearer plt_alice");
  EXPECT_THAT(authorizer_.Check(kLog, two),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("2 authorization values")));
}

TEST_F(AuthorizerTest, AVerifiedCertificateAuthenticatesByCnOrSan) {
  ASSERT_OK_AND_ASSIGN(Caller caller,
                       authorizer_.Check("/predlog.v1.Registry/DeployModel",
                                         Certificate({"bot-cn", "release-bot.internal"})));
  EXPECT_EQ(caller.name, "release-bot");
  EXPECT_EQ(caller.credential, "client certificate release-bot.internal");
  EXPECT_THAT(authorizer_.Check(kLog, Certificate({"mallory", "mallory.internal"})),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr("client certificate (mallory, mallory.internal)"),
                             HasSubstr("not in predlogd's identities file"))));
}

TEST_F(AuthorizerTest, ATokenDecidesOverACertificate) {
  Credentials both = Certificate({"release-bot.internal"});
  both.authorization.push_back("Bearer plt_alice");
  ASSERT_OK_AND_ASSIGN(Caller caller, authorizer_.Check(kModels, both));
  EXPECT_EQ(caller.name, "alice");
  both.authorization[0] = "Bearer plt_unknown";
  EXPECT_THAT(authorizer_.Check(kModels, both),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("bearer token")));
}

TEST_F(AuthorizerTest, AWriterExportingIsDeniedNamingTheRoleItNeeds) {
  EXPECT_THAT(authorizer_.Check(kExport, Bearer("Bearer plt_writer")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "predlog.v1.Audit/ExportTrail needs the role auditor; limits-api has "
                       "writer"));
  EXPECT_THAT(authorizer_.Check(kModels, Bearer("Bearer plt_writer")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("needs one of the roles support, auditor, admin; limits-api has "
                                 "writer")));
}

TEST_F(AuthorizerTest, EachRoleMayCallItsMethods) {
  EXPECT_OK(authorizer_.Check(kLog, Bearer("Bearer plt_writer")));
  EXPECT_OK(authorizer_.Check(kExport, Bearer("Bearer plt_alice")));
  EXPECT_OK(authorizer_.Check("/predlog.v1.Replay/Rerun", Bearer("Bearer plt_alice")));
  EXPECT_OK(authorizer_.Check("/predlog.v1.Registry/RegisterModel",
                              Certificate({"release-bot.internal"})));
  EXPECT_THAT(authorizer_.Check(kLog, Bearer("Bearer plt_alice")),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("needs the role writer")));
}

TEST_F(AuthorizerTest, AMethodWithoutAnEntryIsDeniedToEveryone) {
  EXPECT_THAT(
      authorizer_.Check("/predlog.v1.Admin/DropEverything", Certificate({"release-bot.internal"})),
      StatusIs(absl::StatusCode::kPermissionDenied,
               HasSubstr("no role may call predlog.v1.Admin/DropEverything")));
}

TEST_F(AuthorizerTest, HealthIsOpenAndReflectionNeedsAnyIdentity) {
  ASSERT_OK_AND_ASSIGN(Caller caller,
                       authorizer_.Check("/grpc.health.v1.Health/Check", Credentials{}));
  EXPECT_FALSE(caller.authenticated);
  // Even a bad token does not stop a health probe.
  EXPECT_OK(authorizer_.Check("/grpc.health.v1.Health/Check", Bearer("Bearer plt_unknown")));
  constexpr char kReflection[] = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
  EXPECT_THAT(authorizer_.Check(kReflection, Credentials{}),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("no credentials")));
  EXPECT_OK(authorizer_.Check(kReflection, Bearer("Bearer plt_writer")));
}

TEST(DisabledAuthorizerTest, WithoutIdentitiesEveryCallIsAllowedAndNobodyKnown) {
  const Authorizer authorizer;
  EXPECT_FALSE(authorizer.enabled());
  ASSERT_OK_AND_ASSIGN(Caller caller, authorizer.Check(kExport, Credentials{}));
  EXPECT_FALSE(caller.authenticated);
  EXPECT_EQ(caller.name, "");
  EXPECT_OK(authorizer.Check("/predlog.v1.Admin/DropEverything", Credentials{}));
}

TEST(IsLoopbackAddressTest, OnlyLoopbackInterfacesAndLocalhost) {
  for (const char* address : {"127.0.0.1:50051", "127.3.4.5:1", "localhost:50051", "LOCALHOST:1",
                              "[::1]:50051", "[::ffff:127.0.0.1]:1", "unix:/run/predlog.sock"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
  for (const char* address : {"0.0.0.0:50051", "[::]:50051", "192.168.1.10:50051", "10.0.0.1:1",
                              "[fe80::1]:1", "predlog.example.com:50051", "localhost.example.com:1",
                              "128.0.0.1:1", "[::ffff:10.0.0.1]:1", ":50051"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
}

}  // namespace
}  // namespace predlog::auth
