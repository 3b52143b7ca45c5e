// Merkle tree hashes and proofs as RFC 6962 §2.1 defines them (the same
// definitions as RFC 9162 §2.1, whose verification algorithms §2.1.3.2 and
// §2.1.4.2 VerifyInclusion and VerifyConsistency follow), over SHA-256:
//
//   MTH({})      = SHA-256()
//   MTH({d0})    = SHA-256(0x00 || d0)                        (a leaf hash)
//   MTH(D[0:n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])) (k: the largest
//                  power of two smaller than n)
//
// A tree is stored as its perfect subtrees: node (level, index) is the hash of
// leaves [index << level, (index + 1) << level), level 0 being the leaf
// hashes. Every other subtree hash a proof needs is composed from those
// (SubtreeHash), so a proof reads O(log n) nodes, each written once when the
// append that completed it happened (MerkleFrontier::Append). What the leaf
// data is, and where nodes live, is the caller's choice.
//
// Sizes and indexes count leaves from 0. Pure functions; thread-safe.
#ifndef PREDLOG_STORAGE_MERKLE_H_
#define PREDLOG_STORAGE_MERKLE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "storage/sha256.h"

namespace predlog::storage {

// SHA-256(0x00 || leaf_data).
Digest MerkleLeafHash(absl::string_view leaf_data);
// SHA-256(0x01 || left || right).
Digest MerkleNodeHash(const Digest& left, const Digest& right);
// MTH({}) = SHA-256 of nothing: the root of the tree of size 0.
Digest MerkleEmptyRoot();

// A perfect subtree: leaves [index << level, (index + 1) << level).
struct MerkleNode {
  uint8_t level = 0;
  uint64_t index = 0;
  Digest hash{};
};

// Reads the hash of a perfect subtree written before (by Append). Its errors
// (NOT_FOUND for a node never written, DATA_LOSS for a damaged one) are
// returned as they are by the functions below.
using MerkleNodeReader = std::function<absl::StatusOr<Digest>(uint8_t level, uint64_t index)>;

// The right edge of a tree: the roots of the perfect subtrees [0, size)
// decomposes into, largest first (one per set bit of size). Enough to append
// and to compute the root without reading any node.
class MerkleFrontier {
 public:
  MerkleFrontier() = default;
  // The frontier of a tree of `size` leaves whose nodes `read` returns.
  static absl::StatusOr<MerkleFrontier> Load(uint64_t size, const MerkleNodeReader& read);

  uint64_t size() const { return size_; }
  // Appends a leaf (its MerkleLeafHash) and adds to `completed` every node
  // that now exists for the first time: the leaf at level 0, then each
  // parent it completed. Those are what a node store must keep.
  void Append(const Digest& leaf_hash, std::vector<MerkleNode>* completed);
  // Appends a whole perfect subtree of 2^level leaves by its hash (a compact
  // range's merge, as in transparency-dev/merkle's compact.Range).
  // INVALID_ARGUMENT unless size() is a multiple of 2^level.
  absl::Status AppendSubtree(uint8_t level, const Digest& hash);
  // MTH of the tree's leaves.
  Digest Root() const;

 private:
  uint64_t size_ = 0;
  std::vector<MerkleNode> edge_;  // largest (leftmost) first
};

// MTH(D[begin:end]) of a subtree of a tree of at least `end` leaves, where
// `begin` is a multiple of the largest power of two not above end - begin
// (what RFC 6962's recursion ever asks for). INVALID_ARGUMENT otherwise.
absl::StatusOr<Digest> MerkleSubtreeHash(uint64_t begin, uint64_t end,
                                         const MerkleNodeReader& read);

// The root of the tree's first `size` leaves.
absl::StatusOr<Digest> MerkleRootAt(uint64_t size, const MerkleNodeReader& read);

// RFC 6962 §2.1.1 PATH(index, D[0:size]): the inclusion proof of leaf
// `index` in the tree of `size` leaves, leaf-side first. INVALID_ARGUMENT
// unless index < size.
absl::StatusOr<std::vector<Digest>> MerkleInclusionProof(uint64_t index, uint64_t size,
                                                         const MerkleNodeReader& read);

// RFC 6962 §2.1.2 PROOF(old_size, D[0:size]): proves the tree of `size`
// leaves extends the tree of its first `old_size`. Empty when the sizes are
// equal. INVALID_ARGUMENT unless 0 < old_size <= size.
absl::StatusOr<std::vector<Digest>> MerkleConsistencyProof(uint64_t old_size, uint64_t size,
                                                           const MerkleNodeReader& read);

// Remembers the node hashes a series of proofs over one tree reads: the
// proofs of an export's runs, in log order, share most of their nodes (the
// perfect subtrees left of nearby runs are the same, and so are the large
// ones right of them). Forgets everything once it holds `max_nodes`.
// Single-threaded; only for nodes that never change (a tree's nodes are
// written once).
class MerkleNodeCache {
 public:
  explicit MerkleNodeCache(size_t max_nodes = 1 << 16) : max_nodes_(max_nodes) {}
  // A reader that answers from the cache, else from `read` (remembering
  // what it answered). Borrows this cache and `read` for its lifetime.
  MerkleNodeReader Wrap(const MerkleNodeReader& read);
  void Clear() { nodes_.clear(); }
  size_t size() const { return nodes_.size(); }

 private:
  size_t max_nodes_;
  std::map<std::pair<uint8_t, uint64_t>, Digest> nodes_;
};

// A range proof: that leaves [begin, end) are exactly those of the tree of
// `size` leaves. It is the two compact ranges around them (the technique of
// transparency-dev/merkle's compact package; RFC 9162 defines proofs of one
// leaf only): the perfect subtrees [0, begin) decomposes into, largest first
// (one per set bit of begin), then those [end, size) decomposes into from the
// left, each the largest aligned one that fits (at most 2 log2(size)).
// A range of one leaf costs about what its inclusion proof does; a range of
// many costs no more, which is why exports carry one per contiguous run.
// INVALID_ARGUMENT unless begin < end <= size.
absl::StatusOr<std::vector<Digest>> MerkleRangeProof(uint64_t begin, uint64_t end, uint64_t size,
                                                     const MerkleNodeReader& read);
// Checks a range proof while the range's leaves arrive one at a time, so a
// range of any length is checked in O(log size) memory. Single-threaded.
class MerkleRangeVerifier {
 public:
  // For leaves [begin, end) of a tree of `size` leaves. INVALID_ARGUMENT
  // naming what is wrong: no leaves, a range beyond the tree, a proof of
  // the wrong length.
  static absl::StatusOr<MerkleRangeVerifier> Start(uint64_t begin, uint64_t end, uint64_t size,
                                                   absl::Span<const Digest> proof);
  // The next leaf of the range (its MerkleLeafHash).
  void Append(const Digest& leaf_hash);
  // OK when exactly end - begin leaves were appended and with the proof
  // they give `root`; otherwise INVALID_ARGUMENT naming what failed.
  absl::Status Finish(const Digest& root);

 private:
  uint64_t begin_ = 0;
  uint64_t end_ = 0;
  uint64_t end_overrun_ = 0;  // leaves appended past end_
  MerkleFrontier frontier_;
  std::vector<MerkleNode> right_;  // the perfect subtrees of [end, size)
};

// OK when `proof` (MerkleRangeProof's) proves that `leaf_hashes` are leaves
// [begin, begin + leaf_hashes.size()) of the tree of `size` leaves whose root
// is `root`; otherwise INVALID_ARGUMENT naming what failed: no leaves, a
// range beyond the tree, a proof of the wrong length, a root that does not
// match.
absl::Status VerifyMerkleRange(uint64_t begin, uint64_t size, absl::Span<const Digest> leaf_hashes,
                               absl::Span<const Digest> proof, const Digest& root);

// RFC 9162 §2.1.3.2. OK when `proof` proves that `leaf_hash` is leaf `index`
// of the tree of `size` leaves whose root is `root`; otherwise
// INVALID_ARGUMENT naming what failed (index beyond the tree, a proof too
// short or too long, a root that does not match).
absl::Status VerifyMerkleInclusion(uint64_t index, uint64_t size, const Digest& leaf_hash,
                                   absl::Span<const Digest> proof, const Digest& root);

// RFC 9162 §2.1.4.2. OK when `proof` proves the tree of `size` leaves with
// root `root` extends the tree of `old_size` leaves with root `old_root`;
// otherwise INVALID_ARGUMENT naming what failed (sizes out of order, a proof
// of the wrong length, either root not matching).
absl::Status VerifyMerkleConsistency(uint64_t old_size, uint64_t size, const Digest& old_root,
                                     const Digest& root, absl::Span<const Digest> proof);

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_MERKLE_H_
