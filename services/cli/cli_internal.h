// Internal to services/cli/: the Cli class whose methods are the predlog
// subcommands, one group of subcommands per file (cli_*.cc), and the parsed
// command line they read. cli.h is the public entry point.
//
// Single-threaded: one Cli serves one command line.
#ifndef PREDLOG_SERVICES_CLI_CLI_INTERNAL_H_
#define PREDLOG_SERVICES_CLI_CLI_INTERNAL_H_

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "services/cli/cli.h"
#include "services/cli/cli_format.h"
#include "services/export/trail_export.h"

namespace predlog::services::cli_internal {

namespace v1 = ::predlog::v1;

// Flags every subcommand takes.
inline const std::set<std::string> kGlobalFlags = {
    "server", "json", "timeout_seconds", "help", "tls_ca", "tls_cert", "tls_key", "token_file"};
// Flags without a value. -h is read as --help.
inline const std::set<std::string> kBoolFlags = {"json",         "explain", "all",
                                                 "access-trail", "help",    "dot"};

// A subcommand's parsed command line.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> flags;

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = flags.find(name);
    return it == flags.end() || it->second.empty() ? fallback : it->second.back();
  }
  const std::vector<std::string>& All(const std::string& name) const {
    static const std::vector<std::string> kNone;
    auto it = flags.find(name);
    return it == flags.end() ? kNone : it->second;
  }
};

// How predlog reaches predlogd (cli_channel.cc): TLS with --tls_ca (the
// server's CA), a client certificate with --tls_cert and --tls_key, and a
// bearer token from --token_file or else $PREDLOG_TOKEN (never a flag's
// value: command lines show in ps and shell history).
struct ChannelSecurity {
  std::string tls_ca_pem;  // empty: plaintext
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string token;  // empty: none
};

// Reads the files the flags name. INVALID_ARGUMENT names the flag and the
// file (unreadable, empty token file), a client certificate without
// --tls_ca, or a token that would go to a non-loopback `server` in clear.
absl::StatusOr<ChannelSecurity> LoadChannelSecurity(const Args& args, const std::string& server);

// A channel to `server` with `security`: TLS credentials, and the token sent
// as "authorization: Bearer <token>" on every call (a client interceptor,
// so it works over plaintext on loopback too, where gRPC would not send
// call credentials).
std::shared_ptr<grpc::Channel> NewChannel(const std::string& server,
                                          const ChannelSecurity& security);

// One call's context: the server, output mode and streams.
class Cli {
 public:
  // Human output to `out` and everything to `err` go through Printable's
  // escaping (cli_format.h); with --json, `out` gets the exact bytes.
  Cli(Args args, std::istream& in, std::ostream& out, std::ostream& err)
      : args_(std::move(args)),
        in_(in),
        json_(args_.Has("json")),
        printable_out_(out.rdbuf()),
        printable_err_(err.rdbuf()),
        out_(json_ ? out.rdbuf() : &printable_out_),
        err_(&printable_err_) {
    server_ = args_.Get("server");
    if (server_.empty()) {
      const char* env = std::getenv("PREDLOG_SERVER");
      server_ = env != nullptr && *env != '\0' ? env : "127.0.0.1:50051";
    }
    int timeout = 30;
    if (args_.Has("timeout_seconds") &&
        (!absl::SimpleAtoi(args_.Get("timeout_seconds"), &timeout) || timeout <= 0)) {
      bad_timeout_ = true;
    }
    timeout_ = std::chrono::seconds(timeout);
  }

  int Run(const std::string& command);
  // Every flag of every subcommand, and the global ones.
  static std::set<std::string> KnownFlags() {
    std::set<std::string> flags = kGlobalFlags;
    for (const auto& [name, command] : Commands())
      flags.insert(command.flags.begin(), command.flags.end());
    return flags;
  }
  // `predlog --help`: every subcommand with a line each, the global flags and
  // the exit codes.
  static std::string Overview();

 private:
  // predlog case's answers over gRPC (cli_case.cc; case_file.h).
  class GrpcCaseSources;

  struct Command {
    std::string usage;
    std::string summary;  // one line, for Overview
    std::string help;     // flags with defaults, then an example
    std::set<std::string> flags;
    size_t min_positional, max_positional;
    int (Cli::*run)();
  };
  static const std::map<std::string, Command>& Commands();
  // `predlog NAME --help`.
  static std::string Help(const std::string& name, const Command& c);

  std::shared_ptr<grpc::Channel> Channel() {
    if (channel_ == nullptr) channel_ = NewChannel(server_, security_);
    return channel_;
  }
  void SetDeadline(grpc::ClientContext* context) const {
    context->set_deadline(std::chrono::system_clock::now() + timeout_);
  }
  // Reports a failed call; exit 1.
  int CallFailed(const grpc::Status& status) {
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
        status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      err_ << "predlog " << command_ << ": cannot reach predlogd at " << server_ << ": "
           << status.error_message() << "\n";
    } else if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
               status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      // Who may do what: the code says which of the two went wrong.
      err_ << "predlog " << command_ << ": "
           << (status.error_code() == grpc::StatusCode::UNAUTHENTICATED ? "UNAUTHENTICATED"
                                                                        : "PERMISSION_DENIED")
           << ": " << status.error_message() << "\n";
    } else {
      err_ << "predlog " << command_ << ": " << status.error_message() << "\n";
    }
    return kExitFailed;
  }
  int Usage(const std::string& message) {
    err_ << "predlog " << command_ << ": " << message << "\n";
    return kExitUsage;
  }
  // Parses --name as a time; nullopt (and a usage message) when bad.
  std::optional<absl::Time> TimeFlag(const std::string& name, bool* bad) {
    if (!args_.Has(name)) return std::nullopt;
    absl::StatusOr<absl::Time> t = ParseTime(args_.Get(name));
    if (!t.ok()) {
      Usage(absl::StrCat("--", name, ": ", t.status().message()));
      *bad = true;
      return std::nullopt;
    }
    return *t;
  }
  void PrintJson(const google::protobuf::Message& message) { out_ << ToJson(message) << "\n"; }

  int Log();
  int Get();
  int Trail();
  int Changes();
  int Replay();
  int Trace();
  int State();
  // --at TIME | --position N | --after SHARD#INDEX into `as_of` (at most one;
  // --position only when `allow_position`). INVALID_ARGUMENT names the flag.
  absl::Status AsOfFlags(bool allow_position, v1::AsOf* as_of);
  int Lineage();
  int Impact();
  int Models();
  int Model();
  int ModelRegister();
  int ModelDeploy();
  int ModelGet();
  int Dataset();
  int DatasetRegister();
  int DatasetGet();
  int Export();
  int Verify();
  int Checkpoint();
  int VerifyConsistency();
  int Status();
  int Access();
  // The verifier key of --key: the key itself ("name+id+base64"), or a file
  // holding it (what predlogd writes beside its signing key, *.pub).
  absl::StatusOr<std::string> VerifierKeyFlag() const;
  int Case();
  int Demo();
  int Backup();
  int Auth();
  // Streams `request`'s export into `path` and its manifest beside it;
  // returns the manifest (which may list ranges the server could not read),
  // or an error message, and then nothing new is left at `path`.
  absl::StatusOr<v1::ExportManifest> ExportTo(const v1::ExportTrailRequest& request,
                                              const std::string& path, ExportFormat format,
                                              bool show_progress);

  void PrintRerun(const v1::RerunReport& report);

  Args args_;
  std::istream& in_;
  const bool json_;
  PrintableStreambuf printable_out_;
  PrintableStreambuf printable_err_;
  std::ostream out_;
  std::ostream err_;
  std::string server_;
  ChannelSecurity security_;
  std::string command_;
  bool bad_timeout_ = false;
  std::chrono::seconds timeout_{30};
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace predlog::services::cli_internal

#endif  // PREDLOG_SERVICES_CLI_CLI_INTERNAL_H_
