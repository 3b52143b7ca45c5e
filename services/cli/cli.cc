#include "services/cli/cli.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "services/cli/cli_internal.h"

namespace predlog::services {
namespace cli_internal {
namespace {

constexpr absl::string_view kGlobalHelp =
    "global flags (any subcommand):\n"
    "  --server HOST:PORT       predlogd to talk to; default: $PREDLOG_SERVER, else\n"
    "                           127.0.0.1:50051\n"
    "  --json                   protobuf JSON on stdout, one object a line, bytes exact\n"
    "  --timeout_seconds N      each call's deadline; default: 30\n"
    "  --tls_ca FILE            talk TLS, trusting predlogd's certificate if this CA\n"
    "                           (PEM) signed it; default: plaintext\n"
    "  --tls_cert FILE          a client certificate (PEM), for a predlogd with\n"
    "  --tls_key FILE           --tls_client_ca, and its key; both need --tls_ca\n"
    "  --token_file FILE        the bearer token to send (default: $PREDLOG_TOKEN);\n"
    "                           `predlog auth new-token` makes one\n"
    "  --help, -h               this help\n"
    "\n"
    "exit codes: 0 ok; 1 not found, a failed request or verification, a logged line\n"
    "not recorded; 2 a usage error naming the flag.\n";

// `known`: every flag some subcommand takes; anything else is named as
// unknown before its value is looked for.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& raw,
                               const std::set<std::string>& known) {
  Args args;
  for (size_t i = 0; i < raw.size(); ++i) {
    const std::string& a = raw[i];
    if (a == "-h") {
      args.flags["help"].push_back("true");
      continue;
    }
    if (!absl::StartsWith(a, "--") || a == "--") {
      args.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (known.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    } else if (kBoolFlags.count(name) > 0) {
      value = "true";
    } else if (i + 1 < raw.size()) {
      value = raw[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
    args.flags[name].push_back(value);
  }
  return args;
}

}  // namespace

// Each subcommand's usage line, its one-line summary for `predlog --help`,
// and the body of `predlog SUBCOMMAND --help`: every flag with its default,
// then an example.
const std::map<std::string, Cli::Command>& Cli::Commands() {
  static const auto* commands = new std::map<std::string, Command>{
      {"log",
       {"log < predictions.jsonl",
        "log predictions read as JSON lines from stdin",
        "Each line is a LogRequest ({\"prediction\": {...}, \"actor\": ...}) or a bare\n"
        "PredictionLogged, in protobuf JSON. Prints one receipt per line: APPLIED,\n"
        "DUPLICATE, CONFLICT, REJECTED or ERROR(code) with the reason. Exit 1 when any\n"
        "line was refused, CONFLICT, REJECTED or an error.\n"
        "\n"
        "flags: none besides the global ones\n"
        "\n"
        "example:\n"
        "  predlog log < predictions.jsonl\n",
        {},
        0,
        0,
        &Cli::Log}},
      {"get",
       {"get PREDICTION_ID",
        "show one recorded prediction: its inputs, output, model and position",
        "flags: none besides the global ones\n"
        "\n"
        "example:\n"
        "  predlog get p-000123\n",
        {},
        1,
        1,
        &Cli::Get}},
      {"trail",
       {"trail --subject S [--from T] [--to T] [--model name@version] [--limit N]   "
        "(or --model alone, or --trace ID)",
        "list a subject's or a trace's predictions in served order (a model's: shard by shard)",
        "flags:\n"
        "  --subject S              the subject whose trail to list (or give --model alone)\n"
        "  --model name@version     only this model's predictions; alone, every subject's\n"
        "  --trace ID               alone: the predictions of this trace (a model chain),\n"
        "                           whatever their subjects, in served order\n"
        "  --from T, --to T         served at or after / before T (RFC 3339 or a date,\n"
        "                           UTC); default: no bound (not with --trace)\n"
        "  --limit N                at most N predictions; default: all\n"
        "\n"
        "examples:\n"
        "  predlog trail --subject c-0042 --from 2026-11-01 --to 2026-12-01\n"
        "  predlog trail --trace trace-7f3a\n",
        {"subject", "from", "to", "model", "trace", "limit"},
        0,
        0,
        &Cli::Trail}},
      {"replay",
       {"replay PREDICTION_ID [--explain] [--against name@version] [--subject S]",
        "re-run a recorded prediction with its model and compare the outputs",
        "flags:\n"
        "  --explain                show each input's contribution to the score\n"
        "  --against name@version   also run this model on the same inputs (a\n"
        "                           counterfactual); default: none\n"
        "  --subject S              look only in this subject's shards (its own, and those\n"
        "                           holding misrouted events); default: every shard\n"
        "\n"
        "example:\n"
        "  predlog replay p-000123 --explain --against credit@v2\n",
        {"explain", "against", "subject"},
        1,
        1,
        &Cli::Replay}},
      {"trace",
       {"trace TRACE_ID",
        "re-run every prediction of a trace, parents first; name the first divergent step",
        "flags: none besides the global ones\n"
        "\n"
        "example:\n"
        "  predlog trace trace-7f3a\n",
        {},
        1,
        1,
        &Cli::Trace}},
      {"state",
       {"state --entity TYPE/ID [--at TIME | --position N | --after SHARD#INDEX]",
        "show an entity's recorded fields as of a time or a position",
        "flags:\n"
        "  --entity TYPE/ID         the entity, e.g. customer/c-0042 (required)\n"
        "  --at TIME                as of this time (RFC 3339 or a date, UTC): the changes\n"
        "                           predlog had appended before it, by its own clock (not\n"
        "                           the producers' recorded_at); default: now\n"
        "  --position N             as of the first N records of the entity's shard\n"
        "  --after SHARD#INDEX      right after that record (a prediction's position, as\n"
        "                           `predlog get` shows it): the record at decision time\n"
        "\n"
        "examples:\n"
        "  predlog state --entity customer/c-0042 --at 2026-11-27T10:00:00Z\n"
        "  predlog state --entity customer/c-0042 --after predlog.events-3#17\n",
        {"entity", "at", "position", "after"},
        0,
        0,
        &Cli::State}},
      {"changes",
       {"changes --entity TYPE/ID [--from T] [--to T] [--limit N]",
        "list an entity's recorded changes, oldest first, with their positions",
        "flags:\n"
        "  --entity TYPE/ID         the entity, e.g. customer/c-0042 (required)\n"
        "  --from T, --to T         recorded at or after / before T (RFC 3339 or a date,\n"
        "                           UTC; the producer's recorded_at); default: no bound\n"
        "  --limit N                at most N changes; default: all\n"
        "\n"
        "Each change's POSITION is where `predlog state --after` shows the record as\n"
        "that change left it.\n"
        "\n"
        "example:\n"
        "  predlog changes --entity customer/c-0042 --from 2026-11-01\n",
        {"entity", "from", "to", "limit"},
        0,
        0,
        &Cli::Changes}},
      {"models",
       {"models [--name NAME]",
        "list registered models and where they are deployed",
        "flags:\n"
        "  --name NAME              only this model's versions; default: every model\n"
        "\n"
        "example:\n"
        "  predlog models --name credit\n",
        {"name"},
        0,
        0,
        &Cli::Models}},
      {"model",
       {"model register --name N --version V --file F [--framework xgboost] "
        "[--pipeline name@version] [--code-commit C] [--dataset name@version=sha256]... "
        "[--hyperparameter k=v]... [--library k=v]... [--feature-names a,b,...] "
        "[--description D] [--metric name=value[@dataset@version]]... "
        "[--training-started T] [--training-duration D] [--run-id ID]\n"
        "  model deploy --route R --model name@version [--traffic 1.0] [--reason TEXT]\n"
        "  model get name@version",
        "register a model artifact, deploy a registered model on a route, or show one",
        "model register flags:\n"
        "  --name N, --version V    the model's name and version (required)\n"
        "  --file F                 the artifact file to upload (required)\n"
        "  --framework NAME         default: xgboost\n"
        "  --pipeline name@version  the feature pipeline it was trained with; default: none\n"
        "  --code-commit C          the training code's commit; default: none\n"
        "  --dataset name@version=sha256   a training dataset; repeatable\n"
        "  --hyperparameter k=v     repeatable\n"
        "  --library k=v            a library and its version; repeatable\n"
        "  --feature-names a,b,...  the input names in the artifact's order; default: the\n"
        "                           artifact's own\n"
        "  --description D          default: empty\n"
        "  --metric name=value[@dataset@version]   an evaluation result and the data it was\n"
        "                           measured on; repeatable\n"
        "  --training-started T     when training started (RFC 3339); default: unrecorded\n"
        "  --training-duration D    how long it took (e.g. 1h30m, 95s; kept in ms);\n"
        "                           default: unrecorded\n"
        "  --run-id ID              the training run in an external tracker (e.g. an MLflow\n"
        "                           run id); default: none\n"
        "  --actor A                who registers it; default: empty\n"
        "model deploy flags:\n"
        "  --route R                the serving route (required)\n"
        "  --model name@version     a registered model (required)\n"
        "  --traffic F              the share of the route's traffic, 0 to 1; default: 1.0\n"
        "  --reason TEXT            why; default: empty\n"
        "  --actor A                who deploys it; default: empty\n"
        "\n"
        "examples:\n"
        "  predlog model register --name credit --version v3 --file credit-v3.ubj \\\n"
        "      --dataset applications@2026-11=9f2c... --feature-names income,debt,age\n"
        "  predlog model deploy --route credit-limit --model credit@v3 --traffic 0.1\n"
        "  predlog model get credit@v3\n",
        {"name",
         "version",
         "file",
         "framework",
         "pipeline",
         "code-commit",
         "dataset",
         "hyperparameter",
         "library",
         "feature-names",
         "description",
         "route",
         "model",
         "traffic",
         "reason",
         "actor",
         "metric",
         "training-started",
         "training-duration",
         "run-id"},
        1,
        2,
        &Cli::Model}},
      {"dataset",
       {"dataset register --name N --version V (--digest sha256:HEX | --path P) "
        "[--source TEXT] [--derived-from name@version]... "
        "[--derived-from-model name@version]... [--pipeline name@version] "
        "[--pipeline-digest HEX] [--rows N] [--reason TEXT]\n"
        "  dataset get name@version",
        "register a dataset version by its content digest, or show one",
        "dataset register flags:\n"
        "  --name N, --version V    the dataset's name and version (required); a version\n"
        "                           is write-once: the same content again is a DUPLICATE,\n"
        "                           other content is refused (ALREADY_EXISTS)\n"
        "  --digest sha256:HEX      the content's SHA-256 (the \"sha256:\" prefix optional)\n"
        "  --path P                 or compute it here: a file's SHA-256, or for a\n"
        "                           directory the SHA-256 of the lines\n"
        "                             <sha256 hex of file>  <relative/path>\\n\n"
        "                           of every regular file under it, sorted by path (byte\n"
        "                           order, '/' separators; `sha256sum` output's shape);\n"
        "                           symbolic links and special files are refused; the\n"
        "                           sizes are summed into the size\n"
        "  --size-bytes N           with --digest: the content's size; default: unknown\n"
        "  --source TEXT            where it was collected or extracted from (a system, a\n"
        "                           query, a URI); default: none\n"
        "  --derived-from name@version        a parent dataset (need not be registered);\n"
        "                           repeatable\n"
        "  --derived-from-model name@version  a model whose outputs it holds; repeatable\n"
        "  --pipeline name@version  the pipeline that produced it; default: none\n"
        "  --pipeline-digest HEX    that pipeline's code digest (e.g. a git commit)\n"
        "  --rows N                 its row count; default: unknown\n"
        "  --reason TEXT            why it is registered; default: empty\n"
        "  --actor A                who registers it (recorded as claimed); default: empty\n"
        "\n"
        "examples:\n"
        "  predlog dataset register --name applications --version 2026-10 --path data/apps \\\n"
        "      --source 'postgres://crm/applications WHERE month = 2026-10' --rows 120000\n"
        "  predlog dataset get applications@2026-10\n",
        {"name", "version", "digest", "path", "size-bytes", "source", "derived-from",
         "derived-from-model", "pipeline", "pipeline-digest", "rows", "reason", "actor"},
        1,
        2,
        &Cli::Dataset}},
      {"lineage",
       {"lineage PREDICTION_ID [--subject S] [--at TIME | --after SHARD#INDEX] [--dot]",
        "show where a prediction came from: model, artifact, data, pipelines, parents",
        "flags:\n"
        "  --subject S              look only in this subject's shard; default: every shard\n"
        "  --at TIME                the registry as of this time; default: now\n"
        "  --after SHARD#INDEX      the registry right after that record (a prediction's\n"
        "                           position: what was registered when it was served)\n"
        "  --dot                    print Graphviz instead of a tree (| dot -Tsvg)\n"
        "  --json                   the graph as protobuf JSON (nodes and edges)\n"
        "\n"
        "The tree goes upstream: the prediction, the model version that made it (with its\n"
        "artifact digest), what the model was trained and evaluated on, where that data\n"
        "came from, the pipelines that made it, and the parent predictions of a model\n"
        "chain. \"(not registered)\" marks what is named but was never registered; a node\n"
        "met again says \"(above)\".\n"
        "\n"
        "examples:\n"
        "  predlog lineage p-000042\n"
        "  predlog lineage p-000042 --dot | dot -Tsvg > p-000042.svg\n",
        {"subject", "at", "after", "dot"},
        1,
        1,
        &Cli::Lineage}},
      {"impact",
       {"impact DATASET@VERSION [--from T] [--to T] [--at TIME | --after SHARD#INDEX] "
        "[--limit N | --all] [--page-token T]",
        "which decisions, for which customers, did this dataset touch?",
        "flags:\n"
        "  --from T, --to T         only predictions served in [from, to); default: all\n"
        "  --at TIME                the registry and the log as of this time; default: now\n"
        "  --after SHARD#INDEX      ... or right after that record\n"
        "  --limit N                predictions listed; default: 20\n"
        "  --all                    list every impacted prediction (pages of 10,000)\n"
        "  --page-token T           the next page, as the previous output names it\n"
        "\n"
        "Prints the datasets derived from it and the models trained on them (a tree,\n"
        "edges pointing upstream), the predictions touched counted per model version\n"
        "with when they were served, then the predictions: those of downstream models,\n"
        "and those of other models that read an impacted dataset (their data_sources).\n"
        "\n"
        "examples:\n"
        "  predlog impact applications@2026-10\n"
        "  predlog impact applications@2026-10 --all --json > impacted.jsonl\n"
        "  predlog export --impact applications@2026-10 --out impacted.jsonl   (verifiable)\n",
        {"from", "to", "at", "after", "limit", "all", "page-token"},
        1,
        1,
        &Cli::Impact}},
      {"export",
       {"export (--subject S | --model name@version | --impact DATASET@VERSION | --all | "
        "--access-trail) [--from T] [--to T] "
        "--format jsonl|csv --out FILE   (writes FILE.manifest.json beside it)",
        "export a trail with its hashes and a manifest, for an auditor",
        "flags:\n"
        "  --subject S | --model name@version | --all   what to export (exactly one)\n"
        "  --impact DATASET@VERSION or the predictions `predlog impact` finds for that\n"
        "                           dataset (of the models downstream of it, or that read\n"
        "                           an impacted dataset); the manifest names both sets;\n"
        "                           with --at TIME or --after SHARD#INDEX, the models and\n"
        "                           datasets downstream as the registry stood then\n"
        "  --access-trail           or the access trail (who read what; not in --all)\n"
        "  --from T, --to T         served at or after / before T (--all, --access-trail:\n"
        "                           appended at, as each shard's cut); default: no bound\n"
        "  --format jsonl|csv       default: jsonl\n"
        "  --out FILE               the file to write (required); FILE.manifest.json\n"
        "                           is written beside it (FILE.partial until complete;\n"
        "                           removed when the export fails)\n"
        "\n"
        "Records predlogd cannot read (a corrupt block) are left out and listed in the\n"
        "manifest; the rest is exported, with a warning naming them, exit 1.\n"
        "\n"
        "example:\n"
        "  predlog export --subject c-0042 --format csv --out c-0042.csv\n",
        {"subject", "model", "impact", "at", "after", "all", "access-trail", "from", "to", "format",
         "out"},
        0,
        0,
        &Cli::Export}},
      {"verify",
       {"verify FILE MANIFEST [--key KEY [--not-older-than DURATION]] [--server HOST:PORT]\n"
        "                                                         (offline without --server)",
        "check an export against its manifest, its signed checkpoints, or predlogd",
        "Checks leaf hashes, chain continuity, the manifest's ranges, that every\n"
        "record matches the manifest's filter, and the file's digest; exit 1 names the\n"
        "first failure. An export with records that could not be read (listed in its\n"
        "manifest) is reported range by range as INCOMPLETE, exit 1. Without --key it\n"
        "cannot prove the manifest came from predlog.\n"
        "\n"
        "flags:\n"
        "  --key KEY                predlogd's checkpoint verifier key (printed at its\n"
        "                           start; in <data_dir>/keys/checkpoint.key.pub), or a\n"
        "                           file holding it: each shard's checkpoint must be\n"
        "                           signed by it and every record proven in its tree, so\n"
        "                           re-encoded, forged or appended records fail however\n"
        "                           the manifest was rewritten; in an --all export also\n"
        "                           dropped or truncated records (with --from/--to too:\n"
        "                           the records just outside each shard's run are proven\n"
        "                           to be outside the range) and a shard left out whole\n"
        "                           (the checkpoints name the shards). Prints when each\n"
        "                           checkpoint was signed. Offline.\n"
        "  --not-older-than DURATION  with --key: fail, naming the shard, when a checkpoint\n"
        "                           was signed longer than DURATION ago (10m, 24h, 1h30m)\n"
        "                           or carries no signing time\n"
        "  --server HOST:PORT       after the offline checks, compare the manifest's chain\n"
        "                           anchors with the live shards of that predlogd; each\n"
        "                           mismatch is named, exit 1. Only when given: verify\n"
        "                           does not use $PREDLOG_SERVER\n"
        "\n"
        "examples:\n"
        "  predlog verify --key data/keys/checkpoint.key.pub c-0042.csv "
        "c-0042.csv.manifest.json\n"
        "  predlog verify --key data/keys/checkpoint.key.pub --not-older-than 24h \\\n"
        "      c-0042.csv c-0042.csv.manifest.json\n"
        "  predlog verify --server 127.0.0.1:50051 c-0042.csv c-0042.csv.manifest.json\n",
        {"key", "not-older-than"},
        2,
        2,
        &Cli::Verify}},
      {"checkpoint",
       {"checkpoint [--shard S]... [--out FILE]",
        "sign and show a checkpoint of each shard's log now",
        "Asks predlogd to sign a checkpoint (C2SP tlog-checkpoint, Ed25519) of each shard\n"
        "as it is now and prints the signed notes. Keep them: 'predlog verify-consistency'\n"
        "later proves the log still extends them.\n"
        "\n"
        "flags:\n"
        "  --shard S                only this shard (repeatable); default: every shard\n"
        "  --out FILE               also write them to FILE (JSON)\n"
        "\n"
        "example:\n"
        "  predlog checkpoint --out checkpoints-2026-11-30.json\n",
        {"shard", "out"},
        0,
        0,
        &Cli::Checkpoint}},
      {"verify-consistency",
       {"verify-consistency OLD NEW --key KEY",
        "prove newer checkpoints extend older ones (nothing lost or rewritten)",
        "OLD and NEW are export manifests or files of 'predlog checkpoint --out'. For\n"
        "each shard in both: both checkpoints must be signed by KEY for that shard's log,\n"
        "and predlogd's RFC 6962 consistency proof from the older size to the newer must\n"
        "verify against their signed roots (the server is not trusted). A shard that lost\n"
        "or rewrote records fails, named, exit 1.\n"
        "\n"
        "flags:\n"
        "  --key KEY                the checkpoint verifier key, or a file holding it\n"
        "\n"
        "example:\n"
        "  predlog verify-consistency --key data/keys/checkpoint.key.pub \\\n"
        "      checkpoints-2026-11-30.json trail.jsonl.manifest.json\n",
        {"key"},
        2,
        2,
        &Cli::VerifyConsistency}},
      {"status",
       {"status",
        "show every shard: records, lag and problems",
        "flags: none besides the global ones\n"
        "\n"
        "example:\n"
        "  predlog status\n",
        {},
        0,
        0,
        &Cli::Status}},
      {"access",
       {"access [--identity NAME] [--method M] [--from T] [--to T] [--limit N]",
        "list the access trail, newest first: who read what, when, from where",
        "Every call that reads recorded data (get, trail, replay, state, models, export,\n"
        "backup, access itself) is recorded in predlog.access-0 before predlogd answers it.\n"
        "\n"
        "flags:\n"
        "  --identity NAME          only this identity's calls (\"\" for calls made while\n"
        "                           predlogd had no --identities); default: everyone's\n"
        "  --method M               only this method: its name (ExportTrail) or full path\n"
        "                           (/predlog.v1.Audit/ExportTrail); default: all\n"
        "  --from T, --to T         recorded at or after / before T (RFC 3339 or a date,\n"
        "                           UTC, by the trail's append time); default: no bound\n"
        "  --limit N                at most N entries, newest first; default: 100\n"
        "\n"
        "example:\n"
        "  predlog access --identity auditor-ana --from 2026-11-01\n",
        {"identity", "method", "from", "to", "limit"},
        0,
        0,
        &Cli::Access}},
      {"backup",
       {"backup --out DIR",
        "have predlogd back up its shards, artifacts and keys into DIR on its host",
        "predlogd writes the backup itself, into DIR on the host it runs on (not this\n"
        "machine's, unless they are one): every shard (RocksDB BackupEngine), the\n"
        "artifact store and the signing keys, listed in DIR/BACKUPS. Backups into the\n"
        "same DIR are incremental: files an earlier one copied are not copied again.\n"
        "Each shard's backup holds every event acknowledged before the call. predlogd\n"
        "goes on logging meanwhile. Restore one with predlogd --restore DIR (into a\n"
        "data dir without shards; --restore_backup_id N, default the latest).\n"
        "\n"
        "flags:\n"
        "  --out DIR                the backup directory, an absolute path on predlogd's\n"
        "                           host (required); created when missing\n"
        "  --timeout_seconds N      default here: 3600 (a backup copies files)\n"
        "\n"
        "example:\n"
        "  predlog backup --out /var/backups/predlog\n",
        {"out"},
        0,
        0,
        &Cli::Backup}},
      {"auth",
       {"auth new-token NAME --roles ROLE[,ROLE...]",
        "make a bearer token and its line for predlogd's identities file",
        "Prints a new random token once (predlogd keeps only its SHA-256: store the\n"
        "token where the caller reads it, as PREDLOG_TOKEN or a --token_file), then\n"
        "the line to append to predlogd's --identities file. Talks to no predlogd.\n"
        "\n"
        "flags:\n"
        "  --roles ROLE[,ROLE...]   writer, support, auditor, admin (required)\n"
        "\n"
        "example:\n"
        "  predlog auth new-token limits-api --roles=writer\n",
        {"roles"},
        2,
        2,
        &Cli::Auth}},
      {"case",
       {"case PREDICTION_ID --out DIR [--against name@version] [--entity-type customer] "
        "[--window-days 30]",
        "write a case file for one decision: summary, event, lineage, re-run, export",
        "flags:\n"
        "  --out DIR                the directory to write (required)\n"
        "  --against name@version   add a counterfactual with this model; default: none\n"
        "  --entity-type TYPE       the subject's entity type; default: customer\n"
        "  --window-days N          the subject's trail this many days around the\n"
        "                           decision; default: 30\n"
        "\n"
        "example:\n"
        "  predlog case p-000123 --out case-p-000123 --against credit@v2\n",
        {"out", "against", "entity-type", "window-days"},
        1,
        1,
        &Cli::Case}},
      {"demo",
       {"demo credit [--customers 1000] [--predictions 20000] [--seed 1]",
        "fill predlogd with the credit walk-through of README.md",
        "flags:\n"
        "  --customers N            default: 1000\n"
        "  --predictions N          default: 20000\n"
        "  --seed N                 default: 1\n"
        "\n"
        "example:\n"
        "  predlog demo credit --customers 100 --predictions 2000\n",
        {"customers", "predictions", "seed"},
        1,
        1,
        &Cli::Demo}},
  };
  return *commands;
}

std::string Cli::Overview() {
  std::string text =
      "predlog: the command-line client of predlogd, the audit log for ML predictions.\n"
      "\n"
      "usage: predlog SUBCOMMAND [ARGS] [--server HOST:PORT] [--json] [--timeout_seconds N]\n"
      "\n"
      "subcommands:\n";
  for (const auto& [name, c] : Commands()) {
    absl::StrAppend(&text, "  ", name, std::string(8 - std::min<size_t>(name.size(), 7), ' '),
                    c.summary, "\n");
  }
  absl::StrAppend(
      &text, "\n", kGlobalHelp,
      "\n'predlog help SUBCOMMAND' or 'predlog SUBCOMMAND --help' shows a subcommand's\n"
      "flags, their defaults and an example.\n");
  return text;
}

std::string Cli::Help(const std::string& name, const Command& c) {
  return absl::StrCat("usage: predlog ", c.usage, "\n\n", name, ": ", c.summary, ".\n\n", c.help,
                      "\n", kGlobalHelp);
}

int Cli::Run(const std::string& command) {
  command_ = command;
  auto it = Commands().find(command);
  if (it == Commands().end()) {
    std::vector<std::string> names;
    for (const auto& [name, c] : Commands()) names.push_back(name);
    err_ << "predlog: unknown subcommand '" << command << "' (want one of "
         << absl::StrJoin(names, ", ") << ")\n";
    return kExitUsage;
  }
  const Command& c = it->second;
  if (args_.Has("help")) {
    out_ << Help(command, c);
    return kExitOk;
  }
  for (const auto& [name, values] : args_.flags) {
    if (kGlobalFlags.count(name) == 0 && c.flags.count(name) == 0) {
      return Usage(absl::StrCat("unknown flag --", name, "; usage: predlog ", c.usage));
    }
  }
  if (bad_timeout_) return Usage("--timeout_seconds must be a positive integer");
  // Subcommands that talk to predlogd read its TLS files and the token (an
  // offline verify and `auth` do not, so a $PREDLOG_TOKEN meant for another
  // server does not stop them).
  const bool offline = command == "auth" || (command == "verify" && !args_.Has("server"));
  if (!offline) {
    absl::StatusOr<ChannelSecurity> security = LoadChannelSecurity(args_, server_);
    if (!security.ok()) return Usage(std::string(security.status().message()));
    security_ = std::move(*security);
  }
  if (args_.positional.size() < c.min_positional || args_.positional.size() > c.max_positional) {
    return Usage(absl::StrCat("usage: predlog ", c.usage));
  }
  return (this->*c.run)();
}

}  // namespace cli_internal

int RunCli(const std::vector<std::string>& raw, std::istream& in, std::ostream& out,
           std::ostream& err) {
  using cli_internal::Cli;
  absl::StatusOr<cli_internal::Args> args = cli_internal::ParseArgs(raw, Cli::KnownFlags());
  if (!args.ok()) {
    err << "predlog: " << args.status().message() << "\n";
    return kExitUsage;
  }
  // `predlog --help` and `predlog help` answer on stdout, exit 0; bare
  // `predlog` is a usage error: the same list on stderr, exit 2.
  if (args->positional.empty()) {
    if (args->Has("help")) {
      out << Cli::Overview();
      return kExitOk;
    }
    err << "predlog: missing subcommand\n\n" << Cli::Overview();
    return kExitUsage;
  }
  if (args->positional.front() == "help") {
    args->positional.erase(args->positional.begin());
    if (args->positional.empty()) {
      out << Cli::Overview();
      return kExitOk;
    }
    args->flags["help"].push_back("true");
  }
  const std::string command = args->positional.front();
  args->positional.erase(args->positional.begin());
  Cli cli(std::move(*args), in, out, err);
  return cli.Run(command);
}

}  // namespace predlog::services
