// predlog export, verify and status: verifiable exports and shard status.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "services/cli/cli_format.h"
#include "services/cli/cli_internal.h"
#include "services/export/trail_export.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::services::cli_internal {
namespace {

// Positions one Audit.GetChainValues call may ask for (audit.proto).
constexpr size_t kChainPositionsPerCall = 1000;

std::string Plural(uint64_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

}  // namespace

// ---------------------------------------------------------------- export, verify, status

int Cli::Export() {
  const int filters = args_.Has("subject") + args_.Has("model") + args_.Has("all") +
                      args_.Has("access-trail") + args_.Has("impact");
  if (filters != 1) {
    return Usage("give exactly one of --subject, --model, --impact, --all, --access-trail");
  }
  if (!args_.Has("out")) return Usage("--out is required");
  absl::StatusOr<ExportFormat> format = ParseExportFormat(args_.Get("format", "jsonl"));
  if (!format.ok()) return Usage(absl::StrCat("--format: ", format.status().message()));
  v1::ExportTrailRequest request;
  if (args_.Has("subject")) request.set_subject_id(args_.Get("subject"));
  if (args_.Has("all")) request.set_all(true);
  if (args_.Has("access-trail")) request.set_access_trail(true);
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
  if (args_.Has("impact")) {
    // The impact's models and datasets as the server finds them now; the
    // export then holds their predictions (the manifest names both sets).
    absl::StatusOr<std::pair<std::string, std::string>> dataset =
        ParseModelRef(args_.Get("impact"), "--impact");
    if (!dataset.ok()) return Usage(std::string(dataset.status().message()));
    v1::GetImpactRequest impact_request;
    impact_request.mutable_dataset()->set_name(dataset->first);
    impact_request.mutable_dataset()->set_version(dataset->second);
    impact_request.set_graph_only(true);
    if (absl::Status s = AsOfFlags(/*allow_position=*/false, impact_request.mutable_as_of());
        !s.ok()) {
      return Usage(std::string(s.message()));
    }
    v1::Impact impact;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status =
        v1::Replay::NewStub(Channel())->GetImpact(&context, impact_request, &impact);
    if (!status.ok()) return CallFailed(status);
    v1::PredictionSet* set = request.mutable_predictions();
    set->set_description(absl::StrCat("impact of dataset ", dataset->first, "@", dataset->second));
    for (const v1::LineageNode& node : impact.graph().nodes()) {
      if (node.kind() == v1::LineageNode::MODEL) {
        *set->add_models() = node.model().registration().model();
        set->mutable_models()->rbegin()->clear_artifact_sha256();
      } else if (node.kind() == v1::LineageNode::DATASET) {
        *set->add_data_sources() = node.dataset().registration().dataset();
        set->mutable_data_sources()->rbegin()->clear_digest();
      }
    }
  }

  const std::string path = args_.Get("out");
  absl::StatusOr<v1::ExportManifest> written = ExportTo(request, path, *format, true);
  if (!written.ok()) {
    // The writer removed its unfinished file: nothing that looks like an
    // export is left (a file already at `path` is untouched).
    if (absl::IsUnavailable(written.status()) || absl::IsDeadlineExceeded(written.status())) {
      return CallFailed(grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          absl::StrCat(written.status().message(), " (export failed: nothing written)")));
    }
    err_ << "predlog export: " << written.status().message()
         << " (export failed: nothing written to " << path << ")\n";
    return kExitFailed;
  }
  const std::string manifest_path = path + ".manifest.json";
  uint64_t unreadable = 0;
  for (const auto& shard : written->shards()) {
    for (const auto& u : shard.unreadable()) unreadable += u.last_index() - u.first_index() + 1;
  }
  if (json_) {
    PrintJson(*written);
  } else {
    out_ << "exported " << written->record_count() << " records to " << path << " ("
         << written->file_bytes() << " bytes, sha256:" << written->file_sha256() << ")\n"
         << "manifest " << manifest_path << "\n";
    for (const auto& shard : written->shards()) {
      out_ << "  " << shard.shard() << ": " << shard.records() << " records in "
           << shard.ranges_size() << " contiguous range" << (shard.ranges_size() == 1 ? "" : "s");
      if (shard.unreadable_size() > 0) {
        out_ << ", " << Plural(shard.unreadable_size(), "unreadable range", "unreadable ranges");
      }
      out_ << "\n";
    }
  }
  if (unreadable == 0) return kExitOk;
  // The export holds everything that could be read, and its manifest names
  // the rest; it is still not the complete export that was asked for.
  err_ << "WARNING: " << Plural(unreadable, "record", "records")
       << " could not be read and are not in the export (the manifest lists them; predlog "
          "verify reports them):\n";
  for (const auto& shard : written->shards()) {
    for (const auto& u : shard.unreadable()) {
      err_ << "  " << shard.shard() << " records " << u.first_index() << ".." << u.last_index()
           << ": " << u.reason() << "\n";
    }
  }
  return kExitFailed;
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

absl::StatusOr<std::string> Cli::VerifierKeyFlag() const {
  const std::string value = args_.Get("key");
  if (value.empty()) return absl::InvalidArgumentError("--key is empty");
  std::ifstream file(value);
  if (!file) {
    // The key itself ("name+id+base64"), or a file that is not there.
    if (value.find('+') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--key ", value, ": no such file, and not a verifier key"));
    }
    return value;
  }
  std::string key;
  std::getline(file, key);
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat("--key ", value, " is empty"));
  return key;
}

int Cli::Verify() {
  VerifyOptions options;
  if (args_.Has("key")) {
    absl::StatusOr<std::string> key = VerifierKeyFlag();
    if (!key.ok()) return Usage(std::string(key.status().message()));
    options.verifier_key = *key;
  }
  if (args_.Has("not-older-than")) {
    if (options.verifier_key.empty()) {
      return Usage(
          "--not-older-than needs --key: a checkpoint's signing time is proven by its "
          "signature");
    }
    const std::string value = args_.Get("not-older-than");
    if (!absl::ParseDuration(value, &options.not_older_than) ||
        options.not_older_than <= absl::ZeroDuration() ||
        options.not_older_than == absl::InfiniteDuration()) {
      return Usage(absl::StrCat("--not-older-than ", value,
                                " is not a positive duration (e.g. 10m, 24h, 1h30m)"));
    }
  }
  absl::StatusOr<ExportVerification> result =
      VerifyExport(args_.positional[0], args_.positional[1], options);
  if (!result.ok()) {
    err_ << "predlog verify: " << result.status().message() << "\n";
    return kExitFailed;
  }
  if (!result->consistent) {
    // The failure quotes the file's bytes: escaped, with --json too.
    out_ << "FAILED: " << Printable(result->failure) << "\n";
    return kExitFailed;
  }
  const std::string checks =
      "leaf hashes, chain continuity, manifest ranges and filter, file digest";
  if (result->ok) {
    out_ << "OK: " << result->records_checked << " records verified (" << checks << ")\n";
  } else {
    uint64_t unreadable = 0;
    for (const UnreadableRange& u : result->unreadable) {
      unreadable += u.last_index - u.first_index + 1;
    }
    out_ << "INCOMPLETE: " << result->records_checked << " records verified (" << checks
         << "), but the export is not complete: " << Plural(unreadable, "record", "records")
         << " could not be read when it was made\n";
    for (const UnreadableRange& u : result->unreadable) {
      out_ << "  " << u.shard << " records " << u.first_index << ".." << u.last_index
           << " could not be read when exported: " << Printable(u.reason) << "\n";
    }
    if (result->filtered) {
      out_ << "This is a subject or model export: an unreadable record may or may not have "
              "matched its filter.\n";
    }
    out_ << "Each readable run is checked on its own from its manifest anchors; the first record "
            "after an unreadable one has no chain value before it, so only the live shard "
            "(--server) ties its leaf to its chain value.\n";
  }
  if (!options.verifier_key.empty() && !result->proven) {
    out_ << "NOT PROVEN: "
         << (result->checkpoints.empty() ? "the export carries no checkpoint"
                                         : "some records come without a proof")
         << "\n";
    for (const std::string& range : result->unproven) {
      out_ << "  " << range
           << ": no proof (predlogd could not read the tree next to an unreadable record)\n";
    }
    return kExitFailed;
  }
  if (result->proven) {
    out_ << "PROVEN: every record is in the log its shard's checkpoint signs (key "
         << options.verifier_key.substr(0, options.verifier_key.find('+')) << "):\n";
    for (const VerifiedCheckpoint& c : result->checkpoints) {
      out_ << "  " << c.shard << ": checkpoint of " << c.size << " records, root "
           << c.root_sha256.substr(0, 16) << ", "
           << (c.signed_at.has_value()
                   ? absl::StrCat("signed ", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", *c.signed_at,
                                                              absl::UTCTimeZone()))
                   : std::string("signing time unknown (signed by an older predlogd)"))
           << "\n";
    }
    if (options.not_older_than != absl::InfiniteDuration()) {
      out_ << "Every checkpoint was signed within the last "
           << absl::FormatDuration(options.not_older_than) << ".\n";
    }
    out_ << "Re-encoded, forged or appended records would fail this, whatever the manifest says";
    if (result->complete_proven) {
      out_ << ", and so would dropped or truncated records and a shard left out: the export "
              "holds every shard of "
           << absl::StrJoin(result->whole_log_topics, " and ")
           << " its checkpoints name, each with every record below its checkpoint";
      if (!result->complete_range.empty()) {
        out_ << " appended in " << result->complete_range
             << " (the manifest's filter, which is not signed: check it is the range you asked "
                "for)";
      }
      out_ << ".";
    } else if (result->filtered) {
      out_ << ". That no record was left out is not proven for a subject or model export (the "
              "server chose its records).";
    } else if (!result->ok) {
      out_ << ". That no record was left out is not proven for an incomplete export.";
    } else {
      out_ << ". That no record was left out is NOT PROVEN:";
      for (const std::string& why : result->completeness_unproven) {
        out_ << "\n  " << Printable(why);
      }
      out_ << "\n";
    }
    out_ << " 'predlog verify-consistency' proves a later checkpoint extends these.";
  } else {
    out_ << "This proves the file is the one the manifest describes and is internally "
            "consistent. Without --key it cannot prove the manifest came from predlog: a file "
            "re-encoded with recomputed leaves and chain, with a manifest rewritten to match, "
            "also passes. 'predlog verify --key KEY' checks the signed checkpoints and proofs "
            "the export carries.";
  }
  // Only an explicit --server: an offline check never reaches out by itself.
  if (!args_.Has("server")) {
    out_ << " 'predlog verify --server ADDR' checks the manifest's chain anchors against the "
            "live shards.\n";
    return result->ok ? kExitOk : kExitFailed;
  }
  out_ << "\n";

  auto stub = v1::Audit::NewStub(Channel());
  const ChainValueFetcher fetch = [this, &stub](const std::vector<v1::Position>& positions)
      -> absl::StatusOr<std::vector<v1::ChainValue>> {
    v1::GetChainValuesRequest request;
    for (const v1::Position& p : positions) *request.add_positions() = p;
    v1::GetChainValuesResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = stub->GetChainValues(&context, request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return std::vector<v1::ChainValue>(response.values().begin(), response.values().end());
  };
  absl::StatusOr<ServerCheck> live = CheckAgainstServer(*result, kChainPositionsPerCall, fetch);
  if (!live.ok()) {
    return CallFailed(grpc::Status(static_cast<grpc::StatusCode>(live.status().code()),
                                   std::string(live.status().message())));
  }
  if (!live->mismatches.empty()) {
    out_ << "FAILED against predlogd at " << server_ << ": "
         << Plural(live->mismatches.size(), "claim of the export does", "claims of the export do")
         << " not match the live shards (" << live->claims_checked << " checked):\n";
    for (const std::string& mismatch : live->mismatches) {
      out_ << "  " << Printable(mismatch) << "\n";
    }
    out_ << "The file and manifest are consistent with each other but not with this server's "
            "shards: re-encoded or rewritten, exported from another server, or the server's log "
            "differs.\n";
    return kExitFailed;
  }
  out_ << "SERVER OK: the manifest's "
       << Plural(live->claims_checked, "chain anchor", "chain anchors")
       << " equal the stored chain values of the live shards at predlogd " << server_
       << ". This adds that the export agrees with the server's shards: a file re-encoded with "
          "recomputed leaves and chain, with a manifest rewritten to match, fails this check. It "
          "holds as far as that server itself is trusted.\n";
  return result->ok ? kExitOk : kExitFailed;
}

int Cli::Checkpoint() {
  auto stub = v1::Audit::NewStub(Channel());
  v1::SignCheckpointsRequest request;
  for (const std::string& shard : args_.All("shard")) request.add_shards(shard);
  v1::SignCheckpointsResponse response;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->SignCheckpoints(&context, request, &response);
  if (!status.ok()) return CallFailed(status);
  if (args_.Has("out")) {
    const std::string path = args_.Get("out");
    std::ofstream file(path, std::ios::trunc);
    file << ToJson(response) << "\n";
    file.close();
    if (!file) {
      err_ << "predlog checkpoint: cannot write " << path << "\n";
      return kExitFailed;
    }
  }
  if (json_) {
    PrintJson(response);
    return kExitOk;
  }
  for (const v1::ShardCheckpoint& c : response.checkpoints()) {
    out_ << "# " << c.shard() << "\n" << c.note() << "\n";
  }
  return kExitOk;
}

int Cli::VerifyConsistency() {
  if (!args_.Has("key")) return Usage("--key is required: the verifier key the checkpoints have");
  absl::StatusOr<std::string> key = VerifierKeyFlag();
  if (!key.ok()) return Usage(std::string(key.status().message()));
  CheckpointSet sets[2];
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<CheckpointSet> read = ReadCheckpoints(args_.positional[i]);
    if (!read.ok()) {
      err_ << "predlog verify-consistency: " << read.status().message() << "\n";
      return kExitFailed;
    }
    sets[i] = *std::move(read);
  }
  auto stub = v1::Audit::NewStub(Channel());
  const ConsistencyProofFetcher fetch =
      [this, &stub](const std::string& shard, uint64_t old_size,
                    uint64_t new_size) -> absl::StatusOr<std::vector<std::string>> {
    v1::GetConsistencyProofRequest request;
    request.set_shard(shard);
    request.set_old_size(old_size);
    request.set_new_size(new_size);
    v1::GetConsistencyProofResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = stub->GetConsistencyProof(&context, request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return std::vector<std::string>(response.proof_sha256().begin(), response.proof_sha256().end());
  };
  absl::StatusOr<ConsistencyCheck> check = CheckConsistency(sets[0], sets[1], *key, fetch);
  if (!check.ok()) {
    if (absl::IsInvalidArgument(check.status())) {
      return Usage(std::string(check.status().message()));
    }
    return CallFailed(grpc::Status(static_cast<grpc::StatusCode>(check.status().code()),
                                   std::string(check.status().message())));
  }
  for (const std::string& line : check->consistent) out_ << "OK: " << line << "\n";
  for (const std::string& line : check->unmatched) out_ << "SKIPPED: " << line << "\n";
  for (const std::string& line : check->failures) out_ << "FAILED: " << line << "\n";
  if (!check->failures.empty() || check->consistent.empty()) {
    if (check->consistent.empty() && check->failures.empty()) {
      out_ << "FAILED: the two files have no shard in common\n";
    }
    return kExitFailed;
  }
  for (const std::string& shard : check->unchecked) {
    out_ << "NOT CHECKED: " << shard
         << ": only in the older set (an export of everything does not hold it; compare "
            "`predlog checkpoint` files to check it)\n";
  }
  out_ << "The newer checkpoints extend the older ones"
       << (check->unchecked.empty()
               ? ""
               : absl::StrCat(" for the ", check->consistent.size(), " shards both hold"))
       << ": no record the older ones signed was lost or rewritten (proofs from predlogd at "
       << server_ << ", checked here against the signed roots).\n";
  return kExitOk;
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
