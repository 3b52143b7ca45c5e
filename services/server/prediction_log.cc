#include "services/server/prediction_log.h"

#include <algorithm>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "replay/lineage.h"
#include "services/kafka/kafka_config.h"
#include "storage/sha256.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services {
namespace {

// Where a page starts: a shard and the cursor of its index scan ("" = the
// shard's first entry). A page token is that place, as
//   page_token := shard:decimal '/' web-safe base64 of the cursor bytes
// ("" = the first page). INVALID_ARGUMENT for a token that does not parse
// or names a shard that does not exist.
struct PageStart {
  int partition = 0;
  std::string cursor;
};

absl::StatusOr<PageStart> ParsePageToken(const std::string& page_token, int partitions) {
  PageStart start;
  if (page_token.empty()) return start;
  const size_t slash = page_token.find('/');
  if (slash == std::string::npos ||
      !absl::SimpleAtoi(page_token.substr(0, slash), &start.partition) || start.partition < 0 ||
      start.partition >= partitions ||
      !absl::WebSafeBase64Unescape(page_token.substr(slash + 1), &start.cursor)) {
    return absl::InvalidArgumentError("page_token is not one this server issued");
  }
  return start;
}

std::string PageToken(int partition, absl::string_view cursor) {
  return absl::StrCat(partition, "/", absl::WebSafeBase64Escape(cursor));
}

// The records a page holds: page_size, or the default for 0.
absl::StatusOr<size_t> PageSize(uint32_t page_size) {
  if (page_size > PredictionLog::kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size ", page_size, " is above the limit of ", PredictionLog::kMaxPageSize));
  }
  return page_size == 0 ? PredictionLog::kDefaultPageSize : page_size;
}

}  // namespace

PredictionLog::PredictionLog(Producer* producer, Ingest* ingest, PredictionLogOptions options)
    : ingest_(ingest), options_(std::move(options)), writer_(producer, ingest, options_.writer) {
  if (ingest_ != nullptr) shards_ = ingest_->Shards();
}

void PredictionLog::Log(const predlog::v1::LogRequest& request, absl::string_view actor,
                        LogCallback user_done) {
  // Every call ends in exactly one counter: acked, or failed by code.
  LogCallback done = [this, start = absl::Now(), user_done = std::move(user_done)](
                         absl::StatusOr<predlog::v1::LogReceipt> result) {
    if (result.ok()) {
      metrics_.log_acked.fetch_add(1, std::memory_order_relaxed);
      metrics_.ack_latency.Observe(absl::Now() - start);
    } else {
      const auto code = static_cast<size_t>(result.status().code());
      if (code < metrics_.log_failed_by_code.size()) {
        metrics_.log_failed_by_code[code].fetch_add(1, std::memory_order_relaxed);
      }
    }
    user_done(std::move(result));
  };
  if (!request.has_prediction()) {
    done(absl::InvalidArgumentError("prediction is missing"));
    return;
  }
  predlog::v1::AuditEvent event;
  EventWriter::StampEnvelope(actor, request.actor(), &event);
  *event.mutable_prediction_logged() = request.prediction();
  if (absl::Status valid = storage::ValidateEvent(event, options_.limits); !valid.ok()) {
    done(EventWriter::RenameFieldPath(valid, "prediction_logged", "prediction"));
    return;
  }
  writer_.Write(kEventsTopic, request.prediction().subject_id(), std::move(event),
                request.wait_durable(), "prediction",
                [prediction_id = request.prediction().prediction_id(),
                 done = std::move(done)](absl::StatusOr<predlog::v1::LogReceipt> receipt) {
                  if (receipt.ok()) receipt->set_prediction_id(prediction_id);
                  done(std::move(receipt));
                });
}

void PredictionLog::LogBatch(
    const predlog::v1::LogBatchRequest& request, absl::string_view actor,
    std::function<void(absl::StatusOr<predlog::v1::LogBatchResponse>)> done) {
  const int n = request.requests_size();
  if (n == 0) {
    done(absl::InvalidArgumentError("requests is empty"));
    return;
  }
  if (n > kMaxLogBatch) {
    done(absl::InvalidArgumentError(
        absl::StrCat("requests has ", n, " entries; the limit is ", kMaxLogBatch)));
    return;
  }
  // Shared by the n answers; the last one to arrive sends the response.
  struct Pending {
    absl::Mutex mu;
    predlog::v1::LogBatchResponse response;
    int outstanding;
    std::function<void(absl::StatusOr<predlog::v1::LogBatchResponse>)> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->outstanding = n;
  pending->done = std::move(done);
  for (int i = 0; i < n; ++i) pending->response.add_receipts();
  for (int i = 0; i < n; ++i) {
    const predlog::v1::LogRequest& one = request.requests(i);
    Log(one, actor,
        [pending, i, prediction_id = one.prediction().prediction_id()](
            absl::StatusOr<predlog::v1::LogReceipt> result) {
          bool last;
          {
            absl::MutexLock lock(&pending->mu);
            *pending->response.mutable_receipts(i) =
                result.ok() ? std::move(*result) : ErrorReceipt(prediction_id, result.status());
            last = --pending->outstanding == 0;
          }
          if (last) pending->done(std::move(pending->response));
        });
  }
}

predlog::v1::LogReceipt PredictionLog::ErrorReceipt(absl::string_view prediction_id,
                                                    const absl::Status& status) {
  predlog::v1::LogReceipt receipt;
  receipt.set_prediction_id(std::string(prediction_id));
  receipt.set_error_code(static_cast<int32_t>(status.code()));
  receipt.set_reason(std::string(status.message()));
  return receipt;
}

void PredictionLog::ChangeEntity(const predlog::v1::ChangeEntityRequest& request,
                                 absl::string_view actor, LogCallback done) {
  if (!request.has_change()) {
    done(absl::InvalidArgumentError("change is missing"));
    return;
  }
  predlog::v1::AuditEvent event;
  EventWriter::StampEnvelope(actor, request.actor(), &event);
  *event.mutable_entity_changed() = request.change();
  if (absl::Status valid = storage::ValidateEvent(event, options_.limits); !valid.ok()) {
    done(EventWriter::RenameFieldPath(valid, "entity_changed", "change"));
    return;
  }
  writer_.Write(kEventsTopic, request.change().entity_id(), std::move(event),
                request.wait_durable(), "change", std::move(done));
}

absl::StatusOr<predlog::v1::PredictionRecord> PredictionLog::ToRecord(
    int partition, const storage::StoredRecord& record) const {
  return replay::ToPredictionRecord(ingest_->shard(partition), partition, record);
}

absl::StatusOr<predlog::v1::PredictionRecord> PredictionLog::GetPrediction(
    const predlog::v1::GetPredictionRequest& request) const {
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards to read");
  ASSIGN_OR_RETURN(storage::LocatedRecord found,
                   storage::FindPrediction(shards_, request.prediction_id(), request.subject_id()));
  return ToRecord(found.partition, found.record);
}

absl::StatusOr<predlog::v1::ListPredictionsResponse> PredictionLog::ListPredictions(
    const predlog::v1::ListPredictionsRequest& request) const {
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards to read");
  ASSIGN_OR_RETURN(const size_t page_size, PageSize(request.page_size()));
  storage::TimeRange range;
  if (request.has_served_from()) {
    range.from = storage::TimeFromProto(request.served_from());
  }
  if (request.has_served_to()) {
    range.to = storage::TimeFromProto(request.served_to());
  }
  ASSIGN_OR_RETURN(PageStart start, ParsePageToken(request.page_token(), ingest_->partitions()));
  int partition = start.partition;
  std::string cursor = std::move(start.cursor);
  // The shards to read, ascending; the page token says where this page starts.
  std::vector<int> partitions;
  switch (request.filter_case()) {
    case predlog::v1::ListPredictionsRequest::kSubjectId: {
      if (request.subject_id().empty()) return absl::InvalidArgumentError("subject_id is empty");
      ASSIGN_OR_RETURN(partitions,
                       shards_.PartitionsOf(request.subject_id(),
                                            absl::StrCat("subject ", request.subject_id())));
      break;
    }
    case predlog::v1::ListPredictionsRequest::kModel:
      if (request.model().name().empty() || request.model().version().empty()) {
        return absl::InvalidArgumentError("model.name and model.version are both required");
      }
      RETURN_IF_ERROR(ingest_->CheckAllFoldedHere("listing a model version"));
      for (int p = 0; p < ingest_->partitions(); ++p) partitions.push_back(p);
      break;
    case predlog::v1::ListPredictionsRequest::kTraceId:
      if (request.trace_id().empty()) return absl::InvalidArgumentError("trace_id is empty");
      // by_trace is keyed by served_at within a trace, but a trace is a
      // handful of steps: it is listed whole, not by time.
      if (request.has_served_from() || request.has_served_to()) {
        return absl::InvalidArgumentError(
            "served_from and served_to do not apply to trace_id: a trace is listed whole");
      }
      // A trace's steps may have different subjects, so different shards.
      RETURN_IF_ERROR(ingest_->CheckAllFoldedHere("listing a trace"));
      for (int p = 0; p < ingest_->partitions(); ++p) partitions.push_back(p);
      break;
    case predlog::v1::ListPredictionsRequest::FILTER_NOT_SET:
      return absl::InvalidArgumentError("filter is missing: set subject_id, model or trace_id");
  }
  predlog::v1::ListPredictionsResponse response;
  auto it = std::lower_bound(partitions.begin(), partitions.end(), partition);
  if (it == partitions.end() || *it != partition) cursor.clear();  // that shard is not read now
  for (; it != partitions.end(); ++it, cursor.clear()) {
    partition = *it;
    const size_t wanted = page_size - static_cast<size_t>(response.records_size());
    const storage::ShardStore& shard = ingest_->shard(partition);
    absl::StatusOr<storage::ScanPage> page =
        request.has_model() ? shard.ScanModel(request.model().name(), request.model().version(),
                                              range, cursor, wanted)
        : request.has_trace_id() ? shard.ScanTrace(request.trace_id(), cursor, wanted)
                                 : shard.ScanSubject(request.subject_id(), range, cursor, wanted);
    if (!page.ok()) {
      if (absl::IsInvalidArgument(page.status())) {
        return absl::InvalidArgumentError("page_token is not one this server issued");
      }
      return page.status();
    }
    for (const storage::StoredRecord& record : page->records) {
      ASSIGN_OR_RETURN(*response.add_records(), ToRecord(partition, record));
    }
    if (!page->next_cursor.empty()) {
      response.set_next_page_token(PageToken(partition, page->next_cursor));
      break;
    }
    if (static_cast<size_t>(response.records_size()) == page_size) {
      // This shard is done; the next page starts at the next shard, if any.
      if (std::next(it) != partitions.end()) {
        response.set_next_page_token(absl::StrCat(*std::next(it), "/"));
      }
      break;
    }
  }
  return response;
}

absl::StatusOr<predlog::v1::ListEntityChangesResponse> PredictionLog::ListEntityChanges(
    const predlog::v1::ListEntityChangesRequest& request) const {
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards to read");
  if (request.entity_type().empty()) return absl::InvalidArgumentError("entity_type is required");
  if (request.entity_id().empty()) return absl::InvalidArgumentError("entity_id is required");
  ASSIGN_OR_RETURN(const size_t page_size, PageSize(request.page_size()));
  storage::TimeRange range;
  if (request.has_from()) range.from = storage::TimeFromProto(request.from());
  if (request.has_to()) range.to = storage::TimeFromProto(request.to());
  // The entity's one shard: ChangeEntity keys by entity_id, and the fold
  // rejects a change that arrives on another partition.
  const int partition = shards_.partition_of(request.entity_id());
  RETURN_IF_ERROR(shards_.CheckFolded(
      {partition}, absl::StrCat("entity ", request.entity_type(), "/", request.entity_id())));
  ASSIGN_OR_RETURN(PageStart start, ParsePageToken(request.page_token(), ingest_->partitions()));
  // Every token this call issues names the entity's shard and a cursor.
  if (!request.page_token().empty() && (start.partition != partition || start.cursor.empty())) {
    return absl::InvalidArgumentError("page_token is not one this server issued");
  }
  absl::StatusOr<storage::ScanPage> page = ingest_->shard(partition).ScanEntity(
      request.entity_type(), request.entity_id(), range, start.cursor, page_size);
  if (!page.ok()) {
    if (absl::IsInvalidArgument(page.status())) {  // a cursor of another scan
      return absl::InvalidArgumentError("page_token is not one this server issued");
    }
    return page.status();
  }
  predlog::v1::ListEntityChangesResponse response;
  for (const storage::StoredRecord& record : page->records) {
    ASSIGN_OR_RETURN(*response.add_changes(), ToRecord(partition, record));
  }
  if (!page->next_cursor.empty()) {
    response.set_next_page_token(PageToken(partition, page->next_cursor));
  }
  return response;
}

}  // namespace predlog::services
