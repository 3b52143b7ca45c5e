#include "services/server/audit.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/export/trail_export.h"
#include "services/kafka/kafka_config.h"
#include "services/server/prediction_log.h"
#include "storage/logging.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services {
namespace {

// Records read from RocksDB at a time while exporting a range: small enough
// that a batch's byte bound is not overshot by much.
constexpr uint64_t kReadChunk = 128;

// An export of everything or of the access trail: whole logs (or the run of
// each appended in [from, to)), every record of them, none picked by content.
bool ReadsWholeLog(const predlog::v1::ExportTrailRequest& request) {
  return request.has_all() || request.has_access_trail();
}

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
        ASSIGN_OR_RETURN(ExportCursor::ShardPlan shard_plan, PlanShard(p));
        plan.push_back(std::move(shard_plan));
      }
      break;
    }
    case predlog::v1::ExportTrailRequest::kModel:
      if (request.model().name().empty() || request.model().version().empty()) {
        return absl::InvalidArgumentError("model.name and model.version are both required");
      }
      RETURN_IF_ERROR(ingest_->CheckAllFoldedHere("exporting a model version"));
      for (int p = 0; p < ingest_->partitions(); ++p) {
        ASSIGN_OR_RETURN(ExportCursor::ShardPlan shard_plan, PlanShard(p));
        plan.push_back(std::move(shard_plan));
      }
      break;
    case predlog::v1::ExportTrailRequest::kPredictions: {
      const predlog::v1::PredictionSet& set = request.predictions();
      if (set.models().empty() && set.data_sources().empty()) {
        return absl::InvalidArgumentError(
            "predictions names no model and no dataset: give at least one");
      }
      for (int i = 0; i < set.models_size(); ++i) {
        if (set.models(i).name().empty() || set.models(i).version().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("predictions.models[", i, "] needs a name and a version"));
        }
      }
      for (int i = 0; i < set.data_sources_size(); ++i) {
        if (set.data_sources(i).name().empty() || set.data_sources(i).version().empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("predictions.data_sources[", i, "] needs a name and a version"));
        }
      }
      RETURN_IF_ERROR(ingest_->CheckAllFoldedHere("exporting a set of predictions"));
      for (int p = 0; p < ingest_->partitions(); ++p) {
        ASSIGN_OR_RETURN(ExportCursor::ShardPlan shard_plan, PlanShard(p));
        plan.push_back(std::move(shard_plan));
      }
      break;
    }
    case predlog::v1::ExportTrailRequest::kAll:
    case predlog::v1::ExportTrailRequest::kAccessTrail: {
      const bool all = request.has_all();
      if (!(all ? request.all() : request.access_trail())) {
        return absl::InvalidArgumentError(
            absl::StrCat(all ? "all" : "access_trail", " is false: set a filter"));
      }
      if (all) RETURN_IF_ERROR(ingest_->CheckAllFoldedHere("exporting everything"));
      // Every partition's shard, then the registry's; or the access trail's.
      const int first = all ? 0 : ingest_->access_shard();
      const int last = all ? ingest_->registry_shard() : ingest_->access_shard();
      for (int number = first; number <= last; ++number) {
        ASSIGN_OR_RETURN(ExportCursor::ShardPlan p, PlanShard(number));
        const storage::ShardStore* shard = p.shard;
        p.read_log = true;
        if (range.from != absl::InfinitePast()) {
          ASSIGN_OR_RETURN(p.next_index, shard->CutAtTime(range.from));
        }
        if (range.to != absl::InfiniteFuture()) {
          ASSIGN_OR_RETURN(uint64_t to, shard->CutAtTime(range.to));
          p.end_index = std::min(p.end_index, to);
        }
        // Records appended after the checkpoint are not in its tree: a run
        // that would begin beyond it is empty, at its end.
        p.next_index = std::min(p.next_index, p.end_index);
        p.begin_index = p.next_index;
        p.expected = p.next_index;
        plan.push_back(std::move(p));
      }
      break;
    }
    case predlog::v1::ExportTrailRequest::FILTER_NOT_SET:
      return absl::InvalidArgumentError(
          "filter is missing: set subject_id, model, predictions, all or access_trail");
  }
  return std::unique_ptr<ExportCursor>(new ExportCursor(request, std::move(plan)));
}

const storage::ShardStore& Audit::ShardAt(int number) const { return ingest_->shard_at(number); }

absl::StatusOr<ExportCursor::ShardPlan> Audit::PlanShard(int number) const {
  ExportCursor::ShardPlan plan;
  plan.shard = &ShardAt(number);
  // The export is of the log as it is now: records folded later are not in
  // it, so its manifest describes a fixed set; with a checkpoint, exactly
  // the records its tree holds.
  plan.end_index = plan.shard->Head().next_index;
  if (!ingest_->signs_checkpoints()) return plan;
  // An export is a read: when no checkpoint can be signed (a full disk
  // refuses its synced write) it still goes on, without proofs, and
  // `predlog verify --key` says the export carries no checkpoint.
  absl::StatusOr<std::string> note = ingest_->SignCheckpoint(number);
  absl::StatusOr<std::string> text =
      note.ok() ? storage::UnverifiedNoteText(*note) : absl::StatusOr<std::string>(note.status());
  absl::StatusOr<storage::Checkpoint> checkpoint =
      text.ok() ? storage::ParseCheckpoint(*text)
                : absl::StatusOr<storage::Checkpoint>(text.status());
  if (!checkpoint.ok()) {
    PREDLOG_LOG(WARNING) << "export: " << plan.shard->name()
                         << " is exported without a checkpoint: " << checkpoint.status();
    return plan;
  }
  plan.checkpoint = *std::move(note);
  plan.tree_size = checkpoint->size;
  plan.end_index = checkpoint->size;
  return plan;
}

absl::StatusOr<int> Audit::ShardNumber(absl::string_view name, absl::string_view what) const {
  const int number = ingest_->ShardNumberOf(name);
  if (number < 0) return absl::NotFoundError(absl::StrCat("no shard named \"", name, "\""));
  // The registry and the access trail are folded whole by every instance.
  if (number < ingest_->partitions()) RETURN_IF_ERROR(ingest_->CheckFoldedHere({number}, what));
  return number;
}

absl::StatusOr<predlog::v1::SignCheckpointsResponse> Audit::SignCheckpoints(
    const predlog::v1::SignCheckpointsRequest& request) const {
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards");
  if (!ingest_->signs_checkpoints()) {
    return absl::FailedPreconditionError(
        "this predlogd signs no checkpoints: it was started without a signing key");
  }
  std::vector<int> numbers;
  if (request.shards().empty()) {
    RETURN_IF_ERROR(ingest_->CheckAllFoldedHere("signing checkpoints"));
    for (int number = 0; number <= ingest_->access_shard(); ++number) numbers.push_back(number);
  }
  for (const std::string& name : request.shards()) {
    ASSIGN_OR_RETURN(int number, ShardNumber(name, absl::StrCat("signing a checkpoint of ", name)));
    numbers.push_back(number);
  }
  predlog::v1::SignCheckpointsResponse response;
  for (int number : numbers) {
    predlog::v1::ShardCheckpoint* checkpoint = response.add_checkpoints();
    checkpoint->set_shard(ShardAt(number).name());
    ASSIGN_OR_RETURN(*checkpoint->mutable_note(), ingest_->SignCheckpoint(number));
  }
  return response;
}

absl::StatusOr<predlog::v1::GetConsistencyProofResponse> Audit::GetConsistencyProof(
    const predlog::v1::GetConsistencyProofRequest& request) const {
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards");
  ASSIGN_OR_RETURN(
      int number,
      ShardNumber(request.shard(), absl::StrCat("proving ", request.shard(), " consistent")));
  ASSIGN_OR_RETURN(std::vector<storage::Digest> proof,
                   ShardAt(number).ConsistencyProof(request.old_size(), request.new_size()));
  predlog::v1::GetConsistencyProofResponse response;
  for (const storage::Digest& hash : proof) response.add_proof_sha256(storage::ToHex(hash));
  return response;
}

absl::Status ExportCursor::Scan(ShardPlan* plan) const {
  constexpr size_t kPage = 1000;
  const storage::TimeRange range = RangeOf(request_);
  const uint64_t end = plan->end_index;
  // One index scan: a subject's, a model version's or a data source's.
  const auto scan =
      [&](const std::function<absl::StatusOr<storage::ScanPage>(absl::string_view cursor)>&
              next_page) -> absl::Status {
    std::string cursor;
    do {
      ASSIGN_OR_RETURN(storage::ScanPage page, next_page(cursor));
      for (const storage::StoredRecord& record : page.records) {
        if (record.index < end) plan->indexes.push_back(record.index);
      }
      cursor = std::move(page.next_cursor);
    } while (!cursor.empty());
    return absl::OkStatus();
  };
  const storage::ShardStore& shard = *plan->shard;
  if (request_.has_predictions()) {
    for (const predlog::v1::ModelRef& model : request_.predictions().models()) {
      RETURN_IF_ERROR(scan([&](absl::string_view cursor) {
        return shard.ScanModel(model.name(), model.version(), range, cursor, kPage);
      }));
    }
    for (const predlog::v1::DatasetRef& data : request_.predictions().data_sources()) {
      RETURN_IF_ERROR(scan([&](absl::string_view cursor) {
        return shard.ScanDataSource(data.name(), data.version(), range, cursor, kPage);
      }));
    }
  } else if (request_.has_model()) {
    RETURN_IF_ERROR(scan([&](absl::string_view cursor) {
      return shard.ScanModel(request_.model().name(), request_.model().version(), range, cursor,
                             kPage);
    }));
  } else {
    RETURN_IF_ERROR(scan([&](absl::string_view cursor) {
      return shard.ScanSubject(request_.subject_id(), range, cursor, kPage);
    }));
  }
  // In log order, each once (a prediction may be in several of a set's scans).
  std::sort(plan->indexes.begin(), plan->indexes.end());
  plan->indexes.erase(std::unique(plan->indexes.begin(), plan->indexes.end()), plan->indexes.end());
  return absl::OkStatus();
}

std::optional<bool> ExportCursor::Matches(const storage::StoredRecord& record) const {
  if (ReadsWholeLog(request_)) return true;
  absl::StatusOr<predlog::v1::AuditEvent> event = record.Event();
  if (!event.ok()) return std::nullopt;
  if (!event->has_prediction_logged()) return false;
  const predlog::v1::PredictionLogged& p = event->prediction_logged();
  if (request_.has_predictions()) {
    if (!InPredictionSet(request_.predictions(), p)) return false;
  } else if (request_.has_model()) {
    if (p.model().name() != request_.model().name() ||
        p.model().version() != request_.model().version()) {
      return false;
    }
  } else if (p.subject_id() != request_.subject_id()) {
    return false;
  }
  // As the indexes key served_at: whole microseconds, [from, to).
  const int64_t served = absl::ToUnixMicros(storage::TimeFromProto(p.served_at()));
  const storage::TimeRange range = RangeOf(request_);
  return (range.from == absl::InfinitePast() || served >= absl::ToUnixMicros(range.from)) &&
         (range.to == absl::InfiniteFuture() || served < absl::ToUnixMicros(range.to));
}

predlog::v1::ShardEdges ExportCursor::Edges(const ShardPlan& plan) {
  predlog::v1::ShardEdges edges;
  edges.set_shard(plan.shard->name());
  const auto edge = [&](uint64_t index, predlog::v1::EdgeRecord* out) {
    out->set_index(index);
    absl::StatusOr<storage::StoredRecord> record = plan.shard->Get(index);
    absl::StatusOr<std::vector<storage::Digest>> proof =
        record.ok() ? plan.shard->InclusionProof(index, plan.tree_size)
                    : absl::StatusOr<std::vector<storage::Digest>>(record.status());
    if (!proof.ok()) {
      // A loss the shard recorded, a damaged block or tree node: the edge is
      // named unreadable, so `predlog verify --key` calls the export
      // incomplete instead of proving it.
      PREDLOG_LOG(WARNING) << "export: " << plan.shard->name() << ": the edge record " << index
                           << " of the export's run cannot be proven: " << proof.status();
      out->set_unreadable(absl::StrCat(absl::StatusCodeToString(proof.status().code()), ": ",
                                       proof.status().message()));
      return;
    }
    if (record->appended_at.has_value()) {
      storage::TimeToProto(*record->appended_at, out->mutable_appended_at());
    }
    AssignHex(record->leaf, out->mutable_leaf_sha256());
    for (const storage::Digest& hash : *proof) AssignHex(hash, out->add_proof_sha256());
  };
  if (plan.begin_index > 0) edge(plan.begin_index - 1, edges.mutable_before());
  if (plan.end_index < plan.tree_size) edge(plan.end_index, edges.mutable_after());
  return edges;
}

void ExportCursor::MarkUnreadable(uint64_t first, uint64_t last, absl::string_view reason,
                                  Out* out) {
  if (open_unreadable_.has_value() && open_unreadable_->last + 1 == first) {
    open_unreadable_->last = last;
  } else {
    CloseUnreadable(out);
    open_unreadable_ = OpenUnreadable{first, last, std::string(reason)};
  }
  last_unreadable_ = last;
}

void ExportCursor::CloseUnreadable(Out* out) {
  if (!open_unreadable_.has_value()) return;
  predlog::v1::UnreadableRecords* range = out->batch->add_unreadable();
  range->set_shard(plan_[current_].shard->name());
  range->set_first_index(open_unreadable_->first);
  range->set_last_index(open_unreadable_->last);
  range->set_reason(std::move(open_unreadable_->reason));
  range->set_records_before(static_cast<uint32_t>(out->batch->records_size()));
  PREDLOG_LOG(WARNING) << "export: " << range->shard() << " records " << range->first_index()
                       << ".." << range->last_index()
                       << " could not be read; exported without them: " << range->reason();
  open_unreadable_.reset();
}

absl::StatusOr<std::optional<storage::Digest>> ExportCursor::ChainBefore(
    const ShardPlan& plan, const storage::StoredRecord& record, Out* out) {
  const uint64_t index = record.index;
  if (last_.has_value() && last_->first + 1 == index) return last_->second;
  if (index == 0) return storage::kChainGenesis;
  if (last_unreadable_ == index - 1) return std::nullopt;
  absl::StatusOr<storage::StoredRecord> previous = plan.shard->Get(index - 1);
  if (previous.ok()) return previous->chain;
  if (absl::IsNotFound(previous.status())) {
    // A loss the shard recorded: its record comes right after the lost
    // indexes and the chain goes on from the last intact record.
    absl::StatusOr<predlog::v1::AuditEvent> event = record.Event();
    if (event.ok() && event->has_records_lost() &&
        event->records_lost().last_lost_index() + 1 == index) {
      if (std::optional<storage::Digest> intact =
              storage::DigestFromHex(event->records_lost().intact_chain_sha256())) {
        return *intact;
      }
    }
    MarkUnreadable(index - 1, index - 1,
                   absl::StrCat(plan.shard->name(), ": record ", index - 1,
                                " is missing from the log (", previous.status().message(), ")"),
                   out);
    return std::nullopt;
  }
  if (absl::IsDataLoss(previous.status())) {
    MarkUnreadable(index - 1, index - 1, previous.status().message(), out);
    return std::nullopt;
  }
  return previous.status();
}

void ExportCursor::CloseRun(const ShardPlan& plan, Out* out) {
  if (!run_.has_value()) return;
  const auto [first, last] = *run_;
  run_.reset();
  if (plan.checkpoint.empty()) return;
  absl::StatusOr<std::vector<storage::Digest>> proof =
      plan.shard->RangeProof(first, last + 1, plan.tree_size, &proof_nodes_);
  if (!proof.ok()) {
    PREDLOG_LOG(WARNING) << "export: " << plan.shard->name() << " records " << first << ".." << last
                         << " go without a range proof: " << proof.status();
    return;
  }
  predlog::v1::RangeProof* range = out->batch->add_range_proofs();
  range->set_shard(plan.shard->name());
  range->set_first_index(first);
  range->set_last_index(last);
  for (const storage::Digest& hash : *proof) AssignHex(hash, range->add_proof_sha256());
}

absl::Status ExportCursor::Add(const ShardPlan& plan, storage::StoredRecord& record, Out* out) {
  ASSIGN_OR_RETURN(std::optional<storage::Digest> prev_chain, ChainBefore(plan, record, out));
  CloseUnreadable(out);  // it comes before this record
  if (run_.has_value() && run_->second + 1 == record.index) {
    run_->second = record.index;
  } else {
    CloseRun(plan, out);
    run_ = std::make_pair(record.index, record.index);
  }
  predlog::v1::ExportedRecord* exported = out->batch->add_records();
  exported->set_shard(plan.shard->name());
  exported->set_index(record.index);
  exported->set_event_bytes(std::move(record.payload));
  if (record.appended_at.has_value()) {
    storage::TimeToProto(*record.appended_at, exported->mutable_appended_at());
  } else {
    exported->clear_appended_at();  // reused from the previous batch
  }
  AssignHex(record.leaf, exported->mutable_leaf_sha256());
  if (prev_chain.has_value()) {
    AssignHex(*prev_chain, exported->mutable_prev_chain_sha256());
  } else {
    exported->clear_prev_chain_sha256();  // reused from the previous batch
  }
  AssignHex(record.chain, exported->mutable_chain_sha256());
  out->bytes += exported->event_bytes().size();
  last_ = std::make_pair(record.index, record.chain);
  return absl::OkStatus();
}

absl::Status ExportCursor::Offer(ShardPlan* plan, storage::StoredRecord& record, Out* out) {
  if (record.index > plan->expected) {
    // A hole in the log: only a loss the shard recorded may leave one, and
    // its record comes right after the lost indexes and names them.
    absl::StatusOr<predlog::v1::AuditEvent> event = record.Event();
    const bool recorded_loss = event.ok() && event->has_records_lost() &&
                               event->records_lost().first_lost_index() == plan->expected &&
                               event->records_lost().last_lost_index() + 1 == record.index;
    if (!recorded_loss) {
      MarkUnreadable(plan->expected, record.index - 1,
                     absl::StrCat(plan->shard->name(), ": records ", plan->expected, "..",
                                  record.index - 1, " are missing from the log"),
                     out);
    }
  }
  plan->expected = record.index + 1;
  const std::optional<bool> matches = Matches(record);
  if (!matches.has_value()) {
    MarkUnreadable(record.index, record.index,
                   absl::StrCat(plan->shard->name(), ": record ", record.index,
                                ": its event bytes are not a predlog.v1.AuditEvent"),
                   out);
    return absl::OkStatus();
  }
  if (*matches) return Add(*plan, record, out);
  last_ = std::make_pair(record.index, record.chain);
  return absl::OkStatus();
}

absl::Status ExportCursor::ReadLog(ShardPlan* plan, Out* out) {
  const uint64_t from = plan->next_index;
  const size_t room = out->max_records - static_cast<size_t>(out->batch->records_size());
  const uint64_t n = std::min<uint64_t>({room, plan->end_index - from, kReadChunk});
  absl::StatusOr<std::vector<storage::StoredRecord>> records = plan->shard->ReadRange(from, n);
  if (records.ok()) {
    for (storage::StoredRecord& record : *records) {
      if (record.index >= plan->end_index) {
        plan->next_index = plan->end_index;
        return absl::OkStatus();
      }
      RETURN_IF_ERROR(Offer(plan, record, out));
      plan->next_index = record.index + 1;
      if (out->full()) return absl::OkStatus();
    }
    // Fewer records than asked for: the log has none after them.
    if (records->size() < n) plan->next_index = plan->end_index;
    return absl::OkStatus();
  }
  if (!absl::IsDataLoss(records.status())) return records.status();
  // Something in [from, from + n) cannot be read: one record at a time, to
  // export every one that can.
  for (uint64_t index = from; index < from + n; ++index) {
    plan->next_index = index + 1;
    absl::StatusOr<storage::StoredRecord> record = plan->shard->Get(index);
    if (record.ok()) {
      RETURN_IF_ERROR(Offer(plan, *record, out));
      if (out->full()) return absl::OkStatus();
    } else if (absl::IsDataLoss(record.status())) {
      if (plan->expected < index) {
        MarkUnreadable(plan->expected, index - 1,
                       absl::StrCat(plan->shard->name(), ": records ", plan->expected, "..",
                                    index - 1, " are missing from the log"),
                       out);
      }
      MarkUnreadable(index, index, record.status().message(), out);
      plan->expected = index + 1;
    } else if (!absl::IsNotFound(record.status())) {
      return record.status();
    }  // NOT_FOUND: a hole, judged by the record after it (Offer)
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> ExportCursor::Next(size_t max_records, size_t max_bytes,
                                        predlog::v1::ExportBatch* batch) {
  batch->Clear();
  Out out{batch, max_records, max_bytes};
  while (current_ < plan_.size() && !out.full()) {
    ShardPlan& plan = plan_[current_];
    bool shard_done = false;
    if (!plan.read_log && !plan.scanned) {
      absl::Status scanned = Scan(&plan);
      if (absl::IsDataLoss(scanned)) {
        // The index cannot be read: read the log whole and match each record.
        PREDLOG_LOG(WARNING) << "export: " << plan.shard->name()
                             << ": its index cannot be read, reading the whole log instead: "
                             << scanned.message();
        plan.read_log = true;
        plan.indexes.clear();
      } else if (!scanned.ok()) {
        return scanned;
      }
      plan.scanned = true;
    }
    if (plan.read_log) {
      if (plan.next_index < plan.end_index) RETURN_IF_ERROR(ReadLog(&plan, &out));
      shard_done = plan.next_index >= plan.end_index;
      if (shard_done && plan.expected < plan.end_index) {
        MarkUnreadable(plan.expected, plan.end_index - 1,
                       absl::StrCat(plan.shard->name(), ": records ", plan.expected, "..",
                                    plan.end_index - 1, " are missing from the log"),
                       &out);
        plan.expected = plan.end_index;
      }
    } else {
      while (plan.next_match < plan.indexes.size() && !out.full()) {
        const uint64_t index = plan.indexes[plan.next_match++];
        absl::StatusOr<storage::StoredRecord> record = plan.shard->Get(index);
        if (record.ok()) {
          RETURN_IF_ERROR(Add(plan, *record, &out));
        } else if (absl::IsDataLoss(record.status()) || absl::IsNotFound(record.status())) {
          // The index lists it: not found is a record missing from the log.
          MarkUnreadable(index, index, record.status().message(), &out);
        } else {
          return record.status();
        }
      }
      shard_done = plan.next_match >= plan.indexes.size();
    }
    if (shard_done) {
      CloseUnreadable(&out);
      CloseRun(plan, &out);
      proof_nodes_.Clear();
      if (!plan.checkpoint.empty()) {
        predlog::v1::ShardCheckpoint* checkpoint = batch->add_checkpoints();
        checkpoint->set_shard(plan.shard->name());
        checkpoint->set_note(plan.checkpoint);
        if (ReadsWholeLog(request_) && (request_.has_from() || request_.has_to())) {
          *batch->add_edges() = Edges(plan);
        }
      }
      ++current_;
      last_.reset();
      last_unreadable_.reset();
    }
  }
  return batch->records_size() > 0 || batch->unreadable_size() > 0 ||
         batch->checkpoints_size() > 0 || batch->range_proofs_size() > 0;
}

absl::StatusOr<predlog::v1::GetChainValuesResponse> Audit::GetChainValues(
    const predlog::v1::GetChainValuesRequest& request) const {
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards");
  if (request.positions().empty()) return absl::InvalidArgumentError("no positions asked for");
  if (request.positions_size() > kMaxChainPositions) {
    return absl::InvalidArgumentError(absl::StrCat(request.positions_size(),
                                                   " positions asked for; at most ",
                                                   kMaxChainPositions, " per call"));
  }
  predlog::v1::GetChainValuesResponse response;
  for (const predlog::v1::Position& position : request.positions()) {
    const std::string what =
        absl::StrCat("reading the chain value of ", position.shard(), "#", position.index());
    ASSIGN_OR_RETURN(int number, ShardNumber(position.shard(), what));
    const storage::ShardStore* shard = &ShardAt(number);
    const uint64_t records = shard->Head().next_index;
    if (position.index() >= records) {
      return absl::NotFoundError(absl::StrCat(position.shard(), " has ", records,
                                              " records: no index ", position.index()));
    }
    absl::StatusOr<storage::StoredRecord> record = shard->Get(position.index());
    if (!record.ok()) {
      return absl::Status(record.status().code(),
                          absl::StrCat(what, ": ", record.status().message()));
    }
    predlog::v1::ChainValue* value = response.add_values();
    *value->mutable_position() = position;
    value->set_leaf_sha256(storage::ToHex(record->leaf));
    value->set_chain_sha256(storage::ToHex(record->chain));
  }
  return response;
}

absl::StatusOr<predlog::v1::StatusResponse> Audit::Status() const {
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards");
  predlog::v1::StatusResponse response;
  const std::vector<PartitionStatus> partitions = ingest_->Status();
  for (size_t i = 0; i < partitions.size(); ++i) {
    const PartitionStatus& p = partitions[i];
    const storage::ShardStore& shard = ShardAt(static_cast<int>(i));
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
