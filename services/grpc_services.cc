#include "services/grpc_services.h"

#include <string>

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

grpc::ServerUnaryReactor* PredictionLogService::GetPrediction(
    grpc::CallbackServerContext* context, const predlog::v1::GetPredictionRequest* request,
    predlog::v1::PredictionRecord* record) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<predlog::v1::PredictionRecord> result = log_->GetPrediction(*request);
  if (result.ok()) *record = std::move(*result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
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
