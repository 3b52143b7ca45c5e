// The JSON API (/api/v1/) on a real predlogd (Server in-process): HTTP on
// loopback against the same shards gRPC reads, answers equal to gRPC's,
// errors that name what is wrong, the role table and the access trail
// applied as on the gRPC port, and one customer's verifiable export as a tar.
#include "services/web/http_api.h"

#include <archive.h>
#include <archive_entry.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/export/trail_export.h"
#include "services/server/server.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/test_certs.h"

namespace predlog::web {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;
using ::predlog::testing::WriteTextFile;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

// A running predlogd with gRPC and HTTP on loopback ports it picked.
struct Running {
  std::unique_ptr<services::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<httplib::Client> http;
};

absl::StatusOr<Running> Start(const std::string& data_dir, const std::string& identities = "",
                              const std::string& http_listen = "127.0.0.1:0") {
  services::ServerOptions options;
  options.data_dir = data_dir;
  options.grpc_listen = "127.0.0.1:0";
  options.http_listen = http_listen;
  options.partitions = 2;
  options.identities_file = identities;
  absl::StatusOr<std::unique_ptr<services::Server>> server = services::Server::Start(options);
  if (!server.ok()) return server.status();
  Running running;
  running.server = *std::move(server);
  running.channel =
      grpc::CreateChannel(running.server->grpc_address(), grpc::InsecureChannelCredentials());
  const std::string& address = running.server->http_address();
  const size_t colon = address.rfind(':');
  running.http = std::make_unique<httplib::Client>(address.substr(0, colon),
                                                   std::stoi(address.substr(colon + 1)));
  running.http->set_read_timeout(30, 0);
  return running;
}

// One answer: status, body, and the body's JSON as a Struct when it is JSON.
struct Answer {
  int status = 0;
  std::string body;
  std::string content_type;
  google::protobuf::Struct json;
  std::string message() const {
    auto it = json.fields().find("message");
    return it == json.fields().end() ? "" : it->second.string_value();
  }
};

Answer Get(httplib::Client& http, const std::string& path, const std::string& token = "",
           httplib::Headers headers = {}) {
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  httplib::Result result = http.Get(path.c_str(), headers);
  Answer answer;
  if (!result) {
    ADD_FAILURE() << "GET " << path << ": " << httplib::to_string(result.error());
    return answer;
  }
  answer.status = result->status;
  answer.body = result->body;
  answer.content_type = result->get_header_value("Content-Type");
  if (answer.content_type == "application/json") {
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(answer.body, &answer.json).ok())
        << answer.body;
  }
  return answer;
}

template <typename Message>
Message Parse(const Answer& answer) {
  Message message;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(answer.body, &message).ok())
      << answer.body;
  return message;
}

// The files of a tar archive, by path.
std::map<std::string, std::string> Untar(const std::string& tar) {
  std::map<std::string, std::string> files;
  struct archive* in = archive_read_new();
  archive_read_support_format_tar(in);
  EXPECT_EQ(archive_read_open_memory(in, tar.data(), tar.size()), ARCHIVE_OK);
  struct archive_entry* entry = nullptr;
  while (archive_read_next_header(in, &entry) == ARCHIVE_OK) {
    std::string content(static_cast<size_t>(archive_entry_size(entry)), '\0');
    if (!content.empty()) archive_read_data(in, content.data(), content.size());
    files[archive_entry_pathname(entry)] = content;
  }
  archive_read_free(in);
  return files;
}

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(running_, Start(dir_.Sub("data")));
    LogPredictions(running_);
  }

  // Three predictions of c-1 and one of c-2, through gRPC.
  static void LogPredictions(const Running& running) {
    auto log = v1::PredictionLog::NewStub(running.channel);
    for (const auto& [id, subject] : std::vector<std::pair<std::string, std::string>>{
             {"p-1", "c-1"}, {"p-2", "c-1"}, {"p-3", "c-2"}, {"p-4", "c-1"}}) {
      PredictionSpec spec;
      spec.prediction_id = id;
      spec.subject_id = subject;
      spec.served_at = absl::FromUnixSeconds(1'700'000'000 + (id.back() - '0'));
      v1::LogRequest request;
      *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
      request.set_wait_durable(true);
      v1::LogReceipt receipt;
      grpc::ClientContext context;
      ASSERT_TRUE(log->Log(&context, request, &receipt).ok());
    }
  }

  TempDir dir_;
  Running running_;
};

TEST_F(HttpApiTest, APredictionIsWhatGrpcAnswers) {
  const Answer answer = Get(*running_.http, "/api/v1/predictions/p-2");
  ASSERT_EQ(answer.status, 200) << answer.body;
  EXPECT_EQ(answer.content_type, "application/json");
  // Every scalar is printed, defaults too; 64-bit integers as strings.
  EXPECT_THAT(answer.body, HasSubstr(R"("actor":"")"));
  EXPECT_THAT(answer.body, HasSubstr(R"("index":")"));

  v1::GetPredictionRequest request;
  request.set_prediction_id("p-2");
  v1::PredictionRecord expected;
  grpc::ClientContext context;
  ASSERT_TRUE(v1::PredictionLog::NewStub(running_.channel)
                  ->GetPrediction(&context, request, &expected)
                  .ok());
  EXPECT_TRUE(MessageDifferencer::Equals(Parse<v1::PredictionRecord>(answer), expected))
      << answer.body;
}

TEST_F(HttpApiTest, ASubjectsTrailPagesAsGrpcDoes) {
  const Answer first = Get(*running_.http, "/api/v1/predictions?subject_id=c-1&page_size=2");
  ASSERT_EQ(first.status, 200) << first.body;
  const auto page = Parse<v1::ListPredictionsResponse>(first);
  ASSERT_EQ(page.records_size(), 2);
  EXPECT_EQ(page.records(0).event().prediction_logged().prediction_id(), "p-1");
  EXPECT_EQ(page.records(1).event().prediction_logged().prediction_id(), "p-2");
  ASSERT_FALSE(page.next_page_token().empty());
  const Answer second =
      Get(*running_.http, "/api/v1/predictions?subjectId=c-1&pageSize=2&page_token=" +
                              httplib::detail::encode_query_param(page.next_page_token()));
  ASSERT_EQ(second.status, 200) << second.body;
  const auto rest = Parse<v1::ListPredictionsResponse>(second);
  ASSERT_EQ(rest.records_size(), 1);
  EXPECT_EQ(rest.records(0).event().prediction_logged().prediction_id(), "p-4");
  EXPECT_TRUE(rest.next_page_token().empty());
}

TEST_F(HttpApiTest, AnUnknownIdIs404WithAMessageNamingIt) {
  const Answer answer = Get(*running_.http, "/api/v1/predictions/p-nope");
  EXPECT_EQ(answer.status, 404);
  EXPECT_EQ(answer.json.fields().at("status").string_value(), "NOT_FOUND");
  EXPECT_EQ(answer.json.fields().at("code").number_value(), 5);
  EXPECT_THAT(answer.message(), HasSubstr("p-nope"));

  const Answer route = Get(*running_.http, "/api/v1/no-such-thing");
  EXPECT_EQ(route.status, 404);
  EXPECT_THAT(route.message(), HasSubstr("no API route GET /api/v1/no-such-thing"));
}

TEST_F(HttpApiTest, BadParametersAre400NamingTheParameter) {
  const std::map<std::string, std::string> cases = {
      {"/api/v1/predictions?subject_id=c-1&page_size=abc", "parameter page_size"},
      {"/api/v1/predictions?subject_id=c-1&served_from=yesterday", "parameter served_from"},
      {"/api/v1/predictions?subject_id=c-1&colour=red", "unknown parameter colour"},
      {"/api/v1/predictions?subject_id=c-1&model.name=credit", "(one of filter)"},
      {"/api/v1/predictions?subject_id=c-1&page_size=5000", "page_size"},
      {"/api/v1/predictions", "subject_id"},
      {"/api/v1/predictions/p-1/rerun?explain=perhaps", "parameter explain"},
      {"/api/v1/entities/customer/c-1?as_of.after.index=-3", "parameter as_of.after.index"},
      {"/api/v1/export", "parameter subject_id is required"},
  };
  for (const auto& [path, named] : cases) {
    const Answer answer = Get(*running_.http, path);
    EXPECT_EQ(answer.status, 400) << path << ": " << answer.body;
    EXPECT_EQ(answer.json.fields().at("status").string_value(), "INVALID_ARGUMENT") << path;
    EXPECT_THAT(answer.message(), HasSubstr(named)) << path;
  }
}

TEST_F(HttpApiTest, ReadsAreRecordedInTheAccessTrailWithTheirHttpPeer) {
  ASSERT_EQ(Get(*running_.http, "/api/v1/predictions/p-1").status, 200);
  // A refused request (400) never ran, and is not recorded.
  ASSERT_EQ(Get(*running_.http, "/api/v1/predictions/p-1?colour=red").status, 400);
  const Answer answer = Get(*running_.http, "/api/v1/access?method=GetPrediction");
  ASSERT_EQ(answer.status, 200) << answer.body;
  const auto trail = Parse<v1::ListAccessResponse>(answer);
  ASSERT_EQ(trail.entries_size(), 1) << answer.body;
  const v1::AccessRecorded& access = trail.entries(0).event().access_recorded();
  EXPECT_EQ(access.method(), "/predlog.v1.PredictionLog/GetPrediction");
  EXPECT_THAT(access.peer(), HasSubstr("http:127.0.0.1:"));
  EXPECT_THAT(access.request_json(), HasSubstr("p-1"));
}

TEST_F(HttpApiTest, ACustomersExportIsATarThatVerifies) {
  const Answer answer = Get(*running_.http, "/api/v1/export?subject_id=c-1");
  ASSERT_EQ(answer.status, 200) << answer.body;
  EXPECT_EQ(answer.content_type, "application/x-tar");
  const std::map<std::string, std::string> files = Untar(answer.body);
  std::vector<std::string> names;
  for (const auto& [name, content] : files) names.push_back(name);
  ASSERT_THAT(names, UnorderedElementsAre("export-c-1/export-c-1.jsonl",
                                          "export-c-1/export-c-1.jsonl.manifest.json"));
  const std::string jsonl = dir_.Sub("export.jsonl");
  ASSERT_TRUE(WriteTextFile(jsonl, files.at("export-c-1/export-c-1.jsonl")));
  ASSERT_TRUE(WriteTextFile(jsonl + ".manifest.json",
                            files.at("export-c-1/export-c-1.jsonl.manifest.json")));
  ASSERT_OK_AND_ASSIGN(services::ExportVerification verified,
                       services::VerifyExport(jsonl, jsonl + ".manifest.json"));
  EXPECT_TRUE(verified.ok) << verified.failure;
  EXPECT_EQ(verified.records_checked, 3u);
  EXPECT_THAT(files.at("export-c-1/export-c-1.jsonl"), Not(HasSubstr("p-3")));
}

TEST_F(HttpApiTest, ACaseFileIsWhatPredlogCaseWrites) {
  const Answer answer = Get(*running_.http, "/api/v1/predictions/p-2/case?window_days=1");
  ASSERT_EQ(answer.status, 200) << answer.body;
  EXPECT_EQ(answer.content_type, "application/x-tar");
  const std::map<std::string, std::string> files = Untar(answer.body);
  for (const char* name : {"summary.md", "event.json", "trail.jsonl", "export.jsonl",
                           "export.jsonl.manifest.json", "record_now.json"}) {
    EXPECT_EQ(files.count(absl::StrCat("case-p-2/", name)), 1u) << name;
  }
  const std::string& summary = files.at("case-p-2/summary.md");
  EXPECT_THAT(summary, HasSubstr("# Case file: prediction p-2"));
  EXPECT_THAT(summary, HasSubstr("| Subject | c-1 |"));
  // The export in it verified when the case was built.
  EXPECT_THAT(summary, HasSubstr("OK, 3 records verified"));
  // The test's model was never registered: the re-run is a problem, named.
  EXPECT_THAT(summary, HasSubstr("## Problems"));
  EXPECT_THAT(summary, HasSubstr("- re-run: "));

  EXPECT_EQ(Get(*running_.http, "/api/v1/predictions/p-nope/case").status, 404);
  const Answer bad = Get(*running_.http, "/api/v1/predictions/p-2/case?window_days=0");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.message(), HasSubstr("parameter window_days"));
  const Answer half = Get(*running_.http, "/api/v1/predictions/p-2/case?against.name=credit");
  EXPECT_EQ(half.status, 400);
  EXPECT_THAT(half.message(), HasSubstr("against.version"));
}

TEST_F(HttpApiTest, OnlyPredlogdsOwnPageAndProgramsMayCallIt) {
  // Another site's page in the user's browser (its fetch carries the
  // browser's Sec-Fetch-Site) and a rebound DNS name (its own Host).
  const Answer cross =
      Get(*running_.http, "/api/v1/predictions/p-1", "", {{"Sec-Fetch-Site", "cross-site"}});
  EXPECT_EQ(cross.status, 403);
  EXPECT_THAT(cross.message(), HasSubstr("another site"));
  EXPECT_EQ(Get(*running_.http, "/api/v1/whoami", "", {{"Sec-Fetch-Site", "same-site"}}).status,
            403);
  EXPECT_EQ(
      Get(*running_.http, "/api/v1/export?subject_id=c-1", "", {{"Sec-Fetch-Site", "cross-site"}})
          .status,
      403);
  const Answer rebound =
      Get(*running_.http, "/api/v1/predictions/p-1", "", {{"Host", "attacker.example:80"}});
  EXPECT_EQ(rebound.status, 403);
  EXPECT_THAT(rebound.message(), HasSubstr("Host attacker.example:80"));
  // The page itself, and a program.
  EXPECT_EQ(Get(*running_.http, "/api/v1/predictions/p-1", "", {{"Sec-Fetch-Site", "same-origin"}})
                .status,
            200);
  EXPECT_EQ(Get(*running_.http, "/api/v1/predictions/p-1").status, 200);
  // Nothing but GET.
  httplib::Result post = running_.http->Post("/api/v1/predictions/p-1", "{}", "application/json");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->get_header_value("Allow"), "GET");
}

TEST(HttpApiListenerTest, OffLoopbackWithoutTlsTheListenerServesMetricsOnly) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(Running running, Start(dir.Sub("data"), "", "0.0.0.0:0"));
  EXPECT_EQ(Get(*running.http, "/metrics").status, 200);
  EXPECT_EQ(Get(*running.http, "/api/v1/whoami").status, 404);
  EXPECT_EQ(Get(*running.http, "/api/v1/predictions/p-1").status, 404);
  EXPECT_EQ(Get(*running.http, "/").status, 404);
}

TEST(HttpApiListenerTest, OffLoopbackWithTlsAndIdentitiesThePageIsServedOverHttps) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(predlog::testing::TestCertificate ca,
                       predlog::testing::MakeCa("predlog test CA"));
  predlog::testing::CertificateSpec spec;
  spec.common_name = "predlogd";
  spec.ip_addresses = {"127.0.0.1"};
  ASSERT_OK_AND_ASSIGN(predlog::testing::TestCertificate cert,
                       predlog::testing::MakeCertificate(ca, spec));
  ASSERT_TRUE(WriteTextFile(dir.Sub("ca.pem"), ca.cert_pem));
  ASSERT_TRUE(WriteTextFile(dir.Sub("server.pem"), cert.cert_pem));
  ASSERT_TRUE(WriteTextFile(dir.Sub("server.key"), cert.key_pem));
  ASSERT_OK_AND_ASSIGN(std::string token, auth::NewToken());
  ASSERT_TRUE(WriteTextFile(
      dir.Sub("identities"),
      auth::IdentityLine("sam-support", {auth::Role::kSupport}, auth::TokenHash(token)) + "\n"));
  services::ServerOptions options;
  options.data_dir = dir.Sub("data");
  options.grpc_listen = "127.0.0.1:0";
  options.http_listen = "0.0.0.0:0";
  options.partitions = 1;
  options.tls_cert_file = dir.Sub("server.pem");
  options.tls_key_file = dir.Sub("server.key");
  options.identities_file = dir.Sub("identities");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<services::Server> server, services::Server::Start(options));
  const std::string& address = server->http_address();
  httplib::SSLClient https("127.0.0.1", std::stoi(address.substr(address.rfind(':') + 1)));
  https.set_ca_cert_path(dir.Sub("ca.pem").c_str());
  https.enable_server_certificate_verification(true);
  httplib::Result who = https.Get("/api/v1/whoami", {{"Authorization", "Bearer " + token}});
  ASSERT_TRUE(who) << httplib::to_string(who.error());
  EXPECT_EQ(who->status, 200);
  EXPECT_THAT(who->body, HasSubstr(R"("identity":"sam-support")"));
  EXPECT_EQ(who->get_header_value("Strict-Transport-Security"), "max-age=31536000");
  httplib::Result metrics = https.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  // Plain HTTP is not spoken there.
  httplib::Client plain("127.0.0.1", std::stoi(address.substr(address.rfind(':') + 1)));
  plain.set_read_timeout(5, 0);
  httplib::Result refused = plain.Get("/api/v1/whoami");
  EXPECT_TRUE(!refused || refused->status != 200);
}

// The role table and tokens, as on the gRPC port: the same data dir served
// again with an identities file.
class HttpApiAuthTest : public HttpApiTest {
 protected:
  void SetUp() override {
    HttpApiTest::SetUp();
    running_ = Running();  // stopped: the shards are closed
    std::string identities;
    for (const auto& [name, roles] : std::vector<std::pair<std::string, auth::RoleSet>>{
             {"sam-support", {auth::Role::kSupport}},
             {"ada-auditor", {auth::Role::kAuditor}},
             {"limits-api", {auth::Role::kWriter}}}) {
      ASSERT_OK_AND_ASSIGN(std::string token, auth::NewToken());
      identities += auth::IdentityLine(name, roles, auth::TokenHash(token)) + "\n";
      tokens_[name] = token;
    }
    ASSERT_TRUE(WriteTextFile(dir_.Sub("identities"), identities));
    ASSERT_OK_AND_ASSIGN(running_, Start(dir_.Sub("data"), dir_.Sub("identities")));
  }

  static std::vector<std::string> Strings(const google::protobuf::Value& list) {
    std::vector<std::string> out;
    for (const auto& v : list.list_value().values()) out.push_back(v.string_value());
    return out;
  }

  std::map<std::string, std::string> tokens_;
};

TEST_F(HttpApiAuthTest, WhoAmISaysWhoAndWhatTheRoleMayCall) {
  const Answer nobody = Get(*running_.http, "/api/v1/whoami");
  ASSERT_EQ(nobody.status, 200) << nobody.body;
  EXPECT_TRUE(nobody.json.fields().at("accessControl").bool_value());
  EXPECT_FALSE(nobody.json.fields().at("authenticated").bool_value());
  EXPECT_THAT(Strings(nobody.json.fields().at("methods")), ::testing::IsEmpty());

  const Answer bad = Get(*running_.http, "/api/v1/whoami", "plt_notatoken");
  EXPECT_EQ(bad.status, 401);
  EXPECT_THAT(bad.message(), HasSubstr("not in predlogd's identities file"));

  const Answer sam = Get(*running_.http, "/api/v1/whoami", tokens_["sam-support"]);
  ASSERT_EQ(sam.status, 200) << sam.body;
  EXPECT_EQ(sam.json.fields().at("identity").string_value(), "sam-support");
  EXPECT_THAT(Strings(sam.json.fields().at("roles")), ::testing::ElementsAre("support"));
  const std::vector<std::string> methods = Strings(sam.json.fields().at("methods"));
  EXPECT_THAT(methods, Contains("/predlog.v1.PredictionLog/GetPrediction"));
  EXPECT_THAT(methods, Contains("/predlog.v1.Replay/Rerun"));
  EXPECT_THAT(methods, Not(Contains("/predlog.v1.Audit/ExportTrail")));
  EXPECT_THAT(methods, Not(Contains("/predlog.v1.PredictionLog/Log")));
}

TEST_F(HttpApiAuthTest, EachRouteAsksTheRoleTableUnderItsGrpcMethod) {
  EXPECT_EQ(Get(*running_.http, "/api/v1/predictions/p-1").status, 401);
  const Answer sam = Get(*running_.http, "/api/v1/predictions/p-1", tokens_["sam-support"]);
  EXPECT_EQ(sam.status, 200) << sam.body;
  const Answer ada = Get(*running_.http, "/api/v1/predictions/p-1", tokens_["ada-auditor"]);
  EXPECT_EQ(ada.status, 403);
  EXPECT_THAT(ada.message(),
              AllOf(HasSubstr("GetPrediction"), HasSubstr("support"), HasSubstr("ada-auditor")));
  const Answer export_by_support =
      Get(*running_.http, "/api/v1/export?subject_id=c-1", tokens_["sam-support"]);
  EXPECT_EQ(export_by_support.status, 403);
  EXPECT_THAT(export_by_support.message(), HasSubstr("ExportTrail"));
  EXPECT_EQ(Get(*running_.http, "/api/v1/export?subject_id=c-1", tokens_["ada-auditor"]).status,
            200);

  // A case file holds what the role may read; the rest is a problem, named.
  const Answer support_case =
      Get(*running_.http, "/api/v1/predictions/p-1/case", tokens_["sam-support"]);
  ASSERT_EQ(support_case.status, 200) << support_case.body;
  const std::map<std::string, std::string> files = Untar(support_case.body);
  EXPECT_EQ(files.count("case-p-1/event.json"), 1u);
  EXPECT_EQ(files.count("case-p-1/export.jsonl"), 0u);
  EXPECT_THAT(files.at("case-p-1/summary.md"),
              AllOf(HasSubstr("- export: "), HasSubstr("ExportTrail")));
  EXPECT_EQ(Get(*running_.http, "/api/v1/predictions/p-1/case", tokens_["ada-auditor"]).status,
            403);

  // Who read what: the support engineer's reads, under their identity.
  const Answer trail =
      Get(*running_.http, "/api/v1/access?method=GetPrediction", tokens_["ada-auditor"]);
  ASSERT_EQ(trail.status, 200) << trail.body;
  const auto entries = Parse<v1::ListAccessResponse>(trail);
  // The read above, and the case file's.
  ASSERT_EQ(entries.entries_size(), 2) << trail.body;
  EXPECT_EQ(entries.entries(0).event().actor(), "sam-support");
  EXPECT_EQ(entries.entries(1).event().actor(), "sam-support");
  EXPECT_EQ(entries.entries(0).event().access_recorded().credential(), "bearer token");
}

// Every route, as each role: refused under its gRPC method's name for a role
// the table does not give it, served (and recorded under that method) for
// one it does. A route wired to another method than it says fails here.
TEST_F(HttpApiAuthTest, EveryRouteIsGatedAndRecordedUnderItsOwnMethod) {
  struct Case {
    std::string path;
    std::string method;  // the gRPC method's name
    std::string allowed;
    std::string refused;
    bool recorded = true;
  };
  const std::vector<Case> cases = {
      {"/api/v1/predictions/p-1", "GetPrediction", "sam-support", "limits-api"},
      {"/api/v1/predictions?subject_id=c-1", "ListPredictions", "sam-support", "limits-api"},
      {"/api/v1/entities/customer/c-1/changes", "ListEntityChanges", "sam-support", "ada-auditor"},
      {"/api/v1/models", "ListModels", "sam-support", "limits-api"},
      {"/api/v1/models/credit-limit/versions/v1", "GetModel", "sam-support", "limits-api"},
      {"/api/v1/datasets/raw/versions/1", "GetDataset", "ada-auditor", "limits-api"},
      {"/api/v1/predictions/p-1/rerun", "Rerun", "sam-support", "ada-auditor"},
      {"/api/v1/traces/t-1/rerun", "RerunTrace", "sam-support", "ada-auditor"},
      {"/api/v1/predictions/p-1/lineage", "GetLineage", "ada-auditor", "limits-api"},
      {"/api/v1/datasets/raw/versions/1/impact", "GetImpact", "sam-support", "limits-api"},
      {"/api/v1/entities/customer/c-1", "GetEntityAt", "sam-support", "ada-auditor"},
      {"/api/v1/registry", "GetRegistryAt", "sam-support", "ada-auditor"},
      {"/api/v1/status", "GetStatus", "ada-auditor", "sam-support", /*recorded=*/false},
      {"/api/v1/export?subject_id=c-1", "ExportTrail", "ada-auditor", "sam-support"},
  };
  for (const Case& c : cases) {
    const Answer refused = Get(*running_.http, c.path, tokens_[c.refused]);
    EXPECT_EQ(refused.status, 403) << c.path << ": " << refused.body;
    EXPECT_THAT(refused.message(), AllOf(HasSubstr("/" + c.method), HasSubstr(c.refused)))
        << c.path;
    const Answer served = Get(*running_.http, c.path, tokens_[c.allowed]);
    EXPECT_NE(served.status, 401) << c.path;
    EXPECT_NE(served.status, 403) << c.path << ": " << served.body;
    const Answer trail = Get(
        *running_.http, absl::StrCat("/api/v1/access?method=", c.method, "&identity=", c.allowed),
        tokens_["ada-auditor"]);
    ASSERT_EQ(trail.status, 200) << trail.body;
    EXPECT_EQ(Parse<v1::ListAccessResponse>(trail).entries_size(), c.recorded ? 1 : 0)
        << c.path << ": " << trail.body;
  }
}

}  // namespace
}  // namespace predlog::web
