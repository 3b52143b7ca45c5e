// The support page and its JSON API, served on predlogd's HTTP listener
// beside /metrics.
//
// /api/v1/ mirrors the gRPC read calls (routes in README.md): each route is
// one gRPC method, its request built from the path and query parameters and
// its answer the method's response, both in the protobuf JSON mapping
// (transcode.h). A route calls the same service class the gRPC adapter of
// its method calls (PredictionLog, ModelRegistry, Replayer, Audit), through
// the same gates:
// - who: `Authorization: Bearer <token>` is checked by the Authorizer against
//   the role table under the route's gRPC method, as the gRPC port's
//   metadata processor checks a call (401 unauthenticated, 403 not allowed);
//   client certificates are a gRPC-only credential;
// - the access trail: a route whose method the role table marks recorded is
//   answered only once its AccessRecorded is durable (peer "http:<address>"),
//   and refused with the trail's error otherwise;
// - errors: the class's absl::Status as HTTP status + JSON (transcode.h);
// - browsers: a call another site's page makes (Sec-Fetch-Site cross-site or
//   same-site) or one whose Host is not this listener's (DNS rebinding) is
//   refused 403, so only predlogd's own page, and programs, use the API.
// A recorded call waits at most 30 s for its record, then answers 503.
// Besides the methods: GET /api/v1/whoami (the caller, its roles and the
// methods it may call: what the page shows), GET /api/v1/export (one
// customer's verifiable export, a tar of the JSONL file and its manifest,
// as `predlog export --subject` writes them), GET
// /api/v1/predictions/{id}/case (the case file `predlog case` writes, as a
// tar; each call it makes is admitted and recorded under its own method) and
// the page's files (GET / and /page/<file>, embedded at build time from
// services/web/page/). Every other method on /api/ answers 405.
//
// httplib runs each request on a thread of its own pool: the calls block
// there (never on gRPC's threads). Thread-safe.
#ifndef PREDLOG_SERVICES_WEB_HTTP_API_H_
#define PREDLOG_SERVICES_WEB_HTTP_API_H_

#include <string>
#include <vector>

#include "replay/replayer.h"
#include "services/auth/auth.h"
#include "services/server/access_trail.h"
#include "services/server/audit.h"
#include "services/server/model_registry.h"
#include "services/server/prediction_log.h"

namespace httplib {
class Server;
}

namespace predlog::web {

// What the routes call. Borrowed; each must outlive the HTTP server.
struct HttpApiBackends {
  const auth::Authorizer* authorizer = nullptr;  // required
  // Null: no call is recorded (a gateway without an access trail).
  services::AccessTrail* access = nullptr;
  const services::PredictionLog* log = nullptr;       // required
  const services::ModelRegistry* registry = nullptr;  // required
  // Null (no shards here): their routes answer 503.
  const replay::Replayer* replayer = nullptr;
  const services::Audit* audit = nullptr;
  // Named in export manifests as the server (ExportManifest.server).
  std::string server_name;
  // Where exports and case files are written before they are sent (each
  // call in a directory of its own, removed when it is answered). Required;
  // predlogd uses <data_dir>/web-scratch and empties it at start.
  std::string scratch_dir;
  // The Host header values a request may carry ("127.0.0.1:9464",
  // "localhost:9464"); empty: any (a TLS listener, whose certificate names
  // its hosts). Against DNS rebinding on a loopback listener.
  std::vector<std::string> allowed_hosts;
  // The listener speaks HTTPS: answers carry Strict-Transport-Security.
  bool https = false;
};

// Registers the page and /api/v1/ on `server` (before it listens). Every
// other /api/v1/ path answers 404 naming it.
void RegisterHttpApi(const HttpApiBackends& backends, httplib::Server* server);

}  // namespace predlog::web

#endif  // PREDLOG_SERVICES_WEB_HTTP_API_H_
