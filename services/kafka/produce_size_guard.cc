#include "services/kafka/produce_size_guard.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "storage/errno_status.h"
#include "storage/logging.h"

// The Kafka protocol as far as the guard reads and writes it
// (https://kafka.apache.org/protocol; integers are big-endian):
//
//   request         := size:int32 api_key:int16 api_version:int16
//                      correlation_id:int32 client_id:nullable_string body
//   response        := size:int32 correlation_id:int32 body
//   (size counts the bytes after itself. Flexible versions add tagged fields
//   to both headers; of other requests and of responses the guard reads only
//   the fields before them.)
//   Produce request body, api_key 0, versions 0-7 (none is flexible):
//                   := [v3+ transactional_id:nullable_string] acks:int16
//                      timeout_ms:int32 topics:int32 topic*
//   topic           := name:string partitions:int32 partition*
//   partition       := index:int32 records:nullable_bytes
//   Produce response body, versions 0-7:
//                   := topics:int32 topic_response* [v1+ throttle_time_ms:int32]
//   topic_response  := name:string partitions:int32 partition_response*
//   partition_response := index:int32 error_code:int16 base_offset:int64
//                      [v2+ log_append_time_ms:int64] [v5+ log_start_offset:int64]
//   string          := length:int16 byte*   (nullable: length -1 is null)
//   bytes           := length:int32 byte*   (nullable: length -1 is null)
//
// Every request but a Produce with acks=0 gets exactly one response, in
// request order. The mock (2.0.2) answers even acks=0 Produces, so the guard
// counts every request it forwards as one response to relay; a request the
// mock cannot parse makes it close the connection, which ends the relay too.

namespace predlog::services {
namespace {

constexpr int16_t kProduceApiKey = 0;
constexpr int16_t kMaxProduceVersion = 7;  // the mock's; v8 adds fields, v9 is flexible
constexpr int16_t kMessageTooLarge = 10;
// For the batches of a refused request that are within the limit. It must be
// retriable and say "not appended", so the client sends them again (without
// the oversize batch) and an idempotent producer reuses their sequence
// numbers. librdkafka (rd_kafka_handle_Produce_error) treats 19 as RETRY +
// MSG_NOT_PERSISTED with no metadata refresh; the Java client's
// NotEnoughReplicasException is a RetriableException, not an invalid-metadata
// one. REQUEST_TIMED_OUT (7) would mean "possibly appended";
// NOT_LEADER_OR_FOLLOWER (6) and KAFKA_STORAGE_ERROR (56) force a metadata
// refresh for nothing.
constexpr int16_t kNotEnoughReplicas = 19;

// Size, api_key and api_version: enough of a request to route it.
constexpr size_t kRequestHeadBytes = 8;
// The smallest request: api_key, api_version and correlation_id.
constexpr int32_t kMinRequestSize = 8;
// Kafka's socket.request.max.bytes default (and librdkafka's
// receive.message.max.bytes bounds the mock near it): a broker closes a
// connection that announces a larger request.
constexpr int32_t kMaxRequestSize = 100 << 20;
constexpr size_t kResponseHeadBytes = 4;
// Bytes read from a socket at a time.
constexpr size_t kChunkBytes = 256 << 10;
// An emptied buffer keeps at most this much capacity.
constexpr size_t kKeptCapacity = 1 << 20;

int16_t GetInt16(const char* p) {
  return static_cast<int16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}
int32_t GetInt32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return static_cast<int32_t>(v);
}
void PutInt(std::string& out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// Bounds-checked reading of the grammar above; false once data runs out.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  bool Int16(int16_t* v) {
    if (data_.size() < 2) return false;
    *v = GetInt16(data_.data());
    data_.remove_prefix(2);
    return true;
  }
  bool Int32(int32_t* v) {
    if (data_.size() < 4) return false;
    *v = GetInt32(data_.data());
    data_.remove_prefix(4);
    return true;
  }
  // A string (int16 length) or, for nullable ones, null (-1).
  bool String(bool nullable, absl::string_view* s) {
    int16_t length = 0;
    if (!Int16(&length)) return false;
    if (length == -1 && nullable) return true;
    return Take(length, s);
  }
  // Bytes (int32 length); null (-1) reads as empty.
  bool NullableBytes(absl::string_view* s) {
    int32_t length = 0;
    if (!Int32(&length)) return false;
    if (length == -1) return true;
    return Take(length, s);
  }

 private:
  bool Take(int64_t length, absl::string_view* s) {
    if (length < 0 || static_cast<uint64_t>(length) > data_.size()) return false;
    *s = data_.substr(0, static_cast<size_t>(length));
    data_.remove_prefix(static_cast<size_t>(length));
    return true;
  }
  absl::string_view data_;
};

struct PartitionBatch {
  int32_t index = 0;
  size_t bytes = 0;
};
struct TopicBatches {
  absl::string_view name;
  std::vector<PartitionBatch> partitions;
};

// Bytes waiting to be written to one socket.
struct Outbox {
  std::string data;
  size_t sent = 0;

  bool empty() const { return sent == data.size(); }
  void Append(absl::string_view bytes) { data.append(bytes.data(), bytes.size()); }
  void Append(std::string&& bytes) {
    if (empty()) {
      data = std::move(bytes);
      sent = 0;
    } else {
      data.append(bytes);
    }
  }
  // Writes what the socket takes now; an error ends the connection.
  absl::Status Flush(int fd) {
    while (!empty()) {
      const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return absl::OkStatus();
      if (n < 0) return storage::ErrnoStatus(errno, "send to", "peer");
      sent += static_cast<size_t>(n);
    }
    if (data.capacity() > kKeptCapacity) {
      std::string().swap(data);
    } else {
      data.clear();
    }
    sent = 0;
    return absl::OkStatus();
  }
};

// One client connection and its own connection to the broker; the guard
// thread's alone.
struct Connection {
  enum class Reading { kHead, kStream, kProduce };

  Connection(int client_fd, int broker_fd, std::string peer_name)
      : client(client_fd), broker(broker_fd), peer(std::move(peer_name)) {}
  ~Connection() {
    close(client);
    close(broker);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const int client;
  const int broker;
  const std::string peer;  // "127.0.0.1:54321", for logs

  // Client to broker: the request being read.
  Reading request = Reading::kHead;
  std::string request_head;  // its first kRequestHeadBytes, while incomplete
  size_t request_left = 0;   // its bytes still to come, after the head
  std::string produce;       // a whole Produce, read before it is judged
  Outbox to_broker;

  // Broker to client: the response being relayed.
  Reading response = Reading::kHead;
  std::string response_head;  // its size, while incomplete
  size_t response_left = 0;
  Outbox to_client;

  // One entry per response the client is owed, in request order: nullopt
  // when the broker answers, else the guard's own answer, written once every
  // response before it has been relayed.
  std::deque<std::optional<std::string>> owed;
};

// `response` owed to the client after every response owed before it.
void Answer(Connection& c, std::string response) {
  if (c.owed.empty() && c.response == Connection::Reading::kHead && c.response_head.empty()) {
    c.to_client.Append(std::move(response));
  } else {
    c.owed.emplace_back(std::move(response));
  }
}

// The broker's response just relayed completely.
void OnBrokerResponse(Connection& c) {
  if (!c.owed.empty() && !c.owed.front().has_value()) c.owed.pop_front();
  while (!c.owed.empty() && c.owed.front().has_value()) {
    c.to_client.Append(*std::move(c.owed.front()));
    c.owed.pop_front();
  }
}

std::string PeerName(const sockaddr_in& address) {
  char host[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &address.sin_addr, host, sizeof(host));
  return absl::StrCat(host, ":", ntohs(address.sin_port));
}

absl::Status SetNoDelay(int fd) {
  const int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return storage::ErrnoStatus(errno, "kafka guard: TCP_NODELAY on socket", std::to_string(fd));
  }
  return absl::OkStatus();
}

// The guard thread's state and steps. Single-threaded.
class Relay {
 public:
  Relay(size_t max_batch_bytes, const sockaddr_in& broker)
      : max_(max_batch_bytes), broker_(broker) {}

  // Accepts every pending client on `listen_fd`; false when accept fails for
  // a reason that may persist (out of descriptors): pause accepting a while.
  bool AcceptAll(int listen_fd);
  // Relays what `client_events` and `broker_events` (poll revents) allow.
  // False when the connection has ended (logged unless the client closed it).
  bool Service(Connection& c, short client_events, short broker_events);
  std::vector<std::unique_ptr<Connection>>& connections() { return connections_; }

 private:
  absl::StatusOr<int> ConnectBroker();
  absl::Status FromClient(Connection& c, absl::string_view in);
  absl::Status FromBroker(Connection& c, absl::string_view in);
  void OnProduce(Connection& c);

  const size_t max_;
  const sockaddr_in broker_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<char> chunk_ = std::vector<char>(kChunkBytes);
};

absl::StatusOr<int> Relay::ConnectBroker() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return storage::ErrnoStatus(errno, "kafka guard: socket for", PeerName(broker_));
  absl::Status status = SetNoDelay(fd);
  // Blocking: on loopback the kernel completes the handshake into the
  // broker's backlog (SOMAXCONN deep) without waiting for its thread.
  if (status.ok() &&
      connect(fd, reinterpret_cast<const sockaddr*>(&broker_), sizeof(broker_)) != 0) {
    status = storage::ErrnoStatus(errno, "kafka guard: connect to broker at", PeerName(broker_));
  }
  if (status.ok() && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    status = storage::ErrnoStatus(errno, "kafka guard: O_NONBLOCK on", PeerName(broker_));
  }
  if (!status.ok()) {
    close(fd);
    return status;
  }
  return fd;
}

bool Relay::AcceptAll(int listen_fd) {
  while (true) {
    sockaddr_in peer{};
    socklen_t length = sizeof(peer);
    const int client = accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &length,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      PREDLOG_LOG(WARNING) << storage::ErrnoStatus(errno, "kafka guard: accept on", "port");
      return false;
    }
    absl::StatusOr<int> broker = ConnectBroker();
    absl::Status status = broker.ok() ? SetNoDelay(client) : broker.status();
    if (!status.ok()) {
      PREDLOG_LOG(WARNING) << "kafka guard: dropping connection from " << PeerName(peer) << ": "
                           << status;
      if (broker.ok()) close(*broker);
      close(client);
      continue;
    }
    connections_.push_back(std::make_unique<Connection>(client, *broker, PeerName(peer)));
  }
}

absl::Status Relay::FromClient(Connection& c, absl::string_view in) {
  using Reading = Connection::Reading;
  while (!in.empty()) {
    if (c.request == Reading::kHead) {
      const size_t take = std::min(in.size(), kRequestHeadBytes - c.request_head.size());
      c.request_head.append(in.data(), take);
      in.remove_prefix(take);
      if (c.request_head.size() < kRequestHeadBytes) break;
      const int32_t size = GetInt32(c.request_head.data());
      if (size < kMinRequestSize || size > kMaxRequestSize) {
        return absl::InvalidArgumentError(absl::StrCat("request of ", size,
                                                       " bytes; a broker takes ", kMinRequestSize,
                                                       " to ", kMaxRequestSize));
      }
      c.request_left = static_cast<size_t>(size) + 4 - kRequestHeadBytes;
      if (GetInt16(c.request_head.data() + 4) == kProduceApiKey) {
        c.produce.swap(c.request_head);
        c.request = Reading::kProduce;
      } else {
        c.to_broker.Append(c.request_head);
        c.owed.emplace_back();
        c.request = Reading::kStream;
      }
      c.request_head.clear();
      continue;
    }
    const size_t take = std::min(in.size(), c.request_left);
    if (c.request == Reading::kStream) {
      c.to_broker.Append(in.substr(0, take));
    } else {
      c.produce.append(in.data(), take);
    }
    in.remove_prefix(take);
    c.request_left -= take;
    if (c.request_left == 0) {
      if (c.request == Reading::kProduce) OnProduce(c);
      c.request = Reading::kHead;
    }
  }
  return absl::OkStatus();
}

void Relay::OnProduce(Connection& c) {
  ProduceDecision decision = InspectProduce(c.produce, max_);
  if (decision.forward) {
    c.owed.emplace_back();
    c.to_broker.Append(std::move(c.produce));
  } else {
    PREDLOG_LOG(WARNING) << "kafka guard: refused a Produce from " << c.peer
                         << " (MESSAGE_TOO_LARGE, the limit is " << max_
                         << " bytes per batch): " << decision.refused;
    if (!decision.response.empty()) Answer(c, std::move(decision.response));
  }
  std::string().swap(c.produce);
}

absl::Status Relay::FromBroker(Connection& c, absl::string_view in) {
  using Reading = Connection::Reading;
  while (!in.empty()) {
    if (c.response == Reading::kHead) {
      const size_t take = std::min(in.size(), kResponseHeadBytes - c.response_head.size());
      c.response_head.append(in.data(), take);
      in.remove_prefix(take);
      if (c.response_head.size() < kResponseHeadBytes) break;
      const int32_t size = GetInt32(c.response_head.data());
      if (size < 4) return absl::InternalError(absl::StrCat("broker sent a response of ", size));
      c.to_client.Append(c.response_head);
      c.response_head.clear();
      c.response_left = static_cast<size_t>(size);
      c.response = Reading::kStream;
      continue;
    }
    const size_t take = std::min(in.size(), c.response_left);
    c.to_client.Append(in.substr(0, take));
    in.remove_prefix(take);
    c.response_left -= take;
    if (c.response_left == 0) {
      c.response = Reading::kHead;
      OnBrokerResponse(c);
    }
  }
  return absl::OkStatus();
}

bool Relay::Service(Connection& c, short client_events, short broker_events) {
  constexpr short kReadable = POLLIN | POLLHUP | POLLERR;
  absl::Status status;
  if (client_events & kReadable) {
    const ssize_t n = recv(c.client, chunk_.data(), chunk_.size(), 0);
    if (n == 0) return false;  // the client closed it: the ordinary end
    if (n > 0) {
      status = FromClient(c, absl::string_view(chunk_.data(), static_cast<size_t>(n)));
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      status = storage::ErrnoStatus(errno, "recv from", "client");
    }
  }
  if (status.ok() && (broker_events & kReadable)) {
    const ssize_t n = recv(c.broker, chunk_.data(), chunk_.size(), 0);
    if (n == 0) {
      c.to_client.Flush(c.client).IgnoreError();  // what was relayed whole, best effort
      status = absl::UnavailableError("the broker closed the connection");
    } else if (n > 0) {
      status = FromBroker(c, absl::string_view(chunk_.data(), static_cast<size_t>(n)));
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      status = storage::ErrnoStatus(errno, "recv from", "broker");
    }
  }
  if ((client_events | broker_events) & POLLNVAL) status = absl::InternalError("bad descriptor");
  if (status.ok()) status = c.to_broker.Flush(c.broker);
  if (status.ok()) status = c.to_client.Flush(c.client);
  if (!status.ok()) {
    PREDLOG_LOG(WARNING) << "kafka guard: closing the connection from " << c.peer << ": " << status;
    return false;
  }
  return true;
}

}  // namespace

ProduceDecision InspectProduce(absl::string_view frame, size_t max_batch_bytes) {
  ProduceDecision forward;
  Reader reader(frame);
  int32_t size = 0;
  int16_t api_key = -1, version = -1, acks = 0;
  int32_t correlation_id = 0, timeout_ms = 0, topic_count = 0;
  absl::string_view ignored;
  if (!reader.Int32(&size) || static_cast<size_t>(size) != frame.size() - 4 ||
      !reader.Int16(&api_key) || api_key != kProduceApiKey || !reader.Int16(&version) ||
      version < 0 || version > kMaxProduceVersion || !reader.Int32(&correlation_id) ||
      !reader.String(/*nullable=*/true, &ignored) ||
      (version >= 3 && !reader.String(/*nullable=*/true, &ignored)) || !reader.Int16(&acks) ||
      !reader.Int32(&timeout_ms) || !reader.Int32(&topic_count) || topic_count < 0) {
    return forward;
  }
  // A first pass only looks for an oversize batch, so the common forwarded
  // request allocates nothing (and a frame of millions of empty partitions
  // costs memory only when it also carries an oversize batch).
  {
    Reader scan = reader;
    bool any_oversize = false;
    for (int32_t t = 0; t < topic_count && !any_oversize; ++t) {
      absl::string_view name;
      int32_t partition_count = 0;
      if (!scan.String(/*nullable=*/false, &name) || !scan.Int32(&partition_count) ||
          partition_count < 0) {
        return forward;
      }
      for (int32_t p = 0; p < partition_count; ++p) {
        int32_t index = 0;
        absl::string_view records;
        if (!scan.Int32(&index) || !scan.NullableBytes(&records)) return forward;
        if (records.size() > max_batch_bytes) {
          any_oversize = true;
          break;
        }
      }
    }
    if (!any_oversize) return forward;
  }
  std::vector<TopicBatches> topics;
  std::vector<std::string> oversize;
  for (int32_t t = 0; t < topic_count; ++t) {
    TopicBatches& topic = topics.emplace_back();
    int32_t partition_count = 0;
    if (!reader.String(/*nullable=*/false, &topic.name) || !reader.Int32(&partition_count) ||
        partition_count < 0) {
      return forward;
    }
    for (int32_t p = 0; p < partition_count; ++p) {
      PartitionBatch& partition = topic.partitions.emplace_back();
      absl::string_view records;
      if (!reader.Int32(&partition.index) || !reader.NullableBytes(&records)) return forward;
      partition.bytes = records.size();
      if (partition.bytes > max_batch_bytes) {
        oversize.push_back(
            absl::StrCat(topic.name, "[", partition.index, "] ", partition.bytes, " bytes"));
      }
    }
  }
  if (oversize.empty()) return forward;

  ProduceDecision refuse;
  refuse.forward = false;
  refuse.refused = absl::StrCat("v", version, " acks=", acks, ", ", absl::StrJoin(oversize, ", "));
  if (acks == 0) return refuse;
  std::string& out = refuse.response;
  PutInt(out, 0, 4);  // size, set below
  PutInt(out, static_cast<uint32_t>(correlation_id), 4);
  PutInt(out, topics.size(), 4);
  for (const TopicBatches& topic : topics) {
    PutInt(out, topic.name.size(), 2);
    out.append(topic.name.data(), topic.name.size());
    PutInt(out, topic.partitions.size(), 4);
    for (const PartitionBatch& partition : topic.partitions) {
      PutInt(out, static_cast<uint32_t>(partition.index), 4);
      PutInt(out, partition.bytes > max_batch_bytes ? kMessageTooLarge : kNotEnoughReplicas, 2);
      const uint64_t none = static_cast<uint64_t>(int64_t{-1});
      PutInt(out, none, 8);                    // base_offset
      if (version >= 2) PutInt(out, none, 8);  // log_append_time_ms
      if (version >= 5) PutInt(out, none, 8);  // log_start_offset
    }
  }
  if (version >= 1) PutInt(out, 0, 4);  // throttle_time_ms
  std::string size_bytes;
  PutInt(size_bytes, out.size() - 4, 4);
  out.replace(0, 4, size_bytes);
  return refuse;
}

absl::StatusOr<std::unique_ptr<ProduceSizeGuard>> ProduceSizeGuard::Start(
    const ProduceSizeGuardOptions& options) {
  if (options.broker_listen_fd < 0) {
    return absl::InvalidArgumentError("ProduceSizeGuardOptions.broker_listen_fd is required");
  }
  if (options.max_batch_bytes == 0) {
    return absl::InvalidArgumentError("ProduceSizeGuardOptions.max_batch_bytes must be > 0");
  }
  if (!options.resync) {
    return absl::InvalidArgumentError("ProduceSizeGuardOptions.resync is required");
  }
  const int broker_fd = options.broker_listen_fd;
  const std::string what = absl::StrCat("kafka guard: broker socket ", broker_fd);
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  int listening = 0;
  socklen_t listening_length = sizeof(listening);
  if (getsockname(broker_fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      address.sin_family != AF_INET ||
      getsockopt(broker_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &listening_length) != 0 ||
      !listening) {
    return absl::FailedPreconditionError(absl::StrCat(what, " is not a listening IPv4 socket"));
  }
  // The mock's listener is blocking (rd_kafka_socket_cb_linux: SOCK_CLOEXEC
  // only; it accepts after poll says POLLIN); its replacement is the same.
  const int status_flags = fcntl(broker_fd, F_GETFL);
  const int descriptor_flags = fcntl(broker_fd, F_GETFD);
  if (status_flags < 0 || descriptor_flags < 0) return storage::ErrnoStatus(errno, what, "flags");

  std::unique_ptr<ProduceSizeGuard> guard(new ProduceSizeGuard(options.max_batch_bytes));
  guard->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (guard->wake_fd_ < 0) return storage::ErrnoStatus(errno, what, "eventfd");
  // The broker's new listener, on port Q. Nagle goes off on every socket of
  // the path: the mock leaves it on, so a small response written while the
  // previous one is unacknowledged waits for the client's delayed ACK, up to
  // 40 ms. Measured at 1,000 Log calls/s: a third of the produce
  // acknowledgements took 20-50 ms, and none does without Nagle. The sockets
  // this listener accepts inherit TCP_NODELAY (Linux copies it).
  const int moved = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (moved < 0) return storage::ErrnoStatus(errno, what, "socket");
  sockaddr_in moved_address = address;
  moved_address.sin_port = 0;
  length = sizeof(guard->broker_addr_);
  const int one = 1;
  if (setsockopt(moved, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(moved, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
      bind(moved, reinterpret_cast<const sockaddr*>(&moved_address), sizeof(moved_address)) != 0 ||
      listen(moved, SOMAXCONN) != 0 ||
      getsockname(moved, reinterpret_cast<sockaddr*>(&guard->broker_addr_), &length) != 0 ||
      fcntl(moved, F_SETFL, status_flags) != 0 ||
      (guard->public_fd_ = fcntl(broker_fd, F_DUPFD_CLOEXEC, 0)) < 0) {
    const int err = errno;
    close(moved);
    return storage::ErrnoStatus(err, what, "replacement listener");
  }
  // The swap, one atomic step: the broker's descriptor number names the new
  // socket, and the old one (port P) lives on as public_fd_.
  const int dup_flags = (descriptor_flags & FD_CLOEXEC) ? O_CLOEXEC : 0;
  const int swapped = dup3(moved, broker_fd, dup_flags);
  const int err = errno;
  close(moved);
  if (swapped < 0) return storage::ErrnoStatus(err, what, "dup3");
  auto undo = [&] {
    dup3(guard->public_fd_, broker_fd, dup_flags);
    fcntl(broker_fd, F_SETFL, status_flags);
  };
  if (absl::Status status = options.resync(); !status.ok()) {
    undo();
    return status;
  }
  // Port P is the guard's alone now: non-blocking, and a deeper backlog than
  // the mock's 5, so a burst of clients is not left waiting for a SYN retry.
  if (fcntl(guard->public_fd_, F_SETFL, status_flags | O_NONBLOCK) != 0 ||
      listen(guard->public_fd_, SOMAXCONN) != 0) {
    const absl::Status status = storage::ErrnoStatus(errno, what, "listen");
    undo();
    return status;
  }
  guard->thread_ = std::thread([raw = guard.get()] { raw->Run(); });
  return guard;
}

ProduceSizeGuard::~ProduceSizeGuard() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    if (write(wake_fd_, &one, sizeof(one)) != sizeof(one)) {
      PREDLOG_LOG(ERROR) << "kafka guard: cannot wake its thread";
    }
    thread_.join();
  }
  if (public_fd_ >= 0) close(public_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void ProduceSizeGuard::Run() {
  pthread_setname_np(pthread_self(), "kafka-guard");
  Relay relay(max_batch_bytes_, broker_addr_);
  std::vector<pollfd> fds;
  absl::Time accept_paused_until = absl::InfinitePast();
  while (true) {
    auto& connections = relay.connections();
    const bool accepting = absl::Now() >= accept_paused_until;
    fds.assign({{wake_fd_, POLLIN, 0}, {accepting ? public_fd_ : -1, POLLIN, 0}});
    for (const auto& c : connections) {
      // Backpressure: read from one side only once what it sent the other
      // side has been written.
      fds.push_back({c->client,
                     static_cast<short>((c->to_broker.empty() ? POLLIN : 0) |
                                        (c->to_client.empty() ? 0 : POLLOUT)),
                     0});
      fds.push_back({c->broker,
                     static_cast<short>((c->to_client.empty() ? POLLIN : 0) |
                                        (c->to_broker.empty() ? 0 : POLLOUT)),
                     0});
    }
    if (poll(fds.data(), fds.size(), accepting ? -1 : 100) < 0) {
      if (errno == EINTR) continue;
      PREDLOG_LOG(ERROR) << "kafka guard stopped: "
                         << storage::ErrnoStatus(errno, "poll", "connections");
      break;
    }
    if (fds[0].revents != 0) break;
    std::vector<std::unique_ptr<Connection>> open;
    open.reserve(connections.size());
    for (size_t i = 0; i < connections.size(); ++i) {
      if (relay.Service(*connections[i], fds[2 + 2 * i].revents, fds[3 + 2 * i].revents)) {
        open.push_back(std::move(connections[i]));
      }
    }
    connections.swap(open);
    if (fds[1].revents != 0 && !relay.AcceptAll(public_fd_)) {
      accept_paused_until = absl::Now() + absl::Milliseconds(100);
    }
  }
}

}  // namespace predlog::services
