// Ingest: consumes predlog.events and predlog.registry and folds each
// partition into its shard (data_dir/shards/<topic>-<p>/), one
// ShardStore::ApplyBatch per partition per poll batch. The shard, not Kafka's committed offset, is
// the truth about where to resume: each partition is assigned at the offset just after its shard's
// stored source position (or at the beginning when the source is a new incarnation).
//
// Thread-safe: one internal thread folds; AwaitFold and shard reads may be
// called from any thread.
#ifndef PREDLOG_SERVICES_INGEST_H_
#define PREDLOG_SERVICES_INGEST_H_

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/shard_store.h"

namespace predlog::services {

struct IngestOptions {
  std::string data_dir;           // required; shards live under <data_dir>/shards/
  std::string bootstrap_servers;  // required
  // Name of the source: the embedded broker's incarnation, or a name for the
  // real cluster's topic. Required.
  std::string incarnation;
  int partitions = 4;  // of predlog.events; must be >= 1 (predlog.registry has 1)
  // Most messages folded into one partition's WriteBatch.
  size_t max_batch_messages = 1000;
  // Snapshot a shard once this many records were added since its last
  // snapshot (0: never by count) ...
  uint64_t snapshot_every_events = 100'000;
  // ... or once this much time passed with new records (zero: never by time).
  absl::Duration snapshot_every = absl::Hours(1);
  // What pruning after each snapshot keeps.
  storage::RetentionPolicy snapshot_retention;
};

// What became of one Kafka message.
struct FoldReceipt {
  std::string shard;
  storage::MessageResult result;
};

// One partition as the metrics and status calls show it.
struct PartitionStatus {
  std::string shard;
  storage::ShardHead head;
  // Kafka's high watermark as last seen by the consumer (-1: not yet known).
  int64_t high_watermark = -1;

  // Messages in Kafka not yet folded: high_watermark - (last folded offset +
  // 1); -1 while the watermark is unknown.
  int64_t consumer_lag() const {
    if (high_watermark < 0) return -1;
    const int64_t next = head.last_source ? head.last_source->offset + 1 : 0;
    return std::max<int64_t>(0, high_watermark - next);
  }
};

class Ingest {
 public:
  using FoldCallback = std::function<void(absl::StatusOr<FoldReceipt>)>;

  static absl::StatusOr<std::unique_ptr<Ingest>> Start(const IngestOptions& options);
  // Stops folding after the current batch; waiters still pending get UNAVAILABLE.
  ~Ingest();
  Ingest(const Ingest&) = delete;
  Ingest& operator=(const Ingest&) = delete;

  // Calls `done` once the message at (topic, partition, offset) of the
  // current incarnation is folded (immediately if it already is). `done` runs
  // on the ingest thread or the caller's; it must not block.
  void AwaitFold(absl::string_view topic, int32_t partition, int64_t offset, FoldCallback done);

  // Partitions of predlog.events.
  int partitions() const { return options_.partitions; }
  // Every shard: predlog.events partitions in order, then the registry.
  std::vector<PartitionStatus> Status() const;
  // Partitions that stopped folding and could not yet be recovered.
  int stalled_partitions() const { return stalled_partitions_.load(); }
  // Answers every call still waiting for a fold with UNAVAILABLE (shutdown).
  void CancelWaiters();
  // Borrowed; valid for the Ingest's lifetime.
  const storage::ShardStore& shard(int partition) const { return *shards_[partition]; }
  const storage::ShardStore& registry() const { return *shards_.back(); }

 private:
  // Shards are numbered: predlog.events partitions 0..N-1, then the registry.
  struct ShardSource {
    std::string topic;
    int32_t partition = 0;
  };

  explicit Ingest(IngestOptions options) : options_(std::move(options)) {}
  // The shard folding (topic, partition), or -1.
  int ShardOf(absl::string_view topic, int32_t partition) const;
  void Run();
  void FoldShard(int shard, std::vector<rd_kafka_message_t*>& messages);
  // After Kafka answered "offset out of range": records the lost offsets as a
  // SourceGap in the shard (never a silent skip) and resumes at the low
  // watermark. False when it could not (retried on later loop turns).
  bool RecordGapAndResume(int shard);
  // Takes and prunes snapshots of `shard` when its schedule says so.
  void MaybeSnapshot(int shard);
  void FailWaiters(const absl::Status& status);

  const IngestOptions options_;
  std::vector<ShardSource> sources_;
  std::vector<std::unique_ptr<storage::ShardStore>> shards_;
  // Ingest thread only: per shard, the index and time of its last snapshot.
  std::vector<std::pair<uint64_t, absl::Time>> last_snapshot_;
  rd_kafka_t* consumer_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  // Ingest thread only: shards stopped by an offset error, to recover.
  std::set<int> needs_recovery_;
  absl::Time next_recovery_attempt_ = absl::InfinitePast();
  // Partitions that could not be recovered (metric: a stalled shard).
  std::atomic<int> stalled_partitions_{0};

  struct PartitionWaiters {
    int64_t folded_through = -1;  // last offset of this incarnation handled
    std::map<int64_t, std::vector<FoldCallback>> waiting;
    // Recent results, so a waiter that arrives after its fold is answered.
    std::map<int64_t, storage::MessageResult> recent;
  };
  absl::Mutex mu_;
  std::vector<PartitionWaiters> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_INGEST_H_
