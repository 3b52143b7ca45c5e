// The identities file: its grammar, the errors that name the file and the
// line, and tokens (generation, hashing, look-up).
#include <fstream>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/auth/auth.h"
#include "storage/sha256.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::auth {
namespace {

using ::predlog::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

std::string HashHex(absl::string_view token) { return storage::ToHex(TokenHash(token)); }

TEST(IdentitiesTest, ParsesIdentitiesCommentsAndBlankLines) {
  const std::string text = absl::StrCat(
      "# predlog identities\n"
      "\n"
      "limits-api   writer          token-sha256:",
      HashHex("plt_one"),
      "   # serving code\n"
      "\talice\tsupport,auditor\ttoken-sha256:",
      HashHex("plt_two"),
      "\r\n"
      "release-bot admin cert:release-bot.ml.internal\n"
      "   # indented comment\n");
  ASSERT_OK_AND_ASSIGN(Identities identities, Identities::Parse(text, "ids.txt"));
  EXPECT_EQ(identities.size(), 3u);
  const Identities::Identity* limits = identities.FindByToken("plt_one");
  ASSERT_NE(limits, nullptr);
  EXPECT_EQ(limits->name, "limits-api");
  EXPECT_EQ(limits->roles, RoleSet({Role::kWriter}));
  const Identities::Identity* alice = identities.FindByToken("plt_two");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->name, "alice");
  EXPECT_EQ(alice->roles.ToString(), "support,auditor");
  std::string matched;
  const std::vector<std::string> names = {"other-cn", "release-bot.ml.internal"};
  const Identities::Identity* bot = identities.FindByCertificate(names, &matched);
  ASSERT_NE(bot, nullptr);
  EXPECT_EQ(bot->name, "release-bot");
  EXPECT_EQ(matched, "release-bot.ml.internal");
  EXPECT_TRUE(identities.has_certificate_identities());
}

TEST(IdentitiesTest, UnknownTokensAndCertificatesFindNobody) {
  ASSERT_OK_AND_ASSIGN(
      Identities identities,
      Identities::Parse(absl::StrCat("a writer token-sha256:", HashHex("plt_right"), "\n",
                                     "b admin cert:b.internal\n"),
                        "ids"));
  EXPECT_EQ(identities.FindByToken("plt_wrong"), nullptr);
  EXPECT_EQ(identities.FindByToken("plt_righ"), nullptr);
  EXPECT_EQ(identities.FindByToken(""), nullptr);
  // The stored hash itself is not a token.
  EXPECT_EQ(identities.FindByToken(HashHex("plt_right")), nullptr);
  const std::vector<std::string> near = {"b.internal.evil", "B.internal", "b"};
  EXPECT_EQ(identities.FindByCertificate(near, nullptr), nullptr);
}

TEST(IdentitiesTest, ANameMayHoldSeveralCredentialsWithTheSameRoles) {
  ASSERT_OK_AND_ASSIGN(
      Identities identities,
      Identities::Parse(absl::StrCat("limits-api writer token-sha256:", HashHex("plt_old"), "\n",
                                     "limits-api writer token-sha256:", HashHex("plt_new"), "\n"),
                        "ids"));
  EXPECT_EQ(identities.size(), 1u);
  ASSERT_NE(identities.FindByToken("plt_old"), nullptr);
  EXPECT_EQ(identities.FindByToken("plt_old"), identities.FindByToken("plt_new"));
}

TEST(IdentitiesTest, APlainTextTokenIsRefusedNamingTheLineWithoutRepeatingIt) {
  ASSERT_OK_AND_ASSIGN(std::string token, NewToken());
  for (const std::string& credential :
       {absl::StrCat("token:", token), absl::StrCat("token-sha256:", token), token}) {
    const std::string text =
        absl::StrCat("# people\n", "alice support token-sha256:", HashHex("plt_x"), "\nbob writer ",
                     credential, "\n");
    absl::StatusOr<Identities> parsed = Identities::Parse(text, "/etc/predlog/ids");
    EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr("identities file /etc/predlog/ids line 3"),
                                       HasSubstr("plain text"), Not(HasSubstr(token)))))
        << credential;
  }
}

TEST(IdentitiesTest, BadLinesAreRefusedNamingFileLineAndWhat) {
  const std::string hash = HashHex("plt_a");
  const struct {
    std::string line;
    std::string why;
  } cases[] = {
      {"alice support", "want NAME ROLES CREDENTIAL (3 fields), found 2"},
      {"alice support token-sha256:" + hash + " extra", "found 4"},
      {"alice reader token-sha256:" + hash, "unknown role \"reader\""},
      {"alice support,support token-sha256:" + hash, "the role support is listed twice"},
      {"alice support, token-sha256:" + hash, "unknown role \"\""},
      {"alice support token-sha256:abc", "64 hex digits, not 3 characters"},
      {"alice support token-sha256:" + std::string(64, 'g'), "not all hex"},
      {"alice support password:" + hash, "the credential must be token-sha256:<hex> or cert:"},
      {"alice support cert:", "cert: wants the certificate's CN or a SAN"},
      {"al ice support token-sha256:" + hash, "found 4"},
      {"al;ice support token-sha256:" + hash, "may only hold letters, digits"},
  };
  for (const auto& c : cases) {
    const std::string text = absl::StrCat("# header\n\n", c.line, "\n");
    EXPECT_THAT(Identities::Parse(text, "ids.txt"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("identities file ids.txt line 3: "), HasSubstr(c.why))))
        << c.line;
  }
}

TEST(IdentitiesTest, ACredentialBelongsToOneLineAndANameToOneRoleSet) {
  const std::string hash = HashHex("plt_a");
  EXPECT_THAT(Identities::Parse(absl::StrCat("a writer token-sha256:", hash,
                                             "\nb support token-sha256:", hash, "\n"),
                                "ids"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 2"), HasSubstr("already listed for a"))));
  EXPECT_THAT(
      Identities::Parse("a writer cert:x.internal\nb support cert:x.internal\n", "ids"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("line 2"), HasSubstr("x.internal is already listed for a"))));
  EXPECT_THAT(
      Identities::Parse(absl::StrCat("a writer token-sha256:", hash, "\na admin cert:a.internal\n"),
                        "ids"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("line 2"), HasSubstr("a is given the roles admin here and "
                                                    "writer on an earlier line"))));
}

TEST(IdentitiesTest, AFileWithoutIdentitiesIsRefused) {
  EXPECT_THAT(Identities::Parse("# nobody yet\n\n", "ids"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("holds no identity")));
}

TEST(IdentitiesTest, LoadNamesAMissingFile) {
  testing::TempDir dir;
  EXPECT_THAT(Identities::Load(dir.Sub("nope")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir.Sub("nope"))));
  std::ofstream(dir.Sub("ids")) << "x auditor cert:x\n";
  ASSERT_OK_AND_ASSIGN(Identities identities, Identities::Load(dir.Sub("ids")));
  EXPECT_EQ(identities.size(), 1u);
}

TEST(TokenTest, NewTokensAreRandomPrefixedAndUrlSafe) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string token, NewToken());
    EXPECT_EQ(token.size(), 47u) << token;
    EXPECT_TRUE(absl::StartsWith(token, kTokenPrefix)) << token;
    for (char c : token.substr(kTokenPrefix.size())) {
      EXPECT_TRUE(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')
          << token;
    }
    seen.insert(token);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(TokenTest, TheIdentityLineOfANewTokenAuthenticatesIt) {
  ASSERT_OK_AND_ASSIGN(std::string token, NewToken());
  const std::string line =
      IdentityLine("limits-api", {Role::kWriter, Role::kSupport}, TokenHash(token));
  EXPECT_EQ(line, absl::StrCat("limits-api writer,support token-sha256:",
                               storage::ToHex(storage::Sha256(token))));
  EXPECT_THAT(line, Not(HasSubstr(token)));
  ASSERT_OK_AND_ASSIGN(Identities identities, Identities::Parse(line, "ids"));
  const Identities::Identity* identity = identities.FindByToken(token);
  ASSERT_NE(identity, nullptr);
  EXPECT_EQ(identity->name, "limits-api");
  // One changed character is another token.
  std::string other = token;
  other.back() = other.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(identities.FindByToken(other), nullptr);
}

TEST(RolesTest, ParseRolesNamesWhatIsWrong) {
  ASSERT_OK_AND_ASSIGN(RoleSet roles, ParseRoles("admin,writer"));
  EXPECT_EQ(roles.ToString(), "writer,admin");
  EXPECT_THAT(ParseRoles(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no role given")));
  EXPECT_THAT(ParseRoles("writer, support"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown role \" support\"")));
  EXPECT_THAT(ParseRoles("Writer"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown role \"Writer\"")));
}

}  // namespace
}  // namespace predlog::auth
