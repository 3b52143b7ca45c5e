#include "services/cli/credit_models.h"

#include <xgboost/c_api.h>

#include <cmath>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "storage/status_macros.h"

namespace predlog::demo {
namespace {

constexpr float kMissing = std::numeric_limits<float>::quiet_NaN();

// XGBoost C API calls return 0 on success, -1 with the message in XGBGetLastError().
absl::Status Check(int rc, absl::string_view what,
                   absl::StatusCode code = absl::StatusCode::kInternal) {
  if (rc == 0) return absl::OkStatus();
  return absl::Status(code, absl::StrCat(what, ": ", XGBGetLastError()));
}

// splitmix64 with Box-Muller normals: the same data on every platform and standard library,
// unlike std::normal_distribution.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // In (0, 1).
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) / 9007199254740992.0; }
  double Normal() {
    return std::sqrt(-2.0 * std::log(Uniform())) * std::cos(6.283185307179586 * Uniform());
  }

 private:
  uint64_t state_;
};

double Clamp(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

const char* const kNamedColumns[] = {
    "income",       "debt_ratio",      "age",         "utilization", "late_payments_12m",
    "credit_lines", "months_employed", "loan_amount", "savings",     "inquiries_6m"};
constexpr int kNumNamedColumns = sizeof(kNamedColumns) / sizeof(kNamedColumns[0]);

// Draws column `j` of one row and adds its effect on the default log-odds to *logit.
float DrawColumn(int j, float drift, Rng& rng, double* logit) {
  const double n = rng.Normal();
  switch (j) {
    case 0: {  // income: log-normal around 50k; higher income, fewer defaults.
      const double log_income = 10.8 - 0.3 * drift + 0.5 * n;
      *logit += -0.8 * (log_income - 10.8) / 0.5;
      return static_cast<float>(std::exp(log_income));
    }
    case 1: {
      const double debt_ratio = Clamp(0.3 + 0.1 * drift + 0.15 * n, 0, 2);
      *logit += (0.9 + 0.4 * drift) * (debt_ratio - 0.3) / 0.15;
      return static_cast<float>(debt_ratio);
    }
    case 2: {
      const double age = std::round(Clamp(40 + 12 * n, 18, 90));
      *logit += -0.3 * (age - 40) / 12;
      return static_cast<float>(age);
    }
    case 3: {
      const double utilization = Clamp(0.35 + 0.15 * drift + 0.25 * n, 0, 1);
      *logit += (0.7 + 0.5 * drift) * (utilization - 0.35) / 0.25;
      return static_cast<float>(utilization);
    }
    case 4: {
      const double late = std::round(std::fmax(0, 0.8 + 0.5 * drift + 1.2 * n));
      *logit += 0.6 * late;
      return static_cast<float>(late);
    }
    case 5: {
      const double lines = std::round(Clamp(5 + 3 * n, 0, 30));
      *logit += -0.05 * (lines - 5);
      return static_cast<float>(lines);
    }
    case 6: {  // months_employed, sometimes unknown; unknown is a risk signal.
      if (rng.Uniform() < 0.05) {
        *logit += 0.4;
        return kMissing;
      }
      const double months = std::round(Clamp(60 + 50 * n, 0, 500));
      *logit += -0.3 * (months - 60) / 50;
      return static_cast<float>(months);
    }
    case 7: {
      const double loan = std::exp(9 + 0.8 * n);
      *logit += 0.2 * n;
      return static_cast<float>(loan);
    }
    case 8: {
      const double savings = std::exp(8 - 0.5 * drift + 1.2 * n);
      *logit += -0.25 * n;
      return static_cast<float>(savings);
    }
    case 9: {
      const double inquiries = std::round(std::fmax(0, 1 + drift + 1.5 * n));
      *logit += 0.15 * inquiries;
      return static_cast<float>(inquiries);
    }
    default:  // Noise columns; every fifth one weakly predictive.
      if (j % 5 == 0) *logit += 0.1 * n;
      return static_cast<float>(n + drift * 0.2);
  }
}

struct DMatrixDeleter {
  void operator()(void* handle) const { XGDMatrixFree(handle); }
};
struct BoosterDeleter {
  void operator()(void* handle) const { XGBoosterFree(handle); }
};

}  // namespace

CreditData MakeCreditData(int rows, int features, uint64_t seed, float drift) {
  CreditData data;
  if (rows <= 0 || features <= 0) return data;
  data.rows = rows;
  data.features = features;
  for (int j = 0; j < features; ++j) {
    data.feature_names.push_back(j < kNumNamedColumns ? kNamedColumns[j] : absl::StrCat("f", j));
  }
  data.x.reserve(static_cast<size_t>(rows) * features);
  data.y.reserve(rows);
  Rng rng(seed);
  for (int i = 0; i < rows; ++i) {
    double logit = -1.5 + 0.3 * drift;
    for (int j = 0; j < features; ++j) data.x.push_back(DrawColumn(j, drift, rng, &logit));
    logit += 0.5 * rng.Normal();
    const double p_default = 1 / (1 + std::exp(-logit));
    data.y.push_back(rng.Uniform() < p_default ? 1.0f : 0.0f);
  }
  return data;
}

absl::StatusOr<std::string> TrainXgboostModel(const CreditData& data, const TrainOptions& options) {
  if (data.rows <= 0 || data.features <= 0 ||
      data.x.size() != static_cast<size_t>(data.rows) * data.features ||
      data.y.size() != static_cast<size_t>(data.rows) ||
      (!data.feature_names.empty() &&
       data.feature_names.size() != static_cast<size_t>(data.features))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "inconsistent CreditData: rows ", data.rows, ", features ", data.features, ", x ",
        data.x.size(), ", y ", data.y.size(), ", names ", data.feature_names.size()));
  }
  DMatrixHandle raw_matrix = nullptr;
  RETURN_IF_ERROR(Check(XGDMatrixCreateFromMat_omp(data.x.data(), data.rows, data.features,
                                                   kMissing, &raw_matrix, /*nthread=*/1),
                        "XGDMatrixCreateFromMat"));
  std::unique_ptr<void, DMatrixDeleter> matrix(raw_matrix);
  RETURN_IF_ERROR(Check(XGDMatrixSetFloatInfo(matrix.get(), "label", data.y.data(), data.rows),
                        "XGDMatrixSetFloatInfo(label)"));

  BoosterHandle raw_booster = nullptr;
  DMatrixHandle train[] = {matrix.get()};
  RETURN_IF_ERROR(Check(XGBoosterCreate(train, 1, &raw_booster), "XGBoosterCreate"));
  std::unique_ptr<void, BoosterDeleter> booster(raw_booster);
  if (!data.feature_names.empty()) {
    std::vector<const char*> names;
    for (const std::string& name : data.feature_names) names.push_back(name.c_str());
    // Names on the DMatrix alone do not reach the saved model: only the booster's own copy is
    // saved with it (checked: without this call the model has no names).
    RETURN_IF_ERROR(
        Check(XGDMatrixSetStrFeatureInfo(matrix.get(), "feature_name", names.data(), names.size()),
              "XGDMatrixSetStrFeatureInfo(feature_name)", absl::StatusCode::kInvalidArgument));
    RETURN_IF_ERROR(
        Check(XGBoosterSetStrFeatureInfo(booster.get(), "feature_name", names.data(), names.size()),
              "XGBoosterSetStrFeatureInfo(feature_name)", absl::StatusCode::kInvalidArgument));
  }
  const std::pair<std::string, std::string> params[] = {
      {"objective", options.objective},
      {"max_depth", absl::StrCat(options.max_depth)},
      {"eta", "0.3"},
      {"tree_method", "hist"},
      {"seed", absl::StrCat(options.seed)},
      // One thread: on shared, busy CI cores OpenMP's spinning workers made two threads
      // 3-5x slower (100 trees x 30 features x 2000 rows: ~0.2 s with these settings).
      {"nthread", "1"},
      {"max_bin", "64"},
      {"verbosity", "1"},  // Warnings only.
  };
  for (const auto& [key, value] : params) {
    RETURN_IF_ERROR(Check(XGBoosterSetParam(booster.get(), key.c_str(), value.c_str()),
                          absl::StrCat("XGBoosterSetParam(", key, "=", value, ")"),
                          absl::StatusCode::kInvalidArgument));
  }
  for (int i = 0; i < options.trees; ++i) {
    // The first update configures the learner, which is where a bad objective fails.
    RETURN_IF_ERROR(Check(XGBoosterUpdateOneIter(booster.get(), i, matrix.get()),
                          absl::StrCat("XGBoosterUpdateOneIter(", i, ")"),
                          absl::StatusCode::kInvalidArgument));
  }
  bst_ulong size = 0;
  const char* bytes = nullptr;
  RETURN_IF_ERROR(
      Check(XGBoosterSaveModelToBuffer(booster.get(), R"({"format": "json"})", &size, &bytes),
            "XGBoosterSaveModelToBuffer"));
  return std::string(bytes, size);
}

absl::StatusOr<std::unique_ptr<ServingBooster>> ServingBooster::Load(absl::string_view artifact) {
  BoosterHandle raw_booster = nullptr;
  RETURN_IF_ERROR(Check(XGBoosterCreate(nullptr, 0, &raw_booster), "XGBoosterCreate"));
  std::unique_ptr<ServingBooster> serving(new ServingBooster(raw_booster));
  RETURN_IF_ERROR(Check(XGBoosterLoadModelFromBuffer(raw_booster, artifact.data(), artifact.size()),
                        "XGBoosterLoadModelFromBuffer", absl::StatusCode::kInvalidArgument));
  // One thread for test speed on busy shared cores; a one-row prediction is computed the same
  // way with any thread count.
  RETURN_IF_ERROR(Check(XGBoosterSetParam(raw_booster, "nthread", "1"), "XGBoosterSetParam"));
  return serving;
}

ServingBooster::~ServingBooster() { XGBoosterFree(booster_); }

absl::StatusOr<std::vector<float>> ServingBooster::Predict(absl::Span<const float> row) {
  return Run(row, /*type=*/0);
}

absl::StatusOr<std::vector<float>> ServingBooster::PredictMargin(absl::Span<const float> row) {
  return Run(row, /*type=*/1);
}

absl::StatusOr<std::vector<float>> ServingBooster::Run(absl::Span<const float> row, int type) {
  DMatrixHandle raw_matrix = nullptr;
  RETURN_IF_ERROR(Check(XGDMatrixCreateFromMat(row.data(), 1, row.size(), kMissing, &raw_matrix),
                        "XGDMatrixCreateFromMat"));
  std::unique_ptr<void, DMatrixDeleter> matrix(raw_matrix);
  const std::string config = absl::StrCat(
      R"({"type": )", type,
      R"(, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false})");
  const bst_ulong* shape = nullptr;
  bst_ulong dims = 0;
  const float* result = nullptr;
  RETURN_IF_ERROR(Check(
      XGBoosterPredictFromDMatrix(booster_, matrix.get(), config.c_str(), &shape, &dims, &result),
      "XGBoosterPredictFromDMatrix", absl::StatusCode::kInvalidArgument));
  size_t size = 1;
  for (bst_ulong d = 0; d < dims; ++d) size *= shape[d];
  return std::vector<float>(result, result + size);
}

}  // namespace predlog::demo
