// predlog backup: asks predlogd to back itself up (predlog.v1.Admin).
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "predlog/v1/admin.grpc.pb.h"
#include "services/cli/cli_internal.h"

namespace predlog::services::cli_internal {

int Cli::Backup() {
  const std::string dir = args_.Get("out");
  if (dir.empty()) {
    return Usage("--out DIR is required: an absolute path on predlogd's host");
  }
  // The directory is predlogd's, not ours: a relative path would mean
  // something else there, so it is not resolved here either.
  if (dir[0] != '/') {
    return Usage(absl::StrCat("--out ", dir,
                              " is not an absolute path: predlogd writes the backup on its own "
                              "host, so give the absolute path there"));
  }
  auto stub = v1::Admin::NewStub(Channel());
  v1::CreateBackupRequest request;
  request.set_out_dir(dir);
  v1::CreateBackupResponse response;
  grpc::ClientContext context;
  // A backup copies files for as long as they take: an hour unless told.
  context.set_deadline(std::chrono::system_clock::now() +
                       (args_.Has("timeout_seconds") ? timeout_ : std::chrono::hours(1)));
  const grpc::Status status = stub->CreateBackup(&context, request, &response);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(response);
    return kExitOk;
  }
  const absl::Duration took =
      absl::Seconds(response.duration().seconds()) + absl::Nanoseconds(response.duration().nanos());
  uint64_t new_bytes = 0, total_bytes = 0;
  Table table({"SHARD", "ENGINE_BACKUP", "RECORDS", "NEW_FILES", "NEW_BYTES", "TOTAL_FILES",
               "TOTAL_BYTES"});
  for (const v1::ShardBackup& s : response.shards()) {
    table.AddRow({s.shard(), absl::StrCat(s.engine_backup_id()), absl::StrCat(s.records()),
                  absl::StrCat(s.new_files()), absl::StrCat(s.new_bytes()),
                  absl::StrCat(s.total_files()), absl::StrCat(s.total_bytes())});
    new_bytes += s.new_bytes();
    total_bytes += s.total_bytes();
  }
  out_ << "backup " << response.backup_id() << " written to " << response.out_dir()
       << " on predlogd's host in " << absl::FormatDuration(took) << " (shards: " << new_bytes
       << " bytes copied of " << total_bytes << ")\n";
  table.Print(out_);
  out_ << "artifacts  " << response.artifacts_copied() << " copied ("
       << response.artifact_bytes_copied() << " bytes), " << response.artifacts_total()
       << " in the backup directory\n";
  if (response.key_files() > 0) {
    out_ << "keys       " << response.key_files() << " files\n";
  } else {
    out_ << "keys       none (predlogd's data dir has no keys/ directory)\n";
  }
  out_ << "restore    predlogd --restore " << response.out_dir() << " --restore_backup_id "
       << response.backup_id() << " --partitions " << response.partitions()
       << " --data_dir NEW_DATA_DIR\n";
  return kExitOk;
}

}  // namespace predlog::services::cli_internal
