#include "storage/merkle.h"

#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::StatusIs;
using ::testing::HasSubstr;

// The leaves and roots of RFC 6962's reference implementation's tests
// (certificate-transparency merkle_tree_test), also published as the
// transparency-dev/merkle test vectors.
const std::vector<std::string>& Leaves() {
  static const auto* leaves =
      new std::vector<std::string>{"",
                                   absl::HexStringToBytes("00"),
                                   absl::HexStringToBytes("10"),
                                   absl::HexStringToBytes("2021"),
                                   absl::HexStringToBytes("3031"),
                                   absl::HexStringToBytes("40414243"),
                                   absl::HexStringToBytes("5051525354555657"),
                                   absl::HexStringToBytes("606162636465666768696a6b6c6d6e6f")};
  return *leaves;
}
constexpr const char* kRoots[] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

Digest Hex(absl::string_view hex) {
  std::optional<Digest> d = DigestFromHex(hex);
  EXPECT_TRUE(d.has_value()) << hex;
  return d.value_or(Digest{});
}

std::vector<Digest> Hexes(const std::vector<const char*>& hexes) {
  std::vector<Digest> out;
  for (const char* h : hexes) out.push_back(Hex(h));
  return out;
}

// A node store in memory: what a shard keeps in RocksDB.
class Tree {
 public:
  void Append(absl::string_view leaf_data) {
    std::vector<MerkleNode> completed;
    frontier_.Append(MerkleLeafHash(leaf_data), &completed);
    for (const MerkleNode& n : completed) {
      EXPECT_TRUE(nodes_.emplace(std::make_pair(n.level, n.index), n.hash).second)
          << "node written twice: " << int(n.level) << "/" << n.index;
    }
  }
  MerkleNodeReader Reader() const {
    return [this](uint8_t level, uint64_t index) -> absl::StatusOr<Digest> {
      auto it = nodes_.find({level, index});
      if (it == nodes_.end()) return absl::NotFoundError("no node");
      return it->second;
    };
  }
  const MerkleFrontier& frontier() const { return frontier_; }

 private:
  MerkleFrontier frontier_;
  std::map<std::pair<uint8_t, uint64_t>, Digest> nodes_;
};

// RFC 6962 §2.1's definition, recursively over the leaf data: the reference
// the stored-node implementation is compared with.
Digest ReferenceRoot(const std::vector<std::string>& d, size_t begin, size_t end) {
  const size_t n = end - begin;
  if (n == 0) return MerkleEmptyRoot();
  if (n == 1) return MerkleLeafHash(d[begin]);
  size_t k = 1;
  while (k * 2 < n) k *= 2;
  return MerkleNodeHash(ReferenceRoot(d, begin, begin + k), ReferenceRoot(d, begin + k, end));
}

TEST(MerkleTest, RootsOfThePublishedVectors) {
  EXPECT_EQ(ToHex(MerkleEmptyRoot()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Tree tree;
  for (size_t n = 0; n < Leaves().size(); ++n) {
    tree.Append(Leaves()[n]);
    EXPECT_EQ(ToHex(tree.frontier().Root()), kRoots[n]) << n + 1;
    ASSERT_OK_AND_ASSIGN(Digest root, MerkleRootAt(n + 1, tree.Reader()));
    EXPECT_EQ(ToHex(root), kRoots[n]) << n + 1;
  }
}

TEST(MerkleTest, InclusionProofsOfThePublishedVectors) {
  Tree tree;
  for (const std::string& leaf : Leaves()) tree.Append(leaf);
  struct Case {
    uint64_t index, size;
    std::vector<const char*> path;
  };
  const Case cases[] = {
      {0, 1, {}},
      {0,
       8,
       {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
      {5,
       8,
       {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
      {2, 3, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
      {1,
       5,
       {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
  };
  for (const Case& c : cases) {
    ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof,
                         MerkleInclusionProof(c.index, c.size, tree.Reader()));
    EXPECT_EQ(proof, Hexes(c.path)) << c.index << " of " << c.size;
    EXPECT_THAT(VerifyMerkleInclusion(c.index, c.size, MerkleLeafHash(Leaves()[c.index]),
                                      Hexes(c.path), Hex(kRoots[c.size - 1])),
                IsOk());
  }
}

TEST(MerkleTest, ConsistencyProofsOfThePublishedVectors) {
  Tree tree;
  for (const std::string& leaf : Leaves()) tree.Append(leaf);
  struct Case {
    uint64_t old_size, size;
    std::vector<const char*> proof;
  };
  const Case cases[] = {
      {1, 1, {}},
      {1,
       8,
       {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
      {6,
       8,
       {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
      {2,
       5,
       {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
  };
  for (const Case& c : cases) {
    ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof,
                         MerkleConsistencyProof(c.old_size, c.size, tree.Reader()));
    EXPECT_EQ(proof, Hexes(c.proof)) << c.old_size << " to " << c.size;
    EXPECT_THAT(VerifyMerkleConsistency(c.old_size, c.size, Hex(kRoots[c.old_size - 1]),
                                        Hex(kRoots[c.size - 1]), Hexes(c.proof)),
                IsOk());
  }
}

// Every index and size pair up to 70 leaves: stored-node proofs verify
// against the reference root, and so does no altered one.
TEST(MerkleTest, EveryProofUpTo70LeavesVerifiesAndNoAlteredOneDoes) {
  std::vector<std::string> data;
  Tree tree;
  for (int i = 0; i < 70; ++i) {
    data.push_back("leaf-" + std::to_string(i));
    tree.Append(data.back());
  }
  for (uint64_t size = 1; size <= data.size(); ++size) {
    const Digest root = ReferenceRoot(data, 0, size);
    ASSERT_OK_AND_ASSIGN(Digest stored_root, MerkleRootAt(size, tree.Reader()));
    ASSERT_EQ(stored_root, root) << size;
    ASSERT_OK_AND_ASSIGN(MerkleFrontier frontier, MerkleFrontier::Load(size, tree.Reader()));
    ASSERT_EQ(frontier.Root(), root) << size;
    for (uint64_t index = 0; index < size; ++index) {
      const Digest leaf = MerkleLeafHash(data[index]);
      ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof,
                           MerkleInclusionProof(index, size, tree.Reader()));
      ASSERT_THAT(VerifyMerkleInclusion(index, size, leaf, proof, root), IsOk())
          << index << " of " << size;
      // Another leaf, another index, a flipped bit, one hash too many or too few.
      EXPECT_FALSE(VerifyMerkleInclusion(index, size, MerkleLeafHash("forged"), proof, root).ok());
      if (size > 1) {
        EXPECT_FALSE(VerifyMerkleInclusion((index + 1) % size, size, leaf, proof, root).ok());
        std::vector<Digest> flipped = proof;
        flipped[index % flipped.size()][7] ^= 0x10;
        EXPECT_FALSE(VerifyMerkleInclusion(index, size, leaf, flipped, root).ok());
        std::vector<Digest> shorter(proof.begin(), proof.end() - 1);
        EXPECT_FALSE(VerifyMerkleInclusion(index, size, leaf, shorter, root).ok());
      }
      std::vector<Digest> longer = proof;
      longer.push_back(root);
      EXPECT_FALSE(VerifyMerkleInclusion(index, size, leaf, longer, root).ok());
    }
    for (uint64_t old_size = 1; old_size <= size; ++old_size) {
      const Digest old_root = ReferenceRoot(data, 0, old_size);
      ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof,
                           MerkleConsistencyProof(old_size, size, tree.Reader()));
      ASSERT_THAT(VerifyMerkleConsistency(old_size, size, old_root, root, proof), IsOk())
          << old_size << " to " << size;
      if (old_size == size) continue;
      std::vector<Digest> flipped = proof;
      flipped.back()[0] ^= 1;
      EXPECT_FALSE(VerifyMerkleConsistency(old_size, size, old_root, root, flipped).ok());
      EXPECT_FALSE(VerifyMerkleConsistency(old_size, size, MerkleLeafHash("x"), root, proof).ok());
      std::vector<Digest> longer = proof;
      longer.push_back(root);
      EXPECT_FALSE(VerifyMerkleConsistency(old_size, size, old_root, root, longer).ok());
      std::vector<Digest> shorter(proof.begin() + 1, proof.end());
      EXPECT_FALSE(VerifyMerkleConsistency(old_size, size, old_root, root, shorter).ok());
    }
  }
}

TEST(MerkleTest, EveryRangeProofUpTo40LeavesVerifiesAndNoAlteredOneDoes) {
  std::vector<std::string> data;
  std::vector<Digest> leaves;
  Tree tree;
  for (int i = 0; i < 40; ++i) {
    data.push_back("leaf-" + std::to_string(i));
    leaves.push_back(MerkleLeafHash(data.back()));
    tree.Append(data.back());
  }
  for (uint64_t size = 1; size <= data.size(); ++size) {
    const Digest root = ReferenceRoot(data, 0, size);
    for (uint64_t begin = 0; begin < size; ++begin) {
      for (uint64_t end = begin + 1; end <= size; ++end) {
        ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof,
                             MerkleRangeProof(begin, end, size, tree.Reader()));
        const absl::Span<const Digest> range(&leaves[begin], end - begin);
        ASSERT_THAT(VerifyMerkleRange(begin, size, range, proof, root), IsOk())
            << "[" << begin << ", " << end << ") of " << size;
        // A forged leaf, a dropped leaf at either end, a shifted range.
        std::vector<Digest> forged(range.begin(), range.end());
        forged[forged.size() / 2] = MerkleLeafHash("forged");
        EXPECT_FALSE(VerifyMerkleRange(begin, size, forged, proof, root).ok());
        if (end - begin > 1) {
          EXPECT_FALSE(VerifyMerkleRange(begin, size, range.subspan(1), proof, root).ok());
          EXPECT_FALSE(
              VerifyMerkleRange(begin, size, range.subspan(0, range.size() - 1), proof, root).ok());
        }
        if (end < size) {
          EXPECT_FALSE(VerifyMerkleRange(begin + 1, size, range, proof, root).ok());
        }
        // A flipped bit, one hash too many or too few, a wrong root.
        if (!proof.empty()) {
          std::vector<Digest> flipped = proof;
          flipped[(begin + end) % flipped.size()][31] ^= 0x80;
          EXPECT_FALSE(VerifyMerkleRange(begin, size, range, flipped, root).ok());
          std::vector<Digest> shorter(proof.begin(), proof.end() - 1);
          EXPECT_FALSE(VerifyMerkleRange(begin, size, range, shorter, root).ok());
        }
        std::vector<Digest> longer = proof;
        longer.insert(longer.begin(), root);
        EXPECT_FALSE(VerifyMerkleRange(begin, size, range, longer, root).ok());
        EXPECT_FALSE(VerifyMerkleRange(begin, size, range, proof, MerkleLeafHash("x")).ok());
      }
    }
  }
}

TEST(MerkleTest, RangeProofsOutsideTheTreeAreRefusedByName) {
  Tree tree;
  for (const std::string& leaf : Leaves()) tree.Append(leaf);
  const Digest root = Hex(kRoots[7]);
  const std::vector<Digest> two = {MerkleLeafHash(Leaves()[6]), MerkleLeafHash(Leaves()[7])};
  ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof, MerkleRangeProof(6, 8, 8, tree.Reader()));
  EXPECT_THAT(VerifyMerkleRange(6, 8, two, proof, root), IsOk());
  EXPECT_THAT(VerifyMerkleRange(7, 8, two, proof, root),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("are not all in")));
  EXPECT_THAT(VerifyMerkleRange(0, 8, {}, proof, root),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("are no leaves")));
  EXPECT_THAT(VerifyMerkleRange(6, 0, two, {}, MerkleEmptyRoot()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a tree of 0")));
  EXPECT_THAT(VerifyMerkleRange(uint64_t{0} - 1, 8, two, proof, root),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("are not all in")));
  EXPECT_THAT(VerifyMerkleRange(6, 8, two, {}, root),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has 0 hashes")));
  EXPECT_THAT(MerkleRangeProof(3, 3, 8, tree.Reader()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no range proof")));
  EXPECT_THAT(MerkleRangeProof(3, 9, 8, tree.Reader()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no range proof")));
}

TEST(MerkleTest, AConsistencyProofAcrossARewrittenHistoryFails) {
  std::vector<std::string> honest, rewritten;
  Tree b;
  for (int i = 0; i < 20; ++i) {
    honest.push_back("record-" + std::to_string(i));
    rewritten.push_back(i == 6 ? std::string("record-6, edited") : honest.back());
    b.Append(rewritten.back());
  }
  // The old checkpoint (12 leaves) was of the honest log; the server now
  // serves the rewritten one and proves from its own history.
  ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof, MerkleConsistencyProof(12, 20, b.Reader()));
  EXPECT_THAT(VerifyMerkleConsistency(12, 20, ReferenceRoot(honest, 0, 12),
                                      ReferenceRoot(rewritten, 0, 20), proof),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("old tree root")));
}

TEST(MerkleTest, SizesOutsideTheTreeAreRefusedByName) {
  Tree tree;
  for (const std::string& leaf : Leaves()) tree.Append(leaf);
  const Digest root = Hex(kRoots[7]);
  EXPECT_THAT(VerifyMerkleInclusion(8, 8, MerkleLeafHash(""), {}, root),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("beyond the tree")));
  EXPECT_THAT(VerifyMerkleInclusion(0, 0, MerkleLeafHash(""), {}, MerkleEmptyRoot()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("beyond the tree")));
  EXPECT_THAT(VerifyMerkleConsistency(9, 8, root, root, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("larger than the new")));
  EXPECT_THAT(VerifyMerkleConsistency(0, 8, MerkleEmptyRoot(), root, {}), IsOk());
  EXPECT_THAT(VerifyMerkleConsistency(3, 8, Hex(kRoots[2]), root, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is empty")));
  EXPECT_THAT(MerkleInclusionProof(8, 8, tree.Reader()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in a tree of 8")));
  EXPECT_THAT(MerkleConsistencyProof(0, 8, tree.Reader()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("from a tree of 0")));
  // A proof beyond what was stored reaches the store's error as it is.
  EXPECT_THAT(MerkleInclusionProof(3, 12, tree.Reader()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no node")));
}

}  // namespace
}  // namespace predlog::storage
