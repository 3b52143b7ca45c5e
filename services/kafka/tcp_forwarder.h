// A small TCP forwarder: accepts on a fixed address and pipes each connection
// to a target address. It gives the embedded broker (whose port librdkafka's
// mock cluster picks itself) a fixed bootstrap address for kcat and other
// clients; broker metadata then points them at the broker's own port.
//
// Thread-safe; one thread per open connection plus one accepting.
#ifndef PREDLOG_SERVICES_KAFKA_TCP_FORWARDER_H_
#define PREDLOG_SERVICES_KAFKA_TCP_FORWARDER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace predlog::services {

class TcpForwarder {
 public:
  // Listens on `listen` ("host:port", IPv4) and forwards to `target`.
  static absl::StatusOr<std::unique_ptr<TcpForwarder>> Start(const std::string& listen,
                                                             const std::string& target);
  // Stops accepting and closes every forwarded connection.
  ~TcpForwarder();

 private:
  TcpForwarder() = default;
  void AcceptLoop();
  void Pipe(int client);

  int listen_fd_ = -1;
  std::string target_host_;
  int target_port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<std::thread> pipes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_KAFKA_TCP_FORWARDER_H_
