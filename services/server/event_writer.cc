#include "services/server/event_writer.h"

#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/kafka/kafka_config.h"
#include "storage/event_validation.h"
#include "storage/sha256.h"
#include "storage/timestamps.h"

namespace predlog::services {

using ::predlog::v1::LogReceipt;

LogReceipt::Outcome ToReceiptOutcome(storage::FoldOutcome outcome) {
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

void SetFoldResult(const std::string& shard, const storage::MessageResult& result,
                   LogReceipt* receipt) {
  receipt->set_outcome(ToReceiptOutcome(result.outcome));
  receipt->set_reason(result.reason);
  // A duplicate or conflict of a record in another shard points at that one.
  receipt->mutable_position()->set_shard(result.original_shard.empty() ? shard
                                                                       : result.original_shard);
  receipt->mutable_position()->set_index(result.index);
  if (result.outcome == storage::FoldOutcome::kApplied ||
      result.outcome == storage::FoldOutcome::kDuplicate) {
    receipt->set_leaf_sha256(storage::ToHex(result.leaf));
  }
}

void EventWriter::StampEnvelope(absl::string_view actor, absl::string_view claimed_actor,
                                predlog::v1::AuditEvent* event) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  event->set_event_id(absl::StrFormat("%016x%016x", rng(), rng()));
  storage::TimeToProto(absl::Now(), event->mutable_recorded_at());
  event->set_actor(std::string(actor));
  event->set_claimed_actor(std::string(claimed_actor));
  event->set_schema_version(storage::kSchemaVersion);
}

absl::Status EventWriter::RenameFieldPath(const absl::Status& status, absl::string_view body_field,
                                          absl::string_view request_field) {
  std::string message(status.message());
  if (absl::StartsWith(message, absl::StrCat(body_field, "."))) {
    message = absl::StrCat(request_field, ".", message.substr(body_field.size() + 1));
  }
  return absl::Status(status.code(), message);
}

void EventWriter::Write(absl::string_view topic, absl::string_view key,
                        predlog::v1::AuditEvent event, bool wait_durable, absl::string_view what,
                        ReceiptCallback done) {
  std::string bytes = event.SerializeAsString();
  if (bytes.size() > options_.max_event_bytes) {
    done(absl::InvalidArgumentError(absl::StrCat(
        what, " is ", bytes.size(), " bytes serialized; the limit is ", options_.max_event_bytes)));
    return;
  }
  // Reserve the bytes until the call is answered; refuse above the bound.
  const size_t size = bytes.size();
  if (in_flight_bytes_.fetch_add(size) + size > options_.max_in_flight_bytes) {
    in_flight_bytes_.fetch_sub(size);
    done(absl::ResourceExhaustedError(
        absl::StrCat("more than ", options_.max_in_flight_bytes,
                     " bytes of events are waiting to be folded; retry after a short backoff")));
    return;
  }
  done = [this, size, inner = std::move(done)](absl::StatusOr<LogReceipt> r) {
    in_flight_bytes_.fetch_sub(size);
    inner(std::move(r));
  };
  if (options_.direct) {
    Append(topic, key, std::move(event), std::move(bytes), std::move(done));
    return;
  }
  const bool durable = options_.always_wait_durable || wait_durable;
  if (durable && ingest_ == nullptr) {
    done(absl::FailedPreconditionError(
        "wait_durable needs the ingest role in this predlogd process; write without it or "
        "call a process that runs ingest"));
    return;
  }
  Ingest* ingest = ingest_;
  absl::Status produced =
      producer_->Produce(topic, key, bytes,
                         [topic = std::string(topic), durable, ingest,
                          done](absl::StatusOr<Delivery> delivery) mutable {
                           if (!delivery.ok()) {
                             done(delivery.status());
                             return;
                           }
                           LogReceipt receipt;
                           receipt.set_shard(absl::StrCat(topic, "-", delivery->partition));
                           receipt.mutable_source()->set_partition(delivery->partition);
                           receipt.mutable_source()->set_offset(delivery->offset);
                           if (!durable) {
                             receipt.set_outcome(LogReceipt::ACCEPTED);
                             done(std::move(receipt));
                             return;
                           }
                           ingest->AwaitFold(topic, delivery->partition, delivery->offset,
                                             [receipt = std::move(receipt), done = std::move(done)](
                                                 absl::StatusOr<FoldReceipt> fold) mutable {
                                               if (!fold.ok()) {
                                                 done(fold.status());
                                                 return;
                                               }
                                               SetFoldResult(fold->shard, fold->result, &receipt);
                                               done(std::move(receipt));
                                             });
                         });
  // On failure Produce did not take the callback, so `done` is still ours.
  if (!produced.ok()) done(produced);
}

void EventWriter::Append(absl::string_view topic, absl::string_view key,
                         predlog::v1::AuditEvent event, std::string bytes, ReceiptCallback done) {
  if (ingest_ == nullptr) {
    done(absl::FailedPreconditionError("direct appends need the shards of this process"));
    return;
  }
  // predlog.events by the producer's partitioner; the others have one partition.
  const int32_t partition = topic == kEventsTopic ? PartitionForKey(key, ingest_->partitions()) : 0;
  storage::ShardWriter* const found = ingest_->WriterOf(topic, partition);
  if (found == nullptr) {
    done(absl::InternalError(absl::StrCat("no shard folds ", topic, " partition ", partition)));
    return;
  }
  storage::ShardWriter& writer = *found;
  LogReceipt receipt;
  receipt.set_shard(writer.shard().name());
  receipt.mutable_source()->set_incarnation(std::string(storage::kDirectSource));
  receipt.mutable_source()->set_partition(partition);
  writer.Append(std::move(event), std::move(bytes),
                [receipt = std::move(receipt), shard = writer.shard().name(),
                 done = std::move(done)](absl::StatusOr<storage::MessageResult> result) mutable {
                  if (!result.ok()) {
                    done(result.status());
                    return;
                  }
                  receipt.mutable_source()->set_offset(result->direct_offset);
                  SetFoldResult(shard, *result, &receipt);
                  done(std::move(receipt));
                });
}

}  // namespace predlog::services
