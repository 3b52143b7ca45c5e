#include "services/web/http_api.h"

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "httplib.h"
#include "services/cli/case_file.h"
#include "services/export/trail_export.h"
#include "services/web/page_files.h"
#include "services/web/tar_archive.h"
#include "services/web/transcode.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::web {
namespace {

namespace v1 = predlog::v1;

constexpr char kJson[] = "application/json";

// What the call presented: its Authorization header values.
auth::Credentials CredentialsOf(const httplib::Request& req) {
  auth::Credentials credentials;
  // httplib's header names compare case-insensitively.
  const auto [first, last] = req.headers.equal_range("Authorization");
  for (auto it = first; it != last; ++it) credentials.authorization.push_back(it->second);
  return credentials;
}

std::string PeerOf(const httplib::Request& req) {
  return absl::StrCat("http:", req.remote_addr, ":", req.remote_port);
}

// Whether a browser sent this from another site: Sec-Fetch-Site (Fetch
// Metadata, https://www.w3.org/TR/fetch-metadata/) is "same-origin" for the
// page's own calls and "none" for an address typed in; anything else is
// another page making the user's browser call predlogd. And whether the Host
// is one this listener answers to: a page on a hostile domain re-pointed at
// 127.0.0.1 (DNS rebinding) sends its own domain as Host. Programs that are
// not browsers send no Sec-Fetch-Site.
absl::Status CheckBrowserOrigin(const HttpApiBackends& backends, const httplib::Request& req) {
  const std::string site = req.get_header_value("Sec-Fetch-Site");
  if (!site.empty() && site != "same-origin" && site != "none") {
    return absl::PermissionDeniedError(
        absl::StrCat("a page of another site (Sec-Fetch-Site: ", site,
                     ") may not call predlogd's API; open predlogd's own page"));
  }
  if (!backends.allowed_hosts.empty()) {
    const std::string host = req.get_header_value("Host");
    if (std::find(backends.allowed_hosts.begin(), backends.allowed_hosts.end(), host) ==
        backends.allowed_hosts.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat("Host ", host, " is not this listener's address (",
                       backends.allowed_hosts.front(), "): refused"));
    }
  }
  return absl::OkStatus();
}

// The caller, checked against the role table under `method`, from a
// browser only on predlogd's own page (CheckBrowserOrigin).
absl::StatusOr<auth::Caller> Admit(const HttpApiBackends& backends, absl::string_view method,
                                   const httplib::Request& req) {
  RETURN_IF_ERROR(CheckBrowserOrigin(backends, req));
  return backends.authorizer->Check(method, CredentialsOf(req));
}

// The request message from the route's path variables (regex groups, in
// order, named by `path_fields`) and the query parameters.
absl::Status BuildRequest(const httplib::Request& req, const std::vector<std::string>& path_fields,
                          google::protobuf::Message* request) {
  std::vector<std::pair<std::string, std::string>> parameters;
  for (size_t i = 0; i < path_fields.size(); ++i) {
    parameters.emplace_back(path_fields[i], req.matches[i + 1].str());
  }
  // httplib keeps the query in a multimap: by name, each name's values in
  // the order given.
  for (const auto& [name, value] : req.params) parameters.emplace_back(name, value);
  return SetParameters(request, parameters);
}

// How long a call waits for its AccessRecorded to be durable before it is
// refused (the trail's writer is stuck: Kafka unreachable, a full disk).
constexpr absl::Duration kRecordTimeout = absl::Seconds(30);

// Appends the call's AccessRecorded when the role table marks `method`
// recorded and this process keeps a trail; returns once it is durable, or
// UNAVAILABLE after kRecordTimeout (the call is then refused).
absl::Status RecordAccess(const HttpApiBackends& backends, absl::string_view method,
                          const auth::Caller& caller, const httplib::Request& req,
                          const google::protobuf::Message& request) {
  ASSIGN_OR_RETURN(const bool recorded, services::AccessTrail::Recorded(method));
  if (!recorded || backends.access == nullptr) return absl::OkStatus();
  // Shared with the callback, which may run after a timed-out wait returned.
  struct Pending {
    absl::Notification done;
    absl::Status result;
  };
  auto pending = std::make_shared<Pending>();
  backends.access->Record(method, caller, PeerOf(req), request, [pending](absl::Status status) {
    pending->result = std::move(status);
    pending->done.Notify();
  });
  if (!pending->done.WaitForNotificationWithTimeout(kRecordTimeout)) {
    return absl::UnavailableError(absl::StrCat("the access trail did not record this call within ",
                                               absl::FormatDuration(kRecordTimeout),
                                               ", so it is refused; retry later"));
  }
  return pending->result;
}

void ReplyError(const absl::Status& status, httplib::Response& res) {
  res.status = HttpStatusOf(status.code());
  if (status.code() == absl::StatusCode::kUnauthenticated) {
    res.set_header("WWW-Authenticate", "Bearer realm=\"predlogd\"");
  }
  res.set_content(ErrorJson(status), kJson);
}

void ReplyMessage(const google::protobuf::Message& message, httplib::Response& res) {
  std::string json;
  if (absl::Status printed = ToJson(message, &json); !printed.ok()) {
    ReplyError(printed, res);
    return;
  }
  res.status = 200;
  res.set_content(json, kJson);
}

absl::Status NoShards(absl::string_view what) {
  return absl::UnavailableError(
      absl::StrCat("this predlogd has no shards (roles without ingest): ", what, " needs them"));
}

// A route answering `method`'s response: admitted, built, recorded, called.
template <typename Request, typename Response>
httplib::Server::Handler Route(const HttpApiBackends& backends, std::string method,
                               std::vector<std::string> path_fields,
                               std::function<absl::StatusOr<Response>(const Request&)> call) {
  return [backends, method = std::move(method), path_fields = std::move(path_fields),
          call = std::move(call)](const httplib::Request& req, httplib::Response& res) {
    Request request;
    absl::StatusOr<Response> response = [&]() -> absl::StatusOr<Response> {
      ASSIGN_OR_RETURN(const auth::Caller caller, Admit(backends, method, req));
      RETURN_IF_ERROR(BuildRequest(req, path_fields, &request));
      RETURN_IF_ERROR(RecordAccess(backends, method, caller, req, request));
      return call(request);
    }();
    if (!response.ok()) {
      ReplyError(response.status(), res);
      return;
    }
    ReplyMessage(*response, res);
  };
}

// GET /api/v1/whoami: who the token is and what it may call.
void WhoAmI(const HttpApiBackends& backends, const httplib::Request& req, httplib::Response& res) {
  if (absl::Status origin = CheckBrowserOrigin(backends, req); !origin.ok()) {
    ReplyError(origin, res);
    return;
  }
  const auth::Authorizer& authorizer = *backends.authorizer;
  const auth::Credentials credentials = CredentialsOf(req);
  auth::Caller caller;
  if (authorizer.enabled() && !credentials.authorization.empty()) {
    absl::StatusOr<auth::Caller> authenticated = authorizer.Authenticate(credentials);
    if (!authenticated.ok()) {
      ReplyError(authenticated.status(), res);
      return;
    }
    caller = *std::move(authenticated);
  }
  google::protobuf::Struct body;
  auto& fields = *body.mutable_fields();
  fields["accessControl"].set_bool_value(authorizer.enabled());
  fields["authenticated"].set_bool_value(caller.authenticated);
  fields["identity"].set_string_value(caller.name);
  auto* roles = fields["roles"].mutable_list_value();
  for (auth::Role role : auth::kAllRoles) {
    if (caller.roles.Has(role)) roles->add_values()->set_string_value(std::string(RoleName(role)));
  }
  auto* methods = fields["methods"].mutable_list_value();
  for (const auth::MethodAccess& entry : auth::RoleTable()) {
    if (!absl::StartsWith(entry.method, "/predlog.v1.")) continue;
    if (authorizer.enabled() && !caller.authenticated) continue;
    if (authorizer.Authorize(entry.method, caller).ok()) {
      methods->add_values()->set_string_value(std::string(entry.method));
    }
  }
  ReplyMessage(body, res);
}

// A download: `tar` saved as `name`.tar (`name` already FileSafe).
void ReplyTar(absl::string_view name, std::string tar, httplib::Response& res) {
  res.status = 200;
  res.set_header("Content-Disposition", absl::StrCat("attachment; filename=\"", name, ".tar\""));
  res.set_content(std::move(tar), "application/x-tar");
}

// A name safe in a file name and a Content-Disposition header.
std::string FileSafe(absl::string_view name) {
  std::string out;
  for (char c : name) {
    const bool safe = absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                      c == '.' || c == '@';
    out.push_back(safe ? c : '_');
  }
  return out;
}

// A directory of its own under HttpApiBackends::scratch_dir, removed with it.
class ScratchDir {
 public:
  static absl::StatusOr<ScratchDir> Make(const std::string& parent) {
    std::string path = absl::StrCat(parent, "/call-XXXXXX");
    if (mkdtemp(path.data()) == nullptr) {
      return absl::InternalError(
          absl::StrCat("cannot create a directory like ", path, ": ", std::strerror(errno)));
    }
    return ScratchDir(std::move(path));
  }
  ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Writes the export of `request` to `path` (JSON lines) and its manifest
// beside it, as `predlog export` does. The caller has been admitted and
// recorded.
absl::StatusOr<v1::ExportManifest> WriteExport(const HttpApiBackends& backends,
                                               const auth::Caller& caller,
                                               const v1::ExportTrailRequest& request,
                                               const std::string& path) {
  if (backends.audit == nullptr) return NoShards("an export");
  ASSIGN_OR_RETURN(std::unique_ptr<services::ExportCursor> cursor,
                   backends.audit->StartExport(request));
  ASSIGN_OR_RETURN(std::unique_ptr<services::TrailWriter> writer,
                   services::TrailWriter::Create(path, services::ExportFormat::kJsonl));
  while (true) {
    v1::ExportBatch batch;
    ASSIGN_OR_RETURN(const bool more, cursor->Next(1000, 2 << 20, &batch));
    if (!more) break;
    RETURN_IF_ERROR(writer->AddBatch(std::move(batch)));
  }
  v1::ExportManifest manifest;
  *manifest.mutable_filter() = request;
  storage::TimeToProto(absl::Now(), manifest.mutable_created_at());
  manifest.set_exported_by(caller.authenticated ? absl::StrCat(caller.name, " (web page)")
                                                : "web page");
  manifest.set_server(backends.server_name);
  return writer->Finish(manifest, path + ".manifest.json");
}

// GET /api/v1/export?subject_id=...: one customer's verifiable export, as
// a tar of export-<subject>.jsonl and its manifest.
absl::StatusOr<std::vector<ArchiveFile>> ExportSubject(const HttpApiBackends& backends,
                                                       const auth::Caller& caller,
                                                       const v1::ExportTrailRequest& request) {
  const std::string name = absl::StrCat("export-", FileSafe(request.subject_id()));
  ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Make(backends.scratch_dir));
  RETURN_IF_ERROR(
      WriteExport(backends, caller, request, absl::StrCat(scratch.path(), "/", name, ".jsonl"))
          .status());
  return ReadDirectoryFiles(scratch.path(), name);
}

void Export(const HttpApiBackends& backends, const httplib::Request& req, httplib::Response& res) {
  constexpr absl::string_view kMethod = "/predlog.v1.Audit/ExportTrail";
  v1::ExportTrailRequest request;
  absl::StatusOr<std::string> tar = [&]() -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(const auth::Caller caller, Admit(backends, kMethod, req));
    RETURN_IF_ERROR(BuildRequest(req, {}, &request));
    if (request.filter_case() != v1::ExportTrailRequest::kSubjectId ||
        request.subject_id().empty()) {
      return absl::InvalidArgumentError(
          "parameter subject_id is required: the page exports one customer's trail "
          "(`predlog export` exports models, sets and everything)");
    }
    RETURN_IF_ERROR(RecordAccess(backends, kMethod, caller, req, request));
    ASSIGN_OR_RETURN(std::vector<ArchiveFile> files, ExportSubject(backends, caller, request));
    return TarArchive(files);
  }();
  if (!tar.ok()) {
    ReplyError(tar.status(), res);
    return;
  }
  ReplyTar(absl::StrCat("export-", FileSafe(request.subject_id())), *std::move(tar), res);
}

// A case file's answers from the service classes: each call admitted under
// its own gRPC method and recorded as that call over gRPC would be, so a
// role sees in the case file exactly what it may read (the rest is listed
// among the case's problems).
class ServiceCaseSources final : public services::CaseSources {
 public:
  ServiceCaseSources(const HttpApiBackends& backends, const httplib::Request& req)
      : b_(backends), req_(req) {}

  absl::StatusOr<v1::PredictionRecord> GetPrediction(
      const v1::GetPredictionRequest& request) override {
    return Call<v1::PredictionRecord>(
        "/predlog.v1.PredictionLog/GetPrediction", request,
        [&](const auth::Caller&) { return b_.log->GetPrediction(request); });
  }
  absl::StatusOr<v1::ModelRecord> GetModel(const v1::GetModelRequest& request) override {
    return Call<v1::ModelRecord>(
        "/predlog.v1.Registry/GetModel", request,
        [&](const auth::Caller&) { return b_.registry->GetModel(request); });
  }
  absl::StatusOr<v1::Lineage> GetLineage(const v1::GetLineageRequest& request) override {
    return Call<v1::Lineage>("/predlog.v1.Replay/GetLineage", request,
                             [&](const auth::Caller&) -> absl::StatusOr<v1::Lineage> {
                               if (b_.replayer == nullptr) return NoShards("a lineage");
                               return b_.replayer->GetLineage(request);
                             });
  }
  absl::StatusOr<v1::RerunReport> Rerun(const v1::RerunRequest& request) override {
    return Call<v1::RerunReport>("/predlog.v1.Replay/Rerun", request,
                                 [&](const auth::Caller&) -> absl::StatusOr<v1::RerunReport> {
                                   if (b_.replayer == nullptr) return NoShards("a re-run");
                                   return b_.replayer->Rerun(request);
                                 });
  }
  absl::StatusOr<v1::EntityAtResponse> GetEntityAt(const v1::GetEntityAtRequest& request) override {
    return Call<v1::EntityAtResponse>(
        "/predlog.v1.Replay/GetEntityAt", request,
        [&](const auth::Caller&) -> absl::StatusOr<v1::EntityAtResponse> {
          if (b_.replayer == nullptr) return NoShards("a state as of a cut");
          return b_.replayer->GetEntityAt(request);
        });
  }
  absl::StatusOr<v1::ListPredictionsResponse> ListPredictions(
      const v1::ListPredictionsRequest& request) override {
    return Call<v1::ListPredictionsResponse>(
        "/predlog.v1.PredictionLog/ListPredictions", request,
        [&](const auth::Caller&) { return b_.log->ListPredictions(request); });
  }
  absl::StatusOr<v1::ExportManifest> Export(const v1::ExportTrailRequest& request,
                                            const std::string& path) override {
    return Call<v1::ExportManifest>(
        "/predlog.v1.Audit/ExportTrail", request,
        [&](const auth::Caller& caller) { return WriteExport(b_, caller, request, path); });
  }

 private:
  template <typename Response, typename Request, typename F>
  absl::StatusOr<Response> Call(absl::string_view method, const Request& request, F run) {
    ASSIGN_OR_RETURN(const auth::Caller caller, Admit(b_, method, req_));
    RETURN_IF_ERROR(RecordAccess(b_, method, caller, req_, request));
    return run(caller);
  }

  const HttpApiBackends& b_;
  const httplib::Request& req_;
};

// GET /api/v1/predictions/{id}/case: the case file `predlog case` writes,
// as a tar of case-<id>/. Parameters: against.name and against.version (the
// counterfactual), window_days, entity_type.
void Case(const HttpApiBackends& backends, const httplib::Request& req, httplib::Response& res) {
  services::CaseOptions options;
  options.prediction_id = req.matches[1].str();
  options.built_from = backends.server_name;
  const std::string name = absl::StrCat("case-", FileSafe(options.prediction_id));
  absl::StatusOr<std::string> tar = [&]() -> absl::StatusOr<std::string> {
    RETURN_IF_ERROR(CheckBrowserOrigin(backends, req));
    std::set<std::string> seen;
    for (const auto& [parameter, value] : req.params) {
      if (!seen.insert(parameter).second) {
        return absl::InvalidArgumentError(absl::StrCat("parameter ", parameter, " is given twice"));
      }
      if (parameter == "against.name") {
        options.against.set_name(value);
      } else if (parameter == "against.version") {
        options.against.set_version(value);
      } else if (parameter == "entity_type" || parameter == "entityType") {
        options.entity_type = value;
      } else if (parameter == "window_days" || parameter == "windowDays") {
        if (!absl::SimpleAtoi(value, &options.window_days) || options.window_days <= 0) {
          return absl::InvalidArgumentError(absl::StrCat("parameter window_days: \"", value,
                                                         "\" is not a positive number of days"));
        }
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown parameter ", parameter,
                         ": a case takes against.name, against.version, window_days and "
                         "entity_type"));
      }
    }
    if (options.against.name().empty() != options.against.version().empty()) {
      return absl::InvalidArgumentError("parameters against.name and against.version go together");
    }
    ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Make(backends.scratch_dir));
    ServiceCaseSources sources(backends, req);
    const std::string dir = absl::StrCat(scratch.path(), "/", name);
    RETURN_IF_ERROR(services::WriteCaseFile(sources, options, dir).status());
    ASSIGN_OR_RETURN(std::vector<ArchiveFile> files, ReadDirectoryFiles(dir, name));
    return TarArchive(files);
  }();
  if (!tar.ok()) {
    ReplyError(tar.status(), res);
    return;
  }
  ReplyTar(name, *std::move(tar), res);
}

absl::string_view ContentTypeOf(absl::string_view name) {
  if (absl::EndsWith(name, ".html")) return "text/html; charset=utf-8";
  if (absl::EndsWith(name, ".js")) return "text/javascript; charset=utf-8";
  if (absl::EndsWith(name, ".css")) return "text/css; charset=utf-8";
  if (absl::EndsWith(name, ".svg")) return "image/svg+xml";
  if (absl::EndsWith(name, ".png")) return "image/png";
  return "application/octet-stream";
}

void ServePageFile(absl::string_view name, httplib::Response& res) {
  for (const PageFile& file : PageFiles()) {
    if (file.name != name) continue;
    res.status = 200;
    res.set_content(std::string(file.content), std::string(ContentTypeOf(name)));
    return;
  }
  res.status = 404;
  res.set_content(absl::StrCat("no page file ", name, "\n"), "text/plain; charset=utf-8");
}

}  // namespace

void RegisterHttpApi(const HttpApiBackends& backends, httplib::Server* server) {
  const HttpApiBackends& b = backends;
  const services::PredictionLog* log = b.log;
  const services::ModelRegistry* registry = b.registry;
  const replay::Replayer* replayer = b.replayer;
  const services::Audit* audit = b.audit;
  services::AccessTrail* access = b.access;

  // Every answer: never cached (customer data), never sniffed, never framed;
  // the page runs only its own scripts.
  httplib::Headers headers = {
      {"Cache-Control", "no-store"},
      {"X-Content-Type-Options", "nosniff"},
      {"Content-Security-Policy",
       "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"},
      {"Referrer-Policy", "no-referrer"},
  };
  if (backends.https) headers.emplace("Strict-Transport-Security", "max-age=31536000");
  server->set_default_headers(std::move(headers));

  server->Get("/", [](const httplib::Request&, httplib::Response& res) {
    ServePageFile("index.html", res);
  });
  server->Get(R"(/page/([A-Za-z0-9._-]+))",
              [](const httplib::Request& req, httplib::Response& res) {
                ServePageFile(req.matches[1].str(), res);
              });

  server->Get("/api/v1/whoami",
              [b](const httplib::Request& req, httplib::Response& res) { WhoAmI(b, req, res); });

  // predlog.v1.PredictionLog
  server->Get(R"(/api/v1/predictions/([^/]+))",
              Route<v1::GetPredictionRequest, v1::PredictionRecord>(
                  b, "/predlog.v1.PredictionLog/GetPrediction", {"prediction_id"},
                  [log](const v1::GetPredictionRequest& r) { return log->GetPrediction(r); }));
  server->Get("/api/v1/predictions",
              Route<v1::ListPredictionsRequest, v1::ListPredictionsResponse>(
                  b, "/predlog.v1.PredictionLog/ListPredictions", {},
                  [log](const v1::ListPredictionsRequest& r) { return log->ListPredictions(r); }));

  server->Get(
      R"(/api/v1/entities/([^/]+)/([^/]+)/changes)",
      Route<v1::ListEntityChangesRequest, v1::ListEntityChangesResponse>(
          b, "/predlog.v1.PredictionLog/ListEntityChanges", {"entity_type", "entity_id"},
          [log](const v1::ListEntityChangesRequest& r) { return log->ListEntityChanges(r); }));

  // predlog.v1.Registry
  server->Get("/api/v1/models",
              Route<v1::ListModelsRequest, v1::ListModelsResponse>(
                  b, "/predlog.v1.Registry/ListModels", {},
                  [registry](const v1::ListModelsRequest& r) { return registry->ListModels(r); }));
  server->Get(R"(/api/v1/models/([^/]+)/versions/([^/]+))",
              Route<v1::GetModelRequest, v1::ModelRecord>(
                  b, "/predlog.v1.Registry/GetModel", {"name", "version"},
                  [registry](const v1::GetModelRequest& r) { return registry->GetModel(r); }));
  server->Get(R"(/api/v1/datasets/([^/]+)/versions/([^/]+))",
              Route<v1::GetDatasetRequest, v1::DatasetRecord>(
                  b, "/predlog.v1.Registry/GetDataset", {"name", "version"},
                  [registry](const v1::GetDatasetRequest& r) { return registry->GetDataset(r); }));

  // predlog.v1.Replay
  server->Get(R"(/api/v1/predictions/([^/]+)/rerun)",
              Route<v1::RerunRequest, v1::RerunReport>(
                  b, "/predlog.v1.Replay/Rerun", {"prediction_id"},
                  [replayer](const v1::RerunRequest& r) -> absl::StatusOr<v1::RerunReport> {
                    if (replayer == nullptr) return NoShards("a re-run");
                    return replayer->Rerun(r);
                  }));
  server->Get(
      R"(/api/v1/traces/([^/]+)/rerun)",
      Route<v1::RerunTraceRequest, v1::RerunTraceReport>(
          b, "/predlog.v1.Replay/RerunTrace", {"trace_id"},
          [replayer](const v1::RerunTraceRequest& r) -> absl::StatusOr<v1::RerunTraceReport> {
            if (replayer == nullptr) return NoShards("a re-run");
            return replayer->RerunTrace(r);
          }));
  server->Get(R"(/api/v1/predictions/([^/]+)/lineage)",
              Route<v1::GetLineageRequest, v1::Lineage>(
                  b, "/predlog.v1.Replay/GetLineage", {"prediction_id"},
                  [replayer](const v1::GetLineageRequest& r) -> absl::StatusOr<v1::Lineage> {
                    if (replayer == nullptr) return NoShards("a lineage");
                    return replayer->GetLineage(r);
                  }));
  server->Get(R"(/api/v1/datasets/([^/]+)/versions/([^/]+)/impact)",
              Route<v1::GetImpactRequest, v1::Impact>(
                  b, "/predlog.v1.Replay/GetImpact", {"dataset.name", "dataset.version"},
                  [replayer](const v1::GetImpactRequest& r) -> absl::StatusOr<v1::Impact> {
                    if (replayer == nullptr) return NoShards("an impact");
                    return replayer->GetImpact(r);
                  }));
  server->Get(
      R"(/api/v1/entities/([^/]+)/([^/]+))",
      Route<v1::GetEntityAtRequest, v1::EntityAtResponse>(
          b, "/predlog.v1.Replay/GetEntityAt", {"entity_type", "entity_id"},
          [replayer](const v1::GetEntityAtRequest& r) -> absl::StatusOr<v1::EntityAtResponse> {
            if (replayer == nullptr) return NoShards("a state as of a cut");
            return replayer->GetEntityAt(r);
          }));
  server->Get(
      "/api/v1/registry",
      Route<v1::GetRegistryAtRequest, v1::RegistryAtResponse>(
          b, "/predlog.v1.Replay/GetRegistryAt", {},
          [replayer](const v1::GetRegistryAtRequest& r) -> absl::StatusOr<v1::RegistryAtResponse> {
            if (replayer == nullptr) return NoShards("the registry as of a cut");
            return replayer->GetRegistryAt(r);
          }));

  // predlog.v1.Audit
  server->Get("/api/v1/status",
              Route<v1::GetStatusRequest, v1::StatusResponse>(
                  b, "/predlog.v1.Audit/GetStatus", {},
                  [audit](const v1::GetStatusRequest&) -> absl::StatusOr<v1::StatusResponse> {
                    if (audit == nullptr) return NoShards("shard status");
                    return audit->Status();
                  }));
  server->Get(
      "/api/v1/access",
      Route<v1::ListAccessRequest, v1::ListAccessResponse>(
          b, "/predlog.v1.Audit/ListAccess", {},
          [access](const v1::ListAccessRequest& r) -> absl::StatusOr<v1::ListAccessResponse> {
            if (access == nullptr) return NoShards("the access trail");
            return access->List(r);
          }));
  server->Get(R"(/api/v1/predictions/([^/]+)/case)",
              [b](const httplib::Request& req, httplib::Response& res) { Case(b, req, res); });
  server->Get("/api/v1/export",
              [b](const httplib::Request& req, httplib::Response& res) { Export(b, req, res); });

  // Anything else under /api/ is not a route (registered last: httplib
  // tries handlers in order); every route is a GET.
  server->Get(R"(/api/.*)", [](const httplib::Request& req, httplib::Response& res) {
    ReplyError(absl::NotFoundError(absl::StrCat("no API route GET ", req.path,
                                                " (the routes: services/web/README.md)")),
               res);
  });
  const auto not_get = [](const httplib::Request& req, httplib::Response& res) {
    ReplyError(
        absl::InvalidArgumentError(absl::StrCat("the API is read-only: ", req.method, " ", req.path,
                                                " is not served (every route is a GET)")),
        res);
    res.status = 405;
    res.set_header("Allow", "GET");
  };
  server->Post(R"(/api/.*)", not_get);
  server->Put(R"(/api/.*)", not_get);
  server->Patch(R"(/api/.*)", not_get);
  server->Delete(R"(/api/.*)", not_get);
}

}  // namespace predlog::web
