#include "services/server/grpc_services.h"

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/auth/grpc_auth.h"
#include "services/server/request_parse.h"

namespace predlog::services {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

namespace {

// Whether calls of `method` leave an AccessRecorded: the role table says so
// (AccessTrail::Recorded, INTERNAL for a path it does not know) and this
// process keeps an access trail.
absl::StatusOr<bool> Recorded(const CallGate& gate, absl::string_view method) {
  const absl::StatusOr<bool> recorded = AccessTrail::Recorded(method);
  if (!recorded.ok()) return recorded.status();
  return gate.access != nullptr && *recorded;
}

// One unary call over raw bytes: the request parsed here (request_parse.h),
// the response serialized here, and the call finished on gRPC's default
// reactor. That reactor's OnDone runs inline, where a reactor of our own
// would have its OnDone dispatched to gRPC's executor: a thread hop per call.
// So this state is not a reactor. It holds two references, the handler's
// (dropped once the handler has handed the request on) and the reply's
// (dropped once the call is finished), and deletes itself after both: a
// callee may answer from another thread before it has returned, while it
// may still read the request.
template <typename Request, typename Response>
class UnaryCall {
 public:
  // Borrows gRPC's `reactor` and `response_bytes` (valid until Finish).
  UnaryCall(grpc::ServerUnaryReactor* reactor, grpc::ByteBuffer* response_bytes)
      : reactor_(reactor), response_bytes_(response_bytes) {}

  // Parses the request. When it cannot be parsed, finishes the call with
  // INVALID_ARGUMENT (dropping the reply's reference) and returns false.
  bool Parse(const grpc::ByteBuffer& bytes) {
    if (ParseMessage(bytes, &request_)) return true;
    Finish(ToGrpcStatus(ParseFailure(bytes, *Request::descriptor(), "the request")));
    return false;
  }

  // Valid until both references are dropped: for the callee, until it has
  // returned or answered, whichever is later.
  const Request& request() const { return request_; }

  // Finishes the call with `result`: its status, and its response when OK.
  // Once, from any thread.
  void Reply(absl::StatusOr<Response> result) {
    Finish(
        ToGrpcStatus(result.ok() ? SerializeResponse(*result, response_bytes_) : result.status()));
  }

  // Drops one reference; deletes this after the last.
  void Release() {
    if (references_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  void Finish(grpc::Status status) {
    reactor_->Finish(std::move(status));
    Release();
  }

  grpc::ServerUnaryReactor* const reactor_;
  grpc::ByteBuffer* const response_bytes_;
  std::atomic<int> references_{2};
  Request request_;
};

// Every method begins in ServeUnary or ServeStream with its gRPC path: they
// take the call's caller (auth::CallerOf; the port's metadata processor has
// already checked the call against the role table) and hand it on with the
// call. A method the role table marks recorded (auth::Trail::kRecorded) runs
// only once the access trail holds its AccessRecorded (AccessTrail::Record),
// and is refused with the trail's error when that fails.

// Where a call's `serve` runs: on gRPC's callback thread (bounded work, or
// work that completes through a callback), or on a worker (blocking reads).
enum class RunOn { kCallbackThread, kWorker };

// Parses the request and, when it parses (and its access is recorded, where
// the method is), hands the call and its caller to `serve`, which must Reply
// once, from any thread. `serve` runs where `run_on(request)` says; a
// recorded call's always runs on a worker, once its record is written (one
// hand-off, from the trail's commit to the worker). `serve` is kept until it
// has run.
template <typename Request, typename Response, typename Serve, typename Where>
grpc::ServerUnaryReactor* ServeUnary(const CallGate& gate, absl::string_view method,
                                     grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
                                     Where run_on, Serve serve) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<auth::Caller> caller = auth::CallerOf(*gate.authorizer, *context);
  if (!caller.ok()) {
    reactor->Finish(ToGrpcStatus(caller.status()));
    return reactor;
  }
  auto* call = new UnaryCall<Request, Response>(reactor, response);
  if (!call->Parse(*request)) {
    call->Release();
    return reactor;
  }
  const absl::StatusOr<bool> recorded = Recorded(gate, method);
  if (!recorded.ok()) {
    call->Reply(recorded.status());
    call->Release();
    return reactor;
  }
  if (!*recorded && run_on(call->request()) == RunOn::kCallbackThread) {
    serve(call, *caller);
    call->Release();  // the handler's reference
    return reactor;
  }
  if (!*recorded) {
    gate.workers->Submit([call, caller = *std::move(caller), serve = std::move(serve)]() mutable {
      serve(call, caller);
      call->Release();
    });
    return reactor;
  }
  // The handler's reference is kept until `serve` has run on a worker.
  const auth::Caller& who = *caller;
  gate.access->Record(
      method, who, context->peer(), call->request(),
      [call, caller = who, serve = std::move(serve),
       workers = gate.workers](absl::Status recorded) mutable {
        if (!recorded.ok()) {
          call->Reply(recorded);
          call->Release();
          return;
        }
        workers->Submit([call, caller = std::move(caller), serve = std::move(serve)]() mutable {
          serve(call, caller);
          call->Release();
        });
      });
  return reactor;
}

// A stream refused before it began: it finishes at once with `status`.
template <typename Reactor>
class RefusedStream final : public Reactor {
 public:
  explicit RefusedStream(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// Begins a streaming call: the reactor `start(caller)` returns serves it
// (the caller is valid while `start` runs). A recorded streaming method
// (ExportTrail) parses its request on a worker, so its reactor records the
// call itself (AccessTrail::Record) before it reads anything.
template <typename Reactor, typename Start>
Reactor* ServeStream(const CallGate& gate, grpc::CallbackServerContext* context, Start start) {
  absl::StatusOr<auth::Caller> caller = auth::CallerOf(*gate.authorizer, *context);
  if (!caller.ok()) return new RefusedStream<Reactor>(ToGrpcStatus(caller.status()));
  return start(*caller);
}

// Answers a unary call with what `read(request)` returns, computed on
// `workers`, never on gRPC's own threads (see worker_pool.h).
template <typename Request, typename Response, typename Read>
grpc::ServerUnaryReactor* FinishOnPool(const CallGate& gate, absl::string_view method,
                                       grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
                                       Read read) {
  return ServeUnary<Request, Response>(
      gate, method, context, request, response, [](const Request&) { return RunOn::kWorker; },
      [read = std::move(read)](UnaryCall<Request, Response>* call, const auth::Caller&) {
        call->Reply(read(call->request()));
      });
}

// Answers a unary call with what `read(request)` returns, computed right here
// on gRPC's callback thread (a worker's, once a recorded call's record is
// written). Only for bounded reads (see PredictionLogService).
template <typename Request, typename Response, typename Read>
grpc::ServerUnaryReactor* FinishInline(const CallGate& gate, absl::string_view method,
                                       grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
                                       Read read) {
  return ServeUnary<Request, Response>(
      gate, method, context, request, response,
      [](const Request&) { return RunOn::kCallbackThread; },
      [read = std::move(read)](UnaryCall<Request, Response>* call, const auth::Caller&) {
        call->Reply(read(call->request()));
      });
}

// Answers a unary call whose work completes through a callback (writes:
// the shard writer's or the producer's). `start(request, caller, done)`.
template <typename Request, typename Response, typename Start>
grpc::ServerUnaryReactor* FinishFromCallback(const CallGate& gate, absl::string_view method,
                                             grpc::CallbackServerContext* context,
                                             const grpc::ByteBuffer* request,
                                             grpc::ByteBuffer* response, Start start) {
  return ServeUnary<Request, Response>(
      gate, method, context, request, response,
      [](const Request&) { return RunOn::kCallbackThread; },
      [start = std::move(start)](UnaryCall<Request, Response>* call, const auth::Caller& caller) {
        start(call->request(), caller,
              [call](absl::StatusOr<Response> result) { call->Reply(std::move(result)); });
      });
}

}  // namespace

grpc::ServerUnaryReactor* PredictionLogService::Log(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  return FinishFromCallback<predlog::v1::LogRequest, predlog::v1::LogReceipt>(
      gate_, "/predlog.v1.PredictionLog/Log", context, request, response,
      [this](const predlog::v1::LogRequest& parsed, const auth::Caller& caller, auto done) {
        log_->Log(parsed, caller.name, std::move(done));
      });
}

grpc::ServerUnaryReactor* PredictionLogService::LogBatch(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* request,
                                                         grpc::ByteBuffer* response) {
  return FinishFromCallback<predlog::v1::LogBatchRequest, predlog::v1::LogBatchResponse>(
      gate_, "/predlog.v1.PredictionLog/LogBatch", context, request, response,
      [this](const predlog::v1::LogBatchRequest& parsed, const auth::Caller& caller, auto done) {
        log_->LogBatch(parsed, caller.name, std::move(done));
      });
}

grpc::ServerUnaryReactor* PredictionLogService::ChangeEntity(grpc::CallbackServerContext* context,
                                                             const grpc::ByteBuffer* request,
                                                             grpc::ByteBuffer* response) {
  return FinishFromCallback<predlog::v1::ChangeEntityRequest, predlog::v1::LogReceipt>(
      gate_, "/predlog.v1.PredictionLog/ChangeEntity", context, request, response,
      [this](const predlog::v1::ChangeEntityRequest& parsed, const auth::Caller& caller,
             auto done) { log_->ChangeEntity(parsed, caller.name, std::move(done)); });
}

grpc::ServerUnaryReactor* PredictionLogService::GetPrediction(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request,
                                                              grpc::ByteBuffer* response) {
  return FinishInline<predlog::v1::GetPredictionRequest, predlog::v1::PredictionRecord>(
      gate_, "/predlog.v1.PredictionLog/GetPrediction", context, request, response,
      [this](const predlog::v1::GetPredictionRequest& parsed) {
        return log_->GetPrediction(parsed);
      });
}

namespace {

// The prediction_id of a LogRequest that does not parse, when it can be read
// (it can when only a string elsewhere is not UTF-8); "" otherwise.
std::string PredictionIdOf(const grpc::ByteBuffer& bytes) {
  grpc::Slice flat;
  if (!bytes.Valid() || !bytes.DumpToSingleSlice(&flat).ok()) return "";
  return ReadStringField(
             absl::string_view(reinterpret_cast<const char*>(flat.begin()), flat.size()),
             *predlog::v1::LogRequest::descriptor(), {"prediction", "prediction_id"})
      .value_or("");
}

// One LogStream: reads requests, hands each to PredictionLog::Log, and writes
// receipts as they complete, one write in flight at a time. A request that
// cannot be parsed gets an INVALID_ARGUMENT receipt (under its prediction_id
// when that can be read) and the stream goes on. It deletes itself once gRPC
// is done with it AND every Log callback has fired, so a late callback never
// touches freed memory.
class LogStreamReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // Records `actor` (the caller's identity) on every event of the stream.
  LogStreamReactor(PredictionLog* log, absl::string_view actor) : log_(log), actor_(actor) {
    StartRead(&request_bytes_);
  }

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
    ++requests_read_;
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
    }
    if (ParseMessage(request_bytes_, &request_)) {
      const std::string prediction_id = request_.prediction().prediction_id();
      log_->Log(
          request_, actor_, [this, prediction_id](absl::StatusOr<predlog::v1::LogReceipt> result) {
            Complete(result.ok() ? std::move(*result)
                                 : PredictionLog::ErrorReceipt(prediction_id, result.status()));
          });
    } else {
      Complete(PredictionLog::ErrorReceipt(
          PredictionIdOf(request_bytes_),
          ParseFailure(request_bytes_, *predlog::v1::LogRequest::descriptor(),
                       absl::StrCat("request ", requests_read_, " of the stream"))));
    }
    bool read_more;
    {
      absl::MutexLock lock(&mu_);
      // Receipts not yet written count too: a client that stops reading them
      // stops being read from.
      read_more = in_flight_ + static_cast<int>(pending_.size()) < kMaxStreamInFlight;
      read_paused_ = !read_more;
    }
    // request_bytes_ and request_ are free again: Log copied what it needs.
    if (read_more) StartRead(&request_bytes_);
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
      absl::Status serialized = SerializeResponse(current_, &current_bytes_);
      if (!serialized.ok()) {
        // Only a receipt over 2 GB could fail; its short error receipt cannot.
        serialized = SerializeResponse(
            PredictionLog::ErrorReceipt(current_.prediction_id(), serialized), &current_bytes_);
      }
      StartWrite(&current_bytes_, actions.more_to_write ? grpc::WriteOptions().set_buffer_hint()
                                                        : grpc::WriteOptions());
    }
    if (actions.read) StartRead(&request_bytes_);
    if (actions.finish) Finish(grpc::Status::OK);
  }

  PredictionLog* const log_;
  const std::string actor_;
  grpc::ByteBuffer request_bytes_;   // the read path's alone
  predlog::v1::LogRequest request_;  // the read path's alone
  int64_t requests_read_ = 0;        // the read path's alone
  predlog::v1::LogReceipt current_;  // the write path's alone (see writing_)
  grpc::ByteBuffer current_bytes_;   // the write path's alone
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

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* PredictionLogService::LogStream(
    grpc::CallbackServerContext* context) {
  return ServeStream<grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>>(
      gate_, context,
      [this](const auth::Caller& caller) { return new LogStreamReactor(log_, caller.name); });
}

grpc::ServerUnaryReactor* PredictionLogService::ListPredictions(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  using Call = UnaryCall<predlog::v1::ListPredictionsRequest, predlog::v1::ListPredictionsResponse>;
  return ServeUnary<predlog::v1::ListPredictionsRequest, predlog::v1::ListPredictionsResponse>(
      gate_, "/predlog.v1.PredictionLog/ListPredictions", context, request, response,
      [](const predlog::v1::ListPredictionsRequest& parsed) {
        return parsed.page_size() <= PredictionLog::kDefaultPageSize  // 0: the default
                   ? RunOn::kCallbackThread
                   : RunOn::kWorker;
      },
      [this](Call* call, const auth::Caller&) {
        call->Reply(log_->ListPredictions(call->request()));
      });
}

grpc::ServerUnaryReactor* PredictionLogService::ListEntityChanges(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  using Request = predlog::v1::ListEntityChangesRequest;
  using Response = predlog::v1::ListEntityChangesResponse;
  using Call = UnaryCall<Request, Response>;
  return ServeUnary<Request, Response>(
      gate_, "/predlog.v1.PredictionLog/ListEntityChanges", context, request, response,
      [](const Request& parsed) {
        return parsed.page_size() <= PredictionLog::kDefaultPageSize  // 0: the default
                   ? RunOn::kCallbackThread
                   : RunOn::kWorker;
      },
      [this](Call* call, const auth::Caller&) {
        call->Reply(log_->ListEntityChanges(call->request()));
      });
}

namespace {

// One RegisterModel upload: the first message begins it, each later one is
// a chunk appended to the artifact (a local file write), and the end of the
// stream stores the artifact and writes the event.
class RegisterModelReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  // Artifact writes (and their fsync) and the parsing of each message run on
  // `workers`, never on gRPC's threads; one read is outstanding at a time, so
  // chunks stay in order. `response` is gRPC's, valid until the call is done.
  // `actor`: the caller's identity, recorded on the ModelRegistered event.
  RegisterModelReactor(grpc::CallbackServerContext* context, ModelRegistry* registry,
                       absl::string_view actor, grpc::ByteBuffer* response, WorkerPool* workers)
      : context_(context),
        upload_(registry->StartUpload(actor)),
        response_(response),
        workers_(workers) {
    StartRead(&request_bytes_);
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
        Finish(ToGrpcStatus(result.ok() ? SerializeResponse(*result, response_) : result.status()));
      });
      return;
    }
    ++messages_read_;
    const bool parsed = ParseMessage(request_bytes_, &request_);
    if (parsed) request_bytes_.Clear();  // a chunk may be large: keep one copy
    if (!parsed) {
      // A message that cannot be parsed ends the upload: the artifact would
      // miss its bytes. Dropping the upload removes its temp file.
      const absl::Status failed =
          ParseFailure(request_bytes_, *predlog::v1::RegisterModelRequest::descriptor(),
                       absl::StrCat("message ", messages_read_, " of the upload"));
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat(failed.message(), "; nothing was registered")));
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
    StartRead(&request_bytes_);
  }

  grpc::CallbackServerContext* const context_;
  std::unique_ptr<ModelRegistry::Upload> upload_;
  grpc::ByteBuffer* const response_;
  WorkerPool* const workers_;
  grpc::ByteBuffer request_bytes_;
  predlog::v1::RegisterModelRequest request_;
  int64_t messages_read_ = 0;
  bool begun_ = false;
};

}  // namespace

grpc::ServerReadReactor<grpc::ByteBuffer>* RegistryService::RegisterModel(
    grpc::CallbackServerContext* context, grpc::ByteBuffer* response) {
  return ServeStream<grpc::ServerReadReactor<grpc::ByteBuffer>>(
      gate_, context, [&](const auth::Caller& caller) {
        return new RegisterModelReactor(context, registry_, caller.name, response, gate_.workers);
      });
}

grpc::ServerUnaryReactor* RegistryService::DeployModel(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  return FinishFromCallback<predlog::v1::DeployModelRequest, predlog::v1::RegistryReceipt>(
      gate_, "/predlog.v1.Registry/DeployModel", context, request, response,
      [this](const predlog::v1::DeployModelRequest& parsed, const auth::Caller& caller, auto done) {
        registry_->Deploy(parsed, caller.name, std::move(done));
      });
}

grpc::ServerUnaryReactor* RegistryService::GetModel(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::GetModelRequest, predlog::v1::ModelRecord>(
      gate_, "/predlog.v1.Registry/GetModel", context, request, response,
      [this](const predlog::v1::GetModelRequest& parsed) { return registry_->GetModel(parsed); });
}

grpc::ServerUnaryReactor* RegistryService::ListModels(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::ListModelsRequest, predlog::v1::ListModelsResponse>(
      gate_, "/predlog.v1.Registry/ListModels", context, request, response,
      [this](const predlog::v1::ListModelsRequest& parsed) {
        return registry_->ListModels(parsed);
      });
}

grpc::ServerUnaryReactor* RegistryService::RegisterDataset(grpc::CallbackServerContext* context,
                                                           const grpc::ByteBuffer* request,
                                                           grpc::ByteBuffer* response) {
  return FinishFromCallback<predlog::v1::RegisterDatasetRequest, predlog::v1::RegistryReceipt>(
      gate_, "/predlog.v1.Registry/RegisterDataset", context, request, response,
      [this](const predlog::v1::RegisterDatasetRequest& parsed, const auth::Caller& caller,
             auto done) { registry_->RegisterDataset(parsed, caller.name, std::move(done)); });
}

grpc::ServerUnaryReactor* RegistryService::GetDataset(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::GetDatasetRequest, predlog::v1::DatasetRecord>(
      gate_, "/predlog.v1.Registry/GetDataset", context, request, response,
      [this](const predlog::v1::GetDatasetRequest& parsed) {
        return registry_->GetDataset(parsed);
      });
}

grpc::ServerUnaryReactor* ReplayService::Rerun(grpc::CallbackServerContext* context,
                                               const grpc::ByteBuffer* request,
                                               grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::RerunRequest, predlog::v1::RerunReport>(
      gate_, "/predlog.v1.Replay/Rerun", context, request, response,
      [this](const predlog::v1::RerunRequest& parsed) { return replayer_->Rerun(parsed); });
}

grpc::ServerUnaryReactor* ReplayService::RerunTrace(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::RerunTraceRequest, predlog::v1::RerunTraceReport>(
      gate_, "/predlog.v1.Replay/RerunTrace", context, request, response,
      [this](const predlog::v1::RerunTraceRequest& parsed) {
        return replayer_->RerunTrace(parsed);
      });
}

grpc::ServerUnaryReactor* ReplayService::GetEntityAt(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::GetEntityAtRequest, predlog::v1::EntityAtResponse>(
      gate_, "/predlog.v1.Replay/GetEntityAt", context, request, response,
      [this](const predlog::v1::GetEntityAtRequest& parsed) {
        return replayer_->GetEntityAt(parsed);
      });
}

grpc::ServerUnaryReactor* ReplayService::GetRegistryAt(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::GetRegistryAtRequest, predlog::v1::RegistryAtResponse>(
      gate_, "/predlog.v1.Replay/GetRegistryAt", context, request, response,
      [this](const predlog::v1::GetRegistryAtRequest& parsed) {
        return replayer_->GetRegistryAt(parsed);
      });
}

grpc::ServerUnaryReactor* ReplayService::GetLineage(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::GetLineageRequest, predlog::v1::Lineage>(
      gate_, "/predlog.v1.Replay/GetLineage", context, request, response,
      [this](const predlog::v1::GetLineageRequest& parsed) {
        return replayer_->GetLineage(parsed);
      });
}

grpc::ServerUnaryReactor* ReplayService::GetImpact(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::GetImpactRequest, predlog::v1::Impact>(
      gate_, "/predlog.v1.Replay/GetImpact", context, request, response,
      [this](const predlog::v1::GetImpactRequest& parsed) { return replayer_->GetImpact(parsed); });
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
// idle for every read (and the client waiting). The batch in flight is
// already serialized (batch_bytes_), so the next one is read into the same
// batch_.
class ExportTrailReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // Parsing the request and reading the shards run on the gate's workers,
  // never on gRPC's threads. The call is recorded in the access trail (when
  // the gate keeps one) once its request parsed, and nothing is read before
  // that record is written.
  ExportTrailReactor(const Audit* audit, const grpc::ByteBuffer& request_bytes,
                     grpc::CallbackServerContext* context, const CallGate& gate,
                     const auth::Caller& caller)
      : workers_(gate.workers) {
    {
      absl::MutexLock lock(&mu_);
      pumping_ = true;
    }
    // The copy shares gRPC's slices.
    workers_->Submit([this, audit, request_bytes, gate, caller, peer = context->peer()] {
      if (absl::Status parsed = ParseRequest(request_bytes, &request_); !parsed.ok()) {
        Finish(ToGrpcStatus(parsed));
        return;
      }
      const absl::StatusOr<bool> recorded = Recorded(gate, kMethod);
      if (!recorded.ok()) {
        Finish(ToGrpcStatus(recorded.status()));
        return;
      }
      if (!*recorded) {
        Start(audit);
        return;
      }
      gate.access->Record(kMethod, caller, peer, request_, [this, audit](absl::Status recorded) {
        if (!recorded.ok()) {
          Finish(ToGrpcStatus(recorded));
          return;
        }
        workers_->Submit([this, audit] { Start(audit); });
      });
    });
  }

  static constexpr absl::string_view kMethod = "/predlog.v1.Audit/ExportTrail";

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
  // Reads the next batch into batch_.
  void Fill() {
    absl::StatusOr<bool> more = cursor_->Next(kExportBatchRecords, kExportBatchBytes, &batch_);
    if (!more.ok()) {
      end_ = ToGrpcStatus(more.status());
    } else if (!*more) {
      end_ = grpc::Status::OK;
    }
  }

  // Writes the batch read ahead and reads the next; goes on while writes
  // complete during reads. One Pump at a time (pumping_); it owns end_ and
  // batch_, and batch_bytes_ while no write is in flight (always, here).
  void Pump() {
    while (true) {
      if (!end_.has_value()) {
        if (absl::Status serialized = SerializeResponse(batch_, &batch_bytes_); !serialized.ok()) {
          end_ = ToGrpcStatus(serialized);
        }
      }
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
      StartWrite(&batch_bytes_);
      Fill();
      absl::MutexLock lock(&mu_);
      if (writing_) {
        pumping_ = false;  // OnWriteDone goes on
        return;
      }
    }
  }

  // Begins reading (on a worker).
  void Start(const Audit* audit) {
    absl::StatusOr<std::unique_ptr<ExportCursor>> cursor = audit->StartExport(request_);
    if (!cursor.ok()) {
      Finish(ToGrpcStatus(cursor.status()));
      return;
    }
    cursor_ = std::move(*cursor);
    Fill();
    Pump();
  }

  WorkerPool* const workers_;
  predlog::v1::ExportTrailRequest request_;
  std::unique_ptr<ExportCursor> cursor_;
  predlog::v1::ExportBatch batch_;   // read ahead by Fill
  grpc::ByteBuffer batch_bytes_;     // the write in flight
  std::optional<grpc::Status> end_;  // once the cursor is done or failed

  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // a StartWrite awaits OnWriteDone
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;  // a thread is in Pump
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* AuditService::ExportTrail(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return ServeStream<grpc::ServerWriteReactor<grpc::ByteBuffer>>(
      gate_, context, [&](const auth::Caller& caller) {
        return new ExportTrailReactor(audit_, *request, context, gate_, caller);
      });
}

grpc::ServerUnaryReactor* AuditService::GetStatus(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::GetStatusRequest, predlog::v1::StatusResponse>(
      gate_, "/predlog.v1.Audit/GetStatus", context, request, response,
      [this](const predlog::v1::GetStatusRequest&) { return audit_->Status(); });
}

grpc::ServerUnaryReactor* AuditService::GetChainValues(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::GetChainValuesRequest, predlog::v1::GetChainValuesResponse>(
      gate_, "/predlog.v1.Audit/GetChainValues", context, request, response,
      [this](const predlog::v1::GetChainValuesRequest& parsed) {
        return audit_->GetChainValues(parsed);
      });
}

grpc::ServerUnaryReactor* AuditService::SignCheckpoints(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::SignCheckpointsRequest, predlog::v1::SignCheckpointsResponse>(
      gate_, "/predlog.v1.Audit/SignCheckpoints", context, request, response,
      [this](const predlog::v1::SignCheckpointsRequest& parsed) {
        return audit_->SignCheckpoints(parsed);
      });
}

grpc::ServerUnaryReactor* AuditService::GetConsistencyProof(grpc::CallbackServerContext* context,
                                                            const grpc::ByteBuffer* request,
                                                            grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::GetConsistencyProofRequest,
                      predlog::v1::GetConsistencyProofResponse>(
      gate_, "/predlog.v1.Audit/GetConsistencyProof", context, request, response,
      [this](const predlog::v1::GetConsistencyProofRequest& parsed) {
        return audit_->GetConsistencyProof(parsed);
      });
}

grpc::ServerUnaryReactor* AuditService::ListAccess(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::ListAccessRequest, predlog::v1::ListAccessResponse>(
      gate_, "/predlog.v1.Audit/ListAccess", context, request, response,
      [this](const predlog::v1::ListAccessRequest& parsed)
          -> absl::StatusOr<predlog::v1::ListAccessResponse> {
        if (gate_.access == nullptr) {
          return absl::UnavailableError("this predlogd keeps no access trail (it has no shards)");
        }
        return gate_.access->List(parsed);
      });
}

grpc::ServerUnaryReactor* AdminService::CreateBackup(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  return FinishOnPool<predlog::v1::CreateBackupRequest, predlog::v1::CreateBackupResponse>(
      gate_, "/predlog.v1.Admin/CreateBackup", context, request, response,
      [this](const predlog::v1::CreateBackupRequest& parsed) {
        return admin_->CreateBackup(parsed);
      });
}

}  // namespace predlog::services
