// predlog dataset register|get: datasets in the registry, by content digest.

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "services/cli/cli_format.h"
#include "services/cli/cli_internal.h"
#include "services/cli/dataset_digest.h"

namespace predlog::services::cli_internal {
namespace {

std::string RefText(const std::string& name, const std::string& version) {
  return absl::StrCat(name, "@", version);
}

}  // namespace

int Cli::Dataset() {
  const std::string& sub = args_.positional[0];
  if (sub == "register") {
    if (args_.positional.size() != 1) return Usage("dataset register takes flags only");
    return DatasetRegister();
  }
  if (sub == "get") {
    if (args_.positional.size() != 2) return Usage("dataset get takes one name@version");
    return DatasetGet();
  }
  return Usage(absl::StrCat("unknown dataset subcommand '", sub, "' (want register or get)"));
}

int Cli::DatasetRegister() {
  for (const char* required : {"name", "version"}) {
    if (!args_.Has(required)) return Usage(absl::StrCat("--", required, " is required"));
  }
  if (args_.Has("digest") == args_.Has("path")) {
    return Usage("give exactly one of --digest sha256:HEX and --path P");
  }
  v1::RegisterDatasetRequest request;
  request.set_actor(args_.Get("actor"));
  v1::DatasetRegistered* d = request.mutable_dataset();
  d->mutable_dataset()->set_name(args_.Get("name"));
  d->mutable_dataset()->set_version(args_.Get("version"));
  if (args_.Has("digest")) {
    std::string digest = args_.Get("digest");
    if (absl::StartsWith(digest, "sha256:")) digest = digest.substr(7);
    d->mutable_dataset()->set_digest(digest);
    if (args_.Has("size-bytes")) {
      uint64_t size = 0;
      if (!absl::SimpleAtoi(args_.Get("size-bytes"), &size)) {
        return Usage("--size-bytes must be a whole number of bytes");
      }
      d->set_size_bytes(size);
    }
  } else {
    if (args_.Has("size-bytes")) return Usage("--size-bytes goes with --digest (--path sums it)");
    absl::StatusOr<DatasetDigest> digest = DigestDatasetPath(args_.Get("path"));
    if (!digest.ok()) return Usage(absl::StrCat("--path: ", digest.status().message()));
    d->mutable_dataset()->set_digest(digest->sha256_hex);
    d->set_size_bytes(digest->size_bytes);
  }
  if (args_.Has("rows")) {
    uint64_t rows = 0;
    if (!absl::SimpleAtoi(args_.Get("rows"), &rows)) {
      return Usage("--rows must be a whole number");
    }
    d->set_row_count(rows);
  }
  d->set_source(args_.Get("source"));
  d->set_reason(args_.Get("reason"));
  for (const std::string& text : args_.All("derived-from")) {
    absl::StatusOr<std::pair<std::string, std::string>> ref = ParseModelRef(text, "--derived-from");
    if (!ref.ok()) return Usage(std::string(ref.status().message()));
    v1::DatasetRef* parent = d->add_derived_from();
    parent->set_name(ref->first);
    parent->set_version(ref->second);
  }
  for (const std::string& text : args_.All("derived-from-model")) {
    absl::StatusOr<std::pair<std::string, std::string>> ref =
        ParseModelRef(text, "--derived-from-model");
    if (!ref.ok()) return Usage(std::string(ref.status().message()));
    v1::ModelRef* model = d->add_derived_from_models();
    model->set_name(ref->first);
    model->set_version(ref->second);
  }
  if (args_.Has("pipeline")) {
    absl::StatusOr<std::pair<std::string, std::string>> pipeline =
        ParseModelRef(args_.Get("pipeline"), "--pipeline");
    if (!pipeline.ok()) return Usage(std::string(pipeline.status().message()));
    d->mutable_pipeline()->set_name(pipeline->first);
    d->mutable_pipeline()->set_version(pipeline->second);
    d->mutable_pipeline()->set_code_digest(args_.Get("pipeline-digest"));
  } else if (args_.Has("pipeline-digest")) {
    return Usage("--pipeline-digest goes with --pipeline name@version");
  }
  auto stub = v1::Registry::NewStub(Channel());
  v1::RegistryReceipt receipt;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->RegisterDataset(&context, request, &receipt);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(receipt);
  } else {
    out_ << v1::LogReceipt::Outcome_Name(receipt.outcome()) << " "
         << RefText(d->dataset().name(), d->dataset().version())
         << "  sha256:" << d->dataset().digest();
    if (d->size_bytes() > 0) out_ << " (" << d->size_bytes() << " bytes)";
    out_ << "  at " << receipt.position().shard() << "#" << receipt.position().index() << "\n";
  }
  return kExitOk;
}

int Cli::DatasetGet() {
  absl::StatusOr<std::pair<std::string, std::string>> ref =
      ParseModelRef(args_.positional[1], "dataset");
  if (!ref.ok()) return Usage(std::string(ref.status().message()));
  v1::GetDatasetRequest request;
  request.set_name(ref->first);
  request.set_version(ref->second);
  auto stub = v1::Registry::NewStub(Channel());
  v1::DatasetRecord record;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->GetDataset(&context, request, &record);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(record);
    return kExitOk;
  }
  const v1::DatasetRegistered& d = record.registration();
  auto line = [&](absl::string_view label, absl::string_view value) {
    if (!value.empty()) out_ << label << value << "\n";
  };
  out_ << "dataset " << RefText(d.dataset().name(), d.dataset().version()) << "\n";
  line("  digest:         sha256:", d.dataset().digest());
  line("  size:           ", d.size_bytes() > 0 ? absl::StrCat(d.size_bytes(), " bytes") : "");
  line("  rows:           ", d.row_count() > 0 ? absl::StrCat(d.row_count()) : "");
  line("  source:         ", d.source());
  for (const v1::DatasetRef& parent : d.derived_from()) {
    line("  derived from:   ", RefText(parent.name(), parent.version()));
  }
  for (const v1::ModelRef& model : d.derived_from_models()) {
    line("  from model:     ", RefText(model.name(), model.version()));
  }
  if (d.has_pipeline()) {
    line("  pipeline:       ",
         absl::StrCat(RefText(d.pipeline().name(), d.pipeline().version()),
                      d.pipeline().code_digest().empty()
                          ? ""
                          : absl::StrCat(" (code ", d.pipeline().code_digest(), ")")));
  }
  line("  reason:         ", d.reason());
  line("  registered by:  ",
       record.registered_by().empty() && record.claimed_by().empty()
           ? "(unknown: predlogd ran without identities)"
           : absl::StrCat(record.registered_by().empty() ? "-" : record.registered_by(),
                          record.claimed_by().empty()
                              ? ""
                              : absl::StrCat("  (claimed: ", record.claimed_by(), ")")));
  line("  registered at:  ", IsoTime(record.recorded_at()));
  line("  record:         ", absl::StrCat(record.position().shard(), "#", record.position().index(),
                                          "  leaf ", record.leaf_sha256()));
  return kExitOk;
}

}  // namespace predlog::services::cli_internal
