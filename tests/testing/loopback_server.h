// A predlogd Server for gRPC tests, in-process on loopback: its shards under a
// test's temp dir, a gRPC port the OS picks, no HTTP listener, and a plaintext
// channel to it. The one way the server tests start one.
#ifndef PREDLOG_TESTS_TESTING_LOOPBACK_SERVER_H_
#define PREDLOG_TESTS_TESTING_LOOPBACK_SERVER_H_

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "services/server/server.h"

namespace predlog::testing {

struct LoopbackServer {
  std::unique_ptr<services::Server> server;
  std::shared_ptr<grpc::Channel> channel;
};

// Starts `options` (any other field as the test sets it) with data_dir,
// a free loopback gRPC port, no HTTP listener and `partitions` events
// shards. Server::Start's errors as they are.
inline absl::StatusOr<LoopbackServer> StartLoopbackServer(services::ServerOptions options,
                                                          const std::string& data_dir,
                                                          int partitions) {
  options.data_dir = data_dir;
  options.grpc_listen = "127.0.0.1:0";
  options.http_listen = "";
  options.partitions = partitions;
  absl::StatusOr<std::unique_ptr<services::Server>> server = services::Server::Start(options);
  if (!server.ok()) return server.status();
  LoopbackServer out;
  out.channel = grpc::CreateChannel((*server)->grpc_address(), grpc::InsecureChannelCredentials());
  out.server = *std::move(server);
  return out;
}

// A call's deadline: 30 s from now.
inline void SetTestDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_TESTING_LOOPBACK_SERVER_H_
