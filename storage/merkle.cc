#include "storage/merkle.h"

#include <algorithm>
#include <utility>

#include "absl/numeric/bits.h"
#include "absl/strings/str_cat.h"
#include "storage/status_macros.h"

namespace predlog::storage {
namespace {

// The largest power of two smaller than n (n >= 2): RFC 6962's k.
uint64_t SplitPoint(uint64_t n) { return absl::bit_floor(n - 1); }

}  // namespace

Digest MerkleLeafHash(absl::string_view leaf_data) {
  return Sha256({absl::string_view("\0", 1), leaf_data});
}

Digest MerkleNodeHash(const Digest& left, const Digest& right) {
  return Sha256({absl::string_view("\1", 1), AsBytes(left), AsBytes(right)});
}

Digest MerkleEmptyRoot() { return Sha256(""); }

absl::StatusOr<MerkleFrontier> MerkleFrontier::Load(uint64_t size, const MerkleNodeReader& read) {
  MerkleFrontier frontier;
  uint64_t begin = 0;
  for (int level = 63; level >= 0; --level) {
    const uint64_t width = uint64_t{1} << level;
    if ((size & width) == 0) continue;
    MerkleNode node;
    node.level = static_cast<uint8_t>(level);
    node.index = begin >> level;
    ASSIGN_OR_RETURN(node.hash, read(node.level, node.index));
    frontier.edge_.push_back(node);
    begin += width;
  }
  frontier.size_ = size;
  return frontier;
}

void MerkleFrontier::Append(const Digest& leaf_hash, std::vector<MerkleNode>* completed) {
  MerkleNode node{0, size_, leaf_hash};
  completed->push_back(node);
  // Two perfect subtrees of one level side by side make their parent.
  while (!edge_.empty() && edge_.back().level == node.level) {
    node = MerkleNode{static_cast<uint8_t>(node.level + 1), node.index >> 1,
                      MerkleNodeHash(edge_.back().hash, node.hash)};
    edge_.pop_back();
    completed->push_back(node);
  }
  edge_.push_back(node);
  ++size_;
}

absl::Status MerkleFrontier::AppendSubtree(uint8_t level, const Digest& hash) {
  if (level > 63 || size_ % (uint64_t{1} << level) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("a subtree of level ", level, " cannot follow a tree of ", size_, " leaves"));
  }
  MerkleNode node{level, size_ >> level, hash};
  while (!edge_.empty() && edge_.back().level == node.level) {
    node = MerkleNode{static_cast<uint8_t>(node.level + 1), node.index >> 1,
                      MerkleNodeHash(edge_.back().hash, node.hash)};
    edge_.pop_back();
  }
  edge_.push_back(node);
  size_ += uint64_t{1} << level;
  return absl::OkStatus();
}

Digest MerkleFrontier::Root() const {
  if (edge_.empty()) return MerkleEmptyRoot();
  Digest root = edge_.back().hash;
  for (size_t i = edge_.size() - 1; i-- > 0;) root = MerkleNodeHash(edge_[i].hash, root);
  return root;
}

absl::StatusOr<Digest> MerkleSubtreeHash(uint64_t begin, uint64_t end,
                                         const MerkleNodeReader& read) {
  if (end <= begin || begin % absl::bit_floor(end - begin) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("no Merkle subtree covers leaves [", begin, ", ", end, ")"));
  }
  // The perfect subtrees [begin, end) decomposes into, largest first; the
  // hash folds them from the right, as the recursion of RFC 6962 does.
  std::vector<Digest> parts;
  for (uint64_t at = begin; at < end;) {
    const uint64_t width = absl::bit_floor(end - at);
    const int level = absl::countr_zero(width);
    ASSIGN_OR_RETURN(Digest hash, read(static_cast<uint8_t>(level), at >> level));
    parts.push_back(hash);
    at += width;
  }
  Digest hash = parts.back();
  for (size_t i = parts.size() - 1; i-- > 0;) hash = MerkleNodeHash(parts[i], hash);
  return hash;
}

absl::StatusOr<Digest> MerkleRootAt(uint64_t size, const MerkleNodeReader& read) {
  if (size == 0) return MerkleEmptyRoot();
  return MerkleSubtreeHash(0, size, read);
}

namespace {

// PATH(m, D[begin:begin + n]), appended leaf-side first.
absl::Status AppendPath(uint64_t m, uint64_t begin, uint64_t n, const MerkleNodeReader& read,
                        std::vector<Digest>* proof) {
  if (n <= 1) return absl::OkStatus();
  const uint64_t k = SplitPoint(n);
  if (m < k) {
    RETURN_IF_ERROR(AppendPath(m, begin, k, read, proof));
    ASSIGN_OR_RETURN(Digest right, MerkleSubtreeHash(begin + k, begin + n, read));
    proof->push_back(right);
  } else {
    RETURN_IF_ERROR(AppendPath(m - k, begin + k, n - k, read, proof));
    ASSIGN_OR_RETURN(Digest left, MerkleSubtreeHash(begin, begin + k, read));
    proof->push_back(left);
  }
  return absl::OkStatus();
}

// SUBPROOF(m, D[begin:begin + n], b).
absl::Status AppendSubproof(uint64_t m, uint64_t begin, uint64_t n, bool b,
                            const MerkleNodeReader& read, std::vector<Digest>* proof) {
  if (m == n) {
    if (!b) {
      ASSIGN_OR_RETURN(Digest whole, MerkleSubtreeHash(begin, begin + n, read));
      proof->push_back(whole);
    }
    return absl::OkStatus();
  }
  const uint64_t k = SplitPoint(n);
  if (m <= k) {
    RETURN_IF_ERROR(AppendSubproof(m, begin, k, b, read, proof));
    ASSIGN_OR_RETURN(Digest right, MerkleSubtreeHash(begin + k, begin + n, read));
    proof->push_back(right);
  } else {
    RETURN_IF_ERROR(AppendSubproof(m - k, begin + k, n - k, false, read, proof));
    ASSIGN_OR_RETURN(Digest left, MerkleSubtreeHash(begin, begin + k, read));
    proof->push_back(left);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Digest>> MerkleInclusionProof(uint64_t index, uint64_t size,
                                                         const MerkleNodeReader& read) {
  if (index >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("leaf ", index, " is not in a tree of ", size, " leaves"));
  }
  std::vector<Digest> proof;
  RETURN_IF_ERROR(AppendPath(index, 0, size, read, &proof));
  return proof;
}

absl::StatusOr<std::vector<Digest>> MerkleConsistencyProof(uint64_t old_size, uint64_t size,
                                                           const MerkleNodeReader& read) {
  if (old_size == 0 || old_size > size) {
    return absl::InvalidArgumentError(
        absl::StrCat("no consistency proof from a tree of ", old_size, " leaves to one of ", size));
  }
  std::vector<Digest> proof;
  if (old_size < size) RETURN_IF_ERROR(AppendSubproof(old_size, 0, size, true, read, &proof));
  return proof;
}

namespace {

// The perfect subtrees [begin, end) decomposes into from the left: at each
// step the largest one aligned at its start that fits, as (level, index).
std::vector<std::pair<uint8_t, uint64_t>> AlignedCover(uint64_t begin, uint64_t end) {
  std::vector<std::pair<uint8_t, uint64_t>> cover;
  for (uint64_t at = begin; at < end;) {
    uint64_t width = absl::bit_floor(end - at);
    if (at != 0) width = std::min(width, at & (~at + 1));  // at's alignment
    const int level = absl::countr_zero(width);
    cover.emplace_back(static_cast<uint8_t>(level), at >> level);
    at += width;
  }
  return cover;
}

}  // namespace

MerkleNodeReader MerkleNodeCache::Wrap(const MerkleNodeReader& read) {
  return [this, &read](uint8_t level, uint64_t index) -> absl::StatusOr<Digest> {
    const auto key = std::make_pair(level, index);
    if (auto it = nodes_.find(key); it != nodes_.end()) return it->second;
    ASSIGN_OR_RETURN(Digest hash, read(level, index));
    if (nodes_.size() >= max_nodes_) nodes_.clear();
    nodes_.emplace(key, hash);
    return hash;
  };
}

absl::StatusOr<std::vector<Digest>> MerkleRangeProof(uint64_t begin, uint64_t end, uint64_t size,
                                                     const MerkleNodeReader& read) {
  if (begin >= end || end > size) {
    return absl::InvalidArgumentError(absl::StrCat("no range proof of leaves [", begin, ", ", end,
                                                   ") in a tree of ", size, " leaves"));
  }
  std::vector<Digest> proof;
  for (const auto& cover : {AlignedCover(0, begin), AlignedCover(end, size)}) {
    for (const auto& [level, index] : cover) {
      ASSIGN_OR_RETURN(Digest hash, read(level, index));
      proof.push_back(hash);
    }
  }
  return proof;
}

absl::StatusOr<MerkleRangeVerifier> MerkleRangeVerifier::Start(uint64_t begin, uint64_t end,
                                                               uint64_t size,
                                                               absl::Span<const Digest> proof) {
  if (begin >= end || end > size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "range proof: leaves [", begin, ", ", end, ") ",
        begin == end ? "are no leaves in" : "are not all in", " a tree of ", size, " leaves"));
  }
  const std::vector<std::pair<uint8_t, uint64_t>> left = AlignedCover(0, begin);
  const std::vector<std::pair<uint8_t, uint64_t>> right = AlignedCover(end, size);
  if (proof.size() != left.size() + right.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("range proof: has ", proof.size(), " hashes; leaves [", begin, ", ", end,
                     ") of a tree of ", size, " leaves need ", left.size() + right.size()));
  }
  MerkleRangeVerifier verifier;
  verifier.begin_ = begin;
  verifier.end_ = end;
  // [0, begin) from the proof; the leaves come next, then [end, size).
  size_t next = 0;
  ASSIGN_OR_RETURN(verifier.frontier_,
                   MerkleFrontier::Load(begin, [&](uint8_t, uint64_t) -> absl::StatusOr<Digest> {
                     return proof[next++];
                   }));
  for (const auto& [level, index] : right) {
    verifier.right_.push_back(MerkleNode{level, index, proof[next++]});
  }
  return verifier;
}

void MerkleRangeVerifier::Append(const Digest& leaf_hash) {
  if (frontier_.size() >= end_) {
    ++end_overrun_;
    return;
  }
  std::vector<MerkleNode> completed;
  frontier_.Append(leaf_hash, &completed);
}

absl::Status MerkleRangeVerifier::Finish(const Digest& root) {
  if (frontier_.size() != end_ || end_overrun_ > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("range proof: leaves [", begin_, ", ", end_, ") are ", end_ - begin_,
                     " leaves, but ", frontier_.size() - begin_ + end_overrun_, " were given"));
  }
  for (const MerkleNode& node : right_)
    RETURN_IF_ERROR(frontier_.AppendSubtree(node.level, node.hash));
  right_.clear();
  const Digest computed = frontier_.Root();
  if (computed != root) {
    return absl::InvalidArgumentError(absl::StrCat("range proof: leaves [", begin_, ", ", end_,
                                                   ") and the proof give root ", ToHex(computed),
                                                   ", not ", ToHex(root)));
  }
  return absl::OkStatus();
}

absl::Status VerifyMerkleRange(uint64_t begin, uint64_t size, absl::Span<const Digest> leaf_hashes,
                               absl::Span<const Digest> proof, const Digest& root) {
  ASSIGN_OR_RETURN(MerkleRangeVerifier verifier,
                   MerkleRangeVerifier::Start(begin, begin + leaf_hashes.size(), size, proof));
  for (const Digest& leaf : leaf_hashes) verifier.Append(leaf);
  return verifier.Finish(root);
}

absl::Status VerifyMerkleInclusion(uint64_t index, uint64_t size, const Digest& leaf_hash,
                                   absl::Span<const Digest> proof, const Digest& root) {
  if (index >= size) {
    return absl::InvalidArgumentError(absl::StrCat("inclusion proof: leaf index ", index,
                                                   " is beyond the tree of ", size, " leaves"));
  }
  uint64_t fn = index;
  uint64_t sn = size - 1;
  Digest r = leaf_hash;
  for (const Digest& p : proof) {
    if (sn == 0) {
      return absl::InvalidArgumentError(absl::StrCat("inclusion proof: ", proof.size(),
                                                     " hashes are more than leaf ", index,
                                                     " of a tree of ", size, " needs"));
    }
    if ((fn & 1) != 0 || fn == sn) {
      r = MerkleNodeHash(p, r);
      while ((fn & 1) == 0 && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      r = MerkleNodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) {
    return absl::InvalidArgumentError(absl::StrCat("inclusion proof: ", proof.size(),
                                                   " hashes are fewer than leaf ", index,
                                                   " of a tree of ", size, " needs"));
  }
  if (r != root) {
    return absl::InvalidArgumentError(absl::StrCat("inclusion proof: leaf ", index,
                                                   " and the proof give root ", ToHex(r), ", not ",
                                                   ToHex(root)));
  }
  return absl::OkStatus();
}

absl::Status VerifyMerkleConsistency(uint64_t old_size, uint64_t size, const Digest& old_root,
                                     const Digest& root, absl::Span<const Digest> proof) {
  if (old_size > size) {
    return absl::InvalidArgumentError(absl::StrCat("consistency proof: the old tree (", old_size,
                                                   " leaves) is larger than the new (", size, ")"));
  }
  if (old_size == size || old_size == 0) {
    if (!proof.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("consistency proof: from ", old_size, " to ",
                                                     size, " leaves takes no hashes, not ",
                                                     proof.size()));
    }
    if (old_size == 0 && old_root != MerkleEmptyRoot()) {
      return absl::InvalidArgumentError("consistency proof: the empty tree's root is wrong");
    }
    if (old_size == size && old_root != root) {
      return absl::InvalidArgumentError(
          absl::StrCat("consistency proof: two trees of ", size, " leaves with different roots"));
    }
    return absl::OkStatus();
  }
  if (proof.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("consistency proof from ", old_size, " to ", size, " leaves is empty"));
  }
  std::vector<Digest> path;
  if (absl::has_single_bit(old_size)) path.push_back(old_root);
  path.insert(path.end(), proof.begin(), proof.end());
  uint64_t fn = old_size - 1;
  uint64_t sn = size - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  Digest fr = path[0];
  Digest sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Digest& c = path[i];
    if (sn == 0) {
      return absl::InvalidArgumentError(absl::StrCat("consistency proof: ", proof.size(),
                                                     " hashes are more than ", old_size, " to ",
                                                     size, " leaves needs"));
    }
    if ((fn & 1) != 0 || fn == sn) {
      fr = MerkleNodeHash(c, fr);
      sr = MerkleNodeHash(c, sr);
      while ((fn & 1) == 0 && fn != 0) {
        fn >>= 1;
        sn >>= 1;
      }
    } else {
      sr = MerkleNodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) {
    return absl::InvalidArgumentError(absl::StrCat("consistency proof: ", proof.size(),
                                                   " hashes are fewer than ", old_size, " to ",
                                                   size, " leaves needs"));
  }
  if (fr != old_root) {
    return absl::InvalidArgumentError(absl::StrCat("consistency proof: it gives the old tree root ",
                                                   ToHex(fr), ", not ", ToHex(old_root)));
  }
  if (sr != root) {
    return absl::InvalidArgumentError(absl::StrCat("consistency proof: it gives the new tree root ",
                                                   ToHex(sr), ", not ", ToHex(root)));
  }
  return absl::OkStatus();
}

}  // namespace predlog::storage
