// Client side of predlog.v1.Registry/RegisterModel: the one upload loop the
// CLI, tests and benchmarks share. Links only the gRPC stubs.
#ifndef PREDLOG_SERVICES_CLI_REGISTRY_CLIENT_H_
#define PREDLOG_SERVICES_CLI_REGISTRY_CLIENT_H_

#include <cstddef>
#include <istream>

#include "grpcpp/grpcpp.h"
#include "predlog/v1/registry.grpc.pb.h"

namespace predlog::services {

// Sends `first` (metadata and actor), then `artifact` read to its end in
// chunks of `chunk_bytes`, and returns the call's status. A read error of
// `artifact` cancels the call (CANCELLED, nothing registered).
grpc::Status UploadModel(predlog::v1::Registry::StubInterface* stub, grpc::ClientContext* context,
                         const predlog::v1::RegisterModelRequest& first, std::istream& artifact,
                         predlog::v1::RegisterModelResponse* response,
                         size_t chunk_bytes = size_t{1} << 20);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_CLI_REGISTRY_CLIENT_H_
