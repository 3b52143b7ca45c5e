// `predlog export` and `predlog verify` as an auditor runs them, as
// subprocesses against a predlogd child: verify --server against the live
// shards (an honest export passes, a re-encoded one with a rewritten manifest
// passes offline but not against the server), an export over a damaged data
// block (everything readable written, the rest named; verify says it is
// incomplete), and a failed export that leaves nothing under its name.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/export/trail_export.h"
#include "storage/sha256.h"
#include "tests/e2e/child_process.h"
#include "tests/testing/corrupt_block.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog {
namespace {

using ::predlog::testing::ReadFile;
using ::predlog::testing::RunCommand;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

class ExportVerifyCliTest : public ::testing::Test {
 protected:
  void Start(int partitions) {
    partitions_ = partitions;
    server_ = std::make_unique<testing::Predlogd>(
        PREDLOGD_BINARY,
        std::vector<std::string>{"--data_dir=" + dir_.Sub("data"), "--grpc_listen=127.0.0.1:0",
                                 "--http_listen=", absl::StrCat("--partitions=", partitions)});
    ASSERT_FALSE(server_->grpc().empty()) << server_->startup_line();
  }

  // `n` predictions of 40 customers, ~700 bytes each (incompressible).
  void LogPredictions(int n) {
    auto log = predlog::v1::PredictionLog::NewStub(
        grpc::CreateChannel(server_->grpc(), grpc::InsecureChannelCredentials()));
    for (int first = 0; first < n; first += 100) {
      predlog::v1::LogBatchRequest request;
      for (int i = first; i < std::min(n, first + 100); ++i) {
        testing::PredictionSpec spec;
        spec.prediction_id = absl::StrCat("p", i);
        spec.subject_id = absl::StrCat("customer-", i % 40);
        spec.raw_request_bytes = 400;
        spec.random_content = true;
        *request.add_requests()->mutable_prediction() =
            testing::MakePrediction(spec).prediction_logged();
      }
      predlog::v1::LogBatchResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      ASSERT_TRUE(log->LogBatch(&context, request, &response).ok());
      for (const auto& receipt : response.receipts()) {
        ASSERT_EQ(receipt.outcome(), predlog::v1::LogReceipt::APPLIED);
        if (receipt.shard() == "predlog.events-0") {
          subject_at_[receipt.position().index()] = receipt.prediction_id();
        }
      }
    }
  }

  std::string Cli() const {
    return std::string(PREDLOG_CLI_BINARY) + " --server=" + server_->grpc();
  }
  // verify, offline unless `server` is set.
  std::pair<int, std::string> Verify(const std::string& file, const std::string& server = "") {
    return RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify " +
                      (server.empty() ? "" : "--server " + server + " ") + file + " " + file +
                      ".manifest.json");
  }

  TempDir dir_;
  int partitions_ = 0;
  std::unique_ptr<testing::Predlogd> server_;
  std::map<uint64_t, std::string> subject_at_;  // predlog.events-0: index -> prediction id
};

TEST_F(ExportVerifyCliTest, VerifyServerPassesAnHonestExportAndFailsAReencodedOne) {
  Start(2);
  LogPredictions(200);
  const std::string file = dir_.Sub("all.jsonl");
  auto [code, out] = RunCommand(Cli() + " export --all --format jsonl --out " + file);
  ASSERT_EQ(code, 0) << out;

  auto [offline_code, offline] = Verify(file);
  EXPECT_EQ(offline_code, 0) << offline;
  EXPECT_THAT(offline, HasSubstr("OK: 200 records verified"));
  EXPECT_THAT(offline, HasSubstr("It cannot prove the manifest came from predlog"));
  EXPECT_THAT(offline, HasSubstr("'predlog verify --server ADDR' checks the manifest's chain "
                                 "anchors against the live shards"));
  auto [live_code, live] = Verify(file, server_->grpc());
  EXPECT_EQ(live_code, 0) << live;
  EXPECT_THAT(live, HasSubstr("OK: 200 records verified"));
  EXPECT_THAT(live, HasSubstr("SERVER OK: the manifest's 2 chain anchors equal the stored chain "
                              "values of the live shards at predlogd " +
                              server_->grpc()));
  EXPECT_THAT(live, HasSubstr("It holds as far as that server itself is trusted"));

  // A forger changes one record of shard 0, recomputes its leaf and the
  // chain from it on, and writes the file and a manifest to match.
  predlog::v1::ExportManifest manifest;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(ReadFile(file + ".manifest.json"), &manifest)
          .ok());
  std::vector<predlog::v1::ExportedRecord> records;
  for (absl::string_view line : absl::StrSplit(ReadFile(file), '\n', absl::SkipEmpty())) {
    predlog::v1::TrailLine trail;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(std::string(line), &trail).ok());
    predlog::v1::ExportedRecord& r = records.emplace_back();
    r.set_shard(trail.shard());
    r.set_index(trail.index());
    r.set_event_bytes(trail.event_bytes());
    r.set_leaf_sha256(trail.leaf_sha256());
    r.set_prev_chain_sha256(trail.prev_chain_sha256());
    r.set_chain_sha256(trail.chain_sha256());
  }
  std::string real_head, forged_head;
  uint64_t last = 0;
  bool forging = false;
  for (predlog::v1::ExportedRecord& r : records) {
    if (r.shard() != "predlog.events-0") continue;
    if (r.index() == 10) {
      predlog::v1::AuditEvent event;
      ASSERT_TRUE(event.ParseFromString(r.event_bytes()));
      event.mutable_prediction_logged()->mutable_output()->set_label("deny");
      r.set_event_bytes(event.SerializeAsString());
      forging = true;
    } else if (forging) {
      r.set_prev_chain_sha256(forged_head);
    }
    real_head = r.chain_sha256();
    if (forging) {
      const storage::Digest leaf = storage::Sha256(r.event_bytes());
      r.set_leaf_sha256(storage::ToHex(leaf));
      r.set_chain_sha256(
          storage::ToHex(storage::ChainNext(*storage::DigestFromHex(r.prev_chain_sha256()), leaf)));
    }
    forged_head = r.chain_sha256();
    last = r.index();
  }
  ASSERT_TRUE(forging);
  const std::string forged = dir_.Sub("forged.jsonl");
  {
    ASSERT_OK_AND_ASSIGN(auto writer,
                         services::TrailWriter::Create(forged, services::ExportFormat::kJsonl));
    for (const auto& r : records) ASSERT_OK(writer->Add(r));
    ASSERT_OK(writer->Finish(manifest, forged + ".manifest.json").status());
  }
  auto [forged_offline_code, forged_offline] = Verify(forged);
  EXPECT_EQ(forged_offline_code, 0) << forged_offline;  // what offline verification cannot prove
  auto [forged_live_code, forged_live] = Verify(forged, server_->grpc());
  EXPECT_EQ(forged_live_code, 1) << forged_live;
  EXPECT_THAT(forged_live, HasSubstr("FAILED against predlogd at " + server_->grpc() +
                                     ": 1 claim of the export does not match the live "
                                     "shards (2 checked)"));
  EXPECT_THAT(forged_live, HasSubstr(absl::StrCat(
                               "predlog.events-0#", last, ": the chain_sha256 anchor of range 0..",
                               last, " is ", forged_head.substr(0, 16),
                               "…, the server's shard has ", real_head.substr(0, 16), "…")));
  EXPECT_THAT(forged_live, Not(HasSubstr("SERVER OK")));

  auto [unreachable_code, unreachable] = Verify(file, "127.0.0.1:1");
  EXPECT_EQ(unreachable_code, 1) << unreachable;
  EXPECT_THAT(unreachable, HasSubstr("cannot reach predlogd at 127.0.0.1:1"));
}

TEST_F(ExportVerifyCliTest, ExportOverACorruptBlockWritesEveryReadableRecordAndVerifyNamesTheRest) {
  Start(1);
  LogPredictions(1000);
  ASSERT_EQ(server_->Stop(), 0);
  ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> unreadable,
                       testing::CorruptOneDataBlock(dir_.Sub("data/shards/predlog.events-0")));
  ASSERT_GT(unreadable.front(), 0u);
  ASSERT_EQ(unreadable.back() - unreadable.front() + 1, unreadable.size());  // one block's run
  Start(1);
  const std::string range =
      absl::StrCat("predlog.events-0 records ", unreadable.front(), "..", unreadable.back());

  const std::string file = dir_.Sub("all.jsonl");
  auto [code, out] = RunCommand(Cli() + " export --all --format jsonl --out " + file);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out,
              HasSubstr(absl::StrCat("exported ", 1000 - unreadable.size(), " records to ", file)));
  EXPECT_THAT(out, HasSubstr("predlog.events-0: " + std::to_string(1000 - unreadable.size()) +
                             " records in 2 contiguous ranges, 1 unreadable range"));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("WARNING: ", unreadable.size(),
                                          " records could not be read and are not in the "
                                          "export")));
  EXPECT_THAT(out, HasSubstr(range + ": shard predlog.events-0: read"));
  EXPECT_THAT(out, HasSubstr("Corruption"));
  EXPECT_TRUE(std::filesystem::exists(file));
  EXPECT_TRUE(std::filesystem::exists(file + ".manifest.json"));
  EXPECT_FALSE(std::filesystem::exists(file + services::kPartialSuffix));

  auto [verify_code, verify] = Verify(file);
  EXPECT_EQ(verify_code, 1) << verify;
  EXPECT_THAT(verify, HasSubstr(absl::StrCat("INCOMPLETE: ", 1000 - unreadable.size(),
                                             " records verified")));
  EXPECT_THAT(verify, HasSubstr(range + " could not be read when exported: "));
  EXPECT_THAT(verify, Not(HasSubstr("OK:")));
  EXPECT_THAT(verify, HasSubstr("This proves the file is the one the manifest describes"));
  // The readable runs agree with the live shard; the export is still incomplete.
  auto [live_code, live] = Verify(file, server_->grpc());
  EXPECT_EQ(live_code, 1) << live;
  EXPECT_THAT(live, HasSubstr("INCOMPLETE: "));
  EXPECT_THAT(live, HasSubstr("SERVER OK: the manifest's 3 chain anchors"));

  // A subject with a record in the damaged block: the same, as CSV.
  std::string subject;
  for (uint64_t i : unreadable) {
    if (subject_at_.count(i) > 0) {
      subject = absl::StrCat("customer-", std::stoi(subject_at_[i].substr(1)) % 40);
      break;
    }
  }
  ASSERT_FALSE(subject.empty());
  const std::string csv = dir_.Sub("subject.csv");
  auto [subject_code, subject_out] =
      RunCommand(Cli() + " export --subject " + subject + " --format csv --out " + csv);
  EXPECT_EQ(subject_code, 1) << subject_out;
  EXPECT_THAT(subject_out, HasSubstr("WARNING: "));
  EXPECT_THAT(subject_out, HasSubstr(range));
  auto [subject_verify_code, subject_verify] = Verify(csv, server_->grpc());
  EXPECT_EQ(subject_verify_code, 1) << subject_verify;
  EXPECT_THAT(subject_verify, HasSubstr(range + " could not be read when exported: "));
  EXPECT_THAT(subject_verify,
              HasSubstr("an unreadable record may or may not have matched its filter"));
  EXPECT_THAT(subject_verify, HasSubstr("SERVER OK: "));
}

TEST_F(ExportVerifyCliTest, AFailedExportLeavesNothingUnderItsName) {
  Start(1);
  LogPredictions(100);
  const std::string file = dir_.Sub("failed.jsonl");
  auto [code, out] =
      RunCommand(Cli() + " export --all --from 2030-01-01 --to 2020-01-01 --out " + file);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("from is after to (export failed: nothing written to " + file + ")"));
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_FALSE(std::filesystem::exists(file + services::kPartialSuffix));
  EXPECT_FALSE(std::filesystem::exists(file + ".manifest.json"));
}

}  // namespace
}  // namespace predlog
