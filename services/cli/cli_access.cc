// predlog access: the access trail (who read what), newest first.
#include "absl/strings/str_cat.h"
#include "services/cli/cli_internal.h"
#include "storage/timestamps.h"

namespace predlog::services::cli_internal {
namespace {

// Longest request shown in a table cell; --json shows it whole.
constexpr size_t kRequestCellChars = 100;

}  // namespace

int Cli::Access() {
  bool bad = false;
  std::optional<absl::Time> from = TimeFlag("from", &bad), to = TimeFlag("to", &bad);
  if (bad) return kExitUsage;
  int limit = 100;
  if (args_.Has("limit") && (!absl::SimpleAtoi(args_.Get("limit"), &limit) || limit <= 0)) {
    return Usage("--limit must be a positive integer");
  }
  v1::ListAccessRequest request;
  if (args_.Has("identity")) request.set_identity(args_.Get("identity"));
  request.set_method(args_.Get("method"));
  if (from) storage::TimeToProto(*from, request.mutable_from());
  if (to) storage::TimeToProto(*to, request.mutable_to());
  auto stub = v1::Audit::NewStub(Channel());
  Table table({"APPENDED_AT", "IDENTITY", "METHOD", "REQUEST", "PEER", "POSITION"});
  int shown = 0;
  bool more = false;
  do {
    request.set_page_size(static_cast<uint32_t>(std::min(limit - shown, 1000)));
    v1::ListAccessResponse page;
    grpc::ClientContext context;
    SetDeadline(&context);
    const grpc::Status status = stub->ListAccess(&context, request, &page);
    if (!status.ok()) return CallFailed(status);
    for (const v1::AccessEntry& entry : page.entries()) {
      ++shown;
      if (json_) {
        PrintJson(entry);
        continue;
      }
      const v1::AccessRecorded& access = entry.event().access_recorded();
      std::string request_text = access.request_json();
      if (request_text.size() > kRequestCellChars) {
        request_text = absl::StrCat(request_text.substr(0, kRequestCellChars - 3), "...");
      }
      table.AddRow(
          {IsoTime(entry.appended_at()),
           entry.event().actor().empty() ? "(nobody: no identities)" : entry.event().actor(),
           access.method(), request_text.empty() ? "{}" : request_text, access.peer(),
           absl::StrCat("predlog.access-0#", entry.index())});
    }
    request.set_page_token(page.next_page_token());
    more = !request.page_token().empty();
  } while (more && shown < limit);
  if (json_) return kExitOk;
  if (table.rows() == 0) {
    err_ << "predlog access: no recorded access matches\n";
    return kExitOk;
  }
  table.Print(out_);
  if (more) {
    err_ << "predlog access: the newest " << shown
         << " shown; there may be more (raise --limit, or narrow with --from/--to)\n";
  }
  return kExitOk;
}

}  // namespace predlog::services::cli_internal
