// ArtifactStore: model artifacts (XGBoost models, ...) on the local
// filesystem, content-addressed by SHA-256 and write-once.
//
// Invariants:
// - Content-addressed: an artifact's file name IS the SHA-256 of its bytes,
//   computed by the store while the bytes arrive, never taken from a caller.
//   So a different body under a digest cannot be stored by construction; the
//   only way one appears is damage or tampering outside the store.
// - Verified on every read: Read() rehashes the bytes and returns DATA_LOSS
//   instead of bytes that do not hash to the digest asked for.
// - Write-once: a committed file is never replaced, modified or deleted by
//   the store. Committing bytes that are already stored is a no-op.
// - All or nothing: an upload becomes visible only after its bytes are
//   fsynced, by one hard link into place (which fails instead of replacing an
//   existing name), followed by an fsync of the directory. A crash leaves the
//   artifact either fully stored or absent, plus at most a temp file that the
//   next Open() removes.
//
// Layout under dir():
//   sha256/<first two hex digits>/<64 lower-case hex digits>   committed, mode 0444
//   tmp/upload-<random>                                        uploads in progress
//
// Errors: NOT_FOUND for a digest that is not stored, DATA_LOSS for a stored
// file whose bytes do not match its digest, INTERNAL naming the path and the
// OS error for I/O failures.
#ifndef PREDLOG_STORAGE_ARTIFACT_STORE_H_
#define PREDLOG_STORAGE_ARTIFACT_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/sha256.h"

namespace predlog::storage {

struct ArtifactInfo {
  Digest digest{};
  uint64_t size_bytes = 0;
  // From Stat only (0 elsewhere): the file's inode and change time (ctime,
  // ns since the epoch), which every write, rename or chmod moves and no user
  // call can set back: with the size, what says a file is unchanged unread.
  uint64_t inode = 0;
  int64_t ctime_ns = 0;
};

// One streaming upload: bytes go to a temp file under the store, hashed as
// they arrive, so an artifact of hundreds of MB never sits in memory.
// Single-threaded: one writer per upload, externally synchronized. A writer
// keeps its own copy of the store's paths and may outlive the store.
// Destroying a writer that was not committed removes its temp file.
class ArtifactWriter {
 public:
  ~ArtifactWriter();
  ArtifactWriter(const ArtifactWriter&) = delete;
  ArtifactWriter& operator=(const ArtifactWriter&) = delete;

  // Appends `chunk` to the upload. INTERNAL on a write error, after which
  // the upload is abandoned: every later call fails with FAILED_PRECONDITION.
  absl::Status Append(absl::string_view chunk);

  // Finishes the upload: fsyncs the temp file, checks `expected` when given
  // and moves the file into place under its digest (link + fsync of the
  // directory). Returns the digest and size.
  // - `expected` differs from the content's digest: INVALID_ARGUMENT naming
  //   both digests; nothing is stored and the temp file is removed.
  // - The digest is already stored: a no-op returning the stored info; the
  //   existing file is never replaced. If the stored file's size differs from
  //   this upload's, it has been damaged: DATA_LOSS (it is still not replaced).
  // Whatever the outcome, the writer is finished afterwards: Append and
  // Commit then fail with FAILED_PRECONDITION.
  absl::StatusOr<ArtifactInfo> Commit(const std::optional<Digest>& expected = std::nullopt);

  // Bytes appended so far.
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  friend class ArtifactStore;
  ArtifactWriter(std::string store_dir, std::string temp_path, int fd);
  // Closes and unlinks the temp file; idempotent.
  void Discard();
  absl::StatusOr<ArtifactInfo> CommitInternal(const std::optional<Digest>& expected);

  const std::string store_dir_;
  const std::string temp_path_;
  int fd_;  // -1 once closed
  bool finished_ = false;
  uint64_t bytes_written_ = 0;
  Sha256Hasher hasher_;
};

// Thread-safe: every method may be called concurrently, also by several
// processes sharing dir(). Concurrent uploads of the same content all succeed
// and leave one file.
class ArtifactStore {
 public:
  // Opens the store at `dir`, creating it if missing, and removes temp files
  // of uploads that crashed (an upload in progress in another live store on
  // the same directory holds a lock on its temp file and is left alone).
  // INVALID_ARGUMENT for an empty `dir`, INTERNAL for I/O errors.
  static absl::StatusOr<std::unique_ptr<ArtifactStore>> Open(const std::string& dir);
  ArtifactStore(const ArtifactStore&) = delete;
  ArtifactStore& operator=(const ArtifactStore&) = delete;

  // Starts an upload (a new temp file under dir()/tmp).
  absl::StatusOr<std::unique_ptr<ArtifactWriter>> NewWriter();

  // One-shot upload for small artifacts (tests, CLI): NewWriter, Append, Commit.
  absl::StatusOr<ArtifactInfo> Put(absl::string_view bytes);

  // Reads the whole artifact and verifies its SHA-256.
  // NOT_FOUND "artifact sha256:<hex> is not in the artifact store (<dir>)";
  // DATA_LOSS "artifact sha256:<hex> is corrupt: its content hashes to <hex2>".
  absl::StatusOr<std::string> Read(const Digest& digest) const;

  // Existence and size, without reading or verifying the bytes. NOT_FOUND as
  // for Read.
  absl::StatusOr<ArtifactInfo> Stat(const Digest& digest) const;

  // The digest of every committed artifact, ascending. Names under sha256/
  // that are not an artifact's (64 lower-case hex digits in the directory of
  // their first two) are not listed. INTERNAL for I/O errors.
  absl::StatusOr<std::vector<Digest>> List() const;

  // Stores `source`'s artifact `digest` here, unless this store has it
  // already (then nothing is read: its file was checked when it was
  // committed, and every read checks it again). The bytes are streamed
  // through an upload, never whole in memory, and committed only if they
  // hash to `digest`: DATA_LOSS "artifact sha256:<hex> in <source dir> is
  // corrupt: ..." otherwise, with nothing stored. NOT_FOUND when `source`
  // does not have it; INTERNAL for I/O errors. Backups copy artifacts with it.
  struct Copied {
    bool copied = false;  // false: already here
    uint64_t size_bytes = 0;
  };
  absl::StatusOr<Copied> CopyFrom(const ArtifactStore& source, const Digest& digest);

  // The file an artifact is (or would be) stored in, for inspection.
  std::string PathOf(const Digest& digest) const;

  // The directory given to Open(), without trailing slashes.
  const std::string& dir() const { return dir_; }

 private:
  explicit ArtifactStore(std::string dir);

  const std::string dir_;  // the only state: constant after construction
};

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_ARTIFACT_STORE_H_
