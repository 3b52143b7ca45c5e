#include "services/kafka/producer.h"

#include "absl/strings/str_cat.h"
#include "services/kafka/kafka_config.h"
#include "storage/logging.h"
#include "storage/status_macros.h"

namespace predlog::services {

absl::StatusOr<std::unique_ptr<Producer>> Producer::Open(const ProducerOptions& options) {
  if (options.bootstrap_servers.empty()) {
    return absl::InvalidArgumentError("ProducerOptions.bootstrap_servers is empty");
  }
  if (options.delivery_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ProducerOptions.delivery_timeout must be > 0");
  }
  KafkaSettings settings = {
      {"bootstrap.servers", options.bootstrap_servers},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      // Small requests go out at once instead of waiting behind an unacknowledged
      // one for the broker's delayed ACK (up to 40 ms).
      {"socket.nagle.disable", "true"},
      {"partitioner", "murmur2_random"},
      {"message.max.bytes", absl::StrCat(kMaxMessageBytes)},
      {"linger.ms", absl::StrCat(absl::ToDoubleMilliseconds(options.linger))},
      {"message.timeout.ms", absl::StrCat(absl::ToInt64Milliseconds(options.delivery_timeout))},
      {"queue.buffering.max.messages", absl::StrCat(options.max_queued_messages)},
      {"log_level", "4"},
  };
  // A --kafka_properties file's settings first; none of them is one of these.
  settings.insert(settings.begin(), options.client_properties.begin(),
                  options.client_properties.end());
  ASSIGN_OR_RETURN(rd_kafka_conf_t * conf, NewKafkaConf(settings));
  rd_kafka_conf_set_dr_msg_cb(conf, &Producer::OnDelivery);
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(absl::StrCat("kafka producer: ", err));
  }
  return std::unique_ptr<Producer>(new Producer(rk));
}

Producer::Producer(rd_kafka_t* rk) : rk_(rk) {
  poller_ = std::thread([this] {
    while (!stop_.load()) rd_kafka_poll(rk_, 50);
  });
}

Producer::~Producer() {
  if (absl::Status flushed = Flush(absl::Seconds(10)); !flushed.ok()) {
    PREDLOG_LOG(WARNING) << "producer: " << flushed;
    // Keep the contract that every callback runs: what is still queued or in
    // flight gets a purge error (UNAVAILABLE) instead of vanishing.
    rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(rk_, 1000);
  }
  stop_.store(true);
  poller_.join();
  // Remaining delivery reports (timeouts) are served by this last poll.
  rd_kafka_poll(rk_, 0);
  rd_kafka_destroy(rk_);
}

void Producer::OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void*) {
  std::unique_ptr<DeliveryCallback> done(static_cast<DeliveryCallback*>(message->_private));
  if (done == nullptr) return;
  if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    (*done)(absl::UnavailableError(
        absl::StrCat("kafka delivery failed: ", rd_kafka_err2str(message->err))));
    return;
  }
  (*done)(Delivery{message->partition, message->offset});
}

absl::Status Producer::Produce(absl::string_view topic, absl::string_view key,
                               absl::string_view value, DeliveryCallback done) {
  auto callback = std::make_unique<DeliveryCallback>(std::move(done));
  const std::string topic_name(topic);
  const rd_kafka_resp_err_t err = rd_kafka_producev(
      rk_, RD_KAFKA_V_TOPIC(topic_name.c_str()),
      RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
      RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(callback.get()), RD_KAFKA_V_END);
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
    return absl::ResourceExhaustedError("kafka producer queue is full; retry later");
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(absl::StrCat("kafka produce: ", rd_kafka_err2str(err)));
  }
  callback.release();  // OnDelivery owns it now.
  return absl::OkStatus();
}

int Producer::QueueDepth() const { return rd_kafka_outq_len(rk_); }

absl::Status Producer::Flush(absl::Duration timeout) {
  const rd_kafka_resp_err_t err =
      rd_kafka_flush(rk_, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::DeadlineExceededError(
        absl::StrCat("kafka flush: ", rd_kafka_err2str(err), "; ", QueueDepth(), " undelivered"));
  }
  return absl::OkStatus();
}

}  // namespace predlog::services
