// Model runtimes: how replay turns a model artifact (its exact bytes, by SHA-256) back into
// something that predicts, one implementation per ML framework.
#ifndef PREDLOG_REPLAY_MODEL_RUNTIME_H_
#define PREDLOG_REPLAY_MODEL_RUNTIME_H_

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace predlog::replay {

// A model loaded from its artifact bytes. It keeps no reference to those bytes.
// Thread-safe: Predict* may be called concurrently.
class LoadedModel {
 public:
  virtual ~LoadedModel() = default;

  // One row of dense features in the model's feature order; NaN = missing.
  // Scores as the framework's normal predict returns them (probabilities for
  // binary:logistic), one per output group. INVALID_ARGUMENT when
  // row.size() != num_features().
  virtual absl::StatusOr<std::vector<float>> Predict(absl::Span<const float> row) const = 0;
  // Raw margin (before the objective's link function), one per output group.
  virtual absl::StatusOr<std::vector<float>> PredictMargin(absl::Span<const float> row) const = 0;
  // Per-feature contributions (TreeSHAP) then the bias term: num_features()+1 values per group;
  // for each group they sum to PredictMargin (within float tolerance).
  virtual absl::StatusOr<std::vector<float>> Contributions(absl::Span<const float> row) const = 0;

  virtual int num_features() const = 0;
  // Feature names stored in the model, empty when it has none.
  virtual std::vector<std::string> feature_names() const = 0;
  // Approximate resident size, for the cache's memory bound.
  virtual size_t memory_bytes() const = 0;
};

// Loads artifacts of one framework. One per framework ("xgboost"), stateless and thread-safe.
class ModelRuntime {
 public:
  virtual ~ModelRuntime() = default;

  // The framework name as ModelRegistered.framework records it, e.g. "xgboost".
  virtual std::string framework() const = 0;
  // The version of the library linked at run time, e.g. "1.7.4". A rerun whose recorded
  // library version differs from this one may legitimately produce different bits.
  virtual std::string library_version() const = 0;
  // INVALID_ARGUMENT when the bytes are not a model of this framework (with the library's
  // message). The returned model does not borrow `artifact`.
  virtual absl::StatusOr<std::unique_ptr<LoadedModel>> Load(absl::string_view artifact) const = 0;
};

// Runtimes by framework name.
// Find() and frameworks() may be called concurrently; Add() is externally synchronized
// (registries are built at startup, then only read).
class RuntimeRegistry {
 public:
  // A registry with every runtime built into this binary: "xgboost".
  static RuntimeRegistry WithBuiltins();

  RuntimeRegistry() = default;
  RuntimeRegistry(RuntimeRegistry&&) = default;
  RuntimeRegistry& operator=(RuntimeRegistry&&) = default;

  // The runtime for `framework` (exact, case-sensitive name), borrowed: valid while this
  // registry lives and no Add() replaces it. UNIMPLEMENTED naming the framework and the
  // supported ones when there is none.
  absl::StatusOr<const ModelRuntime*> Find(absl::string_view framework) const;
  // Supported framework names, sorted.
  std::vector<std::string> frameworks() const;
  // Registers `runtime` under runtime->framework(), replacing any runtime of that name.
  void Add(std::unique_ptr<ModelRuntime> runtime);

 private:
  std::map<std::string, std::unique_ptr<ModelRuntime>> runtimes_;
};

}  // namespace predlog::replay

#endif  // PREDLOG_REPLAY_MODEL_RUNTIME_H_
