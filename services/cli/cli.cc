#include "services/cli/cli.h"

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

// `known`: every flag some subcommand takes; anything else is named as
// unknown before its value is looked for.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& raw,
                               const std::set<std::string>& known) {
  Args args;
  for (size_t i = 0; i < raw.size(); ++i) {
    const std::string& a = raw[i];
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

const std::map<std::string, Cli::Command>& Cli::Commands() {
  static const auto* commands = new std::map<std::string, Command>{
      {"log",
       {"log < predictions.jsonl   (LogRequest or PredictionLogged per line, protobuf JSON)",
        {},
        0,
        0,
        &Cli::Log}},
      {"get", {"get PREDICTION_ID", {}, 1, 1, &Cli::Get}},
      {"trail",
       {"trail --subject S [--from T] [--to T] [--model name@version]   (or --model alone)",
        {"subject", "from", "to", "model", "limit"},
        0,
        0,
        &Cli::Trail}},
      {"replay",
       {"replay PREDICTION_ID [--explain] [--against name@version]",
        {"explain", "against", "subject"},
        1,
        1,
        &Cli::Replay}},
      {"trace", {"trace TRACE_ID", {}, 1, 1, &Cli::Trace}},
      {"state",
       {"state --entity TYPE/ID [--at TIME | --position N]",
        {"entity", "at", "position"},
        0,
        0,
        &Cli::State}},
      {"models", {"models [--name NAME]", {"name"}, 0, 0, &Cli::Models}},
      {"model",
       {"model register --name N --version V --file F [--framework xgboost] "
        "[--pipeline name@version] [--code-commit C] [--dataset name@version=sha256]... "
        "[--hyperparameter k=v]... [--library k=v]... [--feature-names a,b,...] "
        "[--description D]\n"
        "  model deploy --route R --model name@version [--traffic 1.0] [--reason TEXT]",
        {"name", "version", "file", "framework", "pipeline", "code-commit", "dataset",
         "hyperparameter", "library", "feature-names", "description", "route", "model", "traffic",
         "reason", "actor"},
        1,
        1,
        &Cli::Model}},
      {"export",
       {"export (--subject S | --model name@version | --all) [--from T] [--to T] "
        "--format jsonl|csv --out FILE   (writes FILE.manifest.json beside it)",
        {"subject", "model", "all", "from", "to", "format", "out"},
        0,
        0,
        &Cli::Export}},
      {"verify", {"verify FILE MANIFEST   (offline)", {}, 2, 2, &Cli::Verify}},
      {"status", {"status", {}, 0, 0, &Cli::Status}},
      {"case",
       {"case PREDICTION_ID --out DIR [--against name@version] [--entity-type customer] "
        "[--window-days 30]",
        {"out", "against", "entity-type", "window-days"},
        1,
        1,
        &Cli::Case}},
      {"demo",
       {"demo credit [--customers 1000] [--predictions 20000] [--seed 1]",
        {"customers", "predictions", "seed"},
        1,
        1,
        &Cli::Demo}},
  };
  return *commands;
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
  for (const auto& [name, values] : args_.flags) {
    if (kGlobalFlags.count(name) == 0 && c.flags.count(name) == 0) {
      return Usage(absl::StrCat("unknown flag --", name, "; usage: predlog ", c.usage));
    }
  }
  if (bad_timeout_) return Usage("--timeout_seconds must be a positive integer");
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
  if (args->positional.empty()) {
    err << "predlog: missing subcommand; one of log, get, trail, replay, trace, state, models, "
           "model, export, verify, status, case, demo (--server or $PREDLOG_SERVER picks "
           "predlogd; --json for scripts)\n";
    return kExitUsage;
  }
  const std::string command = args->positional.front();
  args->positional.erase(args->positional.begin());
  Cli cli(std::move(*args), in, out, err);
  return cli.Run(command);
}

}  // namespace predlog::services
