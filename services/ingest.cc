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
  for (int p = 0; p < options.partitions; ++p) ingest->sources_.push_back({kEventsTopic, p});
  ingest->sources_.push_back({kRegistryTopic, 0});
  const int shard_count = static_cast<int>(ingest->sources_.size());

  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(shard_count);
  for (const ShardSource& source : ingest->sources_) {
    storage::ShardOptions shard_options;
    shard_options.name = absl::StrCat(source.topic, "-", source.partition);
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
    rd_kafka_topic_partition_list_add(assignment, source.topic.c_str(), source.partition)->offset =
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
    ingest->waiters_.resize(shard_count);
    for (int i = 0; i < shard_count; ++i) {
      const storage::ShardHead head = ingest->shards_[i]->Head();
      if (head.last_source && head.last_source->incarnation == options.incarnation) {
        ingest->waiters_[i].folded_through = head.last_source->offset;
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
  for (const auto& [topic_name, expected_partitions] :
       {std::pair<const char*, int>{kEventsTopic, options.partitions}, {kRegistryTopic, 1}}) {
    rd_kafka_topic_t* topic = rd_kafka_topic_new(ingest->consumer_, topic_name, nullptr);
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
    if (topic_partitions != expected_partitions) {
      rd_kafka_topic_partition_list_destroy(assignment);
      if (topic_partitions < 0) {
        return absl::UnavailableError(
            absl::StrCat("kafka at ", options.bootstrap_servers, ": no metadata for ", topic_name));
      }
      return absl::FailedPreconditionError(
          absl::StrCat(topic_name, " has ", topic_partitions, " partitions but ",
                       topic_name == kEventsTopic ? "--partitions is " : "predlog needs ",
                       expected_partitions, "; they must match"));
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

int Ingest::ShardOf(absl::string_view topic, int32_t partition) const {
  if (topic == kEventsTopic) return partition >= 0 && partition < partitions() ? partition : -1;
  if (topic == kRegistryTopic && partition == 0) return static_cast<int>(shards_.size()) - 1;
  return -1;
}

void Ingest::Run() {
  std::vector<std::vector<rd_kafka_message_t*>> by_shard(shards_.size());
  while (!stop_.load()) {
    size_t polled = 0;

    for (rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_, 50); m != nullptr;
         m = polled < options_.max_batch_messages ? rd_kafka_consumer_poll(consumer_, 0)
                                                  : nullptr) {
      const char* topic = m->rkt != nullptr ? rd_kafka_topic_name(m->rkt) : "";
      const int shard = ShardOf(topic, m->partition);
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        PREDLOG_LOG(ERROR) << "ingest: " << topic << "-" << m->partition << " offset " << m->offset
                           << ": " << rd_kafka_message_errstr(m);
        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && shard >= 0) {
          needs_recovery_.insert(shard);
        }
        rd_kafka_message_destroy(m);
        continue;
      }
      if (shard < 0) {
        PREDLOG_LOG(ERROR) << "ingest: message for unknown partition " << topic << "-"
                           << m->partition;
        rd_kafka_message_destroy(m);
        continue;
      }
      by_shard[shard].push_back(m);
      ++polled;
    }
    for (size_t i = 0; i < by_shard.size(); ++i) {
      if (!by_shard[i].empty()) FoldShard(static_cast<int>(i), by_shard[i]);
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

bool Ingest::RecordGapAndResume(int shard_id) {
  storage::ShardStore& shard = *shards_[shard_id];
  const ShardSource& source = sources_[shard_id];
  int64_t low = -1, high = -1;
  const rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
      consumer_, source.topic.c_str(), source.partition, &low, &high, 5000);
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
        absl::StrCat("offsets ", next, "..", low - 1, " of ", shard.name(),
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
      PartitionWaiters& w = waiters_[shard_id];
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
  rd_kafka_topic_partition_list_add(list, source.topic.c_str(), source.partition)->offset =
      std::max(low, next);
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

void Ingest::FoldShard(int shard_id, std::vector<rd_kafka_message_t*>& messages) {
  std::vector<storage::SourceMessage> batch;
  batch.reserve(messages.size());
  for (rd_kafka_message_t* m : messages) {
    batch.push_back(
        storage::SourceMessage{options_.incarnation, m->offset,
                               absl::string_view(static_cast<const char*>(m->payload), m->len)});
  }
  storage::ShardStore& shard = *shards_[shard_id];
  absl::StatusOr<storage::BatchResult> result = shard.ApplyBatch(batch);
  // A failed write is retried from Kafka: seek back to the batch's first
  // offset, after a pause so a persistent failure (disk full) does not spin.
  if (!result.ok()) {
    PREDLOG_LOG(ERROR) << "ingest: " << shard.name() << ": " << result.status();
    absl::SleepFor(absl::Milliseconds(200));
    rd_kafka_topic_partition_list_t* seek = rd_kafka_topic_partition_list_new(1);
    const ShardSource& source = sources_[shard_id];
    rd_kafka_topic_partition_list_add(seek, source.topic.c_str(), source.partition)->offset =
        messages[0]->offset;
    rd_kafka_error_t* error = rd_kafka_seek_partitions(consumer_, seek, 5000);
    if (error != nullptr) rd_kafka_error_destroy(error);
    rd_kafka_topic_partition_list_destroy(seek);
  } else {
    std::vector<std::pair<FoldCallback, FoldReceipt>> ready;
    {
      absl::MutexLock lock(&mu_);
      PartitionWaiters& w = waiters_[shard_id];
      for (size_t i = 0; i < messages.size(); ++i) {
        const int64_t offset = messages[i]->offset;
        w.folded_through = std::max(w.folded_through, offset);
        const storage::MessageResult& r = result->messages[i];
        // A redelivery says nothing about the message's own outcome: keep the first.
        if (r.outcome != storage::FoldOutcome::kRedelivered) w.recent[offset] = r;
        if (auto it = w.waiting.find(offset); it != w.waiting.end()) {
          for (auto& done : it->second) {
            ready.emplace_back(std::move(done), FoldReceipt{shard.name(), r});
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
  MaybeSnapshot(shard_id);
}

void Ingest::MaybeSnapshot(int shard_id) {
  storage::ShardStore& shard = *shards_[shard_id];
  auto& [last_index, last_time] = last_snapshot_[shard_id];
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

void Ingest::AwaitFold(absl::string_view topic, int32_t partition, int64_t offset,
                       FoldCallback done) {
  const int shard_id = ShardOf(topic, partition);
  if (shard_id < 0) {
    done(absl::InternalError(absl::StrCat("no shard for ", topic, "-", partition)));
    return;
  }
  std::optional<FoldReceipt> receipt;
  {
    absl::MutexLock lock(&mu_);
    PartitionWaiters& w = waiters_[shard_id];
    if (offset > w.folded_through) {
      w.waiting[offset].push_back(std::move(done));
      return;
    }
    if (auto it = w.recent.find(offset); it != w.recent.end()) {
      receipt = FoldReceipt{shards_[shard_id]->name(), it->second};
    }
  }
  if (!receipt.has_value()) {
    done(absl::DataLossError(absl::StrCat(topic, "-", partition, " offset ", offset,
                                          " was folded too long ago to report its outcome, or "
                                          "was lost in a recorded gap")));
    return;
  }
  done(std::move(*receipt));
}

std::vector<PartitionStatus> Ingest::Status() const {
  std::vector<PartitionStatus> out;
  for (size_t i = 0; i < shards_.size(); ++i) {
    PartitionStatus status{shards_[i]->name(), shards_[i]->Head(), -1};
    int64_t low = -1, high = -1;
    if (rd_kafka_get_watermark_offsets(consumer_, sources_[i].topic.c_str(), sources_[i].partition,
                                       &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR) {
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
