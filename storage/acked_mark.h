// AckedMark: a shard's synced acknowledgement mark, the file <shard dir>/acked.
// After each write that added records, ShardStore rewrites it in place with
// the shard's next index and chain head, and (with sync_writes) fdatasyncs
// it after RocksDB synced the WAL and before any of the write's callers is
// answered. So on recovery the mark is never ahead of what was acknowledged
// as durable, and a shard whose recovered log ends before the mark lost
// acknowledged records: a truncated or damaged WAL, which RocksDB's
// point-in-time recovery would otherwise replay up to silently.
//
// Without sync the mark is written but not synced, and says so: after a
// power loss such a mark may have reached the disk while the WAL tail did
// not, which loses only what --sync=false accepted to lose, so a mismatch
// against an unsynced mark is a warning, not a refusal.
//
// The mark names the RocksDB database it describes (its DB identity), so a
// db/ deleted or replaced behind the mark's back is told apart from a loss.
//
// File format (at most 298 bytes, written with one pwrite at offset 0):
//   mark := format:u8 (2) synced:u8 (0|1) next_index:u64 chain_head:32
//           identity_length:u8 identity
//
// Thread-compatible: one writer (the shard's), externally synchronized.
#ifndef PREDLOG_STORAGE_ACKED_MARK_H_
#define PREDLOG_STORAGE_ACKED_MARK_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "storage/sha256.h"

namespace predlog::storage {

class AckedMark {
 public:
  struct Value {
    uint64_t next_index = 0;
    Digest chain_head{};
    // Whether the writer fdatasynced the mark (and so the WAL before it).
    // Set by Write from the mark's `sync`; ignored on input.
    bool synced = false;
    // The RocksDB DB identity (rocksdb::DB::GetDbIdentity), at most 255 bytes.
    std::string db_identity;
  };

  // Opens (creating when missing) the mark at `path`; `sync` fdatasyncs
  // every Write. INTERNAL names the path on an I/O error; DATA_LOSS when the
  // file exists but is not a mark.
  static absl::StatusOr<std::unique_ptr<AckedMark>> Open(const std::string& path, bool sync);
  // Reads the mark at `path` without opening it for writing; nullopt when
  // there is none. Errors as Open's.
  static absl::StatusOr<std::optional<Value>> Read(const std::string& path);
  ~AckedMark();
  AckedMark(const AckedMark&) = delete;
  AckedMark& operator=(const AckedMark&) = delete;

  // The value found when opened; nullopt for a new mark.
  const std::optional<Value>& at_open() const { return at_open_; }
  // Rewrites the mark. INTERNAL (naming the path) on an I/O error, or
  // RESOURCE_EXHAUSTED when the disk is full.
  absl::Status Write(const Value& value);

 private:
  AckedMark(std::string path, int fd, bool sync) : path_(std::move(path)), fd_(fd), sync_(sync) {}

  const std::string path_;
  const int fd_;
  const bool sync_;
  std::optional<Value> at_open_;
  size_t file_size_ = 0;  // bytes in the file now
};

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_ACKED_MARK_H_
