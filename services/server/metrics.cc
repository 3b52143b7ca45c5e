#include "services/server/metrics.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace predlog::services {

void LatencyHistogram::Observe(absl::Duration d) {
  const double seconds = absl::ToDoubleSeconds(d);
  size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(absl::ToInt64Microseconds(d)),
                        std::memory_order_relaxed);
}

void LatencyHistogram::Render(const std::string& name, std::string* out) const {
  absl::StrAppend(out, "# TYPE ", name, " histogram\n");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    absl::StrAppend(out, name, "_bucket{le=\"", kLatencyBuckets[i], "\"} ", cumulative, "\n");
  }
  cumulative += buckets_.back().load(std::memory_order_relaxed);
  absl::StrAppend(out, name, "_bucket{le=\"+Inf\"} ", cumulative, "\n");
  absl::StrAppend(out, name, "_sum ",
                  static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6, "\n");
  absl::StrAppend(out, name, "_count ", count_.load(std::memory_order_relaxed), "\n");
}

void GatewayMetrics::Render(std::string* out) const {
  absl::StrAppend(out,
                  "# HELP predlog_log_acked_total Log requests acknowledged (one per request).\n"
                  "# TYPE predlog_log_acked_total counter\n"
                  "predlog_log_acked_total ",
                  log_acked.load(), "\n");
  absl::StrAppend(out,
                  "# HELP predlog_log_failed_total Log requests answered with an error, by "
                  "gRPC code.\n# TYPE predlog_log_failed_total counter\n");
  for (size_t code = 1; code < log_failed_by_code.size(); ++code) {
    absl::StrAppend(out, "predlog_log_failed_total{code=\"",
                    absl::StatusCodeToString(static_cast<absl::StatusCode>(code)), "\"} ",
                    log_failed_by_code[code].load(), "\n");
  }
  absl::StrAppend(out, "# HELP predlog_ack_latency_seconds Time from a Log request to its ack.\n");
  ack_latency.Render("predlog_ack_latency_seconds", out);
}

void RenderShardMetrics(const std::vector<PartitionStatus>& partitions, std::string* out) {
  struct Series {
    const char* name;
    const char* help;
    uint64_t storage::ShardCounters::*field;
  };
  static constexpr Series kSeries[] = {
      {"predlog_events_folded_total", "Events appended to a shard's log.",
       &storage::ShardCounters::applied},
      {"predlog_events_duplicate_total", "Repeats of a recorded event (no-ops).",
       &storage::ShardCounters::duplicates},
      {"predlog_events_conflict_total", "Same id, other content: kept in rejected.",
       &storage::ShardCounters::conflicts},
      {"predlog_events_rejected_total", "Undecodable or invalid messages kept in rejected.",
       &storage::ShardCounters::rejected},
      {"predlog_events_redelivered_total", "Messages already folded, seen again.",
       &storage::ShardCounters::redelivered},
      {"predlog_source_resets_total", "Times a shard's source started over.",
       &storage::ShardCounters::source_resets},
      {"predlog_source_gaps_total",
       "Ranges of source offsets lost before folding (recorded as SourceGap).",
       &storage::ShardCounters::gaps},
      {"predlog_events_misrouted_total",
       "Events whose key belongs to another partition under murmur2: a producer that does not "
       "key by subject_id with partitioner=murmur2_random.",
       &storage::ShardCounters::misrouted},
  };
  for (const Series& series : kSeries) {
    absl::StrAppend(out, "# HELP ", series.name, " ", series.help, "\n# TYPE ", series.name,
                    " counter\n");
    for (const PartitionStatus& p : partitions) {
      absl::StrAppend(out, series.name, "{shard=\"", p.shard, "\"} ", p.head.counters.*series.field,
                      "\n");
    }
  }
  absl::StrAppend(out, "# HELP predlog_shard_records Records in the shard's log.\n",
                  "# TYPE predlog_shard_records gauge\n");
  for (const PartitionStatus& p : partitions) {
    absl::StrAppend(out, "predlog_shard_records{shard=\"", p.shard, "\"} ", p.head.next_index,
                    "\n");
  }
  absl::StrAppend(out,
                  "# HELP predlog_shard_group_commits_total Group commits of the shard's "
                  "writer (one WriteBatch and, with --sync, one WAL fsync each).\n",
                  "# TYPE predlog_shard_group_commits_total counter\n");
  for (const PartitionStatus& p : partitions) {
    absl::StrAppend(out, "predlog_shard_group_commits_total{shard=\"", p.shard, "\"} ",
                    p.group_commits, "\n");
  }
  absl::StrAppend(out, "# HELP predlog_shard_last_offset Last Kafka offset folded.\n",
                  "# TYPE predlog_shard_last_offset gauge\n");
  for (const PartitionStatus& p : partitions) {
    absl::StrAppend(out, "predlog_shard_last_offset{shard=\"", p.shard, "\"} ",
                    p.head.last_source ? p.head.last_source->offset : -1, "\n");
  }
  absl::StrAppend(out,
                  "# HELP predlog_shard_assigned 1 while this instance folds the shard's "
                  "partition (its consumer group assigned it here), else 0.\n",
                  "# TYPE predlog_shard_assigned gauge\n");
  for (const PartitionStatus& p : partitions) {
    absl::StrAppend(out, "predlog_shard_assigned{shard=\"", p.shard, "\"} ", p.owned ? 1 : 0, "\n");
  }
  absl::StrAppend(out,
                  "# HELP predlog_shard_lost_records 1 when the shard lost acknowledged records "
                  "and refuses writes and reads of its records until an operator accepts the loss "
                  "(predlogd --accept_data_loss), else 0.\n",
                  "# TYPE predlog_shard_lost_records gauge\n");
  for (const PartitionStatus& p : partitions) {
    absl::StrAppend(out, "predlog_shard_lost_records{shard=\"", p.shard, "\"} ",
                    p.lost.empty() ? 0 : 1, "\n");
  }
  absl::StrAppend(out,
                  "# HELP predlog_shard_read_corruptions_total Reads of the shard that found "
                  "corrupt data (a block whose checksum fails); each failed as DATA_LOSS and "
                  "was logged.\n",
                  "# TYPE predlog_shard_read_corruptions_total counter\n");
  for (const PartitionStatus& p : partitions) {
    absl::StrAppend(out, "predlog_shard_read_corruptions_total{shard=\"", p.shard, "\"} ",
                    p.read_corruptions, "\n");
  }
  absl::StrAppend(out,
                  "# HELP predlog_consumer_lag Messages in Kafka not yet folded (-1: unknown, "
                  "or the partition is folded by another instance).\n",
                  "# TYPE predlog_consumer_lag gauge\n");
  for (const PartitionStatus& p : partitions) {
    absl::StrAppend(out, "predlog_consumer_lag{shard=\"", p.shard, "\"} ", p.consumer_lag(), "\n");
  }
}

}  // namespace predlog::services
