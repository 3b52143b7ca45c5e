#include "services/server/server.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "httplib.h"
#include "services/auth/auth.h"
#include "services/kafka/embedded_broker.h"
#include "services/kafka/ingest.h"
#include "services/kafka/producer.h"
#include "services/kafka/tcp_forwarder.h"
#include "services/server/grpc_services.h"
#include "services/server/listener_security.h"
#include "services/server/prediction_log.h"
#include "services/web/http_api.h"
#include "storage/logging.h"
#include "storage/signed_note.h"
#include "storage/status_macros.h"

namespace predlog::services {

// Destruction order (reverse of declaration) is the shutdown order: gRPC
// first, then the producer (flush), then the ingest, then the broker.
struct Server::Parts {
  std::unique_ptr<EmbeddedBroker> broker;
  std::unique_ptr<TcpForwarder> forwarder;
  std::unique_ptr<storage::ArtifactStore> artifacts;  // the ingest's registry shard checks it
  storage::NoteKeyFile checkpoint_key;                // the ingest's shard writers sign with it
  std::unique_ptr<Ingest> ingest;
  std::unique_ptr<Producer> producer;
  // Who the callers are; shared with the gRPC port's metadata processor.
  std::shared_ptr<const auth::Authorizer> authorizer;
  std::unique_ptr<PredictionLog> log;
  // Who read what: every recorded call's AccessRecorded (CallGate::access).
  std::unique_ptr<AccessTrail> access_trail;
  std::unique_ptr<PredictionLogService> service;
  std::unique_ptr<ModelRegistry> registry;
  std::unique_ptr<RegistryService> registry_service;
  std::unique_ptr<replay::Replayer> replayer;
  std::unique_ptr<ReplayService> replay_service;
  std::unique_ptr<Audit> audit;
  std::unique_ptr<AuditService> audit_service;
  std::unique_ptr<Admin> admin;
  std::unique_ptr<AdminService> admin_service;
  // Blocking work of calls (queries, replays, exports, artifact uploads) runs
  // here, not on gRPC's threads. It stops right after the gRPC server, whose
  // shutdown waits for every call, and so for all that work, to be answered.
  std::unique_ptr<WorkerPool> workers;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<httplib::Server> http_server;
  std::thread http_thread;
  std::string grpc_address;
  std::string http_address;
  std::string kafka_address;

  std::string RenderMetrics() const {
    std::string out;
    if (log != nullptr) log->metrics().Render(&out);
    if (producer != nullptr) {
      absl::StrAppend(&out,
                      "# HELP predlog_producer_queue_depth Messages awaiting Kafka delivery.\n"
                      "# TYPE predlog_producer_queue_depth gauge\npredlog_producer_queue_depth ",
                      producer->QueueDepth(), "\n");
    }
    if (ingest != nullptr) {
      RenderShardMetrics(ingest->Status(), &out);
      absl::StrAppend(&out,
                      "# HELP predlog_ingest_stalled_partitions Partitions that stopped folding "
                      "and could not be recovered.\n# TYPE predlog_ingest_stalled_partitions "
                      "gauge\npredlog_ingest_stalled_partitions ",
                      ingest->stalled_partitions(), "\n");
    }
    if (workers != nullptr) {
      absl::StrAppend(&out,
                      "# HELP predlog_worker_threads Threads for the blocking work of calls "
                      "(queries, replays, exports, uploads).\n# TYPE predlog_worker_threads "
                      "gauge\npredlog_worker_threads ",
                      workers->threads(),
                      "\n# HELP predlog_worker_queue_depth Calls whose blocking work waits for "
                      "a worker thread.\n# TYPE predlog_worker_queue_depth gauge\n"
                      "predlog_worker_queue_depth ",
                      workers->queued(), "\n");
    }
    if (replayer != nullptr) {
      const replay::ModelCache::Stats cache = replayer->model_cache().stats();
      absl::StrAppend(
          &out,
          "# HELP predlog_model_cache_hits_total Reruns served by an already loaded model.\n"
          "# TYPE predlog_model_cache_hits_total counter\npredlog_model_cache_hits_total ",
          cache.hits,
          "\n# HELP predlog_model_cache_loads_total Artifacts read, verified and loaded.\n"
          "# TYPE predlog_model_cache_loads_total counter\npredlog_model_cache_loads_total ",
          cache.misses,
          "\n# HELP predlog_model_cache_evictions_total Models dropped to stay under the "
          "memory bound.\n# TYPE predlog_model_cache_evictions_total counter\n"
          "predlog_model_cache_evictions_total ",
          cache.evictions,
          "\n# HELP predlog_model_cache_bytes Estimated memory of the loaded models.\n"
          "# TYPE predlog_model_cache_bytes gauge\npredlog_model_cache_bytes ",
          cache.bytes, "\n");
    }
    return out;
  }

  ~Parts() {
    if (http_server != nullptr) http_server->stop();
    if (http_thread.joinable()) http_thread.join();
    if (grpc_server != nullptr) {
      // Shutdown waits for every call to finish, and a durable Log finishes
      // only when its event is folded. If that has not happened by the
      // deadline, answer the waiting calls (UNAVAILABLE) so shutdown completes.
      absl::Notification shut_down;
      std::thread watchdog([&] {
        if (!shut_down.WaitForNotificationWithTimeout(absl::Seconds(5)) && ingest != nullptr) {
          ingest->CancelWaiters();
        }
      });
      grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      shut_down.Notify();
      watchdog.join();
    }
    grpc_server.reset();
    producer.reset();
    ingest.reset();
  }
};

namespace {

// "predlog-<host name>", with what a note key name may not hold replaced.
std::string DefaultKeyName() {
  char host[256] = {};
  std::string name = "predlog";
  if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0') {
    absl::StrAppend(&name, "-", host);
  }
  for (char& c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '+' || u <= 0x20 || u >= 0x7f) c = '_';
  }
  return name;
}

// Serves GET /metrics on options.http_listen ("host:port"; port 0 picks
// one) and, with the gateway here, the support page and its JSON API
// (services/web/http_api.h). Those hold customer data and take bearer
// tokens, so they follow the gRPC port's loopback rule: served on a loopback
// listener, or over TLS (the gRPC port's --tls_cert and --tls_key) with
// --identities; otherwise /metrics alone is served, and a line says why.
absl::Status StartHttp(const ServerOptions& options, Server::Parts* parts) {
  const std::string& listen = options.http_listen;
  if (listen.empty()) return absl::OkStatus();
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--http_listen ", listen, ": want host:port"));
  }
  const std::string host = listen.substr(0, colon);
  const bool loopback = auth::IsLoopbackAddress(listen);
  // HTTPS only where the page is served over it: /metrics stays plain HTTP
  // on an ingest-only or off-loopback listener without TLS and identities.
  const bool tls = parts->log != nullptr && !loopback && !options.tls_cert_file.empty() &&
                   !options.identities_file.empty();
  const bool serve_page = parts->log != nullptr && (loopback || tls);
  if (parts->log != nullptr && !serve_page) {
    PREDLOG_LOG(WARNING) << "predlogd: the support page and /api/v1 are not served on "
                            "--http_listen "
                         << listen
                         << ": off loopback they need TLS and identities as the gRPC port does "
                            "(--tls_cert, --tls_key, --identities); /metrics is";
  }
  if (tls) {
    auto https = std::make_unique<httplib::SSLServer>(options.tls_cert_file.c_str(),
                                                      options.tls_key_file.c_str());
    if (!https->is_valid()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--http_listen ", listen, ": cannot serve TLS with --tls_cert ",
                       options.tls_cert_file, " and --tls_key ", options.tls_key_file));
    }
    parts->http_server = std::move(https);
  } else {
    parts->http_server = std::make_unique<httplib::Server>();
  }
  // Page calls block for their access record, a re-run or an export: more
  // threads than httplib's default 8, so a few downloads leave room.
  parts->http_server->new_task_queue = [] { return new httplib::ThreadPool(16); };
  parts->http_server->Get("/metrics", [parts](const httplib::Request&, httplib::Response& res) {
    res.set_content(parts->RenderMetrics(), "text/plain; version=0.0.4");
  });
  if (port == 0) {
    port = parts->http_server->bind_to_any_port(host);
  } else if (!parts->http_server->bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(absl::StrCat("--http_listen ", listen, ": cannot listen there"));
  }
  parts->http_address = absl::StrCat(host, ":", port);
  if (serve_page) {
    web::HttpApiBackends backends;
    backends.authorizer = parts->authorizer.get();
    backends.access = parts->access_trail.get();
    backends.log = parts->log.get();
    backends.registry = parts->registry.get();
    backends.replayer = parts->replayer.get();
    backends.audit = parts->audit.get();
    backends.server_name =
        absl::StrCat(tls ? "https://" : "http://", parts->http_address, " (predlogd web page)");
    backends.https = tls;
    // Exports and case files are written here before they are sent; what a
    // crash left behind is removed now.
    backends.scratch_dir = options.data_dir + "/web-scratch";
    std::error_code ec;
    std::filesystem::remove_all(backends.scratch_dir, ec);
    std::filesystem::create_directories(backends.scratch_dir, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create ", backends.scratch_dir, ": ", ec.message()));
    }
    if (loopback) {
      backends.allowed_hosts = {parts->http_address, absl::StrCat("localhost:", port),
                                absl::StrCat("127.0.0.1:", port), absl::StrCat("[::1]:", port)};
    }
    web::RegisterHttpApi(backends, parts->http_server.get());
  }
  parts->http_thread =
      std::thread([server = parts->http_server.get()] { server->listen_after_bind(); });
  // stop() is a no-op before the accept loop runs; wait for it, so an early
  // shutdown cannot leave the thread listening forever.
  while (!parts->http_server->is_running()) absl::SleepFor(absl::Milliseconds(1));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Roles> ParseRoles(absl::string_view roles) {
  if (roles == "all") return Roles{};
  Roles out{false, false, false};
  bool query = false;
  for (absl::string_view role : absl::StrSplit(roles, ',')) {
    if (role == "broker") {
      out.broker = true;
    } else if (role == "ingest") {
      out.ingest = true;
    } else if (role == "gateway") {
      out.gateway = true;
    } else if (role == "query") {
      query = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--roles: unknown role '", role, "' (want all, or broker,gateway,ingest,query)"));
    }
  }
  if (query && !out.ingest) {
    return absl::InvalidArgumentError("--roles: query reads this process's shards; add ingest");
  }
  out.gateway |= query;
  if (!out.broker && !out.ingest && !out.gateway) {
    return absl::InvalidArgumentError("--roles is empty");
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  if (options.partitions < 1) return absl::InvalidArgumentError("--partitions must be >= 1");
  if (options.shard_block_cache_bytes == 0) {
    return absl::InvalidArgumentError("--shard_cache_mb must be >= 1");
  }
  if (options.snapshot_every_seconds < 0) {
    return absl::InvalidArgumentError("--snapshot_every_seconds must be >= 0");
  }
  const Roles& roles = options.roles;
  if (options.worker_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--worker_threads must be >= 1, not ", options.worker_threads));
  }
  if (roles.broker && !options.kafka_brokers.empty()) {
    return absl::InvalidArgumentError(
        "--kafka_brokers is set, so the broker role cannot run here (drop one of them)");
  }
  if (!roles.broker && options.kafka_brokers.empty()) {
    return absl::InvalidArgumentError(
        "--kafka_brokers is required when the broker role does not run in this process");
  }
  // Who may reach what is settled before anything starts listening.
  std::optional<GrpcSecurity> grpc_security;
  if (roles.gateway) {
    ASSIGN_OR_RETURN(grpc_security, PrepareGrpcSecurity(options));
  } else if (!options.tls_cert_file.empty() || !options.tls_key_file.empty() ||
             !options.tls_client_ca_file.empty() || !options.identities_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert, --tls_key, --tls_client_ca and --identities secure the gRPC port, and this "
        "process serves none (--roles has no gateway or query)");
  }
  if (roles.broker) RETURN_IF_ERROR(CheckEmbeddedKafkaListen(options));
  KafkaSettings kafka_properties;
  if (!options.kafka_properties_file.empty()) {
    if (options.kafka_brokers.empty()) {
      return absl::InvalidArgumentError(
          "--kafka_properties configures the clients of --kafka_brokers; the embedded broker "
          "takes no client settings (it has no security to configure)");
    }
    absl::StatusOr<KafkaSettings> loaded = LoadKafkaProperties(options.kafka_properties_file);
    if (!loaded.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--kafka_properties: ", loaded.status().message()));
    }
    kafka_properties = std::move(*loaded);
  }
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--data_dir ", options.data_dir, ": ", ec.message()));
  }
  auto parts = std::make_unique<Parts>();
  std::string incarnation;
  if (roles.broker) {
    ASSIGN_OR_RETURN(parts->broker, EmbeddedBroker::Start({options.partitions}));
    parts->kafka_address = parts->broker->bootstrap_servers();
    incarnation = parts->broker->incarnation();
    if (!options.embedded_kafka_listen.empty()) {
      ASSIGN_OR_RETURN(parts->forwarder,
                       TcpForwarder::Start(options.embedded_kafka_listen, parts->kafka_address));
      parts->kafka_address = options.embedded_kafka_listen;
    }
    std::ofstream(options.data_dir + "/embedded_kafka_address") << parts->kafka_address << "\n";
  } else {
    parts->kafka_address = options.kafka_brokers;
    ASSIGN_OR_RETURN(incarnation, DiscoverIncarnation(parts->kafka_address, absl::Seconds(10),
                                                      kafka_properties));
  }
  // The embedded broker (here or in another process) keeps messages in memory
  // only, so an ack must wait until the event is folded: that needs the ingest.
  const bool embedded_source = absl::StartsWith(incarnation, kEmbeddedIncarnationPrefix);
  if (embedded_source && roles.gateway && !roles.ingest) {
    return absl::InvalidArgumentError(
        "--roles: a gateway in front of the embedded broker needs the ingest role in the same "
        "process (its acks must wait until events are folded)");
  }
  if (roles.ingest || roles.gateway) {
    ASSIGN_OR_RETURN(
        parts->artifacts,
        storage::ArtifactStore::Open(options.artifact_dir.empty() ? options.data_dir + "/artifacts"
                                                                  : options.artifact_dir));
  }
  if (roles.ingest) {
    if (options.checkpoint_every_seconds < 0) {
      return absl::InvalidArgumentError("--checkpoint_every_seconds must be >= 0");
    }
    const std::string key_path = options.checkpoint_key.empty()
                                     ? options.data_dir + "/keys/checkpoint.key"
                                     : options.checkpoint_key;
    absl::StatusOr<storage::NoteKeyFile> key =
        storage::LoadNoteKeyFile(key_path, options.checkpoint_key.empty() ? DefaultKeyName() : "");
    if (!key.ok()) {
      return absl::Status(key.status().code(),
                          absl::StrCat("--checkpoint_key: ", key.status().message()));
    }
    parts->checkpoint_key = *std::move(key);
    if (parts->checkpoint_key.generated) {
      PREDLOG_LOG(INFO) << "predlogd: generated the checkpoint signing key " << key_path
                        << " (keep it secret and back it up; its verifier key is in " << key_path
                        << ".pub)";
    }
    IngestOptions ingest_options;
    ingest_options.checkpoint_signer = parts->checkpoint_key.signer.get();
    ingest_options.checkpoint_every_events = options.checkpoint_every_events;
    ingest_options.checkpoint_every = absl::Seconds(options.checkpoint_every_seconds);
    ingest_options.artifacts = parts->artifacts.get();
    ingest_options.data_dir = options.data_dir;
    ingest_options.bootstrap_servers = parts->kafka_address;
    ingest_options.incarnation = incarnation;
    ingest_options.partitions = options.partitions;
    ingest_options.group_id = options.ingest_group;
    ingest_options.client_properties = kafka_properties;
    if (embedded_source && roles.gateway && !options.ingest_group.empty()) {
      // Acks wait for folds in this process (the embedded broker keeps
      // messages in memory only), so no partition may move to another
      // instance. (It also spares the embedded coordinator's 3 s first join.)
      // The ingest's start line says it folds every partition without a group.
      ingest_options.group_id.clear();
    }
    ingest_options.snapshot_every_events = options.snapshot_every_events;
    ingest_options.snapshot_every = absl::Seconds(options.snapshot_every_seconds);
    ingest_options.sync_writes = options.sync;
    ingest_options.accept_data_loss = options.accept_data_loss;
    ingest_options.min_free_bytes = options.min_free_bytes;
    ingest_options.shard_block_cache_bytes = options.shard_block_cache_bytes;
    // A gateway here whose acks wait for folds through an embedded broker in
    // another process needs the mock's fetches answered at once. With the
    // broker here too, the gateway appends directly and only Kafka clients'
    // events wait for a fetch: the default keeps idle fetches few.
    if (embedded_source && roles.gateway && (!roles.broker || !options.direct_writes)) {
      ingest_options.embedded_fetch_wait = absl::Milliseconds(1);
    }
    ASSIGN_OR_RETURN(parts->ingest, Ingest::Start(ingest_options));
  }
  if (!roles.gateway) {
    RETURN_IF_ERROR(StartHttp(options, parts.get()));
    return std::unique_ptr<Server>(new Server(std::move(parts)));
  }

  ProducerOptions producer_options;
  producer_options.bootstrap_servers = parts->kafka_address;
  producer_options.client_properties = kafka_properties;
  ASSIGN_OR_RETURN(parts->producer, Producer::Open(producer_options));
  PredictionLogOptions log_options;
  // The embedded broker holds messages in memory only: an ack must mean folded.
  log_options.writer.always_wait_durable = embedded_source;
  // Everything on one machine (the embedded default): the gateway writes
  // straight into its shards, no broker hop; the embedded broker stays for
  // Kafka clients, whose events fold through the same shard writers.
  const bool direct = options.direct_writes && roles.broker && roles.ingest;
  log_options.writer.direct = direct;
  if (direct) {
    // The bound protects the embedded broker's ~5 MB per partition; direct
    // appends wait in memory only, one group commit at a time, so a whole
    // LogBatch of 10,000 1 KB events fits.
    log_options.writer.max_in_flight_bytes = 64 << 20;
  }
  parts->log =
      std::make_unique<PredictionLog>(parts->producer.get(), parts->ingest.get(), log_options);
  parts->workers = std::make_unique<WorkerPool>(options.worker_threads);
  parts->authorizer = grpc_security->authorizer;
  parts->access_trail =
      std::make_unique<AccessTrail>(parts->producer.get(), parts->ingest.get(), log_options.writer);
  CallGate gate;
  gate.authorizer = parts->authorizer.get();
  gate.access = parts->access_trail.get();
  gate.workers = parts->workers.get();
  parts->service = std::make_unique<PredictionLogService>(parts->log.get(), gate);
  ModelRegistryOptions registry_options;
  registry_options.writer.always_wait_durable = embedded_source;
  registry_options.writer.direct = direct;
  parts->registry = std::make_unique<ModelRegistry>(parts->producer.get(), parts->ingest.get(),
                                                    parts->artifacts.get(), registry_options);
  parts->registry_service = std::make_unique<RegistryService>(parts->registry.get(), gate);
  if (parts->ingest != nullptr) {
    parts->replayer = std::make_unique<replay::Replayer>(
        parts->log->shards(), parts->artifacts.get(), replay::RuntimeRegistry::WithBuiltins());
    parts->replay_service = std::make_unique<ReplayService>(parts->replayer.get(), gate);
    parts->audit = std::make_unique<Audit>(parts->ingest.get());
    parts->audit_service = std::make_unique<AuditService>(parts->audit.get(), gate);
    parts->admin =
        std::make_unique<Admin>(parts->ingest.get(), parts->artifacts.get(), options.data_dir);
    parts->admin_service = std::make_unique<AdminService>(parts->admin.get(), gate);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  // With identities, the credentials carry the metadata processor that checks
  // every call on this port against the role table before any handler runs.
  builder.AddListeningPort(options.grpc_listen, grpc_security->credentials, &port);
  const std::pair<const char*, grpc::Service*> services[] = {
      {predlog::v1::PredictionLog::service_full_name(), parts->service.get()},
      {predlog::v1::Registry::service_full_name(), parts->registry_service.get()},
      {predlog::v1::Replay::service_full_name(), parts->replay_service.get()},
      {predlog::v1::Audit::service_full_name(), parts->audit_service.get()},
      {predlog::v1::Admin::service_full_name(), parts->admin_service.get()}};
  for (const auto& [name, service] : services) {
    if (service == nullptr) continue;
    // Every method parses its own request (grpc_services.h); one left to
    // gRPC's synchronous default would answer UNIMPLEMENTED.
    if (service->has_synchronous_methods()) {
      return absl::InternalError(absl::StrCat(
          name, " has a method that is not registered raw: every method must parse its own ",
          "request (services/server/grpc_services.h)"));
    }
    builder.RegisterService(service);
  }
  // Artifact chunks: allow large messages (the default is 4 MB).
  builder.SetMaxReceiveMessageSize(64 << 20);
  parts->grpc_server = builder.BuildAndStart();
  if (parts->grpc_server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("--grpc_listen ", options.grpc_listen, ": cannot listen there"));
  }
  // gRPC's health protocol (grpc/health/v1): "" answers for the server, and
  // each service this process serves answers SERVING by its full name;
  // a service it does not serve stays NOT_FOUND.
  if (grpc::HealthCheckServiceInterface* health = parts->grpc_server->GetHealthCheckService()) {
    std::vector<std::string> served = {predlog::v1::PredictionLog::service_full_name(),
                                       predlog::v1::Registry::service_full_name()};
    if (parts->replay_service != nullptr) {
      served.push_back(predlog::v1::Replay::service_full_name());
    }
    if (parts->audit_service != nullptr) served.push_back(predlog::v1::Audit::service_full_name());
    if (parts->admin_service != nullptr) served.push_back(predlog::v1::Admin::service_full_name());
    for (const std::string& name : served) health->SetServingStatus(name, true);
  }
  parts->grpc_address =
      absl::StrCat(options.grpc_listen.substr(0, options.grpc_listen.rfind(':')), ":", port);
  RETURN_IF_ERROR(StartHttp(options, parts.get()));
  return std::unique_ptr<Server>(new Server(std::move(parts)));
}

Server::Server(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}
Server::~Server() = default;
const std::string& Server::grpc_address() const { return parts_->grpc_address; }
const std::string& Server::http_address() const { return parts_->http_address; }
const std::string& Server::kafka_address() const { return parts_->kafka_address; }
const std::string& Server::checkpoint_verifier_key() const {
  static const std::string* const kNone = new std::string;
  return parts_->checkpoint_key.signer != nullptr ? parts_->checkpoint_key.signer->verifier_key()
                                                  : *kNone;
}
bool Server::checkpoint_key_generated() const { return parts_->checkpoint_key.generated; }

absl::Status RunUntilSignalled(const ServerOptions& options) {
  // Block the signals in every thread (gRPC and librdkafka threads inherit
  // the mask), then wait for one here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Server::Start(options));
  std::cout << "predlogd listening:"
            << (server->grpc_address().empty() ? "" : " grpc=" + server->grpc_address())
            << (server->http_address().empty() ? "" : " http=" + server->http_address())
            << " kafka=" << server->kafka_address()
            << (options.roles.broker ? " (embedded broker)" : "")
            << " roles=" << (options.roles.broker ? "broker," : "")
            << (options.roles.ingest ? "ingest," : "") << (options.roles.gateway ? "gateway" : "")
            << " data_dir=" << options.data_dir;
  if (options.roles.gateway) {
    // How the gRPC port is secured: tls or plaintext, and who is known.
    std::cout << " grpc_security="
              << (options.tls_cert_file.empty()        ? "plaintext"
                  : options.tls_client_ca_file.empty() ? "tls"
                                                       : "mtls")
              << (options.identities_file.empty() ? ",no-identities" : ",identities");
  }
  std::cout << std::endl;
  if (!server->checkpoint_verifier_key().empty()) {
    std::cout << "predlogd: checkpoints are signed by " << server->checkpoint_verifier_key()
              << (server->checkpoint_key_generated() ? " (a key generated now)" : "")
              << "; `predlog verify --key` takes this verifier key" << std::endl;
  }
  int signal = 0;
  sigwait(&signals, &signal);
  PREDLOG_LOG(INFO) << "predlogd: signal " << signal << ", shutting down";
  server.reset();
  return absl::OkStatus();
}

}  // namespace predlog::services
