// Exports over records a shard cannot read: an in-process predlogd whose
// shard has a damaged data block (bytes overwritten in the middle of its
// largest table file, as a failing disk leaves it). The export still sends
// every readable record, names the unreadable ones, and its file and
// manifest verify as consistent but incomplete. Real RocksDB, real gRPC on
// loopback.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/export/trail_export.h"
#include "services/server/server.h"
#include "storage/sha256.h"
#include "tests/testing/corrupt_block.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::ReadFile;
using ::predlog::testing::TempDir;
using ::predlog::v1::ExportBatch;
using ::predlog::v1::ExportManifest;
using ::predlog::v1::ExportTrailRequest;
using ::testing::HasSubstr;

constexpr char kShard[] = "predlog.events-0";
constexpr int kPredictions = 1000;
constexpr int kSubjects = 40;

// Maximal runs of consecutive indexes.
std::vector<std::pair<uint64_t, uint64_t>> Runs(const std::vector<uint64_t>& indexes) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  for (uint64_t i : indexes) {
    if (!runs.empty() && runs.back().second + 1 == i) {
      runs.back().second = i;
    } else {
      runs.emplace_back(i, i);
    }
  }
  return runs;
}

class ExportUnreadableTest : public ::testing::Test {
 protected:
  // One shard of 1000 predictions of ~700 bytes (incompressible, so a 4 KB
  // block holds a handful), then a damaged block in it.
  void SetUp() override {
    StartServer();
    auto log = predlog::v1::PredictionLog::NewStub(channel_);
    for (int batch = 0; batch < kPredictions / 100; ++batch) {
      predlog::v1::LogBatchRequest request;
      for (int i = batch * 100; i < (batch + 1) * 100; ++i) {
        PredictionSpec spec;
        spec.prediction_id = absl::StrCat("p", i);
        spec.subject_id = absl::StrCat("customer-", i % kSubjects);
        spec.model_version = i % 2 == 0 ? "v1" : "v2";
        spec.raw_request_bytes = 400;
        spec.random_content = true;
        *request.add_requests()->mutable_prediction() = MakePrediction(spec).prediction_logged();
      }
      predlog::v1::LogBatchResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      ASSERT_TRUE(log->LogBatch(&context, request, &response).ok());
      for (const auto& receipt : response.receipts()) {
        ASSERT_EQ(receipt.outcome(), predlog::v1::LogReceipt::APPLIED);
        ASSERT_EQ(receipt.shard(), kShard);
        const int n = std::stoi(receipt.prediction_id().substr(1));
        subject_of_[receipt.position().index()] = absl::StrCat("customer-", n % kSubjects);
        if (n % 2 == 0) v1_.insert(receipt.position().index());
      }
    }
    ASSERT_EQ(subject_of_.size(), static_cast<size_t>(kPredictions));
    server_.reset();
    ASSERT_OK_AND_ASSIGN(
        unreadable_, testing::CorruptOneDataBlock(dir_.Sub(std::string("data/shards/") + kShard)));
    // In the middle of the log: readable records before and after it.
    ASSERT_GT(unreadable_.front(), 0u);
    ASSERT_LT(unreadable_.back(), kPredictions - 1u);
    StartServer();
  }

  void StartServer() {
    ServerOptions options;
    options.data_dir = dir_.Sub("data");
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "";
    options.partitions = 1;
    ASSERT_OK_AND_ASSIGN(server_, Server::Start(options));
    channel_ = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    audit_ = predlog::v1::Audit::NewStub(channel_);
  }

  std::vector<ExportBatch> Stream(const ExportTrailRequest& request, grpc::Status* status) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto stream = audit_->ExportTrail(&context, request);
    std::vector<ExportBatch> batches;
    ExportBatch batch;
    while (stream->Read(&batch)) batches.push_back(batch);
    *status = stream->Finish();
    return batches;
  }

  // The stream written as the CLI writes it; returns the manifest's path.
  std::string ExportToFile(const ExportTrailRequest& request, const std::string& name,
                           ExportFormat format) {
    const std::string file = dir_.Sub(name);
    absl::StatusOr<std::unique_ptr<TrailWriter>> writer = TrailWriter::Create(file, format);
    EXPECT_TRUE(writer.ok()) << writer.status();
    grpc::Status status;
    for (ExportBatch& batch : Stream(request, &status)) {
      EXPECT_OK((*writer)->AddBatch(std::move(batch)));
    }
    EXPECT_TRUE(status.ok()) << status.error_message();
    ExportManifest manifest;
    *manifest.mutable_filter() = request;
    absl::StatusOr<ExportManifest> done = (*writer)->Finish(manifest, file + ".manifest.json");
    EXPECT_TRUE(done.ok()) << done.status();
    return file + ".manifest.json";
  }

  std::vector<uint64_t> IndexesOf(const std::string& subject) const {
    std::vector<uint64_t> out;
    for (const auto& [index, s] : subject_of_) {
      if (s == subject) out.push_back(index);
    }
    return out;
  }
  bool Unreadable(uint64_t index) const {
    return std::binary_search(unreadable_.begin(), unreadable_.end(), index);
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<predlog::v1::Audit::Stub> audit_;
  std::map<uint64_t, std::string> subject_of_;  // by index in the shard
  std::set<uint64_t> v1_;                       // indexes of credit-limit@v1 predictions
  std::vector<uint64_t> unreadable_;            // indexes that read as DATA_LOSS
};

TEST_F(ExportUnreadableTest, ExportOfEverythingSendsEveryReadableRecordAndNamesTheUnreadable) {
  ExportTrailRequest request;
  request.set_all(true);
  grpc::Status status;
  const std::vector<ExportBatch> batches = Stream(request, &status);
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();

  // The stream in order: records and unreadable ranges, each in its place.
  std::vector<uint64_t> exported;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::map<uint64_t, std::string> chain;
  std::string previous_kind;
  uint64_t previous_last = 0;
  for (const ExportBatch& batch : batches) {
    int next_range = 0;
    for (int i = 0; i <= batch.records_size(); ++i) {
      for (; next_range < batch.unreadable_size() &&
             batch.unreadable(next_range).records_before() == static_cast<uint32_t>(i);
           ++next_range) {
        const auto& u = batch.unreadable(next_range);
        EXPECT_EQ(u.shard(), kShard);
        EXPECT_THAT(u.reason(), HasSubstr(kShard));
        if (!previous_kind.empty()) {
          EXPECT_GT(u.first_index(), previous_last);
        }
        ranges.emplace_back(u.first_index(), u.last_index());
        previous_kind = "unreadable";
        previous_last = u.last_index();
      }
      if (i == batch.records_size()) break;
      const auto& r = batch.records(i);
      if (r.shard() != kShard) continue;  // the registry: empty here
      if (!previous_kind.empty()) {
        EXPECT_GT(r.index(), previous_last);
      }
      exported.push_back(r.index());
      EXPECT_EQ(r.leaf_sha256(), storage::ToHex(storage::Sha256(r.event_bytes())));
      if (r.index() > 0 && Unreadable(r.index() - 1)) {
        // The chain value before it is the unreadable record's.
        EXPECT_EQ(r.prev_chain_sha256(), "") << r.index();
      } else {
        EXPECT_EQ(r.prev_chain_sha256(),
                  r.index() == 0 ? storage::ToHex(storage::kChainGenesis) : chain[r.index() - 1])
            << r.index();
        EXPECT_EQ(r.chain_sha256(),
                  storage::ToHex(storage::ChainNext(*storage::DigestFromHex(r.prev_chain_sha256()),
                                                    *storage::DigestFromHex(r.leaf_sha256()))));
      }
      chain[r.index()] = r.chain_sha256();
      previous_kind = "record";
      previous_last = r.index();
    }
    EXPECT_EQ(next_range, batch.unreadable_size()) << "a range out of place";
  }
  std::vector<uint64_t> readable;
  for (uint64_t i = 0; i < kPredictions; ++i) {
    if (!Unreadable(i)) readable.push_back(i);
  }
  EXPECT_EQ(exported, readable);
  EXPECT_EQ(ranges, Runs(unreadable_));
}

TEST_F(ExportUnreadableTest, ItsFileAndManifestVerifyAsIncompleteNamingEachUnreadableRange) {
  ExportTrailRequest request;
  request.set_all(true);
  for (const ExportFormat format : {ExportFormat::kJsonl, ExportFormat::kCsv}) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path =
        ExportToFile(request, absl::StrCat("all.", ExportFormatName(format)), format);
    ExportManifest manifest;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(ReadFile(manifest_path), &manifest).ok());
    ASSERT_GE(manifest.shards_size(), 1);
    const auto& shard = manifest.shards(0);
    EXPECT_EQ(shard.shard(), kShard);
    EXPECT_EQ(shard.records(), kPredictions - unreadable_.size());
    const auto runs = Runs(unreadable_);
    ASSERT_EQ(shard.unreadable_size(), static_cast<int>(runs.size()));
    for (size_t i = 0; i < runs.size(); ++i) {
      EXPECT_EQ(shard.unreadable(i).first_index(), runs[i].first);
      EXPECT_EQ(shard.unreadable(i).last_index(), runs[i].second);
      EXPECT_THAT(shard.unreadable(i).reason(), HasSubstr(kShard));
    }
    // Each readable run is a range; one after an unreadable run has no
    // anchor before it.
    for (const auto& range : shard.ranges()) {
      const bool after_unreadable = range.first_index() > 0 && Unreadable(range.first_index() - 1);
      EXPECT_EQ(range.prev_chain_sha256().empty(), after_unreadable) << range.first_index();
    }
    EXPECT_EQ(shard.ranges_size(), static_cast<int>(runs.size()) + 1);

    ASSERT_OK_AND_ASSIGN(ExportVerification v, VerifyExport("", manifest_path));
    EXPECT_TRUE(v.consistent) << v.failure;
    EXPECT_FALSE(v.ok);
    EXPECT_EQ(v.records_checked, kPredictions - unreadable_.size());
    EXPECT_THAT(v.failure, HasSubstr(absl::StrCat("the export is incomplete: ", unreadable_.size(),
                                                  " records")));
    EXPECT_THAT(v.failure, HasSubstr(absl::StrCat(kShard, " records ", runs[0].first, "..",
                                                  runs[0].second, ": ")));
    ASSERT_EQ(v.unreadable.size(), runs.size());
    EXPECT_EQ(v.unreadable[0].shard, kShard);
    EXPECT_EQ(v.unreadable[0].first_index, runs[0].first);
  }
}

TEST_F(ExportUnreadableTest, AManifestEditedToHideOrClaimAnUnreadableRangeFailsVerify) {
  ExportTrailRequest request;
  request.set_all(true);
  const std::string manifest_path = ExportToFile(request, "all.jsonl", ExportFormat::kJsonl);
  ExportManifest honest;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(ReadFile(manifest_path), &honest).ok());
  const auto verify = [&](const ExportManifest& edited) {
    std::string json;
    EXPECT_TRUE(google::protobuf::util::MessageToJsonString(edited, &json).ok());
    std::ofstream(manifest_path, std::ios::trunc) << json;
    absl::StatusOr<ExportVerification> v = VerifyExport("", manifest_path);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : ExportVerification{};
  };
  ASSERT_TRUE(verify(honest).consistent);

  // Hidden: the unreadable ranges dropped, the export claims to be whole.
  ExportManifest hidden = honest;
  hidden.mutable_shards(0)->clear_unreadable();
  ExportVerification v = verify(hidden);
  EXPECT_FALSE(v.consistent);
  EXPECT_FALSE(v.ok);
  EXPECT_THAT(v.failure, HasSubstr("is not listed as unreadable"));
  EXPECT_TRUE(v.unreadable.empty());

  // ... and the unanchored range given an anchor: the gap is then not a
  // recorded loss.
  ExportManifest anchored = hidden;
  for (auto& range : *anchored.mutable_shards(0)->mutable_ranges()) {
    if (range.prev_chain_sha256().empty()) range.set_prev_chain_sha256(std::string(64, '0'));
  }
  v = verify(anchored);
  EXPECT_FALSE(v.consistent);
  EXPECT_THAT(v.failure,
              HasSubstr(absl::StrCat("(", kShard, "#", unreadable_.back() + 1, "): follows a gap (",
                                     unreadable_.front(), "..", unreadable_.back(),
                                     ") in an export of everything "
                                     "that is not a recorded loss")));

  // Claimed: a readable record in the middle of a range said to be
  // unreadable, the range split around it and the counts made to match.
  ExportManifest claimed = honest;
  auto* shard = claimed.mutable_shards(0);
  int longest = 0;
  for (int i = 0; i < shard->ranges_size(); ++i) {
    const auto& r = shard->ranges(i);
    if (r.last_index() - r.first_index() >
        shard->ranges(longest).last_index() - shard->ranges(longest).first_index()) {
      longest = i;
    }
  }
  const ExportManifest::Range whole = shard->ranges(longest);
  const uint64_t k = (whole.first_index() + whole.last_index()) / 2;
  ASSERT_GT(k, whole.first_index());
  ASSERT_LT(k, whole.last_index());
  ExportManifest::Range before = whole, after = whole;
  before.set_last_index(k - 1);
  {
    // The editor takes the chain value after k - 1 from the file.
    predlog::v1::GetChainValuesRequest live;
    live.add_positions()->set_shard(kShard);
    live.mutable_positions(0)->set_index(k - 1);
    predlog::v1::GetChainValuesResponse values;
    grpc::ClientContext context;
    ASSERT_TRUE(audit_->GetChainValues(&context, live, &values).ok());
    before.set_chain_sha256(values.values(0).chain_sha256());
  }
  after.set_first_index(k + 1);
  after.clear_prev_chain_sha256();
  std::vector<ExportManifest::Range> ranges(shard->ranges().begin(), shard->ranges().end());
  ranges[longest] = before;
  ranges.insert(ranges.begin() + longest + 1, after);
  shard->clear_ranges();
  for (const auto& r : ranges) *shard->add_ranges() = r;
  std::vector<ExportManifest::Unreadable> unreadable(shard->unreadable().begin(),
                                                     shard->unreadable().end());
  ExportManifest::Unreadable claim;
  claim.set_first_index(k);
  claim.set_last_index(k);
  claim.set_reason("made up");
  unreadable.push_back(claim);
  std::sort(unreadable.begin(), unreadable.end(),
            [](const auto& a, const auto& b) { return a.first_index() < b.first_index(); });
  shard->clear_unreadable();
  for (const auto& u : unreadable) *shard->add_unreadable() = u;
  shard->set_records(shard->records() - 1);
  claimed.set_record_count(claimed.record_count() - 1);
  v = verify(claimed);
  EXPECT_FALSE(v.consistent);
  EXPECT_THAT(v.failure, HasSubstr(absl::StrCat("(", kShard, "#", k, "): is in the range ", k, "..",
                                                k, " that the manifest says could not be read")));

  // Claimed over a range it also lists: they overlap.
  ExportManifest overlapping = honest;
  auto* u = overlapping.mutable_shards(0)->add_unreadable();
  u->set_first_index(k);
  u->set_last_index(k);
  v = verify(overlapping);
  EXPECT_FALSE(v.consistent);
  EXPECT_THAT(v.failure, HasSubstr("overlaps unreadable range"));

  EXPECT_TRUE(verify(honest).consistent);
}

TEST_F(ExportUnreadableTest, SubjectAndModelExportsNameTheirUnreadableRecords) {
  // A subject with a record in the damaged block: the shard's subject index
  // pages through the records, so the export reads the log whole instead.
  std::string hit, missed;
  for (int s = 0; s < kSubjects; ++s) {
    const std::string subject = absl::StrCat("customer-", s);
    const std::vector<uint64_t> indexes = IndexesOf(subject);
    const bool has_unreadable =
        std::any_of(indexes.begin(), indexes.end(), [&](uint64_t i) { return Unreadable(i); });
    if (has_unreadable && hit.empty()) hit = subject;
    if (!has_unreadable && missed.empty()) missed = subject;
  }
  ASSERT_FALSE(hit.empty());
  ASSERT_FALSE(missed.empty());

  for (const std::string& subject : {hit, missed}) {
    SCOPED_TRACE(subject);
    ExportTrailRequest request;
    request.set_subject_id(subject);
    grpc::Status status;
    std::vector<uint64_t> exported;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const ExportBatch& batch : Stream(request, &status)) {
      for (const auto& r : batch.records()) exported.push_back(r.index());
      for (const auto& u : batch.unreadable()) ranges.emplace_back(u.first_index(), u.last_index());
    }
    ASSERT_TRUE(status.ok()) << status.error_message();
    std::vector<uint64_t> readable, expected_unreadable;
    for (uint64_t i : IndexesOf(subject)) {
      if (!Unreadable(i)) readable.push_back(i);
      // Its record right after an unreadable one needs that one's chain value.
      if (i > 0 && Unreadable(i - 1)) expected_unreadable.push_back(i - 1);
    }
    EXPECT_EQ(exported, readable);
    if (subject == hit) {
      EXPECT_EQ(ranges, Runs(unreadable_));  // every record read, each unreadable one named
    } else {
      EXPECT_EQ(ranges, Runs(expected_unreadable));
    }
    const std::string manifest_path =
        ExportToFile(request, subject + ".jsonl", ExportFormat::kJsonl);
    ASSERT_OK_AND_ASSIGN(ExportVerification v, VerifyExport("", manifest_path));
    EXPECT_TRUE(v.consistent) << v.failure;
    EXPECT_EQ(v.ok, ranges.empty());
    EXPECT_EQ(v.records_checked, readable.size());
  }

  // A model version's predictions: every other record of the shard.
  ExportTrailRequest model;
  model.mutable_model()->set_name("credit-limit");
  model.mutable_model()->set_version("v1");
  const std::string manifest_path = ExportToFile(model, "v1.csv", ExportFormat::kCsv);
  ASSERT_OK_AND_ASSIGN(ExportVerification v, VerifyExport("", manifest_path));
  EXPECT_TRUE(v.consistent) << v.failure;
  EXPECT_FALSE(v.ok);
  ASSERT_TRUE(std::any_of(unreadable_.begin(), unreadable_.end(),
                          [&](uint64_t i) { return v1_.count(i) > 0; }));
  uint64_t readable_v1 = 0;
  for (uint64_t i : v1_) readable_v1 += Unreadable(i) ? 0 : 1;
  EXPECT_EQ(v.records_checked, readable_v1);
  std::vector<std::pair<uint64_t, uint64_t>> listed;
  for (const UnreadableRange& u : v.unreadable) listed.emplace_back(u.first_index, u.last_index);
  EXPECT_EQ(listed, Runs(unreadable_));
}

TEST_F(ExportUnreadableTest, GetChainValuesIsDataLossNamingAnUnreadableRecord) {
  const uint64_t bad = unreadable_.front();
  const uint64_t good = bad == 0 ? unreadable_.back() + 1 : bad - 1;
  predlog::v1::GetChainValuesRequest request;
  auto* p = request.add_positions();
  p->set_shard(kShard);
  p->set_index(good);
  predlog::v1::GetChainValuesResponse response;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(audit_->GetChainValues(&context, request, &response).ok());
  }
  ASSERT_EQ(response.values_size(), 1);
  EXPECT_EQ(response.values(0).chain_sha256().size(), 64u);

  p = request.add_positions();
  p->set_shard(kShard);
  p->set_index(bad);
  grpc::ClientContext context;
  const grpc::Status status = audit_->GetChainValues(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat(kShard, "#", bad)));
}

}  // namespace
}  // namespace predlog::services
