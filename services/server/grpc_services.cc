#include "services/server/grpc_services.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"

namespace predlog::services {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

namespace {

// Answers a unary call with what `read` returns, computed on `workers`,
// never on gRPC's own threads (see worker_pool.h). The request and response stay
// valid until Finish.
template <typename Response, typename Read>
grpc::ServerUnaryReactor* FinishOnPool(WorkerPool* workers, grpc::CallbackServerContext* context,
                                       Response* response, Read read) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  workers->Submit([reactor, response, read = std::move(read)] {
    absl::StatusOr<Response> result = read();
    if (result.ok()) *response = std::move(*result);
    reactor->Finish(ToGrpcStatus(result.status()));
  });
  return reactor;
}

// Answers a unary call with what `read` returns, computed right here on gRPC's
// callback thread. Only for bounded reads (see PredictionLogService).
template <typename Response, typename Read>
grpc::ServerUnaryReactor* FinishInline(grpc::CallbackServerContext* context, Response* response,
                                       Read read) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Response> result = read();
  if (result.ok()) *response = std::move(*result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

}  // namespace

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

grpc::ServerUnaryReactor* PredictionLogService::LogBatch(
    grpc::CallbackServerContext* context, const predlog::v1::LogBatchRequest* request,
    predlog::v1::LogBatchResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  log_->LogBatch(*request,
                 [reactor, response](absl::StatusOr<predlog::v1::LogBatchResponse> result) {
                   if (result.ok()) *response = std::move(*result);
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
  return FinishInline(context, record, [this, request] { return log_->GetPrediction(*request); });
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
      Complete(result.ok() ? std::move(*result)
                           : PredictionLog::ErrorReceipt(prediction_id, result.status()));
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
    // More receipts wait behind this one: let gRPC coalesce them into fewer
    // frames and syscalls instead of flushing each (the last one flushes).
    bool more_to_write = false;
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
      actions.more_to_write = !pending_.empty();
    } else if (reads_done_ && in_flight_ == 0 && !writing_ && pending_.empty()) {
      finished_ = true;
      actions.finish = true;
    }
    return actions;
  }

  void Run(const Actions& actions) {
    // current_ is only touched while writing_ is set, by this path alone.
    if (actions.write) {
      StartWrite(&current_, actions.more_to_write ? grpc::WriteOptions().set_buffer_hint()
                                                  : grpc::WriteOptions());
    }
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
  auto list = [this, request] { return log_->ListPredictions(*request); };
  if (request->page_size() <= PredictionLog::kDefaultPageSize) {  // 0 is the default page
    return FinishInline(context, response, list);
  }
  return FinishOnPool(workers_, context, response, list);
}

namespace {

// One RegisterModel upload: the first message begins it, each later one is
// a chunk appended to the artifact (a local file write), and the end of the
// stream stores the artifact and writes the event.
class RegisterModelReactor final
    : public grpc::ServerReadReactor<predlog::v1::RegisterModelRequest> {
 public:
  // Artifact writes (and their fsync) run on `workers`, never on gRPC's
  // threads; one read is outstanding at a time, so chunks stay in order.
  RegisterModelReactor(grpc::CallbackServerContext* context, ModelRegistry* registry,
                       predlog::v1::RegisterModelResponse* response, WorkerPool* workers)
      : context_(context),
        upload_(registry->StartUpload()),
        response_(response),
        workers_(workers) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    workers_->Submit([this, ok] { Handle(ok); });
  }

  void OnDone() override { delete this; }

 private:
  void Handle(bool ok) {
    if (!ok) {
      // The end of the stream, or a cancelled / timed-out / broken call: only
      // the first is a complete upload. Registering a partial artifact would
      // be permanent (registrations are write-once); dropping the upload
      // removes its temp file.
      if (context_->IsCancelled()) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                            "the upload was cancelled before its end; nothing was registered"));
        return;
      }
      if (!begun_) {
        Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "metadata is missing: the stream carried no message"));
        return;
      }
      upload_->Finish([this](absl::StatusOr<predlog::v1::RegisterModelResponse> result) {
        if (result.ok()) *response_ = std::move(*result);
        Finish(ToGrpcStatus(result.status()));
      });
      return;
    }
    absl::Status status;
    if (!begun_) {
      status = upload_->Begin(request_);
      begun_ = true;
    } else if (request_.has_chunk()) {
      status = upload_->Append(request_.chunk());
    } else {
      status = absl::InvalidArgumentError(
          "metadata may only be sent once, in the first message; later messages carry chunk");
    }
    if (!status.ok()) {
      Finish(ToGrpcStatus(status));
      return;
    }
    StartRead(&request_);
  }

  grpc::CallbackServerContext* const context_;
  std::unique_ptr<ModelRegistry::Upload> upload_;
  predlog::v1::RegisterModelResponse* const response_;
  WorkerPool* const workers_;
  predlog::v1::RegisterModelRequest request_;
  bool begun_ = false;
};

}  // namespace

grpc::ServerReadReactor<predlog::v1::RegisterModelRequest>* RegistryService::RegisterModel(
    grpc::CallbackServerContext* context, predlog::v1::RegisterModelResponse* response) {
  return new RegisterModelReactor(context, registry_, response, workers_);
}

grpc::ServerUnaryReactor* RegistryService::DeployModel(
    grpc::CallbackServerContext* context, const predlog::v1::DeployModelRequest* request,
    predlog::v1::RegistryReceipt* receipt) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  registry_->Deploy(*request,
                    [reactor, receipt](absl::StatusOr<predlog::v1::RegistryReceipt> result) {
                      if (result.ok()) *receipt = std::move(*result);
                      reactor->Finish(ToGrpcStatus(result.status()));
                    });
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::GetModel(grpc::CallbackServerContext* context,
                                                    const predlog::v1::GetModelRequest* request,
                                                    predlog::v1::ModelRecord* record) {
  return FinishOnPool(workers_, context, record,
                      [this, request] { return registry_->GetModel(*request); });
}

grpc::ServerUnaryReactor* RegistryService::ListModels(grpc::CallbackServerContext* context,
                                                      const predlog::v1::ListModelsRequest* request,
                                                      predlog::v1::ListModelsResponse* response) {
  return FinishOnPool(workers_, context, response,
                      [this, request] { return registry_->ListModels(*request); });
}

grpc::ServerUnaryReactor* ReplayService::Rerun(grpc::CallbackServerContext* context,
                                               const predlog::v1::RerunRequest* request,
                                               predlog::v1::RerunReport* report) {
  return FinishOnPool(workers_, context, report,
                      [this, request] { return replayer_->Rerun(*request); });
}

grpc::ServerUnaryReactor* ReplayService::RerunTrace(grpc::CallbackServerContext* context,
                                                    const predlog::v1::RerunTraceRequest* request,
                                                    predlog::v1::RerunTraceReport* report) {
  return FinishOnPool(workers_, context, report,
                      [this, request] { return replayer_->RerunTrace(*request); });
}

grpc::ServerUnaryReactor* ReplayService::GetEntityAt(grpc::CallbackServerContext* context,
                                                     const predlog::v1::GetEntityAtRequest* request,
                                                     predlog::v1::EntityAtResponse* response) {
  return FinishOnPool(workers_, context, response,
                      [this, request] { return replayer_->GetEntityAt(*request); });
}

grpc::ServerUnaryReactor* ReplayService::GetRegistryAt(
    grpc::CallbackServerContext* context, const predlog::v1::GetRegistryAtRequest* request,
    predlog::v1::RegistryAtResponse* response) {
  return FinishOnPool(workers_, context, response,
                      [this, request] { return replayer_->GetRegistryAt(*request); });
}

namespace {

// Records per ExportTrail message: large enough to amortize a message, small
// enough (~1 MB for typical events) to stay far below the message limit.
constexpr size_t kExportBatchRecords = 1000;
// ... and bytes: a batch stays far below gRPC's default 4 MB message limit
// unless a single event is bigger (events are at most 1 MB by default).
constexpr size_t kExportBatchBytes = 2 << 20;

// Reads the next batch from the shards while gRPC sends the previous one:
// reading and sending overlap instead of taking turns, which left the stream
// idle for every read (and the client waiting).
class ExportTrailReactor final : public grpc::ServerWriteReactor<predlog::v1::ExportBatch> {
 public:
  // Reads of the shards run on `workers`, never on gRPC's threads.
  ExportTrailReactor(const Audit* audit, const predlog::v1::ExportTrailRequest& request,
                     WorkerPool* workers)
      : workers_(workers) {
    {
      absl::MutexLock lock(&mu_);
      pumping_ = true;
    }
    workers_->Submit([this, audit, request] {
      absl::StatusOr<std::unique_ptr<ExportCursor>> cursor = audit->StartExport(request);
      if (!cursor.ok()) {
        Finish(ToGrpcStatus(cursor.status()));
        return;
      }
      cursor_ = std::move(*cursor);
      Fill();
      Pump();
    });
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;  // the client went away
      if (pumping_) return;        // Pump sees it once its read ends
      pumping_ = true;
    }
    workers_->Submit([this] { Pump(); });
  }

  void OnDone() override { delete this; }

 private:
  // Reads the next batch into batches_[next_].
  void Fill() {
    absl::StatusOr<bool> more =
        cursor_->Next(kExportBatchRecords, kExportBatchBytes, &batches_[next_]);
    if (!more.ok()) {
      end_ = ToGrpcStatus(more.status());
    } else if (!*more) {
      end_ = grpc::Status::OK;
    }
  }

  // Writes the batch read ahead and reads the next; goes on while writes
  // complete during reads. One Pump at a time (pumping_); it owns next_,
  // end_ and the batch not being written.
  void Pump() {
    while (true) {
      bool cancelled = false;
      {
        absl::MutexLock lock(&mu_);
        cancelled = cancelled_;
        writing_ = !cancelled && !end_.has_value();
      }
      if (cancelled) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "export cancelled by the client"));
        return;
      }
      if (end_.has_value()) {
        Finish(*end_);
        return;
      }
      StartWrite(&batches_[next_]);
      next_ ^= 1;
      Fill();
      absl::MutexLock lock(&mu_);
      if (writing_) {
        pumping_ = false;  // OnWriteDone goes on
        return;
      }
    }
  }

  WorkerPool* const workers_;
  std::unique_ptr<ExportCursor> cursor_;
  // The write in flight owns one; Fill reads into the other, batches_[next_].
  predlog::v1::ExportBatch batches_[2];
  int next_ = 0;
  std::optional<grpc::Status> end_;  // once the cursor is done or failed

  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // a StartWrite awaits OnWriteDone
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;  // a thread is in Pump
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<predlog::v1::ExportBatch>* AuditService::ExportTrail(
    grpc::CallbackServerContext* context, const predlog::v1::ExportTrailRequest* request) {
  return new ExportTrailReactor(audit_, *request, workers_);
}

grpc::ServerUnaryReactor* AuditService::GetStatus(grpc::CallbackServerContext* context,
                                                  const predlog::v1::GetStatusRequest* request,
                                                  predlog::v1::StatusResponse* response) {
  return FinishOnPool(workers_, context, response, [this] { return audit_->Status(); });
}

}  // namespace predlog::services
