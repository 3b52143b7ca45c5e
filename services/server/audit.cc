#include "services/server/audit.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/kafka/kafka_config.h"
#include "services/server/prediction_log.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services {
namespace {

// Records read from RocksDB at a time while exporting a range: small enough
// that a batch's byte bound is not overshot by much.
constexpr uint64_t kReadChunk = 128;

storage::TimeRange RangeOf(const predlog::v1::ExportTrailRequest& request) {
  storage::TimeRange range;
  if (request.has_from()) range.from = storage::TimeFromProto(request.from());
  if (request.has_to()) range.to = storage::TimeFromProto(request.to());
  return range;
}

// storage::ToHex into `out` in place: a batch's records and their strings
// are reused from the previous batch, so this allocates nothing (ToHex's
// temporaries were a visible share of an export's server time).
void AssignHex(const storage::Digest& digest, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->resize(2 * digest.size());
  char* const text = out->data();
  for (size_t i = 0; i < digest.size(); ++i) {
    text[2 * i] = kHex[digest[i] >> 4];
    text[2 * i + 1] = kHex[digest[i] & 0xf];
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExportCursor>> Audit::StartExport(
    const predlog::v1::ExportTrailRequest& request) const {
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards to export");
  const storage::TimeRange range = RangeOf(request);
  if (range.from > range.to) return absl::InvalidArgumentError("from is after to");
  std::vector<ExportCursor::ShardPlan> plan;
  switch (request.filter_case()) {
    case predlog::v1::ExportTrailRequest::kSubjectId: {
      if (request.subject_id().empty()) return absl::InvalidArgumentError("subject_id is empty");
      ASSIGN_OR_RETURN(
          std::vector<int> partitions,
          ingest_->Shards().PartitionsOf(request.subject_id(),
                                         absl::StrCat("exporting subject ", request.subject_id())));
      for (int p : partitions) {
        plan.push_back({&ingest_->shard(p)});
        plan.back().end_index = plan.back().shard->Head().next_index;
      }
      break;
    }
    case predlog::v1::ExportTrailRequest::kModel:
      if (request.model().name().empty() || request.model().version().empty()) {
        return absl::InvalidArgumentError("model.name and model.version are both required");
      }
      RETURN_IF_ERROR(ingest_->CheckAllFoldedHere("exporting a model version"));
      for (int p = 0; p < ingest_->partitions(); ++p) {
        plan.push_back({&ingest_->shard(p)});
        plan.back().end_index = plan.back().shard->Head().next_index;
      }
      break;
    case predlog::v1::ExportTrailRequest::kAll: {
      if (!request.all()) return absl::InvalidArgumentError("all is false: set a filter");
      RETURN_IF_ERROR(ingest_->CheckAllFoldedHere("exporting everything"));
      std::vector<const storage::ShardStore*> shards;
      for (int p = 0; p < ingest_->partitions(); ++p) shards.push_back(&ingest_->shard(p));
      shards.push_back(&ingest_->registry());
      for (const storage::ShardStore* shard : shards) {
        // The export is of the log as it is now: records folded later are
        // not in it, so its manifest describes a fixed set.
        ExportCursor::ShardPlan p{shard};
        p.end_index = shard->Head().next_index;
        if (range.from != absl::InfinitePast()) {
          ASSIGN_OR_RETURN(p.next_index, shard->CutAtTime(range.from));
        }
        if (range.to != absl::InfiniteFuture()) {
          ASSIGN_OR_RETURN(uint64_t to, shard->CutAtTime(range.to));
          p.end_index = std::min(p.end_index, to);
        }
        plan.push_back(std::move(p));
      }
      break;
    }
    case predlog::v1::ExportTrailRequest::FILTER_NOT_SET:
      return absl::InvalidArgumentError("filter is missing: set subject_id, model or all");
  }
  return std::unique_ptr<ExportCursor>(new ExportCursor(request, std::move(plan)));
}

absl::Status ExportCursor::Scan(ShardPlan* plan) const {
  constexpr size_t kPage = 1000;
  const storage::TimeRange range = RangeOf(request_);
  const uint64_t end = plan->end_index;
  std::string cursor;
  do {
    ASSIGN_OR_RETURN(storage::ScanPage page,
                     request_.has_model()
                         ? plan->shard->ScanModel(request_.model().name(),
                                                  request_.model().version(), range, cursor, kPage)
                         : plan->shard->ScanSubject(request_.subject_id(), range, cursor, kPage));
    for (const storage::StoredRecord& record : page.records) {
      if (record.index < end) plan->indexes.push_back(record.index);
    }
    cursor = std::move(page.next_cursor);
  } while (!cursor.empty());
  std::sort(plan->indexes.begin(), plan->indexes.end());
  return absl::OkStatus();
}

absl::StatusOr<storage::Digest> ExportCursor::ChainBefore(const ShardPlan& plan, uint64_t index) {
  if (last_.has_value() && last_->first + 1 == index) return last_->second;
  if (index == 0) return storage::kChainGenesis;
  ASSIGN_OR_RETURN(storage::StoredRecord previous, plan.shard->Get(index - 1));
  return previous.chain;
}

absl::StatusOr<bool> ExportCursor::Next(size_t max_records, size_t max_bytes,
                                        predlog::v1::ExportBatch* batch) {
  batch->Clear();
  size_t bytes = 0;
  auto add = [&](const ShardPlan& plan, storage::StoredRecord& record) -> absl::Status {
    ASSIGN_OR_RETURN(storage::Digest prev_chain, ChainBefore(plan, record.index));
    predlog::v1::ExportedRecord* out = batch->add_records();
    out->set_shard(plan.shard->name());
    out->set_index(record.index);
    out->set_event_bytes(std::move(record.payload));
    AssignHex(record.leaf, out->mutable_leaf_sha256());
    AssignHex(prev_chain, out->mutable_prev_chain_sha256());
    AssignHex(record.chain, out->mutable_chain_sha256());
    bytes += out->event_bytes().size();
    last_ = std::make_pair(record.index, record.chain);
    return absl::OkStatus();
  };
  auto full = [&] {
    return static_cast<size_t>(batch->records_size()) >= max_records || bytes >= max_bytes;
  };
  while (current_ < plan_.size() && !full()) {
    ShardPlan& plan = plan_[current_];
    const size_t room = max_records - static_cast<size_t>(batch->records_size());
    bool shard_done = false;
    if (request_.has_all()) {
      if (plan.next_index < plan.end_index) {
        ASSIGN_OR_RETURN(
            std::vector<storage::StoredRecord> records,
            plan.shard->ReadRange(
                plan.next_index,
                std::min<uint64_t>({room, plan.end_index - plan.next_index, kReadChunk})));
        if (records.empty() || records.front().index != plan.next_index) {
          return absl::DataLossError(absl::StrCat(plan.shard->name(), ": record ", plan.next_index,
                                                  " is missing from the log"));
        }
        for (storage::StoredRecord& record : records) {
          RETURN_IF_ERROR(add(plan, record));
          plan.next_index = record.index + 1;
          if (full()) break;
        }
      }
      shard_done = plan.next_index >= plan.end_index;
    } else {
      if (!plan.scanned) {
        RETURN_IF_ERROR(Scan(&plan));
        plan.scanned = true;
      }
      for (size_t n = 0; n < room && plan.next_match < plan.indexes.size() && !full(); ++n) {
        ASSIGN_OR_RETURN(storage::StoredRecord record,
                         plan.shard->Get(plan.indexes[plan.next_match++]));
        RETURN_IF_ERROR(add(plan, record));
      }
      shard_done = plan.next_match >= plan.indexes.size();
    }
    if (shard_done) {
      ++current_;
      last_.reset();
    }
  }
  return batch->records_size() > 0;
}

absl::StatusOr<predlog::v1::StatusResponse> Audit::Status() const {
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards");
  predlog::v1::StatusResponse response;
  const std::vector<PartitionStatus> partitions = ingest_->Status();
  for (size_t i = 0; i < partitions.size(); ++i) {
    const PartitionStatus& p = partitions[i];
    const storage::ShardStore& shard = i < static_cast<size_t>(ingest_->partitions())
                                           ? ingest_->shard(static_cast<int>(i))
                                           : ingest_->registry();
    predlog::v1::ShardStatus* out = response.add_shards();
    out->set_shard(p.shard);
    out->set_records(p.head.next_index);
    if (p.head.last_source) {
      out->mutable_last_source()->set_incarnation(p.head.last_source->incarnation);
      out->mutable_last_source()->set_offset(p.head.last_source->offset);
      out->mutable_last_source()->set_partition(
          i < static_cast<size_t>(ingest_->partitions()) ? static_cast<int32_t>(i) : 0);
    }
    out->set_consumer_lag(p.consumer_lag());
    out->set_folded_elsewhere(!p.owned);
    out->set_lost_records(p.lost);
    out->set_rejected(p.head.counters.rejected);
    out->set_conflicts(p.head.counters.conflicts);
    out->set_duplicates(p.head.counters.duplicates);
    out->set_gaps(p.head.counters.gaps);
    out->set_misrouted(p.head.counters.misrouted);
    out->set_read_corruptions(p.read_corruptions);
    out->set_source_resets(p.head.counters.source_resets);
    out->set_chain_head_sha256(storage::ToHex(p.head.chain_head));
    ASSIGN_OR_RETURN(std::vector<storage::SnapshotInfo> snapshots, shard.ListSnapshots());
    for (const storage::SnapshotInfo& s : snapshots) {
      predlog::v1::ShardStatus::Snapshot* snapshot = out->add_snapshots();
      snapshot->set_index(s.index);
      storage::TimeToProto(s.created_at, snapshot->mutable_created_at());
    }
  }
  return response;
}

}  // namespace predlog::services
