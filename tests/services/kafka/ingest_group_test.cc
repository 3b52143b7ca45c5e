// Ingest instances in one Kafka consumer group split the partitions: real
// librdkafka against the embedded broker (librdkafka's mock cluster), real
// RocksDB shards in temp dirs, each instance with its own data_dir.
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/kafka/embedded_broker.h"
#include "services/kafka/ingest.h"
#include "services/kafka/kafka_config.h"
#include "services/kafka/producer.h"
#include "services/server/audit.h"
#include "services/server/metrics.h"
#include "services/server/prediction_log.h"
#include "storage/shard_store.h"
#include "tests/testing/events.h"
#include "tests/testing/kafka_pipeline.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::testing::KafkaPipeline;
using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;

constexpr int kPartitions = 4;               // of predlog.events; the group splits these
constexpr int kRegistryShard = kPartitions;  // predlog.registry-0, folded by every instance
constexpr char kGroup[] = "predlog-ingest-test";

// One event as Kafka acknowledged it.
struct Produced {
  std::string prediction_id;
  int32_t partition = -1;
  int64_t offset = -1;
};

std::string EventPayload(const std::string& prediction_id, int i) {
  PredictionSpec spec;
  spec.prediction_id = prediction_id;
  spec.subject_id = "customer-" + std::to_string(i % 50);
  return MakePrediction(spec).SerializeAsString();
}

// Polls `done` until it holds or `timeout` passes (a bound, not a timing
// assertion); true when it held.
bool WaitUntil(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

class IngestGroupTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(kafka_, KafkaPipeline::Start(kPartitions)); }

  IngestOptions Options(const std::string& instance) const {
    IngestOptions options = kafka_.IngestOptionsFor(dir_.Sub(instance));
    options.group_id = kGroup;
    return options;
  }

  // Produces events `first`..`first + n - 1` (keyed by subject, so they
  // spread over every partition) and returns them as Kafka acknowledged them.
  std::vector<Produced> ProduceEvents(int first, int n) {
    // Shared with the delivery callbacks, which may outlive this call when
    // Flush times out.
    struct State {
      std::mutex mu;
      std::vector<Produced> produced;
    };
    auto state = std::make_shared<State>();
    for (int i = first; i < first + n; ++i) {
      const std::string id = absl::StrCat("group-", i);
      EXPECT_OK(kafka_.producer->Produce(kEventsTopic, absl::StrCat("customer-", i % 50),
                                         EventPayload(id, i),
                                         [state, id](absl::StatusOr<Delivery> d) {
                                           ASSERT_TRUE(d.ok()) << id << ": " << d.status();
                                           std::lock_guard<std::mutex> lock(state->mu);
                                           state->produced.push_back({id, d->partition, d->offset});
                                         }));
    }
    EXPECT_OK(kafka_.producer->Flush(absl::Seconds(30)));
    std::lock_guard<std::mutex> lock(state->mu);
    EXPECT_EQ(state->produced.size(), static_cast<size_t>(n));
    return state->produced;
  }

  // The events of `all` in `partition`, in offset order.
  static std::vector<Produced> InPartition(const std::vector<Produced>& all, int partition) {
    std::map<int64_t, Produced> by_offset;
    for (const Produced& p : all) {
      if (p.partition == partition) by_offset[p.offset] = p;
    }
    std::vector<Produced> out;
    for (auto& [offset, p] : by_offset) out.push_back(p);
    return out;
  }

  // Which instances own each predlog.events partition now.
  static std::vector<std::vector<int>> Owners(const std::vector<const Ingest*>& instances) {
    std::vector<std::vector<int>> owners(kPartitions);
    for (size_t k = 0; k < instances.size(); ++k) {
      const std::vector<PartitionStatus> status = instances[k]->Status();
      for (int s = 0; s < kPartitions; ++s) {
        if (status[s].owned) owners[s].push_back(static_cast<int>(k));
      }
    }
    return owners;
  }

  // Each events partition owned by exactly one of `instances`, and each
  // instance owning at least one (the group's assignment has settled).
  static bool SplitSettled(const std::vector<const Ingest*>& instances) {
    std::vector<int> owned(instances.size(), 0);
    for (const std::vector<int>& o : Owners(instances)) {
      if (o.size() != 1) return false;
      ++owned[o[0]];
    }
    for (int n : owned) {
      if (n == 0) return false;
    }
    return true;
  }

  // Whether `shard` has folded every event of `events` (offset order).
  static bool FoldedThrough(const storage::ShardStore& shard, const std::vector<Produced>& events) {
    if (events.empty()) return true;
    const storage::ShardHead head = shard.Head();
    return head.last_source && head.last_source->offset >= events.back().offset;
  }

  // `shard` holds exactly `events` (one partition's, in offset order, from
  // offset 0 of this incarnation): each once, gap-free indexes, and each
  // findable by its prediction id at the offset Kafka gave it.
  static void ExpectShardHoldsExactly(const storage::ShardStore& shard,
                                      const std::vector<Produced>& events) {
    SCOPED_TRACE(shard.name());
    const storage::ShardHead head = shard.Head();
    EXPECT_EQ(head.counters.applied, events.size());
    EXPECT_EQ(head.counters.redelivered, 0u);
    EXPECT_EQ(head.counters.duplicates, 0u);
    EXPECT_EQ(head.counters.gaps, 0u);
    EXPECT_EQ(head.next_index, events.size());
    ASSERT_OK_AND_ASSIGN(std::vector<storage::StoredRecord> records,
                         shard.ReadRange(0, events.size() + 100));
    ASSERT_EQ(records.size(), events.size());
    for (size_t k = 0; k < records.size(); ++k) {
      ASSERT_EQ(records[k].index, k);
      ASSERT_EQ(records[k].source.offset, events[k].offset) << "index " << k;
      ASSERT_OK_AND_ASSIGN(predlog::v1::AuditEvent event, records[k].Event());
      ASSERT_EQ(event.prediction_logged().prediction_id(), events[k].prediction_id);
    }
    for (const Produced& e : events) {
      ASSERT_OK_AND_ASSIGN(storage::StoredRecord record, shard.GetByPredictionId(e.prediction_id));
      EXPECT_EQ(record.source.offset, e.offset) << e.prediction_id;
    }
  }

  static std::unique_ptr<storage::ShardStore> OpenReadOnly(const std::string& dir) {
    storage::ShardOptions options;
    options.dir = dir;
    options.read_only = true;
    auto shard = storage::ShardStore::Open(options);
    EXPECT_TRUE(shard.ok()) << dir << ": " << shard.status();
    return shard.ok() ? std::move(*shard) : nullptr;
  }

  TempDir dir_;
  KafkaPipeline kafka_;
};

TEST_F(IngestGroupTest, TwoInstancesSplitThePartitionsAndEachFoldsItsEventsOnce) {
  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(auto a, Ingest::Start(Options("a")));
  ASSERT_OK_AND_ASSIGN(auto b, Ingest::Start(Options("b")));
  const std::vector<const Ingest*> both = {a.get(), b.get()};
  ASSERT_TRUE(WaitUntil([&] { return SplitSettled(both); }));
  std::cout << "[ measured ] two instances joined and split the partitions in "
            << absl::FormatDuration(absl::Now() - start) << std::endl;

  constexpr int kEvents = 2000;
  const std::vector<Produced> produced = ProduceEvents(0, kEvents);
  const std::vector<std::vector<int>> owners = Owners(both);
  const std::vector<const Ingest*> instances = both;
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_FALSE(InPartition(produced, p).empty()) << "no event went to partition " << p;
    ASSERT_TRUE(WaitUntil([&] {
      return FoldedThrough(instances[owners[p][0]]->shard(p), InPartition(produced, p));
    })) << "partition "
        << p;
  }
  // Nobody else took a partition meanwhile.
  ASSERT_EQ(Owners(both), owners);
  for (int p = 0; p < kPartitions; ++p) {
    const int owner = owners[p][0];
    ExpectShardHoldsExactly(instances[owner]->shard(p), InPartition(produced, p));
    // The other instance's copy of the partition has nothing of it.
    const storage::ShardStore& other = instances[1 - owner]->shard(p);
    EXPECT_EQ(other.Head().next_index, 0u) << other.name();
    EXPECT_FALSE(other.Head().last_source.has_value()) << other.name();
    // Lag is reported by the owner only.
    const PartitionStatus mine = instances[owner]->Status()[p];
    const PartitionStatus theirs = instances[1 - owner]->Status()[p];
    EXPECT_TRUE(mine.owned);
    EXPECT_FALSE(theirs.owned);
    EXPECT_EQ(theirs.consumer_lag(), -1);
    // A durable call cannot be answered by the instance that does not fold
    // the partition: it says so at once instead of waiting (or inviting a retry).
    absl::Status elsewhere = absl::UnknownError("not answered");
    Ingest& other_instance = owner == 0 ? *b : *a;
    other_instance.AwaitFold(
        kEventsTopic, p, InPartition(produced, p).back().offset,
        [&](absl::StatusOr<FoldReceipt> receipt) { elsewhere = receipt.status(); });
    EXPECT_THAT(elsewhere, testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                             HasSubstr("folded by another ingest instance")));
  }

  // The registry is not split: both instances fold all of it, so reruns and
  // registry calls work on either.
  const std::string model =
      testing::MakeModelRegistered("credit", "v1", std::string(64, 'a')).SerializeAsString();
  std::atomic<bool> delivered{false};
  ASSERT_OK(
      kafka_.producer->Produce(kRegistryTopic, "credit", model, [&](absl::StatusOr<Delivery> d) {
        EXPECT_TRUE(d.ok()) << d.status();
        delivered = true;
      }));
  ASSERT_OK(kafka_.producer->Flush(absl::Seconds(30)));
  ASSERT_TRUE(delivered);
  for (const Ingest* instance : instances) {
    EXPECT_TRUE(instance->Status()[kRegistryShard].owned);
    ASSERT_TRUE(WaitUntil([&] { return instance->registry().Head().next_index == 1; }));
    ASSERT_OK_AND_ASSIGN(storage::StoredRecord record, instance->registry().Get(0));
    EXPECT_EQ(record.payload, model);
    EXPECT_OK(instance->registry().GetModel("credit", "v1").status());
  }
}

// Reads on an instance answer for the shards it folds; for a shard another
// instance folds they say so, never a NOT_FOUND for an event that exists.
TEST_F(IngestGroupTest, ReadsOfPartitionsFoldedElsewhereSaySoInsteadOfNotFound) {
  ASSERT_OK_AND_ASSIGN(auto a, Ingest::Start(Options("a")));
  ASSERT_OK_AND_ASSIGN(auto b, Ingest::Start(Options("b")));
  const std::vector<const Ingest*> both = {a.get(), b.get()};
  ASSERT_TRUE(WaitUntil([&] { return SplitSettled(both); }));
  const std::vector<std::vector<int>> owners = Owners(both);
  const std::vector<Produced> produced = ProduceEvents(0, 200);
  // An event in a partition `a` folds (ids are "group-<i>", subjects "customer-<i % 50>").
  const Produced* event = nullptr;
  for (const Produced& e : produced) {
    if (owners[e.partition][0] == 0) event = &e;
  }
  ASSERT_NE(event, nullptr);
  ASSERT_TRUE(WaitUntil([&] { return FoldedThrough(a->shard(event->partition), {*event}); }));
  const std::string subject =
      absl::StrCat("customer-", std::stoi(event->prediction_id.substr(6)) % 50);
  ASSERT_EQ(PartitionForKey(subject, kPartitions), event->partition);
  const std::string shard_name = absl::StrCat("predlog.events-", event->partition);

  PredictionLog on_a(kafka_.producer.get(), a.get(), {});
  PredictionLog on_b(kafka_.producer.get(), b.get(), {});
  predlog::v1::GetPredictionRequest by_id;
  by_id.set_prediction_id(event->prediction_id);
  predlog::v1::GetPredictionRequest by_id_and_subject = by_id;
  by_id_and_subject.set_subject_id(subject);
  predlog::v1::ListPredictionsRequest trail;
  trail.set_subject_id(subject);

  ASSERT_OK_AND_ASSIGN(predlog::v1::PredictionRecord found, on_a.GetPrediction(by_id));
  EXPECT_EQ(found.event().prediction_logged().prediction_id(), event->prediction_id);
  ASSERT_OK(on_a.GetPrediction(by_id_and_subject).status());
  ASSERT_OK_AND_ASSIGN(predlog::v1::ListPredictionsResponse listed, on_a.ListPredictions(trail));
  EXPECT_GT(listed.records_size(), 0);

  for (const auto& status :
       {on_b.GetPrediction(by_id).status(), on_b.GetPrediction(by_id_and_subject).status(),
        on_b.ListPredictions(trail).status()}) {
    EXPECT_THAT(status,
                testing::StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(shard_name)));
    EXPECT_THAT(status, testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("another ingest instance")));
  }
  // An id logged nowhere is not called missing by an instance that cannot see
  // every shard.
  predlog::v1::GetPredictionRequest missing;
  missing.set_prediction_id("never-logged");
  EXPECT_THAT(on_b.GetPrediction(missing).status(),
              testing::StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("never-logged")));
  // An export of everything needs every shard.
  Audit audit(a.get());
  predlog::v1::ExportTrailRequest all;
  all.set_all(true);
  EXPECT_THAT(audit.StartExport(all).status(),
              testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr("another ingest instance")));
  predlog::v1::ExportTrailRequest subject_trail;
  subject_trail.set_subject_id(subject);
  EXPECT_OK(audit.StartExport(subject_trail).status());
  // Status says which shards this instance folds.
  ASSERT_OK_AND_ASSIGN(predlog::v1::StatusResponse status_a, audit.Status());
  ASSERT_OK_AND_ASSIGN(predlog::v1::StatusResponse status_b, Audit(b.get()).Status());
  ASSERT_EQ(status_a.shards_size(), kPartitions + 2);  // and the registry and access trail
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(status_a.shards(p).folded_elsewhere(), owners[p][0] != 0) << p;
    EXPECT_EQ(status_b.shards(p).folded_elsewhere(), owners[p][0] != 1) << p;
  }
  EXPECT_FALSE(status_a.shards(kRegistryShard).folded_elsewhere());
  EXPECT_FALSE(status_b.shards(kRegistryShard).folded_elsewhere());
  // The access trail, like the registry, is folded whole by every instance.
  EXPECT_EQ(status_a.shards(kRegistryShard + 1).shard(), "predlog.access-0");
  EXPECT_FALSE(status_a.shards(kRegistryShard + 1).folded_elsewhere());
  EXPECT_FALSE(status_b.shards(kRegistryShard + 1).folded_elsewhere());
}

TEST_F(IngestGroupTest, StoppedInstancesPartitionsAreFoldedByTheSurvivorFromTheSourceStart) {
  auto a = Ingest::Start(Options("a"));
  ASSERT_OK(a.status());
  ASSERT_OK_AND_ASSIGN(auto b, Ingest::Start(Options("b")));
  ASSERT_TRUE(WaitUntil([&] { return SplitSettled({a->get(), b.get()}); }));
  const std::vector<std::vector<int>> owners = Owners({a->get(), b.get()});
  const std::vector<Produced> before = ProduceEvents(0, 1000);
  std::vector<int> a_partitions;
  for (int p = 0; p < kPartitions; ++p) {
    const Ingest& owner = owners[p][0] == 0 ? **a : *b;
    ASSERT_TRUE(WaitUntil([&] { return FoldedThrough(owner.shard(p), InPartition(before, p)); }));
    if (owners[p][0] == 0) a_partitions.push_back(p);
  }

  // a leaves the group (its destructor revokes, commits and closes).
  const absl::Time stop = absl::Now();
  a->reset();
  ASSERT_TRUE(WaitUntil([&] {
    const std::vector<PartitionStatus> status = b->Status();
    for (const PartitionStatus& s : status) {
      if (!s.owned) return false;
    }
    return true;
  })) << "b never took over a's partitions";
  std::cout << "[ measured ] the survivor owned every partition "
            << absl::FormatDuration(absl::Now() - stop) << " after the other left" << std::endl;

  const std::vector<Produced> after = ProduceEvents(1000, 1000);
  std::vector<Produced> all = before;
  all.insert(all.end(), after.begin(), after.end());
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_TRUE(WaitUntil([&] { return FoldedThrough(b->shard(p), InPartition(all, p)); }))
        << "partition " << p;
  }
  // b's copy of every partition holds all its events, from offset 0 (b's own
  // shard had none of a's partitions), each exactly once.
  for (int p = 0; p < kPartitions; ++p) ExpectShardHoldsExactly(b->shard(p), InPartition(all, p));
  b.reset();
  // a's copies hold exactly what it folded while it owned them.
  for (int p = 0; p < kPartitions; ++p) {
    auto shard = OpenReadOnly(dir_.Sub("a/shards/predlog.events-" + std::to_string(p)));
    ASSERT_NE(shard, nullptr);
    const bool was_a = std::count(a_partitions.begin(), a_partitions.end(), p) > 0;
    ExpectShardHoldsExactly(*shard, was_a ? InPartition(before, p) : std::vector<Produced>{});
  }
}

// A bare librdkafka member of the group (another instance, as far as the
// ingest can tell): it takes partitions and never commits.
class BareMember {
 public:
  explicit BareMember(const std::string& bootstrap) {
    auto consumer =
        NewKafkaClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap},
                                           {"group.id", kGroup},
                                           {"partition.assignment.strategy", "cooperative-sticky"},
                                           {"enable.auto.commit", "false"},
                                           {"auto.offset.reset", "earliest"},
                                           // As the ingest's against the embedded broker.
                                           {"session.timeout.ms", "4000"},
                                           {"heartbeat.interval.ms", "500"},
                                           {"log_level", "3"}});
    EXPECT_OK(consumer.status());
    rk_ = *consumer;
    rd_kafka_poll_set_consumer(rk_);
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, kEventsTopic, RD_KAFKA_PARTITION_UA);
    EXPECT_EQ(rd_kafka_subscribe(rk_, topics), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(topics);
    poller_ = std::thread([this] {
      while (!stop_.load()) {
        if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 50)) rd_kafka_message_destroy(m);
      }
    });
  }
  ~BareMember() {
    // librdkafka 2.0.2 aborts when a cooperative-sticky consumer is destroyed
    // before its first assignment (issue #4312): let it arrive first.
    const bool assigned = WaitUntil([this] {
      rd_kafka_topic_partition_list_t* list = nullptr;
      const bool any = rd_kafka_assignment(rk_, &list) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                       list != nullptr && list->cnt > 0;
      if (list != nullptr) rd_kafka_topic_partition_list_destroy(list);
      return any;
    });
    stop_.store(true);
    poller_.join();
    rd_kafka_consumer_close(rk_);
    if (assigned) rd_kafka_destroy(rk_);  // else left undestroyed rather than abort
  }

 private:
  rd_kafka_t* rk_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

// The group's committed offset of events partition `p`, as a client outside
// the group sees it (-1001: none; -2: could not ask).
int64_t CommittedOffset(const std::string& bootstrap, int p) {
  auto client =
      NewKafkaClient(RD_KAFKA_CONSUMER,
                     {{"bootstrap.servers", bootstrap}, {"group.id", kGroup}, {"log_level", "3"}});
  EXPECT_OK(client.status());
  if (!client.ok()) return -2;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, kEventsTopic, p);
  int64_t offset = -2;
  if (rd_kafka_committed(*client, list, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
      list->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    offset = list->elems[0].offset;
  }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(*client);
  return offset;
}

TEST_F(IngestGroupTest, RevocationFoldsWhatWasPolledCommitsThatPositionAndHandsOverTheRest) {
  // Declared before `a`: its destructor answers waiters that write here.
  struct Outcome {
    int answers = 0;
    absl::Status status;
  };
  std::mutex mu;
  std::map<std::pair<int, int64_t>, Outcome> outcomes;  // (partition, offset)
  std::map<std::pair<int, int64_t>, std::string> ids;
  ASSERT_OK_AND_ASSIGN(auto a, Ingest::Start(Options("a")));
  ASSERT_TRUE(WaitUntil([&] { return SplitSettled({a.get()}); }));

  // Events flow without pause while another member joins, so the revocation
  // lands while `a` has messages polled and not yet folded. Every delivered
  // offset gets a waiter on `a`, as a durable Log call would.
  std::atomic<bool> stop{false};
  std::thread load([&] {
    for (int i = 0; !stop.load(); ++i) {
      const std::string id = absl::StrCat("revoke-", i);
      const absl::Status status = kafka_.producer->Produce(
          kEventsTopic, absl::StrCat("customer-", i % 50), EventPayload(id, i),
          [&, id](absl::StatusOr<Delivery> d) {
            if (!d.ok()) return;
            {
              std::lock_guard<std::mutex> lock(mu);
              ids[{d->partition, d->offset}] = id;
            }
            a->AwaitFold(kEventsTopic, d->partition, d->offset,
                         [&, key = std::make_pair(d->partition, d->offset)](
                             absl::StatusOr<FoldReceipt> receipt) {
                           std::lock_guard<std::mutex> lock(mu);
                           Outcome& o = outcomes[key];
                           ++o.answers;
                           o.status = receipt.status();
                         });
          });
      if (!status.ok()) absl::SleepFor(absl::Milliseconds(5));  // local queue full
      if (i % 20 == 0) absl::SleepFor(absl::Milliseconds(1));
    }
  });

  BareMember other(kafka_.broker->bootstrap_servers());
  // The cooperative protocol revokes first (`a` gives partitions up), then
  // assigns them to the other member in a second rebalance.
  std::set<int> moved;
  std::map<int, storage::ShardHead> at_handover;
  const bool handed_over = WaitUntil([&] {
    const std::vector<PartitionStatus> status = a->Status();
    for (int p = 0; p < kPartitions; ++p) {
      if (!status[p].owned) {
        moved.insert(p);
        at_handover[p] = status[p].head;
      }
    }
    return !moved.empty();
  });
  stop.store(true);
  load.join();
  ASSERT_OK(kafka_.producer->Flush(absl::Seconds(30)));
  ASSERT_TRUE(handed_over) << "a never gave up an events partition to the other member";

  // Every waiter is answered exactly once, whoever folds its partition now.
  ASSERT_TRUE(WaitUntil([&] {
    std::lock_guard<std::mutex> lock(mu);
    return outcomes.size() == ids.size();
  }));
  // The group may move more partitions after the first handover (a later
  // rebalance of the cooperative protocol): judge each by where it is now.
  std::set<int> moved_now;
  {
    const std::vector<PartitionStatus> status = a->Status();
    for (int p = 0; p < kPartitions; ++p) {
      if (!status[p].owned) moved_now.insert(p);
    }
  }
  for (int p : moved) ASSERT_EQ(moved_now.count(p), 1u) << "partition " << p << " came back";

  // The partitions `a` kept: everything is folded and acknowledged there.
  std::map<int, int64_t> last_offset;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& [key, id] : ids) last_offset[key.first] = key.second;
  }
  for (int p = 0; p < kPartitions; ++p) {
    if (moved_now.count(p) > 0) continue;
    ASSERT_TRUE(WaitUntil([&] {
      const storage::ShardHead head = a->shard(p).Head();
      return head.last_source && head.last_source->offset >= last_offset[p];
    })) << "partition "
        << p;
  }

  for (int p : moved_now) {
    SCOPED_TRACE(absl::StrCat("moved partition ", p));
    const storage::ShardStore& shard = a->shard(p);
    // Nothing was folded here after the handover (seen as it happened for
    // the first ones moved).
    const storage::ShardHead head = shard.Head();
    if (moved.count(p) > 0) {
      ASSERT_EQ(head.next_index, at_handover[p].next_index);
    }
    const int64_t next = head.last_source ? head.last_source->offset + 1 : 0;
    // What `a` stored for the commit on revocation is its shard's position:
    // it folded what it had polled before, and nothing after. Commits are for
    // Kafka's lag view only, and the embedded coordinator refuses some during
    // a rebalance (REBALANCE_IN_PROGRESS, an old generation), so the committed
    // offset may lag; it must never run ahead of what the shard holds.
    const int64_t committed = CommittedOffset(kafka_.broker->bootstrap_servers(), p);
    EXPECT_LE(committed, next) << "Kafka shows offsets committed that the shard never folded";
    if (committed != next) {
      std::cout << "[ note ] partition " << p << ": committed " << committed << ", shard at "
                << next << std::endl;
    }
    // The shard holds offsets 0..next-1, each once, each the event Kafka has there.
    ASSERT_OK_AND_ASSIGN(std::vector<storage::StoredRecord> records,
                         shard.ReadRange(0, static_cast<size_t>(next) + 100));
    ASSERT_EQ(records.size(), static_cast<size_t>(next));
    std::lock_guard<std::mutex> lock(mu);
    for (size_t k = 0; k < records.size(); ++k) {
      ASSERT_EQ(records[k].source.offset, static_cast<int64_t>(k));
      ASSERT_OK_AND_ASSIGN(predlog::v1::AuditEvent event, records[k].Event());
      ASSERT_EQ(event.prediction_logged().prediction_id(), (ids[{p, static_cast<int64_t>(k)}]));
    }
    // Waiters: folded here before the handover, or told it moved.
    int moved_waiters = 0;
    for (const auto& [key, outcome] : outcomes) {
      if (key.first != p) continue;
      ASSERT_EQ(outcome.answers, 1) << "offset " << key.second;
      if (key.second < next) {
        EXPECT_OK(outcome.status) << "offset " << key.second;
      } else {
        ++moved_waiters;
        EXPECT_THAT(outcome.status,
                    testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                      HasSubstr("folded by another ingest instance")))
            << "offset " << key.second;
      }
    }
    if (moved.count(p) > 0) {
      EXPECT_GT(moved_waiters, 0) << "no event of the partition was produced after the handover";
    }
  }
  for (const auto& [key, outcome] : outcomes) {
    if (moved_now.count(key.first) > 0) continue;
    ASSERT_EQ(outcome.answers, 1);
    EXPECT_OK(outcome.status) << key.first << "@" << key.second;
  }
}

TEST(IngestGroupMetricsTest, AssignedGaugeAndLagOnlyForOwnedShards) {
  PartitionStatus owned{"predlog.events-0", {}, 10, true};
  PartitionStatus elsewhere{"predlog.events-1", {}, 10, false};
  std::string out;
  RenderShardMetrics({owned, elsewhere}, &out);
  EXPECT_THAT(out, HasSubstr("# TYPE predlog_shard_assigned gauge\n"));
  EXPECT_THAT(out, HasSubstr("predlog_shard_assigned{shard=\"predlog.events-0\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("predlog_shard_assigned{shard=\"predlog.events-1\"} 0\n"));
  EXPECT_THAT(out, HasSubstr("predlog_consumer_lag{shard=\"predlog.events-0\"} 10\n"));
  EXPECT_THAT(out, HasSubstr("predlog_consumer_lag{shard=\"predlog.events-1\"} -1\n"));
}

}  // namespace
}  // namespace predlog::services
