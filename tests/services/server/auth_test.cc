// Who may do what, on a real predlogd (Server in-process) over gRPC on
// loopback: TLS with certificates made for the test, bearer tokens and client
// certificates from an identities file, every method of every service called
// by every role, and the actor events record.
#include "services/auth/auth.h"

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/server/server.h"
#include "storage/sha256.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/test_certs.h"

namespace predlog::services {
namespace {

using ::predlog::testing::CertificateSpec;
using ::predlog::testing::MakeCa;
using ::predlog::testing::MakeCertificate;
using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;
using ::predlog::testing::TestCertificate;
using ::predlog::testing::WriteTextFile;
using ::testing::AllOf;
using ::testing::HasSubstr;

// One identity per role, each with its own token.
struct TokenIdentity {
  std::string name;
  auth::RoleSet roles;
  std::string token;
};

// How a test client talks to the server.
struct ClientOptions {
  bool tls = true;                               // else plaintext
  std::string token;                             // empty: no authorization metadata
  const TestCertificate* certificate = nullptr;  // mTLS client certificate
};

std::string ShownMethod(const std::string& path) { return path.substr(1); }

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(ca_, MakeCa("predlog test CA"));
    CertificateSpec server_spec;
    server_spec.common_name = "predlogd";
    server_spec.dns_names = {"localhost"};
    server_spec.ip_addresses = {"127.0.0.1"};
    ASSERT_OK_AND_ASSIGN(TestCertificate server, MakeCertificate(ca_, server_spec));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("ca.pem"), ca_.cert_pem));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("server.pem"), server.cert_pem));
    ASSERT_TRUE(WriteTextFile(dir_.Sub("server.key"), server.key_pem));
    identities_ = {{"limits-api", {auth::Role::kWriter}, ""},
                   {"sam-support", {auth::Role::kSupport}, ""},
                   {"ada-auditor", {auth::Role::kAuditor}, ""},
                   {"ops-admin", {auth::Role::kAdmin}, ""}};
    for (TokenIdentity& identity : identities_) {
      ASSERT_OK_AND_ASSIGN(identity.token, auth::NewToken());
      identities_text_ +=
          auth::IdentityLine(identity.name, identity.roles, auth::TokenHash(identity.token)) + "\n";
    }
  }

  // A server with TLS (unless `tls` is false) and the identities file holding
  // identities_text_ plus `extra_lines` (unless `identities` is false).
  void StartServer(bool tls = true, bool identities = true, bool client_ca = false,
                   const std::string& extra_lines = "") {
    ServerOptions options;
    options.data_dir = dir_.Sub("data");
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "";
    options.partitions = 2;
    if (tls) {
      options.tls_cert_file = dir_.Sub("server.pem");
      options.tls_key_file = dir_.Sub("server.key");
    }
    if (client_ca) options.tls_client_ca_file = dir_.Sub("ca.pem");
    if (identities) {
      ASSERT_TRUE(WriteTextFile(dir_.Sub("identities"), identities_text_ + extra_lines));
      options.identities_file = dir_.Sub("identities");
    }
    ASSERT_OK_AND_ASSIGN(server_, Server::Start(options));
  }

  std::shared_ptr<grpc::Channel> Channel(const ClientOptions& client) const {
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (client.tls) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = ca_.cert_pem;
      if (client.certificate != nullptr) {
        ssl.pem_cert_chain = client.certificate->cert_pem;
        ssl.pem_private_key = client.certificate->key_pem;
      }
      credentials = grpc::SslCredentials(ssl);
    }
    return grpc::CreateChannel(server_->grpc_address(), credentials);
  }

  static void Prepare(grpc::ClientContext* context, const ClientOptions& client) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!client.token.empty()) context->AddMetadata("authorization", "Bearer " + client.token);
  }

  const TokenIdentity& Identity(const std::string& name) const {
    for (const TokenIdentity& identity : identities_) {
      if (identity.name == name) return identity;
    }
    ADD_FAILURE() << "no identity " << name;
    return identities_.front();
  }
  ClientOptions As(const std::string& name) const {
    ClientOptions client;
    client.token = Identity(name).token;
    return client;
  }

  // Calls `method` (a gRPC path) with one message of `request` bytes and
  // the client's credentials, reads whatever comes back, and returns the
  // call's status. Works for every kind of method: on the wire each is a
  // stream of messages.
  grpc::Status CallRaw(const std::string& method, const ClientOptions& client,
                       const std::string& request = "") const {
    grpc::GenericStub stub(Channel(client));
    grpc::ClientContext context;
    Prepare(&context, client);
    grpc::CompletionQueue cq;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
        stub.PrepareCall(&context, method, &cq);
    void* tag = nullptr;
    bool ok = false;
    auto next = [&] {
      EXPECT_TRUE(cq.Next(&tag, &ok));
      return ok;
    };
    call->StartCall(reinterpret_cast<void*>(1));
    if (next()) {
      grpc::Slice slice(request);
      grpc::ByteBuffer message(&slice, 1);
      call->WriteLast(message, grpc::WriteOptions(), reinterpret_cast<void*>(2));
      next();
      grpc::ByteBuffer reply;
      do {
        call->Read(&reply, reinterpret_cast<void*>(3));
      } while (next());
    }
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(4));
    next();
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  }

  grpc::Status Log(const ClientOptions& client, const std::string& prediction_id,
                   const std::string& claimed_actor, predlog::v1::LogReceipt* receipt) {
    auto stub = predlog::v1::PredictionLog::NewStub(Channel(client));
    predlog::v1::LogRequest request;
    PredictionSpec spec;
    spec.prediction_id = prediction_id;
    spec.subject_id = "customer-" + prediction_id;
    *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
    request.set_actor(claimed_actor);
    grpc::ClientContext context;
    Prepare(&context, client);
    return stub->Log(&context, request, receipt);
  }

  grpc::Status Get(const ClientOptions& client, const std::string& prediction_id,
                   predlog::v1::PredictionRecord* record) {
    auto stub = predlog::v1::PredictionLog::NewStub(Channel(client));
    predlog::v1::GetPredictionRequest request;
    request.set_prediction_id(prediction_id);
    grpc::ClientContext context;
    Prepare(&context, client);
    return stub->GetPrediction(&context, request, record);
  }

  TempDir dir_;
  TestCertificate ca_;
  std::vector<TokenIdentity> identities_;
  std::string identities_text_;
  std::unique_ptr<Server> server_;
};

TEST_F(AuthTest, ACallWithoutCredentialsIsUnauthenticated) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  predlog::v1::LogReceipt receipt;
  const grpc::Status status = Log(ClientOptions{}, "p-1", "", &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("no credentials"));
}

TEST_F(AuthTest, AnUnknownTokenIsUnauthenticated) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ClientOptions client;
  ASSERT_OK_AND_ASSIGN(client.token, auth::NewToken());
  predlog::v1::LogReceipt receipt;
  const grpc::Status status = Log(client, "p-1", "", &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("bearer token is not in"));
}

TEST_F(AuthTest, AWriterExportingIsDeniedNamingTheAuditorRole) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto stub = predlog::v1::Audit::NewStub(Channel(As("limits-api")));
  predlog::v1::ExportTrailRequest request;
  request.set_all(true);
  grpc::ClientContext context;
  Prepare(&context, As("limits-api"));
  auto reader = stub->ExportTrail(&context, request);
  predlog::v1::ExportBatch batch;
  EXPECT_FALSE(reader->Read(&batch));
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            "predlog.v1.Audit/ExportTrail needs the role auditor; limits-api has writer");
}

// The proof that every method is guarded: each method of each service in
// proto/predlog/v1 (walked from the generated descriptors, so a new one is
// included without editing this test), called without credentials and by
// every role. Only the role table's roles get past the check; everyone else
// is refused before the handler, with the method named.
TEST_F(AuthTest, EveryMethodOfEveryServiceIsGuarded) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  std::vector<std::string> methods;
  for (const auto& entry : std::filesystem::directory_iterator(PREDLOG_PROTO_DIR)) {
    if (entry.path().extension() != ".proto") continue;
    const google::protobuf::FileDescriptor* file =
        google::protobuf::DescriptorPool::generated_pool()->FindFileByName(
            "predlog/v1/" + entry.path().filename().string());
    ASSERT_NE(file, nullptr) << entry.path();
    for (int s = 0; s < file->service_count(); ++s) {
      for (int m = 0; m < file->service(s)->method_count(); ++m) {
        methods.push_back(absl::StrCat("/", file->service(s)->full_name(), "/",
                                       file->service(s)->method(m)->name()));
      }
    }
  }
  ASSERT_GE(methods.size(), 17u);
  for (const std::string& method : methods) {
    SCOPED_TRACE(method);
    const auth::MethodAccess* access = auth::FindMethodAccess(method);
    ASSERT_NE(access, nullptr);
    const grpc::Status anonymous = CallRaw(method, ClientOptions{});
    EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << anonymous.error_message();
    for (const TokenIdentity& identity : identities_) {
      SCOPED_TRACE(identity.name);
      const grpc::Status status = CallRaw(method, As(identity.name));
      if (access->roles.Intersects(identity.roles)) {
        // Past the check: the handler answers (an empty request is usually
        // INVALID_ARGUMENT), never an auth failure.
        EXPECT_NE(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
        EXPECT_NE(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << status.error_message();
      } else {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << status.error_message();
        EXPECT_THAT(status.error_message(),
                    AllOf(HasSubstr(ShownMethod(method) + " needs"),
                          HasSubstr(identity.name + " has " + identity.roles.ToString())));
      }
    }
  }
  // A method the table does not know is refused to everyone, even an admin.
  const grpc::Status unknown = CallRaw("/predlog.v1.Audit/DropEverything", As("ops-admin"));
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(unknown.error_message(),
              HasSubstr("no role may call predlog.v1.Audit/DropEverything"));
}

TEST_F(AuthTest, HealthIsOpenAndReflectionNeedsAnIdentity) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  EXPECT_TRUE(CallRaw("/grpc.health.v1.Health/Check", ClientOptions{}).ok());
  const std::string reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
  const grpc::Status anonymous = CallRaw(reflection, ClientOptions{});
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // list_services (field 7) with an empty string: any identity may list.
  const std::string list_services("\x3a\x00", 2);
  EXPECT_TRUE(CallRaw(reflection, As("limits-api"), list_services).ok());
}

TEST_F(AuthTest, EachRoleCanCallItsMethods) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  predlog::v1::LogReceipt receipt;
  grpc::Status status = Log(As("limits-api"), "p-roles", "", &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(receipt.outcome(), predlog::v1::LogReceipt::APPLIED);

  predlog::v1::PredictionRecord record;
  status = Get(As("sam-support"), "p-roles", &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(record.event().prediction_logged().prediction_id(), "p-roles");

  {
    auto audit = predlog::v1::Audit::NewStub(Channel(As("ada-auditor")));
    predlog::v1::ExportTrailRequest request;
    request.set_subject_id("customer-p-roles");
    grpc::ClientContext context;
    Prepare(&context, As("ada-auditor"));
    auto reader = audit->ExportTrail(&context, request);
    predlog::v1::ExportBatch batch;
    int records = 0;
    while (reader->Read(&batch)) records += batch.records_size();
    status = reader->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(records, 1);
  }
  {
    auto registry = predlog::v1::Registry::NewStub(Channel(As("ops-admin")));
    grpc::ClientContext context;
    Prepare(&context, As("ops-admin"));
    predlog::v1::RegisterModelResponse response;
    auto writer = registry->RegisterModel(&context, &response);
    predlog::v1::RegisterModelRequest first;
    first.mutable_metadata()->mutable_model()->set_name("credit");
    first.mutable_metadata()->mutable_model()->set_version("v1");
    first.mutable_metadata()->set_framework("xgboost");
    predlog::v1::RegisterModelRequest chunk;
    chunk.set_chunk("model bytes");
    ASSERT_TRUE(writer->Write(first));
    ASSERT_TRUE(writer->Write(chunk));
    ASSERT_TRUE(writer->WritesDone());
    status = writer->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.receipt().outcome(), predlog::v1::LogReceipt::APPLIED);
  }
  {
    auto registry = predlog::v1::Registry::NewStub(Channel(As("sam-support")));
    grpc::ClientContext context;
    Prepare(&context, As("sam-support"));
    predlog::v1::ListModelsResponse models;
    status = registry->ListModels(&context, predlog::v1::ListModelsRequest(), &models);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(models.models_size(), 1);
  }
}

// A dataset's registered_by is the identity that authenticated the
// RegisterDataset call; the request's actor is only a claim beside it, and
// the lineage graph shows the same.
TEST_F(AuthTest, ADatasetIsRegisteredByTheAuthenticatedIdentityNotItsClaim) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  predlog::v1::RegisterDatasetRequest request;
  request.mutable_dataset()->mutable_dataset()->set_name("applications");
  request.mutable_dataset()->mutable_dataset()->set_version("2026-10");
  request.mutable_dataset()->mutable_dataset()->set_digest(std::string(64, 'a'));
  request.set_actor("the-ceo");
  predlog::v1::RegistryReceipt receipt;
  {
    // Support may not register.
    grpc::ClientContext context;
    Prepare(&context, As("sam-support"));
    EXPECT_EQ(predlog::v1::Registry::NewStub(Channel(As("sam-support")))
                  ->RegisterDataset(&context, request, &receipt)
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext context;
    Prepare(&context, As("ops-admin"));
    const grpc::Status status = predlog::v1::Registry::NewStub(Channel(As("ops-admin")))
                                    ->RegisterDataset(&context, request, &receipt);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  predlog::v1::GetDatasetRequest get;
  get.set_name("applications");
  get.set_version("2026-10");
  predlog::v1::DatasetRecord record;
  grpc::ClientContext context;
  Prepare(&context, As("sam-support"));
  const grpc::Status status = predlog::v1::Registry::NewStub(Channel(As("sam-support")))
                                  ->GetDataset(&context, get, &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(record.registered_by(), "ops-admin");
  EXPECT_EQ(record.claimed_by(), "the-ceo");

  predlog::v1::GetImpactRequest impact_request;
  impact_request.mutable_dataset()->set_name("applications");
  impact_request.mutable_dataset()->set_version("2026-10");
  predlog::v1::Impact impact;
  grpc::ClientContext impact_context;
  Prepare(&impact_context, As("ada-auditor"));
  const grpc::Status impact_status = predlog::v1::Replay::NewStub(Channel(As("ada-auditor")))
                                         ->GetImpact(&impact_context, impact_request, &impact);
  ASSERT_TRUE(impact_status.ok()) << impact_status.error_message();
  ASSERT_EQ(impact.graph().nodes_size(), 1);
  EXPECT_EQ(impact.graph().nodes(0).dataset().registered_by(), "ops-admin");
}

// The recorded actor is the identity that authenticated the call, whatever
// the request's actor field says; that claim is kept beside it. Each write
// path of the gateway (Log, LogBatch, LogStream) carries the identity.
TEST_F(AuthTest, TheLoggedActorIsTheIdentityAndTheRequestsActorItsClaim) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const ClientOptions writer = As("limits-api");
  predlog::v1::LogReceipt receipt;
  grpc::Status status = Log(writer, "p-log", "the-ceo", &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();

  auto stub = predlog::v1::PredictionLog::NewStub(Channel(writer));
  {
    predlog::v1::LogBatchRequest batch;
    PredictionSpec spec;
    spec.prediction_id = "p-batch";
    *batch.add_requests()->mutable_prediction() = MakePrediction(spec).prediction_logged();
    batch.mutable_requests(0)->set_actor("batch-claim");
    predlog::v1::LogBatchResponse response;
    grpc::ClientContext context;
    Prepare(&context, writer);
    status = stub->LogBatch(&context, batch, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.receipts(0).error_code(), 0) << response.receipts(0).reason();
  }
  {
    grpc::ClientContext context;
    Prepare(&context, writer);
    auto stream = stub->LogStream(&context);
    predlog::v1::LogRequest request;
    PredictionSpec spec;
    spec.prediction_id = "p-stream";
    *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
    ASSERT_TRUE(stream->Write(request));  // no claim at all
    ASSERT_TRUE(stream->WritesDone());
    predlog::v1::LogReceipt stream_receipt;
    ASSERT_TRUE(stream->Read(&stream_receipt));
    EXPECT_EQ(stream_receipt.error_code(), 0) << stream_receipt.reason();
    status = stream->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const std::map<std::string, std::string> claims = {
      {"p-log", "the-ceo"}, {"p-batch", "batch-claim"}, {"p-stream", ""}};
  for (const auto& [id, claim] : claims) {
    predlog::v1::PredictionRecord record;
    status = Get(As("sam-support"), id, &record);
    ASSERT_TRUE(status.ok()) << id << ": " << status.error_message();
    EXPECT_EQ(record.event().actor(), "limits-api") << id;
    EXPECT_EQ(record.event().claimed_actor(), claim) << id;
  }
}

TEST_F(AuthTest, TlsIsReallyOn) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ClientOptions plaintext = As("limits-api");
  plaintext.tls = false;
  predlog::v1::LogReceipt receipt;
  EXPECT_EQ(Log(plaintext, "p-1", "", &receipt).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A client that trusts another CA does not accept the server.
  ASSERT_OK_AND_ASSIGN(TestCertificate other_ca, MakeCa("another CA"));
  std::swap(ca_, other_ca);
  EXPECT_EQ(Log(As("limits-api"), "p-2", "", &receipt).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(AuthTest, AClientCertificateMapsToItsIdentity) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*tls=*/true, /*identities=*/true, /*client_ca=*/true,
                                      "release-bot admin,support cert:release-bot.internal\n"));
  CertificateSpec bot_spec;
  bot_spec.common_name = "release-bot";
  bot_spec.dns_names = {"release-bot.internal"};
  ASSERT_OK_AND_ASSIGN(TestCertificate bot, MakeCertificate(ca_, bot_spec));
  ClientOptions client;
  client.certificate = &bot;

  predlog::v1::LogReceipt receipt;
  grpc::Status status = Log(client, "p-cert", "", &receipt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            "predlog.v1.PredictionLog/Log needs the role writer; release-bot has support,admin");
  predlog::v1::PredictionRecord record;
  status = Get(client, "p-none", &record);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();

  // A token over mTLS still needs the client certificate at the handshake,
  // and then decides who the caller is.
  ClientOptions writer = As("limits-api");
  writer.certificate = &bot;
  status = Log(writer, "p-cert-token", "", &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();
  status = Get(client, "p-cert-token", &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(record.event().actor(), "limits-api");

  // A certificate the CA signed for a name the file does not hold.
  CertificateSpec stranger_spec;
  stranger_spec.common_name = "stranger";
  ASSERT_OK_AND_ASSIGN(TestCertificate stranger, MakeCertificate(ca_, stranger_spec));
  client.certificate = &stranger;
  status = Get(client, "p-cert-token", &record);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("client certificate (stranger) is not in"));
}

TEST_F(AuthTest, WithAClientCaAClientWithoutACertificateCannotConnect) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*tls=*/true, /*identities=*/true, /*client_ca=*/true));
  predlog::v1::LogReceipt receipt;
  // Its token does not help: the TLS handshake fails first.
  EXPECT_EQ(Log(As("limits-api"), "p-1", "", &receipt).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(AuthTest, IdentitiesOnLoopbackWithoutTlsAreChecked) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*tls=*/false));
  ClientOptions writer = As("limits-api");
  writer.tls = false;
  predlog::v1::LogReceipt receipt;
  grpc::Status status = Log(writer, "p-plain", "claim", &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ClientOptions anonymous;
  anonymous.tls = false;
  EXPECT_EQ(Log(anonymous, "p-anon", "", &receipt).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  ClientOptions support = As("sam-support");
  support.tls = false;
  predlog::v1::PredictionRecord record;
  status = Get(support, "p-plain", &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(record.event().actor(), "limits-api");
  EXPECT_EQ(record.event().claimed_actor(), "claim");
}

// The access trail names who read, by the identity that authenticated and
// how; a call the role table refused never ran, so it left no record. Every
// recorded method of the role table, called by a role that may, leaves
// exactly one record, in call order; the others leave none.
TEST_F(AuthTest, TheAccessTrailNamesTheIdentityOfEveryRecordedCall) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  predlog::v1::LogReceipt receipt;
  ASSERT_TRUE(Log(As("limits-api"), "p-1", "", &receipt).ok());
  predlog::v1::PredictionRecord record;
  ASSERT_TRUE(Get(As("sam-support"), "p-1", &record).ok());
  EXPECT_EQ(Get(As("limits-api"), "p-1", &record).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  std::vector<std::pair<std::string, std::string>> expected = {
      {"/predlog.v1.PredictionLog/GetPrediction", "sam-support"}};
  for (const auth::MethodAccess& entry : auth::RoleTable()) {
    if (entry.access != auth::Access::kRoles) continue;
    for (const TokenIdentity& identity : identities_) {
      if (!entry.roles.Intersects(identity.roles)) continue;
      SCOPED_TRACE(absl::StrCat(entry.method, " as ", identity.name));
      // Streams of writes (LogStream, RegisterModel) end when the message
      // is not one; a recorded call answers whatever its request was.
      CallRaw(std::string(entry.method), As(identity.name));
      if (entry.trail == auth::Trail::kRecorded) {
        expected.emplace_back(std::string(entry.method), identity.name);
      }
    }
  }
  auto stub = predlog::v1::Audit::NewStub(Channel(As("ada-auditor")));
  predlog::v1::ListAccessRequest request;
  request.set_page_size(1000);
  predlog::v1::ListAccessResponse trail;
  grpc::ClientContext context;
  Prepare(&context, As("ada-auditor"));
  ASSERT_TRUE(stub->ListAccess(&context, request, &trail).ok());
  expected.emplace_back("/predlog.v1.Audit/ListAccess", "ada-auditor");
  std::vector<std::pair<std::string, std::string>> recorded;
  for (auto it = trail.entries().rbegin(); it != trail.entries().rend(); ++it) {
    recorded.emplace_back(it->event().access_recorded().method(), it->event().actor());
    EXPECT_EQ(it->event().access_recorded().credential(), "bearer token");
    EXPECT_EQ(it->event().claimed_actor(), "");
  }
  EXPECT_EQ(recorded, expected);
  EXPECT_GE(expected.size(), 12u);
}

TEST_F(AuthTest, WithoutIdentitiesTheLoopbackDefaultServesEveryoneAsBefore) {
  ASSERT_NO_FATAL_FAILURE(StartServer(/*tls=*/false, /*identities=*/false));
  ClientOptions anonymous;
  anonymous.tls = false;
  predlog::v1::LogReceipt receipt;
  grpc::Status status = Log(anonymous, "p-open", "limits-api", &receipt);
  ASSERT_TRUE(status.ok()) << status.error_message();
  predlog::v1::PredictionRecord record;
  status = Get(anonymous, "p-open", &record);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // predlogd knows nobody: no actor, the request's claim kept as a claim.
  EXPECT_EQ(record.event().actor(), "");
  EXPECT_EQ(record.event().claimed_actor(), "limits-api");
  // A token sent anyway changes nothing.
  ClientOptions with_token = As("ops-admin");
  with_token.tls = false;
  EXPECT_TRUE(CallRaw("/predlog.v1.Audit/GetStatus", with_token).ok());
}

}  // namespace
}  // namespace predlog::services
