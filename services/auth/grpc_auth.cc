#include "services/auth/grpc_auth.h"

#include <string>
#include <utility>

namespace predlog::auth {
namespace {

absl::string_view View(grpc::string_ref ref) { return absl::string_view(ref.data(), ref.size()); }

class Processor final : public grpc::AuthMetadataProcessor {
 public:
  explicit Processor(std::shared_ptr<const Authorizer> authorizer)
      : authorizer_(std::move(authorizer)) {}

  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed, OutputMetadata* response) override {
    auto path = metadata.find(":path");
    const absl::string_view method = path == metadata.end() ? "" : View(path->second);
    absl::StatusOr<Caller> caller = authorizer_->Check(method, CredentialsOf(metadata, context));
    if (caller.ok()) return grpc::Status::OK;
    return grpc::Status(static_cast<grpc::StatusCode>(caller.status().code()),
                        std::string(caller.status().message()));
  }

 private:
  const std::shared_ptr<const Authorizer> authorizer_;
};

}  // namespace

Credentials CredentialsOf(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                          const grpc::AuthContext* auth_context) {
  Credentials credentials;
  auto [first, last] = metadata.equal_range("authorization");
  for (auto it = first; it != last; ++it) credentials.authorization.push_back(View(it->second));
  if (auth_context != nullptr && auth_context->IsPeerAuthenticated()) {
    for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
      for (grpc::string_ref value : auth_context->FindPropertyValues(property)) {
        credentials.certificate_names.emplace_back(value.data(), value.size());
      }
    }
  }
  return credentials;
}

std::shared_ptr<grpc::AuthMetadataProcessor> NewAuthMetadataProcessor(
    std::shared_ptr<const Authorizer> authorizer) {
  return std::make_shared<Processor>(std::move(authorizer));
}

absl::StatusOr<Caller> CallerOf(const Authorizer& authorizer,
                                const grpc::ServerContextBase& context) {
  if (!authorizer.enabled()) return Caller{};
  const std::shared_ptr<const grpc::AuthContext> auth_context = context.auth_context();
  return authorizer.Authenticate(CredentialsOf(context.client_metadata(), auth_context.get()));
}

}  // namespace predlog::auth
