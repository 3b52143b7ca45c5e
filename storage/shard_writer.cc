#include "storage/shard_writer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "storage/logging.h"
#include "storage/status_macros.h"

namespace predlog::storage {

absl::StatusOr<std::unique_ptr<ShardWriter>> ShardWriter::Start(std::unique_ptr<ShardStore> shard,
                                                                ShardWriterOptions options) {
  if (shard == nullptr) return absl::InvalidArgumentError("ShardWriter needs a shard");
  if (options.max_group_messages < 1) {
    return absl::InvalidArgumentError("ShardWriterOptions.max_group_messages must be >= 1");
  }
  ASSIGN_OR_RETURN(std::vector<SnapshotInfo> snapshots, shard->ListSnapshots());
  std::unique_ptr<ShardWriter> writer(new ShardWriter(std::move(shard), std::move(options)));
  writer->last_snapshot_index_ = snapshots.empty() ? 0 : snapshots.back().index;
  writer->last_snapshot_time_ = snapshots.empty() ? absl::Now() : snapshots.back().created_at;
  writer->last_checkpoint_time_ = absl::Now();
  // Where the checkpoint schedule resumes. A kept checkpoint that cannot be
  // read only makes the next one come sooner: it never keeps the shard from
  // opening (the log, not its checkpoints, is the system of record).
  absl::StatusOr<std::string> latest = writer->shard_->LatestCheckpoint();
  absl::StatusOr<std::string> text =
      latest.ok() ? UnverifiedNoteText(*latest) : absl::StatusOr<std::string>(latest.status());
  absl::StatusOr<Checkpoint> checkpoint =
      text.ok() ? ParseCheckpoint(*text) : absl::StatusOr<Checkpoint>(text.status());
  if (checkpoint.ok()) {
    writer->last_checkpoint_size_ = checkpoint->size;
  } else if (!absl::IsNotFound(checkpoint.status())) {
    PREDLOG_LOG(WARNING) << "shard writer: " << writer->shard_->name()
                         << ": its latest kept checkpoint cannot be read (" << checkpoint.status()
                         << "); the next one is signed on schedule from index 0";
  }
  writer->thread_ = std::thread([raw = writer.get()] { raw->Run(); });
  return writer;
}

ShardWriter::ShardWriter(std::unique_ptr<ShardStore> shard, ShardWriterOptions options)
    : shard_(std::move(shard)), options_(std::move(options)) {}

ShardWriter::~ShardWriter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ShardWriter::Append(predlog::v1::AuditEvent event, std::string payload, AppendCallback done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      appends_.push_back(DirectAppend{std::move(event), std::move(payload), std::move(done)});
      return;
    }
  }
  done(absl::UnavailableError(absl::StrCat(shard_->name(), " is closing; nothing was written")));
}

absl::StatusOr<BatchResult> ShardWriter::ApplyBatch(absl::Span<const SourceMessage> messages) {
  KafkaBatch batch{messages, absl::UnknownError("not written"), false};
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError(absl::StrCat(shard_->name(), " is closing"));
  batches_.push_back(&batch);
  mu_.Await(absl::Condition(&batch.done));
  return std::move(batch.result);
}

void ShardWriter::Run() {
  std::vector<DirectAppend> appends;
  for (;;) {
    KafkaBatch* kafka = nullptr;
    appends.clear();
    bool idle = false;
    {
      absl::MutexLock lock(&mu_);
      // Idle, the writer still wakes when the checkpoint schedule is due.
      const bool woken = mu_.AwaitWithTimeout(
          absl::Condition(
              +[](ShardWriter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
                return w->stopping_ || !w->appends_.empty() || !w->batches_.empty();
              },
              this),
          CheckpointDue());
      idle = !woken;
      if (!idle && appends_.empty() && batches_.empty()) return;  // stopping, nothing left
      if (!batches_.empty()) {
        kafka = batches_.front();
        batches_.pop_front();
      }
      while (!idle && !appends_.empty() && appends.size() < options_.max_group_messages) {
        appends.push_back(std::move(appends_.front()));
        appends_.pop_front();
      }
    }
    if (idle) {
      MaybeCheckpoint();
      continue;
    }
    WriteGroup(appends, kafka);
    MaybeSnapshot();
    MaybeCheckpoint();
  }
}

void ShardWriter::WriteGroup(std::vector<DirectAppend>& appends, KafkaBatch* kafka) {
  std::vector<SourceMessage> group;
  group.reserve(appends.size() + (kafka != nullptr ? kafka->messages.size() : 0));
  // The Kafka batch first: its results are the group's first ones.
  if (kafka != nullptr) group.insert(group.end(), kafka->messages.begin(), kafka->messages.end());
  for (const DirectAppend& a : appends) {
    SourceMessage m;
    m.direct = true;
    m.payload = a.payload;
    m.event = &a.event;
    group.push_back(m);
  }
  absl::StatusOr<BatchResult> result = shard_->ApplyBatch(group);
  if (result.ok()) {
    groups_written_.fetch_add(1, std::memory_order_relaxed);
  } else {
    PREDLOG_LOG(ERROR) << "shard writer: " << result.status();
  }
  const size_t kafka_count = kafka != nullptr ? kafka->messages.size() : 0;
  for (size_t i = 0; i < appends.size(); ++i) {
    if (result.ok()) {
      appends[i].done(std::move(result->messages[kafka_count + i]));
    } else {
      appends[i].done(result.status());
    }
  }
  if (kafka != nullptr) {
    absl::MutexLock lock(&mu_);
    if (result.ok()) {
      result->messages.resize(kafka_count);
      kafka->result = std::move(*result);
    } else {
      kafka->result = result.status();
    }
    kafka->done = true;
  }
}

absl::StatusOr<std::string> ShardWriter::SignCheckpoint() {
  if (options_.checkpoint_signer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(shard_->name(), ": no checkpoint signing key is configured"));
  }
  // Never the kept one of this size: whoever asks (an export, `predlog
  // checkpoint`) is told the log is this size now, not when it last grew.
  return shard_->SignCheckpoint(*options_.checkpoint_signer, options_.checkpoint_origin,
                                options_.checkpoint_extensions,
                                /*reuse_within=*/absl::ZeroDuration());
}

absl::Duration ShardWriter::CheckpointDue() const {
  if (options_.checkpoint_signer == nullptr || options_.checkpoint_every <= absl::ZeroDuration() ||
      shard_->Head().next_index == last_checkpoint_size_) {
    return absl::InfiniteDuration();
  }
  return std::max(absl::ZeroDuration(),
                  last_checkpoint_time_ + options_.checkpoint_every - absl::Now());
}

void ShardWriter::MaybeCheckpoint() {
  if (options_.checkpoint_signer == nullptr) return;
  const uint64_t next_index = shard_->Head().next_index;
  if (next_index == last_checkpoint_size_) return;
  const absl::Time now = absl::Now();
  const bool by_count = options_.checkpoint_every_events > 0 &&
                        next_index - last_checkpoint_size_ >= options_.checkpoint_every_events;
  const bool by_time = options_.checkpoint_every > absl::ZeroDuration() &&
                       now - last_checkpoint_time_ >= options_.checkpoint_every;
  if (!by_count && !by_time) return;
  last_checkpoint_time_ = now;  // on failure: retry on the next schedule, not every group
  absl::StatusOr<std::string> note = SignCheckpoint();
  if (!note.ok()) {
    PREDLOG_LOG(ERROR) << "shard writer: " << shard_->name() << ": checkpoint: " << note.status();
    return;
  }
  last_checkpoint_size_ = next_index;
}

void ShardWriter::MaybeSnapshot() {
  const uint64_t next_index = shard_->Head().next_index;
  if (next_index == last_snapshot_index_) return;
  const absl::Time now = absl::Now();
  const bool by_count = options_.snapshot_every_events > 0 &&
                        next_index - last_snapshot_index_ >= options_.snapshot_every_events;
  const bool by_time = options_.snapshot_every > absl::ZeroDuration() &&
                       now - last_snapshot_time_ >= options_.snapshot_every;
  if (!by_count && !by_time) return;
  absl::StatusOr<SnapshotInfo> snapshot = shard_->CreateSnapshot(now);
  last_snapshot_time_ = now;  // on failure: retry on the next schedule, not every group
  if (!snapshot.ok()) {
    PREDLOG_LOG(ERROR) << "shard writer: " << shard_->name() << ": snapshot: " << snapshot.status();
    return;
  }
  last_snapshot_index_ = snapshot->index;
  absl::StatusOr<int> pruned = shard_->PruneSnapshots(options_.snapshot_retention, now);
  if (!pruned.ok()) {
    PREDLOG_LOG(ERROR) << "shard writer: " << shard_->name()
                       << ": prune snapshots: " << pruned.status();
  }
}

}  // namespace predlog::storage
