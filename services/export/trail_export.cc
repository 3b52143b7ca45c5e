// Export files and their verification.
//
// JSON lines (file_format "jsonl"):
//   file   := line*
//   line   := json '\n'
//   json   := the TrailLine of the record as services/export/trail_json.h renders it:
//             {"shard":..,"index":"N","event":{..},"leafSha256":..,
//              "prevChainSha256":..,"chainSha256":..,"eventBytes":"<base64>"}
//             (protobuf JSON mapping, one line; defaults left out, so index 0
//             has no "index"). Hex digests are lower case.
//
// CSV (file_format "csv", RFC 4180):
//   file   := header row*
//   header := fixed-columns ("," "input." name)* ",extra_inputs,event_bytes_base64" CRLF
//   row    := cell ("," cell)* CRLF
//   cell   := bare | '"' (any char, '"' doubled)* '"'   -- quoted iff it holds , " CR or LF
//   fixed-columns := shard,index,leaf_sha256,prev_chain_sha256,chain_sha256,recorded_at,
//             actor,kind,prediction_id,subject_id,served_at,model_name,model_version,
//             artifact_sha256,pipeline_name,pipeline_version,scores,label,trace_id
//   The input columns are the first prediction record's input names in its
//   order (first of each name; none when the export holds no prediction).
//   kind is the body's proto field name ("prediction_logged"); times are RFC
//   3339 as in JSON ("invalid(seconds=<s> nanos=<n>)" outside protobuf's
//   range); numbers print as in JSON (NaN, Infinity, -Infinity bare); scores
//   are the float scores then the double scores, ';'-joined; an input cell is
//   its value (bytes as base64, int64 in decimal, empty when unset, so an
//   empty string and a missing value look alike: event_bytes tell them apart);
//   extra_inputs is a JSON object of the inputs without a column of their own
//   (a value as the JSON mapping prints it, null when unset), empty when none.
//   Text cells (actor, ids, names, versions, label, trace_id, string and
//   bytes inputs) that start with = + - @ TAB or CR get a leading ' so that a spreadsheet
//   shows them as text instead of evaluating them as a formula (CSV
//   injection); the exact value is in event_bytes.
//   Non-prediction records leave every column from prediction_id to
//   extra_inputs empty.
//
// Both formats render each record deterministically from (shard, index,
// digests, event bytes), so the verifier re-renders every line from its
// event_bytes and compares bytes: any change to a line is found and named.
#include "services/export/trail_export.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/util/json_util.h"
#include "services/export/trail_json.h"
#include "storage/sha256.h"
#include "storage/status_macros.h"

namespace predlog::services {

namespace {

using ::predlog::storage::Digest;
using ::predlog::v1::AuditEvent;
using ::predlog::v1::ExportManifest;

// Bytes buffered before a write(2).
constexpr size_t kFlushBytes = 1 << 20;
// Bytes read per read(2) when verifying.
constexpr size_t kReadBytes = 4 << 20;
// CSV rows kept in memory while the header waits for the first prediction;
// beyond this they go to a spill file beside the export.
constexpr size_t kMaxPendingCsvBytes = 64 << 20;

constexpr const char* kCsvFixedColumns[] = {
    "shard",         "index",           "leaf_sha256",   "prev_chain_sha256",
    "chain_sha256",  "recorded_at",     "actor",         "kind",
    "prediction_id", "subject_id",      "served_at",     "model_name",
    "model_version", "artifact_sha256", "pipeline_name", "pipeline_version",
    "scores",        "label",           "trace_id"};
constexpr size_t kCsvFixedCount = sizeof(kCsvFixedColumns) / sizeof(kCsvFixedColumns[0]);
// The columns of prediction fields, from prediction_id on.
constexpr size_t kCsvFirstPredictionColumn = 8;
constexpr absl::string_view kInputPrefix = "input.";

absl::Status ErrnoStatus(int err, absl::string_view what, absl::string_view path) {
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

std::string RecordName(absl::string_view shard, uint64_t index) {
  return absl::StrCat(shard, "#", index);
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Lower-case hex of a digest into a fixed buffer (no allocation per record).
struct HexDigest {
  char text[64];
  explicit HexDigest(const Digest& d) {
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
  static absl::StatusOr<std::unique_ptr<FileSink>> Create(const std::string& path) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus(errno, "cannot create", path);
    return std::unique_ptr<FileSink>(new FileSink(path, fd));
  }
  ~FileSink() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  // Append here, then MaybeFlush().
  std::string* buffer() { return &buffer_; }
  absl::Status MaybeFlush() { return buffer_.size() >= kFlushBytes ? Flush() : absl::OkStatus(); }

  // Appends `bytes`; a large piece is written straight from the caller's
  // memory when nothing is buffered (a rendered batch: ~2 MB not copied).
  absl::Status Append(absl::string_view bytes) {
    if (!buffer_.empty() || bytes.size() < kFlushBytes / 2) {
      buffer_.append(bytes.data(), bytes.size());
      return MaybeFlush();
    }
    return Write(bytes);
  }

  absl::Status Flush() {
    RETURN_IF_ERROR(Write(buffer_));
    buffer_.clear();
    return absl::OkStatus();
  }

  // Hashes, writes and counts `bytes`; only with buffer() empty (else the
  // buffered bytes would come after them).
  absl::Status Write(absl::string_view bytes) {
    hasher_.Update(bytes);
    const char* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "cannot write", path_);
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    // Start writing these bytes back now: the kernel would otherwise hold
    // them dirty until Close's fsync (an export of a GB is below the
    // background writeback threshold), which would then wait for all of them
    // at once instead of overlapping the disk with the rendering. Only a hint,
    // so its failure does not matter: fsync reports real I/O errors.
    ::sync_file_range(fd_, static_cast<off_t>(bytes_), static_cast<off_t>(bytes.size()),
                      SYNC_FILE_RANGE_WRITE);
    bytes_ += bytes.size();
    return absl::OkStatus();
  }

  // Flushes, fsyncs and closes.
  absl::Status Close() {
    RETURN_IF_ERROR(Flush());
    if (::fsync(fd_) != 0) return ErrnoStatus(errno, "cannot fsync", path_);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return ErrnoStatus(errno, "cannot close", path_);
    return absl::OkStatus();
  }

  Digest sha256() { return hasher_.Finish(); }
  uint64_t bytes() const { return bytes_; }
  const std::string& path() const { return path_; }

 private:
  FileSink(std::string path, int fd) : path_(std::move(path)), fd_(fd) {
    buffer_.reserve(kFlushBytes + (64 << 10));
  }
  std::string path_;
  int fd_;
  std::string buffer_;
  storage::Sha256Hasher hasher_;
  uint64_t bytes_ = 0;
};

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
  std::string data;
  char chunk[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "cannot read", path);
    }
    if (n == 0) break;
    data.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  return data;
}

absl::Status WriteFileDurably(const std::string& path, absl::string_view contents) {
  const std::string temp = path + ".tmp";
  {
    ASSIGN_OR_RETURN(std::unique_ptr<FileSink> sink, FileSink::Create(temp));
    sink->buffer()->append(contents.data(), contents.size());
    RETURN_IF_ERROR(sink->Close());
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return ErrnoStatus(errno, "cannot rename to", path);
  }
  // The rename itself is durable once the directory is synced.
  const std::string dir = DirName(path);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoStatus(errno, "cannot open directory", dir);
  const int rc = ::fsync(dir_fd);
  const int err = errno;
  ::close(dir_fd);
  if (rc != 0) return ErrnoStatus(err, "cannot fsync directory", dir);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// CSV rendering.

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

void AppendCell(absl::string_view value, std::string* out) {
  if (value.find_first_of(",\"\r\n") == absl::string_view::npos) {
    out->append(value.data(), value.size());
    return;
  }
  out->push_back('"');
  for (const char c : value) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
}

// `text` as a spreadsheet shows it literally: a leading character that makes
// Excel, LibreOffice or Sheets evaluate the cell as a formula gets a ' before it.
std::string SpreadsheetText(absl::string_view text) {
  if (!text.empty() &&
      absl::string_view("=+-@\t\r").find(text.front()) != absl::string_view::npos) {
    return absl::StrCat("'", text);
  }
  return std::string(text);
}

void AppendCsvHeader(const CsvColumns& columns, std::string* out) {
  for (size_t i = 0; i < kCsvFixedCount; ++i) {
    if (i > 0) out->push_back(',');
    out->append(kCsvFixedColumns[i]);
  }
  for (const std::string& name : columns.names()) {
    out->push_back(',');
    AppendCell(absl::StrCat(kInputPrefix, name), out);
  }
  out->append(",extra_inputs,event_bytes_base64\r\n");
}

void AppendNumber(double value, bool is_float, std::string* out) {
  if (!std::isfinite(value)) {
    const absl::string_view name = NonFiniteName(value);
    out->append(name.data(), name.size());
  } else if (is_float) {
    AppendJsonFloat(static_cast<float>(value), out);
  } else {
    AppendJsonDouble(value, out);
  }
}

std::string CsvTime(bool present, const google::protobuf::Timestamp& ts) {
  if (!present) return std::string();
  std::string quoted;
  if (!AppendTimestamp(ts, &quoted)) {
    return absl::StrCat("invalid(seconds=", ts.seconds(), " nanos=", ts.nanos(), ")");
  }
  return quoted.substr(1, quoted.size() - 2);
}

// A feature's value as a CSV cell.
std::string FeatureCell(const predlog::v1::Feature& f) {
  using F = predlog::v1::Feature;
  std::string cell;
  switch (f.value_case()) {
    case F::kDoubleValue:
      AppendNumber(f.double_value(), false, &cell);
      break;
    case F::kFloatValue:
      AppendNumber(f.float_value(), true, &cell);
      break;
    case F::kInt64Value:
      absl::StrAppend(&cell, f.int64_value());
      break;
    case F::kBoolValue:
      cell = f.bool_value() ? "true" : "false";
      break;
    case F::kStringValue:
      cell = SpreadsheetText(f.string_value());
      break;
    case F::kBytesValue:
      AppendBase64(f.bytes_value(), &cell);
      cell = SpreadsheetText(cell);  // base64 may start with '+'
      break;
    case F::VALUE_NOT_SET:
      break;
  }
  return cell;
}

// A JSON string for CSV's extra_inputs; strings from a parsed proto3 message
// are valid UTF-8, so the fallback only keeps the output well-formed.
void AppendJsonStringOrEmpty(absl::string_view value, std::string* out) {
  if (!AppendJsonString(value, out)) out->append("\"\"");
}

// A feature's value as a JSON value (the protobuf JSON mapping of the oneof member).
void AppendFeatureJson(const predlog::v1::Feature& f, std::string* out) {
  using F = predlog::v1::Feature;
  switch (f.value_case()) {
    case F::kDoubleValue:
    case F::kFloatValue: {
      const bool is_float = f.value_case() == F::kFloatValue;
      const double v = is_float ? f.float_value() : f.double_value();
      if (std::isfinite(v)) {
        AppendNumber(v, is_float, out);
      } else {
        absl::StrAppend(out, "\"", NonFiniteName(v), "\"");
      }
      break;
    }
    case F::kInt64Value:
      absl::StrAppend(out, "\"", f.int64_value(), "\"");
      break;
    case F::kBoolValue:
      out->append(f.bool_value() ? "true" : "false");
      break;
    case F::kStringValue:
      AppendJsonStringOrEmpty(f.string_value(), out);
      break;
    case F::kBytesValue:
      out->push_back('"');
      AppendBase64(f.bytes_value(), out);
      out->push_back('"');
      break;
    case F::VALUE_NOT_SET:
      out->append("null");
      break;
  }
}

struct RowKey {
  absl::string_view shard;
  uint64_t index = 0;
  absl::string_view leaf, prev_chain, chain;
  absl::string_view event_bytes;
};

void AppendCsvRow(const CsvColumns& columns, const RowKey& key, const AuditEvent& event,
                  std::string* out) {
  AppendCell(key.shard, out);
  absl::StrAppend(out, ",", key.index, ",");
  absl::StrAppend(out, key.leaf, ",", key.prev_chain, ",", key.chain, ",");
  AppendCell(CsvTime(event.has_recorded_at(), event.recorded_at()), out);
  out->push_back(',');
  AppendCell(SpreadsheetText(event.actor()), out);
  out->push_back(',');
  if (event.body_case() != AuditEvent::BODY_NOT_SET) {
    const auto* field = AuditEvent::descriptor()->FindFieldByNumber(event.body_case());
    if (field != nullptr) out->append(field->name());
  }
  if (!event.has_prediction_logged()) {
    // prediction_id .. trace_id, the input columns and extra_inputs.
    out->append(kCsvFixedCount - kCsvFirstPredictionColumn + columns.names().size() + 1, ',');
  } else {
    const auto& p = event.prediction_logged();
    const std::string cells[] = {
        p.prediction_id(),   p.subject_id(),        CsvTime(p.has_served_at(), p.served_at()),
        p.model().name(),    p.model().version(),   p.model().artifact_sha256(),
        p.pipeline().name(), p.pipeline().version()};
    for (const std::string& cell : cells) {
      out->push_back(',');
      AppendCell(SpreadsheetText(cell), out);
    }
    std::string scores;
    for (const float s : p.output().float_scores()) {
      if (!scores.empty()) scores.push_back(';');
      AppendNumber(s, true, &scores);
    }
    for (const double s : p.output().double_scores()) {
      if (!scores.empty()) scores.push_back(';');
      AppendNumber(s, false, &scores);
    }
    out->push_back(',');
    AppendCell(scores, out);
    out->push_back(',');
    AppendCell(SpreadsheetText(p.output().label()), out);
    out->push_back(',');
    AppendCell(SpreadsheetText(p.trace_id()), out);

    std::vector<const predlog::v1::Feature*> by_column(columns.names().size(), nullptr);
    std::string extra;
    for (const auto& input : p.inputs()) {
      const int column = columns.Find(input.name());
      if (column >= 0 && by_column[column] == nullptr) {
        by_column[column] = &input;
        continue;
      }
      extra.push_back(extra.empty() ? '{' : ',');
      AppendJsonStringOrEmpty(input.name(), &extra);
      extra.push_back(':');
      AppendFeatureJson(input, &extra);
    }
    if (!extra.empty()) extra.push_back('}');
    for (const auto* input : by_column) {
      out->push_back(',');
      if (input != nullptr) AppendCell(FeatureCell(*input), out);
    }
    out->push_back(',');
    AppendCell(extra, out);
  }
  out->push_back(',');
  AppendBase64(key.event_bytes, out);
  out->append("\r\n");
}

}  // namespace

absl::StatusOr<ExportFormat> ParseExportFormat(absl::string_view name) {
  if (name == "jsonl") return ExportFormat::kJsonl;
  if (name == "csv") return ExportFormat::kCsv;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown export format \"", name, "\" (want jsonl or csv)"));
}

absl::string_view ExportFormatName(ExportFormat format) {
  return format == ExportFormat::kJsonl ? "jsonl" : "csv";
}

// ---------------------------------------------------------------------------
// TrailWriter

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

class TrailWriter::Impl {
 public:
  Impl(std::string path, ExportFormat format, std::unique_ptr<FileSink> sink)
      : path_(std::move(path)), format_(format), sink_(std::move(sink)) {}

  ~Impl() {
    StopWorkers();
    if (spill_ != nullptr) ::unlink(spill_->path().c_str());  // an unfinished export
  }

  absl::Status Add(const predlog::v1::ExportedRecord& record) {
    RETURN_IF_ERROR(Usable());
    if (!workers_.empty()) {
      return absl::FailedPreconditionError("Add after AddBatch: use one or the other");
    }
    Prepared prepared;
    std::string* const out = sink_->buffer();
    const size_t before = out->size();
    arena_.Reset();
    Prepare(record, arena_.get(), format_ == ExportFormat::kJsonl ? out : nullptr, &prepared);
    if (absl::Status accepted = Accept(record, prepared); !accepted.ok()) {
      out->resize(before);  // nothing of a rejected record
      return accepted;
    }
    if (format_ == ExportFormat::kJsonl) {
      broken_ = sink_->MaybeFlush();
    } else {
      broken_ = AddCsvRow(record, *prepared.event, prepared);
    }
    return broken_;
  }

  absl::Status AddBatch(predlog::v1::ExportBatch batch) {
    if (format_ == ExportFormat::kCsv) {
      // A CSV row depends on the header, which depends on the first
      // prediction: rows are rendered in order, here.
      for (const predlog::v1::ExportedRecord& record : batch.records())
        RETURN_IF_ERROR(Add(record));
      return absl::OkStatus();
    }
    if (finished_) return absl::FailedPreconditionError("the export is already finished");
    // Once workers run, broken_ is theirs: their failures are pipeline_error_.
    if (workers_.empty()) RETURN_IF_ERROR(Usable());
    absl::MutexLock lock(&mu_);
    if (!pipeline_error_.ok()) return pipeline_error_;
    if (workers_.empty()) {
      const int n = std::clamp<int>(static_cast<int>(std::thread::hardware_concurrency()), 1,
                                    kMaxRenderWorkers);
      for (int i = 0; i < n; ++i) workers_.emplace_back([this] { RenderLoop(); });
    }
    // Bounds the memory of batches waiting to be rendered or committed.
    const auto has_room = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return next_seq_ - next_commit_ < kMaxBatchesInFlight || !pipeline_error_.ok();
    };
    mu_.Await(absl::Condition(&has_room));
    if (!pipeline_error_.ok()) return pipeline_error_;
    queue_.push_back(Job{next_seq_++, std::move(batch)});
    return absl::OkStatus();
  }

  uint64_t records() const { return records_.load(std::memory_order_relaxed); }

  absl::StatusOr<ExportManifest> Finish(ExportManifest manifest, const std::string& manifest_path) {
    if (finished_) return absl::FailedPreconditionError("the export is already finished");
    finished_ = true;
    if (!workers_.empty()) {
      StopWorkers();  // after they committed every batch queued
      absl::MutexLock lock(&mu_);
      RETURN_IF_ERROR(pipeline_error_);
    }
    RETURN_IF_ERROR(broken_);
    CloseRange();
    if (format_ == ExportFormat::kCsv && !header_written_) {
      RETURN_IF_ERROR(WriteCsvHeader(CsvColumns()));
    }
    RETURN_IF_ERROR(sink_->Close());
    manifest.set_format_version(1);
    manifest.set_file_name(BaseName(path_));
    const absl::string_view format = ExportFormatName(format_);
    manifest.set_file_format(format.data(), format.size());
    manifest.set_file_sha256(storage::ToHex(sink_->sha256()));
    manifest.set_file_bytes(sink_->bytes());
    manifest.set_record_count(records());
    manifest.clear_shards();
    for (auto& shard : shards_) *manifest.add_shards() = std::move(shard);
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    std::string json;
    const auto status = google::protobuf::util::MessageToJsonString(manifest, &json, options);
    if (!status.ok()) {
      return absl::InternalError(
          absl::StrCat("cannot print the manifest as JSON: ", status.ToString()));
    }
    RETURN_IF_ERROR(WriteFileDurably(manifest_path, json));
    return manifest;
  }

 private:
  // Render workers at most: rendering a batch is the expensive part of Add,
  // and batches are independent but for their place in the log.
  static constexpr int kMaxRenderWorkers = 4;
  // Batches queued, being rendered or waiting to be committed; bounds memory
  // (a batch is ~1 MB of events and ~2 MB of lines).
  static constexpr uint64_t kMaxBatchesInFlight = 8;

  // A batch handed to AddBatch; `seq` is its place in the file.
  struct Job {
    uint64_t seq = 0;
    predlog::v1::ExportBatch batch;
  };

  // A record checked on its own (digests, leaf, chain, event) and, for JSON
  // lines, rendered. What remains is its place in the log (Accept).
  struct Prepared {
    // The first failure of the record's own checks, naming the record.
    absl::Status status;
    // `status` says the event bytes do not parse. Log order is checked before
    // that, and after the digests, so the error of a record is the one Add
    // always returned for it.
    bool parse_failed = false;
    Digest leaf{};
    Digest prev{};
    Digest chain{};
    const AuditEvent* event = nullptr;  // on Prepare's arena
  };

  absl::Status Usable() const {
    if (finished_) return absl::FailedPreconditionError("the export is already finished");
    if (!broken_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("an earlier write failed: ", broken_.message()));
    }
    return absl::OkStatus();
  }

  // Thread-safe: uses no member. Parses the event onto `arena` and, when
  // `out` is not null and every check passed, appends its JSON line to `out`.
  static void Prepare(const predlog::v1::ExportedRecord& record, google::protobuf::Arena* arena,
                      std::string* out, Prepared* p) {
    const auto fail = [&](absl::string_view what) {
      p->status = absl::InvalidArgumentError(
          absl::StrCat(RecordName(record.shard(), record.index()), ": ", what));
    };
    const std::optional<Digest> leaf = storage::DigestFromHex(record.leaf_sha256());
    const std::optional<Digest> prev = storage::DigestFromHex(record.prev_chain_sha256());
    const std::optional<Digest> chain = storage::DigestFromHex(record.chain_sha256());
    if (!leaf || !prev || !chain) {
      return fail("leaf_sha256, prev_chain_sha256 and chain_sha256 must be 64 hex digits each");
    }
    p->leaf = *leaf;
    p->prev = *prev;
    p->chain = *chain;
    if (storage::Sha256(record.event_bytes()) != p->leaf) {
      return fail("leaf_sha256 does not match the event bytes");
    }
    if (storage::ChainNext(p->prev, p->leaf) != p->chain) {
      return fail("chain_sha256 is not SHA-256(prev_chain_sha256 || leaf)");
    }
    AuditEvent* const event = google::protobuf::Arena::CreateMessage<AuditEvent>(arena);
    if (!event->ParseFromString(record.event_bytes())) {
      p->parse_failed = true;
      return fail("event_bytes are not a predlog.v1.AuditEvent");
    }
    p->event = event;
    if (out == nullptr) return;
    // The record's own hex was checked to be digits, but maybe upper case:
    // the line holds the canonical lower case.
    const HexDigest leaf_hex(p->leaf), prev_hex(p->prev), chain_hex(p->chain);
    TrailLineFields fields;
    fields.shard = record.shard();
    fields.index = record.index();
    fields.event = event;
    fields.leaf_sha256 = leaf_hex.view();
    fields.prev_chain_sha256 = prev_hex.view();
    fields.chain_sha256 = chain_hex.view();
    fields.event_bytes = record.event_bytes();
    AppendTrailLine(fields, out);
  }

  // Checks the prepared record's place in the log and, when it fits, counts
  // it in the manifest. The record's own failure, when it has one, comes
  // before (digests) or after (parsing) the log order checks.
  absl::Status Accept(const predlog::v1::ExportedRecord& record, const Prepared& p) {
    if (!p.status.ok() && !p.parse_failed) return p.status;
    const bool new_shard = shards_.empty() || shards_.back().shard() != record.shard();
    if (new_shard) {
      if (seen_shards_.contains(record.shard())) {
        return absl::InvalidArgumentError(absl::StrCat(RecordName(record.shard(), record.index()),
                                                       ": out of log order: shard ", record.shard(),
                                                       " resumed after ", shards_.back().shard()));
      }
    } else {
      if (record.index() <= last_index_) {
        return absl::InvalidArgumentError(absl::StrCat(RecordName(record.shard(), record.index()),
                                                       ": out of log order after ",
                                                       RecordName(record.shard(), last_index_)));
      }
      if (record.index() == last_index_ + 1 && p.prev != last_chain_) {
        return absl::InvalidArgumentError(
            absl::StrCat(RecordName(record.shard(), record.index()),
                         ": prev_chain_sha256 does not continue the chain of ",
                         RecordName(record.shard(), last_index_)));
      }
    }
    if (!p.status.ok()) return p.status;

    if (new_shard || record.index() != last_index_ + 1) {
      CloseRange();
      if (new_shard) {
        seen_shards_.insert(record.shard());
        shards_.emplace_back().set_shard(record.shard());
      }
      ExportManifest::Range* range = shards_.back().add_ranges();
      range->set_first_index(record.index());
      const HexDigest prev_hex(p.prev);
      range->set_prev_chain_sha256(prev_hex.view().data(), prev_hex.view().size());
    }
    ExportManifest::ShardRanges& shard = shards_.back();
    shard.set_records(shard.records() + 1);
    shard.mutable_ranges(shard.ranges_size() - 1)->set_last_index(record.index());
    last_index_ = record.index();
    last_chain_ = p.chain;
    records_.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }

  // Fills in the chain anchor of the range being written, if any (only its
  // last record's chain value matters, so it is written once, not per record).
  void CloseRange() {
    if (shards_.empty() || shards_.back().ranges_size() == 0) return;
    ExportManifest::ShardRanges& shard = shards_.back();
    const HexDigest chain_hex(last_chain_);
    shard.mutable_ranges(shard.ranges_size() - 1)
        ->set_chain_sha256(chain_hex.view().data(), chain_hex.view().size());
  }

  // A render worker: takes batches in order, checks and renders them alone,
  // then waits for its batch's turn and commits it (log order, manifest,
  // file), so the file is in AddBatch order while rendering runs in parallel.
  void RenderLoop() {
    RecordArena arena;
    std::string text;
    std::vector<Prepared> prepared;
    std::vector<size_t> ends;  // of each record's line in `text`
    while (true) {
      Job job;
      bool failed = false;
      {
        absl::MutexLock lock(&mu_);
        const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !queue_.empty() || stopping_;
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        failed = !pipeline_error_.ok();
      }
      text.clear();
      prepared.clear();
      ends.clear();
      if (!failed) {  // after a failure the rest is dropped
        for (const predlog::v1::ExportedRecord& record : job.batch.records()) {
          arena.Reset();
          Prepared& p = prepared.emplace_back();
          Prepare(record, arena.get(), &text, &p);
          p.event = nullptr;  // gone with the next Reset
          ends.push_back(text.size());
          if (!p.status.ok()) break;
        }
      }
      {
        absl::MutexLock lock(&mu_);
        const auto turn = [this, seq = job.seq]()
                              ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return next_commit_ == seq; };
        mu_.Await(absl::Condition(&turn));
        failed = !pipeline_error_.ok();
      }
      // Until next_commit_ moves on, only this worker touches the manifest
      // state and the sink (the mutex orders it after the previous commit).
      absl::Status status;
      if (!failed) status = Commit(job.batch, prepared, ends, text);
      absl::MutexLock lock(&mu_);
      if (!status.ok() && pipeline_error_.ok()) pipeline_error_ = status;
      ++next_commit_;
    }
  }

  // Accepts the batch's records in order and writes the lines of those
  // accepted: a rejected record, and everything after it, is not written.
  absl::Status Commit(const predlog::v1::ExportBatch& batch, const std::vector<Prepared>& prepared,
                      const std::vector<size_t>& ends, const std::string& text) {
    absl::Status status;
    size_t accepted_end = 0;
    for (size_t i = 0; i < prepared.size(); ++i) {
      status = Accept(batch.records(static_cast<int>(i)), prepared[i]);
      if (!status.ok()) break;
      accepted_end = ends[i];
    }
    if (absl::Status flushed = sink_->Append(absl::string_view(text.data(), accepted_end));
        !flushed.ok()) {
      broken_ = flushed;
      return flushed;
    }
    return status;
  }

  // Lets the workers finish what is queued, and joins them.
  void StopWorkers() {
    if (workers_.empty()) return;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& worker : workers_) worker.join();
    workers_.clear();
  }

  // CSV rows wait for the header until the first prediction names the input
  // columns; the rows before it stay in memory, or in a spill file when many.
  absl::Status AddCsvRow(const predlog::v1::ExportedRecord& record, const AuditEvent& event,
                         const Prepared& prepared) {
    if (!header_written_ && event.has_prediction_logged()) {
      RETURN_IF_ERROR(WriteCsvHeader(CsvColumns::For(event.prediction_logged())));
    }
    const HexDigest leaf(prepared.leaf), prev(prepared.prev), chain(prepared.chain);
    RowKey key;
    key.shard = record.shard();
    key.index = record.index();
    key.leaf = leaf.view();
    key.prev_chain = prev.view();
    key.chain = chain.view();
    key.event_bytes = record.event_bytes();
    if (header_written_) {
      AppendCsvRow(columns_, key, event, sink_->buffer());
      return sink_->MaybeFlush();
    }
    // Rows before the header are not predictions (the first prediction
    // writes it), so all their input cells are empty; but how many there are
    // is known only then. Render them without input columns and remember
    // where each row's run of empty cells is: the header inserts the missing
    // commas there (just before the row's last comma, which precedes
    // event_bytes_base64, whose alphabet has no comma).
    AppendCsvRow(CsvColumns(), key, event, &pending_);
    pending_comma_runs_.push_back(spilled_bytes_ + pending_.rfind(','));
    if (pending_.size() < kMaxPendingCsvBytes) return absl::OkStatus();
    if (spill_ == nullptr) {
      ASSIGN_OR_RETURN(spill_, FileSink::Create(path_ + ".pending"));
    }
    spilled_bytes_ += pending_.size();
    spill_->buffer()->append(pending_);
    pending_.clear();
    return spill_->Flush();
  }

  absl::Status WriteCsvHeader(CsvColumns columns) {
    columns_ = std::move(columns);
    header_written_ = true;
    AppendCsvHeader(columns_, sink_->buffer());
    if (spill_ != nullptr) {
      RETURN_IF_ERROR(spill_->Close());
      RETURN_IF_ERROR(CopySpillToSink());
    }
    AppendPending(pending_.data(), pending_.size());
    pending_.clear();
    pending_.shrink_to_fit();
    pending_comma_runs_.clear();
    pending_comma_runs_.shrink_to_fit();
    return sink_->MaybeFlush();
  }

  // Appends pending row bytes (the next `n` of the pending stream) to the
  // export, widening each row's run of empty cells by the input columns.
  void AppendPending(const char* data, size_t n) {
    const std::string commas(columns_.names().size(), ',');
    std::string* out = sink_->buffer();
    size_t at = 0;
    while (next_comma_run_ < pending_comma_runs_.size() &&
           pending_comma_runs_[next_comma_run_] < copied_bytes_ + n) {
      const size_t split =
          static_cast<size_t>(pending_comma_runs_[next_comma_run_] - copied_bytes_);
      out->append(data + at, split - at);
      out->append(commas);
      at = split;
      ++next_comma_run_;
    }
    out->append(data + at, n - at);
    copied_bytes_ += n;
  }

  // Appends the spill file to the export in chunks (it may be large) and removes it.
  absl::Status CopySpillToSink() {
    const std::string spill_path = spill_->path();
    spill_.reset();
    const int fd = ::open(spill_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "cannot open", spill_path);
    absl::Status status;
    std::string chunk(kFlushBytes, '\0');
    while (status.ok()) {
      const ssize_t n = ::read(fd, chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) status = ErrnoStatus(errno, "cannot read", spill_path);
      if (n <= 0) break;
      AppendPending(chunk.data(), static_cast<size_t>(n));
      status = sink_->MaybeFlush();
    }
    ::close(fd);
    ::unlink(spill_path.c_str());
    return status;
  }

  // Constant after construction.
  const std::string path_;
  const ExportFormat format_;
  const std::unique_ptr<FileSink> sink_;

  // The caller's thread only.
  bool finished_ = false;
  std::vector<std::thread> workers_;  // started by the first AddBatch
  // The record being added by Add, parsed on an arena reset per record
  // (cheaper than a reused heap message: features are many small submessages).
  RecordArena arena_;

  // Written by Add, or by the worker whose turn it is to commit.
  absl::Status broken_;  // the first failed write; every later call fails
  std::atomic<uint64_t> records_{0};
  // The manifest's shards so far; the last one is the shard being written.
  // Its last range's chain_sha256 is filled in by CloseRange.
  std::vector<ExportManifest::ShardRanges> shards_;
  absl::flat_hash_set<std::string> seen_shards_;
  uint64_t last_index_ = 0;  // of shards_.back()
  Digest last_chain_{};

  // The AddBatch pipeline.
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;     // of the next batch queued
  uint64_t next_commit_ ABSL_GUARDED_BY(mu_) = 0;  // of the next batch to commit
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The first rejected record or failed write; later batches are dropped.
  absl::Status pipeline_error_ ABSL_GUARDED_BY(mu_);

  // CSV
  bool header_written_ = false;
  CsvColumns columns_;
  std::string pending_;
  std::unique_ptr<FileSink> spill_;
  uint64_t spilled_bytes_ = 0;  // pending bytes moved to spill_
  // Offsets in the pending stream (spill, then pending_) where each pending
  // row's empty input cells go; the next one to insert; bytes copied so far.
  std::vector<uint64_t> pending_comma_runs_;
  size_t next_comma_run_ = 0;
  uint64_t copied_bytes_ = 0;
};

TrailWriter::TrailWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrailWriter::~TrailWriter() = default;

absl::StatusOr<std::unique_ptr<TrailWriter>> TrailWriter::Create(const std::string& path,
                                                                 ExportFormat format) {
  ASSIGN_OR_RETURN(std::unique_ptr<FileSink> sink, FileSink::Create(path));
  return std::unique_ptr<TrailWriter>(
      new TrailWriter(std::make_unique<Impl>(path, format, std::move(sink))));
}

absl::Status TrailWriter::Add(const predlog::v1::ExportedRecord& record) {
  return impl_->Add(record);
}

absl::Status TrailWriter::AddBatch(predlog::v1::ExportBatch batch) {
  return impl_->AddBatch(std::move(batch));
}

uint64_t TrailWriter::records() const { return impl_->records(); }

absl::StatusOr<ExportManifest> TrailWriter::Finish(ExportManifest manifest,
                                                   const std::string& manifest_path) {
  return impl_->Finish(std::move(manifest), manifest_path);
}

// ---------------------------------------------------------------------------
// Verification

namespace {

// Reads an export file record by record, hashing every byte it reads. A
// record ends after a '\n' (in CSV, one outside quotes) or at the end of the
// file, and includes its terminator.
class RecordReader {
 public:
  static absl::StatusOr<std::unique_ptr<RecordReader>> Open(const std::string& path, bool csv) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
    return std::unique_ptr<RecordReader>(new RecordReader(path, fd, csv));
  }
  ~RecordReader() { ::close(fd_); }
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // The next record, valid until the next call; false at the end of the file.
  absl::StatusOr<bool> Next(absl::string_view* record) {
    while (true) {
      const size_t end = FindEnd();
      if (end != std::string::npos || (eof_ && pos_ < buffer_.size())) {
        const size_t stop = end != std::string::npos ? end : buffer_.size();
        *record = absl::string_view(buffer_.data() + pos_, stop - pos_);
        line_ = next_line_;
        next_line_ += std::count(record->begin(), record->end(), '\n');
        pos_ = stop;
        return true;
      }
      if (eof_) return false;
      buffer_.erase(0, pos_);
      pos_ = 0;
      const size_t old = buffer_.size();
      buffer_.resize(old + kReadBytes);
      ssize_t n;
      do {
        n = ::read(fd_, &buffer_[old], kReadBytes);
      } while (n < 0 && errno == EINTR);
      if (n < 0) return ErrnoStatus(errno, "cannot read", path_);
      buffer_.resize(old + static_cast<size_t>(n));
      hasher_.Update(absl::string_view(buffer_.data() + old, static_cast<size_t>(n)));
      bytes_ += static_cast<uint64_t>(n);
      if (n == 0) eof_ = true;
    }
  }

  // The (1-based) line the last record starts on.
  uint64_t line() const { return line_; }
  // Call after Next() returned false.
  Digest sha256() { return hasher_.Finish(); }
  uint64_t bytes() const { return bytes_; }

 private:
  RecordReader(std::string path, int fd, bool csv) : path_(std::move(path)), fd_(fd), csv_(csv) {}

  // One past the '\n' that ends the record at pos_, or npos.
  size_t FindEnd() const {
    if (!csv_) {
      const size_t nl = buffer_.find('\n', pos_);
      return nl == std::string::npos ? nl : nl + 1;
    }
    bool quoted = false;
    for (size_t i = pos_; i < buffer_.size(); ++i) {
      const char c = buffer_[i];
      if (c == '"') quoted = !quoted;
      if (c == '\n' && !quoted) return i + 1;
    }
    return std::string::npos;
  }

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
};

// A strict JSON reader for one line: enough to pick a TrailLine's fields out
// and to check that everything else is well-formed JSON.
class JsonReader {
 public:
  explicit JsonReader(absl::string_view text)
      : p_(text.data()), begin_(text.data()), end_(text.data() + text.size()) {}

  size_t offset() const { return static_cast<size_t>(p_ - begin_); }
  bool AtEnd() const { return p_ == end_; }
  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\r' || *p_ == '\n')) ++p_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool Peek(char c) {
    SkipSpace();
    return p_ < end_ && *p_ == c;
  }

  // A string, unescaped into *out (nullptr: skipped).
  bool String(std::string* out) {
    if (!Consume('"')) return false;
    while (p_ < end_) {
      const char c = *p_++;
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        if (out != nullptr) out->push_back(c);
        continue;
      }
      if (p_ == end_) return false;
      const char e = *p_++;
      char plain = 0;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          plain = e;
          break;
        case 'b':
          plain = '\b';
          break;
        case 'f':
          plain = '\f';
          break;
        case 'n':
          plain = '\n';
          break;
        case 'r':
          plain = '\r';
          break;
        case 't':
          plain = '\t';
          break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xd800 && cp < 0xdc00) {
            uint32_t low;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
            p_ += 2;
            if (!Hex4(&low) || low < 0xdc00 || low > 0xdfff) return false;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return false;
          }
          if (out != nullptr) AppendUtf8(cp, out);
          continue;
        }
        default:
          return false;
      }
      if (out != nullptr) out->push_back(plain);
    }
    return false;
  }

  bool Value(int depth) {
    if (depth > 64) return false;
    SkipSpace();
    if (p_ == end_) return false;
    switch (*p_) {
      case '"':
        return String(nullptr);
      case '{': {
        ++p_;
        if (Consume('}')) return true;
        do {
          if (!String(nullptr) || !Consume(':') || !Value(depth + 1)) return false;
        } while (Consume(','));
        return Consume('}');
      }
      case '[': {
        ++p_;
        if (Consume(']')) return true;
        do {
          if (!Value(depth + 1)) return false;
        } while (Consume(','));
        return Consume(']');
      }
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        return Number(nullptr);
    }
  }

  // A JSON number; its text into *text when not null.
  bool Number(absl::string_view* text) {
    SkipSpace();
    const char* start = p_;
    if (p_ < end_ && *p_ == '-') ++p_;
    if (!Digits()) return false;
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (!Digits()) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!Digits()) return false;
    }
    if (text != nullptr) *text = absl::string_view(start, static_cast<size_t>(p_ - start));
    return true;
  }

 private:
  bool Digits() {
    const char* start = p_;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    return p_ > start;
  }
  bool Literal(absl::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() ||
        absl::string_view(p_, word.size()) != word) {
      return false;
    }
    p_ += word.size();
    return true;
  }
  bool Hex4(uint32_t* cp) {
    if (end_ - p_ < 4) return false;
    *cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      int v;
      if (c >= '0' && c <= '9') {
        v = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v = c - 'A' + 10;
      } else {
        return false;
      }
      *cp = (*cp << 4) | static_cast<uint32_t>(v);
    }
    return true;
  }

  const char* p_;
  const char* const begin_;
  const char* const end_;
};

// Reads a JSON line's TrailLine fields. On failure returns why.
std::optional<std::string> ReadJsonLine(absl::string_view line, ClaimedRecord* out) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  JsonReader json(line);
  const auto fail = [&json](absl::string_view what) {
    return absl::StrCat("does not parse as a TrailLine: ", what, " at byte ", json.offset() + 1);
  };
  if (!json.Consume('{')) return fail("expected '{'");
  absl::flat_hash_set<std::string> seen;
  bool has_shard = false, has_index = false;
  if (!json.Consume('}')) {
    do {
      std::string key;
      if (!json.String(&key) || !json.Consume(':')) return fail("expected a field name");
      if (!seen.insert(key).second) return fail(absl::StrCat("repeated field \"", key, "\""));
      bool ok;
      if (key == "shard") {
        ok = json.String(&out->shard);
        has_shard = true;
      } else if (key == "index") {
        std::string text;
        absl::string_view number;
        if (json.Peek('"')) {
          ok = json.String(&text);
          number = text;
        } else {
          ok = json.Number(&number);
        }
        ok = ok && absl::SimpleAtoi(number, &out->index);
        has_index = true;
      } else if (key == "event") {
        ok = json.Value(0);
      } else if (key == "leafSha256") {
        ok = json.String(&out->leaf_hex);
      } else if (key == "prevChainSha256") {
        ok = json.String(&out->prev_hex);
      } else if (key == "chainSha256") {
        ok = json.String(&out->chain_hex);
      } else if (key == "eventBytes") {
        std::string base64;
        ok = json.String(&base64) && absl::Base64Unescape(base64, &out->event_bytes);
      } else {
        return fail(absl::StrCat("unknown field \"", key, "\""));
      }
      if (!ok) return fail(absl::StrCat("bad value of \"", key, "\""));
      out->named = out->named || has_shard || has_index;
    } while (json.Consume(','));
    if (!json.Consume('}')) return fail("expected ',' or '}'");
  }
  json.SkipSpace();
  if (!json.AtEnd()) return fail("text after the object");
  return std::nullopt;
}

// Splits one CSV record (with its terminator) into cells. On failure returns why.
std::optional<std::string> SplitCsv(absl::string_view record, std::vector<std::string>* cells) {
  if (!record.empty() && record.back() == '\n') record.remove_suffix(1);
  if (!record.empty() && record.back() == '\r') record.remove_suffix(1);
  cells->clear();
  size_t i = 0;
  while (true) {
    std::string cell;
    if (i < record.size() && record[i] == '"') {
      ++i;
      while (true) {
        if (i >= record.size()) return std::string("unterminated quoted cell");
        if (record[i] == '"') {
          if (i + 1 < record.size() && record[i + 1] == '"') {
            cell.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        cell.push_back(record[i++]);
      }
      if (i < record.size() && record[i] != ',') {
        return absl::StrCat("text after a quoted cell at byte ", i + 1);
      }
    } else {
      const size_t comma = std::min(record.find(',', i), record.size());
      cell.assign(record.data() + i, comma - i);
      if (cell.find('"') != std::string::npos) {
        return absl::StrCat("a quote inside an unquoted cell near byte ", i + 1);
      }
      i = comma;
    }
    cells->push_back(std::move(cell));
    if (i >= record.size()) return std::nullopt;
    ++i;  // the comma
  }
}

size_t FirstDifference(absl::string_view a, absl::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return i;
  }
  return n;
}

// The manifest flattened to runs in file order.
struct Run {
  size_t shard;  // index into the manifest's shards
  uint64_t first;
  uint64_t last;
  const ExportManifest::Range* range;
};

class Verifier {
 public:
  Verifier(const ExportManifest& manifest, ExportFormat format)
      : manifest_(manifest), format_(format) {}

  // Checks the manifest's own consistency.
  bool CheckManifest() {
    uint64_t total = 0;
    absl::flat_hash_set<std::string> names;
    for (size_t s = 0; s < static_cast<size_t>(manifest_.shards_size()); ++s) {
      const auto& shard = manifest_.shards(static_cast<int>(s));
      if (!names.insert(shard.shard()).second) {
        return Fail(absl::StrCat("manifest: shard ", shard.shard(), " is listed twice"));
      }
      uint64_t records = 0;
      for (const auto& range : shard.ranges()) {
        if (range.first_index() > range.last_index() ||
            (!runs_.empty() && runs_.back().shard == s &&
             range.first_index() <= runs_.back().last)) {
          return Fail(absl::StrCat("manifest: the ranges of shard ", shard.shard(),
                                   " are not increasing at ", range.first_index()));
        }
        if (!storage::DigestFromHex(range.prev_chain_sha256()) ||
            !storage::DigestFromHex(range.chain_sha256())) {
          return Fail(absl::StrCat("manifest: a chain anchor of shard ", shard.shard(),
                                   " is not 64 hex digits"));
        }
        runs_.push_back(Run{s, range.first_index(), range.last_index(), &range});
        records += range.last_index() - range.first_index() + 1;
      }
      if (records != shard.records()) {
        return Fail(absl::StrCat("manifest: shard ", shard.shard(), " says ", shard.records(),
                                 " records but its ranges hold ", records));
      }
      total += records;
    }
    if (total != manifest_.record_count()) {
      return Fail(absl::StrCat("manifest: record_count is ", manifest_.record_count(),
                               " but its shards hold ", total));
    }
    if (!runs_.empty()) expected_ = runs_[0].first;
    return true;
  }

  // One record of the file; false once verification failed.
  bool Record(absl::string_view bytes, uint64_t line) {
    if (format_ == ExportFormat::kCsv && !header_seen_) return Header(bytes, line);
    line_ = line;
    ClaimedRecord claim;
    std::optional<std::string> error;
    std::vector<std::string> cells;
    if (format_ == ExportFormat::kJsonl) {
      error = ReadJsonLine(bytes, &claim);
    } else {
      error = ReadCsvRow(bytes, &cells, &claim);
    }
    name_ = RecordName(claim.shard, claim.index);
    if (error) {
      return claim.named ? FailLine(*error) : Fail(absl::StrCat("line ", line, ": ", *error));
    }
    ++records_checked_;

    const bool same_shard = have_previous_ && claim.shard == previous_shard_;
    // A record that skipped manifest entries: either they come next (the
    // lines were reordered) or they are missing.
    if (pending_missing_) {
      if (!(same_shard && claim.index <= previous_index_)) {
        return Fail(absl::StrCat(*pending_missing_,
                                 " is listed in the manifest but missing from the file"));
      }
    }

    const std::optional<Digest> leaf = storage::DigestFromHex(claim.leaf_hex);
    const std::optional<Digest> prev = storage::DigestFromHex(claim.prev_hex);
    const std::optional<Digest> chain = storage::DigestFromHex(claim.chain_hex);
    if (!leaf) return FailLine("leaf_sha256 is not 64 hex digits");
    if (!prev) return FailLine("prev_chain_sha256 is not 64 hex digits");
    if (!chain) return FailLine("chain_sha256 is not 64 hex digits");
    if (storage::Sha256(claim.event_bytes) != *leaf) {
      return FailLine("leaf_sha256 does not match the event bytes");
    }

    arena_.Reset();
    AuditEvent* const event = google::protobuf::Arena::CreateMessage<AuditEvent>(arena_.get());
    if (!event->ParseFromString(claim.event_bytes)) {
      return FailLine("event_bytes are not a predlog.v1.AuditEvent");
    }
    const HexDigest leaf_hex(*leaf), prev_hex(*prev), chain_hex(*chain);
    canonical_.clear();
    if (format_ == ExportFormat::kJsonl) {
      TrailLineFields fields;
      fields.shard = claim.shard;
      fields.index = claim.index;
      fields.event = event;
      fields.leaf_sha256 = leaf_hex.view();
      fields.prev_chain_sha256 = prev_hex.view();
      fields.chain_sha256 = chain_hex.view();
      fields.event_bytes = claim.event_bytes;
      AppendTrailLine(fields, &canonical_);
    } else {
      RowKey key;
      key.shard = claim.shard;
      key.index = claim.index;
      key.leaf = leaf_hex.view();
      key.prev_chain = prev_hex.view();
      key.chain = chain_hex.view();
      key.event_bytes = claim.event_bytes;
      AppendCsvRow(columns_, key, *event, &canonical_);
    }
    if (canonical_ != bytes) {
      return FailLine(
          absl::StrCat(format_ == ExportFormat::kJsonl ? "the line" : "the row",
                       " is not what its event_bytes decode to (first difference at byte ",
                       FirstDifference(canonical_, bytes) + 1, ")"));
    }
    if (format_ == ExportFormat::kCsv && !prediction_seen_ && event->has_prediction_logged()) {
      prediction_seen_ = true;
      if (CsvColumns::For(event->prediction_logged()).names() != columns_.names()) {
        return FailLine(
            "the header's input columns are not the inputs of this, the first prediction");
      }
    }

    if (storage::ChainNext(*prev, *leaf) != *chain) {
      return FailLine("chain_sha256 is not SHA-256(prev_chain_sha256 || leaf_sha256)");
    }

    if (same_shard) {
      if (claim.index <= previous_index_) {
        return FailLine(absl::StrCat("out of log order after ",
                                     RecordName(previous_shard_, previous_index_), " on line ",
                                     previous_line_));
      }
      if (claim.index == previous_index_ + 1 && *prev != previous_chain_) {
        return FailLine(absl::StrCat("prev_chain_sha256 does not continue the chain of ",
                                     RecordName(previous_shard_, previous_index_), " on line ",
                                     previous_line_));
      }
    } else if (finished_shards_.contains(claim.shard)) {
      return FailLine(absl::StrCat("out of log order: shard ", claim.shard, " resumed after ",
                                   previous_shard_));
    }
    if (have_previous_ && !same_shard) finished_shards_.insert(previous_shard_);
    have_previous_ = true;
    previous_shard_ = claim.shard;
    previous_index_ = claim.index;
    previous_chain_ = *chain;
    previous_line_ = line;

    return MatchManifest(claim, *prev, *chain);
  }

  bool End(uint64_t file_bytes, const Digest& file_sha256) {
    if (format_ == ExportFormat::kCsv && !header_seen_) {
      return Fail("line 1: the file has no CSV header");
    }
    if (pending_missing_) {
      return Fail(
          absl::StrCat(*pending_missing_, " is listed in the manifest but missing from the file"));
    }
    if (run_ < runs_.size()) {
      return Fail(absl::StrCat(RecordName(ShardOf(runs_[run_]), expected_),
                               " is listed in the manifest but missing from the file"));
    }
    if (format_ == ExportFormat::kCsv && !prediction_seen_ && !columns_.names().empty()) {
      return Fail("line 1: the header has input columns but the export holds no prediction");
    }
    if (records_checked_ != manifest_.record_count()) {
      return Fail(absl::StrCat("the file has ", records_checked_, " records, the manifest says ",
                               manifest_.record_count()));
    }
    if (file_bytes != manifest_.file_bytes() ||
        storage::ToHex(file_sha256) != manifest_.file_sha256()) {
      return Fail(absl::StrCat("the file (", file_bytes, " bytes, SHA-256 ",
                               storage::ToHex(file_sha256), ") is not the one exported (",
                               manifest_.file_bytes(), " bytes, SHA-256 ", manifest_.file_sha256(),
                               ")"));
    }
    return true;
  }

  ExportVerification result() const {
    ExportVerification v;
    v.records_checked = records_checked_;
    v.ok = failure_.empty();
    v.failure = failure_;
    return v;
  }

 private:
  bool Fail(std::string failure) {
    failure_ = std::move(failure);
    return false;
  }
  bool FailLine(absl::string_view what) {
    return Fail(absl::StrCat("line ", line_, " (", name_, "): ", what));
  }

  const std::string& ShardOf(const Run& run) const {
    return manifest_.shards(static_cast<int>(run.shard)).shard();
  }

  bool Header(absl::string_view bytes, uint64_t line) {
    header_seen_ = true;
    std::vector<std::string> cells;
    if (std::optional<std::string> error = SplitCsv(bytes, &cells)) {
      return Fail(absl::StrCat("line ", line, ": the CSV header does not parse: ", *error));
    }
    const auto bad = [line](absl::string_view why) {
      return absl::StrCat("line ", line, ": not an export header: ", why);
    };
    if (cells.size() < kCsvFixedCount + 2) return Fail(bad("too few columns"));
    for (size_t i = 0; i < kCsvFixedCount; ++i) {
      if (cells[i] != kCsvFixedColumns[i]) {
        return Fail(bad(absl::StrCat("column ", i + 1, " is \"", cells[i], "\", want \"",
                                     kCsvFixedColumns[i], "\"")));
      }
    }
    for (size_t i = kCsvFixedCount; i + 2 < cells.size(); ++i) {
      const absl::string_view cell = cells[i];
      if (cell.substr(0, kInputPrefix.size()) != kInputPrefix ||
          !columns_.Add(std::string(cell.substr(kInputPrefix.size())))) {
        return Fail(
            bad(absl::StrCat("column ", i + 1, " \"", cell, "\" is not a distinct input column")));
      }
    }
    if (cells[cells.size() - 2] != "extra_inputs" || cells.back() != "event_bytes_base64") {
      return Fail(bad("the last columns are not extra_inputs,event_bytes_base64"));
    }
    std::string canonical;
    AppendCsvHeader(columns_, &canonical);
    if (canonical != bytes) {
      return Fail(bad(absl::StrCat("it differs from the canonical header at byte ",
                                   FirstDifference(canonical, bytes) + 1)));
    }
    return true;
  }

  std::optional<std::string> ReadCsvRow(absl::string_view bytes, std::vector<std::string>* cells,
                                        ClaimedRecord* claim) {
    if (std::optional<std::string> error = SplitCsv(bytes, cells)) {
      return absl::StrCat("does not parse as a CSV row: ", *error);
    }
    const size_t want = kCsvFixedCount + columns_.names().size() + 2;
    if (cells->size() >= 2) {
      claim->shard = (*cells)[0];
      claim->named = absl::SimpleAtoi((*cells)[1], &claim->index);
    }
    if (cells->size() != want) {
      return absl::StrCat("has ", cells->size(), " cells, the header has ", want);
    }
    if (!claim->named) return std::string("index is not a number");
    claim->leaf_hex = (*cells)[2];
    claim->prev_hex = (*cells)[3];
    claim->chain_hex = (*cells)[4];
    if (!absl::Base64Unescape(cells->back(), &claim->event_bytes)) {
      return std::string("event_bytes_base64 is not base64");
    }
    return std::nullopt;
  }

  // The record must be the next one the manifest lists.
  bool MatchManifest(const ClaimedRecord& claim, const Digest& prev, const Digest& chain) {
    const auto is_at = [&](size_t r, uint64_t from) {
      return ShardOf(runs_[r]) == claim.shard && claim.index >= std::max(runs_[r].first, from) &&
             claim.index <= runs_[r].last;
    };
    if (run_ >= runs_.size()) return FailLine("is not listed in the manifest");
    const std::string expected = RecordName(ShardOf(runs_[run_]), expected_);
    if (!is_at(run_, expected_) || claim.index != expected_) {
      size_t r = run_;
      while (r < runs_.size() && !is_at(r, r == run_ ? expected_ : 0)) ++r;
      if (r == runs_.size()) {
        return FailLine(
            absl::StrCat("is not listed in the manifest (it lists ", expected, " next)"));
      }
      // Entries were skipped: the next record tells a reordering from a loss.
      pending_missing_ = expected;
      run_ = r;
    } else {
      pending_missing_.reset();
    }
    const Run& run = runs_[run_];
    // CheckManifest made sure the anchors parse.
    if (claim.index == run.first &&
        *storage::DigestFromHex(run.range->prev_chain_sha256()) != prev) {
      return FailLine("prev_chain_sha256 is not the manifest's anchor for its range");
    }
    if (claim.index == run.last && *storage::DigestFromHex(run.range->chain_sha256()) != chain) {
      return FailLine("chain_sha256 is not the manifest's anchor for its range");
    }
    if (claim.index == run.last) {
      ++run_;
      if (run_ < runs_.size()) expected_ = runs_[run_].first;
    } else {
      expected_ = claim.index + 1;
    }
    return true;
  }

  const ExportManifest& manifest_;
  const ExportFormat format_;
  std::vector<Run> runs_;
  size_t run_ = 0;         // the run holding the next expected record
  uint64_t expected_ = 0;  // its index
  std::optional<std::string> pending_missing_;

  uint64_t records_checked_ = 0;
  std::string failure_;
  uint64_t line_ = 0;
  std::string name_;

  bool have_previous_ = false;
  std::string previous_shard_;
  uint64_t previous_index_ = 0;
  Digest previous_chain_{};
  uint64_t previous_line_ = 0;
  absl::flat_hash_set<std::string> finished_shards_;

  bool header_seen_ = false;
  bool prediction_seen_ = false;
  CsvColumns columns_;

  RecordArena arena_;  // holds the record being checked
  std::string canonical_;
};

}  // namespace

absl::StatusOr<ExportVerification> VerifyExport(const std::string& file_path,
                                                const std::string& manifest_path) {
  ASSIGN_OR_RETURN(const std::string manifest_json, ReadWholeFile(manifest_path));
  ExportManifest manifest;
  const auto parsed = google::protobuf::util::JsonStringToMessage(manifest_json, &manifest);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest ", manifest_path,
                     " does not parse as a predlog.v1.ExportManifest: ", parsed.ToString()));
  }
  if (manifest.format_version() != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("manifest ", manifest_path, " has format_version ", manifest.format_version(),
                     "; this build reads version 1"));
  }
  absl::StatusOr<ExportFormat> format = ParseExportFormat(manifest.file_format());
  if (!format.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest ", manifest_path, ": ", format.status().message()));
  }
  std::string path = file_path;
  if (path.empty()) {
    if (manifest.file_name().empty() || manifest.file_name().find('/') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest ", manifest_path, " names no file in its directory (file_name \"",
                       manifest.file_name(), "\")"));
    }
    path = absl::StrCat(DirName(manifest_path), "/", manifest.file_name());
  }

  Verifier verifier(manifest, *format);
  if (!verifier.CheckManifest()) return verifier.result();
  ASSIGN_OR_RETURN(std::unique_ptr<RecordReader> reader,
                   RecordReader::Open(path, *format == ExportFormat::kCsv));
  absl::string_view record;
  while (true) {
    ASSIGN_OR_RETURN(const bool more, reader->Next(&record));
    if (!more) break;
    if (!verifier.Record(record, reader->line())) return verifier.result();
  }
  verifier.End(reader->bytes(), reader->sha256());
  return verifier.result();
}

}  // namespace predlog::services
