// PredictionLog/ListEntityChanges (an entity's history) and ListPredictions
// by trace_id on a running Server (gRPC on loopback, three shards in a temp
// dir): what the support page's customer timeline and trace search read.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/kafka/kafka_config.h"
#include "services/server/server.h"
#include "tests/testing/events.h"
#include "tests/testing/loopback_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::testing::SetTestDeadline;
using ::predlog::testing::TempDir;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

constexpr int kPartitions = 3;

// A change as the test knows it: the limit it set and where it was recorded.
struct Changed {
  double limit = 0;
  predlog::v1::Position position;
};

class EntityChangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        predlog::testing::LoopbackServer started,
        predlog::testing::StartLoopbackServer(ServerOptions(), dir_.Sub("data"), kPartitions));
    server_ = std::move(started.server);
    log_ = predlog::v1::PredictionLog::NewStub(started.channel);
    replay_ = predlog::v1::Replay::NewStub(started.channel);
  }

  // Records type/id's change setting limit = `limit`; its receipt's position.
  Changed Change(const std::string& type, const std::string& id, double limit) {
    predlog::v1::ChangeEntityRequest request;
    *request.mutable_change() =
        predlog::testing::MakeEntityChange(type, id, {{"limit", limit}}).entity_changed();
    predlog::v1::LogReceipt receipt;
    grpc::ClientContext context;
    SetTestDeadline(&context);
    const grpc::Status status = log_->ChangeEntity(&context, request, &receipt);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(receipt.outcome(), predlog::v1::LogReceipt::APPLIED);
    return Changed{limit, receipt.position()};
  }

  void Log(const std::string& id, const std::string& subject, const std::string& trace) {
    predlog::testing::PredictionSpec spec;
    spec.prediction_id = id;
    spec.subject_id = subject;
    predlog::v1::LogRequest request;
    *request.mutable_prediction() = predlog::testing::MakePrediction(spec).prediction_logged();
    request.mutable_prediction()->set_trace_id(trace);
    predlog::v1::LogReceipt receipt;
    grpc::ClientContext context;
    SetTestDeadline(&context);
    const grpc::Status status = log_->Log(&context, request, &receipt);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(receipt.outcome(), predlog::v1::LogReceipt::APPLIED);
  }

  grpc::Status ListChanges(const predlog::v1::ListEntityChangesRequest& request,
                           predlog::v1::ListEntityChangesResponse* response) {
    grpc::ClientContext context;
    SetTestDeadline(&context);
    return log_->ListEntityChanges(&context, request, response);
  }

  // Every change the listing gives, page after page; `pages` counts them.
  std::vector<predlog::v1::PredictionRecord> ListAllChanges(
      predlog::v1::ListEntityChangesRequest request, int* pages = nullptr) {
    std::vector<predlog::v1::PredictionRecord> out;
    int n = 0;
    do {
      predlog::v1::ListEntityChangesResponse page;
      const grpc::Status status = ListChanges(request, &page);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      if (request.page_size() > 0) {
        EXPECT_LE(page.changes_size(), static_cast<int>(request.page_size()));
      }
      for (auto& c : *page.mutable_changes()) out.push_back(std::move(c));
      request.set_page_token(page.next_page_token());
      ++n;
    } while (!request.page_token().empty() && n < 100);
    if (pages != nullptr) *pages = n;
    return out;
  }

  static predlog::v1::ListEntityChangesRequest Entity(const std::string& type,
                                                      const std::string& id) {
    predlog::v1::ListEntityChangesRequest request;
    request.set_entity_type(type);
    request.set_entity_id(id);
    return request;
  }

  // "limit@shard#index" of each change, to compare listings and receipts.
  static std::vector<std::string> Keys(const std::vector<predlog::v1::PredictionRecord>& records) {
    std::vector<std::string> keys;
    for (const auto& r : records) {
      const predlog::v1::EntityChanged& change = r.event().entity_changed();
      const auto limit = change.set_fields().find("limit");
      keys.push_back(
          absl::StrCat(change.entity_type(), "/", change.entity_id(), " ",
                       limit == change.set_fields().end() ? -1.0 : limit->second.double_value(),
                       "@", r.position().shard(), "#", r.position().index()));
    }
    return keys;
  }
  static std::vector<std::string> Keys(const std::string& entity,
                                       const std::vector<Changed>& changes) {
    std::vector<std::string> keys;
    for (const auto& c : changes) {
      keys.push_back(
          absl::StrCat(entity, " ", c.limit, "@", c.position.shard(), "#", c.position.index()));
    }
    return keys;
  }

  // Two customers' changes interleaved with predictions of the first, and a
  // change of another type with the first's id: c-1's five changes.
  std::vector<Changed> RecordHistories() {
    std::vector<Changed> c1;
    for (int i = 0; i < 5; ++i) {
      c1.push_back(Change("customer", "c-1", 1000 + i));
      Change("customer", "c-2", 2000 + i);
      Log(absl::StrCat("p-", i), "c-1", "");
      if (i == 2) Change("account", "c-1", 3000);
    }
    return c1;
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> log_;
  std::unique_ptr<predlog::v1::Replay::Stub> replay_;
};

TEST_F(EntityChangesTest, ListEntityChanges_ReturnsTheEntitysChangesInOrderAtTheirPositions) {
  const std::vector<Changed> c1 = RecordHistories();
  const std::vector<predlog::v1::PredictionRecord> listed =
      ListAllChanges(Entity("customer", "c-1"));
  EXPECT_THAT(Keys(listed), ElementsAreArray(Keys("customer/c-1", c1)));
  for (const auto& record : listed) {
    EXPECT_TRUE(record.event().has_recorded_at());
    EXPECT_FALSE(record.leaf_sha256().empty());
    EXPECT_TRUE(record.has_appended_at());
  }
  // Each position is where GetEntityAt's cut sees that change: right after
  // it, the record is as the change left it, last changed by it.
  for (const Changed& change : c1) {
    predlog::v1::GetEntityAtRequest at;
    at.set_entity_type("customer");
    at.set_entity_id("c-1");
    *at.mutable_as_of()->mutable_after() = change.position;
    predlog::v1::EntityAtResponse state;
    grpc::ClientContext context;
    SetTestDeadline(&context);
    const grpc::Status status = replay_->GetEntityAt(&context, at, &state);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(state.cut().shard(), change.position.shard());
    EXPECT_EQ(state.cut().index(), change.position.index() + 1);
    EXPECT_EQ(state.state().last_changed_index(), change.position.index());
    EXPECT_EQ(state.state().fields().at("limit").double_value(), change.limit);
  }
  // The other entities have their own histories.
  EXPECT_THAT(ListAllChanges(Entity("customer", "c-2")), ::testing::SizeIs(5));
  EXPECT_THAT(ListAllChanges(Entity("account", "c-1")), ::testing::SizeIs(1));
  predlog::v1::ListEntityChangesResponse none;
  ASSERT_TRUE(ListChanges(Entity("customer", "c-3"), &none).ok());
  EXPECT_EQ(none.changes_size(), 0);
  EXPECT_TRUE(none.next_page_token().empty());
}

TEST_F(EntityChangesTest, ListEntityChanges_PagesAndTimeRangeGiveTheSameHistory) {
  const std::vector<Changed> c1 = RecordHistories();
  const std::vector<predlog::v1::PredictionRecord> all = ListAllChanges(Entity("customer", "c-1"));
  ASSERT_EQ(all.size(), 5u);
  predlog::v1::ListEntityChangesRequest paged = Entity("customer", "c-1");
  paged.set_page_size(2);
  int pages = 0;
  EXPECT_THAT(Keys(ListAllChanges(paged, &pages)), ElementsAreArray(Keys(all)));
  EXPECT_EQ(pages, 3);

  // [from, to) on recorded_at: the second and third changes.
  predlog::v1::ListEntityChangesRequest window = Entity("customer", "c-1");
  *window.mutable_from() = all[1].event().recorded_at();
  *window.mutable_to() = all[3].event().recorded_at();
  EXPECT_THAT(Keys(ListAllChanges(window)), ElementsAreArray(Keys({all[1], all[2]})));
  window.set_page_size(1);
  EXPECT_THAT(Keys(ListAllChanges(window, &pages)), ElementsAreArray(Keys({all[1], all[2]})));
  EXPECT_EQ(pages, 2);
}

TEST_F(EntityChangesTest, ListEntityChanges_BadRequestsAreInvalidArgumentNamingTheField) {
  RecordHistories();
  auto expect_invalid = [&](const predlog::v1::ListEntityChangesRequest& request,
                            const std::string& field) {
    predlog::v1::ListEntityChangesResponse response;
    const grpc::Status status = ListChanges(request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_THAT(status.error_message(), HasSubstr(field));
  };
  expect_invalid(Entity("", "c-1"), "entity_type is required");
  expect_invalid(Entity("customer", ""), "entity_id is required");
  predlog::v1::ListEntityChangesRequest big = Entity("customer", "c-1");
  big.set_page_size(1001);
  expect_invalid(big, "page_size");
  predlog::v1::ListEntityChangesRequest garbage = Entity("customer", "c-1");
  garbage.set_page_token("not-a-token");
  expect_invalid(garbage, "page_token");
  // Another entity's token does not continue this listing, on its shard or
  // on another.
  predlog::v1::ListEntityChangesRequest first = Entity("customer", "c-2");
  first.set_page_size(1);
  predlog::v1::ListEntityChangesResponse page;
  ASSERT_TRUE(ListChanges(first, &page).ok());
  ASSERT_FALSE(page.next_page_token().empty());
  predlog::v1::ListEntityChangesRequest foreign = Entity("customer", "c-1");
  foreign.set_page_token(page.next_page_token());
  expect_invalid(foreign, "page_token");
  foreign = Entity("account", "c-2");
  foreign.set_page_token(page.next_page_token());
  expect_invalid(foreign, "page_token");
}

TEST_F(EntityChangesTest, ListPredictions_ByTraceIdListsTheTracesPredictionsOnEveryShard) {
  // Subjects on at least two shards carry the trace's steps.
  std::vector<std::string> subjects;
  std::set<int> shards;
  for (int i = 0; shards.size() < 2 || subjects.size() < 4; ++i) {
    subjects.push_back(absl::StrCat("s-", i));
    shards.insert(PartitionForKey(subjects.back(), kPartitions));
  }
  std::vector<std::string> traced;
  for (size_t i = 0; i < subjects.size() + 3; ++i) {
    const std::string& subject = subjects[i % subjects.size()];
    traced.push_back(absl::StrCat("t1-", i));
    Log(traced.back(), subject, "trace-1");
    Log(absl::StrCat("t2-", i), subject, "trace-2");
    Log(absl::StrCat("untraced-", i), subject, "");
  }
  for (uint32_t page_size : {0u, 2u}) {
    predlog::v1::ListPredictionsRequest request;
    request.set_trace_id("trace-1");
    request.set_page_size(page_size);
    std::vector<std::string> ids;
    std::set<std::string> listed_shards;
    int pages = 0;
    do {
      predlog::v1::ListPredictionsResponse page;
      grpc::ClientContext context;
      SetTestDeadline(&context);
      const grpc::Status status = log_->ListPredictions(&context, request, &page);
      ASSERT_TRUE(status.ok()) << status.error_message();
      if (page_size > 0) {
        EXPECT_LE(page.records_size(), static_cast<int>(page_size));
      }
      for (const auto& r : page.records()) {
        ids.push_back(r.event().prediction_logged().prediction_id());
        listed_shards.insert(r.position().shard());
      }
      request.set_page_token(page.next_page_token());
      ++pages;
    } while (!request.page_token().empty() && pages < 100);
    EXPECT_THAT(ids, UnorderedElementsAreArray(traced)) << "page_size " << page_size;
    EXPECT_EQ(listed_shards.size(), shards.size());
    if (page_size == 2) {
      EXPECT_GE(pages, static_cast<int>(traced.size() / 2));
    }
  }
  // A trace is listed whole: no time bounds, and an empty id is no filter.
  predlog::v1::ListPredictionsRequest bounded;
  bounded.set_trace_id("trace-1");
  bounded.mutable_served_from()->set_seconds(1);
  predlog::v1::ListPredictionsResponse response;
  grpc::ClientContext context;
  SetTestDeadline(&context);
  grpc::Status status = log_->ListPredictions(&context, bounded, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("served_from"));
  predlog::v1::ListPredictionsRequest empty;
  empty.set_trace_id("");
  grpc::ClientContext empty_context;
  SetTestDeadline(&empty_context);
  status = log_->ListPredictions(&empty_context, empty, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("trace_id"));
}

}  // namespace
}  // namespace predlog::services
