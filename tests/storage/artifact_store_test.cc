#include "storage/artifact_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/sha256.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::IsOkAndHolds;
using ::predlog::testing::ReadFile;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// SHA-256 test vectors (FIPS 180-2).
constexpr char kSha256OfAbc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kSha256OfEmpty[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// Names in `dir`, sorted; empty when it does not exist.
std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Regular files anywhere under `dir`.
int CountFiles(const std::string& dir) {
  int n = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    n += entry.is_regular_file() ? 1 : 0;
  }
  return n;
}

struct stat StatOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st;
}

TEST(Sha256HasherTest, NoInputHashesToTheEmptyVector) {
  Sha256Hasher hasher;
  EXPECT_EQ(ToHex(hasher.Finish()), kSha256OfEmpty);
}

TEST(Sha256HasherTest, ChunksEqualOneShotOfTheWhole) {
  const std::string bytes = RandomBytes(200'003, 1);
  Sha256Hasher hasher;
  size_t pos = 0;
  const std::vector<size_t> chunks = {0, 1, 63, 64, 65, 4096, 100'000};
  for (const size_t chunk : chunks) {
    hasher.Update(absl::string_view(bytes).substr(pos, chunk));
    pos += chunk;
  }
  hasher.Update(absl::string_view(bytes).substr(pos));
  EXPECT_EQ(hasher.Finish(), Sha256(bytes));
}

TEST(Sha256HasherTest, FinishStartsOver) {
  Sha256Hasher hasher;
  hasher.Update("ab");
  hasher.Update("c");
  EXPECT_EQ(ToHex(hasher.Finish()), kSha256OfAbc);
  hasher.Update("abc");
  EXPECT_EQ(ToHex(hasher.Finish()), kSha256OfAbc);
}

// The chain is stored in every shard: its value must not change when its
// implementation does. Expected: sha256(32 zero bytes || sha256("abc")).
TEST(Sha256HasherTest, ChainNextIsUnchangedOnDisk) {
  EXPECT_EQ(ToHex(ChainNext(kChainGenesis, Sha256("abc"))),
            "589f9ffed4c477966bfb8d41f37895b08c69047df8f911d6f3b57fbe08faee8d");
}

class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();
    auto store = ArtifactStore::Open(store_dir_);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  std::vector<std::string> TempFiles() const { return ListDir(store_dir_ + "/tmp"); }

  TempDir temp_;
  const std::string store_dir_ = temp_.Sub("artifacts");
  std::unique_ptr<ArtifactStore> store_;
};

TEST_F(ArtifactStoreTest, OpenCreatesTheLayout) {
  EXPECT_EQ(store_->dir(), store_dir_);
  EXPECT_THAT(ListDir(store_dir_), ElementsAre("sha256", "tmp"));
}

TEST_F(ArtifactStoreTest, OpenRejectsAnEmptyDirectory) {
  EXPECT_THAT(ArtifactStore::Open(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("directory is empty")));
}

TEST_F(ArtifactStoreTest, StreamedUploadInUnevenChunksReadsBackExactly) {
  const std::string bytes = RandomBytes(5 * 1000 * 1000 + 17, 42);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ArtifactWriter> writer, store_->NewWriter());
  std::mt19937 rng(7);
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t chunk = std::min<size_t>(rng() % 300'000, bytes.size() - pos);
    ASSERT_OK(writer->Append(absl::string_view(bytes).substr(pos, chunk)));
    pos += chunk;
    EXPECT_EQ(writer->bytes_written(), pos);
  }
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, writer->Commit());

  EXPECT_EQ(info.digest, Sha256(bytes));
  EXPECT_EQ(info.size_bytes, bytes.size());
  ASSERT_OK_AND_ASSIGN(const std::string read, store_->Read(info.digest));
  EXPECT_TRUE(read == bytes) << "read " << read.size() << " bytes, wrote " << bytes.size();
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo stat, store_->Stat(info.digest));
  EXPECT_EQ(stat.digest, info.digest);
  EXPECT_EQ(stat.size_bytes, bytes.size());
  EXPECT_THAT(TempFiles(), IsEmpty());
}

TEST_F(ArtifactStoreTest, CommittedFileIsReadOnlyUnderItsDigest) {
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, store_->Put("model bytes"));
  const std::string hex = ToHex(Sha256("model bytes"));
  const std::string path = store_dir_ + "/sha256/" + hex.substr(0, 2) + "/" + hex;
  EXPECT_EQ(store_->PathOf(info.digest), path);
  EXPECT_EQ(ReadFile(path), "model bytes");
  EXPECT_EQ(StatOf(path).st_mode & 0777, 0444u);
}

TEST_F(ArtifactStoreTest, EmptyArtifactRoundTrips) {
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, store_->Put(""));
  EXPECT_EQ(ToHex(info.digest), kSha256OfEmpty);
  EXPECT_EQ(info.size_bytes, 0u);
  ASSERT_OK_AND_ASSIGN(const std::string read, store_->Read(info.digest));
  EXPECT_EQ(read, "");
}

TEST_F(ArtifactStoreTest, SecondPutOfSameBytesIsNoOp) {
  const std::string bytes = RandomBytes(10'000, 3);
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo first, store_->Put(bytes));
  const std::string path = store_->PathOf(first.digest);
  // An mtime far in the past: a rewrite of the file would move it to now.
  const struct timespec old_times[2] = {{1'000'000'000, 0}, {1'000'000'000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), old_times, 0), 0);
  const struct stat before = StatOf(path);

  ASSERT_OK_AND_ASSIGN(const ArtifactInfo second, store_->Put(bytes));

  EXPECT_EQ(second.digest, first.digest);
  EXPECT_EQ(second.size_bytes, first.size_bytes);
  const struct stat after = StatOf(path);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mtim.tv_sec, 1'000'000'000);
  EXPECT_EQ(after.st_mtim.tv_nsec, 0);
  EXPECT_EQ(ReadFile(path), bytes);
  EXPECT_THAT(ListDir(store_dir_ + "/sha256/" + ToHex(first.digest).substr(0, 2)), SizeIs(1));
  EXPECT_THAT(TempFiles(), IsEmpty());
}

TEST_F(ArtifactStoreTest, CommitWithExpectedDigestStores) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ArtifactWriter> writer, store_->NewWriter());
  ASSERT_OK(writer->Append("abc"));
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, writer->Commit(Sha256("abc")));
  EXPECT_EQ(ToHex(info.digest), kSha256OfAbc);
  EXPECT_THAT(store_->Stat(info.digest), IsOk());
}

TEST_F(ArtifactStoreTest, CommitWithWrongExpectedDigestStoresNothing) {
  const Digest wrong = Sha256("something else");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ArtifactWriter> writer, store_->NewWriter());
  ASSERT_OK(writer->Append("abc"));

  EXPECT_THAT(writer->Commit(wrong),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("artifact upload hashes to sha256:", kSha256OfAbc,
                                    ", not to the expected sha256:", ToHex(wrong))));
  EXPECT_THAT(store_->Stat(Sha256("abc")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kSha256OfAbc)));
  EXPECT_THAT(store_->Stat(wrong), StatusIs(absl::StatusCode::kNotFound, HasSubstr(ToHex(wrong))));
  EXPECT_THAT(TempFiles(), IsEmpty());
  EXPECT_THAT(ListDir(store_dir_ + "/sha256"), IsEmpty());
}

TEST_F(ArtifactStoreTest, WriterIsFinishedAfterCommit) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ArtifactWriter> writer, store_->NewWriter());
  ASSERT_OK(writer->Append("abc"));
  ASSERT_OK(writer->Commit());
  EXPECT_THAT(writer->Append("more"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already committed")));
  EXPECT_THAT(writer->Commit(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already committed")));
  EXPECT_EQ(writer->bytes_written(), 3u);
}

TEST_F(ArtifactStoreTest, ReadOfMissingDigestIsNotFoundNamingIt) {
  const Digest missing = Sha256("never stored");
  const std::string message = absl::StrCat("artifact sha256:", ToHex(missing),
                                           " is not in the artifact store (", store_dir_, ")");
  EXPECT_THAT(store_->Read(missing), StatusIs(absl::StatusCode::kNotFound, message));
  EXPECT_THAT(store_->Stat(missing), StatusIs(absl::StatusCode::kNotFound, message));
}

TEST_F(ArtifactStoreTest, FlippedByteIsDataLossNamingBothDigests) {
  std::string bytes = RandomBytes(100'000, 5);
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, store_->Put(bytes));
  const std::string path = store_->PathOf(info.digest);
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  bytes[54'321] ^= 0x01;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;

  EXPECT_THAT(store_->Read(info.digest),
              StatusIs(absl::StatusCode::kDataLoss,
                       absl::StrCat("artifact sha256:", ToHex(info.digest),
                                    " is corrupt: its content hashes to ", ToHex(Sha256(bytes)))));
}

TEST_F(ArtifactStoreTest, TruncatedFileIsDataLoss) {
  const std::string bytes = RandomBytes(100'000, 6);
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, store_->Put(bytes));
  const std::string path = store_->PathOf(info.digest);
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  ASSERT_EQ(::truncate(path.c_str(), 40'000), 0);

  EXPECT_THAT(
      store_->Read(info.digest),
      StatusIs(absl::StatusCode::kDataLoss, absl::StrCat("artifact sha256:", ToHex(info.digest),
                                                         " is corrupt: its content hashes to ",
                                                         ToHex(Sha256(bytes.substr(0, 40'000))))));
  // Stat does not read the bytes: it reports what is on disk.
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo stat, store_->Stat(info.digest));
  EXPECT_EQ(stat.size_bytes, 40'000u);
}

TEST_F(ArtifactStoreTest, ReuploadOverDamagedFileOfOtherSizeIsDataLossAndKeepsIt) {
  const std::string bytes = RandomBytes(1'000, 8);
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, store_->Put(bytes));
  const std::string path = store_->PathOf(info.digest);
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  ASSERT_EQ(::truncate(path.c_str(), 10), 0);

  EXPECT_THAT(store_->Put(bytes), StatusIs(absl::StatusCode::kDataLoss,
                                           absl::StrCat("artifact sha256:", ToHex(info.digest),
                                                        " is corrupt: its file ", path,
                                                        " has 10 bytes, its content 1000")));
  EXPECT_EQ(ReadFile(path), bytes.substr(0, 10));  // write-once: not repaired
  EXPECT_THAT(TempFiles(), IsEmpty());
}

TEST_F(ArtifactStoreTest, AbandonedWriterLeavesNoTempFile) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ArtifactWriter> writer, store_->NewWriter());
  ASSERT_OK(writer->Append("half an upload"));
  EXPECT_THAT(TempFiles(), SizeIs(1));
  writer.reset();
  EXPECT_THAT(TempFiles(), IsEmpty());
  EXPECT_THAT(ListDir(store_dir_ + "/sha256"), IsEmpty());
}

TEST_F(ArtifactStoreTest, ReopenRemovesStaleTempFilesAndKeepsArtifacts) {
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, store_->Put("kept"));
  // What crashed uploads leave: a partial upload, and a second name of an
  // artifact committed just before the crash (read-only).
  std::ofstream(store_dir_ + "/tmp/upload-crashed1") << "partial";
  ASSERT_EQ(
      ::link(store_->PathOf(info.digest).c_str(), (store_dir_ + "/tmp/upload-crashed2").c_str()),
      0);
  ASSERT_THAT(TempFiles(), ElementsAre("upload-crashed1", "upload-crashed2"));

  Reopen();

  EXPECT_THAT(TempFiles(), IsEmpty());
  ASSERT_OK_AND_ASSIGN(const std::string read, store_->Read(info.digest));
  EXPECT_EQ(read, "kept");
}

TEST_F(ArtifactStoreTest, OpenKeepsTempFileOfLiveUpload) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ArtifactWriter> writer, store_->NewWriter());
  ASSERT_OK(writer->Append("in progress"));
  ASSERT_THAT(TempFiles(), SizeIs(1));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ArtifactStore> second, ArtifactStore::Open(store_dir_));

  EXPECT_THAT(TempFiles(), SizeIs(1));
  ASSERT_OK(writer->Append(", now done"));
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, writer->Commit());
  ASSERT_OK_AND_ASSIGN(const std::string read, second->Read(info.digest));
  EXPECT_EQ(read, "in progress, now done");
}

TEST_F(ArtifactStoreTest, ConcurrentCommitsOfSameContentBothSucceedWithOneFile) {
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    const std::string bytes = RandomBytes(50'000, 100 + round);
    absl::Barrier* barrier = new absl::Barrier(2);  // deletes itself via Block()
    absl::StatusOr<ArtifactInfo> results[2];
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        absl::StatusOr<std::unique_ptr<ArtifactWriter>> writer = store_->NewWriter();
        absl::Status appended = writer.ok() ? (*writer)->Append(bytes) : writer.status();
        if (barrier->Block()) delete barrier;
        results[t] = appended.ok() ? (*writer)->Commit() : appended;
      });
    }
    for (auto& thread : threads) thread.join();

    for (const auto& result : results) {
      ASSERT_THAT(result, IsOk()) << "round " << round;
      EXPECT_EQ(result->digest, Sha256(bytes));
      EXPECT_EQ(result->size_bytes, bytes.size());
    }
    EXPECT_EQ(CountFiles(store_dir_ + "/sha256"), round + 1);
    EXPECT_THAT(TempFiles(), IsEmpty());
    ASSERT_OK_AND_ASSIGN(const std::string read, store_->Read(Sha256(bytes)));
    EXPECT_TRUE(read == bytes);
  }
}

TEST_F(ArtifactStoreTest, ListNamesEveryCommittedArtifactAscending) {
  EXPECT_THAT(store_->List(), IsOkAndHolds(std::vector<Digest>{}));
  std::vector<Digest> digests;
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, store_->Put(RandomBytes(1000, seed)));
    digests.push_back(info.digest);
  }
  std::sort(digests.begin(), digests.end());
  // An upload in progress and a stray file are not artifacts.
  ASSERT_OK_AND_ASSIGN(auto writer, store_->NewWriter());
  ASSERT_OK(writer->Append("half"));
  std::ofstream(store_dir_ + "/sha256/README") << "not an artifact";
  EXPECT_THAT(store_->List(), IsOkAndHolds(digests));
}

TEST_F(ArtifactStoreTest, CopyFromStoresAMissingArtifactAndSkipsOneAlreadyHere) {
  const std::string bytes = RandomBytes(3'000'000, 11);  // several read chunks
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, store_->Put(bytes));
  ASSERT_OK_AND_ASSIGN(auto copy, ArtifactStore::Open(temp_.Sub("copy")));
  ASSERT_OK_AND_ASSIGN(ArtifactStore::Copied copied, copy->CopyFrom(*store_, info.digest));
  EXPECT_TRUE(copied.copied);
  EXPECT_EQ(copied.size_bytes, bytes.size());
  ASSERT_OK_AND_ASSIGN(const std::string read, copy->Read(info.digest));
  EXPECT_TRUE(read == bytes);
  ASSERT_OK_AND_ASSIGN(copied, copy->CopyFrom(*store_, info.digest));
  EXPECT_FALSE(copied.copied);
  EXPECT_THAT(copy->List(), IsOkAndHolds(std::vector<Digest>{info.digest}));
  EXPECT_THAT(copy->CopyFrom(*store_, Sha256("never stored")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(store_dir_)));
}

TEST_F(ArtifactStoreTest, CopyFromADamagedArtifactIsDataLossAndStoresNothing) {
  std::string bytes = RandomBytes(100'000, 12);
  ASSERT_OK_AND_ASSIGN(const ArtifactInfo info, store_->Put(bytes));
  const std::string path = store_->PathOf(info.digest);
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  bytes[777] ^= 0x01;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  ASSERT_OK_AND_ASSIGN(auto copy, ArtifactStore::Open(temp_.Sub("copy")));
  EXPECT_THAT(copy->CopyFrom(*store_, info.digest),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr(absl::StrCat("artifact sha256:", ToHex(info.digest), " in ",
                                              store_dir_, " is corrupt"))));
  EXPECT_THAT(copy->List(), IsOkAndHolds(std::vector<Digest>{}));
  EXPECT_THAT(ListDir(temp_.Sub("copy/tmp")), IsEmpty());
}

}  // namespace
}  // namespace predlog::storage
