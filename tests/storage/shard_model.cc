#include "tests/storage/shard_model.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "storage/deterministic_bytes.h"
#include "storage/event_validation.h"
#include "tests/testing/events.h"

namespace predlog::testing {
namespace {

std::string Prediction(int64_t id, int variant) {
  PredictionSpec spec;
  spec.prediction_id = absl::StrCat("p", id);
  spec.subject_id = absl::StrCat("s", id % 10);
  spec.served_at = absl::FromUnixSeconds(1'700'000'000) + absl::Seconds(id);
  spec.recorded_at = spec.served_at;
  spec.score = 0.1f * static_cast<float>(variant + 1);
  spec.features = 4 + static_cast<int>(id % 5);
  return MakePredictionPayload(spec);
}

}  // namespace

std::string StreamPayload(uint64_t seed, int64_t offset) {
  std::mt19937_64 rng(seed * 1'000'003 + static_cast<uint64_t>(offset));
  const int kind = static_cast<int>(rng() % 100);
  const int64_t earlier = offset > 0 ? static_cast<int64_t>(rng() % offset) : 0;
  if (kind < 70 || offset == 0) return Prediction(offset, 0);
  if (kind < 80) return Prediction(earlier, 0);  // a retry: duplicate if recorded
  if (kind < 88) return Prediction(earlier, 1);  // same id, other content
  if (kind < 95) {
    std::string garbage(1 + rng() % 64, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    return garbage;
  }
  PredictionSpec invalid;
  invalid.prediction_id = absl::StrCat("p", offset);
  invalid.subject_id.clear();
  return MakePredictionPayload(invalid);
}

storage::FoldOutcome ShardModel::Apply(int64_t offset, const std::string& payload) {
  predlog::v1::AuditEvent event;
  if (payload.empty() || !event.ParseFromString(payload) || !storage::ValidateEvent(event).ok() ||
      !event.has_prediction_logged()) {
    rejected_.push_back({offset, storage::RejectKind::kRejected});
    return storage::FoldOutcome::kRejected;
  }
  const std::string body = storage::DeterministicBytes(event.prediction_logged());
  auto [it, inserted] = bodies_.emplace(event.prediction_logged().prediction_id(), body);
  if (inserted) {
    log_.push_back({offset, payload});
    return storage::FoldOutcome::kApplied;
  }
  if (it->second == body) {
    ++duplicates_;
    return storage::FoldOutcome::kDuplicate;
  }
  rejected_.push_back({offset, storage::RejectKind::kConflict});
  return storage::FoldOutcome::kConflict;
}

}  // namespace predlog::testing
