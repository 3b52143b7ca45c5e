// gRPC adapters: translate protos and statuses, call the plain classes, never
// block a reactor (Log completes from Kafka's delivery / the fold callback).
//
// Every method is registered raw (ByteBuffer in, ByteBuffer out) and parses
// its own request (request_parse.h): a request that cannot be parsed is
// answered INVALID_ARGUMENT "<what> could not be parsed as predlog.v1.X: why",
// naming the string field that is not UTF-8 where there is one. gRPC 1.51's
// own deserialization answers UNIMPLEMENTED with an empty message for unary
// calls and, in a stream, ends the reads as if the client had closed it.
// Streams: a LogStream request that cannot be parsed gets an error receipt
// and the stream goes on (its contract for failed requests); a RegisterModel
// message that cannot be parsed ends the upload with INVALID_ARGUMENT and
// registers nothing. A new RPC must be added raw too (a WithRawCallbackMethod_
// below); Server::Start refuses a service with a method that is not.
//
// Each method takes the request's bytes (borrowed from gRPC until the call
// finishes) and, for a unary call, writes the response's bytes into
// `response` before finishing; the status codes are those of the plain
// class it calls, plus INVALID_ARGUMENT for a request that cannot be parsed.
// Thread-safe: gRPC calls the methods concurrently.
//
// Who may call what is not decided here: with an identities file every call
// has passed the role table in the port's metadata processor
// (services/auth/grpc_auth.h) before a method below runs. Each method takes
// its caller from the shared entry helpers (ServeUnary, ServeStream in the
// .cc: auth::CallerOf) and writes record that identity as AuditEvent.actor.
// A method the role table marks recorded (auth::Trail::kRecorded) runs only
// once its AccessRecorded is in the access trail (CallGate::access).
#ifndef PREDLOG_SERVICES_SERVER_GRPC_SERVICES_H_
#define PREDLOG_SERVICES_SERVER_GRPC_SERVICES_H_

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/byte_buffer.h"
#include "predlog/v1/admin.grpc.pb.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "replay/replayer.h"
#include "services/auth/auth.h"
#include "services/server/access_trail.h"
#include "services/server/admin.h"
#include "services/server/audit.h"
#include "services/server/model_registry.h"
#include "services/server/prediction_log.h"
#include "services/server/worker_pool.h"

namespace predlog::services {

grpc::Status ToGrpcStatus(const absl::Status& status);

// The generated services with every method raw (see the top of this file).
using RawPredictionLogService = predlog::v1::PredictionLog::WithRawCallbackMethod_Log<
    predlog::v1::PredictionLog::WithRawCallbackMethod_LogStream<
        predlog::v1::PredictionLog::WithRawCallbackMethod_LogBatch<
            predlog::v1::PredictionLog::WithRawCallbackMethod_GetPrediction<
                predlog::v1::PredictionLog::WithRawCallbackMethod_ListPredictions<
                    predlog::v1::PredictionLog::WithRawCallbackMethod_ChangeEntity<
                        predlog::v1::PredictionLog::WithRawCallbackMethod_ListEntityChanges<
                            predlog::v1::PredictionLog::Service>>>>>>>;
using RawRegistryService = predlog::v1::Registry::WithRawCallbackMethod_RegisterModel<
    predlog::v1::Registry::WithRawCallbackMethod_DeployModel<
        predlog::v1::Registry::WithRawCallbackMethod_GetModel<
            predlog::v1::Registry::WithRawCallbackMethod_ListModels<
                predlog::v1::Registry::WithRawCallbackMethod_RegisterDataset<
                    predlog::v1::Registry::WithRawCallbackMethod_GetDataset<
                        predlog::v1::Registry::Service>>>>>>;
using RawReplayService = predlog::v1::Replay::WithRawCallbackMethod_Rerun<
    predlog::v1::Replay::WithRawCallbackMethod_RerunTrace<
        predlog::v1::Replay::WithRawCallbackMethod_GetEntityAt<
            predlog::v1::Replay::WithRawCallbackMethod_GetRegistryAt<
                predlog::v1::Replay::WithRawCallbackMethod_GetLineage<
                    predlog::v1::Replay::WithRawCallbackMethod_GetImpact<
                        predlog::v1::Replay::Service>>>>>>;
using RawAuditService = predlog::v1::Audit::WithRawCallbackMethod_ExportTrail<
    predlog::v1::Audit::WithRawCallbackMethod_GetStatus<
        predlog::v1::Audit::WithRawCallbackMethod_GetChainValues<
            predlog::v1::Audit::WithRawCallbackMethod_SignCheckpoints<
                predlog::v1::Audit::WithRawCallbackMethod_GetConsistencyProof<
                    predlog::v1::Audit::WithRawCallbackMethod_ListAccess<
                        predlog::v1::Audit::Service>>>>>>;
using RawAdminService =
    predlog::v1::Admin::WithRawCallbackMethod_CreateBackup<predlog::v1::Admin::Service>;

// What every call passes through before its method runs: the caller's
// identity, and for a method the role table marks recorded, its record in
// the access trail. All borrowed; they must outlive the gRPC server.
struct CallGate {
  const auth::Authorizer* authorizer = nullptr;  // required
  // Null: no call is recorded (a test of the adapters alone; predlogd's
  // gateway always keeps one, through Kafka when it has no shards).
  AccessTrail* access = nullptr;
  // Blocking work of calls runs here, never on gRPC's threads. Required.
  WorkerPool* workers = nullptr;
};

// Most LogStream requests of one stream awaiting or holding unwritten receipts;
// reading pauses above it (backpressure instead of unbounded memory).
inline constexpr int kMaxStreamInFlight = 500;

// predlog.v1.PredictionLog. Borrows `log`, which must outlive the server.
//
// Writes hand their events to the shard writers (or the producer) and finish
// from their callbacks. Small reads, GetPrediction and a ListPredictions or
// ListEntityChanges page of at most PredictionLog::kDefaultPageSize records
// (tens of µs from memory,
// a few ms at worst from a cold disk), run inline on gRPC's thread when no
// access trail is kept (a hand-off to the pool and back costs two thread
// wake-ups, more than the read itself: bench/RESULTS.md, issue 11). predlogd
// keeps one, so there they run on a worker once their AccessRecorded is
// written (the trail's group commit, ~1 ms with --sync: bench/RESULTS.md,
// "The access trail"). Larger pages run on the pool.
class PredictionLogService final : public RawPredictionLogService {
 public:
  // Large pages run on the gate's workers.
  PredictionLogService(PredictionLog* log, const CallGate& gate) : log_(log), gate_(gate) {}

  grpc::ServerUnaryReactor* Log(grpc::CallbackServerContext* context,
                                const grpc::ByteBuffer* request,
                                grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* LogBatch(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetPrediction(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* LogStream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ChangeEntity(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListPredictions(grpc::CallbackServerContext* context,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListEntityChanges(grpc::CallbackServerContext* context,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response) override;

 private:
  PredictionLog* const log_;
  const CallGate gate_;
};

// predlog.v1.Registry. Borrows `registry`, which must outlive the server.
class RegistryService final : public RawRegistryService {
 public:
  // Blocking work runs on the gate's workers.
  RegistryService(ModelRegistry* registry, const CallGate& gate)
      : registry_(registry), gate_(gate) {}

  grpc::ServerReadReactor<grpc::ByteBuffer>* RegisterModel(grpc::CallbackServerContext* context,
                                                           grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* DeployModel(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* RegisterDataset(grpc::CallbackServerContext* context,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetDataset(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;

 private:
  ModelRegistry* const registry_;
  const CallGate gate_;
};

// predlog.v1.Replay. Borrows `replayer`, which must outlive the server. Calls
// run on the worker pool: a rerun may load a model, and a state-at fold
// reads up to one snapshot interval of records.
class ReplayService final : public RawReplayService {
 public:
  // Blocking work runs on the gate's workers.
  ReplayService(const replay::Replayer* replayer, const CallGate& gate)
      : replayer_(replayer), gate_(gate) {}

  grpc::ServerUnaryReactor* Rerun(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* RerunTrace(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetEntityAt(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetRegistryAt(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetLineage(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetImpact(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;

 private:
  const replay::Replayer* const replayer_;
  const CallGate gate_;
};

// predlog.v1.Audit. Borrows `audit`, which must outlive the server. An export
// streams batches as the client reads them (one read of the shard per write).
class AuditService final : public RawAuditService {
 public:
  // Blocking work runs on the gate's workers; ListAccess reads the gate's
  // access trail.
  AuditService(const Audit* audit, const CallGate& gate) : audit_(audit), gate_(gate) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* ExportTrail(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetChainValues(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* SignCheckpoints(grpc::CallbackServerContext* context,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetConsistencyProof(grpc::CallbackServerContext* context,
                                                const grpc::ByteBuffer* request,
                                                grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListAccess(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;

 private:
  const Audit* const audit_;
  const CallGate gate_;
};

// predlog.v1.Admin. Borrows `admin`, which must outlive the server. A backup
// copies files for seconds to minutes: it runs on the worker pool.
class AdminService final : public RawAdminService {
 public:
  // Blocking work runs on the gate's workers.
  AdminService(const Admin* admin, const CallGate& gate) : admin_(admin), gate_(gate) {}

  grpc::ServerUnaryReactor* CreateBackup(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;

 private:
  const Admin* const admin_;
  const CallGate gate_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_GRPC_SERVICES_H_
