// How predlog proves who it is to predlogd (TLS, client certificate, bearer
// token on every call), and `predlog auth new-token`.

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/client_interceptor.h"
#include "services/auth/auth.h"
#include "services/cli/cli_internal.h"

namespace predlog::services::cli_internal {
namespace {

absl::StatusOr<std::string> ReadFlagFile(const Args& args, const std::string& flag) {
  const std::string path = args.Get(flag);
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", path, ": cannot read it"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Adds "authorization: Bearer <token>" to every call of the channel.
class BearerToken final : public grpc::experimental::Interceptor {
 public:
  explicit BearerToken(std::string header) : header_(std::move(header)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", header_);
    }
    methods->Proceed();
  }

 private:
  const std::string header_;
};

class BearerTokenFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new BearerToken(header_);
  }

 private:
  const std::string header_;
};

}  // namespace

absl::StatusOr<ChannelSecurity> LoadChannelSecurity(const Args& args, const std::string& server) {
  ChannelSecurity security;
  if (args.Has("tls_ca")) {
    absl::StatusOr<std::string> ca = ReadFlagFile(args, "tls_ca");
    if (!ca.ok()) return ca.status();
    security.tls_ca_pem = std::move(*ca);
  }
  if (args.Has("tls_cert") != args.Has("tls_key")) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (args.Has("tls_cert")) {
    if (!args.Has("tls_ca")) {
      return absl::InvalidArgumentError(
          "--tls_cert needs --tls_ca: a client certificate is presented over TLS");
    }
    absl::StatusOr<std::string> cert = ReadFlagFile(args, "tls_cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFlagFile(args, "tls_key");
    if (!key.ok()) return key.status();
    security.tls_cert_pem = std::move(*cert);
    security.tls_key_pem = std::move(*key);
  }
  if (args.Has("token_file")) {
    absl::StatusOr<std::string> token = ReadFlagFile(args, "token_file");
    if (!token.ok()) return token.status();
    security.token = std::string(absl::StripAsciiWhitespace(*token));
    if (security.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_file ", args.Get("token_file"), " is empty"));
    }
  } else if (const char* env = std::getenv("PREDLOG_TOKEN"); env != nullptr) {
    security.token = std::string(absl::StripAsciiWhitespace(env));
  }
  if (!security.token.empty() && security.tls_ca_pem.empty() && !auth::IsLoopbackAddress(server)) {
    return absl::InvalidArgumentError(
        absl::StrCat("will not send a bearer token to ", server,
                     " in clear: it is not a loopback address; add --tls_ca (predlogd's CA)"));
  }
  return security;
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& server,
                                          const ChannelSecurity& security) {
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!security.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = security.tls_ca_pem;
    ssl.pem_cert_chain = security.tls_cert_pem;
    ssl.pem_private_key = security.tls_key_pem;
    credentials = grpc::SslCredentials(ssl);
  }
  if (security.token.empty()) {
    return grpc::CreateCustomChannel(server, credentials, channel_args);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<BearerTokenFactory>(security.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(server, credentials, channel_args,
                                                                 std::move(interceptors));
}

int Cli::Auth() {
  if (args_.positional[0] != "new-token") {
    return Usage(absl::StrCat("unknown auth subcommand '", args_.positional[0],
                              "'; usage: predlog auth new-token NAME --roles ROLE[,ROLE...]"));
  }
  const std::string& name = args_.positional[1];
  if (absl::Status valid = auth::CheckIdentityName(name); !valid.ok()) {
    return Usage(std::string(valid.message()));
  }
  if (!args_.Has("roles")) return Usage("--roles is required (writer, support, auditor, admin)");
  absl::StatusOr<auth::RoleSet> roles = auth::ParseRoles(args_.Get("roles"));
  if (!roles.ok()) return Usage(absl::StrCat("--roles: ", roles.status().message()));
  absl::StatusOr<std::string> token = auth::NewToken();
  if (!token.ok()) {
    err_ << "predlog auth: " << token.status().message() << "\n";
    return kExitFailed;
  }
  out_ << "token for " << name
       << " (shown this once; predlogd keeps only its SHA-256. Give it to the caller as "
          "PREDLOG_TOKEN or in a --token_file):\n"
       << *token << "\n"
       << "line for predlogd's --identities file (append it, then restart predlogd):\n"
       << auth::IdentityLine(name, *roles, auth::TokenHash(*token)) << "\n";
  return kExitOk;
}

}  // namespace predlog::services::cli_internal
