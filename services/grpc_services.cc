#include "services/grpc_services.h"

#include <deque>
#include <string>

#include "absl/synchronization/mutex.h"

namespace predlog::services {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::ServerUnaryReactor* PredictionLogService::Log(grpc::CallbackServerContext* context,
                                                    const predlog::v1::LogRequest* request,
                                                    predlog::v1::LogReceipt* receipt) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  log_->Log(*request, [reactor, receipt](absl::StatusOr<predlog::v1::LogReceipt> result) {
    if (result.ok()) *receipt = std::move(*result);
    reactor->Finish(ToGrpcStatus(result.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* PredictionLogService::ChangeEntity(
    grpc::CallbackServerContext* context, const predlog::v1::ChangeEntityRequest* request,
    predlog::v1::LogReceipt* receipt) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  log_->ChangeEntity(*request, [reactor, receipt](absl::StatusOr<predlog::v1::LogReceipt> result) {
    if (result.ok()) *receipt = std::move(*result);
    reactor->Finish(ToGrpcStatus(result.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* PredictionLogService::GetPrediction(
    grpc::CallbackServerContext* context, const predlog::v1::GetPredictionRequest* request,
    predlog::v1::PredictionRecord* record) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<predlog::v1::PredictionRecord> result = log_->GetPrediction(*request);
  if (result.ok()) *record = std::move(*result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

namespace {

// One LogStream: reads requests, hands each to PredictionLog::Log, and writes
// receipts as they complete, one write in flight at a time. It deletes itself
// once gRPC is done with it AND every Log callback has fired, so a late
// callback never touches freed memory.
class LogStreamReactor final
    : public grpc::ServerBidiReactor<predlog::v1::LogRequest, predlog::v1::LogReceipt> {
 public:
  explicit LogStreamReactor(PredictionLog* log) : log_(log) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Actions actions;
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
        actions = NextActionsLocked();
      }
      Run(actions);
      return;
    }
    const std::string prediction_id = request_.prediction().prediction_id();
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
    }
    log_->Log(request_, [this, prediction_id](absl::StatusOr<predlog::v1::LogReceipt> result) {
      predlog::v1::LogReceipt receipt;
      if (result.ok()) {
        receipt = std::move(*result);
      } else {
        receipt.set_prediction_id(prediction_id);
        receipt.set_error_code(static_cast<int32_t>(result.status().code()));
        receipt.set_reason(std::string(result.status().message()));
      }
      Complete(std::move(receipt));
    });
    bool read_more;
    {
      absl::MutexLock lock(&mu_);
      // Receipts not yet written count too: a client that stops reading them
      // stops being read from.
      read_more = in_flight_ + static_cast<int>(pending_.size()) < kMaxStreamInFlight;
      read_paused_ = !read_more;
    }
    // request_ is free again: Log copied what it needs.
    if (read_more) StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    Actions actions;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) broken_ = true;  // The client went away; drop what is left.
      if (broken_) pending_.clear();
      actions = NextActionsLocked();
    }
    Run(actions);
  }

  void OnDone() override {
    bool delete_now;
    {
      absl::MutexLock lock(&mu_);
      grpc_done_ = true;
      delete_now = in_flight_ == 0;
    }
    if (delete_now) delete this;
  }

 private:
  // What to do after a state change, decided under mu_ and done outside it
  // (gRPC calls must not be made while holding our lock).
  struct Actions {
    bool write = false;
    bool read = false;
    bool finish = false;
  };

  void Complete(predlog::v1::LogReceipt receipt) {
    Actions actions;
    bool delete_now = false;
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      if (grpc_done_) {
        delete_now = in_flight_ == 0;
      } else {
        if (!broken_) pending_.push_back(std::move(receipt));
        actions = NextActionsLocked();
      }
    }
    if (delete_now) {
      delete this;
      return;
    }
    Run(actions);
  }

  Actions NextActionsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Actions actions;
    if (finished_) return actions;
    if (read_paused_ && !reads_done_ &&
        in_flight_ + static_cast<int>(pending_.size()) < kMaxStreamInFlight) {
      read_paused_ = false;
      actions.read = true;
    }
    if (!writing_ && !pending_.empty()) {
      writing_ = true;
      current_ = std::move(pending_.front());
      pending_.pop_front();
      actions.write = true;
    } else if (reads_done_ && in_flight_ == 0 && !writing_ && pending_.empty()) {
      finished_ = true;
      actions.finish = true;
    }
    return actions;
  }

  void Run(const Actions& actions) {
    // current_ is only touched while writing_ is set, by this path alone.
    if (actions.write) StartWrite(&current_);
    if (actions.read) StartRead(&request_);
    if (actions.finish) Finish(grpc::Status::OK);
  }

  PredictionLog* const log_;
  predlog::v1::LogRequest request_;  // the read path's alone
  predlog::v1::LogReceipt current_;  // the write path's alone (see writing_)
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool grpc_done_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<predlog::v1::LogReceipt> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::ServerBidiReactor<predlog::v1::LogRequest, predlog::v1::LogReceipt>*
PredictionLogService::LogStream(grpc::CallbackServerContext* context) {
  return new LogStreamReactor(log_);
}

grpc::ServerUnaryReactor* PredictionLogService::ListPredictions(
    grpc::CallbackServerContext* context, const predlog::v1::ListPredictionsRequest* request,
    predlog::v1::ListPredictionsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<predlog::v1::ListPredictionsResponse> result = log_->ListPredictions(*request);
  if (result.ok()) *response = std::move(*result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

}  // namespace predlog::services
