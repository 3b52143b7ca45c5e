// predlog export, verify and status: verifiable exports and shard status.
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "services/cli/cli_format.h"
#include "services/cli/cli_internal.h"
#include "services/export/trail_export.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services::cli_internal {

// ---------------------------------------------------------------- export, verify, status

int Cli::Export() {
  const int filters = args_.Has("subject") + args_.Has("model") + args_.Has("all");
  if (filters != 1) return Usage("give exactly one of --subject, --model, --all");
  if (!args_.Has("out")) return Usage("--out is required");
  absl::StatusOr<ExportFormat> format = ParseExportFormat(args_.Get("format", "jsonl"));
  if (!format.ok()) return Usage(absl::StrCat("--format: ", format.status().message()));
  v1::ExportTrailRequest request;
  if (args_.Has("subject")) request.set_subject_id(args_.Get("subject"));
  if (args_.Has("all")) request.set_all(true);
  if (args_.Has("model")) {
    absl::StatusOr<std::pair<std::string, std::string>> model =
        ParseModelRef(args_.Get("model"), "--model");
    if (!model.ok()) return Usage(std::string(model.status().message()));
    request.mutable_model()->set_name(model->first);
    request.mutable_model()->set_version(model->second);
  }
  bool bad = false;
  if (std::optional<absl::Time> t = TimeFlag("from", &bad); t) {
    storage::TimeToProto(*t, request.mutable_from());
  }
  if (std::optional<absl::Time> t = TimeFlag("to", &bad); t) {
    storage::TimeToProto(*t, request.mutable_to());
  }
  if (bad) return kExitUsage;

  const std::string path = args_.Get("out");
  absl::StatusOr<v1::ExportManifest> written = ExportTo(request, path, *format, true);
  if (!written.ok()) {
    if (absl::IsUnavailable(written.status()) || absl::IsDeadlineExceeded(written.status())) {
      return CallFailed(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(written.status().message())));
    }
    err_ << "predlog export: " << written.status().message() << "\n";
    return kExitFailed;
  }
  const std::string manifest_path = path + ".manifest.json";
  if (json_) {
    PrintJson(*written);
  } else {
    out_ << "exported " << written->record_count() << " records to " << path << " ("
         << written->file_bytes() << " bytes, sha256:" << written->file_sha256() << ")\n"
         << "manifest " << manifest_path << "\n";
    for (const auto& shard : written->shards()) {
      out_ << "  " << shard.shard() << ": " << shard.records() << " records in "
           << shard.ranges_size() << " contiguous range" << (shard.ranges_size() == 1 ? "" : "s")
           << "\n";
    }
  }
  return kExitOk;
}

absl::StatusOr<v1::ExportManifest> Cli::ExportTo(const v1::ExportTrailRequest& request,
                                                 const std::string& path, ExportFormat format,
                                                 bool show_progress) {
  ASSIGN_OR_RETURN(std::unique_ptr<TrailWriter> writer, TrailWriter::Create(path, format));
  // The expected total for the progress bar, when cheap to know.
  uint64_t total = 0;
  if (show_progress && request.all() && isatty(STDERR_FILENO) == 1) {
    auto audit = v1::Audit::NewStub(Channel());
    v1::StatusResponse shards;
    grpc::ClientContext context;
    SetDeadline(&context);
    if (audit->GetStatus(&context, v1::GetStatusRequest(), &shards).ok()) {
      for (const auto& s : shards.shards()) total += s.records();
    }
  }
  auto stub = v1::Audit::NewStub(Channel());
  grpc::ClientContext context;  // no deadline: an export takes as long as it takes
  auto stream = stub->ExportTrail(&context, request);
  Progress progress("exporting", show_progress ? total : 0);
  // This thread only reads the stream; the writer checks and renders batches
  // on its own threads meanwhile.
  v1::ExportBatch batch;
  while (stream->Read(&batch)) {
    if (absl::Status added = writer->AddBatch(std::move(batch)); !added.ok()) {
      context.TryCancel();
      stream->Finish();
      return added;
    }
    batch.Clear();
    if (show_progress) progress.Update(writer->records());
  }
  progress.Done();
  const grpc::Status status = stream->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  v1::ExportManifest manifest;
  *manifest.mutable_filter() = request;
  storage::TimeToProto(absl::Now(), manifest.mutable_created_at());
  const char* user = std::getenv("USER");
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  manifest.set_exported_by(absl::StrCat(user != nullptr ? user : "unknown", "@", host));
  manifest.set_server(server_);
  return writer->Finish(manifest, path + ".manifest.json");
}

int Cli::Verify() {
  absl::StatusOr<ExportVerification> result =
      VerifyExport(args_.positional[0], args_.positional[1]);
  if (!result.ok()) {
    err_ << "predlog verify: " << result.status().message() << "\n";
    return kExitFailed;
  }
  if (result->ok) {
    out_ << "OK: " << result->records_checked
         << " records verified (leaf hashes, chain continuity, manifest ranges and filter, file "
            "digest)\n"
         << "This proves the file is the one the manifest describes and is internally "
            "consistent. It cannot prove the manifest came from predlog: the manifest is not "
            "signed, so a file re-encoded with recomputed leaves and chain, with a manifest "
            "rewritten to match, also passes.\n";
    return kExitOk;
  }
  // The failure quotes the file's bytes: escaped, with --json too.
  out_ << "FAILED: " << Printable(result->failure) << "\n";
  return kExitFailed;
}

int Cli::Status() {
  auto stub = v1::Audit::NewStub(Channel());
  v1::StatusResponse response;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->GetStatus(&context, v1::GetStatusRequest(), &response);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(response);
    return kExitOk;
  }
  Table table({"SHARD", "RECORDS", "LAST_OFFSET", "LAG", "SNAPSHOTS", "LATEST_SNAPSHOT", "REJECTED",
               "CONFLICTS", "GAPS", "MISROUTED", "CHAIN_HEAD"});
  for (const v1::ShardStatus& s : response.shards()) {
    const bool has_source = !s.last_source().incarnation().empty();
    table.AddRow({s.shard(), absl::StrCat(s.records()),
                  has_source ? absl::StrCat(s.last_source().offset()) : "-",
                  s.folded_elsewhere()   ? "elsewhere"
                  : s.consumer_lag() < 0 ? "?"
                                         : absl::StrCat(s.consumer_lag()),
                  absl::StrCat(s.snapshots_size()),
                  s.snapshots().empty()
                      ? "-"
                      : absl::StrCat("#", s.snapshots().rbegin()->index(), " ",
                                     IsoTime(s.snapshots().rbegin()->created_at())),
                  absl::StrCat(s.rejected()), absl::StrCat(s.conflicts()), absl::StrCat(s.gaps()),
                  absl::StrCat(s.misrouted()), s.chain_head_sha256().substr(0, 16)});
  }
  table.Print(out_);
  uint64_t misrouted = 0;
  for (const v1::ShardStatus& s : response.shards()) misrouted += s.misrouted();
  if (misrouted > 0) {
    out_ << "WARNING: " << misrouted
         << " events arrived on another partition than their key's: a producer does not key "
            "by subject_id with partitioner=murmur2_random (see README, \"Producing to Kafka\"). "
            "Reads still find them, searching more shards.\n";
  }
  int lost = 0;
  for (const v1::ShardStatus& s : response.shards()) {
    if (s.read_corruptions() > 0) {
      out_ << "CORRUPT: " << s.shard() << ": " << s.read_corruptions()
           << " reads found corrupt data since predlogd started (see its log)\n";
      ++lost;
    }
    if (s.lost_records().empty()) continue;
    out_ << "LOST: " << s.lost_records() << "\n";
    ++lost;
  }
  return lost == 0 ? kExitOk : kExitFailed;
}

}  // namespace predlog::services::cli_internal
