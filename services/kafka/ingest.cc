#include "services/kafka/ingest.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "services/kafka/embedded_broker.h"
#include "services/kafka/kafka_config.h"
#include "storage/logging.h"
#include "storage/signed_note.h"
#include "storage/status_macros.h"

namespace predlog::services {
namespace {

// How many folded results per partition are kept for late waiters.
constexpr size_t kRecentResults = 50'000;
// How long a stopping group member waits for its first assignment (see ~Ingest).
constexpr absl::Duration kFirstAssignmentWait = absl::Seconds(15);

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
  ingest->sources_.push_back({kAccessTopic, 0});
  const int shard_count = static_cast<int>(ingest->sources_.size());
  ingest->group_ = std::make_unique<storage::ShardGroup>(
      options.partitions, [partitions = options.partitions](absl::string_view key) {
        return PartitionForKey(key, partitions);
      });

  // Every checkpoint names the shards of this log family (topic -> count):
  // an auditor given an export of everything can then tell a shard left
  // out of it (services/export, VerifyExport).
  std::vector<std::string> checkpoint_extensions;
  if (options.checkpoint_signer != nullptr) {
    std::map<std::string, uint32_t> shard_counts;
    for (const ShardSource& source : ingest->sources_) {
      uint32_t& count = shard_counts[source.topic];
      count = std::max(count, static_cast<uint32_t>(source.partition) + 1);
    }
    ASSIGN_OR_RETURN(std::string shards_line, storage::ShardsLine(shard_counts));
    checkpoint_extensions.push_back(std::move(shards_line));
  }
  // Every shard opens now and stays open, owned or not: readers keep
  // references, and a partition may be assigned here at any rebalance.
  for (const ShardSource& source : ingest->sources_) {
    storage::ShardOptions shard_options;
    shard_options.name = absl::StrCat(source.topic, "-", source.partition);
    shard_options.dir = absl::StrCat(options.data_dir, "/shards/", shard_options.name);
    shard_options.sync_writes = options.sync_writes;
    for (const std::string& accepted : options.accept_data_loss) {
      if (absl::StartsWith(accepted, shard_options.name + ":")) {
        shard_options.accept_lost_range = accepted.substr(shard_options.name.size() + 1);
      }
    }
    shard_options.min_free_bytes = options.min_free_bytes;
    shard_options.block_cache_bytes = options.shard_block_cache_bytes;
    if (source.topic == kEventsTopic) {
      shard_options.group = ingest->group_.get();
      shard_options.partition = source.partition;
    } else if (source.topic == kRegistryTopic) {
      shard_options.artifacts = options.artifacts;
    } else {
      shard_options.access_trail = true;
    }
    ASSIGN_OR_RETURN(std::unique_ptr<storage::ShardStore> shard,
                     storage::ShardStore::Open(shard_options));
    storage::ShardWriterOptions writer_options;
    writer_options.snapshot_every_events = options.snapshot_every_events;
    writer_options.snapshot_every = options.snapshot_every;
    writer_options.snapshot_retention = options.snapshot_retention;
    writer_options.checkpoint_signer = options.checkpoint_signer;
    if (options.checkpoint_signer != nullptr) {
      writer_options.checkpoint_origin =
          absl::StrCat(options.checkpoint_signer->name(), "/", shard_options.name);
    }
    writer_options.checkpoint_extensions = checkpoint_extensions;
    writer_options.checkpoint_every_events = options.checkpoint_every_events;
    writer_options.checkpoint_every = options.checkpoint_every;
    ASSIGN_OR_RETURN(std::unique_ptr<storage::ShardWriter> writer,
                     storage::ShardWriter::Start(std::move(shard), writer_options));
    ingest->shards_.push_back(&writer->shard());
    ingest->writers_.push_back(std::move(writer));
  }
  ingest->pending_.resize(shard_count);
  ingest->assigned_.assign(shard_count, false);
  ingest->committed_.assign(shard_count, -1);
  const bool group = !options.group_id.empty();
  {
    absl::MutexLock lock(&ingest->mu_);
    ingest->waiters_.resize(shard_count);
    for (int i = 0; i < shard_count; ++i) {
      const std::optional<int64_t> next = ingest->NextOffset(ingest->shards_[i]->Head());
      if (next.has_value()) ingest->waiters_[i].folded_through = *next - 1;
    }
    // Without a group every partition is assigned below, before any waiter.
    ingest->assignment_known_ = !group;
  }

  KafkaSettings settings = {
      {"bootstrap.servers", options.bootstrap_servers},
      // An offset that is gone is an explicit error, never a skip.
      {"auto.offset.reset", "error"},
      {"enable.partition.eof", "false"},
      {"fetch.error.backoff.ms", "10"},
      {"max.partition.fetch.bytes", absl::StrCat(kMaxMessageBytes)},
      // Small requests go out at once instead of waiting behind an unacknowledged
      // one for the broker's delayed ACK (up to 40 ms).
      {"socket.nagle.disable", "true"},
      {"log_level", "4"},
  };
  // A --kafka_properties file's settings first; none of them is one predlog
  // sets (ParseKafkaProperties refuses those).
  settings.insert(settings.begin(), options.client_properties.begin(),
                  options.client_properties.end());
  const bool embedded = absl::StartsWith(options.incarnation, kEmbeddedIncarnationPrefix);
  if (embedded) {
    // A real broker answers a fetch as soon as data arrives, so there the
    // default long poll costs no latency; the mock does not (see
    // IngestOptions::embedded_fetch_wait).
    settings.emplace_back("fetch.wait.max.ms",
                          absl::StrCat(absl::ToInt64Milliseconds(options.embedded_fetch_wait)));
  }
  // The registry consumer (group mode) and the only consumer (no group) are
  // assigned their partitions by hand: the group id only names the client.
  KafkaSettings manual = settings;
  manual.emplace_back("group.id",
                      options.group_id.empty() ? "predlog-ingest" : options.group_id + "-registry");
  manual.emplace_back("enable.auto.commit", "false");
  if (!group) settings = manual;
  if (group) settings.emplace_back("group.id", options.group_id);
  if (group) {
    // Cooperative: a rebalance moves only the partitions that change owner;
    // the others keep folding through it.
    settings.emplace_back("partition.assignment.strategy", "cooperative-sticky");
    // Offsets are committed for visibility only. Periodically librdkafka's
    // auto-commit sends the positions StorePositions stored: it skips
    // commits while a rebalance is in progress, which a manual commit would
    // not, and in librdkafka 2.0.2 such a commit answered with a newer
    // generation makes the member lose its whole assignment (librdkafka
    // issue #4059). Revoke commits itself, inside the rebalance callback.
    settings.emplace_back("enable.auto.commit", "true");
    settings.emplace_back("auto.commit.interval.ms", "1000");
    settings.emplace_back("enable.auto.offset.store", "false");
    if (embedded) {
      // The embedded broker's coordinator (librdkafka 2.0.2's mock) holds
      // every rebalance of a running group open for session.timeout.ms - 1 s
      // and expires a member silent for one session; its first join into an
      // empty group takes a fixed 3 s. librdkafka's 45 s default would stall
      // a takeover for 44 s; 4 s makes it 3 s and still outlasts that first
      // join. A real cluster keeps the defaults (its brokers bound them).
      settings.emplace_back("session.timeout.ms", "4000");
      settings.emplace_back("heartbeat.interval.ms", "500");
    }
  }
  ASSIGN_OR_RETURN(rd_kafka_conf_t * conf, NewKafkaConf(settings));
  if (group) {
    rd_kafka_conf_set_rebalance_cb(conf, &Ingest::OnRebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, &Ingest::OnCommit);
  }
  rd_kafka_conf_set_opaque(conf, ingest.get());
  char errstr[512];
  ingest->consumer_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (ingest->consumer_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(absl::StrCat("rd_kafka_new: ", errstr));
  }
  rd_kafka_poll_set_consumer(ingest->consumer_);
  if (group) {
    // predlog.registry is small and totally ordered, and every instance needs
    // all of it: reruns look models up in it, and a gateway's registry calls
    // wait for their fold here. So it stays outside the group, folded by
    // every instance through a consumer of its own; so does predlog.access,
    // whose trail each instance's ListAccess reads whole.
    ASSIGN_OR_RETURN(ingest->registry_consumer_, NewKafkaClient(RD_KAFKA_CONSUMER, manual));
    rd_kafka_poll_set_consumer(ingest->registry_consumer_);
  }
  // Partitions the shards do not cover would never be folded, and queries
  // would look for a subject in the wrong shard: refuse to start instead.
  for (const auto& [topic_name, expected_partitions] :
       {std::pair<const char*, int>{kEventsTopic, options.partitions},
        {kRegistryTopic, 1},
        {kAccessTopic, 1}}) {
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
  if (group) {
    // Partitions arrive through OnRebalance, on the ingest thread's polls.
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, kEventsTopic, RD_KAFKA_PARTITION_UA);
    const rd_kafka_resp_err_t err = rd_kafka_subscribe(ingest->consumer_, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InternalError(
          absl::StrCat("kafka subscribe (group ", options.group_id, "): ", rd_kafka_err2str(err)));
    }
    PREDLOG_LOG(INFO) << "ingest: joining consumer group " << options.group_id;
    RETURN_IF_ERROR(ingest->Assign({ingest->registry_shard(), ingest->access_shard()},
                                   /*incremental=*/false, /*by_group=*/false));
  } else {
    std::vector<int> all(shard_count);
    for (int i = 0; i < shard_count; ++i) all[i] = i;
    RETURN_IF_ERROR(ingest->Assign(all, /*incremental=*/false, /*by_group=*/false));
  }
  ingest->thread_ = std::thread([raw = ingest.get()] { raw->Run(); });
  return ingest;
}

Ingest::~Ingest() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  // Run folds what it polls before it returns, so this is empty but for a
  // failed write; such messages stay in Kafka (the shard position says where
  // to resume). Messages go before their handle.
  for (auto& messages : pending_) {
    for (rd_kafka_message_t* m : messages) rd_kafka_message_destroy(m);
    messages.clear();
  }
  if (consumer_ != nullptr) {
    // librdkafka 2.0.2 aborts the process when a cooperative-sticky consumer
    // is destroyed before its first assignment (librdkafka issue #4312, fixed
    // in 2.3.0). So wait for it, bounded, polling to serve the rebalance;
    // messages polled now are left unfolded in Kafka (the shard position
    // does not move).
    bool assigned_once = true;
    if (!options_.group_id.empty()) {
      const absl::Time deadline = absl::Now() + kFirstAssignmentWait;
      while (!(assigned_once = AssignmentKnown()) && absl::Now() < deadline) {
        if (rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_, 100)) {
          rd_kafka_message_destroy(m);
        }
      }
    }
    // In a group this revokes the assignment through OnRebalance (on this
    // thread, the ingest thread having ended): positions are stored and
    // committed, and the group rebalances at once instead of after a session
    // timeout.
    rd_kafka_consumer_close(consumer_);
    if (assigned_once) {
      rd_kafka_destroy(consumer_);
    } else {
      PREDLOG_LOG(WARNING) << "ingest: group " << options_.group_id << " never assigned this "
                           << "instance anything; its Kafka handle is left undestroyed, as "
                           << "destroying it would abort (librdkafka issue #4312)";
    }
  }
  if (registry_consumer_ != nullptr) {
    rd_kafka_consumer_close(registry_consumer_);
    rd_kafka_destroy(registry_consumer_);
  }
  FailWaiters(absl::UnavailableError("ingest stopped before the event was folded"));
}

int Ingest::ShardOf(absl::string_view topic, int32_t partition) const {
  if (topic == kEventsTopic) return partition >= 0 && partition < partitions() ? partition : -1;
  if (topic == kRegistryTopic && partition == 0) return registry_shard();
  if (topic == kAccessTopic && partition == 0) return access_shard();
  return -1;
}

int Ingest::ShardNumberOf(absl::string_view name) const {
  for (size_t i = 0; i < shards_.size(); ++i) {
    if (shards_[i]->name() == name) return static_cast<int>(i);
  }
  return -1;
}

std::optional<int64_t> Ingest::NextOffset(const storage::ShardHead& head) const {
  if (!head.last_source || head.last_source->incarnation != options_.incarnation) {
    return std::nullopt;
  }
  return head.last_source->offset + 1;
}

void Ingest::Run() {
  // With a registry consumer beside the group's, the group's poll waits less,
  // so registry messages are not held up by an idle events topic.
  const int wait_ms = registry_consumer_ != nullptr ? 10 : 50;
  while (!stop_.load()) {
    // A rebalance callback may run inside any of these polls; it folds the
    // revoked shards' pending_ messages itself.
    Poll(consumer_, wait_ms);
    if (registry_consumer_ != nullptr) Poll(registry_consumer_, 0);
    FoldPending();
  }
}

void Ingest::Poll(rd_kafka_t* consumer, int first_wait_ms) {
  size_t taken = 0;
  for (rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, first_wait_ms); m != nullptr;
       m = taken < options_.max_batch_messages ? rd_kafka_consumer_poll(consumer, 0) : nullptr) {
    taken += Take(m) ? 1 : 0;
  }
}

bool Ingest::Take(rd_kafka_message_t* m) {
  const char* topic = m->rkt != nullptr ? rd_kafka_topic_name(m->rkt) : "";
  const int shard = ShardOf(topic, m->partition);
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    PREDLOG_LOG(ERROR) << "ingest: " << topic << "-" << m->partition << " offset " << m->offset
                       << ": " << rd_kafka_message_errstr(m);
    if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && shard >= 0 && assigned_[shard]) {
      needs_recovery_.insert(shard);
    }
    rd_kafka_message_destroy(m);
    return false;
  }
  if (shard < 0) {
    PREDLOG_LOG(ERROR) << "ingest: message for unknown partition " << topic << "-" << m->partition;
    rd_kafka_message_destroy(m);
    return false;
  }
  if (!assigned_[shard]) {
    // Fetched before a revocation and delivered after it: the new owner
    // folds it from Kafka; here it would fold into a shard given up.
    PREDLOG_LOG(WARNING) << "ingest: " << topic << "-" << m->partition << " offset " << m->offset
                         << " arrived after the partition was revoked; left "
                         << "to its new owner";
    rd_kafka_message_destroy(m);
    return false;
  }
  pending_[shard].push_back(m);
  return true;
}

void Ingest::FoldPending() {
  for (size_t i = 0; i < pending_.size(); ++i) {
    if (pending_[i].empty()) continue;
    const int64_t first = pending_[i].front()->offset;
    if (!FoldShard(static_cast<int>(i), pending_[i])) {
      if (shards_[i]->lost().has_value()) {
        // Refused until an operator accepts the loss (a restart): stop
        // fetching this partition rather than stall the others.
        rd_kafka_topic_partition_list_t* pause = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pause, sources_[i].topic.c_str(), sources_[i].partition);
        rd_kafka_pause_partitions(ConsumerOf(static_cast<int>(i)), pause);
        rd_kafka_topic_partition_list_destroy(pause);
        PREDLOG_LOG(ERROR) << "ingest: " << shards_[i]->name()
                           << ": paused until the loss is accepted";
        continue;
      }
      // A failed write is retried from Kafka: seek back to the batch's first
      // offset, after a pause so a persistent failure (disk full) does not spin.
      absl::SleepFor(absl::Milliseconds(200));
      rd_kafka_topic_partition_list_t* seek = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(seek, sources_[i].topic.c_str(), sources_[i].partition)
          ->offset = first;
      rd_kafka_error_t* error =
          rd_kafka_seek_partitions(ConsumerOf(static_cast<int>(i)), seek, 5000);
      if (error != nullptr) rd_kafka_error_destroy(error);
      rd_kafka_topic_partition_list_destroy(seek);
    }
  }
  if (!options_.group_id.empty()) StorePositions();
  // Partitions stopped by an offset error fetch nothing until recovered;
  // retry each second until it works, never leave a shard silently stuck.
  if ((!needs_recovery_.empty() || !needs_assign_.empty()) &&
      absl::Now() >= next_recovery_attempt_) {
    for (auto it = needs_recovery_.begin(); it != needs_recovery_.end();) {
      it = RecordGapAndResume(*it) ? needs_recovery_.erase(it) : std::next(it);
    }
    if (!needs_assign_.empty()) {
      const std::vector<int> shards(needs_assign_.begin(), needs_assign_.end());
      if (absl::Status status = Assign(shards, /*incremental=*/true, /*by_group=*/true);
          status.ok()) {
        needs_assign_.clear();
      } else {
        PREDLOG_LOG(ERROR) << "ingest: group " << options_.group_id << ": " << status;
      }
    }
    UpdateStalled();
    next_recovery_attempt_ = absl::Now() + absl::Seconds(1);
  }
}

rd_kafka_t* Ingest::ConsumerOf(int shard) const {
  return registry_consumer_ != nullptr && shard >= partitions() ? registry_consumer_ : consumer_;
}

bool Ingest::RecordGapAndResume(int shard_id) {
  // Reassigning a partition this instance no longer owns would fetch behind
  // the new owner's back; a later assignment seeks it anew anyway.
  if (!assigned_[shard_id]) return true;
  const storage::ShardStore& shard = *shards_[shard_id];
  const ShardSource& source = sources_[shard_id];
  int64_t low = -1, high = -1;
  rd_kafka_t* consumer = ConsumerOf(shard_id);
  const rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
      consumer, source.topic.c_str(), source.partition, &low, &high, 5000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    PREDLOG_LOG(ERROR) << "ingest: " << shard.name()
                       << ": watermarks unavailable, will retry: " << rd_kafka_err2str(err);
    return false;
  }
  const int64_t next = NextOffset(shard.Head()).value_or(0);
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
    absl::StatusOr<storage::BatchResult> result = writers_[shard_id]->ApplyBatch({&gap, 1});
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
  rd_kafka_error_t* error = rd_kafka_incremental_unassign(consumer, list);
  if (error == nullptr) error = rd_kafka_incremental_assign(consumer, list);
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

bool Ingest::FoldShard(int shard_id, std::vector<rd_kafka_message_t*>& messages) {
  std::vector<storage::SourceMessage> batch;
  batch.reserve(messages.size());
  for (rd_kafka_message_t* m : messages) {
    batch.push_back(
        storage::SourceMessage{options_.incarnation, m->offset,
                               absl::string_view(static_cast<const char*>(m->payload), m->len)});
  }
  const storage::ShardStore& shard = *shards_[shard_id];
  absl::StatusOr<storage::BatchResult> result = writers_[shard_id]->ApplyBatch(batch);
  if (!result.ok()) {
    PREDLOG_LOG(ERROR) << "ingest: " << shard.name() << ": " << result.status();
    // Callers waiting on these offsets get the write's status now (retry
    // later, or the shard's loss) instead of waiting out their deadline; the
    // batch itself is fetched again and folded once the shard can write.
    std::vector<FoldCallback> failed;
    {
      absl::MutexLock lock(&mu_);
      PartitionWaiters& w = waiters_[shard_id];
      for (rd_kafka_message_t* m : messages) {
        if (auto it = w.waiting.find(m->offset); it != w.waiting.end()) {
          for (auto& done : it->second) failed.push_back(std::move(done));
          w.waiting.erase(it);
        }
      }
    }
    for (auto& done : failed) done(result.status());
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
  return result.ok();
}

void Ingest::AwaitFold(absl::string_view topic, int32_t partition, int64_t offset,
                       FoldCallback done) {
  const int shard_id = ShardOf(topic, partition);
  if (shard_id < 0) {
    done(absl::InternalError(absl::StrCat("no shard for ", topic, "-", partition)));
    return;
  }
  // A shard that lost acknowledged records folds nothing until the loss is
  // accepted (its partition is paused): nothing to wait for.
  if (absl::Status intact = shards_[shard_id]->CheckNotLost(); !intact.ok()) {
    done(std::move(intact));
    return;
  }
  std::optional<FoldReceipt> receipt;
  absl::Status elsewhere;
  {
    absl::MutexLock lock(&mu_);
    PartitionWaiters& w = waiters_[shard_id];
    if (offset > w.folded_through) {
      if (w.owned || !assignment_known_) {
        w.waiting[offset].push_back(std::move(done));
        return;
      }
      elsewhere = NotFoldedHere(shard_id, offset);
    }
    if (auto it = w.recent.find(offset); it != w.recent.end()) {
      receipt = FoldReceipt{shards_[shard_id]->name(), it->second};
    }
  }
  if (!elsewhere.ok()) {
    done(std::move(elsewhere));
    return;
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
  std::vector<bool> owned;
  {
    absl::MutexLock lock(&mu_);
    for (const PartitionWaiters& w : waiters_) owned.push_back(w.owned);
  }
  std::vector<PartitionStatus> out;
  for (size_t i = 0; i < shards_.size(); ++i) {
    PartitionStatus status{shards_[i]->name(),
                           shards_[i]->Head(),
                           -1,
                           owned[i],
                           std::string(shards_[i]->CheckNotLost().message()),
                           writers_[i]->groups_written(),
                           shards_[i]->read_corruptions()};
    int64_t low = -1, high = -1;
    if (rd_kafka_get_watermark_offsets(ConsumerOf(static_cast<int>(i)), sources_[i].topic.c_str(),
                                       sources_[i].partition, &low,
                                       &high) == RD_KAFKA_RESP_ERR_NO_ERROR) {
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

storage::ShardSet Ingest::Shards() const {
  storage::ShardSet set;
  for (int p = 0; p < partitions(); ++p) set.events.push_back(&shard(p));
  set.registry = &registry();
  set.partition_of = [partitions = partitions()](absl::string_view key) {
    return PartitionForKey(key, partitions);
  };
  set.check_folded = [this](const std::vector<int>& partitions, absl::string_view what) {
    return CheckFoldedHere(partitions, what);
  };
  return set;
}

}  // namespace predlog::services
