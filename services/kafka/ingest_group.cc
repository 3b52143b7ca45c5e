// The consumer-group half of Ingest (services/kafka/ingest.h): rebalance
// callbacks, assigning and revoking partitions, the positions stored for
// librdkafka's commits (visibility only), and the answers for reads of
// partitions another instance folds. Runs on the ingest thread, inside
// rd_kafka_consumer_poll, or in ~Ingest after that thread ended.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "services/kafka/ingest.h"
#include "services/kafka/kafka_config.h"
#include "storage/logging.h"
#include "storage/status_macros.h"

namespace predlog::services {
namespace {

// Positions are stored for librdkafka's auto-commit at most this often.
constexpr absl::Duration kStoreInterval = absl::Seconds(1);

// "predlog.events-0 from offset 12, predlog.registry-0 from the beginning".
std::string DescribeStarts(const rd_kafka_topic_partition_list_t* list) {
  std::string out;
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    absl::StrAppend(&out, i > 0 ? ", " : "", tp.topic, "-", tp.partition,
                    tp.offset == RD_KAFKA_OFFSET_BEGINNING
                        ? " from the beginning"
                        : absl::StrCat(" from offset ", tp.offset));
  }
  return out;
}

}  // namespace

void Ingest::OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t* partitions, void* opaque) {
  Ingest* self = static_cast<Ingest*>(opaque);
  // The consumer is configured cooperative-sticky only, so the group can only
  // run the COOPERATIVE protocol: the lists are increments. (Not asked of
  // rd_kafka_rebalance_protocol(), which can hang inside consumer_close.)
  constexpr bool incremental = true;
  std::vector<int> shards;
  for (int i = 0; i < partitions->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = partitions->elems[i];
    const int shard = self->ShardOf(tp.topic, tp.partition);
    if (shard < 0) {
      PREDLOG_LOG(ERROR) << "ingest: group " << self->options_.group_id << " assigned " << tp.topic
                         << "-" << tp.partition << ", which has no shard here (" << kEventsTopic
                         << " has " << self->partitions() << " partitions); it is not folded";
      continue;
    }
    shards.push_back(shard);
  }
  switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
      if (absl::Status status = self->Assign(shards, incremental, /*by_group=*/true);
          !status.ok()) {
        // The group counts them as ours: retry until they fetch, never leave
        // a partition unfolded by everyone.
        PREDLOG_LOG(ERROR) << "ingest: group " << self->options_.group_id << ": " << status
                           << "; retrying each second";
        self->needs_assign_.insert(shards.begin(), shards.end());
        self->UpdateStalled();
      }
      break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
      self->Revoke(shards, incremental, rd_kafka_assignment_lost(rk));
      break;
    default: {
      // The group state is unknown: give everything up without committing;
      // the next assignment resumes from the shards.
      PREDLOG_LOG(ERROR) << "ingest: group " << self->options_.group_id
                         << ": rebalance failed: " << rd_kafka_err2str(err);
      std::vector<int> all;
      for (size_t i = 0; i < self->assigned_.size(); ++i) {
        const int shard = static_cast<int>(i);
        if (self->assigned_[i] && self->ConsumerOf(shard) == self->consumer_) all.push_back(shard);
      }
      self->Revoke(all, incremental, /*lost=*/true);
      self->needs_assign_.clear();  // assigned by a group state now unknown
      self->UpdateStalled();
    }
  }
}

absl::Status Ingest::Assign(const std::vector<int>& shards, bool incremental, bool by_group) {
  rd_kafka_t* consumer = shards.empty() ? consumer_ : ConsumerOf(shards.front());
  for (int shard : shards) {
    PREDLOG_CHECK(ConsumerOf(shard) == consumer) << "one Assign call per consumer";
  }
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(shards.size()));
  for (int shard : shards) {
    const std::optional<int64_t> next = NextOffset(shards_[shard]->Head());
    rd_kafka_topic_partition_list_add(list, sources_[shard].topic.c_str(),
                                      sources_[shard].partition)
        ->offset = next.value_or(RD_KAFKA_OFFSET_BEGINNING);
  }
  const std::string starts = DescribeStarts(list);
  absl::Status status;
  if (incremental) {
    if (rd_kafka_error_t* error = rd_kafka_incremental_assign(consumer, list); error != nullptr) {
      status =
          absl::InternalError(absl::StrCat("assign ", starts, ": ", rd_kafka_error_string(error)));
      rd_kafka_error_destroy(error);
    }
  } else if (const rd_kafka_resp_err_t err = rd_kafka_assign(consumer, list);
             err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    status = absl::InternalError(absl::StrCat("assign ", starts, ": ", rd_kafka_err2str(err)));
  }
  rd_kafka_topic_partition_list_destroy(list);
  if (!status.ok()) return status;

  for (int shard : shards) assigned_[shard] = true;
  const bool group = !options_.group_id.empty();
  std::vector<std::pair<FoldCallback, absl::Status>> elsewhere;
  {
    absl::MutexLock lock(&mu_);
    for (int shard : shards) waiters_[shard].owned = true;
    // Waiters that arrived before the group's first assignment, for
    // partitions another instance got, are answered now.
    if (by_group && !assignment_known_) {
      for (size_t i = 0; i < waiters_.size(); ++i) {
        PartitionWaiters& w = waiters_[i];
        if (w.owned) continue;
        for (auto& [offset, callbacks] : w.waiting) {
          for (auto& done : callbacks) {
            elsewhere.emplace_back(std::move(done), NotFoldedHere(static_cast<int>(i), offset));
          }
        }
        w.waiting.clear();
      }
    }
    if (by_group) assignment_known_ = true;
  }
  for (auto& [done, why] : elsewhere) done(why);
  if (by_group) {
    PREDLOG_LOG(INFO) << "ingest: group " << options_.group_id << " assigned "
                      << (starts.empty() ? "no partitions" : starts);
  } else if (group) {
    PREDLOG_LOG(INFO) << "ingest: folding outside consumer group " << options_.group_id << ": "
                      << starts;
  } else {
    PREDLOG_LOG(INFO) << "ingest: folding every partition here (no consumer group): " << starts;
  }
  return absl::OkStatus();
}

void Ingest::Revoke(const std::vector<int>& shards, bool incremental, bool lost) {
  // 1. What was polled for these partitions is folded before they go: the
  //    shard position then covers everything this instance took from Kafka,
  //    and its waiters get their receipts.
  size_t folded_first = 0;
  for (int shard : shards) {
    if (pending_[shard].empty()) continue;
    const size_t count = pending_[shard].size();
    const int64_t first = pending_[shard].front()->offset;
    if (FoldShard(shard, pending_[shard])) {
      folded_first += count;
    } else {
      PREDLOG_LOG(WARNING) << "ingest: " << shards_[shard]->name() << ": " << count
                           << " polled messages from offset " << first
                           << " could not be folded before the revocation; they stay in Kafka "
                           << "for the new owner";
    }
  }
  // 2. Store the shard positions (visibility only): librdkafka's auto-commit
  //    commits the stored offsets of the partitions unassigned below. No
  //    synchronous commit here: it would hold the ingest thread (and every
  //    shard's folding) for as long as the coordinator takes to answer. A
  //    lost assignment belongs to an older generation: its commit would be
  //    refused.
  std::string outcome = lost ? "assignment lost, nothing committed" : "nothing to commit";
  if (rd_kafka_topic_partition_list_t* list = CommitList(shards); list != nullptr && !lost) {
    const rd_kafka_resp_err_t err = rd_kafka_offsets_store(consumer_, list);
    outcome = err == RD_KAFKA_RESP_ERR_NO_ERROR
                  ? "positions stored for the commit on unassign"
                  : absl::StrCat("positions not stored (only Kafka's lag view is affected): ",
                                 rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(list);
  } else if (list != nullptr) {
    rd_kafka_topic_partition_list_destroy(list);
  }
  // 3. Stop fetching them.
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(shards.size()));
  for (int shard : shards) {
    rd_kafka_topic_partition_list_add(list, sources_[shard].topic.c_str(),
                                      sources_[shard].partition);
  }
  if (incremental) {
    if (rd_kafka_error_t* error = rd_kafka_incremental_unassign(consumer_, list);
        error != nullptr) {
      PREDLOG_LOG(ERROR) << "ingest: unassign: " << rd_kafka_error_string(error);
      rd_kafka_error_destroy(error);
    }
  } else if (const rd_kafka_resp_err_t err = rd_kafka_assign(consumer_, nullptr);
             err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    PREDLOG_LOG(ERROR) << "ingest: unassign: " << rd_kafka_err2str(err);
  }
  rd_kafka_topic_partition_list_destroy(list);
  // 4. Waiters for offsets not folded here go to the new owner.
  std::string positions;
  for (int shard : shards) {
    assigned_[shard] = false;
    committed_[shard] = -1;
    needs_recovery_.erase(shard);
    needs_assign_.erase(shard);
    const std::optional<int64_t> next = NextOffset(shards_[shard]->Head());
    absl::StrAppend(&positions, positions.empty() ? "" : ", ", shards_[shard]->name(),
                    next.has_value() ? absl::StrCat(" at offset ", *next) : " (nothing folded)");
  }
  UpdateStalled();
  std::vector<std::pair<FoldCallback, absl::Status>> moved;
  {
    absl::MutexLock lock(&mu_);
    for (int shard : shards) {
      PartitionWaiters& w = waiters_[shard];
      w.owned = false;
      for (auto& [offset, callbacks] : w.waiting) {
        for (auto& done : callbacks) {
          moved.emplace_back(std::move(done), NotFoldedHere(shard, offset));
        }
      }
      w.waiting.clear();
    }
  }
  for (auto& [done, why] : moved) done(why);
  PREDLOG_LOG(INFO) << "ingest: group " << options_.group_id << " revoked "
                    << (positions.empty() ? "no partitions" : positions) << " (" << outcome << "; "
                    << folded_first << " messages polled before the revocation folded "
                    << "first; " << moved.size() << " waiters sent to the new owner)";
}

absl::Status Ingest::NotFoldedHere(int shard, int64_t offset) const {
  // Not UNAVAILABLE: a retry would produce the event again (a duplicate) and
  // meet the same answer for as long as the other instance owns the partition.
  return absl::FailedPreconditionError(absl::StrCat(
      shards_[shard]->name(), " is folded by another ingest instance of consumer group '",
      options_.group_id, "', not this one, so this process cannot wait for offset ", offset,
      " to be folded; the event is in Kafka and is folded there. Send durable calls to the "
      "instance that folds the partition, or log without wait_durable"));
}

rd_kafka_topic_partition_list_t* Ingest::CommitList(const std::vector<int>& shards) {
  rd_kafka_topic_partition_list_t* list = nullptr;
  for (int shard : shards) {
    const std::optional<int64_t> next = NextOffset(shards_[shard]->Head());
    if (!next.has_value()) continue;
    if (list == nullptr) list = rd_kafka_topic_partition_list_new(static_cast<int>(shards.size()));
    rd_kafka_topic_partition_list_add(list, sources_[shard].topic.c_str(),
                                      sources_[shard].partition)
        ->offset = *next;
  }
  return list;
}

void Ingest::StorePositions() {
  const absl::Time now = absl::Now();
  if (now < next_commit_) return;
  next_commit_ = now + kStoreInterval;
  std::vector<int> advanced;
  for (size_t i = 0; i < shards_.size(); ++i) {
    // The registry consumer (outside the group) commits nothing.
    if (!assigned_[i] || ConsumerOf(static_cast<int>(i)) != consumer_) continue;
    const std::optional<int64_t> next = NextOffset(shards_[i]->Head());
    if (next.has_value() && *next != committed_[i]) advanced.push_back(static_cast<int>(i));
  }
  rd_kafka_topic_partition_list_t* list = CommitList(advanced);
  if (list == nullptr) return;
  const rd_kafka_resp_err_t err = rd_kafka_offsets_store(consumer_, list);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < list->cnt; ++i) {
      committed_[ShardOf(list->elems[i].topic, list->elems[i].partition)] = list->elems[i].offset;
    }
  }
  rd_kafka_topic_partition_list_destroy(list);
}

void Ingest::OnCommit(rd_kafka_t*, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t* offsets, void* opaque) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
  Ingest* self = static_cast<Ingest*>(opaque);
  PREDLOG_LOG(WARNING) << "ingest: group " << self->options_.group_id
                       << ": offset commit: " << rd_kafka_err2str(err)
                       << " (only Kafka's lag view is affected; retried)";
  // Store these again at the next turn, so the auto-commit retries them.
  for (int i = 0; offsets != nullptr && i < offsets->cnt; ++i) {
    const int shard = self->ShardOf(offsets->elems[i].topic, offsets->elems[i].partition);
    if (shard >= 0) self->committed_[shard] = -1;
  }
}

bool Ingest::AssignmentKnown() const {
  absl::MutexLock lock(&mu_);
  return assignment_known_;
}

absl::Status Ingest::CheckFoldedHere(const std::vector<int>& partitions,
                                     absl::string_view what) const {
  for (int p : partitions) {
    if (absl::Status intact = shards_[p]->CheckNotLost(); !intact.ok()) {
      return absl::DataLossError(absl::StrCat(what, ": ", intact.message()));
    }
  }
  std::vector<std::string> elsewhere;
  {
    absl::MutexLock lock(&mu_);
    for (int p : partitions) {
      if (!waiters_[p].owned) elsewhere.push_back(shards_[p]->name());
    }
  }
  if (elsewhere.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(what, " needs ", absl::StrJoin(elsewhere, ", "),
                   ", which another ingest instance of consumer group '", options_.group_id,
                   "' folds, not this one; ask the instance that folds ",
                   elsewhere.size() == 1 ? "it" : "them"));
}

absl::Status Ingest::CheckAllFoldedHere(absl::string_view what) const {
  std::vector<int> all(partitions());
  for (int p = 0; p < partitions(); ++p) all[p] = p;
  return CheckFoldedHere(all, what);
}

}  // namespace predlog::services
