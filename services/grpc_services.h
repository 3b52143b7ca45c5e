// gRPC adapters: translate protos and statuses, call the plain classes, never
// block a reactor (Log completes from Kafka's delivery / the fold callback).
#ifndef PREDLOG_SERVICES_GRPC_SERVICES_H_
#define PREDLOG_SERVICES_GRPC_SERVICES_H_

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/prediction_log.h"

namespace predlog::services {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Most LogStream requests of one stream awaiting or holding unwritten receipts;
// reading pauses above it (backpressure instead of unbounded memory).
inline constexpr int kMaxStreamInFlight = 500;

// predlog.v1.PredictionLog. Borrows `log`, which must outlive the server.
class PredictionLogService final : public predlog::v1::PredictionLog::CallbackService {
 public:
  explicit PredictionLogService(PredictionLog* log) : log_(log) {}

  grpc::ServerUnaryReactor* Log(grpc::CallbackServerContext* context,
                                const predlog::v1::LogRequest* request,
                                predlog::v1::LogReceipt* receipt) override;
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
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_GRPC_SERVICES_H_
