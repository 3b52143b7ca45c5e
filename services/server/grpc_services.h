// gRPC adapters: translate protos and statuses, call the plain classes, never
// block a reactor (Log completes from Kafka's delivery / the fold callback).
#ifndef PREDLOG_SERVICES_SERVER_GRPC_SERVICES_H_
#define PREDLOG_SERVICES_SERVER_GRPC_SERVICES_H_

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "replay/replayer.h"
#include "services/server/audit.h"
#include "services/server/model_registry.h"
#include "services/server/prediction_log.h"
#include "services/server/worker_pool.h"

namespace predlog::services {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Most LogStream requests of one stream awaiting or holding unwritten receipts;
// reading pauses above it (backpressure instead of unbounded memory).
inline constexpr int kMaxStreamInFlight = 500;

// predlog.v1.PredictionLog. Borrows `log`, which must outlive the server.
//
//
// Writes hand their events to the shard writers (or the producer) and finish
// from their callbacks. Small reads, GetPrediction and a ListPredictions page
// of at most PredictionLog::kDefaultPageSize records (tens of µs from memory,
// a few ms at worst from a cold disk), run inline on gRPC's thread: a hand-off
// to the pool and back costs two thread wake-ups, more than the read itself
// (bench/RESULTS.md, issue 11). Larger pages run on the pool.
class PredictionLogService final : public predlog::v1::PredictionLog::CallbackService {
 public:
  // Large pages run on `workers` (borrowed; it must outlive the gRPC server).
  PredictionLogService(PredictionLog* log, WorkerPool* workers) : log_(log), workers_(workers) {}

  grpc::ServerUnaryReactor* Log(grpc::CallbackServerContext* context,
                                const predlog::v1::LogRequest* request,
                                predlog::v1::LogReceipt* receipt) override;
  grpc::ServerUnaryReactor* LogBatch(grpc::CallbackServerContext* context,
                                     const predlog::v1::LogBatchRequest* request,
                                     predlog::v1::LogBatchResponse* response) override;
  grpc::ServerUnaryReactor* GetPrediction(grpc::CallbackServerContext* context,
                                          const predlog::v1::GetPredictionRequest* request,
                                          predlog::v1::PredictionRecord* record) override;
  grpc::ServerBidiReactor<predlog::v1::LogRequest, predlog::v1::LogReceipt>* LogStream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ChangeEntity(grpc::CallbackServerContext* context,
                                         const predlog::v1::ChangeEntityRequest* request,
                                         predlog::v1::LogReceipt* receipt) override;
  grpc::ServerUnaryReactor* ListPredictions(
      grpc::CallbackServerContext* context, const predlog::v1::ListPredictionsRequest* request,
      predlog::v1::ListPredictionsResponse* response) override;

 private:
  PredictionLog* const log_;
  WorkerPool* const workers_;
};

// predlog.v1.Registry. Borrows `registry`, which must outlive the server.
class RegistryService final : public predlog::v1::Registry::CallbackService {
 public:
  // Blocking work runs on `workers` (borrowed; it must outlive the gRPC server).
  RegistryService(ModelRegistry* registry, WorkerPool* workers)
      : registry_(registry), workers_(workers) {}

  grpc::ServerReadReactor<predlog::v1::RegisterModelRequest>* RegisterModel(
      grpc::CallbackServerContext* context, predlog::v1::RegisterModelResponse* response) override;
  grpc::ServerUnaryReactor* DeployModel(grpc::CallbackServerContext* context,
                                        const predlog::v1::DeployModelRequest* request,
                                        predlog::v1::RegistryReceipt* receipt) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const predlog::v1::GetModelRequest* request,
                                     predlog::v1::ModelRecord* record) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const predlog::v1::ListModelsRequest* request,
                                       predlog::v1::ListModelsResponse* response) override;

 private:
  ModelRegistry* const registry_;
  WorkerPool* const workers_;
};

// predlog.v1.Replay. Borrows `replayer`, which must outlive the server. Calls
// run on the worker pool: a rerun may load a model, and a state-at fold
// reads up to one snapshot interval of records.
class ReplayService final : public predlog::v1::Replay::CallbackService {
 public:
  // Blocking work runs on `workers` (borrowed; it must outlive the gRPC server).
  ReplayService(const replay::Replayer* replayer, WorkerPool* workers)
      : replayer_(replayer), workers_(workers) {}

  grpc::ServerUnaryReactor* Rerun(grpc::CallbackServerContext* context,
                                  const predlog::v1::RerunRequest* request,
                                  predlog::v1::RerunReport* report) override;
  grpc::ServerUnaryReactor* RerunTrace(grpc::CallbackServerContext* context,
                                       const predlog::v1::RerunTraceRequest* request,
                                       predlog::v1::RerunTraceReport* report) override;
  grpc::ServerUnaryReactor* GetEntityAt(grpc::CallbackServerContext* context,
                                        const predlog::v1::GetEntityAtRequest* request,
                                        predlog::v1::EntityAtResponse* response) override;
  grpc::ServerUnaryReactor* GetRegistryAt(grpc::CallbackServerContext* context,
                                          const predlog::v1::GetRegistryAtRequest* request,
                                          predlog::v1::RegistryAtResponse* response) override;

 private:
  const replay::Replayer* const replayer_;
  WorkerPool* const workers_;
};

// predlog.v1.Audit. Borrows `audit`, which must outlive the server. An export
// streams batches as the client reads them (one read of the shard per write).
class AuditService final : public predlog::v1::Audit::CallbackService {
 public:
  // Blocking work runs on `workers` (borrowed; it must outlive the gRPC server).
  AuditService(const Audit* audit, WorkerPool* workers) : audit_(audit), workers_(workers) {}

  grpc::ServerWriteReactor<predlog::v1::ExportBatch>* ExportTrail(
      grpc::CallbackServerContext* context,
      const predlog::v1::ExportTrailRequest* request) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const predlog::v1::GetStatusRequest* request,
                                      predlog::v1::StatusResponse* response) override;

 private:
  const Audit* const audit_;
  WorkerPool* const workers_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_GRPC_SERVICES_H_
