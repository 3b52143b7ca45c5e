// The dataset digest `predlog dataset register --path` computes, checked
// against the format in dataset_digest.h assembled here by hand.
#include "services/cli/dataset_digest.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/sha256.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

std::string Hex(const std::string& bytes) { return storage::ToHex(storage::Sha256(bytes)); }

class DatasetDigestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.Sub("applications");
    WriteFile(root_ + "/part-0.csv", "id,income\n1,52000\n");
    WriteFile(root_ + "/part-1.csv", "id,income\n2,61000\n");
    WriteFile(root_ + "/meta/schema.json", "{\"income\":\"int\"}");
    WriteFile(root_ + "/.dvcignore", "");
  }

  // The documented format: sorted by path, "<hex>  <path>\n" per file.
  std::string Expected() const {
    return Hex(absl::StrCat(Hex(""), "  .dvcignore\n",                            //
                            Hex("{\"income\":\"int\"}"), "  meta/schema.json\n",  //
                            Hex("id,income\n1,52000\n"), "  part-0.csv\n",        //
                            Hex("id,income\n2,61000\n"), "  part-1.csv\n"));
  }

  TempDir dir_;
  std::string root_;
};

TEST_F(DatasetDigestTest, DirectoryDigestIsTheSha256OfTheSortedFileListing) {
  ASSERT_OK_AND_ASSIGN(DatasetDigest digest, DigestDatasetPath(root_));
  EXPECT_EQ(digest.sha256_hex, Expected());
  EXPECT_EQ(digest.files, 4u);
  EXPECT_EQ(digest.size_bytes, 18u + 18u + 16u);
}

TEST_F(DatasetDigestTest, EmptyDirectoriesAndATrailingSlashChangeNothing) {
  std::filesystem::create_directories(root_ + "/empty/deeper");
  ASSERT_OK_AND_ASSIGN(DatasetDigest digest, DigestDatasetPath(root_ + "/"));
  EXPECT_EQ(digest.sha256_hex, Expected());
}

TEST_F(DatasetDigestTest, RenamingAFileChangesTheDigest) {
  std::filesystem::rename(root_ + "/part-1.csv", root_ + "/part-2.csv");
  ASSERT_OK_AND_ASSIGN(DatasetDigest digest, DigestDatasetPath(root_));
  EXPECT_NE(digest.sha256_hex, Expected());
}

TEST_F(DatasetDigestTest, ChangingOneByteChangesTheDigest) {
  WriteFile(root_ + "/part-1.csv", "id,income\n2,61001\n");
  ASSERT_OK_AND_ASSIGN(DatasetDigest digest, DigestDatasetPath(root_));
  EXPECT_NE(digest.sha256_hex, Expected());
  EXPECT_EQ(digest.size_bytes, 18u + 18u + 16u);
}

TEST_F(DatasetDigestTest, AFileDigestIsTheSha256OfItsBytes) {
  ASSERT_OK_AND_ASSIGN(DatasetDigest digest, DigestDatasetPath(root_ + "/part-0.csv"));
  EXPECT_EQ(digest.sha256_hex, Hex("id,income\n1,52000\n"));
  EXPECT_EQ(digest.size_bytes, 18u);
  EXPECT_EQ(digest.files, 1u);
}

TEST_F(DatasetDigestTest, SymbolicLinksAreRefusedNamingThem) {
  ASSERT_EQ(::symlink("part-0.csv", (root_ + "/latest.csv").c_str()), 0);
  EXPECT_THAT(DigestDatasetPath(root_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("latest.csv")));
  EXPECT_THAT(DigestDatasetPath(root_ + "/latest.csv"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("symbolic link")));
}

TEST_F(DatasetDigestTest, AMissingPathIsNotFound) {
  EXPECT_THAT(DigestDatasetPath(dir_.Sub("nowhere")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nowhere")));
}

}  // namespace
}  // namespace predlog::services
