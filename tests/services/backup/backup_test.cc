// Backups of a running predlogd and their restore, as an operator meets them:
// the real Server in-process (embedded broker, RocksDB shards, gRPC on
// loopback) is backed up over predlog.v1.Admin/CreateBackup, the backup is
// restored into a new data dir (RestoreBackup, what predlogd --restore
// runs), and a server started on it answers status, reads, exports, state,
// reruns and checkpoints exactly as the original did. Also: incremental
// backups, a backup taken while predictions keep arriving, and the refusals.
#include "services/backup/backup.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/admin.grpc.pb.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/cli/credit_models.h"
#include "services/cli/registry_client.h"
#include "services/export/trail_export.h"
#include "services/server/server.h"
#include "storage/acked_mark.h"
#include "storage/merkle.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"
#include "storage/signed_note.h"
#include "storage/timestamps.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::predlog::v1;
using ::google::protobuf::util::MessageDifferencer;
using ::predlog::testing::IsOk;
using ::predlog::testing::MakeEntityChange;
using ::predlog::testing::ReadFile;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;

constexpr int kPartitions = 3;
constexpr int kFeatures = 10;

std::chrono::system_clock::time_point Deadline(int seconds = 60) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

std::vector<std::string> ShardNames() {
  std::vector<std::string> names;
  for (int p = 0; p < kPartitions; ++p) names.push_back(absl::StrCat("predlog.events-", p));
  names.push_back("predlog.registry-0");
  names.push_back("predlog.access-0");
  return names;
}

// One XGBoost credit model, trained once for the suite.
struct Model {
  demo::CreditData data;
  std::string artifact;
};
const Model& TrainedModel() {
  static const Model* model = [] {
    auto* m = new Model();
    m->data = demo::MakeCreditData(300, kFeatures, /*seed=*/3);
    demo::TrainOptions options;
    options.trees = 8;
    m->artifact = *demo::TrainXgboostModel(m->data, options);
    return m;
  }();
  return *model;
}

// What a client sees of a server: the things a restore must give back.
struct Observed {
  v1::StatusResponse status;
  std::map<std::string, v1::PredictionRecord> predictions;
  v1::ListPredictionsResponse trail;
  v1::ExportManifest manifest;
  std::string export_file;
  v1::EntityAtResponse entity;
  v1::ModelRecord model;
  v1::RerunReport rerun;
};

class BackupTest : public ::testing::Test {
 protected:
  void TearDown() override { Stop(); }

  void Start(const std::string& data_dir) {
    Stop();
    ServerOptions options;
    options.data_dir = data_dir;
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "";
    options.partitions = kPartitions;
    options.snapshot_every_events = 20;  // so the original has snapshots
    ASSERT_OK_AND_ASSIGN(server_, Server::Start(options));
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    auto channel = grpc::CreateCustomChannel(server_->grpc_address(),
                                             grpc::InsecureChannelCredentials(), args);
    log_ = v1::PredictionLog::NewStub(channel);
    registry_ = v1::Registry::NewStub(channel);
    replay_ = v1::Replay::NewStub(channel);
    audit_ = v1::Audit::NewStub(channel);
    admin_ = v1::Admin::NewStub(channel);
  }
  void Stop() { server_.reset(); }

  // Registers the trained model as credit@v1 and deploys it.
  void RegisterModel() {
    v1::RegisterModelRequest first;
    v1::ModelRegistered* metadata = first.mutable_metadata();
    metadata->mutable_model()->set_name("credit");
    metadata->mutable_model()->set_version("v1");
    metadata->set_framework("xgboost");
    for (const auto& f : TrainedModel().data.feature_names) {
      metadata->mutable_provenance()->add_feature_names(f);
    }
    v1::RegisterModelResponse response;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    std::istringstream bytes(TrainedModel().artifact);
    grpc::Status status = UploadModel(registry_.get(), &context, first, bytes, &response, 16 << 10);
    ASSERT_TRUE(status.ok()) << status.error_message();
    v1::DeployModelRequest deploy;
    deploy.mutable_deployment()->set_route("credit-limit");
    deploy.mutable_deployment()->mutable_model()->set_name("credit");
    deploy.mutable_deployment()->mutable_model()->set_version("v1");
    deploy.mutable_deployment()->set_traffic_fraction(1.0);
    v1::RegistryReceipt receipt;
    grpc::ClientContext deploy_context;
    status = registry_->DeployModel(&deploy_context, deploy, &receipt);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // Scores row `row` of the model's data with a serving booster and logs it
  // as prediction `id` of customer-<row % 12>; returns the status of the Log.
  grpc::Status LogScored(demo::ServingBooster& booster, const std::string& id, int row) {
    const demo::CreditData& data = TrainedModel().data;
    const int r = row % data.rows;
    absl::Span<const float> x(&data.x[size_t(r) * kFeatures], kFeatures);
    v1::LogRequest request;
    v1::PredictionLogged* p = request.mutable_prediction();
    p->set_prediction_id(id);
    p->set_subject_id(absl::StrCat("customer-", row % 12));
    storage::TimeToProto(absl::Now(), p->mutable_served_at());
    p->mutable_model()->set_name("credit");
    p->mutable_model()->set_version("v1");
    for (int f = 0; f < kFeatures; ++f) {
      v1::Feature* input = p->add_inputs();
      input->set_name(data.feature_names[f]);
      if (!std::isnan(x[f])) input->set_float_value(x[f]);
    }
    absl::StatusOr<std::vector<float>> scores = booster.Predict(x);
    if (!scores.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, scores.status().ToString());
    for (float s : *scores) p->mutable_output()->add_float_scores(s);
    v1::LogReceipt receipt;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::Status status = log_->Log(&context, request, &receipt);
    if (status.ok() && receipt.outcome() != v1::LogReceipt::APPLIED) {
      return grpc::Status(grpc::StatusCode::INTERNAL, receipt.ShortDebugString());
    }
    return status;
  }
  void LogScoredOrDie(demo::ServingBooster& booster, int first, int n) {
    for (int i = first; i < first + n; ++i) {
      grpc::Status status = LogScored(booster, absl::StrCat("p-", i), i);
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
  }

  void ChangeCustomer(const std::string& id, double limit) {
    v1::ChangeEntityRequest request;
    *request.mutable_change() =
        MakeEntityChange("customer", id, {{"credit_limit", limit}, {"age", 41}}).entity_changed();
    v1::LogReceipt receipt;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::Status status = log_->ChangeEntity(&context, request, &receipt);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(receipt.outcome(), v1::LogReceipt::APPLIED);
  }

  grpc::Status Backup(const std::string& out_dir, v1::CreateBackupResponse* response) {
    v1::CreateBackupRequest request;
    request.set_out_dir(out_dir);
    grpc::ClientContext context;
    context.set_deadline(Deadline(120));
    return admin_->CreateBackup(&context, request, response);
  }
  v1::CreateBackupResponse BackupOrDie(const std::string& out_dir) {
    v1::CreateBackupResponse response;
    grpc::Status status = Backup(out_dir, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  grpc::Status GetPrediction(const std::string& id, v1::PredictionRecord* record) {
    v1::GetPredictionRequest request;
    request.set_prediction_id(id);
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    return log_->GetPrediction(&context, request, record);
  }

  v1::StatusResponse Status() {
    v1::StatusResponse response;
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    EXPECT_TRUE(audit_->GetStatus(&context, v1::GetStatusRequest(), &response).ok());
    return response;
  }

  Observed Observe(const std::vector<std::string>& ids, const std::string& export_path) {
    Observed o;
    o.status = Status();
    for (const std::string& id : ids) {
      grpc::Status status = GetPrediction(id, &o.predictions[id]);
      EXPECT_TRUE(status.ok()) << id << ": " << status.error_message();
    }
    {
      v1::ListPredictionsRequest request;
      request.set_subject_id("customer-5");
      grpc::ClientContext context;
      context.set_deadline(Deadline());
      EXPECT_TRUE(log_->ListPredictions(&context, request, &o.trail).ok());
    }
    {
      v1::ExportTrailRequest request;
      request.set_all(true);
      absl::StatusOr<std::unique_ptr<TrailWriter>> writer =
          TrailWriter::Create(export_path, ExportFormat::kJsonl);
      EXPECT_OK(writer.status());
      grpc::ClientContext context;
      context.set_deadline(Deadline());
      auto stream = audit_->ExportTrail(&context, request);
      v1::ExportBatch batch;
      while (stream->Read(&batch)) EXPECT_OK((*writer)->AddBatch(std::move(batch)));
      grpc::Status status = stream->Finish();
      EXPECT_TRUE(status.ok()) << status.error_message();
      v1::ExportManifest manifest;
      *manifest.mutable_filter() = request;
      absl::StatusOr<v1::ExportManifest> done =
          (*writer)->Finish(manifest, export_path + ".manifest.json");
      EXPECT_OK(done.status());
      if (done.ok()) o.manifest = *done;
      o.export_file = ReadFile(export_path);
    }
    {
      v1::GetEntityAtRequest request;
      request.set_entity_type("customer");
      request.set_entity_id("customer-5");
      grpc::ClientContext context;
      context.set_deadline(Deadline());
      EXPECT_TRUE(replay_->GetEntityAt(&context, request, &o.entity).ok());
    }
    {
      v1::GetModelRequest request;
      request.set_name("credit");
      request.set_version("v1");
      grpc::ClientContext context;
      context.set_deadline(Deadline());
      EXPECT_TRUE(registry_->GetModel(&context, request, &o.model).ok());
    }
    {
      v1::RerunRequest request;
      request.set_prediction_id("p-7");
      grpc::ClientContext context;
      context.set_deadline(Deadline());
      grpc::Status status = replay_->Rerun(&context, request, &o.rerun);
      EXPECT_TRUE(status.ok()) << status.error_message();
      o.rerun.clear_artifact_hashed_at();
    }
    return o;
  }

  static storage::ShardOptions ShardAt(const std::string& data_dir, const std::string& name,
                                       bool read_only) {
    storage::ShardOptions options;
    options.dir = absl::StrCat(data_dir, "/shards/", name);
    options.name = name;
    options.read_only = read_only;
    options.sync_writes = true;
    return options;
  }

  RestoreOptions Restore(const std::string& backup_dir, const std::string& data_dir) const {
    RestoreOptions options;
    options.backup_dir = backup_dir;
    options.data_dir = data_dir;
    options.partitions = kPartitions;
    return options;
  }

  // Flips a byte in the middle of the largest backed-up SST of `shard`.
  static void DamageLargestSst(const std::string& backup_dir, const std::string& shard) {
    fs::path victim;
    for (const auto& e :
         fs::directory_iterator(fs::path(backup_dir) / "shards" / shard / "shared_checksum")) {
      if (victim.empty() || fs::file_size(e.path()) > fs::file_size(victim)) victim = e.path();
    }
    ASSERT_FALSE(victim.empty());
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    const std::streamoff middle = static_cast<std::streamoff>(fs::file_size(victim) / 2);
    f.seekg(middle);
    char c = 0;
    f.read(&c, 1);
    c ^= 0x01;
    f.seekp(middle);
    f.write(&c, 1);
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::PredictionLog::Stub> log_;
  std::unique_ptr<v1::Registry::Stub> registry_;
  std::unique_ptr<v1::Replay::Stub> replay_;
  std::unique_ptr<v1::Audit::Stub> audit_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

TEST_F(BackupTest, RestoreGivesIdenticalStatusReadsExportsRerunsAndCheckpoints) {
  const std::string original = dir_.Sub("original");
  const std::string backups = dir_.Sub("backups");
  ASSERT_OK_AND_ASSIGN(auto booster, demo::ServingBooster::Load(TrainedModel().artifact));
  Start(original);
  RegisterModel();
  LogScoredOrDie(*booster, 0, 60);
  ChangeCustomer("customer-5", 9000);
  {
    // A read, so the access trail has a record to sign too.
    v1::PredictionRecord record;
    ASSERT_TRUE(GetPrediction("p-0", &record).ok());
  }

  // predlogd's signing keys as the checkpoint signer keeps them, and a
  // signed checkpoint on every shard (the server is stopped meanwhile: the
  // shards are signed where they lie).
  Stop();
  ASSERT_OK_AND_ASSIGN(storage::NoteKeyPair key, storage::GenerateNoteKey("predlog.test"));
  fs::create_directories(original + "/keys");
  std::ofstream(original + "/keys/checkpoint.key") << key.signer_key << "\n";
  std::ofstream(original + "/keys/checkpoint.key.pub", std::ios::trunc) << key.verifier_key << "\n";
  fs::permissions(original + "/keys/checkpoint.key",
                  fs::perms::owner_read | fs::perms::owner_write);
  ASSERT_OK_AND_ASSIGN(auto signer, storage::NoteSigner::Create(key.signer_key));
  std::map<std::string, std::string> signed_checkpoints;
  for (const std::string& name : ShardNames()) {
    ASSERT_OK_AND_ASSIGN(auto shard, storage::ShardStore::Open(ShardAt(original, name, false)));
    // With the shards line predlogd's own checkpoints carry.
    ASSERT_OK_AND_ASSIGN(signed_checkpoints[name],
                         shard->SignCheckpoint(*signer, "predlog.test/" + name,
                                               {absl::StrCat("predlog-shards predlog.access/1 "
                                                             "predlog.events/",
                                                             kPartitions, " predlog.registry/1")}));
  }
  // More records after the checkpoints, then the backup.
  Start(original);
  LogScoredOrDie(*booster, 60, 15);
  ChangeCustomer("customer-5", 8500);
  const v1::CreateBackupResponse backup = BackupOrDie(backups);
  EXPECT_EQ(backup.backup_id(), 1u);
  EXPECT_EQ(backup.partitions(), static_cast<uint32_t>(kPartitions));
  ASSERT_EQ(backup.shards_size(), static_cast<int>(ShardNames().size()));
  EXPECT_EQ(backup.artifacts_copied(), 1u);
  EXPECT_EQ(backup.artifacts_total(), 1u);
  EXPECT_EQ(backup.key_files(), 2u);
  std::vector<std::string> ids;
  for (int i = 0; i < 75; i += 4) ids.push_back(absl::StrCat("p-", i));
  const Observed before = Observe(ids, dir_.Sub("original.jsonl"));
  Stop();

  ASSERT_OK_AND_ASSIGN(RestoreReport report, RestoreBackup(Restore(backups, dir_.Sub("restored"))));
  EXPECT_EQ(report.entry.id, 1u);
  ASSERT_EQ(report.heads.size(), ShardNames().size());
  for (size_t i = 0; i < report.heads.size(); ++i) {
    const std::string name = ShardNames()[i];
    EXPECT_EQ(report.heads[i].next_index, backup.shards(int(i)).records()) << name;
    // The restored acked mark is the restored head, synced.
    ASSERT_OK_AND_ASSIGN(std::optional<storage::AckedMark::Value> mark,
                         storage::AckedMark::Read(dir_.Sub("restored/shards/" + name + "/acked")));
    ASSERT_TRUE(mark.has_value()) << name;
    EXPECT_EQ(mark->next_index, report.heads[i].next_index) << name;
    EXPECT_EQ(mark->chain_head, report.heads[i].chain_head) << name;
    EXPECT_TRUE(mark->synced) << name;
  }
  // The keys, with their modes.
  EXPECT_EQ(ReadFile(dir_.Sub("restored/keys/checkpoint.key")), key.signer_key + "\n");
  EXPECT_EQ(fs::status(dir_.Sub("restored/keys/checkpoint.key")).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(backups + "/keys/1/checkpoint.key").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(ReadFile(dir_.Sub("restored/keys/checkpoint.key.pub")), key.verifier_key + "\n");
  EXPECT_FALSE(fs::exists(dir_.Sub("restored/restoring")));

  Start(dir_.Sub("restored"));
  const Observed after = Observe(ids, dir_.Sub("restored.jsonl"));
  // Status: every shard's records, chain head and counters; the snapshots
  // are not in a backup (the original took some).
  ASSERT_EQ(after.status.shards_size(), before.status.shards_size());
  int snapshots = 0;
  uint64_t records = 0;
  for (int i = 0; i < before.status.shards_size(); ++i) {
    v1::ShardStatus a = before.status.shards(i), b = after.status.shards(i);
    snapshots += a.snapshots_size();
    // (An export of everything holds every shard's records but the access trail's.)
    if (a.shard() != "predlog.access-0") records += a.records();
    EXPECT_EQ(b.snapshots_size(), 0) << b.shard();
    a.clear_snapshots();
    b.clear_snapshots();
    // Lag is the live consumer's view (-1 until it has fetched), not the shard's.
    a.clear_consumer_lag();
    b.clear_consumer_lag();
    EXPECT_TRUE(MessageDifferencer::Equals(a, b)) << a.ShortDebugString() << "\nvs\n"
                                                  << b.ShortDebugString();
  }
  EXPECT_GT(snapshots, 0) << "the original took no snapshot to leave out";
  for (const std::string& id : ids) {
    EXPECT_TRUE(MessageDifferencer::Equals(before.predictions.at(id), after.predictions.at(id)))
        << id;
  }
  EXPECT_GT(before.trail.records_size(), 0);
  EXPECT_TRUE(MessageDifferencer::Equals(before.trail, after.trail));
  // The export of everything: the same file, byte for byte, and the same ranges.
  EXPECT_EQ(before.manifest.record_count(), records);
  EXPECT_EQ(before.manifest.record_count(), after.manifest.record_count());
  EXPECT_EQ(before.manifest.file_sha256(), after.manifest.file_sha256());
  EXPECT_TRUE(before.export_file == after.export_file);
  ASSERT_EQ(before.manifest.shards_size(), kPartitions + 1);
  ASSERT_EQ(before.manifest.shards_size(), after.manifest.shards_size());
  // Each export signs its checkpoints when it starts: the same trees, signed
  // at another time (the predlog-signed-at line) by the same key.
  const auto without_time = [](v1::ExportManifest::ShardRanges shard) {
    absl::StatusOr<std::string> text = storage::UnverifiedNoteText(shard.checkpoint());
    EXPECT_TRUE(text.ok()) << text.status();
    std::string kept;
    for (absl::string_view line : absl::StrSplit(text.value_or(""), '\n')) {
      if (!absl::StartsWith(line, storage::kSignedAtExtension)) absl::StrAppend(&kept, line, "\n");
    }
    shard.set_checkpoint(kept);
    return shard;
  };
  for (int i = 0; i < before.manifest.shards_size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(without_time(before.manifest.shards(i)),
                                           without_time(after.manifest.shards(i))));
  }
  ASSERT_OK_AND_ASSIGN(
      ExportVerification verified,
      VerifyExport(dir_.Sub("restored.jsonl"), dir_.Sub("restored.jsonl.manifest.json")));
  EXPECT_TRUE(verified.ok) << verified.failure;
  // State as of now, the registry, and a rerun against the restored artifact.
  EXPECT_TRUE(after.entity.exists());
  EXPECT_TRUE(MessageDifferencer::Equals(before.entity.state(), after.entity.state()));
  EXPECT_TRUE(MessageDifferencer::Equals(before.entity.cut(), after.entity.cut()));
  EXPECT_TRUE(MessageDifferencer::Equals(before.model, after.model));
  EXPECT_TRUE(after.rerun.exact_match());
  EXPECT_TRUE(after.rerun.artifact_verified());
  EXPECT_TRUE(MessageDifferencer::Equals(before.rerun, after.rerun));

  // It goes on logging where the original stopped, on every shard.
  LogScoredOrDie(*booster, 1000, 24);
  {
    v1::DeployModelRequest deploy;
    deploy.mutable_deployment()->set_route("credit-limit");
    deploy.mutable_deployment()->mutable_model()->set_name("credit");
    deploy.mutable_deployment()->mutable_model()->set_version("v1");
    deploy.mutable_deployment()->set_traffic_fraction(0.5);
    v1::RegistryReceipt receipt;
    grpc::ClientContext context;
    grpc::Status status = registry_->DeployModel(&context, deploy, &receipt);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  Stop();

  // Checkpoints: the same notes, the same roots at their sizes, and the
  // restored shards' trees extend the originals' (consistency proofs).
  ASSERT_OK_AND_ASSIGN(auto verifier, storage::NoteVerifier::Create(key.verifier_key));
  for (const std::string& name : ShardNames()) {
    ASSERT_OK_AND_ASSIGN(auto a, storage::ShardStore::Open(ShardAt(original, name, true)));
    ASSERT_OK_AND_ASSIGN(auto b,
                         storage::ShardStore::Open(ShardAt(dir_.Sub("restored"), name, true)));
    EXPECT_FALSE(b->lost().has_value()) << name;
    // The one signed here is kept by the restored shard, and so is a
    // checkpoint of the tree of the newest the original predlogd signed (its
    // exports sign one per shard): the restored predlogd's export signed that
    // tree again, at its own time.
    ASSERT_OK_AND_ASSIGN(std::string text, verifier->Open(signed_checkpoints[name]));
    ASSERT_OK_AND_ASSIGN(storage::Checkpoint checkpoint, storage::ParseCheckpoint(text));
    EXPECT_THAT(b->CheckpointAt(checkpoint.size),
                ::predlog::testing::IsOkAndHolds(signed_checkpoints[name]))
        << name;
    ASSERT_OK_AND_ASSIGN(std::string original_latest, a->LatestCheckpoint());
    ASSERT_OK_AND_ASSIGN(std::string latest_text, verifier->Open(original_latest));
    ASSERT_OK_AND_ASSIGN(storage::Checkpoint latest, storage::ParseCheckpoint(latest_text));
    ASSERT_OK_AND_ASSIGN(std::string restored_latest, b->CheckpointAt(latest.size));
    ASSERT_OK_AND_ASSIGN(std::string restored_text, verifier->Open(restored_latest));
    ASSERT_OK_AND_ASSIGN(storage::Checkpoint restored, storage::ParseCheckpoint(restored_text));
    EXPECT_EQ(restored.origin, latest.origin) << name;
    EXPECT_EQ(restored.root, latest.root) << name;
    ASSERT_EQ(restored.extensions.size(), latest.extensions.size()) << name;
    EXPECT_EQ(restored.extensions.back(), latest.extensions.back()) << name;  // the shards line
    ASSERT_GT(checkpoint.size, 0u) << name;
    EXPECT_THAT(a->TreeRoot(checkpoint.size), ::predlog::testing::IsOkAndHolds(checkpoint.root));
    EXPECT_THAT(b->TreeRoot(checkpoint.size), ::predlog::testing::IsOkAndHolds(checkpoint.root));
    const uint64_t size = b->Head().next_index;
    ASSERT_GT(size, checkpoint.size) << name;
    ASSERT_OK_AND_ASSIGN(storage::Digest root, b->TreeRoot(size));
    ASSERT_OK_AND_ASSIGN(std::vector<storage::Digest> proof,
                         b->ConsistencyProof(checkpoint.size, size));
    EXPECT_THAT(
        storage::VerifyMerkleConsistency(checkpoint.size, size, checkpoint.root, root, proof),
        IsOk())
        << name;
  }
}

TEST_F(BackupTest, SecondBackupCopiesLessAndEachBackupIdRestoresItsOwnState) {
  const std::string backups = dir_.Sub("backups");
  ASSERT_OK_AND_ASSIGN(auto booster, demo::ServingBooster::Load(TrainedModel().artifact));
  Start(dir_.Sub("original"));
  RegisterModel();
  LogScoredOrDie(*booster, 0, 150);
  const v1::CreateBackupResponse first = BackupOrDie(backups);
  // A few more predictions, all for one customer (so one shard).
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(LogScored(*booster, absl::StrCat("late-", i), 12 * (i + 1)).ok());
  }
  const v1::CreateBackupResponse second = BackupOrDie(backups);
  EXPECT_EQ(second.backup_id(), 2u);
  uint64_t first_bytes = 0, first_files = 0, second_bytes = 0, second_files = 0, second_total = 0;
  for (int i = 0; i < first.shards_size(); ++i) {
    EXPECT_EQ(first.shards(i).new_files(), first.shards(i).total_files());
    EXPECT_EQ(second.shards(i).engine_backup_id(), first.shards(i).engine_backup_id() + 1);
    first_bytes += first.shards(i).new_bytes();
    first_files += first.shards(i).new_files();
    second_bytes += second.shards(i).new_bytes();
    second_files += second.shards(i).new_files();
    second_total += second.shards(i).total_bytes();
  }
  EXPECT_LT(second_bytes, first_bytes);
  EXPECT_LT(second_files, first_files);
  EXPECT_LT(second_bytes, second_total);
  EXPECT_EQ(second.artifacts_copied(), 0u);  // already in the backup directory
  EXPECT_EQ(second.artifacts_total(), 1u);
  std::cout << "first backup copied " << first_files << " files, " << first_bytes << " bytes in "
            << first.duration().ShortDebugString() << "; second " << second_files << " files, "
            << second_bytes << " bytes of " << second_total << " in "
            << second.duration().ShortDebugString() << "\n";
  Stop();

  RestoreOptions one = Restore(backups, dir_.Sub("one"));
  one.backup_id = 1;
  ASSERT_OK(RestoreBackup(one).status());
  ASSERT_OK(RestoreBackup(Restore(backups, dir_.Sub("two"))).status());  // the latest
  for (const auto& [data_dir, backup] :
       {std::pair{dir_.Sub("one"), &first}, std::pair{dir_.Sub("two"), &second}}) {
    Start(data_dir);
    const v1::StatusResponse status = Status();
    ASSERT_EQ(status.shards_size(), backup->shards_size());
    for (int i = 0; i < status.shards_size(); ++i) {
      EXPECT_EQ(status.shards(i).records(), backup->shards(i).records()) << data_dir;
      EXPECT_EQ(status.shards(i).chain_head_sha256(), backup->shards(i).chain_head_sha256());
    }
    v1::PredictionRecord record;
    EXPECT_TRUE(GetPrediction("p-149", &record).ok());
    EXPECT_EQ(GetPrediction("late-2", &record).error_code(),
              backup == &first ? grpc::StatusCode::NOT_FOUND : grpc::StatusCode::OK)
        << data_dir;
  }
}

TEST_F(BackupTest, BackupWhileLoggingHoldsEveryPredictionAcknowledgedBeforeTheCall) {
  const std::string backups = dir_.Sub("backups");
  ASSERT_OK_AND_ASSIGN(auto booster, demo::ServingBooster::Load(TrainedModel().artifact));
  Start(dir_.Sub("original"));
  RegisterModel();
  std::mutex mu;
  std::vector<std::string> acked;  // guarded by mu
  std::atomic<bool> stop{false};
  std::thread logger([&] {
    auto own = *demo::ServingBooster::Load(TrainedModel().artifact);
    for (int i = 0; !stop.load(); ++i) {
      const std::string id = absl::StrCat("busy-", i);
      if (!LogScored(*own, id, i).ok()) break;
      std::lock_guard<std::mutex> lock(mu);
      acked.push_back(id);
    }
  });
  auto acked_count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return acked.size();
  };
  while (acked_count() < 100) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::vector<std::string> acked_before;
  {
    std::lock_guard<std::mutex> lock(mu);
    acked_before = acked;
  }
  const v1::CreateBackupResponse backup = BackupOrDie(backups);
  const size_t acked_after = acked_count();
  stop.store(true);
  logger.join();
  EXPECT_GT(acked_after, acked_before.size()) << "nothing was logged during the backup";
  Stop();

  ASSERT_OK(RestoreBackup(Restore(backups, dir_.Sub("restored"))).status());
  Start(dir_.Sub("restored"));
  for (const std::string& id : acked_before) {
    v1::PredictionRecord record;
    grpc::Status status = GetPrediction(id, &record);
    ASSERT_TRUE(status.ok()) << id << " was acknowledged before the backup began: "
                             << status.error_message();
  }
  // Whatever else it holds is whole: each shard verifies, and its mark
  // matched its log (it serves).
  const v1::StatusResponse status = Status();
  for (const v1::ShardStatus& s : status.shards()) EXPECT_TRUE(s.lost_records().empty());
}

TEST_F(BackupTest, CreateBackupRefusesARelativeEmptyOrInsideDataDirOutDir) {
  Start(dir_.Sub("data"));
  v1::CreateBackupResponse response;
  grpc::Status status = Backup("backups/here", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("out_dir \"backups/here\" is not an absolute path"));
  status = Backup("", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("out_dir is required"));
  status = Backup(dir_.Sub("data/backups"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("is inside the data dir"));
  EXPECT_FALSE(fs::exists(dir_.Sub("data/backups")));
}

TEST_F(BackupTest, RestoreRefusesAUsedDataDirOtherPartitionsADamagedBackupAndBadPaths) {
  const std::string backups = dir_.Sub("backups");
  ASSERT_OK_AND_ASSIGN(auto booster, demo::ServingBooster::Load(TrainedModel().artifact));
  Start(dir_.Sub("original"));
  RegisterModel();
  LogScoredOrDie(*booster, 0, 40);
  fs::create_directories(dir_.Sub("original/keys"));
  std::ofstream(dir_.Sub("original/keys/checkpoint.key")) << "PRIVATE+KEY+one\n";
  BackupOrDie(backups);
  Stop();

  // A data dir that already holds shards (the original's).
  EXPECT_THAT(RestoreBackup(Restore(backups, dir_.Sub("original"))),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("--data_dir ", dir_.Sub("original"),
                                              " already holds shards (", dir_.Sub("original"),
                                              "/shards)"))));
  // Another partition count.
  RestoreOptions other = Restore(backups, dir_.Sub("other"));
  other.partitions = 4;
  EXPECT_THAT(RestoreBackup(other), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("--partitions 4 differs from backup 1")));
  // A key of another deployment where the backup's would go.
  fs::create_directories(dir_.Sub("keyed/keys"));
  std::ofstream(dir_.Sub("keyed/keys/checkpoint.key")) << "PRIVATE+KEY+two\n";
  EXPECT_THAT(
      RestoreBackup(Restore(backups, dir_.Sub("keyed"))),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr(dir_.Sub("keyed/keys/checkpoint.key") + " differs from the backup's")));
  // Bad paths and ids.
  EXPECT_THAT(RestoreBackup(Restore(dir_.Sub("nowhere"), dir_.Sub("x"))),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr(dir_.Sub("nowhere") + ": no such directory")));
  EXPECT_THAT(RestoreBackup(Restore(dir_.Sub("original"), dir_.Sub("x"))),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("holds no predlog backup")));
  RestoreOptions unknown = Restore(backups, dir_.Sub("x"));
  unknown.backup_id = 2;
  EXPECT_THAT(RestoreBackup(unknown),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("lists backups 1..1")));
  EXPECT_FALSE(fs::exists(dir_.Sub("x/shards")));

  // A flipped byte in one backed-up SST: refused before anything is restored.
  DamageLargestSst(backups, "predlog.events-1");
  EXPECT_THAT(
      RestoreBackup(Restore(backups, dir_.Sub("damaged"))),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shard predlog.events-1: backup directory")));
  EXPECT_FALSE(fs::exists(dir_.Sub("damaged/shards")));
  EXPECT_FALSE(fs::exists(dir_.Sub("damaged/keys")));
  // A manifest that does not parse names its line.
  std::ofstream(backups + "/BACKUPS", std::ios::app) << "garbage\n";
  EXPECT_THAT(RestoreBackup(Restore(backups, dir_.Sub("garbled"))),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("BACKUPS line ")));
}

}  // namespace
}  // namespace predlog::services
