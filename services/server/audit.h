// The logic behind predlog.v1.Audit, without gRPC: exports of the shards'
// records with what an auditor needs to verify them offline (positions, leaf
// hashes, chain values before and after), per-shard status, and the stored
// chain values an export's manifest anchors are checked against.
//
// Thread-safe. Borrows the ingest (its shards), which must outlive it.
#ifndef PREDLOG_SERVICES_SERVER_AUDIT_H_
#define PREDLOG_SERVICES_SERVER_AUDIT_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "predlog/v1/audit.pb.h"
#include "services/kafka/ingest.h"

namespace predlog::services {

// Reads one export batch at a time, so a server stream pulls records as the
// client takes them. Not thread-safe; one per call.
//
// A record the shard cannot read (DATA_LOSS: a block whose checksum fails; a
// record missing from the log, NOT_FOUND inside it, that no RecordsLost
// record explains; in a log read whole, bytes that do not parse) does not
// end the export: it goes into an unreadable range (ExportBatch.unreadable,
// merged with the unreadable records next to it, with the shard's error for
// the first) and the export goes on with the next record. The record after
// an unreadable one has an empty prev_chain_sha256: the chain value before
// it is the unreadable record's. A subject or model export whose shard index
// cannot be read (DATA_LOSS) reads that shard's log whole instead, matching
// each record against the filter as the index would. Any other error ends
// the export with that error.
class ExportCursor {
 public:
  // Fills `batch` with up to `max_records` records and, past the first, up
  // to about `max_bytes` of event bytes (one event may be up to the event size
  // limit), and with the unreadable ranges among them; false once the export
  // is complete (then `batch` is empty). Errors: what the shard answered,
  // other than DATA_LOSS for a record.
  absl::StatusOr<bool> Next(size_t max_records, size_t max_bytes, predlog::v1::ExportBatch* batch);

 private:
  friend class Audit;
  struct ShardPlan {
    const storage::ShardStore* shard = nullptr;
    // The shard's signed checkpoint when predlogd signs them (empty
    // otherwise): end_index is then at most its size, and every run of
    // consecutive exported records gets a range proof against it.
    std::string checkpoint;
    uint64_t tree_size = 0;
    // read_log (all; subject/model once their index could not be read):
    // the index range [next_index, end_index) of the log is read in order;
    // for every filter, end_index is the shard's head when the export
    // started, so the export (and its manifest) is of a fixed set of records.
    bool read_log = false;
    uint64_t next_index = 0;
    uint64_t end_index = 0;
    // all: where the run began ([begin_index, end_index) is the run of
    // records appended in [from, to) that the export holds, whose edges it
    // proves with a checkpoint).
    uint64_t begin_index = 0;
    // read_log: the first index not yet accounted for (exported, skipped by
    // the filter, unreadable, or in a loss the log records); a record read
    // above it leaves a hole, unreadable unless that record is the
    // RecordsLost naming it.
    uint64_t expected = 0;
    // subject/model: the matching indexes in log order, found on first use
    // (the indexes are in served order; an export is in log order).
    bool scanned = false;
    std::vector<uint64_t> indexes;
    size_t next_match = 0;
  };
  // The batch being filled by Next.
  struct Out {
    predlog::v1::ExportBatch* batch;
    size_t max_records;
    size_t max_bytes;
    size_t bytes = 0;
    bool full() const {
      return static_cast<size_t>(batch->records_size()) >= max_records || bytes >= max_bytes;
    }
  };
  // An unreadable range still growing: it is sent once a record, another
  // range or the end of its shard follows it.
  struct OpenUnreadable {
    uint64_t first = 0;
    uint64_t last = 0;
    std::string reason;
  };

  ExportCursor(predlog::v1::ExportTrailRequest request, std::vector<ShardPlan> plan)
      : request_(std::move(request)), plan_(std::move(plan)) {}
  // Collects the indexes of `plan`'s shard that match the filter.
  absl::Status Scan(ShardPlan* plan) const;
  // read_log: reads the next records of `plan`'s log, up to the batch's room.
  absl::Status ReadLog(ShardPlan* plan, Out* out);
  // read_log: a record read in log order; exports it when it matches.
  absl::Status Offer(ShardPlan* plan, storage::StoredRecord& record, Out* out);
  // Sends `record` (its chain value before it looked up first).
  absl::Status Add(const ShardPlan& plan, storage::StoredRecord& record, Out* out);
  // Ends the current run of consecutive exported records: sends its range
  // proof when the shard has a checkpoint. A proof the shard cannot read
  // (a damaged tree node) is left out and logged: `predlog verify --key`
  // then names the range as unproven.
  void CloseRun(const ShardPlan& plan, Out* out);
  // The chain value before `record`: nullopt when it is the chain value of
  // an unreadable record (which is then marked unreadable if it was not).
  absl::StatusOr<std::optional<storage::Digest>> ChainBefore(const ShardPlan& plan,
                                                             const storage::StoredRecord& record,
                                                             Out* out);
  // The edges of `plan`'s run ([begin_index, end_index)) in an export of
  // everything with from or to, when it has a checkpoint: the record before
  // it and the one at its end, as EdgeRecords with inclusion proofs (or the
  // reason one could not be read).
  predlog::v1::ShardEdges Edges(const ShardPlan& plan);
  // Records [first, last] of the current shard could not be read.
  void MarkUnreadable(uint64_t first, uint64_t last, absl::string_view reason, Out* out);
  // Sends the open unreadable range, if any.
  void CloseUnreadable(Out* out);
  // Whether a record read from the log whole belongs in the export (a
  // subject or model export: as its index would say); nullopt when its event
  // bytes do not parse, so that cannot be told.
  std::optional<bool> Matches(const storage::StoredRecord& record) const;

  const predlog::v1::ExportTrailRequest request_;
  std::vector<ShardPlan> plan_;
  size_t current_ = 0;
  // The last record read of the current shard (its chain is the next
  // record's prev_chain when they are consecutive).
  std::optional<std::pair<uint64_t, storage::Digest>> last_;
  // The current shard's unreadable range not sent yet, and the last index
  // of the shard marked unreadable.
  std::optional<OpenUnreadable> open_unreadable_;
  std::optional<uint64_t> last_unreadable_;
  // The current shard's run of consecutive exported records, [first, last].
  std::optional<std::pair<uint64_t, uint64_t>> run_;
  // The tree nodes the current shard's range proofs read, kept for its
  // next runs (a sparse export's nearby runs share most of them).
  storage::MerkleNodeCache proof_nodes_;
};

class Audit {
 public:
  // With an ingest that signs checkpoints (Ingest::signs_checkpoints), every
  // export signs one per shard when it starts and proves its records
  // against it (ExportBatch.checkpoints, range_proofs).
  explicit Audit(const Ingest* ingest) : ingest_(ingest) {}

  // Positions one GetChainValues call may ask for.
  static constexpr int kMaxChainPositions = 1000;

  // INVALID_ARGUMENT names a missing or bad filter field.
  absl::StatusOr<std::unique_ptr<ExportCursor>> StartExport(
      const predlog::v1::ExportTrailRequest& request) const;

  // The stored leaf and chain value at each position, in request order.
  // INVALID_ARGUMENT for no positions or more than kMaxChainPositions;
  // NOT_FOUND naming an unknown shard, or an index at or past the end of its
  // log (or in a loss it recorded); DATA_LOSS naming a record that cannot be
  // read, or a shard that lost acknowledged records; FAILED_PRECONDITION
  // naming a shard another ingest instance folds. The first failing
  // position, in request order, decides.
  absl::StatusOr<predlog::v1::GetChainValuesResponse> GetChainValues(
      const predlog::v1::GetChainValuesRequest& request) const;

  absl::StatusOr<predlog::v1::StatusResponse> Status() const;

  // A signed checkpoint of each shard asked for (all when none is), in
  // request order. FAILED_PRECONDITION without a signing key, or naming a
  // shard another ingest instance folds; NOT_FOUND naming an unknown shard;
  // DATA_LOSS for a shard that lost acknowledged records.
  absl::StatusOr<predlog::v1::SignCheckpointsResponse> SignCheckpoints(
      const predlog::v1::SignCheckpointsRequest& request) const;

  // ShardStore::ConsistencyProof of one shard. NOT_FOUND naming an unknown
  // shard; INVALID_ARGUMENT for old_size 0 or above new_size; OUT_OF_RANGE
  // for new_size beyond the log; FAILED_PRECONDITION and DATA_LOSS as above.
  absl::StatusOr<predlog::v1::GetConsistencyProofResponse> GetConsistencyProof(
      const predlog::v1::GetConsistencyProofRequest& request) const;

 private:
  // A shard by name, as Ingest numbers them (partitions, the registry, the
  // access trail), checked readable here (folded here, nothing lost).
  // NOT_FOUND naming an unknown shard; CheckFoldedHere's errors naming `what`.
  absl::StatusOr<int> ShardNumber(absl::string_view name, absl::string_view what) const;
  const storage::ShardStore& ShardAt(int number) const;
  // The plan of shard `number`'s export: with a signed checkpoint when the
  // ingest signs them, end_index its size; else end_index its head now.
  absl::StatusOr<ExportCursor::ShardPlan> PlanShard(int number) const;

  const Ingest* const ingest_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_AUDIT_H_
