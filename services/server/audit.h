// The logic behind predlog.v1.Audit, without gRPC: exports of the shards'
// records with what an auditor needs to verify them offline (positions, leaf
// hashes, chain values before and after), and per-shard status.
//
// Thread-safe. Borrows the ingest (its shards), which must outlive it.
#ifndef PREDLOG_SERVICES_SERVER_AUDIT_H_
#define PREDLOG_SERVICES_SERVER_AUDIT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "predlog/v1/audit.pb.h"
#include "services/kafka/ingest.h"

namespace predlog::services {

// Reads one export batch at a time, so a server stream pulls records as the
// client takes them. Not thread-safe; one per call.
class ExportCursor {
 public:
  // Fills `batch` with up to `max_records` records and, past the first, up
  // to about `max_bytes` of event bytes (one event may be up to the event size
  // limit); false once the export is complete (then `batch` is empty).
  absl::StatusOr<bool> Next(size_t max_records, size_t max_bytes, predlog::v1::ExportBatch* batch);

 private:
  friend class Audit;
  struct ShardPlan {
    const storage::ShardStore* shard = nullptr;
    // all: the index range [next_index, end_index) of the log; for every
    // filter, end_index is the shard's head when the export started, so the
    // export (and its manifest) is of a fixed set of records.
    uint64_t next_index = 0;
    uint64_t end_index = 0;
    // subject/model: the matching indexes in log order, found on first use
    // (the indexes are in served order; an export is in log order).
    bool scanned = false;
    std::vector<uint64_t> indexes;
    size_t next_match = 0;
  };
  ExportCursor(predlog::v1::ExportTrailRequest request, std::vector<ShardPlan> plan)
      : request_(std::move(request)), plan_(std::move(plan)) {}
  // Collects the indexes of `plan`'s shard that match the filter.
  absl::Status Scan(ShardPlan* plan) const;
  // The chain value before `index` in `shard`.
  absl::StatusOr<storage::Digest> ChainBefore(const ShardPlan& plan, uint64_t index);

  const predlog::v1::ExportTrailRequest request_;
  std::vector<ShardPlan> plan_;
  size_t current_ = 0;
  // The last exported record of the current shard (its chain is the next
  // record's prev_chain when they are consecutive).
  std::optional<std::pair<uint64_t, storage::Digest>> last_;
};

class Audit {
 public:
  explicit Audit(const Ingest* ingest) : ingest_(ingest) {}

  // INVALID_ARGUMENT names a missing or bad filter field.
  absl::StatusOr<std::unique_ptr<ExportCursor>> StartExport(
      const predlog::v1::ExportTrailRequest& request) const;

  absl::StatusOr<predlog::v1::StatusResponse> Status() const;

 private:
  const Ingest* const ingest_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_AUDIT_H_
