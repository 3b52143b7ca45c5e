// predlog lineage and impact: provenance upstream of a prediction, and the
// predictions downstream of a dataset (predlog.v1.Replay/GetLineage,
// GetImpact).

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "services/cli/cli_format.h"
#include "services/cli/cli_internal.h"
#include "storage/timestamps.h"

namespace predlog::services::cli_internal {
absl::Status Cli::AsOfFlags(bool allow_position, v1::AsOf* as_of) {
  if (args_.Has("at") + args_.Has("position") + args_.Has("after") > 1) {
    return absl::InvalidArgumentError("give one of --at, --position and --after");
  }
  if (args_.Has("at")) {
    absl::StatusOr<absl::Time> at = ParseTime(args_.Get("at"));
    if (!at.ok()) return absl::InvalidArgumentError(absl::StrCat("--at: ", at.status().message()));
    storage::TimeToProto(*at, as_of->mutable_time());
  }
  if (args_.Has("position")) {
    uint64_t position = 0;
    if (!allow_position || !absl::SimpleAtoi(args_.Get("position"), &position)) {
      return absl::InvalidArgumentError(
          "--position must be a record count (an index in the entity's shard)");
    }
    as_of->set_index(position);
  }
  if (args_.Has("after")) {
    const std::string after = args_.Get("after");
    const size_t hash = after.rfind('#');
    uint64_t index = 0;
    if (hash == std::string::npos || hash == 0 ||
        !absl::SimpleAtoi(absl::string_view(after).substr(hash + 1), &index)) {
      return absl::InvalidArgumentError(
          "--after: want SHARD#INDEX, a record's position as `predlog get` shows it");
    }
    as_of->mutable_after()->set_shard(after.substr(0, hash));
    as_of->mutable_after()->set_index(index);
  }
  return absl::OkStatus();
}

int Cli::Lineage() {
  if (args_.Has("dot") && json_) return Usage("give one of --json and --dot");
  v1::GetLineageRequest request;
  request.set_prediction_id(args_.positional[0]);
  request.set_subject_id(args_.Get("subject"));
  if (absl::Status s = AsOfFlags(/*allow_position=*/false, request.mutable_as_of()); !s.ok()) {
    return Usage(std::string(s.message()));
  }
  auto stub = v1::Replay::NewStub(Channel());
  v1::Lineage lineage;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->GetLineage(&context, request, &lineage);
  if (!status.ok()) return CallFailed(status);
  if (json_) {
    PrintJson(lineage);
  } else if (args_.Has("dot")) {
    PrintLineageDot(lineage, out_);
  } else {
    PrintLineageTree(lineage, /*downstream=*/false, out_);
    out_ << "(registry as of " << lineage.registry_cut().shard() << " after "
         << lineage.registry_cut().index() << " records)\n";
  }
  return kExitOk;
}

int Cli::Impact() {
  absl::StatusOr<std::pair<std::string, std::string>> ref =
      ParseModelRef(args_.positional[0], "dataset");
  if (!ref.ok()) return Usage(std::string(ref.status().message()));
  v1::GetImpactRequest request;
  request.mutable_dataset()->set_name(ref->first);
  request.mutable_dataset()->set_version(ref->second);
  if (absl::Status s = AsOfFlags(/*allow_position=*/false, request.mutable_as_of()); !s.ok()) {
    return Usage(std::string(s.message()));
  }
  bool bad = false;
  if (std::optional<absl::Time> from = TimeFlag("from", &bad); from) {
    storage::TimeToProto(*from, request.mutable_from());
  }
  if (std::optional<absl::Time> to = TimeFlag("to", &bad); to) {
    storage::TimeToProto(*to, request.mutable_to());
  }
  if (bad) return kExitUsage;
  uint32_t limit = 20;
  if (args_.Has("limit") && (!absl::SimpleAtoi(args_.Get("limit"), &limit) || limit == 0)) {
    return Usage("--limit must be a positive number of predictions");
  }
  const bool all = args_.Has("all");
  request.set_page_size(all ? 10000 : std::min<uint32_t>(limit, 10000));
  request.set_page_token(args_.Get("page-token"));

  auto stub = v1::Replay::NewStub(Channel());
  bool first_page = true;
  while (true) {
    v1::Impact page;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = stub->GetImpact(&context, request, &page);
    if (!status.ok()) return CallFailed(status);
    if (json_) {
      PrintJson(page);
    } else {
      if (first_page && request.page_token().empty()) {
        const v1::Lineage& graph = page.graph();
        out_ << "impact of " << graph.root() << " (registry as of " << graph.registry_cut().shard()
             << " after " << graph.registry_cut().index() << " records)\n\ndownstream:\n";
        PrintLineageTree(graph, /*downstream=*/true, out_);
        out_ << "\n" << page.total_predictions() << " predictions touched, by model version:\n";
        for (const v1::ImpactedModel& model : page.models()) {
          out_ << "  " << model.model().name() << "@" << model.model().version() << "  "
               << model.predictions() << " predictions";
          if (model.predictions() > 0) {
            out_ << "  served " << IsoTime(model.first_served_at()) << " .. "
                 << IsoTime(model.last_served_at());
          }
          out_ << (model.downstream() ? "  (trained downstream)" : "  (read impacted data)")
               << "\n";
        }
        out_ << "\nprediction  subject  model  served  via\n";
      }
      for (const v1::ImpactedPrediction& p : page.predictions()) {
        out_ << p.prediction_id() << "  " << p.subject_id() << "  " << p.model().name() << "@"
             << p.model().version() << "  " << IsoTime(p.served_at()) << "  " << p.via() << "\n";
      }
    }
    first_page = false;
    if (page.next_page_token().empty()) break;
    request.set_page_token(page.next_page_token());
    if (!all) {
      if (!json_) {
        out_ << "(more: --page-token " << page.next_page_token() << ", or --all)\n";
      }
      break;
    }
  }
  return kExitOk;
}

}  // namespace predlog::services::cli_internal
