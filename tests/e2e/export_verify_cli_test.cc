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
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/export/trail_export.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"
#include "storage/signed_note.h"
#include "storage/timestamps.h"
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

// The records of a JSON-lines export, as the server sent them.
std::vector<predlog::v1::ExportedRecord> ReadRecords(const std::string& file) {
  std::vector<predlog::v1::ExportedRecord> records;
  for (absl::string_view line : absl::StrSplit(ReadFile(file), '\n', absl::SkipEmpty())) {
    predlog::v1::TrailLine trail;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(std::string(line), &trail).ok());
    predlog::v1::ExportedRecord& r = records.emplace_back();
    r.set_shard(trail.shard());
    r.set_index(trail.index());
    r.set_event_bytes(trail.event_bytes());
    r.set_leaf_sha256(trail.leaf_sha256());
    r.set_prev_chain_sha256(trail.prev_chain_sha256());
    r.set_chain_sha256(trail.chain_sha256());
    if (trail.has_appended_at()) *r.mutable_appended_at() = trail.appended_at();
  }
  return records;
}

predlog::v1::ExportManifest ReadManifest(const std::string& path) {
  predlog::v1::ExportManifest manifest;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(ReadFile(path), &manifest).ok());
  return manifest;
}

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

  // `n` predictions of 40 customers, ~700 bytes each (incompressible), with
  // ids from p<first> on.
  void LogPredictions(int n, int first_id = 0) {
    auto log = predlog::v1::PredictionLog::NewStub(
        grpc::CreateChannel(server_->grpc(), grpc::InsecureChannelCredentials()));
    for (int first = 0; first < n; first += 100) {
      predlog::v1::LogBatchRequest request;
      for (int i = first; i < std::min(n, first + 100); ++i) {
        testing::PredictionSpec spec;
        spec.prediction_id = absl::StrCat("p", first_id + i);
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
  EXPECT_THAT(offline, HasSubstr("Without --key it cannot prove the manifest came from predlog"));
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
  const predlog::v1::ExportManifest manifest = ReadManifest(file + ".manifest.json");
  std::vector<predlog::v1::ExportedRecord> records = ReadRecords(file);
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

// Recomputes every leaf and chain value of `records` from their bytes, as a
// forger who edited some would.
void Rechain(std::vector<predlog::v1::ExportedRecord>* records) {
  std::map<std::string, std::string> head;
  for (predlog::v1::ExportedRecord& r : *records) {
    if (head.count(r.shard()) > 0) r.set_prev_chain_sha256(head[r.shard()]);
    const storage::Digest leaf = storage::Sha256(r.event_bytes());
    r.set_leaf_sha256(storage::ToHex(leaf));
    r.set_chain_sha256(
        storage::ToHex(storage::ChainNext(*storage::DigestFromHex(r.prev_chain_sha256()), leaf)));
    head[r.shard()] = r.chain_sha256();
  }
}

// Writes `records` as an export at `path` whose manifest is rewritten to
// match them (TrailWriter), then given `original`'s checkpoints and, range
// by range, its proofs where a range has the same bounds, else the proof of
// the original range that starts there (a forger reuses what he has), then
// `edit` applied.
void WriteForgery(const std::string& path, const std::vector<predlog::v1::ExportedRecord>& records,
                  const predlog::v1::ExportManifest& original,
                  const std::function<void(predlog::v1::ExportManifest*)>& edit = nullptr) {
  {
    ASSERT_OK_AND_ASSIGN(auto writer,
                         services::TrailWriter::Create(path, services::ExportFormat::kJsonl));
    for (const auto& r : records) ASSERT_OK(writer->Add(r));
    ASSERT_OK(writer->Finish(original, path + ".manifest.json").status());
  }
  predlog::v1::ExportManifest manifest = ReadManifest(path + ".manifest.json");
  // The original's shards without records (they have no records to write)
  // are kept as they were.
  for (const auto& old_shard : original.shards()) {
    if (old_shard.records() > 0) continue;
    bool listed = false;
    for (const auto& shard : manifest.shards())
      listed = listed || shard.shard() == old_shard.shard();
    if (!listed) *manifest.add_shards() = old_shard;
  }
  for (auto& shard : *manifest.mutable_shards()) {
    for (const auto& old_shard : original.shards()) {
      if (old_shard.shard() != shard.shard()) continue;
      shard.set_checkpoint(old_shard.checkpoint());
      if (old_shard.has_edge_before()) *shard.mutable_edge_before() = old_shard.edge_before();
      if (old_shard.has_edge_after()) *shard.mutable_edge_after() = old_shard.edge_after();
      for (auto& range : *shard.mutable_ranges()) {
        for (const auto& old_range : old_shard.ranges()) {
          if (old_range.first_index() == range.first_index()) {
            *range.mutable_proof_sha256() = old_range.proof_sha256();
          }
        }
      }
    }
  }
  if (edit) edit(&manifest);
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(manifest, &json).ok());
  std::ofstream(path + ".manifest.json", std::ios::trunc) << json;
}

TEST_F(ExportVerifyCliTest, VerifyKeyProvesAnHonestExportAndEveryForgeryFailsWhateverItsManifest) {
  Start(2);
  LogPredictions(200);
  const std::string key = dir_.Sub("data/keys/checkpoint.key.pub");
  ASSERT_TRUE(std::filesystem::exists(key)) << "predlogd generates its signing key on first start";
  const std::string file = dir_.Sub("all.jsonl");
  auto [code, out] = RunCommand(Cli() + " export --all --format jsonl --out " + file);
  ASSERT_EQ(code, 0) << out;
  const predlog::v1::ExportManifest manifest = ReadManifest(file + ".manifest.json");
  ASSERT_EQ(manifest.format_version(), 4u);
  // The registry shard holds no record, but its checkpoint is listed: an
  // export of everything proves it had none.
  ASSERT_EQ(manifest.shards_size(), 3);
  EXPECT_EQ(manifest.shards(2).shard(), "predlog.registry-0");
  EXPECT_EQ(manifest.shards(2).records(), 0u);
  EXPECT_FALSE(manifest.shards(2).checkpoint().empty());
  const auto verify_key = [&](const std::string& f, const std::string& k) {
    return RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify --key " + k + " " + f + " " + f +
                      ".manifest.json");
  };

  auto [honest_code, honest] = verify_key(file, key);
  EXPECT_EQ(honest_code, 0) << honest;
  EXPECT_THAT(honest, HasSubstr("OK: 200 records verified"));
  EXPECT_THAT(honest, HasSubstr("PROVEN: every record is in the log its shard's checkpoint signs"));
  EXPECT_THAT(honest, HasSubstr("and so would dropped or truncated records and a shard left out"));
  EXPECT_THAT(honest, HasSubstr("predlog.events-0: checkpoint of "));
  // The key itself works as well as its file.
  std::string key_text;
  std::getline(std::ifstream(key), key_text);
  EXPECT_EQ(verify_key(file, key_text).first, 0);

  const std::vector<predlog::v1::ExportedRecord> records = ReadRecords(file);
  // A sparse export: its ranges have proofs of a few hashes each (a range
  // of a whole tree needs none).
  const std::string sparse = dir_.Sub("customer-7.jsonl");
  auto [sparse_code, sparse_out] =
      RunCommand(Cli() + " export --subject customer-7 --format jsonl --out " + sparse);
  ASSERT_EQ(sparse_code, 0) << sparse_out;
  auto [sparse_verify_code, sparse_verify] = verify_key(sparse, key);
  EXPECT_EQ(sparse_verify_code, 0) << sparse_verify;
  EXPECT_THAT(sparse_verify, HasSubstr("PROVEN: "));
  EXPECT_THAT(sparse_verify, HasSubstr("That no record was left out is not proven for a subject"));
  const predlog::v1::ExportManifest sparse_manifest = ReadManifest(sparse + ".manifest.json");
  ASSERT_GT(sparse_manifest.shards(0).ranges(0).proof_sha256_size(), 1);
  const std::vector<predlog::v1::ExportedRecord> sparse_records = ReadRecords(sparse);

  const auto expect_forgery_fails =
      [&](const std::string& name, std::vector<predlog::v1::ExportedRecord> forged,
          const std::string& why,
          const std::function<void(predlog::v1::ExportManifest*)>& edit = nullptr) {
        SCOPED_TRACE(name);
        const std::string path = dir_.Sub(name + ".jsonl");
        const bool is_sparse = forged.size() == sparse_records.size() &&
                               forged[0].index() == sparse_records[0].index();
        WriteForgery(path, forged, is_sparse ? sparse_manifest : manifest, edit);
        auto [forged_code, forged_out] = verify_key(path, key);
        EXPECT_EQ(forged_code, 1) << forged_out;
        EXPECT_THAT(forged_out, HasSubstr("FAILED: "));
        EXPECT_THAT(forged_out, HasSubstr(why));
        EXPECT_THAT(forged_out, Not(HasSubstr("PROVEN")));
      };
  // Unchanged records, the manifest rewritten the same way: proven (the
  // forgery harness itself is sound).
  {
    const std::string path = dir_.Sub("rewritten.jsonl");
    WriteForgery(path, records, manifest);
    auto [same_code, same] = verify_key(path, key);
    EXPECT_EQ(same_code, 0) << same;
  }
  // One record re-encoded (its decision changed), leaves and chain recomputed.
  {
    std::vector<predlog::v1::ExportedRecord> forged = records;
    predlog::v1::AuditEvent event;
    ASSERT_TRUE(event.ParseFromString(forged[10].event_bytes()));
    event.mutable_prediction_logged()->mutable_output()->set_label("deny");
    forged[10].set_event_bytes(event.SerializeAsString());
    Rechain(&forged);
    expect_forgery_fails("reencoded", forged, "is not what the shard's signed checkpoint holds");
  }
  // Only its append time changed: the tree covers it too.
  {
    std::vector<predlog::v1::ExportedRecord> forged = records;
    size_t last0 = 0;
    for (size_t i = 0; i < forged.size(); ++i) {
      if (forged[i].shard() == "predlog.events-0") last0 = i;
    }
    forged[last0].mutable_appended_at()->set_seconds(forged[last0].appended_at().seconds() + 1);
    expect_forgery_fails("retimed", forged, "is not what the shard's signed checkpoint holds");
  }
  // A forged record appended to shard 0, the manifest's range extended.
  {
    std::vector<predlog::v1::ExportedRecord> forged;
    size_t last0 = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      if (records[i].shard() == "predlog.events-0") last0 = i;
    }
    for (size_t i = 0; i < records.size(); ++i) {
      forged.push_back(records[i]);
      if (i == last0) {
        predlog::v1::ExportedRecord extra = records[i];
        extra.set_index(records[i].index() + 1);
        forged.push_back(extra);
      }
    }
    Rechain(&forged);
    expect_forgery_fails("appended", forged, "is beyond the shard's checkpoint");
  }
  // The last five records of shard 0 dropped (truncated), or its first one.
  {
    std::vector<predlog::v1::ExportedRecord> forged;
    size_t count0 = 0;
    for (const auto& r : records) count0 += r.shard() == "predlog.events-0";
    size_t seen = 0;
    for (const auto& r : records) {
      if (r.shard() == "predlog.events-0" && ++seen > count0 - 5) continue;
      forged.push_back(r);
    }
    expect_forgery_fails("truncated", forged, "but its checkpoint holds");
    std::vector<predlog::v1::ExportedRecord> headless;
    for (const auto& r : records) {
      if (!(r.shard() == "predlog.events-0" && r.index() == 0)) headless.push_back(r);
    }
    expect_forgery_fails("headless", headless, "starts at index 1");
  }
  // What a dishonest server could send in the manifest's proofs and checkpoints.
  const auto proof_of = [](predlog::v1::ExportManifest* m) {
    return m->mutable_shards(0)->mutable_ranges(0)->mutable_proof_sha256();
  };
  expect_forgery_fails("bitflip", sparse_records, "is not what the shard's signed checkpoint holds",
                       [&](predlog::v1::ExportManifest* m) {
                         std::string& hash = *proof_of(m)->Mutable(0);
                         hash[5] = hash[5] == '0' ? '1' : '0';
                       });
  expect_forgery_fails("shortproof", sparse_records, "hashes; leaves [",
                       [&](predlog::v1::ExportManifest* m) { proof_of(m)->RemoveLast(); });
  expect_forgery_fails("emptyproof", sparse_records, "has no proof",
                       [&](predlog::v1::ExportManifest* m) { proof_of(m)->Clear(); });
  expect_forgery_fails(
      "longproof", records, "hashes; leaves [",
      [&](predlog::v1::ExportManifest* m) { proof_of(m)->Add(std::string(64, 'a')); });
  expect_forgery_fails("garbagefirst", sparse_records, "hashes; leaves [",
                       [&](predlog::v1::ExportManifest* m) {
                         proof_of(m)->Add(std::string(64, 'b'));
                         for (int i = proof_of(m)->size() - 1; i > 0; --i) {
                           proof_of(m)->SwapElements(i, i - 1);
                         }
                       });
  expect_forgery_fails("nothex", sparse_records, "is not hex",
                       [&](predlog::v1::ExportManifest* m) { *proof_of(m)->Mutable(0) = "zz"; });
  expect_forgery_fails("swappedcheckpoint", records, "is of log",
                       [&](predlog::v1::ExportManifest* m) {
                         std::string first = m->shards(0).checkpoint();
                         m->mutable_shards(0)->set_checkpoint(m->shards(1).checkpoint());
                         m->mutable_shards(1)->set_checkpoint(first);
                       });
  expect_forgery_fails(
      "nocheckpoint", records, "carries no checkpoint",
      [&](predlog::v1::ExportManifest* m) { m->mutable_shards(1)->clear_checkpoint(); });
  // A checkpoint signed by another key, over the same text.
  ASSERT_OK_AND_ASSIGN(storage::NoteKeyPair other, storage::GenerateNoteKey("attacker"));
  ASSERT_OK_AND_ASSIGN(auto other_signer, storage::NoteSigner::Create(other.signer_key));
  ASSERT_OK_AND_ASSIGN(std::string text,
                       storage::UnverifiedNoteText(manifest.shards(0).checkpoint()));
  ASSERT_OK_AND_ASSIGN(std::string resigned, other_signer->Sign(text));
  expect_forgery_fails(
      "otherkey", records, "the note has no signature by predlog-",
      [&](predlog::v1::ExportManifest* m) { m->mutable_shards(0)->set_checkpoint(resigned); });
  // A manifest whose shards were all removed proves nothing.
  {
    const std::string path = dir_.Sub("noshards.jsonl");
    WriteForgery(path, {}, manifest, [](predlog::v1::ExportManifest* m) { m->clear_shards(); });
    auto [empty_code, empty] = verify_key(path, key);
    EXPECT_EQ(empty_code, 1) << empty;
    EXPECT_THAT(empty, HasSubstr("NOT PROVEN: the export carries no checkpoint"));
  }
  // Without --key, the same forgeries pass offline: what --key adds.
  auto [unkeyed_code, unkeyed] = Verify(dir_.Sub("reencoded.jsonl"));
  EXPECT_EQ(unkeyed_code, 0) << unkeyed;
}

std::string VerifyKey(const std::string& key, const std::string& file,
                      const std::string& flags = "") {
  return std::string(PREDLOG_CLI_BINARY) + " verify --key " + key + " " + flags + " " + file + " " +
         file + ".manifest.json";
}

// Writes `manifest` over `path`'s manifest.
void WriteManifest(const std::string& path, const predlog::v1::ExportManifest& manifest) {
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(manifest, &json).ok());
  std::ofstream(path + ".manifest.json", std::ios::trunc) << json;
}

TEST_F(ExportVerifyCliTest, VerifyKeyFailsAnExportOfEverythingWithAShardLeftOutWhole) {
  Start(2);
  LogPredictions(100);
  const std::string key = dir_.Sub("data/keys/checkpoint.key.pub");
  const std::string file = dir_.Sub("all.jsonl");
  ASSERT_EQ(RunCommand(Cli() + " export --all --format jsonl --out " + file).first, 0);
  const predlog::v1::ExportManifest manifest = ReadManifest(file + ".manifest.json");
  auto [honest_code, honest] = RunCommand(VerifyKey(key, file));
  EXPECT_EQ(honest_code, 0) << honest;
  EXPECT_THAT(honest, HasSubstr("and a shard left out"));

  // Shard 1's records taken out of the file, its entry out of the manifest,
  // everything else rewritten to match (the other checkpoints and proofs
  // are the real ones).
  std::vector<predlog::v1::ExportedRecord> records;
  for (const auto& r : ReadRecords(file)) {
    if (r.shard() != "predlog.events-1") records.push_back(r);
  }
  const std::string forged = dir_.Sub("without-1.jsonl");
  WriteForgery(forged, records, manifest, [](predlog::v1::ExportManifest* m) {
    auto* shards = m->mutable_shards();
    for (int i = 0; i < shards->size(); ++i) {
      if (shards->Get(i).shard() == "predlog.events-1") shards->DeleteSubrange(i, 1);
    }
  });
  ASSERT_EQ(ReadManifest(forged + ".manifest.json").shards_size(), 2);
  auto [forged_code, forged_out] = RunCommand(VerifyKey(key, forged));
  EXPECT_EQ(forged_code, 1) << forged_out;
  EXPECT_THAT(forged_out,
              HasSubstr("FAILED: manifest: shard predlog.events-1 is missing: the checkpoints name "
                        "the shards predlog.access/1 predlog.events/2 predlog.registry/1, and an "
                        "export of everything holds every shard of predlog.events and "
                        "predlog.registry"));
  // The same file and manifest as a subject export would be: not required.
  // And without the key the shard's absence is not noticed (what --key adds).
  auto [unkeyed_code, unkeyed] = Verify(forged);
  EXPECT_EQ(unkeyed_code, 0) << unkeyed;
}

// The checkpoint notes of `manifest` re-signed with predlogd's own key
// (`signer_key_file`) after `edit` changed their extension lines: what a
// predlogd from before those lines existed signed.
void ResignCheckpoints(predlog::v1::ExportManifest* manifest, const std::string& signer_key_file,
                       const std::function<void(std::vector<std::string>*)>& edit) {
  std::string signer_key;
  std::getline(std::ifstream(signer_key_file), signer_key);
  ASSERT_OK_AND_ASSIGN(auto signer, storage::NoteSigner::Create(signer_key));
  for (auto& shard : *manifest->mutable_shards()) {
    ASSERT_OK_AND_ASSIGN(std::string text, storage::UnverifiedNoteText(shard.checkpoint()));
    ASSERT_OK_AND_ASSIGN(storage::Checkpoint checkpoint, storage::ParseCheckpoint(text));
    edit(&checkpoint.extensions);
    ASSERT_OK_AND_ASSIGN(std::string note, signer->Sign(checkpoint.Text()));
    shard.set_checkpoint(note);
  }
}

TEST_F(ExportVerifyCliTest, VerifyNotOlderThanFailsAnOldCheckpointOrOneWithoutATime) {
  Start(1);
  LogPredictions(50);
  const std::string key = dir_.Sub("data/keys/checkpoint.key.pub");
  const std::string file = dir_.Sub("all.jsonl");
  ASSERT_EQ(RunCommand(Cli() + " export --all --format jsonl --out " + file).first, 0);
  auto [fresh_code, fresh] = RunCommand(VerifyKey(key, file, "--not-older-than 10m"));
  EXPECT_EQ(fresh_code, 0) << fresh;
  EXPECT_THAT(fresh, HasSubstr("Every checkpoint was signed within the last 10m."));
  // Each checkpoint's signing time is printed.
  const std::string year = absl::FormatTime("%Y-", absl::Now(), absl::UTCTimeZone());
  EXPECT_THAT(fresh, HasSubstr(", signed " + year));

  absl::SleepFor(absl::Seconds(2));
  auto [old_code, old_out] = RunCommand(VerifyKey(key, file, "--not-older-than 1s"));
  EXPECT_EQ(old_code, 1) << old_out;
  EXPECT_THAT(old_out, HasSubstr("FAILED: manifest: the checkpoint of shard predlog.events-0 was "
                                 "signed at " +
                                 year));
  EXPECT_THAT(old_out, HasSubstr("older than the 1s allowed"));
  EXPECT_THAT(RunCommand(VerifyKey(key, file, "--not-older-than soon")).first, 2);
  auto [unkeyed_code, unkeyed] =
      RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify --not-older-than 10m " + file + " " +
                 file + ".manifest.json");
  EXPECT_EQ(unkeyed_code, 2) << unkeyed;
  EXPECT_THAT(unkeyed, HasSubstr("--not-older-than needs --key"));

  // Checkpoints as a predlogd from before their extension lines signed them:
  // still proven, the set of shards not, and no age.
  predlog::v1::ExportManifest manifest = ReadManifest(file + ".manifest.json");
  ResignCheckpoints(&manifest, dir_.Sub("data/keys/checkpoint.key"),
                    [](std::vector<std::string>* lines) { lines->clear(); });
  WriteManifest(file, manifest);
  auto [old_format_code, old_format] = RunCommand(VerifyKey(key, file));
  EXPECT_EQ(old_format_code, 0) << old_format;
  EXPECT_THAT(old_format, HasSubstr("PROVEN: every record is in the log"));
  EXPECT_THAT(old_format, HasSubstr("signing time unknown"));
  EXPECT_THAT(old_format, HasSubstr("That no record was left out is NOT PROVEN:\n  the checkpoints "
                                    "do not name the set of shards"));
  auto [timeless_code, timeless] = RunCommand(VerifyKey(key, file, "--not-older-than 24h"));
  EXPECT_EQ(timeless_code, 1) << timeless;
  EXPECT_THAT(timeless, HasSubstr("FAILED: manifest: the checkpoint of shard predlog.events-0 "
                                  "carries no signing time"));
  // Checkpoints that disagree on the set of shards.
  manifest = ReadManifest(file + ".manifest.json");
  ResignCheckpoints(&manifest, dir_.Sub("data/keys/checkpoint.key"),
                    [n = 0](std::vector<std::string>* lines) mutable {
                      lines->push_back(++n == 1 ? "predlog-shards predlog.events/1 "
                                                  "predlog.registry/1"
                                                : "predlog-shards predlog.events/2 "
                                                  "predlog.registry/1");
                    });
  WriteManifest(file, manifest);
  auto [disagree_code, disagree] = RunCommand(VerifyKey(key, file));
  EXPECT_EQ(disagree_code, 1) << disagree;
  EXPECT_THAT(disagree, HasSubstr("FAILED: manifest: the checkpoints disagree on the set of "
                                  "shards: predlog.events-0's names predlog.events/1 "
                                  "predlog.registry/1, predlog.registry-0's names "
                                  "predlog.events/2"));
  // One shard's checkpoint signed well before the others' (its entry taken
  // from an older export): the signatures hold, completeness is not proven.
  const std::string again = dir_.Sub("again.jsonl");
  ASSERT_EQ(RunCommand(Cli() + " export --all --format jsonl --out " + again).first, 0);
  manifest = ReadManifest(again + ".manifest.json");
  ResignCheckpoints(&manifest, dir_.Sub("data/keys/checkpoint.key"),
                    [n = 0](std::vector<std::string>* lines) mutable {
                      ASSERT_THAT(*lines, ::testing::SizeIs(2));  // signed-at, shards
                      if (++n == 1) {
                        (*lines)[0] = storage::SignedAtLine(absl::Now() - absl::Minutes(5));
                      }
                    });
  WriteManifest(again, manifest);
  auto [apart_code, apart] = RunCommand(VerifyKey(key, again));
  EXPECT_EQ(apart_code, 0) << apart;
  EXPECT_THAT(apart, HasSubstr("PROVEN: every record is in the log"));
  EXPECT_THAT(apart, HasSubstr("That no record was left out is NOT PROVEN:\n  the checkpoints "
                               "were signed "));
  EXPECT_THAT(apart, HasSubstr(" apart (predlog.events-0's at "));
  EXPECT_THAT(apart, HasSubstr("a shard's entry may come from another export"));
}

TEST_F(ExportVerifyCliTest, VerifyKeyProvesTheEdgesOfATimeBoundedExportOfEverything) {
  Start(2);
  const auto now = [] {
    absl::SleepFor(absl::Milliseconds(20));  // records on either side are apart from it
    const absl::Time t = absl::Now();
    absl::SleepFor(absl::Milliseconds(20));
    return t;
  };
  LogPredictions(100);
  const absl::Time from = now();
  // In [from, to): predictions of customer-0 only, so one events shard has
  // no record in the range.
  {
    auto log = predlog::v1::PredictionLog::NewStub(
        grpc::CreateChannel(server_->grpc(), grpc::InsecureChannelCredentials()));
    predlog::v1::LogBatchRequest request;
    for (int i = 0; i < 20; ++i) {
      testing::PredictionSpec spec;
      spec.prediction_id = absl::StrCat("middle-", i);
      spec.subject_id = "customer-0";
      *request.add_requests()->mutable_prediction() =
          testing::MakePrediction(spec).prediction_logged();
    }
    predlog::v1::LogBatchResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(log->LogBatch(&context, request, &response).ok());
  }
  const absl::Time to = now();
  LogPredictions(100, 1000);
  const std::string key = dir_.Sub("data/keys/checkpoint.key.pub");
  const std::string file = dir_.Sub("range.jsonl");
  const auto rfc3339 = [](absl::Time t) {
    return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
  };
  auto [code, out] = RunCommand(Cli() + " export --all --from " + rfc3339(from) + " --to " +
                                rfc3339(to) + " --format jsonl --out " + file);
  ASSERT_EQ(code, 0) << out;
  const predlog::v1::ExportManifest manifest = ReadManifest(file + ".manifest.json");
  ASSERT_EQ(manifest.record_count(), 20u);
  ASSERT_EQ(manifest.shards_size(), 3);
  // The shard with records, and the one without (its edges adjacent).
  int full = -1, empty = -1;
  for (int i = 0; i < 2; ++i) (manifest.shards(i).records() > 0 ? full : empty) = i;
  ASSERT_GE(full, 0);
  ASSERT_GE(empty, 0);
  const auto& empty_shard = manifest.shards(empty);
  ASSERT_TRUE(empty_shard.has_edge_before() && empty_shard.has_edge_after());
  EXPECT_EQ(empty_shard.edge_after().index(), empty_shard.edge_before().index() + 1);
  const auto& full_shard = manifest.shards(full);
  const std::string full_name = full_shard.shard();
  ASSERT_EQ(full_shard.ranges_size(), 1);
  const uint64_t first = full_shard.ranges(0).first_index();
  const uint64_t last = full_shard.ranges(0).last_index();
  ASSERT_EQ(full_shard.edge_before().index(), first - 1);
  ASSERT_EQ(full_shard.edge_after().index(), last + 1);

  auto [honest_code, honest] = RunCommand(VerifyKey(key, file));
  EXPECT_EQ(honest_code, 0) << honest;
  EXPECT_THAT(honest, HasSubstr("OK: 20 records verified"));
  EXPECT_THAT(honest, HasSubstr("and so would dropped or truncated records and a shard left out"));
  // Completeness is of the manifest's range, which it names (the filter is
  // not signed: a forger may narrow it and shorten the runs to match).
  EXPECT_THAT(
      honest,
      HasSubstr("appended in [" +
                absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", from, absl::UTCTimeZone()) + ", "));
  EXPECT_THAT(honest, HasSubstr(") (the manifest's filter, which is not signed"));

  // A forger with the shard's whole tree: predlogd stopped, its shards read.
  ASSERT_EQ(server_->Stop(), 0);
  storage::ShardOptions options;
  options.dir = dir_.Sub("data/shards/" + full_name);
  options.name = full_name;
  options.read_only = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<storage::ShardStore> shard,
                       storage::ShardStore::Open(options));
  ASSERT_OK_AND_ASSIGN(std::string text, storage::UnverifiedNoteText(full_shard.checkpoint()));
  ASSERT_OK_AND_ASSIGN(storage::Checkpoint checkpoint, storage::ParseCheckpoint(text));
  const auto hexes = [](const std::vector<storage::Digest>& digests) {
    google::protobuf::RepeatedPtrField<std::string> out;
    for (const storage::Digest& d : digests) *out.Add() = storage::ToHex(d);
    return out;
  };
  // The edge a forger would give: the record at `index`, with its true leaf
  // data and inclusion proof.
  const auto true_edge = [&](uint64_t index) {
    predlog::v1::EdgeRecord edge;
    absl::StatusOr<storage::StoredRecord> record = shard->Get(index);
    EXPECT_TRUE(record.ok()) << record.status();
    absl::StatusOr<std::vector<storage::Digest>> proof =
        shard->InclusionProof(index, checkpoint.size);
    EXPECT_TRUE(proof.ok()) << proof.status();
    edge.set_index(index);
    storage::TimeToProto(*record->appended_at, edge.mutable_appended_at());
    edge.set_leaf_sha256(storage::ToHex(record->leaf));
    *edge.mutable_proof_sha256() = hexes(*proof);
    return edge;
  };
  const std::vector<predlog::v1::ExportedRecord> records = ReadRecords(file);
  const auto expect_fails =
      [&](const std::string& name, const std::vector<predlog::v1::ExportedRecord>& forged_records,
          const std::string& why, const std::function<void(predlog::v1::ExportManifest*)>& edit) {
        SCOPED_TRACE(name);
        const std::string path = dir_.Sub(name + ".jsonl");
        WriteForgery(path, forged_records, manifest, edit);
        auto [forged_code, forged_out] = RunCommand(VerifyKey(key, path));
        EXPECT_EQ(forged_code, 1) << forged_out;
        EXPECT_THAT(forged_out, HasSubstr("FAILED: manifest: "));
        EXPECT_THAT(forged_out, HasSubstr(why));
      };
  const auto full_of = [&](predlog::v1::ExportManifest* m) {
    for (auto& s : *m->mutable_shards()) {
      if (s.shard() == full_name) return &s;
    }
    ADD_FAILURE() << "no " << full_name;
    return m->mutable_shards(0);
  };
  // The first record of the run dropped: the range's proof recomputed for
  // what is left, and the dropped record as the edge before it.
  {
    std::vector<predlog::v1::ExportedRecord> forged;
    for (const auto& r : records) {
      if (!(r.shard() == full_name && r.index() == first)) forged.push_back(r);
    }
    ASSERT_OK_AND_ASSIGN(std::vector<storage::Digest> proof,
                         shard->RangeProof(first + 1, last + 1, checkpoint.size));
    expect_fails("headless", forged,
                 absl::StrCat(full_name, "#", first, ", the record before the run of ", full_name,
                              " the export holds, was appended at "),
                 [&](predlog::v1::ExportManifest* m) {
                   *full_of(m)->mutable_ranges(0)->mutable_proof_sha256() = hexes(proof);
                   *full_of(m)->mutable_edge_before() = true_edge(first);
                 });
    // Left as it was, the edge is not the record right before the run.
    expect_fails("headless-oldedge", forged,
                 absl::StrCat("the edge record before the run of ", full_name, " is #", first - 1,
                              ", not #", first),
                 [&](predlog::v1::ExportManifest* m) {
                   *full_of(m)->mutable_ranges(0)->mutable_proof_sha256() = hexes(proof);
                 });
    // Or left out.
    expect_fails("headless-noedge", forged, "but the manifest has no edge record before it",
                 [&](predlog::v1::ExportManifest* m) {
                   *full_of(m)->mutable_ranges(0)->mutable_proof_sha256() = hexes(proof);
                   full_of(m)->clear_edge_before();
                 });
  }
  // The last record dropped, likewise.
  {
    std::vector<predlog::v1::ExportedRecord> forged;
    for (const auto& r : records) {
      if (!(r.shard() == full_name && r.index() == last)) forged.push_back(r);
    }
    ASSERT_OK_AND_ASSIGN(std::vector<storage::Digest> proof,
                         shard->RangeProof(first, last, checkpoint.size));
    expect_fails("tailless", forged,
                 absl::StrCat(full_name, "#", last, ", the record after the run of ", full_name,
                              " the export holds, was appended at "),
                 [&](predlog::v1::ExportManifest* m) {
                   *full_of(m)->mutable_ranges(0)->mutable_proof_sha256() = hexes(proof);
                   *full_of(m)->mutable_edge_after() = true_edge(last);
                 });
  }
  // The edge record's time moved out of the range: not the leaf the tree holds.
  expect_fails("retimed-edge", records,
               absl::StrCat("the edge record ", full_name, "#", first - 1,
                            " is not what the shard's signed checkpoint holds"),
               [&](predlog::v1::ExportManifest* m) {
                 auto* t = full_of(m)->mutable_edge_before()->mutable_appended_at();
                 t->set_seconds(t->seconds() - 3600);
               });
  // The shard without records in the range: its edges must stay adjacent.
  expect_fails("gap-in-empty", records, "are not adjacent: the records between them were left out",
               [&](predlog::v1::ExportManifest* m) {
                 m->mutable_shards(empty)->mutable_edge_before()->set_index(
                     empty_shard.edge_before().index() - 1);
               });
}

TEST_F(ExportVerifyCliTest, VerifyConsistencyPassesAGrowingLogAndFailsARewrittenOne) {
  Start(2);
  const std::string key = dir_.Sub("data/keys/checkpoint.key.pub");
  LogPredictions(100);
  const std::string old_file = dir_.Sub("old.json");
  auto [old_code, old_out] = RunCommand(Cli() + " checkpoint --out " + old_file);
  ASSERT_EQ(old_code, 0) << old_out;
  EXPECT_THAT(old_out, HasSubstr("# predlog.events-0\n"));
  EXPECT_THAT(old_out, HasSubstr("/predlog.events-0\n"));  // the origin line
  LogPredictions(100, 100);
  const std::string new_file = dir_.Sub("new.json");
  ASSERT_EQ(RunCommand(Cli() + " checkpoint --out " + new_file).first, 0);
  const auto consistency = [&](const std::string& server, const std::string& older,
                               const std::string& newer) {
    return RunCommand(std::string(PREDLOG_CLI_BINARY) + " --server=" + server +
                      " verify-consistency --key " + key + " " + older + " " + newer);
  };

  auto [ok_code, ok] = consistency(server_->grpc(), old_file, new_file);
  EXPECT_EQ(ok_code, 0) << ok;
  EXPECT_THAT(ok, HasSubstr("OK: predlog.events-0: "));
  EXPECT_THAT(ok, HasSubstr("OK: predlog.events-1: "));
  EXPECT_THAT(ok, HasSubstr("The newer checkpoints extend the older ones"));
  // An export's manifest carries checkpoints too.
  const std::string file = dir_.Sub("all.jsonl");
  ASSERT_EQ(RunCommand(Cli() + " export --all --out " + file).first, 0);
  auto [manifest_code, manifest_out] =
      consistency(server_->grpc(), old_file, file + ".manifest.json");
  EXPECT_EQ(manifest_code, 0) << manifest_out;
  // An export of everything does not hold the access trail: named, not failed.
  EXPECT_THAT(manifest_out,
              HasSubstr("NOT CHECKED: predlog.access-0: only in the older set (an export of "
                        "everything does not hold it"));
  EXPECT_THAT(manifest_out, HasSubstr("extend the older ones for the 3 shards both hold"));
  // The manifest's filter is not signed: claiming another one excuses
  // nothing (here: an export of the access trail, missing every other shard).
  {
    predlog::v1::ExportManifest forged = ReadManifest(file + ".manifest.json");
    forged.mutable_filter()->set_access_trail(true);
    WriteManifest(dir_.Sub("forged_filter.jsonl"), forged);
    auto [forged_code, forged_out] =
        consistency(server_->grpc(), old_file, dir_.Sub("forged_filter.jsonl.manifest.json"));
    EXPECT_EQ(forged_code, 1) << forged_out;
    EXPECT_THAT(forged_out, HasSubstr("FAILED: predlog.access-0: the older set has a checkpoint "
                                      "of it, the newer set none (left out?)"));
  }

  // The two swapped: a log never shrinks.
  auto [swapped_code, swapped] = consistency(server_->grpc(), new_file, old_file);
  EXPECT_EQ(swapped_code, 1) << swapped;
  EXPECT_THAT(swapped, HasSubstr("FAILED: predlog.events-0: the newer checkpoint holds "));
  EXPECT_THAT(swapped, HasSubstr("a log never shrinks"));

  // A server with the same key but another history (a rewritten log): its
  // checkpoints are signed by the key and still do not extend the old ones.
  testing::Predlogd other(
      PREDLOGD_BINARY,
      std::vector<std::string>{"--data_dir=" + dir_.Sub("other"), "--grpc_listen=127.0.0.1:0",
                               "--http_listen=", "--partitions=2",
                               "--checkpoint_key=" + dir_.Sub("data/keys/checkpoint.key")});
  ASSERT_FALSE(other.grpc().empty()) << other.startup_line();
  auto log = predlog::v1::PredictionLog::NewStub(
      grpc::CreateChannel(other.grpc(), grpc::InsecureChannelCredentials()));
  predlog::v1::LogBatchRequest request;
  for (int i = 0; i < 150; ++i) {
    testing::PredictionSpec spec;
    spec.prediction_id = absl::StrCat("rewritten-", i);
    spec.subject_id = absl::StrCat("customer-", i % 40);
    *request.add_requests()->mutable_prediction() =
        testing::MakePrediction(spec).prediction_logged();
  }
  predlog::v1::LogBatchResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(log->LogBatch(&context, request, &response).ok());
  const std::string rewritten = dir_.Sub("rewritten.json");
  ASSERT_EQ(RunCommand(std::string(PREDLOG_CLI_BINARY) + " --server=" + other.grpc() +
                       " checkpoint --out " + rewritten)
                .first,
            0);
  auto [rewritten_code, rewritten_out] = consistency(other.grpc(), old_file, rewritten);
  EXPECT_EQ(rewritten_code, 1) << rewritten_out;
  EXPECT_THAT(rewritten_out, HasSubstr("FAILED: predlog.events-0: the newer checkpoint does not "
                                       "extend the older ("));
  EXPECT_THAT(rewritten_out, HasSubstr("the log lost or rewrote records"));
  // Asked to prove the honest new checkpoints, that server cannot: the
  // sizes are beyond its log, or its proof does not verify.
  auto [beyond_code, beyond] = consistency(other.grpc(), old_file, new_file);
  EXPECT_EQ(beyond_code, 1) << beyond;
  EXPECT_THAT(beyond, HasSubstr("FAILED: predlog.events-"));
  EXPECT_THAT(beyond, Not(HasSubstr("The newer checkpoints extend")));
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
  // With the key: not proven complete, never a false FAILED or PROVEN-complete.
  auto [key_code, keyed] = RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify --key " +
                                      dir_.Sub("data/keys/checkpoint.key.pub") + " " + file + " " +
                                      file + ".manifest.json");
  EXPECT_EQ(key_code, 1) << keyed;
  EXPECT_THAT(keyed, HasSubstr("INCOMPLETE: "));
  EXPECT_THAT(keyed, Not(HasSubstr("FAILED")));
  EXPECT_THAT(keyed, Not(HasSubstr("and so would dropped or truncated")));
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
