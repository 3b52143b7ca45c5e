// INTERNAL to services/export/: do not include this header from anywhere but
// the trail_*.cc files of this directory. Everything else uses
// services/export/trail_export.h and trail_json.h, the public contract.
//
// It holds what the pieces of the export share: file helpers, the CSV columns
// and rows, the reading of records back from a file, the per-record arena.
// The file formats are written as a grammar at the top of trail_export.cc.
// The export is implemented in:
//   trail_export.cc  the file formats (grammar), ParseExportFormat, ExportFormatName
//   trail_files.cc   path names, FileSink, ReadWholeFile, WriteFileDurably
//   trail_csv.cc     the CSV header and rows, cells, the spreadsheet-injection rule
//   trail_writer.cc  TrailWriter: Add, the AddBatch pipeline, CSV rows before the header,
//                    Finish and the manifest
//   trail_reader.cc  RecordReader, and the records a JSON line or CSV row claims
//   trail_verify.cc  the Verifier and VerifyExport
// The JSON of a line is trail_json.h's (trail_json.cc, trail_json_scalars.cc).
#ifndef PREDLOG_SERVICES_EXPORT_TRAIL_INTERNAL_H_
#define PREDLOG_SERVICES_EXPORT_TRAIL_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/arena.h"
#include "predlog/v1/events.pb.h"
#include "storage/errno_status.h"
#include "storage/sha256.h"

namespace predlog::services::export_internal {

// ---------------------------------------------------------------------------
// Files (trail_files.cc)

// Bytes buffered before a write(2).
constexpr size_t kFlushBytes = 1 << 20;

using ::predlog::storage::ErrnoStatus;

inline std::string RecordName(absl::string_view shard, uint64_t index) {
  return absl::StrCat(shard, "#", index);
}

std::string BaseName(const std::string& path);
std::string DirName(const std::string& path);

// Lower-case hex of a digest into a fixed buffer (no allocation per record).
struct HexDigest {
  char text[64];
  explicit HexDigest(const storage::Digest& d) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (size_t i = 0; i < d.size(); ++i) {
      text[2 * i] = kHex[d[i] >> 4];
      text[2 * i + 1] = kHex[d[i] & 0xf];
    }
  }
  absl::string_view view() const { return absl::string_view(text, sizeof(text)); }
};

// A file written through a buffer; hashes and counts every byte it writes.
class FileSink {
 public:
  static absl::StatusOr<std::unique_ptr<FileSink>> Create(const std::string& path);
  ~FileSink();
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  // Append here, then MaybeFlush().
  std::string* buffer() { return &buffer_; }
  absl::Status MaybeFlush() { return buffer_.size() >= kFlushBytes ? Flush() : absl::OkStatus(); }

  // Appends `bytes`; a large piece is written straight from the caller's
  // memory when nothing is buffered (a rendered batch: ~2 MB not copied).
  absl::Status Append(absl::string_view bytes);

  absl::Status Flush();

  // Hashes, writes and counts `bytes`; only with buffer() empty (else the
  // buffered bytes would come after them).
  absl::Status Write(absl::string_view bytes);

  // Flushes, fsyncs and closes.
  absl::Status Close();

  storage::Digest sha256() { return hasher_.Finish(); }
  uint64_t bytes() const { return bytes_; }
  const std::string& path() const { return path_; }

 private:
  FileSink(std::string path, int fd);
  std::string path_;
  int fd_;
  std::string buffer_;
  storage::Sha256Hasher hasher_;
  uint64_t bytes_ = 0;
};

absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// Writes `contents` to `path` through a temporary file, fsynced, then renamed
// (and the directory fsynced).
absl::Status WriteFileDurably(const std::string& path, absl::string_view contents);

// Renames `from` to `to` and fsyncs the directory of `to`, so the rename
// survives a crash. Errors name the path.
absl::Status RenameDurably(const std::string& from, const std::string& to);

// An arena for one record's parsed event, reset per record. Reset frees
// every block but a caller-provided first one, so without this block each
// record cost a malloc and free of the arena's blocks.
class RecordArena {
 public:
  RecordArena() : arena_(Options(block_.get())) {}
  google::protobuf::Arena* get() { return &arena_; }
  void Reset() { arena_.Reset(); }

 private:
  static constexpr size_t kBlockBytes = 64 << 10;  // a few demo events' worth
  static google::protobuf::ArenaOptions Options(char* block) {
    google::protobuf::ArenaOptions options;
    options.initial_block = block;
    options.initial_block_size = kBlockBytes;
    return options;
  }
  std::unique_ptr<char[]> block_ = std::make_unique<char[]>(kBlockBytes);
  google::protobuf::Arena arena_;
};

// ---------------------------------------------------------------------------
// CSV rendering (trail_csv.cc)

inline constexpr const char* kCsvFixedColumns[] = {"shard",
                                                   "index",
                                                   "leaf_sha256",
                                                   "prev_chain_sha256",
                                                   "chain_sha256",
                                                   "appended_at",
                                                   "recorded_at",
                                                   "actor",
                                                   "kind",
                                                   "prediction_id",
                                                   "subject_id",
                                                   "served_at",
                                                   "model_name",
                                                   "model_version",
                                                   "artifact_sha256",
                                                   "pipeline_name",
                                                   "pipeline_version",
                                                   "scores",
                                                   "label",
                                                   "trace_id"};
inline constexpr size_t kCsvFixedCount = sizeof(kCsvFixedColumns) / sizeof(kCsvFixedColumns[0]);
inline constexpr size_t kCsvAppendedAtColumn = 5;
// The columns of prediction fields, from prediction_id on.
inline constexpr size_t kCsvFirstPredictionColumn = 9;
inline constexpr absl::string_view kInputPrefix = "input.";

// The input columns of a CSV export.
class CsvColumns {
 public:
  CsvColumns() = default;
  // The first prediction's input names, first of each name, in its order.
  static CsvColumns For(const predlog::v1::PredictionLogged& prediction) {
    CsvColumns columns;
    for (const auto& input : prediction.inputs()) columns.Add(input.name());
    return columns;
  }
  // False when `name` is already a column.
  bool Add(const std::string& name) {
    if (!position_.emplace(name, names_.size()).second) return false;
    names_.push_back(name);
    return true;
  }
  const std::vector<std::string>& names() const { return names_; }
  // The column of `name`, or -1.
  int Find(const std::string& name) const {
    const auto it = position_.find(name);
    return it == position_.end() ? -1 : static_cast<int>(it->second);
  }

 private:
  std::vector<std::string> names_;
  absl::flat_hash_map<std::string, size_t> position_;
};

void AppendCsvHeader(const CsvColumns& columns, std::string* out);

struct RowKey {
  absl::string_view shard;
  uint64_t index = 0;
  absl::string_view leaf, prev_chain, chain;
  absl::string_view event_bytes;
  const google::protobuf::Timestamp* appended_at = nullptr;  // nullptr: an empty cell
};

void AppendCsvRow(const CsvColumns& columns, const RowKey& key,
                  const predlog::v1::AuditEvent& event, std::string* out);

// ---------------------------------------------------------------------------
// Reading an export back (trail_reader.cc)

// Reads an export file record by record, hashing every byte it reads. A
// record ends after a '\n' (in CSV, one outside quotes) or at the end of the
// file, and includes its terminator.
class RecordReader {
 public:
  static absl::StatusOr<std::unique_ptr<RecordReader>> Open(const std::string& path, bool csv);
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // The next record, valid until the next call; false at the end of the file.
  absl::StatusOr<bool> Next(absl::string_view* record);

  // The (1-based) line the last record starts on.
  uint64_t line() const { return line_; }
  // Call after Next() returned false.
  storage::Digest sha256() { return hasher_.Finish(); }
  uint64_t bytes() const { return bytes_; }

 private:
  RecordReader(std::string path, int fd, bool csv);

  // One past the '\n' that ends the record at pos_, or npos.
  size_t FindEnd() const;

  const std::string path_;
  const int fd_;
  const bool csv_;
  std::string buffer_;
  size_t pos_ = 0;
  bool eof_ = false;
  uint64_t line_ = 0;
  uint64_t next_line_ = 1;
  storage::Sha256Hasher hasher_;
  uint64_t bytes_ = 0;
};

// What a line claims about its record, before any check.
struct ClaimedRecord {
  std::string shard;
  uint64_t index = 0;
  bool named = false;  // shard and index were read
  std::string leaf_hex, prev_hex, chain_hex;
  std::string event_bytes;
  std::optional<google::protobuf::Timestamp> appended_at;
};

// Reads a JSON line's TrailLine fields. On failure returns why.
std::optional<std::string> ReadJsonLine(absl::string_view line, ClaimedRecord* out);

// Splits one CSV record (with its terminator) into cells. On failure returns why.
std::optional<std::string> SplitCsv(absl::string_view record, std::vector<std::string>* cells);

// Reads a CSV row's claim (its cells into *cells) under a header with the
// input `columns`. On failure returns why.
std::optional<std::string> ReadCsvRow(absl::string_view bytes, const CsvColumns& columns,
                                      std::vector<std::string>* cells, ClaimedRecord* claim);

}  // namespace predlog::services::export_internal

#endif  // PREDLOG_SERVICES_EXPORT_TRAIL_INTERNAL_H_
