// Verifiable exports of shard records for auditors: TrailWriter writes what
// the server's Audit.ExportTrail streams to a JSON-lines or CSV file plus a
// manifest; VerifyExport checks such a file offline, without a server.
//
// What verification proves: every record's event bytes hash to its leaf, its
// human-readable part is exactly what those bytes decode to, its chain value
// links its leaf to the previous chain value, consecutive records of a shard
// continue one another's chain, the file holds exactly the records (and
// the chain anchors) the manifest lists, byte for byte, and every record
// matches the manifest's filter (a subject or model export's predictions in
// its served_at range, at microseconds as the indexes key them; an export of
// everything has no gap but recorded losses). What it cannot prove
// alone: that the manifest itself is the server's (compare its anchors with
// the shard's chain head, Audit.GetStatus, until manifests are signed).
#ifndef PREDLOG_SERVICES_EXPORT_TRAIL_EXPORT_H_
#define PREDLOG_SERVICES_EXPORT_TRAIL_EXPORT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "predlog/v1/audit.pb.h"

namespace predlog::services {

enum class ExportFormat { kJsonl, kCsv };

// "jsonl" or "csv"; INVALID_ARGUMENT naming anything else.
absl::StatusOr<ExportFormat> ParseExportFormat(absl::string_view name);
absl::string_view ExportFormatName(ExportFormat format);

// Writes exported records, in the order the server streams them (shard by
// shard, each in log order), to one file, building the manifest as it goes.
// Nothing of a record is written unless Add accepts it whole.
//
// Externally synchronized, but for records(); AddBatch runs worker threads
// of its own, joined by Finish or the destructor.
class TrailWriter {
 public:
  // Creates (or truncates) `path`. Errors name the path: NOT_FOUND for a
  // missing directory, PERMISSION_DENIED, INTERNAL for other I/O errors.
  static absl::StatusOr<std::unique_ptr<TrailWriter>> Create(const std::string& path,
                                                             ExportFormat format);
  ~TrailWriter();
  TrailWriter(const TrailWriter&) = delete;
  TrailWriter& operator=(const TrailWriter&) = delete;

  // INVALID_ARGUMENT, naming the record, when its leaf or chain do not match
  // its bytes, its bytes are not an AuditEvent, or it is out of log order (an
  // index not above the shard's previous one, a chain that does not continue
  // the previous record's, a shard resumed after another began): the server
  // must never send such a record. FAILED_PRECONDITION after Finish or after a
  // write failed; INTERNAL for I/O errors.
  absl::Status Add(const predlog::v1::ExportedRecord& record);

  // Add for every record of `batch`, in order, but for JSON lines checked
  // and rendered by worker threads while the caller fetches the next batch:
  // an export is CPU-bound on rendering (bench/RESULTS.md). The file is the
  // same as Add's, and so are the checks and the error of a bad record; but
  // that error comes back from a later AddBatch or from Finish, after the
  // records before it were accepted, and every batch after it is dropped.
  // Do not mix with Add on one writer (FAILED_PRECONDITION from Add).
  absl::Status AddBatch(predlog::v1::ExportBatch batch);

  // Records accepted so far. Thread-safe (for a progress display).
  uint64_t records() const;

  // Flushes and fsyncs the file, fills the manifest (file name, format,
  // SHA-256 and size, record_count, per-shard ranges with chain anchors; the
  // caller's `manifest` carries filter, created_at, exported_by and server,
  // and whatever else it holds is replaced) and writes it as pretty JSON to
  // `manifest_path` (through a temporary file, fsynced, then renamed).
  // Returns the manifest. Call once; FAILED_PRECONDITION after that.
  absl::StatusOr<predlog::v1::ExportManifest> Finish(predlog::v1::ExportManifest manifest,
                                                     const std::string& manifest_path);

 private:
  class Impl;
  explicit TrailWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct ExportVerification {
  uint64_t records_checked = 0;
  bool ok = false;
  // When !ok: the first failure, naming the record, e.g.
  // "line 12 (predlog.events-1#57): leaf_sha256 does not match the event bytes" or
  // "predlog.events-1#58 is listed in the manifest but missing from the file" or
  // "line 9 (predlog.events-0#3): out of log order after predlog.events-0#5 on line 8".
  std::string failure;
};

// Offline check of an export: reads `manifest_path` and the file it names
// (resolved relative to the manifest's directory when `file_path` is empty,
// else `file_path`). Error statuses only for inputs it cannot use: NOT_FOUND /
// PERMISSION_DENIED / INTERNAL for unreadable files, INVALID_ARGUMENT for a
// manifest that does not parse or names an unknown format,
// FAILED_PRECONDITION for a manifest format_version other than 1. A bad export
// is ok=false with `failure`.
absl::StatusOr<ExportVerification> VerifyExport(const std::string& file_path,
                                                const std::string& manifest_path);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_EXPORT_TRAIL_EXPORT_H_
