#include "services/prediction_log.h"

#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/kafka_config.h"
#include "storage/sha256.h"

namespace predlog::services {
namespace {

using ::predlog::v1::LogReceipt;

std::string NewEventId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x%016x", rng(), rng());
}

LogReceipt::Outcome ToOutcome(storage::FoldOutcome outcome) {
  switch (outcome) {
    case storage::FoldOutcome::kApplied:
      return LogReceipt::APPLIED;
    case storage::FoldOutcome::kDuplicate:
      return LogReceipt::DUPLICATE;
    case storage::FoldOutcome::kConflict:
      return LogReceipt::CONFLICT;
    case storage::FoldOutcome::kRejected:
      return LogReceipt::REJECTED;
    case storage::FoldOutcome::kRedelivered:
      break;
  }
  return LogReceipt::OUTCOME_UNSPECIFIED;
}

}  // namespace

void PredictionLog::Log(const predlog::v1::LogRequest& request, LogCallback done) {
  if (!request.has_prediction()) {
    done(absl::InvalidArgumentError("prediction is missing"));
    return;
  }
  predlog::v1::AuditEvent event;
  event.set_event_id(NewEventId());
  const int64_t micros = absl::ToUnixMicros(absl::Now());
  event.mutable_recorded_at()->set_seconds(micros / 1'000'000);
  event.mutable_recorded_at()->set_nanos(static_cast<int32_t>(micros % 1'000'000) * 1000);
  event.set_actor(request.actor());
  event.set_schema_version(storage::kSchemaVersion);
  *event.mutable_prediction_logged() = request.prediction();
  if (absl::Status valid = storage::ValidateEvent(event, options_.limits); !valid.ok()) {
    // Field paths in requests start at `prediction.`.
    std::string message(valid.message());
    if (absl::StartsWith(message, "prediction_logged.")) {
      message = absl::StrCat("prediction.", message.substr(sizeof("prediction_logged.") - 1));
    }
    done(absl::InvalidArgumentError(message));
    return;
  }
  const std::string bytes = event.SerializeAsString();
  if (bytes.size() > options_.max_event_bytes) {
    done(absl::InvalidArgumentError(absl::StrCat("prediction is ", bytes.size(),
                                                 " bytes serialized; the limit is ",
                                                 options_.max_event_bytes)));
    return;
  }
  const bool durable = options_.always_wait_durable || request.wait_durable();
  const std::string prediction_id = request.prediction().prediction_id();
  Ingest* ingest = ingest_;
  absl::Status produced = producer_->Produce(
      kEventsTopic, request.prediction().subject_id(), bytes,
      [prediction_id, durable, ingest, done](absl::StatusOr<Delivery> delivery) mutable {
        if (!delivery.ok()) {
          done(delivery.status());
          return;
        }
        LogReceipt receipt;
        receipt.set_prediction_id(prediction_id);
        receipt.set_shard(absl::StrCat(kEventsTopic, "-", delivery->partition));
        receipt.mutable_source()->set_partition(delivery->partition);
        receipt.mutable_source()->set_offset(delivery->offset);
        if (!durable || ingest == nullptr) {
          receipt.set_outcome(LogReceipt::ACCEPTED);
          done(std::move(receipt));
          return;
        }
        ingest->AwaitFold(delivery->partition, delivery->offset,
                          [receipt = std::move(receipt),
                           done = std::move(done)](absl::StatusOr<FoldReceipt> fold) mutable {
                            if (!fold.ok()) {
                              done(fold.status());
                              return;
                            }
                            receipt.set_outcome(ToOutcome(fold->result.outcome));
                            receipt.set_reason(fold->result.reason);
                            receipt.mutable_position()->set_shard(fold->shard);
                            receipt.mutable_position()->set_index(fold->result.index);
                            if (fold->result.outcome == storage::FoldOutcome::kApplied ||
                                fold->result.outcome == storage::FoldOutcome::kDuplicate) {
                              receipt.set_leaf_sha256(storage::ToHex(fold->result.leaf));
                            }
                            done(std::move(receipt));
                          });
      });
  if (!produced.ok()) done(produced);
}

absl::StatusOr<predlog::v1::PredictionRecord> PredictionLog::GetPrediction(
    const predlog::v1::GetPredictionRequest& request) const {
  if (request.prediction_id().empty()) {
    return absl::InvalidArgumentError("prediction_id is empty");
  }
  if (ingest_ == nullptr) return absl::UnavailableError("this process has no shards to read");
  for (int p = 0; p < ingest_->partitions(); ++p) {
    const storage::ShardStore& shard = ingest_->shard(p);
    absl::StatusOr<storage::StoredRecord> record = shard.GetByPredictionId(request.prediction_id());
    if (absl::IsNotFound(record.status())) continue;
    if (!record.ok()) return record.status();
    predlog::v1::PredictionRecord out;
    if (!out.mutable_event()->ParseFromString(record->payload)) {
      return absl::DataLossError(
          absl::StrCat(shard.name(), ": record ", record->index, " does not parse"));
    }
    out.mutable_position()->set_shard(shard.name());
    out.mutable_position()->set_index(record->index);
    out.mutable_source()->set_incarnation(record->source.incarnation);
    out.mutable_source()->set_partition(p);
    out.mutable_source()->set_offset(record->source.offset);
    out.set_leaf_sha256(storage::ToHex(record->leaf));
    return out;
  }
  return absl::NotFoundError(
      absl::StrCat("prediction_id ", request.prediction_id(), " is not recorded"));
}

}  // namespace predlog::services
