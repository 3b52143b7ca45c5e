// Backups of one shard with RocksDB's BackupEngine (ShardStore::Backup,
// VerifyBackup, RestoreBackup): a restored shard has the same log, tree and
// checkpoints, opens cleanly with its acked mark at its restored head, a
// second backup copies only what is new, a backup taken while the writer
// folds holds every record folded before it began, and a damaged backup is
// refused naming the shard. Real RocksDB in temp dirs.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/acked_mark.h"
#include "storage/merkle.h"
#include "storage/shard_store.h"
#include "storage/signed_note.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::storage {
namespace {

namespace fs = std::filesystem;
using ::predlog::testing::IsOk;
using ::predlog::testing::IsOkAndHolds;
using ::predlog::testing::MakePredictionPayload;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;

constexpr char kName[] = "predlog.events-1";

class ShardBackupTest : public ::testing::Test {
 protected:
  ShardOptions Options(const std::string& dir) const {
    ShardOptions options;
    options.dir = dir;
    options.name = kName;
    options.sync_writes = true;
    return options;
  }

  absl::StatusOr<std::unique_ptr<ShardStore>> Open(const std::string& dir) {
    return ShardStore::Open(Options(dir));
  }

  // Folds predictions [first, first + n) as direct appends, `per_batch` a batch.
  static void Fold(ShardStore& shard, int first, int n, int per_batch = 10) {
    for (int i = first; i < first + n; i += per_batch) {
      std::vector<std::string> payloads;
      for (int j = i; j < std::min(first + n, i + per_batch); ++j) {
        PredictionSpec spec;
        spec.prediction_id = "p-" + std::to_string(j);
        spec.subject_id = "s-" + std::to_string(j % 7);
        spec.raw_request_bytes = 512;
        spec.random_content = true;
        payloads.push_back(MakePredictionPayload(spec));
      }
      std::vector<SourceMessage> messages;
      for (const std::string& p : payloads) {
        SourceMessage m;
        m.payload = p;
        m.direct = true;
        messages.push_back(m);
      }
      ASSERT_OK_AND_ASSIGN(BatchResult r, shard.ApplyBatch(messages));
      for (const MessageResult& m : r.messages) ASSERT_EQ(m.outcome, FoldOutcome::kApplied);
    }
  }

  // The shared SST files of a backup directory.
  static std::vector<fs::path> SharedSsts(const std::string& backup_dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(fs::path(backup_dir) / "shared_checksum")) {
      if (e.path().extension() == ".sst") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  TempDir dir_;
};

TEST_F(ShardBackupTest, RestoredShardHasTheSameLogTreeAndCheckpointsAndACleanMark) {
  ASSERT_OK_AND_ASSIGN(NoteKeyPair key, GenerateNoteKey("predlog.test"));
  ASSERT_OK_AND_ASSIGN(auto signer, NoteSigner::Create(key.signer_key));
  ASSERT_OK_AND_ASSIGN(auto shard, Open(dir_.Sub("shard")));
  Fold(*shard, 0, 50);
  ASSERT_OK_AND_ASSIGN(std::string checkpoint, shard->SignCheckpoint(*signer, "test/s-1"));
  ASSERT_OK(shard->CreateSnapshot().status());
  Fold(*shard, 50, 7);
  const ShardHead before = shard->Head();
  ASSERT_OK_AND_ASSIGN(Digest root, shard->TreeRoot(before.next_index));

  ASSERT_OK_AND_ASSIGN(ShardBackupInfo info, shard->Backup(dir_.Sub("backup")));
  EXPECT_EQ(info.backup_id, 1u);
  EXPECT_EQ(info.records, 57u);
  EXPECT_EQ(info.chain_head, before.chain_head);
  EXPECT_GT(info.total_files, 0u);
  EXPECT_EQ(info.new_files, info.total_files);  // the first backup copies everything
  EXPECT_EQ(info.new_bytes, info.total_bytes);
  // Records after the backup are not in it.
  Fold(*shard, 57, 5);

  ASSERT_OK(ShardStore::VerifyBackup(dir_.Sub("backup"), info.backup_id, kName));
  ASSERT_OK_AND_ASSIGN(
      ShardHead restored_head,
      ShardStore::RestoreBackup(dir_.Sub("backup"), info.backup_id, Options(dir_.Sub("restored"))));
  EXPECT_EQ(restored_head.next_index, 57u);
  EXPECT_EQ(restored_head.chain_head, before.chain_head);

  // The acked mark equals the restored head, synced: never ahead of the log.
  ASSERT_OK_AND_ASSIGN(std::optional<AckedMark::Value> mark,
                       AckedMark::Read(dir_.Sub("restored/acked")));
  ASSERT_TRUE(mark.has_value());
  EXPECT_EQ(mark->next_index, 57u);
  EXPECT_EQ(mark->chain_head, before.chain_head);
  EXPECT_TRUE(mark->synced);

  ASSERT_OK_AND_ASSIGN(auto restored, Open(dir_.Sub("restored")));
  EXPECT_FALSE(restored->lost().has_value());
  EXPECT_EQ(restored->Head().next_index, 57u);
  EXPECT_EQ(restored->Head().counters.applied, before.counters.applied);
  ASSERT_OK_AND_ASSIGN(VerifyReport report, restored->Verify());
  EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
  EXPECT_EQ(report.records_checked, 57u);
  EXPECT_THAT(restored->LatestCheckpoint(), IsOkAndHolds(checkpoint));
  EXPECT_THAT(restored->TreeRoot(57), IsOkAndHolds(root));
  for (uint64_t i : {0, 31, 56}) {
    ASSERT_OK_AND_ASSIGN(StoredRecord a, shard->Get(i));
    ASSERT_OK_AND_ASSIGN(StoredRecord b, restored->Get(i));
    EXPECT_EQ(a.payload, b.payload);
    EXPECT_EQ(a.chain, b.chain);
    EXPECT_EQ(a.appended_at, b.appended_at);
  }
  EXPECT_THAT(restored->GetByPredictionId("p-40"), IsOk());
  EXPECT_THAT(restored->GetByPredictionId("p-60"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("p-60")));
  // The snapshot's directory is not in the backup, and neither is its entry.
  ASSERT_OK_AND_ASSIGN(std::vector<SnapshotInfo> snapshots, restored->ListSnapshots());
  EXPECT_TRUE(snapshots.empty());
  ASSERT_OK(restored->CreateSnapshot().status());

  // It goes on from there: the next record continues the chain and the tree.
  Fold(*restored, 100, 3);
  EXPECT_EQ(restored->Head().next_index, 60u);
  ASSERT_OK_AND_ASSIGN(std::string text,
                       NoteVerifier::Create(key.verifier_key).value()->Open(checkpoint));
  ASSERT_OK_AND_ASSIGN(Checkpoint parsed, ParseCheckpoint(text));
  ASSERT_OK_AND_ASSIGN(Digest new_root, restored->TreeRoot(60));
  ASSERT_OK_AND_ASSIGN(std::vector<Digest> proof, restored->ConsistencyProof(parsed.size, 60));
  EXPECT_THAT(VerifyMerkleConsistency(parsed.size, 60, parsed.root, new_root, proof), IsOk());
}

TEST_F(ShardBackupTest, SecondBackupCopiesOnlyWhatIsNewAndEachRestoresItsOwnState) {
  ASSERT_OK_AND_ASSIGN(auto shard, Open(dir_.Sub("shard")));
  Fold(*shard, 0, 400);
  ASSERT_OK_AND_ASSIGN(ShardBackupInfo first, shard->Backup(dir_.Sub("backup")));
  const Digest first_chain = shard->Head().chain_head;
  const size_t first_ssts = SharedSsts(dir_.Sub("backup")).size();
  ASSERT_GT(first_ssts, 0u);
  Fold(*shard, 400, 5);
  ASSERT_OK_AND_ASSIGN(ShardBackupInfo second, shard->Backup(dir_.Sub("backup")));
  EXPECT_EQ(second.backup_id, first.backup_id + 1);
  EXPECT_EQ(second.records, 405u);
  // Every SST of the first backup is shared, not copied again: the second
  // copies the SSTs its flush wrote (5 records) and its private files.
  EXPECT_EQ(second.total_files - second.new_files, first_ssts);
  EXPECT_LT(second.new_bytes, first.new_bytes / 2)
      << "first copied " << first.new_bytes << " bytes, second " << second.new_bytes;
  EXPECT_GT(second.new_files, 0u);
  std::cout << "first backup: " << first.new_files << " files, " << first.new_bytes
            << " bytes; second: " << second.new_files << " of " << second.total_files
            << " files new, " << second.new_bytes << " of " << second.total_bytes << " bytes\n";

  ASSERT_OK_AND_ASSIGN(ShardHead one, ShardStore::RestoreBackup(dir_.Sub("backup"), first.backup_id,
                                                                Options(dir_.Sub("one"))));
  ASSERT_OK_AND_ASSIGN(
      ShardHead two,
      ShardStore::RestoreBackup(dir_.Sub("backup"), second.backup_id, Options(dir_.Sub("two"))));
  EXPECT_EQ(one.next_index, 400u);
  EXPECT_EQ(one.chain_head, first_chain);
  EXPECT_EQ(two.next_index, 405u);
  EXPECT_EQ(two.chain_head, shard->Head().chain_head);
}

TEST_F(ShardBackupTest, BackupWhileTheWriterFoldsHoldsEverythingFoldedBeforeItBegan) {
  ASSERT_OK_AND_ASSIGN(auto shard, Open(dir_.Sub("shard")));
  Fold(*shard, 0, 100);
  std::atomic<bool> stop{false};
  std::atomic<int> folded{100};
  // The shard's one writer keeps folding small batches during the backup.
  std::thread writer([&] {
    for (int i = 100; !stop.load(); i += 5) {
      Fold(*shard, i, 5, 5);
      folded.store(i + 5);
    }
  });
  // Let it run a little, then back up twice while it goes on.
  while (folded.load() < 200) std::this_thread::yield();
  std::vector<std::pair<ShardBackupInfo, ShardHead>> backups;
  for (int round = 0; round < 2; ++round) {
    const ShardHead at_call = shard->Head();  // everything acknowledged so far
    ASSERT_OK_AND_ASSIGN(ShardBackupInfo info, shard->Backup(dir_.Sub("backup")));
    EXPECT_GE(info.records, at_call.next_index);
    backups.push_back({info, at_call});
  }
  stop.store(true);
  writer.join();
  for (const auto& [info, at_call] : backups) {
    const std::string target = dir_.Sub(absl::StrCat("restored-", info.backup_id));
    ASSERT_OK_AND_ASSIGN(ShardHead head, ShardStore::RestoreBackup(
                                             dir_.Sub("backup"), info.backup_id, Options(target)));
    EXPECT_GE(head.next_index, at_call.next_index);
    ASSERT_OK_AND_ASSIGN(auto restored, Open(target));
    EXPECT_FALSE(restored->lost().has_value());
    ASSERT_OK_AND_ASSIGN(VerifyReport report, restored->Verify());
    EXPECT_FALSE(report.first_bad_index.has_value()) << report.problem;
    // A prefix of the live log: the same chain value at the restored head.
    ASSERT_OK_AND_ASSIGN(StoredRecord last, shard->Get(head.next_index - 1));
    EXPECT_EQ(last.chain, head.chain_head);
    // Whole batches only: a batch of 5 from index 100 on.
    EXPECT_EQ(head.next_index % 5, 0u);
  }
}

TEST_F(ShardBackupTest, FlippedByteInABackedUpSstIsDataLossNamingTheShard) {
  ASSERT_OK_AND_ASSIGN(auto shard, Open(dir_.Sub("shard")));
  Fold(*shard, 0, 100);
  ASSERT_OK_AND_ASSIGN(ShardBackupInfo info, shard->Backup(dir_.Sub("backup")));
  std::vector<fs::path> ssts = SharedSsts(dir_.Sub("backup"));
  ASSERT_FALSE(ssts.empty());
  // The largest: the events' data blocks.
  fs::path victim = ssts.front();
  for (const fs::path& p : ssts) {
    if (fs::file_size(p) > fs::file_size(victim)) victim = p;
  }
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(100);
    char c = 0;
    f.read(&c, 1);
    c ^= 0x20;
    f.seekp(100);
    f.write(&c, 1);
  }
  EXPECT_THAT(ShardStore::VerifyBackup(dir_.Sub("backup"), info.backup_id, kName),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr(absl::StrCat("shard ", kName, ": backup directory"))));
  EXPECT_THAT(
      ShardStore::RestoreBackup(dir_.Sub("backup"), info.backup_id, Options(dir_.Sub("restored"))),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr(absl::StrCat("shard ", kName))));
}

TEST_F(ShardBackupTest, RestoreRefusesANonEmptyDirAnotherShardsBackupAndAnUnknownId) {
  ASSERT_OK_AND_ASSIGN(auto shard, Open(dir_.Sub("shard")));
  Fold(*shard, 0, 10);
  ASSERT_OK_AND_ASSIGN(ShardBackupInfo info, shard->Backup(dir_.Sub("backup")));
  fs::create_directories(dir_.Sub("busy"));
  std::ofstream(dir_.Sub("busy/file")) << "x";
  EXPECT_THAT(
      ShardStore::RestoreBackup(dir_.Sub("backup"), info.backup_id, Options(dir_.Sub("busy"))),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr(dir_.Sub("busy") + ": it is not empty")));
  ShardOptions other = Options(dir_.Sub("other"));
  other.name = "predlog.events-2";
  EXPECT_THAT(ShardStore::RestoreBackup(dir_.Sub("backup"), info.backup_id, other),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is of shard predlog.events-1, not predlog.events-2")));
  EXPECT_THAT(ShardStore::RestoreBackup(dir_.Sub("backup"), 7, Options(dir_.Sub("seven"))),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("has no backup 7")));
  EXPECT_THAT(ShardStore::VerifyBackup(dir_.Sub("nowhere"), 1, kName),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("does not exist")));
}

TEST_F(ShardBackupTest, ShardThatLostAcknowledgedRecordsIsNotBackedUp) {
  {
    ASSERT_OK_AND_ASSIGN(auto shard, Open(dir_.Sub("shard")));
    Fold(*shard, 0, 40, 1);
  }
  // Cut the newest WAL in half, as a failing disk could leave it.
  fs::path newest;
  for (const auto& e : fs::directory_iterator(dir_.Sub("shard/db"))) {
    if (e.path().extension() == ".log" && e.path() > newest) newest = e.path();
  }
  ASSERT_FALSE(newest.empty());
  fs::resize_file(newest, fs::file_size(newest) / 2);
  ASSERT_OK_AND_ASSIGN(auto shard, Open(dir_.Sub("shard")));
  ASSERT_TRUE(shard->lost().has_value());
  // A restore would start its mark at the recovered head and hide the loss.
  EXPECT_THAT(shard->Backup(dir_.Sub("backup")),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr(absl::StrCat(kName, " lost acknowledged records"))));
}

}  // namespace
}  // namespace predlog::storage
