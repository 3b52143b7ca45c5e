// predlogd: the predlog service. Parses flags, runs, maps the status to an exit code.
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "services/backup/backup.h"
#include "services/server/server.h"

ABSL_FLAG(std::string, data_dir, "./data", "Directory for shards and snapshots.");
ABSL_FLAG(std::string, artifact_dir, "",
          "Model artifact store; empty: <data_dir>/artifacts. Instances of one deployment share "
          "it: a registered model whose artifact is not in it is rejected.");
ABSL_FLAG(std::string, grpc_listen, "127.0.0.1:50051",
          "gRPC listen address (host:port). Anything but loopback needs --tls_cert, --tls_key "
          "and --identities: predlogd refuses to serve everyone in clear.");
ABSL_FLAG(std::string, tls_cert, "",
          "TLS on the gRPC port: the server's certificate chain (PEM file); with --tls_key.");
ABSL_FLAG(std::string, tls_key, "", "The private key of --tls_cert (PEM file, no passphrase).");
ABSL_FLAG(std::string, tls_client_ca, "",
          "With TLS: require client certificates signed by these CAs (PEM file) and verify them "
          "(mTLS); identities may then be named by certificate (cert: lines of --identities).");
ABSL_FLAG(std::string, identities, "",
          "Who may call what: the identities file (NAME ROLES CREDENTIAL lines; tokens only as "
          "their SHA-256, see `predlog auth new-token`). Every call is then checked against the "
          "role table, and events record the caller's identity as their actor. Empty: predlogd "
          "knows nobody (loopback only).");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:9464",
          "HTTP listen address (host:port): Prometheus /metrics and, with the gateway, the support "
          "page and its JSON API /api/v1 (loopback, or TLS with --tls_cert/--tls_key and "
          "--identities off loopback); empty turns it off.");
ABSL_FLAG(std::string, embedded_kafka_listen, "",
          "Fixed bootstrap address (IPv4 host:port) for the embedded broker; empty: none. "
          "Loopback only: the embedded broker has no authentication.");
ABSL_FLAG(std::string, kafka_brokers, "",
          "Kafka bootstrap servers; empty starts the embedded broker.");
ABSL_FLAG(std::string, kafka_properties, "",
          "A librdkafka properties file (name=value lines, # comments) for every Kafka client "
          "predlogd creates against --kafka_brokers: security.protocol, sasl.*, ssl.* "
          "(deploy/README.md, \"Security\"). Settings predlog makes itself are refused.");
ABSL_FLAG(int, partitions, 4, "Partitions (= shards) of predlog.events, >= 1.");
ABSL_FLAG(std::string, ingest_group, "predlog-ingest",
          "Kafka consumer group of the ingest: instances in one group split the partitions, "
          "each folding its share into its own --data_dir. Empty: fold every partition without "
          "a group (always so when this process runs the gateway in front of the embedded "
          "broker).");
ABSL_FLAG(uint64_t, snapshot_every_events, 100000,
          "Snapshot a shard after this many new records (0: never by count).");
ABSL_FLAG(int64_t, snapshot_every_seconds, 3600,
          "Snapshot a shard with new records after this many seconds (0: never by time).");
ABSL_FLAG(int, worker_threads, 4,
          "Threads for queries, replays and exports (kept apart from Log calls), >= 1.");
ABSL_FLAG(bool, sync, true,
          "fsync each shard's WAL before a group commit's writes are acknowledged. "
          "--sync=false acknowledges before the fsync: a killed process still loses nothing, "
          "but a power loss or OS crash can lose the newest acknowledged events.");
ABSL_FLAG(std::vector<std::string>, accept_data_loss, {},
          "A shard whose recovered log ends before what it had acknowledged (a truncated or "
          "damaged WAL) refuses writes and reads, naming the lost range. Restarting with "
          "--accept_data_loss=<shard>:<first>..<last> (as the refusal names it; comma-separated "
          "for several) records exactly that loss as a RecordsLost record in that shard's log "
          "(the lost indexes are never reused) and goes on; any other loss is still refused.");
ABSL_FLAG(uint64_t, min_free_mb, 256,
          "Writes get RESOURCE_EXHAUSTED (naming the data directory) while its filesystem has "
          "less than this many MiB free, and resume by themselves once there is more; the "
          "reserve keeps RocksDB from ever meeting a full disk. 0 turns the check off.");
ABSL_FLAG(uint64_t, shard_cache_mb, 64,
          "Each shard's RocksDB block cache, in MiB (one shard per partition plus the "
          "registry's): decompressed record and index blocks kept for reads. The OS page "
          "cache holds the compressed files besides.");
ABSL_FLAG(std::string, checkpoint_key, "",
          "File holding the Ed25519 signer key (a signed-note PRIVATE+KEY+... line, mode 0600) "
          "that signs every shard's checkpoints. Empty: <data_dir>/keys/checkpoint.key, "
          "generated on first start; its verifier key, which auditors pass to "
          "`predlog verify --key`, is printed at start and kept in <key file>.pub.");
ABSL_FLAG(uint64_t, checkpoint_every_events, 10000,
          "Sign a checkpoint of a shard after this many new records (0: never by count).");
ABSL_FLAG(int64_t, checkpoint_every_seconds, 60,
          "Sign a checkpoint of a shard with records not yet in one after this many seconds "
          "(0: never by time). Exports sign one of every shard they read besides.");
ABSL_FLAG(std::string, roles, "all",
          "What this process runs: all, or a comma list of broker, gateway, ingest, query.");
ABSL_FLAG(std::string, restore, "",
          "A backup directory (written by `predlog backup --out DIR`): before starting, restore "
          "its shards into --data_dir (which must hold no shards), its artifacts into "
          "--artifact_dir (or <data_dir>/artifacts) and its signing keys into <data_dir>/keys, "
          "each shard's backup checked first; then start normally. --partitions must equal the "
          "backup's.");
ABSL_FLAG(uint32_t, restore_backup_id, 0,
          "With --restore: the backup to restore, as listed in DIR/BACKUPS; 0: the latest.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("predlogd: the predlog audit-log service");
  absl::ParseCommandLine(argc, argv);
  // Debian builds abseil with assertions, which turns on Mutex deadlock
  // detection: a global graph updated on every lock (~2% of the CPU of a
  // Log call). Tests keep it; the service and benchmarks do not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // A client closing its socket must never kill the service (and with it the
  // embedded broker's in-memory messages).
  std::signal(SIGPIPE, SIG_IGN);
  predlog::services::ServerOptions options;
  absl::StatusOr<predlog::services::Roles> roles =
      predlog::services::ParseRoles(absl::GetFlag(FLAGS_roles));
  if (!roles.ok()) {
    std::cerr << "predlogd: " << roles.status().message() << "\n";
    return 2;
  }
  options.roles = *roles;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.artifact_dir = absl::GetFlag(FLAGS_artifact_dir);
  options.grpc_listen = absl::GetFlag(FLAGS_grpc_listen);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.identities_file = absl::GetFlag(FLAGS_identities);
  options.http_listen = absl::GetFlag(FLAGS_http_listen);
  options.kafka_brokers = absl::GetFlag(FLAGS_kafka_brokers);
  options.kafka_properties_file = absl::GetFlag(FLAGS_kafka_properties);
  options.embedded_kafka_listen = absl::GetFlag(FLAGS_embedded_kafka_listen);
  options.partitions = absl::GetFlag(FLAGS_partitions);
  options.ingest_group = absl::GetFlag(FLAGS_ingest_group);
  options.snapshot_every_events = absl::GetFlag(FLAGS_snapshot_every_events);
  options.snapshot_every_seconds = absl::GetFlag(FLAGS_snapshot_every_seconds);
  options.worker_threads = absl::GetFlag(FLAGS_worker_threads);
  options.sync = absl::GetFlag(FLAGS_sync);
  options.accept_data_loss = absl::GetFlag(FLAGS_accept_data_loss);
  options.min_free_bytes = absl::GetFlag(FLAGS_min_free_mb) << 20;
  options.shard_block_cache_bytes = absl::GetFlag(FLAGS_shard_cache_mb) << 20;
  options.checkpoint_key = absl::GetFlag(FLAGS_checkpoint_key);
  options.checkpoint_every_events = absl::GetFlag(FLAGS_checkpoint_every_events);
  options.checkpoint_every_seconds = absl::GetFlag(FLAGS_checkpoint_every_seconds);
  if (!absl::GetFlag(FLAGS_restore).empty()) {
    predlog::services::RestoreOptions restore;
    restore.backup_dir = absl::GetFlag(FLAGS_restore);
    if (absl::GetFlag(FLAGS_restore_backup_id) != 0) {
      restore.backup_id = absl::GetFlag(FLAGS_restore_backup_id);
    }
    restore.data_dir = options.data_dir;
    restore.artifact_dir = options.artifact_dir;
    restore.partitions = options.partitions;
    const absl::StatusOr<predlog::services::RestoreReport> restored =
        predlog::services::RestoreBackup(restore);
    if (!restored.ok()) {
      std::cerr << "predlogd: --restore " << restore.backup_dir << ": " << restored.status()
                << "\n";
      return absl::IsInvalidArgument(restored.status()) ? 2 : 1;
    }
    std::cerr << predlog::services::DescribeRestore(restore, *restored);
  } else if (absl::GetFlag(FLAGS_restore_backup_id) != 0) {
    std::cerr << "predlogd: --restore_backup_id needs --restore\n";
    return 2;
  }
  const absl::Status status = predlog::services::RunUntilSignalled(options);
  if (!status.ok()) {
    std::cerr << "predlogd: " << status << "\n";
    return absl::IsInvalidArgument(status) ? 2 : 1;
  }
  return 0;
}
