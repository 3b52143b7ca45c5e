#include "services/kafka/tcp_forwarder.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "storage/logging.h"

namespace predlog::services {
namespace {

absl::StatusOr<sockaddr_in> ParseAddress(const std::string& address, absl::string_view flag) {
  const size_t colon = address.rfind(':');
  int port = -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535 ||
      inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", address, ": want IPv4 host:port"));
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpForwarder>> TcpForwarder::Start(const std::string& listen,
                                                                  const std::string& target) {
  absl::StatusOr<sockaddr_in> listen_addr = ParseAddress(listen, "--embedded_kafka_listen");
  if (!listen_addr.ok()) return listen_addr.status();
  absl::StatusOr<sockaddr_in> target_addr = ParseAddress(target, "broker address");
  if (!target_addr.ok()) return target_addr.status();
  std::unique_ptr<TcpForwarder> f(new TcpForwarder());
  f->target_host_ = target.substr(0, target.rfind(':'));
  f->target_port_ = ntohs(target_addr->sin_port);
  f->listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(f->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(f->listen_fd_, reinterpret_cast<const sockaddr*>(&*listen_addr), sizeof(*listen_addr)) !=
          0 ||
      ::listen(f->listen_fd_, 64) != 0) {
    const std::string error = std::strerror(errno);
    close(f->listen_fd_);
    f->listen_fd_ = -1;
    return absl::UnavailableError(
        absl::StrCat("--embedded_kafka_listen ", listen, ": cannot listen there: ", error));
  }
  f->acceptor_ = std::thread([raw = f.get()] { raw->AcceptLoop(); });
  return f;
}

TcpForwarder::~TcpForwarder() {
  stop_.store(true);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  std::vector<std::thread> pipes;
  {
    absl::MutexLock lock(&mu_);
    pipes.swap(pipes_);
  }
  for (auto& t : pipes) t.join();
}

void TcpForwarder::AcceptLoop() {
  while (!stop_.load()) {
    pollfd pfd{listen_fd_, POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    const int client = accept(listen_fd_, nullptr, nullptr);
    if (client < 0) continue;
    absl::MutexLock lock(&mu_);
    pipes_.emplace_back([this, client] { Pipe(client); });
  }
}

void TcpForwarder::Pipe(int client) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(target_port_));
  inet_pton(AF_INET, target_host_.c_str(), &addr.sin_addr);
  const int upstream = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(upstream, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    PREDLOG_LOG(WARNING) << "forwarder: connect to broker: " << std::strerror(errno);
    close(upstream);
    close(client);
    return;
  }
  const int one = 1;
  setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  char buf[64 << 10];
  pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
  bool open = true;
  while (open && !stop_.load()) {
    if (poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2 && open; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        open = false;
        break;
      }
      for (ssize_t sent = 0; sent < n && open;) {
        // MSG_NOSIGNAL: a peer that went away must not SIGPIPE the whole process.
        const ssize_t w =
            send(fds[1 - i].fd, buf + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
        if (w <= 0) open = false;
        sent += w;
      }
    }
  }
  close(client);
  close(upstream);
}

}  // namespace predlog::services
