#include "services/server/admin.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "services/backup/backup.h"
#include "storage/logging.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services {

absl::StatusOr<predlog::v1::CreateBackupResponse> Admin::CreateBackup(
    const predlog::v1::CreateBackupRequest& request) const {
  if (request.out_dir().empty()) {
    return absl::InvalidArgumentError(
        "out_dir is required: an absolute path of a directory on predlogd's host");
  }
  if (!std::filesystem::path(request.out_dir()).is_absolute()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "out_dir \"", request.out_dir(),
        "\" is not an absolute path: it names a directory on predlogd's host, not the caller's"));
  }
  BackupSource source;
  for (int p = 0; p < ingest_->partitions(); ++p) source.shards.push_back(&ingest_->shard(p));
  source.shards.push_back(&ingest_->registry());
  source.shards.push_back(&ingest_->access());
  source.partitions = ingest_->partitions();
  source.artifacts = artifacts_;
  source.data_dir = data_dir_;
  source.keys_dir = (std::filesystem::path(data_dir_) / "keys").string();
  ASSIGN_OR_RETURN(BackupReport report, services::CreateBackup(source, request.out_dir()));

  predlog::v1::CreateBackupResponse response;
  response.set_backup_id(report.entry.id);
  response.set_out_dir(report.backup_dir);
  storage::TimeToProto(report.entry.created_at, response.mutable_created_at());
  response.set_partitions(static_cast<uint32_t>(report.entry.partitions));
  for (size_t i = 0; i < report.shards.size(); ++i) {
    const storage::ShardBackupInfo& info = report.shards[i];
    predlog::v1::ShardBackup* shard = response.add_shards();
    shard->set_shard(report.entry.shards[i].shard);
    shard->set_engine_backup_id(info.backup_id);
    shard->set_records(info.records);
    shard->set_chain_head_sha256(storage::ToHex(info.chain_head));
    shard->set_new_files(info.new_files);
    shard->set_new_bytes(info.new_bytes);
    shard->set_total_files(info.total_files);
    shard->set_total_bytes(info.total_bytes);
  }
  response.set_artifacts_copied(report.artifacts_copied);
  response.set_artifact_bytes_copied(report.artifact_bytes_copied);
  response.set_artifacts_total(report.entry.artifacts);
  response.set_key_files(static_cast<uint32_t>(report.entry.key_files));
  *response.mutable_duration() = google::protobuf::util::TimeUtil::NanosecondsToDuration(
      absl::ToInt64Nanoseconds(report.duration));
  PREDLOG_LOG(INFO) << "backup " << report.entry.id << " written to " << report.backup_dir << " in "
                    << report.duration;
  return response;
}

}  // namespace predlog::services
