// predlog: the command-line client of predlogd (a first slice: log and get).
//
//   predlog log   < predictions.jsonl    JSON lines (LogRequest or PredictionLogged,
//                                        protobuf JSON mapping) -> LogStream; one receipt per line
//   predlog get ID                       the recorded prediction as JSON
//
// --server or $PREDLOG_SERVER picks predlogd (default 127.0.0.1:50051).
// Exit codes: 0 success, 1 not found or a request failed, 2 usage error.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "predlog/v1/service.grpc.pb.h"

ABSL_FLAG(std::string, server, "",
          "predlogd gRPC address; default $PREDLOG_SERVER, else 127.0.0.1:50051.");
ABSL_FLAG(int, timeout_seconds, 30, "Deadline of each call, in seconds.");

namespace {

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

std::string ServerAddress() {
  std::string server = absl::GetFlag(FLAGS_server);
  if (server.empty()) {
    const char* env = std::getenv("PREDLOG_SERVER");
    server = env != nullptr && *env != '\0' ? env : "127.0.0.1:50051";
  }
  return server;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = false;
  // Show zeros (index 0, offset 0): for an audit trail a missing field reads as unknown.
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(absl::GetFlag(FLAGS_timeout_seconds)));
}

// A line is a LogRequest, or (for convenience) a bare PredictionLogged.
bool ParseLine(const std::string& line, predlog::v1::LogRequest* request, std::string* error) {
  google::protobuf::util::JsonParseOptions options;
  if (google::protobuf::util::JsonStringToMessage(line, request, options).ok() &&
      request->has_prediction()) {
    return true;
  }
  request->Clear();
  const auto status =
      google::protobuf::util::JsonStringToMessage(line, request->mutable_prediction(), options);
  if (!status.ok()) *error = std::string(status.message());
  return status.ok();
}

int Log(predlog::v1::PredictionLog::Stub* stub) {
  grpc::ClientContext context;
  auto stream = stub->LogStream(&context);
  int failed = 0, line_number = 0, sent = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    predlog::v1::LogRequest request;
    std::string error;
    if (!ParseLine(line, &request, &error)) {
      std::cerr << "predlog log: line " << line_number << ": not a LogRequest or "
                << "PredictionLogged in JSON: " << error << "\n";
      ++failed;
      continue;
    }
    if (!stream->Write(request)) break;
    ++sent;
  }
  stream->WritesDone();
  predlog::v1::LogReceipt receipt;
  int received = 0;
  while (stream->Read(&receipt)) {
    ++received;
    std::cout << ToJson(receipt) << "\n";
    if (receipt.error_code() != 0) ++failed;
  }
  const grpc::Status status = stream->Finish();
  if (!status.ok()) {
    std::cerr << "predlog log: " << ServerAddress() << ": " << status.error_message() << "\n";
    return kFailed;
  }
  if (received != sent) {
    std::cerr << "predlog log: " << sent - received << " requests got no receipt\n";
    return kFailed;
  }
  return failed == 0 ? kOk : kFailed;
}

int Get(predlog::v1::PredictionLog::Stub* stub, const std::string& id) {
  predlog::v1::GetPredictionRequest request;
  request.set_prediction_id(id);
  predlog::v1::PredictionRecord record;
  grpc::ClientContext context;
  SetDeadline(&context);
  const grpc::Status status = stub->GetPrediction(&context, request, &record);
  if (!status.ok()) {
    std::cerr << "predlog get: " << ServerAddress() << ": " << status.error_message() << "\n";
    return kFailed;
  }
  std::cout << ToJson(record) << "\n";
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "predlog <log|get ID> [--server=host:port]\n"
      "  log     JSON lines on stdin -> LogStream; prints one receipt per line\n"
      "  get ID  prints the recorded prediction");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::cerr << "predlog: missing subcommand (log or get)\n";
    return kUsage;
  }
  const std::string command = args[1];
  auto stub = predlog::v1::PredictionLog::NewStub(
      grpc::CreateChannel(ServerAddress(), grpc::InsecureChannelCredentials()));
  if (command == "log" && args.size() == 2) return Log(stub.get());
  if (command == "get" && args.size() == 3) return Get(stub.get(), args[2]);
  if (command == "get") {
    std::cerr << "predlog get: want exactly one prediction id\n";
    return kUsage;
  }
  std::cerr << "predlog: unknown subcommand '" << command << "' (want log or get)\n";
  return kUsage;
}
