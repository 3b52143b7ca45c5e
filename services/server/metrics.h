// Prometheus text exposition for predlogd. Counters and histograms are
// lock-free atomics updated on hot paths; the shards' own durable counters
// (ShardHead) are read at scrape time rather than mirrored here.
//
// Thread-safe.
#ifndef PREDLOG_SERVICES_SERVER_METRICS_H_
#define PREDLOG_SERVICES_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "services/kafka/ingest.h"

namespace predlog::services {

// Ack latency buckets, in seconds (upper bounds; +Inf implied).
inline constexpr std::array<double, 12> kLatencyBuckets = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                                           0.05,   0.1,   0.25,  0.5,   1,    5};

class LatencyHistogram {
 public:
  void Observe(absl::Duration d);
  // Appends `name`_bucket/_sum/_count lines.
  void Render(const std::string& name, std::string* out) const;

 private:
  std::array<std::atomic<uint64_t>, kLatencyBuckets.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};
};

// The gateway's counters. Every Log call ends in exactly one of: acked, or
// failed with a gRPC code; nothing disappears without a counter.
struct GatewayMetrics {
  std::atomic<uint64_t> log_acked{0};
  std::array<std::atomic<uint64_t>, 17> log_failed_by_code{};  // index: absl::StatusCode
  LatencyHistogram ack_latency;

  void Render(std::string* out) const;
};

// Appends per-shard series from the shards' durable counters and Kafka lag.
void RenderShardMetrics(const std::vector<PartitionStatus>& partitions, std::string* out);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_METRICS_H_
