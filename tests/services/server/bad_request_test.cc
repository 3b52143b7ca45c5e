// Requests that cannot be parsed: every method of every predlog service
// answers INVALID_ARGUMENT saying so (naming the string field that is not
// UTF-8, where there is one), LogStream answers with an error receipt and goes
// on, and the calls after them on the same channel are served as usual. Raw
// bytes through grpc::GenericStub to a real predlogd on loopback (embedded
// broker, RocksDB in a temp dir).
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "predlog/v1/admin.grpc.pb.h"
#include "predlog/v1/audit.grpc.pb.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/replay.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/server/request_parse.h"
#include "services/server/server.h"
#include "tests/testing/events.h"
#include "tests/testing/loopback_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::MethodDescriptor;
using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::TempDir;
using ::predlog::v1::LogReceipt;
using ::predlog::v1::LogRequest;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Not protobuf wire format: a varint that never ends.
constexpr absl::string_view kGarbage = "\xff\xff\xff";
// Not UTF-8: 0xc3 starts a two-byte sequence, 0x28 ('(') cannot continue it.
constexpr absl::string_view kNotUtf8 = "\xc3\x28";

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// One length-delimited field in wire format: a string, bytes or a message.
std::string LengthDelimited(int number, absl::string_view value) {
  std::string out;
  AppendVarint((static_cast<uint64_t>(number) << 3) | 2, &out);
  AppendVarint(value.size(), &out);
  out.append(value.data(), value.size());
  return out;
}

// `message` serialized, with the one occurrence of `placeholder` replaced by
// `bad` of the same length: how a client's invalid string reaches the wire
// (protobuf's own serializer would refuse to write it).
std::string SerializedWith(const google::protobuf::Message& message, absl::string_view placeholder,
                           absl::string_view bad) {
  EXPECT_EQ(placeholder.size(), bad.size());
  std::string bytes = message.SerializeAsString();
  const std::string from(placeholder);
  const size_t at = bytes.find(from);
  EXPECT_NE(at, std::string::npos);
  EXPECT_EQ(bytes.find(from, at + 1), std::string::npos) << "placeholder not unique";
  if (at != std::string::npos) bytes.replace(at, bad.size(), std::string(bad));
  return bytes;
}

PredictionSpec Spec(const std::string& prediction_id) {
  PredictionSpec spec;
  spec.prediction_id = prediction_id;
  spec.subject_id = "customer-1";
  return spec;
}

LogRequest Request(const PredictionSpec& spec) {
  LogRequest request;
  *request.mutable_prediction() = MakePrediction(spec).prediction_logged();
  return request;
}

// What a raw call got back.
struct RawOutcome {
  grpc::Status status;
  std::vector<std::string> responses;
};

// One call of any kind (unary or streaming: on the wire they are all a
// stream of messages) with raw messages: writes them in order, half-closes,
// reads every response. Single use; Await returns once gRPC is done.
class RawCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  RawCall(grpc::GenericStub* stub, const std::string& method, std::vector<std::string> messages)
      : messages_(std::move(messages)) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stub->PrepareBidiStreamingCall(&context_, method, grpc::StubOptions(), this);
    StartRead(&read_);
    WriteNext();
    StartCall();
  }

  RawOutcome Await() {
    done_.WaitForNotification();
    return {status_, responses_};
  }

  // Not ok: the server finished the call first; the rest is not sent.
  void OnWriteDone(bool ok) override {
    if (ok) WriteNext();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    grpc::Slice slice;
    EXPECT_TRUE(read_.DumpToSingleSlice(&slice).ok());
    responses_.emplace_back(reinterpret_cast<const char*>(slice.begin()), slice.size());
    StartRead(&read_);
  }

  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_.Notify();
  }

 private:
  void WriteNext() {
    if (next_ == messages_.size()) {
      StartWritesDone();
      return;
    }
    grpc::Slice slice(messages_[next_++]);
    write_ = grpc::ByteBuffer(&slice, 1);
    StartWrite(&write_);
  }

  grpc::ClientContext context_;
  const std::vector<std::string> messages_;
  size_t next_ = 0;                     // the write path's alone
  grpc::ByteBuffer write_;              // the write path's alone
  grpc::ByteBuffer read_;               // the read path's alone
  std::vector<std::string> responses_;  // the read path's until done_
  grpc::Status status_;
  absl::Notification done_;
};

// The method's path on the wire: /package.Service/Method.
std::string Path(const MethodDescriptor& method) {
  return absl::StrCat("/", method.service()->full_name(), "/", method.name());
}

// Every method of every service predlogd serves.
std::vector<const MethodDescriptor*> EveryMethod() {
  std::vector<const MethodDescriptor*> methods;
  for (const char* service :
       {predlog::v1::PredictionLog::service_full_name(), predlog::v1::Registry::service_full_name(),
        predlog::v1::Replay::service_full_name(), predlog::v1::Audit::service_full_name(),
        predlog::v1::Admin::service_full_name()}) {
    const google::protobuf::ServiceDescriptor* descriptor =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
    EXPECT_NE(descriptor, nullptr) << service;
    if (descriptor == nullptr) continue;
    for (int i = 0; i < descriptor->method_count(); ++i) methods.push_back(descriptor->method(i));
  }
  return methods;
}

// A request of `type` whose only content is kNotUtf8 in its shallowest
// string field (breadth first, through message fields), and what the answer
// must say about it; false when the type has no string field within reach.
bool NonUtf8Request(const Descriptor& type, std::string* bytes, std::string* expected) {
  struct Candidate {
    const Descriptor* type;
    std::vector<const FieldDescriptor*> path;
  };
  std::vector<Candidate> level = {{&type, {}}};
  for (int depth = 0; depth < 4 && !level.empty(); ++depth) {
    std::vector<Candidate> next;
    for (const Candidate& candidate : level) {
      for (int i = 0; i < candidate.type->field_count(); ++i) {
        const FieldDescriptor* field = candidate.type->field(i);
        std::vector<const FieldDescriptor*> path = candidate.path;
        path.push_back(field);
        if (field->type() == FieldDescriptor::TYPE_STRING) {
          *bytes = LengthDelimited(field->number(), kNotUtf8);
          std::string names;
          for (auto it = path.rbegin() + 1; it != path.rend(); ++it) {
            *bytes = LengthDelimited((*it)->number(), *bytes);
          }
          for (const FieldDescriptor* f : path) {
            absl::StrAppend(&names, names.empty() ? "" : ".", f->name(),
                            f->is_repeated() ? "[0]" : "");
          }
          *expected = absl::StrCat("string field ", names, " (", field->full_name(),
                                   ") is not valid UTF-8");
          return true;
        }
        if (field->type() == FieldDescriptor::TYPE_MESSAGE && !field->is_map()) {
          next.push_back({field->message_type(), path});
        }
      }
    }
    level = std::move(next);
  }
  return false;
}

class BadRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        predlog::testing::LoopbackServer started,
        predlog::testing::StartLoopbackServer(ServerOptions(), dir_.Sub("data"), 2));
    server_ = std::move(started.server);
    channel_ = started.channel;
    generic_ = std::make_unique<grpc::GenericStub>(channel_);
    log_ = predlog::v1::PredictionLog::NewStub(channel_);
    registry_ = predlog::v1::Registry::NewStub(channel_);
  }

  RawOutcome Call(const std::string& method, std::vector<std::string> messages) {
    RawCall call(generic_.get(), method, std::move(messages));
    return call.Await();
  }

  // A well-formed Log on the same channel, after the bad calls: served as usual.
  void ExpectGoodLogIsApplied(const std::string& prediction_id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    LogReceipt receipt;
    grpc::Status status = log_->Log(&context, Request(Spec(prediction_id)), &receipt);
    ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
    EXPECT_EQ(receipt.outcome(), LogReceipt::APPLIED);
    EXPECT_EQ(receipt.prediction_id(), prediction_id);
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> generic_;
  std::unique_ptr<predlog::v1::PredictionLog::Stub> log_;
  std::unique_ptr<predlog::v1::Registry::Stub> registry_;
};

bool IsLogStream(const MethodDescriptor& method) {
  return method.full_name() == "predlog.v1.PredictionLog.LogStream";
}

// The call failed with INVALID_ARGUMENT saying `expected`. LogStream's
// contract differs: a request that fails gets a receipt saying so, and the
// stream goes on.
void ExpectInvalidArgument(const MethodDescriptor& method, const RawOutcome& outcome,
                           const std::string& expected) {
  if (IsLogStream(method)) {
    ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
    ASSERT_EQ(outcome.responses.size(), 1u);
    LogReceipt receipt;
    ASSERT_TRUE(receipt.ParseFromString(outcome.responses[0]));
    EXPECT_EQ(receipt.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(receipt.reason(), HasSubstr(expected));
    return;
  }
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << outcome.status.error_message();
  EXPECT_THAT(outcome.status.error_message(), HasSubstr(expected));
}

TEST_F(BadRequestTest, EveryMethod_BytesThatAreNotProtobufAreInvalidArgumentNamingTheType) {
  const std::vector<const MethodDescriptor*> methods = EveryMethod();
  ASSERT_GE(methods.size(), 17u);
  for (const MethodDescriptor* method : methods) {
    SCOPED_TRACE(method->full_name());
    const std::string expected =
        absl::StrCat("could not be parsed as ", method->input_type()->full_name(),
                     ": the bytes are not valid protobuf wire format");
    ExpectInvalidArgument(*method, Call(Path(*method), {std::string(kGarbage)}), expected);
  }
  ExpectGoodLogIsApplied("good-after-garbage");
}

TEST_F(BadRequestTest, EveryMethod_StringFieldThatIsNotUtf8IsInvalidArgumentNamingTheField) {
  int covered = 0;
  for (const MethodDescriptor* method : EveryMethod()) {
    SCOPED_TRACE(method->full_name());
    std::string bytes;
    std::string expected;
    if (!NonUtf8Request(*method->input_type(), &bytes, &expected)) continue;
    ++covered;
    ExpectInvalidArgument(
        *method, Call(Path(*method), {bytes}),
        absl::StrCat("could not be parsed as ", method->input_type()->full_name(), ": ", expected));
  }
  EXPECT_GE(covered, 15);  // all but the requests without a string field
  ExpectGoodLogIsApplied("good-after-utf8");
}

TEST_F(BadRequestTest, Log_SubjectIdThatIsNotUtf8IsInvalidArgumentNamingTheField) {
  PredictionSpec spec = Spec("p-1");
  spec.subject_id = "@@";  // becomes kNotUtf8 on the wire
  RawOutcome outcome =
      Call("/predlog.v1.PredictionLog/Log", {SerializedWith(Request(spec), "@@", kNotUtf8)});
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(outcome.status.error_message(),
            "the request could not be parsed as predlog.v1.LogRequest: string field "
            "prediction.subject_id (predlog.v1.PredictionLogged.subject_id) is not valid UTF-8");
  EXPECT_THAT(outcome.responses, IsEmpty());
  // Nothing was logged under that id; the same id, well formed, is new.
  ExpectGoodLogIsApplied("p-1");
}

TEST_F(BadRequestTest, LogBatch_NamesTheBadFieldByItsPathThroughRepeatedAndMapFields) {
  predlog::v1::LogBatchRequest batch;
  for (int i = 0; i < 3; ++i) *batch.add_requests() = Request(Spec(absl::StrCat("b-", i)));
  batch.mutable_requests(2)->mutable_prediction()->mutable_inputs(1)->set_name("@@");
  RawOutcome outcome =
      Call("/predlog.v1.PredictionLog/LogBatch", {SerializedWith(batch, "@@", kNotUtf8)});
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(outcome.status.error_message(),
              HasSubstr("string field requests[2].prediction.inputs[1].name "
                        "(predlog.v1.Feature.name) is not valid UTF-8"));

  batch.mutable_requests(2)->mutable_prediction()->mutable_inputs(1)->set_name("age");
  (*batch.mutable_requests(1)->mutable_prediction()->mutable_context())["region"] = "@@";
  outcome = Call("/predlog.v1.PredictionLog/LogBatch", {SerializedWith(batch, "@@", kNotUtf8)});
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(outcome.status.error_message(),
              HasSubstr("string field requests[1].prediction.context[\"region\"] "
                        "(predlog.v1.PredictionLogged.ContextEntry.value) is not valid UTF-8"));
  ExpectGoodLogIsApplied("good-after-batch");
}

TEST_F(BadRequestTest, LogStream_UnparseableRequestGetsAnErrorReceiptAndTheStreamGoesOn) {
  PredictionSpec bad = Spec("s-bad");
  bad.subject_id = "@@";
  RawOutcome outcome =
      Call("/predlog.v1.PredictionLog/LogStream",
           {Request(Spec("s-1")).SerializeAsString(), SerializedWith(Request(bad), "@@", kNotUtf8),
            std::string(kGarbage), Request(Spec("s-2")).SerializeAsString()});
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  ASSERT_EQ(outcome.responses.size(), 4u);
  std::map<std::string, LogReceipt> by_id;
  for (const std::string& bytes : outcome.responses) {
    LogReceipt receipt;
    ASSERT_TRUE(receipt.ParseFromString(bytes));
    by_id[receipt.prediction_id()] = receipt;
  }
  ASSERT_EQ(by_id.size(), 4u);
  EXPECT_EQ(by_id["s-1"].outcome(), LogReceipt::APPLIED);
  EXPECT_EQ(by_id["s-2"].outcome(), LogReceipt::APPLIED);
  // The request whose subject is not UTF-8 is answered under its own id.
  EXPECT_EQ(by_id["s-bad"].error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(by_id["s-bad"].reason(),
            "request 2 of the stream could not be parsed as predlog.v1.LogRequest: string field "
            "prediction.subject_id (predlog.v1.PredictionLogged.subject_id) is not valid UTF-8");
  // Garbage has no id to answer under.
  EXPECT_EQ(by_id[""].error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(by_id[""].reason(),
            "request 3 of the stream could not be parsed as predlog.v1.LogRequest: the bytes are "
            "not valid protobuf wire format");
  ExpectGoodLogIsApplied("good-after-stream");
}

TEST_F(BadRequestTest, RegisterModel_UnparseableMessageEndsTheUploadAndRegistersNothing) {
  predlog::v1::RegisterModelRequest first;
  first.set_actor("ml-platform");
  first.mutable_metadata()->mutable_model()->set_name("credit");
  first.mutable_metadata()->mutable_model()->set_version("v1");
  first.mutable_metadata()->set_framework("xgboost");
  predlog::v1::RegisterModelRequest chunk;
  chunk.set_chunk("the first bytes of the artifact");
  RawOutcome outcome =
      Call("/predlog.v1.Registry/RegisterModel",
           {first.SerializeAsString(), chunk.SerializeAsString(), std::string(kGarbage)});
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(outcome.status.error_message(),
            "message 3 of the upload could not be parsed as predlog.v1.RegisterModelRequest: the "
            "bytes are not valid protobuf wire format; nothing was registered");

  predlog::v1::GetModelRequest get;
  get.set_name("credit");
  get.set_version("v1");
  predlog::v1::ModelRecord record;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  EXPECT_EQ(registry_->GetModel(&context, get, &record).error_code(), grpc::StatusCode::NOT_FOUND);
  ExpectGoodLogIsApplied("good-after-upload");
}

// The explanation without a server: it must agree with protobuf's parser on
// what is not UTF-8 (overlong forms, surrogates, past U+10FFFF), or it would
// blame a field the parser accepted.
TEST(ExplainParseFailureTest, RefusesExactlyTheStringsTheParserRefuses) {
  for (absl::string_view bad :
       {kNotUtf8, absl::string_view("\xc0\xaf"), absl::string_view("\xed\xa0\x80"),
        absl::string_view("\xf4\x90\x80\x80"), absl::string_view("\xff\xfe"),
        absl::string_view("a\x80")}) {
    SCOPED_TRACE(absl::CHexEscape(bad));
    PredictionSpec spec = Spec("p-1");
    spec.subject_id = std::string(bad.size(), '@');
    const std::string bytes = SerializedWith(Request(spec), spec.subject_id, bad);
    LogRequest parsed;
    EXPECT_FALSE(parsed.ParseFromString(bytes));
    EXPECT_EQ(ExplainParseFailure(bytes, *LogRequest::descriptor()),
              "string field prediction.subject_id (predlog.v1.PredictionLogged.subject_id) is "
              "not valid UTF-8");
  }
  PredictionSpec fine = Spec("p-1");
  fine.subject_id = "Zoë 🙂";
  const std::string bytes = Request(fine).SerializeAsString();
  LogRequest parsed;
  EXPECT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(ExplainParseFailure(bytes, *LogRequest::descriptor()), "");
}

TEST(ExplainParseFailureTest, NamesTheMessageFieldWhoseBytesAreNotWireFormat) {
  // LogRequest.prediction (field 1) holding garbage; the request around it is fine.
  const std::string bytes = LengthDelimited(1, kGarbage);
  LogRequest parsed;
  EXPECT_FALSE(parsed.ParseFromString(bytes));
  EXPECT_EQ(ExplainParseFailure(bytes, *LogRequest::descriptor()),
            "the bytes of field prediction (a predlog.v1.PredictionLogged) are not valid "
            "protobuf wire format");
}

TEST(ReadStringFieldTest, ReadsThePredictionIdOfARequestThatDoesNotParse) {
  PredictionSpec spec = Spec("p-7");
  spec.subject_id = "@@";
  const std::string bytes = SerializedWith(Request(spec), "@@", kNotUtf8);
  EXPECT_EQ(ReadStringField(bytes, *LogRequest::descriptor(), {"prediction", "prediction_id"}),
            "p-7");
  EXPECT_EQ(ReadStringField(bytes, *LogRequest::descriptor(), {"prediction", "subject_id"}),
            std::nullopt);
  EXPECT_EQ(ReadStringField(kGarbage, *LogRequest::descriptor(), {"prediction", "prediction_id"}),
            std::nullopt);
}

}  // namespace
}  // namespace predlog::services
