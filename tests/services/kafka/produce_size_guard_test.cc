// The embedded broker refuses a produced record batch larger than
// kMaxMessageBytes as a real broker does (MESSAGE_TOO_LARGE) and keeps every
// other message: InspectProduce on hand-built frames, then the real embedded
// broker (its ProduceSizeGuard holds the advertised port) with real librdkafka
// clients and with raw protocol frames on a socket.
#include "services/kafka/produce_size_guard.h"

#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/kafka/embedded_broker.h"
#include "services/kafka/kafka_config.h"
#include "services/kafka/producer.h"
#include "tests/testing/status_matchers.h"

namespace predlog::services {
namespace {

using ::testing::ElementsAre;

constexpr int kPartitions = 4;
constexpr int16_t kMessageTooLarge = 10;
constexpr int16_t kNotEnoughReplicas = 19;
constexpr int16_t kProduceApiKey = 0;
constexpr int16_t kFetchApiKey = 1;
constexpr int16_t kMetadataApiKey = 3;
constexpr int16_t kApiVersionsApiKey = 18;

// --- Kafka protocol encoding, as the guard's grammar has it -----------------

void PutInt(std::string& out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// size:int32 api_key:int16 api_version:int16 correlation_id:int32
// client_id:string `body`.
std::string Request(int16_t api_key, int16_t version, int32_t correlation_id,
                    const std::string& body) {
  std::string frame;
  PutInt(frame, static_cast<uint16_t>(api_key), 2);
  PutInt(frame, static_cast<uint16_t>(version), 2);
  PutInt(frame, static_cast<uint32_t>(correlation_id), 4);
  const std::string client_id = "guard-test";
  PutInt(frame, client_id.size(), 2);
  frame += client_id + body;
  std::string size;
  PutInt(size, frame.size(), 4);
  return size + frame;
}

struct TopicBatches {
  std::string name;
  std::vector<std::pair<int32_t, size_t>> partitions;  // index, records bytes
};

std::string ProduceRequest(int16_t version, int16_t acks, int32_t correlation_id,
                           const std::vector<TopicBatches>& topics) {
  std::string body;
  if (version >= 3) PutInt(body, 0xffff, 2);  // transactional_id: null
  PutInt(body, static_cast<uint16_t>(acks), 2);
  PutInt(body, 30000, 4);  // timeout_ms
  PutInt(body, topics.size(), 4);
  for (const TopicBatches& topic : topics) {
    PutInt(body, topic.name.size(), 2);
    body += topic.name;
    PutInt(body, topic.partitions.size(), 4);
    for (const auto& [index, bytes] : topic.partitions) {
      PutInt(body, static_cast<uint32_t>(index), 4);
      PutInt(body, bytes, 4);
      body.append(bytes, 'r');  // the guard never looks inside the records
    }
  }
  return Request(kProduceApiKey, version, correlation_id, body);
}

// Bounds-checked big-endian reading; a read past the end fails the test.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  int64_t Int(int bytes) {
    EXPECT_GE(data_.size(), static_cast<size_t>(bytes)) << "response too short";
    if (data_.size() < static_cast<size_t>(bytes)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(data_[i]);
    data_.remove_prefix(bytes);
    if (bytes == 2) return static_cast<int16_t>(v);
    if (bytes == 4) return static_cast<int32_t>(v);
    return static_cast<int64_t>(v);
  }
  std::string String() {
    const int64_t length = Int(2);
    std::string s(data_.substr(0, static_cast<size_t>(length)));
    data_.remove_prefix(s.size());
    return s;
  }
  size_t left() const { return data_.size(); }

 private:
  absl::string_view data_;
};

struct PartitionResponse {
  std::string topic;
  int32_t index = -1;
  int16_t error = -1;
  bool operator==(const PartitionResponse& o) const {
    return topic == o.topic && index == o.index && error == o.error;
  }
};
void PrintTo(const PartitionResponse& p, std::ostream* os) {
  *os << p.topic << "[" << p.index << "] error " << p.error;
}

// Parses a Produce Response frame (int32 size first) of `version`, checking
// the fields the guard fills with constants.
std::vector<PartitionResponse> ParseProduceResponse(absl::string_view frame, int16_t version,
                                                    int32_t correlation_id) {
  Reader r(frame);
  EXPECT_EQ(r.Int(4), static_cast<int64_t>(frame.size()) - 4);
  EXPECT_EQ(r.Int(4), correlation_id);
  std::vector<PartitionResponse> out;
  for (int64_t t = r.Int(4); t > 0; --t) {
    const std::string topic = r.String();
    for (int64_t p = r.Int(4); p > 0; --p) {
      PartitionResponse response{topic, static_cast<int32_t>(r.Int(4)),
                                 static_cast<int16_t>(r.Int(2))};
      EXPECT_EQ(r.Int(8), -1) << "base_offset";
      if (version >= 2) {
        EXPECT_EQ(r.Int(8), -1) << "log_append_time_ms";
      }
      if (version >= 5) {
        EXPECT_EQ(r.Int(8), -1) << "log_start_offset";
      }
      out.push_back(response);
    }
  }
  if (version >= 1) {
    EXPECT_EQ(r.Int(4), 0) << "throttle_time_ms";
  }
  EXPECT_EQ(r.left(), 0u) << "bytes after the response";
  return out;
}

// --- InspectProduce ----------------------------------------------------------

constexpr size_t kLimit = 1000;

TEST(KafkaInspectProduceTest, BatchOfExactlyTheLimitIsForwarded) {
  const ProduceDecision d =
      InspectProduce(ProduceRequest(7, -1, 1, {{"t", {{0, kLimit}, {1, 10}}}}), kLimit);
  EXPECT_TRUE(d.forward);
  EXPECT_EQ(d.response, "");
}

TEST(KafkaInspectProduceTest, BatchOneByteOverTheLimitIsRefusedWithMessageTooLarge) {
  const ProduceDecision d =
      InspectProduce(ProduceRequest(7, -1, 42, {{"t", {{3, kLimit + 1}}}}), kLimit);
  EXPECT_FALSE(d.forward);
  EXPECT_THAT(ParseProduceResponse(d.response, 7, 42),
              ElementsAre(PartitionResponse{"t", 3, kMessageTooLarge}));
  EXPECT_THAT(d.refused, ::testing::HasSubstr("t[3] 1001 bytes"));
}

TEST(KafkaInspectProduceTest, OtherBatchesOfARefusedRequestGetRetriableNotEnoughReplicas) {
  const ProduceDecision d = InspectProduce(
      ProduceRequest(7, 1, 5, {{"a", {{0, 10}, {1, 5000}}}, {"b", {{2, kLimit}, {3, 0}}}}), kLimit);
  EXPECT_FALSE(d.forward);
  EXPECT_THAT(ParseProduceResponse(d.response, 7, 5),
              ElementsAre(PartitionResponse{"a", 0, kNotEnoughReplicas},
                          PartitionResponse{"a", 1, kMessageTooLarge},
                          PartitionResponse{"b", 2, kNotEnoughReplicas},
                          PartitionResponse{"b", 3, kNotEnoughReplicas}));
}

TEST(KafkaInspectProduceTest, ResponseHasTheFieldsOfTheRequestVersion) {
  for (int16_t version = 0; version <= 7; ++version) {
    SCOPED_TRACE(absl::StrCat("Produce v", version));
    const ProduceDecision d =
        InspectProduce(ProduceRequest(version, 1, 9, {{"t", {{0, kLimit + 1}}}}), kLimit);
    ASSERT_FALSE(d.forward);
    // ParseProduceResponse checks that the frame holds exactly the fields of `version`.
    EXPECT_THAT(ParseProduceResponse(d.response, version, 9),
                ElementsAre(PartitionResponse{"t", 0, kMessageTooLarge}));
  }
}

TEST(KafkaInspectProduceTest, RefusalWithAcksZeroHasNoResponse) {
  const ProduceDecision d =
      InspectProduce(ProduceRequest(7, 0, 1, {{"t", {{0, kLimit + 1}}}}), kLimit);
  EXPECT_FALSE(d.forward);
  EXPECT_EQ(d.response, "");
}

TEST(KafkaInspectProduceTest, FramesItCannotParseAreForwarded) {
  const std::string oversize = ProduceRequest(7, 1, 1, {{"t", {{0, kLimit + 1}}}});
  std::string wrong_size = oversize;
  wrong_size[3] = static_cast<char>(wrong_size[3] + 1);
  for (const std::string& frame :
       {oversize.substr(0, 40),                                         // truncated
        wrong_size,                                                     // size field disagrees
        ProduceRequest(8, 1, 1, {{"t", {{0, kLimit + 1}}}}),            // a version past 7
        Request(kMetadataApiKey, 1, 1, std::string(kLimit + 10, 'x')),  // not a Produce
        std::string()}) {
    EXPECT_TRUE(InspectProduce(frame, kLimit).forward) << frame.size() << " bytes";
  }
}

// --- Through the embedded broker ----------------------------------------------

// Bytes of a v2 record batch holding one keyless, headerless, uncompressed
// record of `value_bytes` (what librdkafka writes for one message): the
// 61-byte batch header, then the record's length, attributes, timestamp and
// offset deltas, key length (-1), value length, value and header count, the
// lengths and deltas as zigzag varints.
size_t VarintBytes(int64_t v) {
  uint64_t zigzag = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
  size_t n = 1;
  for (; zigzag >= 0x80; zigzag >>= 7) ++n;
  return n;
}
size_t SingleRecordBatchBytes(size_t value_bytes) {
  const size_t record = 1 + VarintBytes(0) + VarintBytes(0) + VarintBytes(-1) +
                        VarintBytes(static_cast<int64_t>(value_bytes)) + value_bytes +
                        VarintBytes(0);
  return 61 + VarintBytes(static_cast<int64_t>(record)) + record;
}
// The value size whose single-record batch is exactly `batch_bytes`.
size_t ValueBytesForBatch(size_t batch_bytes) {
  for (size_t v = batch_bytes - 100; v < batch_bytes; ++v) {
    if (SingleRecordBatchBytes(v) == batch_bytes) return v;
  }
  ADD_FAILURE() << "no single-record batch of " << batch_bytes << " bytes";
  return 0;
}

// Delivery reports of a test producer, by message index.
struct Deliveries {
  absl::Mutex mu;
  std::map<intptr_t, std::pair<rd_kafka_resp_err_t, int64_t>> by_index ABSL_GUARDED_BY(mu);
};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
  auto* deliveries = static_cast<Deliveries*>(opaque);
  absl::MutexLock lock(&deliveries->mu);
  deliveries->by_index[reinterpret_cast<intptr_t>(message->_private)] = {message->err,
                                                                         message->offset};
}

// A librdkafka producer that records its delivery reports in `deliveries`.
rd_kafka_t* NewProducer(const EmbeddedBroker& broker, Deliveries* deliveries,
                        KafkaSettings settings) {
  settings.emplace_back("bootstrap.servers", broker.bootstrap_servers());
  settings.emplace_back("log_level", "3");
  absl::StatusOr<rd_kafka_conf_t*> conf = NewKafkaConf(settings);
  EXPECT_OK(conf);
  if (!conf.ok()) return nullptr;
  rd_kafka_conf_set_dr_msg_cb(*conf, OnDelivery);
  rd_kafka_conf_set_opaque(*conf, deliveries);
  char error[256];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, *conf, error, sizeof(error));
  EXPECT_NE(rk, nullptr) << error;
  return rk;
}

// A consumer that reads messages as large as predlog's.
rd_kafka_t* NewConsumer(const EmbeddedBroker& broker, const std::string& group) {
  absl::StatusOr<rd_kafka_t*> rk = NewKafkaClient(
      RD_KAFKA_CONSUMER, {{"bootstrap.servers", broker.bootstrap_servers()},
                          {"group.id", group},
                          {"auto.offset.reset", "earliest"},
                          {"enable.auto.commit", "false"},
                          {"max.partition.fetch.bytes", std::to_string(kMaxMessageBytes)},
                          {"log_level", "3"}});
  EXPECT_OK(rk);
  if (!rk.ok()) return nullptr;
  rd_kafka_poll_set_consumer(*rk);
  return *rk;
}

struct Consumed {
  int32_t partition = -1;
  int64_t offset = -1;
  std::string value;
};

// Polls `consumer` until `count` messages arrived or `timeout` passed (a
// bound, not a timing assertion).
std::vector<Consumed> ConsumeUpTo(rd_kafka_t* consumer, size_t count,
                                  absl::Duration timeout = absl::Seconds(60)) {
  std::vector<Consumed> out;
  const absl::Time deadline = absl::Now() + timeout;
  while (out.size() < count && absl::Now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 200);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      out.push_back(
          {m->partition, m->offset, std::string(static_cast<const char*>(m->payload), m->len)});
    } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      ADD_FAILURE() << "consume: " << rd_kafka_message_errstr(m);
    }
    rd_kafka_message_destroy(m);
  }
  return out;
}

class EmbeddedKafkaSizeLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EmbeddedBrokerOptions options;
    options.partitions = kPartitions;
    ASSERT_OK_AND_ASSIGN(broker_, EmbeddedBroker::Start(options));
  }

  // Produces `values` to predlog.events partition 1 in one go (every message
  // enqueued before the first delivery report), one message per batch, and
  // returns each one's delivery error and offset.
  std::vector<std::pair<rd_kafka_resp_err_t, int64_t>> ProduceInOneGo(
      const std::vector<std::string>& values, KafkaSettings settings) {
    // Above every value: the broker, not librdkafka, must judge the sizes.
    settings.emplace_back("message.max.bytes", "30000000");
    // One message per batch, so each batch's size is SingleRecordBatchBytes.
    settings.emplace_back("batch.num.messages", "1");
    Deliveries deliveries;
    rd_kafka_t* rk = NewProducer(*broker_, &deliveries, settings);
    if (rk == nullptr) return {};
    for (size_t i = 0; i < values.size(); ++i) {
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(kEventsTopic), RD_KAFKA_V_PARTITION(1),
          RD_KAFKA_V_VALUE(const_cast<char*>(values[i].data()), values[i].size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<intptr_t>(i))), RD_KAFKA_V_END);
      EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR)
          << "message " << i << ": " << rd_kafka_err2str(err);
    }
    EXPECT_EQ(rd_kafka_flush(rk, 60'000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
    std::vector<std::pair<rd_kafka_resp_err_t, int64_t>> out;
    absl::MutexLock lock(&deliveries.mu);
    for (size_t i = 0; i < values.size(); ++i) {
      auto it = deliveries.by_index.find(static_cast<intptr_t>(i));
      out.push_back(it == deliveries.by_index.end()
                        ? std::make_pair(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, int64_t{-1})
                        : it->second);
    }
    return out;
  }

  // Produces, to partition 1 in one go, the largest message that fits in
  // kMaxMessageBytes, a batch one byte over, 6 MB and 20 MB (what once
  // evicted the whole partition), each followed by a small neighbour; checks
  // that every oversize message failed with MSG_SIZE_TOO_LARGE and every other
  // one is stored, in order, from offset 0: nothing evicted.
  void ExpectOversizeRefusedAndNeighboursKept(const KafkaSettings& settings) {
    const size_t largest = ValueBytesForBatch(kMaxMessageBytes);
    const size_t over = ValueBytesForBatch(kMaxMessageBytes + 1);
    ASSERT_GT(largest, storage::kMaxEventBytes);
    const std::vector<std::string> values = {
        std::string(largest, 'A'),   "neighbour-1", std::string(over, 'B'),       "neighbour-2",
        std::string(6'000'000, 'C'), "neighbour-3", std::string(20'000'000, 'D'), "neighbour-4"};
    const std::set<size_t> oversize = {2, 4, 6};
    const auto delivered = ProduceInOneGo(values, settings);
    ASSERT_EQ(delivered.size(), values.size());
    std::vector<size_t> kept;
    for (size_t i = 0; i < values.size(); ++i) {
      if (oversize.count(i)) {
        EXPECT_EQ(delivered[i].first, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            << "message " << i << " (" << values[i].size()
            << " bytes): " << rd_kafka_err2str(delivered[i].first);
      } else {
        EXPECT_EQ(delivered[i].first, RD_KAFKA_RESP_ERR_NO_ERROR)
            << "message " << i << ": " << rd_kafka_err2str(delivered[i].first);
        kept.push_back(i);
      }
    }

    rd_kafka_t* consumer = NewConsumer(*broker_, "size-test");
    ASSERT_NE(consumer, nullptr);
    int64_t low = -1, high = -1;
    ASSERT_EQ(rd_kafka_query_watermark_offsets(consumer, kEventsTopic, 1, &low, &high, 10'000),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    EXPECT_EQ(low, 0) << "the broker evicted messages";
    EXPECT_EQ(high, static_cast<int64_t>(kept.size()));
    rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(assignment, kEventsTopic, 1)->offset = 0;
    ASSERT_EQ(rd_kafka_assign(consumer, assignment), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(assignment);
    const std::vector<Consumed> consumed = ConsumeUpTo(consumer, kept.size());
    ASSERT_EQ(consumed.size(), kept.size());
    for (size_t k = 0; k < kept.size(); ++k) {
      EXPECT_EQ(consumed[k].offset, static_cast<int64_t>(k));
      EXPECT_EQ(delivered[kept[k]].second, static_cast<int64_t>(k)) << "message " << kept[k];
      EXPECT_TRUE(consumed[k].value == values[kept[k]])
          << "offset " << k << " holds " << consumed[k].value.size() << " bytes, want message "
          << kept[k] << " (" << values[kept[k]].size() << " bytes)";
    }
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
  }

  std::unique_ptr<EmbeddedBroker> broker_;
};

TEST_F(EmbeddedKafkaSizeLimitTest, OversizeBatchesFailWithMsgSizeTooLargeAndEvictNothing) {
  ExpectOversizeRefusedAndNeighboursKept({});
}

TEST_F(EmbeddedKafkaSizeLimitTest, OversizeBatchesFromAnIdempotentProducerFailAndTheRestLand) {
  // An idempotent producer (Java's default since Kafka 3.0) bumps its epoch
  // after a refused batch and renumbers the rest.
  ExpectOversizeRefusedAndNeighboursKept({{"enable.idempotence", "true"}});
}

TEST_F(EmbeddedKafkaSizeLimitTest, OrdinaryTrafficAndConsumerGroupsPassThrough) {
  // predlog's own producer (idempotent, acks=all, keyed), then a consumer
  // group that subscribes, consumes everything and commits.
  ProducerOptions producer_options;
  producer_options.bootstrap_servers = broker_->bootstrap_servers();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Producer> producer, Producer::Open(producer_options));
  constexpr int kMessages = 2000;
  struct Produced {
    absl::Mutex mu;
    std::map<std::pair<int32_t, int64_t>, std::string> by_position ABSL_GUARDED_BY(mu);
    int failed ABSL_GUARDED_BY(mu) = 0;
  };
  auto produced = std::make_shared<Produced>();
  for (int i = 0; i < kMessages; ++i) {
    const std::string value = absl::StrCat("small-", i);
    ASSERT_OK(producer->Produce(kEventsTopic, absl::StrCat("subject-", i), value,
                                [produced, value](absl::StatusOr<Delivery> d) {
                                  absl::MutexLock lock(&produced->mu);
                                  if (!d.ok()) {
                                    ++produced->failed;
                                    return;
                                  }
                                  produced->by_position[{d->partition, d->offset}] = value;
                                }));
  }
  ASSERT_OK(producer->Flush(absl::Seconds(60)));
  std::map<std::pair<int32_t, int64_t>, std::string> expected;
  {
    absl::MutexLock lock(&produced->mu);
    EXPECT_EQ(produced->failed, 0);
    expected = produced->by_position;
  }
  ASSERT_EQ(expected.size(), static_cast<size_t>(kMessages));
  std::set<int32_t> partitions;
  for (const auto& [position, value] : expected) partitions.insert(position.first);
  EXPECT_EQ(partitions.size(), static_cast<size_t>(kPartitions));

  rd_kafka_t* consumer = NewConsumer(*broker_, "ordinary-traffic");
  ASSERT_NE(consumer, nullptr);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, kEventsTopic, RD_KAFKA_PARTITION_UA);
  ASSERT_EQ(rd_kafka_subscribe(consumer, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(topics);
  std::map<std::pair<int32_t, int64_t>, std::string> consumed;
  for (Consumed& c : ConsumeUpTo(consumer, kMessages)) {
    consumed[{c.partition, c.offset}] = std::move(c.value);
  }
  EXPECT_TRUE(consumed == expected) << "consumed " << consumed.size() << " of " << expected.size();
  ASSERT_EQ(rd_kafka_commit(consumer, nullptr, /*async=*/0), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_t* committed = rd_kafka_topic_partition_list_new(kPartitions);
  for (int p = 0; p < kPartitions; ++p)
    rd_kafka_topic_partition_list_add(committed, kEventsTopic, p);
  ASSERT_EQ(rd_kafka_committed(consumer, committed, 10'000), RD_KAFKA_RESP_ERR_NO_ERROR);
  for (int p = 0; p < kPartitions; ++p) {
    int64_t next = 0;
    for (const auto& [position, value] : expected) {
      if (position.first == p) next = std::max(next, position.second + 1);
    }
    EXPECT_EQ(committed->elems[p].offset, next) << "partition " << p;
  }
  rd_kafka_topic_partition_list_destroy(committed);
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
}

// A plain TCP connection to the broker's advertised address, speaking raw
// frames; reads give up after 20 s (a bound, not a timing assertion).
class RawConnection {
 public:
  explicit RawConnection(const std::string& bootstrap) {
    const size_t colon = bootstrap.rfind(':');
    int port = 0;
    EXPECT_TRUE(absl::SimpleAtoi(bootstrap.substr(colon + 1), &port)) << bootstrap;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, bootstrap.substr(0, colon).c_str(), &address.sin_addr);
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval timeout{20, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    EXPECT_EQ(connect(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  }
  ~RawConnection() { close(fd_); }

  void Send(const std::string& bytes) {
    for (size_t sent = 0; sent < bytes.size();) {
      const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << "send";
      sent += static_cast<size_t>(n);
    }
  }
  // The next response frame, int32 size first; nullopt when the connection
  // ended. A read that times out fails the test.
  std::optional<std::string> Receive() {
    std::string frame;
    if (!ReadExactly(4, frame)) return std::nullopt;
    Reader r(frame);
    const int64_t size = r.Int(4);
    if (size < 4 || !ReadExactly(static_cast<size_t>(size), frame)) return std::nullopt;
    return frame;
  }
  static int32_t CorrelationId(const std::string& frame) {
    Reader r(absl::string_view(frame).substr(4));
    return static_cast<int32_t>(r.Int(4));
  }

 private:
  bool ReadExactly(size_t n, std::string& out) {
    const size_t end = out.size() + n;
    out.resize(end);
    for (size_t have = end - n; have < end;) {
      const ssize_t got = recv(fd_, out.data() + have, end - have, 0);
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ADD_FAILURE() << "no response within 20 s";
        return false;
      }
      if (got <= 0) return false;  // ended: closed or reset
      have += static_cast<size_t>(got);
    }
    return true;
  }
  int fd_ = -1;
};

std::string ApiVersions(int32_t correlation_id) {
  return Request(kApiVersionsApiKey, 0, correlation_id, "");
}

TEST_F(EmbeddedKafkaSizeLimitTest, RefusalIsAnsweredAfterTheResponsesToEarlierRequests) {
  RawConnection connection(broker_->bootstrap_servers());
  // Fetch v4 of an empty partition: the broker holds its answer up to
  // max_wait_ms, so the refusal is ready long before the answer it must follow.
  std::string fetch;
  PutInt(fetch, static_cast<uint32_t>(-1), 4);  // replica_id
  PutInt(fetch, 500, 4);                        // max_wait_ms
  PutInt(fetch, 1, 4);                          // min_bytes
  PutInt(fetch, 1 << 20, 4);                    // max_bytes
  PutInt(fetch, 0, 1);                          // isolation_level
  PutInt(fetch, 1, 4);                          // topics
  PutInt(fetch, sizeof(kEventsTopic) - 1, 2);
  fetch += kEventsTopic;
  PutInt(fetch, 1, 4);        // partitions
  PutInt(fetch, 2, 4);        // partition
  PutInt(fetch, 0, 8);        // fetch_offset
  PutInt(fetch, 1 << 20, 4);  // partition_max_bytes
  connection.Send(ApiVersions(1) + Request(kFetchApiKey, 4, 2, fetch) +
                  ProduceRequest(7, -1, 3, {{kEventsTopic, {{1, kMaxMessageBytes + 1}}}}) +
                  ApiVersions(4));
  std::vector<int32_t> order;
  for (int i = 0; i < 4; ++i) {
    std::optional<std::string> frame = connection.Receive();
    ASSERT_TRUE(frame.has_value()) << "response " << i;
    order.push_back(RawConnection::CorrelationId(*frame));
    if (order.back() == 3) {
      EXPECT_THAT(ParseProduceResponse(*frame, 7, 3),
                  ElementsAre(PartitionResponse{kEventsTopic, 1, kMessageTooLarge}));
    }
  }
  EXPECT_THAT(order, ElementsAre(1, 2, 3, 4));
}

TEST_F(EmbeddedKafkaSizeLimitTest, RefusalWithAcksZeroIsNotAnswered) {
  RawConnection connection(broker_->bootstrap_servers());
  connection.Send(ApiVersions(1) +
                  ProduceRequest(7, 0, 2, {{kEventsTopic, {{1, kMaxMessageBytes + 1}}}}) +
                  ApiVersions(3) + ApiVersions(4));
  std::vector<int32_t> order;
  for (int i = 0; i < 3; ++i) {
    std::optional<std::string> frame = connection.Receive();
    ASSERT_TRUE(frame.has_value()) << "response " << i;
    order.push_back(RawConnection::CorrelationId(*frame));
  }
  // Responses come in request order, so none for 2 came before 4's.
  EXPECT_THAT(order, ElementsAre(1, 3, 4));
}

TEST_F(EmbeddedKafkaSizeLimitTest, RequestOfAnAbsurdSizeClosesTheConnection) {
  RawConnection connection(broker_->bootstrap_servers());
  std::string head;
  PutInt(head, 200u << 20, 4);  // 200 MiB announced; a broker takes 100 MiB
  PutInt(head, kProduceApiKey, 2);
  PutInt(head, 7, 2);
  connection.Send(head);
  EXPECT_EQ(connection.Receive(), std::nullopt);
  // The broker still serves new connections.
  RawConnection next(broker_->bootstrap_servers());
  next.Send(ApiVersions(1));
  std::optional<std::string> frame = next.Receive();
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(RawConnection::CorrelationId(*frame), 1);
}

}  // namespace
}  // namespace predlog::services
