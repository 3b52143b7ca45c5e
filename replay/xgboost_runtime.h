// The XGBoost model runtime, over XGBoost's C API (Debian's libxgboost 1.7).
#ifndef PREDLOG_REPLAY_XGBOOST_RUNTIME_H_
#define PREDLOG_REPLAY_XGBOOST_RUNTIME_H_

#include <memory>

#include "replay/model_runtime.h"

namespace predlog::replay {

// framework() == "xgboost". Load() accepts what XGBoosterLoadModelFromBuffer accepts: JSON,
// UBJSON and the deprecated binary format. Loaded models predict with one thread each:
// replay predicts single rows, where spawning OpenMP threads costs more than it saves.
std::unique_ptr<ModelRuntime> NewXgboostRuntime();

}  // namespace predlog::replay

#endif  // PREDLOG_REPLAY_XGBOOST_RUNTIME_H_
