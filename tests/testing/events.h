// Builders of realistic events for tests and benchmarks.
#ifndef PREDLOG_TESTS_TESTING_EVENTS_H_
#define PREDLOG_TESTS_TESTING_EVENTS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "predlog/v1/events.pb.h"
#include "storage/shard_store.h"

namespace predlog::testing {

struct PredictionSpec {
  std::string prediction_id = "pred-1";
  std::string subject_id = "customer-1";
  std::string model_name = "credit-limit";
  std::string model_version = "v1";
  absl::Time served_at = absl::FromUnixSeconds(1'700'000'000);
  absl::Time recorded_at = absl::FromUnixSeconds(1'700'000'000);
  int features = 8;
  float score = 0.25f;
  // Bytes of raw_request padding, to size events (0: none).
  size_t raw_request_bytes = 0;
  // Input values and raw_request bytes drawn from a PRNG seeded by
  // prediction_id (as real traffic compresses), instead of fixed patterns.
  bool random_content = false;
  // data_sources as (name, version) pairs, in order.
  std::vector<std::pair<std::string, std::string>> data_sources;
};

predlog::v1::AuditEvent MakePrediction(const PredictionSpec& spec);
std::string MakePredictionPayload(const PredictionSpec& spec);

// A ~`target_bytes` prediction event (30 features plus raw_request bytes,
// random_content), the shape benchmarks use: prediction "p<n>" for subject
// "s<n % subjects>". With `data_sources` > 0 it read that many datasets:
// applications@2026-<n % 12 + 1> first, then bureau-<k>@2026-10 for k = 1,
// 2, ... The same n gives the same bytes.
std::string MakeSizedPredictionPayload(uint64_t n, size_t target_bytes, uint64_t subjects,
                                       int data_sources = 0);

predlog::v1::AuditEvent MakeEntityChange(const std::string& type, const std::string& id,
                                         const std::vector<std::pair<std::string, double>>& set,
                                         const std::vector<std::string>& unset = {},
                                         bool deleted = false);

predlog::v1::AuditEvent MakeModelRegistered(const std::string& name, const std::string& version,
                                            const std::string& artifact_sha256_hex);

// One source message borrowing `incarnation` and `payload`, which must outlive
// it (a temporary payload would dangle, hence the deleted overload).
inline storage::SourceMessage Msg(absl::string_view incarnation, int64_t offset,
                                  const std::string& payload) {
  return storage::SourceMessage{incarnation, offset, payload};
}
storage::SourceMessage Msg(absl::string_view incarnation, int64_t offset,
                           std::string&& payload) = delete;

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_TESTING_EVENTS_H_
