// The logic behind predlog.v1.Admin, without gRPC: CreateBackup backs up the
// shards the ingest holds, the artifact store and the signing keys
// (services/backup/backup.h) and answers what it wrote.
//
// Thread-safe. Borrows the ingest and the artifact store, which must outlive it.
#ifndef PREDLOG_SERVICES_SERVER_ADMIN_H_
#define PREDLOG_SERVICES_SERVER_ADMIN_H_

#include <string>

#include "absl/status/statusor.h"
#include "predlog/v1/admin.pb.h"
#include "services/kafka/ingest.h"
#include "storage/artifact_store.h"

namespace predlog::services {

class Admin {
 public:
  // `artifacts` may be null (none backed up). `data_dir` is predlogd's: its
  // keys/ directory is backed up, and no backup goes inside it.
  Admin(const Ingest* ingest, const storage::ArtifactStore* artifacts, std::string data_dir)
      : ingest_(ingest), artifacts_(artifacts), data_dir_(std::move(data_dir)) {}

  // INVALID_ARGUMENT naming out_dir when it is empty or not an absolute
  // path; otherwise CreateBackup's statuses (services/backup/backup.h). Blocks
  // for the whole backup: run it on the worker pool.
  absl::StatusOr<predlog::v1::CreateBackupResponse> CreateBackup(
      const predlog::v1::CreateBackupRequest& request) const;

 private:
  const Ingest* const ingest_;
  const storage::ArtifactStore* const artifacts_;
  const std::string data_dir_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_ADMIN_H_
