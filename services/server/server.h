// predlogd: wires the embedded broker (or a real cluster), the producer, the
// ingest and the gRPC server, as the roles ask.
#ifndef PREDLOG_SERVICES_SERVER_SERVER_H_
#define PREDLOG_SERVICES_SERVER_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace predlog::services {

// What one predlogd process runs. The gRPC server (gateway and queries) needs
// the ingest in the same process for reads and for durable acks.
struct Roles {
  bool broker = true;   // the embedded Kafka-protocol broker
  bool ingest = true;   // consume predlog.events into the shards
  bool gateway = true;  // gRPC: PredictionLog, Registry, Replay (Replay needs ingest here)
};

// Parses --roles: "all", or a comma list of broker, gateway, ingest, query
// ("query" is served by the gateway's gRPC server from this process's shards,
// so it implies gateway and needs ingest). INVALID_ARGUMENT names the bad role.
absl::StatusOr<Roles> ParseRoles(absl::string_view roles);

struct ServerOptions {
  Roles roles;
  std::string data_dir = "./data";
  // The model artifact store; empty: <data_dir>/artifacts. Every instance of
  // one deployment must share it (a shared filesystem): the gateway that
  // registers a model stores the artifact there, and every instance's
  // registry fold rejects a ModelRegistered whose artifact it cannot find.
  std::string artifact_dir;
  // Must be a loopback address unless both TLS and identities are set (the
  // loopback rule, listener_security.h).
  std::string grpc_listen = "127.0.0.1:50051";
  // TLS on the gRPC listener: the certificate chain and its private key, PEM
  // files (--tls_cert, --tls_key); both or neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // With TLS: require client certificates signed by these CAs (PEM), and
  // verify them (--tls_client_ca, mTLS). Empty: no client certificates.
  std::string tls_client_ca_file;
  // Who may call what (--identities; the format is in
  // services/auth/identities.cc). Empty: predlogd knows nobody and every
  // caller may call everything (loopback only); events record actor "".
  std::string identities_file;
  // Prometheus /metrics over HTTP; port 0 picks one; empty turns it off.
  std::string http_listen = "127.0.0.1:9464";
  // Empty: use the embedded broker (the broker role must run here).
  std::string kafka_brokers;
  // librdkafka properties (security.protocol, sasl.*, ssl.*, ...) for every
  // Kafka client against kafka_brokers (--kafka_properties; the format is at
  // ParseKafkaProperties in services/kafka/kafka_config.h). Needs
  // kafka_brokers.
  std::string kafka_properties_file;
  // A fixed bootstrap address for the embedded broker (forwarded to the port
  // it picked); empty: none. Loopback only: the broker has no authentication.
  std::string embedded_kafka_listen;
  int partitions = 4;
  // Kafka consumer group the ingest joins to split the partitions with other
  // ingest instances (each with its own data_dir); empty: fold every
  // partition without a group. Not joined when this process also runs the
  // gateway in front of the embedded broker: those acks wait for folds here,
  // so every partition must stay here.
  std::string ingest_group = "predlog-ingest";
  // Snapshot schedule per shard (0 turns that trigger off).
  uint64_t snapshot_every_events = 100'000;
  int64_t snapshot_every_seconds = 3600;
  // Threads for reads (queries, replays, exports), kept off gRPC's own
  // threads so that a slow read never delays a Log ack. >= 1.
  int worker_threads = 4;
  // With the broker and the ingest in this process (the embedded default),
  // the gateway appends straight into its shards. False sends its writes
  // through the embedded broker and the ingest instead, as a Kafka
  // deployment does (tests and benchmarks compare the two paths).
  bool direct_writes = true;
  // fsync the shards' WAL in every group commit before its acks (--sync).
  bool sync = true;
  // Accepted losses of acknowledged records, "<shard>:<first>..<last>"
  // each (--accept_data_loss; IngestOptions::accept_data_loss).
  std::vector<std::string> accept_data_loss;
  // Free bytes below which the shards refuse writes (--min_free_mb).
  uint64_t min_free_bytes = uint64_t{256} << 20;
  // Each shard's block cache (--shard_cache_mb): decompressed blocks of
  // records and indexes kept for reads. Must be > 0.
  size_t shard_block_cache_bytes = size_t{64} << 20;
  // The signer key file (storage/signed_note.h LoadNoteKeyFile) whose key
  // signs every shard's checkpoints (--checkpoint_key). Empty:
  // <data_dir>/keys/checkpoint.key, generated on first start (named
  // "predlog-<host name>"), its verifier key printed and kept beside it.
  std::string checkpoint_key;
  // Checkpoint schedule per shard (0 turns that trigger off); exports and
  // Audit.SignCheckpoints sign one besides.
  uint64_t checkpoint_every_events = 10'000;
  int64_t checkpoint_every_seconds = 60;
};

// A running predlogd. Thread-safe.
class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
  // Stops accepting, finishes in-flight calls and batches, flushes, closes.
  ~Server();

  // The address gRPC listens on (with the port it picked when given :0);
  // empty without the gateway role.
  const std::string& grpc_address() const;
  // The HTTP (metrics) address, with the picked port; empty when off.
  const std::string& http_address() const;
  // The Kafka bootstrap address in use.
  const std::string& kafka_address() const;
  // The verifier key of the checkpoints' signer ("name+id+key"), and whether
  // this start generated the key; empty without the ingest role.
  const std::string& checkpoint_verifier_key() const;
  bool checkpoint_key_generated() const;

  // The running pieces; public only so server.cc's helpers can name it.
  struct Parts;

 private:
  explicit Server(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

// Runs until SIGINT or SIGTERM; the status of startup or shutdown.
absl::Status RunUntilSignalled(const ServerOptions& options);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_SERVER_H_
