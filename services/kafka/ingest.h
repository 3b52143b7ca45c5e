// Ingest: consumes predlog.events, predlog.registry and predlog.access (the
// access trail) and folds each
// partition into its shard (data_dir/shards/<topic>-<p>/), one batch per
// partition per poll, through the shard's one ShardWriter (which the
// gateway's direct appends share, so each group is one WriteBatch). The shard, not Kafka's
// committed offset, is the truth about where to resume: each partition is assigned at the offset
// just after its shard's stored source position (or at the beginning when the source is a new
// incarnation).
//
// Ownership. With a group id the ingest joins that Kafka consumer group
// (cooperative-sticky), and the instances of the group split the partitions
// of predlog.events. predlog.registry and predlog.access stay outside the
// group: every instance folds all of them (reruns and registry calls need the
// whole registry; ListAccess reads the whole trail).
// Each instance has its own data_dir, so a shard is that instance's copy of
// its partition, folded while the group assigns the partition here. Every
// shard stays open for the Ingest's lifetime, owned or not (readers hold
// references). A revocation first folds every message already polled for the
// revoked partitions, then stores their shard positions for librdkafka's
// commit on unassign, then gives them up. Committed offsets (also stored
// about once a second while folding)
// exist only so lag shows in Kafka tools; they are never read back: an
// assigned partition resumes from this instance's shard. Without a group id
// the instance folds every partition, as a gateway in front of the embedded
// broker needs (its acks wait for folds in this process).
//
// Thread-safe: one internal thread folds (and runs the rebalance callbacks);
// AwaitFold, Status and shard reads may be called from any thread.
#ifndef PREDLOG_SERVICES_KAFKA_INGEST_H_
#define PREDLOG_SERVICES_KAFKA_INGEST_H_

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/kafka/kafka_config.h"
#include "storage/artifact_store.h"
#include "storage/shard_group.h"
#include "storage/shard_set.h"
#include "storage/shard_store.h"
#include "storage/shard_writer.h"

namespace predlog::services {

struct IngestOptions {
  std::string data_dir;           // required; shards live under <data_dir>/shards/
  std::string bootstrap_servers;  // required
  // Name of the source: the embedded broker's incarnation, or a name for the
  // real cluster's topic. Required.
  std::string incarnation;
  // Of predlog.events; must be >= 1 (predlog.registry and predlog.access have 1).
  int partitions = 4;
  // Kafka consumer group whose instances split the partitions of
  // predlog.events; empty (the default): no group, this instance folds every
  // partition (what a gateway in front of the embedded broker needs).
  std::string group_id;
  // librdkafka settings applied to every consumer before predlog's own (a
  // --kafka_properties file: security.protocol, sasl.*, ssl.*);
  // ParseKafkaProperties refuses the ones predlog sets.
  KafkaSettings client_properties;
  // Most messages folded into one partition's WriteBatch.
  size_t max_batch_messages = 1000;
  // Snapshot a shard once this many records were added since its last
  // snapshot (0: never by count) ...
  uint64_t snapshot_every_events = 100'000;
  // ... or once this much time passed with new records (zero: never by time).
  absl::Duration snapshot_every = absl::Hours(1);
  // What pruning after each snapshot keeps.
  storage::RetentionPolicy snapshot_retention;
  // Against the embedded broker only: how long a fetch waits for data
  // (fetch.wait.max.ms). librdkafka's mock answers an empty fetch only after
  // all of it, even when data arrives meanwhile, so this bounds how long an
  // event produced to it waits to be folded, and sets the idle cost (one
  // empty fetch per wait). 1 ms where acks wait for folds through Kafka.
  absl::Duration embedded_fetch_wait = absl::Milliseconds(100);
  // Losses of acknowledged records an operator accepted, each
  // "<shard>:<first>..<last>" as the shard reported it: that shard records
  // exactly that loss and goes on (ShardOptions::accept_lost_range). Other
  // shards that lost records refuse writes and reads.
  std::vector<std::string> accept_data_loss;
  // Writes are refused (RESOURCE_EXHAUSTED) while a shard's filesystem has
  // less free (ShardOptions::min_free_bytes).
  uint64_t min_free_bytes = uint64_t{256} << 20;
  // Each shard's RocksDB block cache (ShardOptions::block_cache_bytes).
  size_t shard_block_cache_bytes = size_t{64} << 20;
  // The artifact store a ModelRegistered's artifact must be in before the
  // registry shard folds it (ShardOptions::artifacts). Borrowed; must outlive
  // the Ingest. Null: not checked.
  const storage::ArtifactStore* artifacts = nullptr;
  // fsync the shards' WAL on every group commit (ShardOptions::sync_writes):
  // an answered write survives a power loss, not only a killed process.
  bool sync_writes = true;
  // The key that signs every shard's checkpoints, with origin
  // "<key name>/<shard>" (ShardWriterOptions::checkpoint_signer) and the
  // shards line naming every shard this Ingest folds, per topic
  // (predlog.access/1 predlog.events/<partitions> predlog.registry/1, in
  // topic order; storage/signed_note.h);
  // null: no checkpoints. Borrowed; must outlive the Ingest.
  const storage::NoteSigner* checkpoint_signer = nullptr;
  // Their schedule (ShardWriterOptions::checkpoint_every_events, _every).
  uint64_t checkpoint_every_events = 10'000;
  absl::Duration checkpoint_every = absl::Minutes(1);
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
  // Whether this instance folds the partition now (the consumer group
  // assigned it here). A shard not owned keeps what it folded while it was.
  bool owned = false;
  // Non-empty when the shard lost acknowledged records and no operator
  // accepted it yet (ShardStore::CheckNotLost's message, naming the range).
  std::string lost;
  // Group commits the shard's writer made since this process started (one
  // WriteBatch and, with sync, one WAL fsync each): records / group commits
  // is how well group commit batches.
  uint64_t group_commits = 0;
  // Reads of the shard that found corrupt data (ShardStore::read_corruptions).
  uint64_t read_corruptions = 0;

  // Messages in Kafka not yet folded: high_watermark - (last folded offset +
  // 1); -1 while the watermark is unknown or the partition is not owned here
  // (its owner's lag is what counts).
  int64_t consumer_lag() const {
    if (!owned || high_watermark < 0) return -1;
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
  // on the ingest thread or the caller's; it must not block. FAILED_PRECONDITION when
  // another instance of the group folds the partition (now, or from a
  // revocation before the offset was folded here): the event is in Kafka and
  // is folded there. Before the group's first assignment arrives, waits.
  void AwaitFold(absl::string_view topic, int32_t partition, int64_t offset, FoldCallback done);

  // Partitions of predlog.events.
  int partitions() const { return options_.partitions; }
  // Every shard: predlog.events partitions in order, then the registry, then
  // the access trail.
  std::vector<PartitionStatus> Status() const;
  // OK when this instance folds every predlog.events partition in
  // `partitions` (always, without a group) and none of their shards lost
  // acknowledged records. Otherwise FAILED_PRECONDITION naming those another
  // instance of the group folds (a read of them here would miss what that
  // instance folded), or DATA_LOSS naming a shard's lost range. `what` names
  // the read.
  absl::Status CheckFoldedHere(const std::vector<int>& partitions, absl::string_view what) const;
  // The same for every predlog.events partition.
  absl::Status CheckAllFoldedHere(absl::string_view what) const;
  // Partitions that stopped folding and could not yet be recovered.
  int stalled_partitions() const { return stalled_partitions_.load(); }
  // Answers every call still waiting for a fold with UNAVAILABLE (shutdown).
  void CancelWaiters();
  // Borrowed; valid for the Ingest's lifetime.
  const storage::ShardStore& shard(int partition) const { return *shards_[partition]; }
  const storage::ShardStore& registry() const { return *shards_[registry_shard()]; }
  const storage::ShardStore& access() const { return *shards_[access_shard()]; }
  // The numbers of the registry's shard and the access trail's, in the
  // order Status() and SignCheckpoint use (after the partitions).
  int registry_shard() const { return options_.partitions; }
  int access_shard() const { return options_.partitions + 1; }
  // Every shard by that number (partitions, the registry, the access trail).
  const storage::ShardStore& shard_at(int number) const { return *shards_[number]; }
  // The number of the shard named `name` ("predlog.events-2"); -1 if none.
  int ShardNumberOf(absl::string_view name) const;
  // The shards as reads see them: partition_of is PartitionForKey, and
  // check_folded is CheckFoldedHere. Borrows this Ingest.
  storage::ShardSet Shards() const;
  // The one writer of the shard that folds (topic, partition) (ShardOf: a
  // predlog.events partition, the registry, the access trail); the gateway's
  // direct appends go through it, beside the ingest's own folds. Null when
  // no shard here folds that partition. Borrowed; valid for the Ingest's
  // lifetime.
  storage::ShardWriter* WriterOf(absl::string_view topic, int32_t partition) {
    const int shard = ShardOf(topic, partition);
    return shard < 0 ? nullptr : writers_[shard].get();
  }
  // Whether the shards sign checkpoints (IngestOptions::checkpoint_signer).
  bool signs_checkpoints() const { return options_.checkpoint_signer != nullptr; }
  // ShardWriter::SignCheckpoint of shard `shard` (partitions in order, then
  // the registry at partitions(), the access trail after it). Signing adds no record to the log, so
  // a reader may ask for it. Thread-safe.
  absl::StatusOr<std::string> SignCheckpoint(int shard) const {
    return writers_[shard]->SignCheckpoint();
  }

 private:
  // Shards are numbered: predlog.events partitions 0..N-1, then the
  // registry, then the access trail.
  struct ShardSource {
    std::string topic;
    int32_t partition = 0;
  };

  explicit Ingest(IngestOptions options) : options_(std::move(options)) {}
  // The shard folding (topic, partition), or -1.
  int ShardOf(absl::string_view topic, int32_t partition) const;
  // The next source offset `head` expects in the current incarnation; nullopt
  // when the shard holds nothing of it (a new incarnation is read from its
  // beginning). The one rule for where folding resumes.
  std::optional<int64_t> NextOffset(const storage::ShardHead& head) const;
  void Run();
  // Takes messages from `consumer` (waiting up to `first_wait_ms` for the
  // first, not at all after it) until it has none ready or
  // max_batch_messages were queued.
  void Poll(rd_kafka_t* consumer, int first_wait_ms);
  // Queues a polled message for its shard's next fold; false (and the message
  // released) when it is an error, unknown, or for a partition not owned here.
  bool Take(rd_kafka_message_t* m);
  // Folds what Take queued, then stores positions and retries stalled shards.
  void FoldPending();
  // Whether the group's first assignment arrived (always, without a group).
  bool AssignmentKnown() const;
  // The consumer that fetches `shard`: the registry's own outside a group.
  rd_kafka_t* ConsumerOf(int shard) const;
  // Folds and releases `messages`; false when the write failed (then they are
  // not folded and still in Kafka).
  bool FoldShard(int shard, std::vector<rd_kafka_message_t*>& messages);
  // After Kafka answered "offset out of range": records the lost offsets as a
  // SourceGap in the shard (never a silent skip) and resumes at the low
  // watermark. False when it could not (retried on later loop turns). A
  // partition no longer owned here is left alone (true).
  bool RecordGapAndResume(int shard);

  // Rebalancing, on the ingest thread (inside rd_kafka_consumer_poll) or in
  // the destructor's rd_kafka_consumer_close after the thread ended.
  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* partitions, void* opaque);
  static void OnCommit(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                       rd_kafka_topic_partition_list_t* offsets, void* opaque);
  // Starts fetching `shards` (all of one consumer) at their NextOffset
  // (incrementally: other partitions keep fetching) and marks them owned.
  // `by_group`: the group assigned them (the registry is assigned by hand).
  absl::Status Assign(const std::vector<int>& shards, bool incremental, bool by_group);
  // Folds what was polled for `shards`, stores their positions for the
  // commit on unassign (unless the assignment was lost), stops fetching them
  // and answers their waiters with NotFoldedHere.
  void Revoke(const std::vector<int>& shards, bool incremental, bool lost);
  // FAILED_PRECONDITION: `offset` of `shard` is for another instance to fold.
  absl::Status NotFoldedHere(int shard, int64_t offset) const;
  // Stores the positions of owned shards that advanced since last stored,
  // at most once per second, for librdkafka's auto-commit (visibility only).
  void StorePositions();
  // The offsets to commit for `shards` (their positions in this
  // incarnation), or nullptr when none has one. Caller destroys the list.
  rd_kafka_topic_partition_list_t* CommitList(const std::vector<int>& shards);
  void FailWaiters(const absl::Status& status);

  const IngestOptions options_;
  std::vector<ShardSource> sources_;
  // The predlog.events shards' group (misrouted arrivals, one record per
  // prediction_id across them); outlives the shards, which attach to it.
  std::unique_ptr<storage::ShardGroup> group_;
  // Per shard, its one writer (which owns the ShardStore and takes its
  // snapshots), and the store as readers see it.
  std::vector<std::unique_ptr<storage::ShardWriter>> writers_;
  std::vector<const storage::ShardStore*> shards_;
  // Ingest thread only: per shard, messages polled and not yet folded (the
  // revoke callback folds a revoked shard's before giving it up).
  std::vector<std::vector<rd_kafka_message_t*>> pending_;
  // Ingest thread only: per shard, whether the consumer fetches it now
  // (mirrored in PartitionWaiters::owned for other threads).
  std::vector<bool> assigned_;
  // Ingest thread only: per shard, the offset last stored or committed (-1:
  // none), and when StorePositions may run next.
  std::vector<int64_t> committed_;
  absl::Time next_commit_ = absl::InfinitePast();
  rd_kafka_t* consumer_ = nullptr;
  // With a group: the consumer of predlog.registry and predlog.access,
  // assigned by hand, so every instance folds both whole. Null without a group.
  rd_kafka_t* registry_consumer_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  // Ingest thread only: shards stopped by an offset error, to recover.
  std::set<int> needs_recovery_;
  // Ingest thread only: shards the group assigned here whose assign call
  // failed; retried with the recovery, so no partition is left unfetched.
  std::set<int> needs_assign_;
  // needs_recovery_ and needs_assign_ as the stalled_partitions metric.
  void UpdateStalled() {
    stalled_partitions_.store(static_cast<int>(needs_recovery_.size() + needs_assign_.size()));
  }
  absl::Time next_recovery_attempt_ = absl::InfinitePast();
  // Partitions that could not be recovered (metric: a stalled shard).
  std::atomic<int> stalled_partitions_{0};

  struct PartitionWaiters {
    bool owned = false;           // folded by this instance now
    int64_t folded_through = -1;  // last offset of this incarnation handled
    std::map<int64_t, std::vector<FoldCallback>> waiting;
    // Recent results, so a waiter that arrives after its fold is answered.
    std::map<int64_t, storage::MessageResult> recent;
  };
  mutable absl::Mutex mu_;
  std::vector<PartitionWaiters> waiters_ ABSL_GUARDED_BY(mu_);
  // False until the group's first assignment: until then a waiter for a
  // partition not (yet) owned waits instead of failing.
  bool assignment_known_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_KAFKA_INGEST_H_
