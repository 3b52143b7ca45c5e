// predlogd: wires the embedded broker (or a real cluster), the producer, the
// ingest and the gRPC server, as the roles ask.
#ifndef PREDLOG_SERVICES_SERVER_H_
#define PREDLOG_SERVICES_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace predlog::services {

struct ServerOptions {
  std::string data_dir = "./data";
  std::string grpc_listen = "127.0.0.1:50051";
  // Empty: start the embedded broker.
  std::string kafka_brokers;
  int partitions = 4;
  // Source name for shards when kafka_brokers is set (the embedded broker
  // names each of its starts itself).
  std::string source_name = "kafka";
};

// A running predlogd. Thread-safe.
class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  // Stops accepting, finishes in-flight calls and batches, flushes, closes.
  ~Server();

  // The address gRPC listens on (with the port it picked when given :0).
  const std::string& grpc_address() const;
  // The Kafka bootstrap address in use.
  const std::string& kafka_address() const;

 private:
  struct Parts;
  explicit Server(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

// Runs until SIGINT or SIGTERM; the status of startup or shutdown.
absl::Status RunUntilSignalled(const ServerOptions& options);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_H_
