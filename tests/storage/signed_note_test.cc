#include "storage/signed_note.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/merkle.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;

// The key, text and signed note of Go's golang.org/x/mod/sumdb/note tests
// (note_test.go, TestSign): Ed25519 signatures are deterministic, so predlog
// must produce the same bytes and read Go's.
constexpr char kGoSignerKey[] =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
constexpr char kGoVerifierKey[] =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
constexpr char kGoText[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n";
constexpr char kGoSignedNote[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\xe2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/"
    "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

TEST(SignedNoteTest, SignsAndOpensGosPublishedNoteByteForByte) {
  ASSERT_OK_AND_ASSIGN(auto signer, NoteSigner::Create(kGoSignerKey));
  EXPECT_EQ(signer->name(), "PeterNeumann");
  EXPECT_EQ(signer->key_id(), 0xc74f20a3u);
  EXPECT_EQ(signer->verifier_key(), kGoVerifierKey);
  ASSERT_OK_AND_ASSIGN(std::string note, signer->Sign(kGoText));
  EXPECT_EQ(note, kGoSignedNote);
  ASSERT_OK_AND_ASSIGN(auto verifier, NoteVerifier::Create(kGoVerifierKey));
  EXPECT_THAT(verifier->Open(kGoSignedNote), ::predlog::testing::IsOkAndHolds(kGoText));
}

TEST(SignedNoteTest, AGeneratedKeySignsWhatItsVerifierOpens) {
  ASSERT_OK_AND_ASSIGN(NoteKeyPair pair, GenerateNoteKey("predlog.test/events-0"));
  EXPECT_THAT(pair.signer_key, ::testing::StartsWith("PRIVATE+KEY+predlog.test/events-0+"));
  ASSERT_OK_AND_ASSIGN(auto signer, NoteSigner::Create(pair.signer_key));
  EXPECT_EQ(signer->verifier_key(), pair.verifier_key);
  ASSERT_OK_AND_ASSIGN(auto verifier, NoteVerifier::Create(pair.verifier_key));
  ASSERT_OK_AND_ASSIGN(std::string note, signer->Sign("hello\n"));
  EXPECT_THAT(verifier->Open(note), ::predlog::testing::IsOkAndHolds("hello\n"));

  // Another key's signature is not this key's, even under the same name.
  ASSERT_OK_AND_ASSIGN(NoteKeyPair other, GenerateNoteKey("predlog.test/events-0"));
  ASSERT_OK_AND_ASSIGN(auto other_signer, NoteSigner::Create(other.signer_key));
  ASSERT_OK_AND_ASSIGN(std::string forged, other_signer->Sign("hello\n"));
  EXPECT_THAT(verifier->Open(forged),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no signature by")));
  // Cosigned by both: this key's line is found among the others.
  const std::string cosigned = absl::StrCat(note, forged.substr(forged.find("\xe2\x80\x94")));
  EXPECT_THAT(verifier->Open(cosigned), ::predlog::testing::IsOkAndHolds("hello\n"));
}

TEST(SignedNoteTest, ChangedOrMalformedNotesAreRefusedNamingWhy) {
  ASSERT_OK_AND_ASSIGN(auto verifier, NoteVerifier::Create(kGoVerifierKey));
  std::string changed_text = kGoSignedNote;
  changed_text[3] = 'Y';
  EXPECT_THAT(verifier->Open(changed_text),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not verify")));
  // The same signature without its base64 padding: one spelling only.
  std::string unpadded = kGoSignedNote;
  unpadded.erase(unpadded.size() - 2, 1);
  EXPECT_THAT(verifier->Open(unpadded),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NAME BASE64")));
  std::string changed_signature = kGoSignedNote;
  changed_signature[changed_signature.size() - 10] ^= 1;
  EXPECT_FALSE(verifier->Open(changed_signature).ok());
  EXPECT_THAT(verifier->Open(kGoText),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no blank line")));
  EXPECT_THAT(verifier->Open(absl::StrCat(kGoText, "\n- PeterNeumann AAAA\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("em dash")));
  EXPECT_THAT(verifier->Open(absl::StrCat(kGoText, "\n\xe2\x80\x94 PeterNeumann !!\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NAME BASE64")));
  EXPECT_THAT(verifier->Open(std::string(kGoSignedNote, sizeof(kGoSignedNote) - 2)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("end with a newline")));
  EXPECT_THAT(verifier->Open(absl::StrCat("\xff", kGoSignedNote)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not UTF-8")));
  EXPECT_THAT(verifier->Open(""), StatusIs(absl::StatusCode::kInvalidArgument, _));

  ASSERT_OK_AND_ASSIGN(auto signer, NoteSigner::Create(kGoSignerKey));
  EXPECT_THAT(signer->Sign("no newline"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("end with a newline")));
  EXPECT_THAT(signer->Sign("a\n\nb\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("blank line")));
  EXPECT_THAT(signer->Sign("bell\x07\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control character")));
}

TEST(SignedNoteTest, BadKeysAreRefusedNamingWhatIsWrong) {
  EXPECT_THAT(NoteSigner::Create(kGoVerifierKey),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PRIVATE+KEY+")));
  EXPECT_THAT(NoteVerifier::Create("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/"
                                   "LDE4izWy10TW"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not match its key")));
  EXPECT_THAT(NoteVerifier::Create("PeterNeumann+c74f20a3"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NAME+ID+KEY")));
  EXPECT_THAT(NoteVerifier::Create("PeterNeumann+c74f20a3+AAAA"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Ed25519")));
  EXPECT_THAT(GenerateNoteKey("has space"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key name")));
  EXPECT_THAT(GenerateNoteKey("a+b"), StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST(CheckpointTest, TextRoundTripsAndBadLinesAreNamed) {
  Checkpoint c;
  c.origin = "predlog.test/predlog.events-0";
  c.size = 8;
  c.root = MerkleEmptyRoot();
  c.extensions = {"appended_at 2026-11-30T12:00:00Z"};
  const std::string text = c.Text();
  EXPECT_EQ(text, absl::StrCat("predlog.test/predlog.events-0\n8\n",
                               absl::Base64Escape(AsBytes(MerkleEmptyRoot())),
                               "\nappended_at 2026-11-30T12:00:00Z\n"));
  ASSERT_OK_AND_ASSIGN(Checkpoint parsed, ParseCheckpoint(text));
  EXPECT_EQ(parsed.origin, c.origin);
  EXPECT_EQ(parsed.size, 8u);
  EXPECT_EQ(parsed.root, c.root);
  EXPECT_EQ(parsed.extensions, c.extensions);

  const std::string root = absl::Base64Escape(AsBytes(MerkleEmptyRoot()));
  EXPECT_THAT(ParseCheckpoint(absl::StrCat("\n8\n", root, "\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1")));
  EXPECT_THAT(ParseCheckpoint(absl::StrCat("o\n08\n", root, "\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
  EXPECT_THAT(ParseCheckpoint(absl::StrCat("o\n-1\n", root, "\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
  EXPECT_THAT(ParseCheckpoint(absl::StrCat("o\n99999999999999999999\n", root, "\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2")));
  EXPECT_THAT(ParseCheckpoint("o\n8\nAAAA\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 3")));
  EXPECT_THAT(ParseCheckpoint("o\n8\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("want origin")));
}

TEST(CheckpointExtensionsTest, SignedAtAndShardsLinesRoundTripAndOtherLinesAreLeftAlone) {
  Checkpoint c;
  c.origin = "predlog.test/predlog.events-0";
  c.size = 3;
  const absl::Time t = absl::FromUnixMicros(1'780'000'000'123'456);
  c.extensions.push_back(SignedAtLine(t + absl::Nanoseconds(789)));  // truncated to µs
  ASSERT_OK_AND_ASSIGN(std::string shards,
                       ShardsLine({{"predlog.events", 4}, {"predlog.registry", 1}}));
  EXPECT_EQ(shards, "predlog-shards predlog.events/4 predlog.registry/1");
  c.extensions.push_back(shards);
  c.extensions.push_back("someone-else's line");
  EXPECT_EQ(c.extensions[0], "predlog-signed-at 2026-05-28T20:26:40.123456Z");
  ASSERT_OK_AND_ASSIGN(Checkpoint parsed, ParseCheckpoint(c.Text()));
  ASSERT_OK_AND_ASSIGN(CheckpointExtensions lines, ParseCheckpointExtensions(parsed));
  EXPECT_EQ(lines.signed_at, t);
  ASSERT_TRUE(lines.shards.has_value());
  EXPECT_EQ(*lines.shards,
            (std::map<std::string, uint32_t>{{"predlog.events", 4}, {"predlog.registry", 1}}));
  // A checkpoint from before the lines existed has neither.
  c.extensions.clear();
  ASSERT_OK_AND_ASSIGN(CheckpointExtensions none, ParseCheckpointExtensions(c));
  EXPECT_FALSE(none.signed_at.has_value());
  EXPECT_FALSE(none.shards.has_value());
  EXPECT_THAT(ShardsLine({}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("topic")));
  EXPECT_THAT(ShardsLine({{"a b", 1}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"a b\"")));
  EXPECT_THAT(ShardsLine({{"t", 0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("t has 0 shards")));
}

TEST(CheckpointExtensionsTest, MalformedLinesAreRefusedNamingTheLineAndWhy) {
  const auto parse = [](std::vector<std::string> lines) {
    Checkpoint c;
    c.origin = "o";
    c.extensions = std::move(lines);
    return ParseCheckpointExtensions(c);
  };
  const std::string time = "predlog-signed-at 2026-05-28T20:26:40.123456Z";
  EXPECT_THAT(parse({time, time}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 5 (" + time + "): a second predlog-signed-at line")));
  for (const std::string bad :
       {"predlog-signed-at 2026-05-28T20:26:40Z", "predlog-signed-at 2026-05-28T20:26:40.123456",
        "predlog-signed-at 2026-05-28T22:26:40.123456+02:00", "predlog-signed-at",
        "predlog-signed-at yesterday", "predlog-signed-at  2026-05-28T20:26:40.123456Z"}) {
    EXPECT_THAT(parse({bad}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("line 4 (" + bad + "): the signing time is not RFC 3339 UTC")))
        << bad;
  }
  EXPECT_THAT(parse({"predlog-shards"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 4 (predlog-shards): it names no shards")));
  for (const auto& [bad, part] : std::vector<std::pair<std::string, std::string>>{
           {"predlog-shards predlog.events", "predlog.events"},
           {"predlog-shards predlog.events/0", "predlog.events/0"},
           {"predlog-shards predlog.events/04", "predlog.events/04"},
           {"predlog-shards predlog.events/-1", "predlog.events/-1"},
           {"predlog-shards /3", "/3"},
           {"predlog-shards a/1  b/2", ""},
           {"predlog-shards a/99999999999", "a/99999999999"}}) {
    EXPECT_THAT(parse({bad}), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("\"" + part + "\" is not TOPIC/COUNT")))
        << bad;
  }
  EXPECT_THAT(parse({"predlog-shards a/1 a/2"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("topic a is named twice")));
  EXPECT_THAT(parse({"predlog-shards a/1", "predlog-shards a/1"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("line 5 (predlog-shards a/1): a second predlog-shards line")));
}

TEST(NoteKeyFileTest, GeneratesAKeyOnceWithMode0600AndItsVerifierKeyBeside) {
  testing::TempDir dir;
  const std::string path = dir.Sub("keys/checkpoint.key");
  ASSERT_OK_AND_ASSIGN(NoteKeyFile first, LoadNoteKeyFile(path, "predlog-test"));
  EXPECT_TRUE(first.generated);
  EXPECT_EQ(first.signer->name(), "predlog-test");
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(testing::ReadFile(path + ".pub"), first.signer->verifier_key() + "\n");
  // The second start reads the same key.
  ASSERT_OK_AND_ASSIGN(NoteKeyFile second, LoadNoteKeyFile(path, "predlog-test"));
  EXPECT_FALSE(second.generated);
  EXPECT_EQ(second.signer->verifier_key(), first.signer->verifier_key());
  // A .pub that holds another key (the key file was replaced) is rewritten:
  // auditors must never be handed another key.
  std::ofstream(path + ".pub", std::ios::trunc) << "someone+00000000+AAAA\n";
  ASSERT_OK(LoadNoteKeyFile(path, "").status());
  EXPECT_EQ(testing::ReadFile(path + ".pub"), first.signer->verifier_key() + "\n");
}

TEST(NoteKeyFileTest, AMissingLooseOrBadKeyFileIsRefusedNamingIt) {
  testing::TempDir dir;
  const std::string path = dir.Sub("checkpoint.key");
  EXPECT_THAT(LoadNoteKeyFile(path, ""), StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
  ASSERT_OK_AND_ASSIGN(NoteKeyPair pair, GenerateNoteKey("loose"));
  std::ofstream(path) << pair.signer_key << "\n";
  std::filesystem::permissions(path, std::filesystem::perms::owner_read |
                                         std::filesystem::perms::owner_write |
                                         std::filesystem::perms::group_read);
  EXPECT_THAT(LoadNoteKeyFile(path, ""),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("chmod 600 " + path)));
  std::filesystem::permissions(
      path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  ASSERT_OK(LoadNoteKeyFile(path, "").status());
  // A verifier key where the signer key belongs.
  std::ofstream(path, std::ios::trunc) << pair.verifier_key << "\n";
  EXPECT_THAT(LoadNoteKeyFile(path, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signing key " + path)));
}

}  // namespace
}  // namespace predlog::storage
