// Real XGBoost credit models for `predlog demo credit`, tests and benchmarks: synthetic
// credit-scoring data, training through XGBoost's C API, and a serving booster that plays the
// part of the production service. Independent of replay/ on purpose: tests check replay's
// outputs against this code, not against itself.
#ifndef PREDLOG_SERVICES_CLI_CREDIT_MODELS_H_
#define PREDLOG_SERVICES_CLI_CREDIT_MODELS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace predlog::demo {

// Synthetic credit-scoring data. Columns are named income, debt_ratio, age, utilization,
// late_payments_12m, credit_lines, months_employed, loan_amount, savings, inquiries_6m, then
// f10, f11, ... (noise, a few weakly predictive); months_employed is NaN (missing) for about
// 5% of rows. label = default (0/1) drawn from a noisy logistic rule.
struct CreditData {
  int rows = 0;
  int features = 0;
  std::vector<float> x;                    // Row-major, rows * features.
  std::vector<float> y;                    // rows labels, 0 or 1.
  std::vector<std::string> feature_names;  // features names.
};

// Deterministic in (rows, features, seed, drift). `drift` (0 = none, about 1 = strong) shifts
// the distribution (lower income, higher utilization and debt) and the rule, so a model trained
// on drifted data predicts differently.
CreditData MakeCreditData(int rows, int features, uint64_t seed, float drift = 0);

struct TrainOptions {
  int trees = 20;  // Boosting rounds.
  int max_depth = 4;
  std::string objective = "binary:logistic";
  uint64_t seed = 1;
};

// Trains with the C API (hist, 64 bins, one thread) and returns the saved model bytes in JSON
// format: the artifact. The model carries data.feature_names. INVALID_ARGUMENT for inconsistent
// data or an objective XGBoost rejects.
absl::StatusOr<std::string> TrainXgboostModel(const CreditData& data, const TrainOptions& options);

// The test's own serving booster: what the production service would run. Loads artifact bytes
// and predicts one row at a time through a DMatrix, with XGBoost's defaults except nthread=1.
// Single-threaded: one ServingBooster per thread.
class ServingBooster {
 public:
  static absl::StatusOr<std::unique_ptr<ServingBooster>> Load(absl::string_view artifact);
  ~ServingBooster();
  ServingBooster(const ServingBooster&) = delete;
  ServingBooster& operator=(const ServingBooster&) = delete;

  // Normal prediction (type 0): probabilities for binary:logistic, one per output group.
  absl::StatusOr<std::vector<float>> Predict(absl::Span<const float> row);
  // Raw margin (type 1), one per output group.
  absl::StatusOr<std::vector<float>> PredictMargin(absl::Span<const float> row);

 private:
  explicit ServingBooster(void* booster) : booster_(booster) {}
  absl::StatusOr<std::vector<float>> Run(absl::Span<const float> row, int type);

  void* booster_;  // BoosterHandle, owned.
};

}  // namespace predlog::demo

#endif  // PREDLOG_SERVICES_CLI_CREDIT_MODELS_H_
