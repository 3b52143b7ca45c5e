// ShardWriter: the one writer of a shard. Every source of a shard hands its
// messages here: the gateway's direct appends (Append) and the Kafka ingest's
// poll batches (ApplyBatch). A thread of its own folds whatever is queued when
// it is free as ONE ShardStore::ApplyBatch, a group commit: one WriteBatch,
// and with ShardOptions::sync_writes one WAL fsync (plus the small acked
// mark's fdatasync, storage/acked_mark.h), for the whole group, so
// the cost of a sync is shared by every request that arrived during the
// previous one. Callers are answered only after their group's write returned:
// an answered append is as durable as the shard's options make it.
//
// It also takes and prunes the shard's snapshots on their schedule, between
// groups, as ShardStore requires of its single writer, and signs the shard's
// checkpoints on theirs (waking for them when idle).
//
// Thread-safe. Owns the ShardStore; shard() may be read from any thread for
// the writer's lifetime.
#ifndef PREDLOG_STORAGE_SHARD_WRITER_H_
#define PREDLOG_STORAGE_SHARD_WRITER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "predlog/v1/events.pb.h"
#include "storage/shard_store.h"
#include "storage/signed_note.h"
#include "storage/snapshot_retention.h"

namespace predlog::storage {

struct ShardWriterOptions {
  // Most direct appends folded in one group commit (a queued Kafka batch is
  // never split). Must be >= 1.
  size_t max_group_messages = 4096;
  // Snapshot the shard once this many records were added since its last
  // snapshot (0: never by count) ...
  uint64_t snapshot_every_events = 100'000;
  // ... or once this much time passed with new records (zero: never by time).
  absl::Duration snapshot_every = absl::Hours(1);
  // What pruning after each snapshot keeps.
  RetentionPolicy snapshot_retention;
  // The key that signs the shard's checkpoints (ShardStore::SignCheckpoint);
  // null: the writer signs none. Borrowed; must outlive the writer.
  const NoteSigner* checkpoint_signer = nullptr;
  // The checkpoints' origin line: the log's name, unique to this shard.
  std::string checkpoint_origin;
  // Extension lines every checkpoint carries after its signed-at line
  // (ShardStore::SignCheckpoint), e.g. the shards line of the shard's log
  // family (storage/signed_note.h).
  std::vector<std::string> checkpoint_extensions;
  // Sign a checkpoint once this many records were added since the last one
  // (0: never by count) ...
  uint64_t checkpoint_every_events = 10'000;
  // ... or once this much time passed with records not yet in one, idle or
  // not (zero: never by time).
  absl::Duration checkpoint_every = absl::Minutes(1);
};

class ShardWriter {
 public:
  // The fold's outcome for one append, or the group's write error (then
  // nothing of the group was written: RESOURCE_EXHAUSTED when the disk is
  // full, INTERNAL or DATA_LOSS otherwise, naming the shard).
  using AppendCallback = std::function<void(absl::StatusOr<MessageResult>)>;

  // Starts the writer thread. INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<ShardWriter>> Start(std::unique_ptr<ShardStore> shard,
                                                            ShardWriterOptions options);
  // Folds what is queued, then stops.
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Queues a direct append of `event`, whose serialization is `payload`
  // (validated by the caller: the fold does not parse it again). `done` runs
  // once, on the writer thread, after the group's write; it must not block.
  // Once the writer is closing, `done` runs at once on the caller's thread
  // with UNAVAILABLE (nothing written).
  void Append(predlog::v1::AuditEvent event, std::string payload, AppendCallback done);

  // Folds `messages` (Kafka messages of one partition, offsets increasing) in
  // the next group commit and returns their results; blocks until written.
  // Errors as Append's.
  absl::StatusOr<BatchResult> ApplyBatch(absl::Span<const SourceMessage> messages);

  // Signs a checkpoint of the shard's log as it is now, signed now (its
  // signed-at line says so, however long ago the log last grew): the signed
  // note (storage/signed_note.h). FAILED_PRECONDITION without
  // options.checkpoint_signer; otherwise ShardStore::SignCheckpoint's
  // errors. Thread-safe.
  absl::StatusOr<std::string> SignCheckpoint();

  const ShardStore& shard() const { return *shard_; }
  // Group commits written successfully so far (each one WriteBatch, one sync).
  uint64_t groups_written() const { return groups_written_.load(std::memory_order_relaxed); }

 private:
  struct DirectAppend {
    predlog::v1::AuditEvent event;
    std::string payload;
    AppendCallback done;
  };
  struct KafkaBatch {
    absl::Span<const SourceMessage> messages;
    absl::StatusOr<BatchResult> result;
    bool done = false;
  };

  ShardWriter(std::unique_ptr<ShardStore> shard, ShardWriterOptions options);
  void Run();
  // Writes one group: `appends` and at most one Kafka batch (`kafka`, may be null).
  void WriteGroup(std::vector<DirectAppend>& appends, KafkaBatch* kafka);
  void MaybeSnapshot();
  // Signs a checkpoint when the schedule says so.
  void MaybeCheckpoint();
  // How long the writer may sleep before the time schedule of checkpoints
  // needs it; InfiniteDuration when it does not.
  absl::Duration CheckpointDue() const;

  // Constant after construction.
  const std::unique_ptr<ShardStore> shard_;
  const ShardWriterOptions options_;

  mutable absl::Mutex mu_;
  std::deque<DirectAppend> appends_ ABSL_GUARDED_BY(mu_);
  std::deque<KafkaBatch*> batches_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::atomic<uint64_t> groups_written_{0};

  // Writer thread only.
  uint64_t last_snapshot_index_ = 0;
  absl::Time last_snapshot_time_;
  uint64_t last_checkpoint_size_ = 0;
  absl::Time last_checkpoint_time_;
  std::thread thread_;
};

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_SHARD_WRITER_H_
