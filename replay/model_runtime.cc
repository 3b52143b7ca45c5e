#include "replay/model_runtime.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "replay/xgboost_runtime.h"

namespace predlog::replay {

RuntimeRegistry RuntimeRegistry::WithBuiltins() {
  RuntimeRegistry registry;
  registry.Add(NewXgboostRuntime());
  return registry;
}

absl::StatusOr<const ModelRuntime*> RuntimeRegistry::Find(absl::string_view framework) const {
  auto it = runtimes_.find(std::string(framework));
  if (it == runtimes_.end()) {
    return absl::UnimplementedError(absl::StrCat(
        "no model runtime for framework '", framework,
        "'; supported: ", runtimes_.empty() ? "none" : absl::StrJoin(frameworks(), ", ")));
  }
  return it->second.get();
}

std::vector<std::string> RuntimeRegistry::frameworks() const {
  std::vector<std::string> names;
  names.reserve(runtimes_.size());
  for (const auto& [name, runtime] : runtimes_) names.push_back(name);
  return names;
}

void RuntimeRegistry::Add(std::unique_ptr<ModelRuntime> runtime) {
  std::string name = runtime->framework();
  runtimes_[std::move(name)] = std::move(runtime);
}

}  // namespace predlog::replay
