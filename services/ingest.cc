#include "services/ingest.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/kafka_config.h"
#include "storage/logging.h"
#include "storage/status_macros.h"

namespace predlog::services {
namespace {

// How many folded results per partition are kept for late waiters.
constexpr size_t kRecentResults = 50'000;

}  // namespace

absl::StatusOr<std::unique_ptr<Ingest>> Ingest::Start(const IngestOptions& options) {
  if (options.data_dir.empty())
    return absl::InvalidArgumentError("IngestOptions.data_dir is empty");
  if (options.bootstrap_servers.empty()) {
    return absl::InvalidArgumentError("IngestOptions.bootstrap_servers is empty");
  }
  if (options.incarnation.empty()) {
    return absl::InvalidArgumentError("IngestOptions.incarnation is empty");
  }
  if (options.partitions < 1)
    return absl::InvalidArgumentError("IngestOptions.partitions must be >= 1");
  std::unique_ptr<Ingest> ingest(new Ingest(options));

  rd_kafka_topic_partition_list_t* assignment =
      rd_kafka_topic_partition_list_new(options.partitions);
  for (int p = 0; p < options.partitions; ++p) {
    storage::ShardOptions shard_options;
    shard_options.name = absl::StrCat(kEventsTopic, "-", p);
    shard_options.dir = absl::StrCat(options.data_dir, "/shards/", shard_options.name);
    absl::StatusOr<std::unique_ptr<storage::ShardStore>> shard =
        storage::ShardStore::Open(shard_options);
    if (!shard.ok()) {
      rd_kafka_topic_partition_list_destroy(assignment);
      return shard.status();
    }
    const storage::ShardHead head = (*shard)->Head();
    // Resume right after the shard's position in the same incarnation; a new
    // incarnation is read from its beginning.
    const bool same = head.last_source && head.last_source->incarnation == options.incarnation;
    rd_kafka_topic_partition_list_add(assignment, kEventsTopic, p)->offset =
        same ? head.last_source->offset + 1 : RD_KAFKA_OFFSET_BEGINNING;
    absl::StatusOr<std::vector<storage::SnapshotInfo>> snapshots = (*shard)->ListSnapshots();
    if (!snapshots.ok()) {
      rd_kafka_topic_partition_list_destroy(assignment);
      return snapshots.status();
    }
    ingest->last_snapshot_.emplace_back(
        snapshots->empty() ? 0 : snapshots->back().index,
        snapshots->empty() ? absl::Now() : snapshots->back().created_at);
    ingest->shards_.push_back(std::move(*shard));
  }
  {
    absl::MutexLock lock(&ingest->mu_);
    ingest->waiters_.resize(options.partitions);
    for (int p = 0; p < options.partitions; ++p) {
      const storage::ShardHead head = ingest->shards_[p]->Head();
      if (head.last_source && head.last_source->incarnation == options.incarnation) {
        ingest->waiters_[p].folded_through = head.last_source->offset;
      }
    }
  }

  absl::StatusOr<rd_kafka_t*> consumer = NewKafkaClient(
      RD_KAFKA_CONSUMER, {
                             {"bootstrap.servers", options.bootstrap_servers},
                             {"group.id", "predlog-ingest"},
                             {"enable.auto.commit", "false"},
                             // An offset that is gone is an explicit error, never a skip.
                             {"auto.offset.reset", "error"},
                             {"enable.partition.eof", "false"},
                             {"fetch.wait.max.ms", "1"},
                             {"fetch.error.backoff.ms", "10"},
                             {"log_level", "4"},
                         });
  if (!consumer.ok()) {
    rd_kafka_topic_partition_list_destroy(assignment);
    return consumer.status();
  }
  ingest->consumer_ = *consumer;
  rd_kafka_poll_set_consumer(ingest->consumer_);
  // Partitions the shards do not cover would never be folded, and queries
  // would look for a subject in the wrong shard: refuse to start instead.
  {
    rd_kafka_topic_t* topic = rd_kafka_topic_new(ingest->consumer_, kEventsTopic, nullptr);
    const rd_kafka_metadata_t* metadata = nullptr;
    const rd_kafka_resp_err_t err =
        rd_kafka_metadata(ingest->consumer_, 0, topic, &metadata, 10'000);
    int topic_partitions = -1;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && metadata->topic_cnt == 1 &&
        metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      topic_partitions = metadata->topics[0].partition_cnt;
    }
    if (metadata != nullptr) rd_kafka_metadata_destroy(metadata);
    rd_kafka_topic_destroy(topic);
    if (topic_partitions != options.partitions) {
      rd_kafka_topic_partition_list_destroy(assignment);
      if (topic_partitions < 0) {
        return absl::UnavailableError(absl::StrCat("kafka at ", options.bootstrap_servers,
                                                   ": no metadata for ", kEventsTopic));
      }
      return absl::FailedPreconditionError(absl::StrCat(kEventsTopic, " has ", topic_partitions,
                                                        " partitions but --partitions is ",
                                                        options.partitions, "; they must match"));
    }
  }
  const rd_kafka_resp_err_t err = rd_kafka_assign(ingest->consumer_, assignment);
  rd_kafka_topic_partition_list_destroy(assignment);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(absl::StrCat("kafka assign: ", rd_kafka_err2str(err)));
  }
  ingest->thread_ = std::thread([raw = ingest.get()] { raw->Run(); });
  return ingest;
}

Ingest::~Ingest() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (consumer_ != nullptr) {
    rd_kafka_consumer_close(consumer_);
    rd_kafka_destroy(consumer_);
  }
  FailWaiters(absl::UnavailableError("ingest stopped before the event was folded"));
}

void Ingest::Run() {
  std::vector<std::vector<rd_kafka_message_t*>> by_partition(shards_.size());
  while (!stop_.load()) {
    size_t polled = 0;

    for (rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_, 50); m != nullptr;
         m = polled < options_.max_batch_messages ? rd_kafka_consumer_poll(consumer_, 0)
                                                  : nullptr) {
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        PREDLOG_LOG(ERROR) << "ingest: partition " << m->partition << " offset " << m->offset
                           << ": " << rd_kafka_message_errstr(m);
        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && m->partition >= 0 &&
            m->partition < static_cast<int32_t>(shards_.size())) {
          needs_recovery_.insert(m->partition);
        }
        rd_kafka_message_destroy(m);
        continue;
      }
      if (m->partition < 0 || m->partition >= static_cast<int32_t>(shards_.size())) {
        PREDLOG_LOG(ERROR) << "ingest: message for unknown partition " << m->partition;
        rd_kafka_message_destroy(m);
        continue;
      }
      by_partition[m->partition].push_back(m);
      ++polled;
    }
    for (size_t p = 0; p < by_partition.size(); ++p) {
      if (!by_partition[p].empty()) FoldPartition(static_cast<int32_t>(p), by_partition[p]);
    }
    // Partitions stopped by an offset error fetch nothing until recovered;
    // retry each second until it works, never leave a shard silently stuck.
    if (!needs_recovery_.empty() && absl::Now() >= next_recovery_attempt_) {
      for (auto it = needs_recovery_.begin(); it != needs_recovery_.end();) {
        it = RecordGapAndResume(*it) ? needs_recovery_.erase(it) : std::next(it);
      }
      stalled_partitions_.store(static_cast<int>(needs_recovery_.size()));
      next_recovery_attempt_ = absl::Now() + absl::Seconds(1);
    }
  }
}

bool Ingest::RecordGapAndResume(int32_t partition) {
  storage::ShardStore& shard = *shards_[partition];
  int64_t low = -1, high = -1;
  const rd_kafka_resp_err_t err =
      rd_kafka_query_watermark_offsets(consumer_, kEventsTopic, partition, &low, &high, 5000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    PREDLOG_LOG(ERROR) << "ingest: " << shard.name()
                       << ": watermarks unavailable, will retry: " << rd_kafka_err2str(err);
    return false;
  }
  const storage::ShardHead head = shard.Head();
  const int64_t next = head.last_source && head.last_source->incarnation == options_.incarnation
                           ? head.last_source->offset + 1
                           : 0;
  if (next > high) {
    // The source went backwards under us (a broker that restarted empty, a
    // recreated topic): offsets no longer name what was folded. Refuse to
    // guess; a restart of the ingest detects the new incarnation.
    PREDLOG_LOG(ERROR) << "ingest: " << shard.name() << ": STALLED: the source's high watermark "
                       << high << " is below the shard's next offset " << next
                       << "; the source restarted or was recreated. Restart the ingest.";
    return false;
  }
  if (low > next) {
    // Offsets [next, low) are gone from Kafka: say so in the shard's own log.
    const std::string reason =
        absl::StrCat("offsets ", next, "..", low - 1, " of ", kEventsTopic, "-", partition,
                     " were no longer in Kafka (low watermark ", low, ") when the ingest asked");
    storage::SourceMessage gap{options_.incarnation, low - 1, reason, next};
    absl::StatusOr<storage::BatchResult> result = shard.ApplyBatch({&gap, 1});
    if (!result.ok()) {
      PREDLOG_LOG(ERROR) << "ingest: " << shard.name() << ": record gap: " << result.status();
      return false;
    }
    PREDLOG_LOG(ERROR) << "ingest: " << shard.name() << ": GAP recorded: " << reason;
    std::vector<FoldCallback> lost;
    {
      absl::MutexLock lock(&mu_);
      PartitionWaiters& w = waiters_[partition];
      w.folded_through = std::max(w.folded_through, low - 1);
      for (auto it = w.waiting.begin(); it != w.waiting.end() && it->first < low;) {
        for (auto& done : it->second) lost.push_back(std::move(done));
        it = w.waiting.erase(it);
      }
    }
    for (auto& done : lost) {
      done(
          absl::DataLossError(absl::StrCat("the event left Kafka before it was folded: ", reason)));
    }
  }
  // A partition stopped by an offset error cannot be seeked; assign it anew.
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, kEventsTopic, partition)->offset = std::max(low, next);
  rd_kafka_error_t* error = rd_kafka_incremental_unassign(consumer_, list);
  if (error == nullptr) error = rd_kafka_incremental_assign(consumer_, list);
  const bool ok = error == nullptr;
  if (!ok) {
    PREDLOG_LOG(ERROR) << "ingest: reassign " << shard.name() << ": "
                       << rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
  } else {
    PREDLOG_LOG(INFO) << "ingest: " << shard.name() << " resumes at offset " << std::max(low, next);
  }
  rd_kafka_topic_partition_list_destroy(list);
  return ok;
}

void Ingest::FoldPartition(int32_t partition, std::vector<rd_kafka_message_t*>& messages) {
  std::vector<storage::SourceMessage> batch;
  batch.reserve(messages.size());
  for (rd_kafka_message_t* m : messages) {
    batch.push_back(
        storage::SourceMessage{options_.incarnation, m->offset,
                               absl::string_view(static_cast<const char*>(m->payload), m->len)});
  }
  absl::StatusOr<storage::BatchResult> result = shards_[partition]->ApplyBatch(batch);
  // A failed write is retried from Kafka: seek back to the batch's first
  // offset, after a pause so a persistent failure (disk full) does not spin.
  if (!result.ok()) {
    PREDLOG_LOG(ERROR) << "ingest: " << shards_[partition]->name() << ": " << result.status();
    absl::SleepFor(absl::Milliseconds(200));
    rd_kafka_topic_partition_list_t* seek = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(seek, kEventsTopic, partition)->offset = messages[0]->offset;
    rd_kafka_error_t* error = rd_kafka_seek_partitions(consumer_, seek, 5000);
    if (error != nullptr) rd_kafka_error_destroy(error);
    rd_kafka_topic_partition_list_destroy(seek);
  } else {
    std::vector<std::pair<FoldCallback, FoldReceipt>> ready;
    {
      absl::MutexLock lock(&mu_);
      PartitionWaiters& w = waiters_[partition];
      for (size_t i = 0; i < messages.size(); ++i) {
        const int64_t offset = messages[i]->offset;
        w.folded_through = std::max(w.folded_through, offset);
        const storage::MessageResult& r = result->messages[i];
        // A redelivery says nothing about the message's own outcome: keep the first.
        if (r.outcome != storage::FoldOutcome::kRedelivered) w.recent[offset] = r;
        if (auto it = w.waiting.find(offset); it != w.waiting.end()) {
          for (auto& done : it->second) {
            ready.emplace_back(std::move(done), FoldReceipt{shards_[partition]->name(), r});
          }
          w.waiting.erase(it);
        }
      }
      while (w.recent.size() > kRecentResults) w.recent.erase(w.recent.begin());
    }
    for (auto& [done, receipt] : ready) done(std::move(receipt));
  }
  for (rd_kafka_message_t* m : messages) rd_kafka_message_destroy(m);
  messages.clear();
  MaybeSnapshot(partition);
}

void Ingest::MaybeSnapshot(int32_t partition) {
  storage::ShardStore& shard = *shards_[partition];
  auto& [last_index, last_time] = last_snapshot_[partition];
  const uint64_t next_index = shard.Head().next_index;
  if (next_index == last_index) return;
  const absl::Time now = absl::Now();
  const bool by_count = options_.snapshot_every_events > 0 &&
                        next_index - last_index >= options_.snapshot_every_events;
  const bool by_time =
      options_.snapshot_every > absl::ZeroDuration() && now - last_time >= options_.snapshot_every;
  if (!by_count && !by_time) return;
  absl::StatusOr<storage::SnapshotInfo> snapshot = shard.CreateSnapshot(now);
  if (!snapshot.ok()) {
    PREDLOG_LOG(ERROR) << "ingest: " << shard.name() << ": snapshot: " << snapshot.status();
    last_time = now;  // retry on the next schedule, not on every batch
    return;
  }
  last_index = snapshot->index;
  last_time = now;
  absl::StatusOr<int> pruned = shard.PruneSnapshots(options_.snapshot_retention, now);
  if (!pruned.ok()) {
    PREDLOG_LOG(ERROR) << "ingest: " << shard.name() << ": prune snapshots: " << pruned.status();
  }
}

void Ingest::AwaitFold(int32_t partition, int64_t offset, FoldCallback done) {
  if (partition < 0 || partition >= partitions()) {
    done(absl::InternalError(absl::StrCat("no shard for partition ", partition)));
    return;
  }
  std::optional<FoldReceipt> receipt;
  {
    absl::MutexLock lock(&mu_);
    PartitionWaiters& w = waiters_[partition];
    if (offset > w.folded_through) {
      w.waiting[offset].push_back(std::move(done));
      return;
    }
    if (auto it = w.recent.find(offset); it != w.recent.end()) {
      receipt = FoldReceipt{shards_[partition]->name(), it->second};
    }
  }
  if (!receipt.has_value()) {
    done(absl::DataLossError(absl::StrCat("partition ", partition, " offset ", offset,
                                          " was folded too long ago to report its outcome, or "
                                          "was lost in a recorded gap")));
    return;
  }
  done(std::move(*receipt));
}

std::vector<PartitionStatus> Ingest::Status() const {
  std::vector<PartitionStatus> out;
  for (int p = 0; p < partitions(); ++p) {
    PartitionStatus status{shards_[p]->name(), shards_[p]->Head(), -1};
    int64_t low = -1, high = -1;
    if (rd_kafka_get_watermark_offsets(consumer_, kEventsTopic, p, &low, &high) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      status.high_watermark = high;
    }
    out.push_back(std::move(status));
  }
  return out;
}

void Ingest::CancelWaiters() {
  FailWaiters(absl::UnavailableError("predlogd is shutting down; the event may still be folded"));
}

void Ingest::FailWaiters(const absl::Status& status) {
  std::vector<FoldCallback> failed;
  {
    absl::MutexLock lock(&mu_);
    for (PartitionWaiters& w : waiters_) {
      for (auto& [offset, callbacks] : w.waiting) {
        for (auto& done : callbacks) failed.push_back(std::move(done));
      }
      w.waiting.clear();
    }
  }
  for (auto& done : failed) done(status);
}

}  // namespace predlog::services
