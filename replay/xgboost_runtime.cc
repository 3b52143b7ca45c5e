#include "replay/xgboost_runtime.h"

#include <xgboost/c_api.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "storage/status_macros.h"

namespace predlog::replay {
namespace {

// Every XGBoost C API call returns 0 on success and -1 on failure, with the message in
// XGBGetLastError() (documented thread-safe: concurrent calls do not mix their messages).
absl::Status XgbStatus(int rc, absl::StatusCode code, absl::string_view what) {
  if (rc == 0) return absl::OkStatus();
  absl::string_view message = XGBGetLastError();
  // 1.7 appends a multi-line native stack trace of libxgboost.so addresses: useless to a
  // caller across gRPC, so keep only the message (which may itself span lines, e.g. a JSON
  // parse error with its caret).
  if (size_t trace = message.find("\nStack trace:"); trace != absl::string_view::npos) {
    message = message.substr(0, trace);
  }
  return absl::Status(code, absl::StrCat("xgboost: ", what, ": ", message));
}
absl::Status XgbCall(int rc, absl::string_view what) {
  return XgbStatus(rc, absl::StatusCode::kInternal, what);
}

struct BoosterDeleter {
  void operator()(void* handle) const { XGBoosterFree(handle); }
};
struct DMatrixDeleter {
  void operator()(void* handle) const { XGDMatrixFree(handle); }
};
using BoosterPtr = std::unique_ptr<void, BoosterDeleter>;
using DMatrixPtr = std::unique_ptr<void, DMatrixDeleter>;

// XGBoosterPredictFromDMatrix's `type`.
enum class PredictionType { kValue = 0, kMargin = 1, kContributions = 2 };

class XgboostModel final : public LoadedModel {
 public:
  XgboostModel(BoosterPtr booster, int num_features, std::vector<std::string> feature_names,
               size_t memory_bytes)
      : booster_(std::move(booster)),
        num_features_(num_features),
        feature_names_(std::move(feature_names)),
        memory_bytes_(memory_bytes) {}

  absl::StatusOr<std::vector<float>> Predict(absl::Span<const float> row) const override {
    return Run(row, PredictionType::kValue);
  }
  absl::StatusOr<std::vector<float>> PredictMargin(absl::Span<const float> row) const override {
    return Run(row, PredictionType::kMargin);
  }
  absl::StatusOr<std::vector<float>> Contributions(absl::Span<const float> row) const override {
    return Run(row, PredictionType::kContributions);
  }
  int num_features() const override { return num_features_; }
  std::vector<std::string> feature_names() const override { return feature_names_; }
  size_t memory_bytes() const override { return memory_bytes_; }

 private:
  absl::StatusOr<std::vector<float>> Run(absl::Span<const float> row, PredictionType type) const {
    // XGBoost itself only rejects rows wider than the model; a narrower row would be
    // silently treated as trailing missing values, which in a rerun hides a pipeline skew.
    if (row.size() != static_cast<size_t>(num_features_)) {
      return absl::InvalidArgumentError(
          absl::StrCat("row has ", row.size(), " features, the model takes ", num_features_));
    }
    // The DMatrix copies the row, so it does not borrow `row` beyond this call. NaN is the
    // missing value, as in XGBoost's own Python and C defaults.
    DMatrixHandle raw_matrix = nullptr;
    RETURN_IF_ERROR(
        XgbCall(XGDMatrixCreateFromMat_omp(row.data(), 1, row.size(),
                                           std::numeric_limits<float>::quiet_NaN(), &raw_matrix,
                                           /*nthread=*/1),
                "XGDMatrixCreateFromMat"));
    DMatrixPtr matrix(raw_matrix);

    // Serialized per booster. XGBoost's documentation (doc/prediction.rst, "Thread Safety")
    // promises thread-safe prediction since 1.4 only for tree boosters (gbtree, dart), and an
    // artifact may be gblinear; we did not verify 1.7's C API path beyond the docs. A
    // single-row prediction takes microseconds, so the lock costs little, and predictions on
    // different models still run in parallel. The result buffer is XGBoost's until the next
    // call: it is copied out before the lock is released.
    absl::MutexLock lock(&mu_);
    const std::string config =
        absl::StrCat(R"({"type": )", static_cast<int>(type),
                     R"(, "training": false, "iteration_begin": 0, "iteration_end": 0,)",
                     R"( "strict_shape": false})");
    const bst_ulong* shape = nullptr;
    bst_ulong dims = 0;
    const float* result = nullptr;
    RETURN_IF_ERROR(XgbCall(XGBoosterPredictFromDMatrix(booster_.get(), matrix.get(),
                                                        config.c_str(), &shape, &dims, &result),
                            "XGBoosterPredictFromDMatrix"));
    // One row in, so the row's outputs are the whole result: shape is [groups] or
    // [1, groups] for values and margins, [1, features+1] or [1, groups, features+1] for
    // contributions.
    size_t size = 1;
    for (bst_ulong d = 0; d < dims; ++d) size *= shape[d];
    return std::vector<float>(result, result + size);
  }

  // Constant after construction, except the booster's internal state that predictions touch.
  const BoosterPtr booster_ ABSL_PT_GUARDED_BY(mu_);
  const int num_features_;
  const std::vector<std::string> feature_names_;
  const size_t memory_bytes_;
  mutable absl::Mutex mu_;
};

class XgboostRuntime final : public ModelRuntime {
 public:
  std::string framework() const override { return "xgboost"; }

  std::string library_version() const override {
    int major = 0, minor = 0, patch = 0;
    XGBoostVersion(&major, &minor, &patch);
    return absl::StrCat(major, ".", minor, ".", patch);
  }

  absl::StatusOr<std::unique_ptr<LoadedModel>> Load(absl::string_view artifact) const override {
    BoosterHandle raw_booster = nullptr;
    RETURN_IF_ERROR(XgbCall(XGBoosterCreate(nullptr, 0, &raw_booster), "XGBoosterCreate"));
    BoosterPtr booster(raw_booster);
    if (artifact.empty()) {
      // XGBoost would try it as a legacy binary model and report "wrong model format (0 vs.
      // 136)"; saying "empty" points at the artifact store instead.
      return absl::InvalidArgumentError("xgboost: the artifact is empty");
    }
    RETURN_IF_ERROR(
        XgbStatus(XGBoosterLoadModelFromBuffer(booster.get(), artifact.data(), artifact.size()),
                  absl::StatusCode::kInvalidArgument, "the artifact is not an XGBoost model"));
    RETURN_IF_ERROR(
        XgbCall(XGBoosterSetParam(booster.get(), "nthread", "1"), "XGBoosterSetParam(nthread)"));

    bst_ulong num_features = 0;
    RETURN_IF_ERROR(
        XgbCall(XGBoosterGetNumFeature(booster.get(), &num_features), "XGBoosterGetNumFeature"));
    if (num_features > static_cast<bst_ulong>(std::numeric_limits<int>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat("xgboost: the model claims ", num_features, " features"));
    }

    // The names live in XGBoost's thread-local memory until the next call: copy them now.
    bst_ulong num_names = 0;
    const char** names = nullptr;
    RETURN_IF_ERROR(
        XgbCall(XGBoosterGetStrFeatureInfo(booster.get(), "feature_name", &num_names, &names),
                "XGBoosterGetStrFeatureInfo(feature_name)"));
    std::vector<std::string> feature_names(names, names + num_names);

    // An estimate, not a measurement: the in-memory trees are about as large as the
    // serialized model (JSON is larger, UBJSON/binary smaller), plus buffers while
    // predicting; twice the artifact size bounds that well enough for the cache.
    const size_t memory_bytes = artifact.size() * 2;
    return std::make_unique<XgboostModel>(std::move(booster), static_cast<int>(num_features),
                                          std::move(feature_names), memory_bytes);
  }
};

}  // namespace

std::unique_ptr<ModelRuntime> NewXgboostRuntime() { return std::make_unique<XgboostRuntime>(); }

}  // namespace predlog::replay
