// ProduceSizeGuard: the record batch size limit a real Kafka broker enforces
// (a topic's max.message.bytes), in front of librdkafka's mock cluster, which
// enforces none.
//
// Why: the mock (librdkafka 2.0.2, rd_kafka_mock_msgset_new in
// src/rdkafka_mock.c) keeps at most 5 MiB per partition: on every append it
// deletes the oldest message sets while the partition holds more. One 6 MB or
// 20 MB message from a client with a large message.max.bytes (kcat -X
// message.max.bytes=30000000) evicts every message before it that the ingest
// has not consumed yet, and the next message evicts the big one; the ingest
// finds those offsets gone and records a SourceGap over valid events. A real
// broker refuses such a batch and stores nothing: it answers the Produce with
// error code 10, MESSAGE_TOO_LARGE, for that partition, and librdkafka fails
// the messages' delivery with RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, without
// retrying. The guard gives the embedded broker that behaviour.
//
// How: the guard takes the broker's listening port P and moves the broker to
// a new listening socket on another port Q of the same address, under the
// same descriptor number, so the broker accepts on Q while its metadata still
// names P: every client connection, bootstrap or leader, goes through the
// guard. Per connection the guard relays bytes both ways unchanged, except a
// Produce request (https://kafka.apache.org/protocol, Produce Request v0-v7,
// the versions the mock advertises) whose record batch for some partition is
// larger than `max_batch_bytes`: that request never reaches the broker, and
// the guard answers it with a Produce Response of the same version: error 10
// for each oversize batch, error 19 (NOT_ENOUGH_REPLICAS: retriable, "not
// appended") for the request's other batches, so the client sends those again
// alone. Responses on a connection stay in request order.
//
// Costs and limits: one more loopback hop, each byte copied through the
// guard's one thread, which sleeps in poll() when idle. A Produce request is
// read whole before it is judged (other requests stream through), so a
// connection holds at most one request of up to 100 MiB; a request announcing
// more closes the connection, as a broker with the default
// socket.request.max.bytes does. The broker must not re-create its listener
// (the mock's rd_kafka_mock_broker_set_down would bind port P, which the guard
// holds).
//
// Thread-safety: Start and the destructor are called from one thread; the
// relaying happens on the guard's own thread ("kafka-guard").
#ifndef PREDLOG_SERVICES_KAFKA_PRODUCE_SIZE_GUARD_H_
#define PREDLOG_SERVICES_KAFKA_PRODUCE_SIZE_GUARD_H_

#include <netinet/in.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/kafka/kafka_config.h"

namespace predlog::services {

struct ProduceSizeGuardOptions {
  // The broker's listening IPv4 socket, borrowed: the broker keeps owning the
  // descriptor number. Start moves the broker off it: afterwards the number
  // names a new listening socket (same address, another port, the same file
  // status and descriptor flags) and the guard owns the old one. Required.
  int broker_listen_fd = -1;
  // Largest record batch, in bytes, a Produce may carry for one partition. A
  // batch of exactly this size is accepted, one byte more is refused (as
  // Kafka compares a batch's size to max.message.bytes). Must be > 0.
  size_t max_batch_bytes = kMaxMessageBytes;
  // Called once by Start, after the descriptor swap and before the guard
  // accepts anything; must return only once the broker no longer waits on the
  // old socket (a poll() that started before the swap still watches it, and a
  // connection seen there would make the broker accept() on the new, empty,
  // blocking socket). For the mock: any synchronous mock API call, which its
  // thread serves between two polls. An error undoes the swap. Required.
  std::function<absl::Status()> resync;
};

class ProduceSizeGuard {
 public:
  // Takes over `options.broker_listen_fd`'s port and starts relaying.
  // INVALID_ARGUMENT for bad options, FAILED_PRECONDITION when the descriptor
  // is not a listening IPv4 socket, the error of a failed socket call
  // (storage::ErrnoStatus: INTERNAL for most) or of `resync` otherwise; on
  // any error the broker is left listening where it was.
  static absl::StatusOr<std::unique_ptr<ProduceSizeGuard>> Start(
      const ProduceSizeGuardOptions& options);
  // Stops the thread, closes every relayed connection (the broker sees them
  // end) and port P. Call before the broker is destroyed; the broker closes
  // its own socket on Q.
  ~ProduceSizeGuard();
  ProduceSizeGuard(const ProduceSizeGuard&) = delete;
  ProduceSizeGuard& operator=(const ProduceSizeGuard&) = delete;

 private:
  explicit ProduceSizeGuard(size_t max_batch_bytes) : max_batch_bytes_(max_batch_bytes) {}
  void Run();

  // Constant after Start.
  const size_t max_batch_bytes_;
  int public_fd_ = -1;         // listening on P, the port clients are told
  sockaddr_in broker_addr_{};  // Q, where the broker now listens
  int wake_fd_ = -1;           // eventfd; written once to stop Run
  std::thread thread_;
};

// What the guard does with one Produce request frame; a pure function, public
// for tests.
struct ProduceDecision {
  // Forward the frame to the broker unchanged: no batch is over the limit, or
  // the frame is not a Produce v0-v7 the guard can parse (the broker judges it).
  bool forward = true;
  // When refused: the client's answer, a whole Produce Response frame (int32
  // size first) of the request's version and correlation id; empty when the
  // request has acks=0 (no response is expected; a real broker would also
  // close the connection). Error 10 for each batch over the limit, 19 for the
  // others; base_offset, log_append_time_ms (v2+) and log_start_offset (v5+)
  // -1, throttle_time_ms (v1+) 0.
  std::string response;
  // When refused, for logs: "v7 acks=-1, <topic>[<partition>] <bytes> bytes, ...".
  std::string refused;
};

// `frame`: one request frame, int32 size first. Each partition's records
// length is taken as its batch size: a Produce carries one batch per
// partition (librdkafka and the Java client send no more).
ProduceDecision InspectProduce(absl::string_view frame, size_t max_batch_bytes);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_KAFKA_PRODUCE_SIZE_GUARD_H_
