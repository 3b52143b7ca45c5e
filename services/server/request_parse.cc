#include "services/server/request_parse.h"

#include <cstdint>
#include <map>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"

namespace predlog::services {

namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::internal::WireFormatLite;
using ::google::protobuf::io::CodedInputStream;

// protobuf's parser gives up on messages nested deeper than this (its
// default recursion limit); past it the walk has nothing more to explain.
constexpr int kMaxDepth = 100;

// Map keys longer than this are cut in paths: a path names, it does not echo.
constexpr size_t kMaxKeyInPath = 40;

// How a walk over one message's bytes ended.
enum class Walk { kEnd, kStopped, kBroken };

// Walks the fields of one message's bytes in wire order, skipping every
// field that is not length-delimited (only those hold strings, messages and
// packed scalars) and calling `visit(field_number, value)` for the others;
// `visit` returns false to stop. kBroken: the bytes are not wire format, in
// the ways protobuf's parser refuses (bad varint or tag, field number 0,
// a length past the end, a stray end-group, wire types 6 and 7).
template <typename Visit>
Walk WalkLengthDelimited(absl::string_view bytes, Visit visit) {
  CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size()));
  while (in.CurrentPosition() < static_cast<int>(bytes.size())) {
    const uint32_t tag = in.ReadTag();
    if (WireFormatLite::GetTagFieldNumber(tag) == 0) return Walk::kBroken;
    if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      // SkipField refuses an end-group without its start, and wire types 6, 7.
      if (!WireFormatLite::SkipField(&in, tag)) return Walk::kBroken;
      continue;
    }
    uint32_t length = 0;
    if (!in.ReadVarint32(&length)) return Walk::kBroken;
    const int start = in.CurrentPosition();
    if (!in.Skip(static_cast<int>(length))) return Walk::kBroken;
    if (!visit(WireFormatLite::GetTagFieldNumber(tag), bytes.substr(start, length))) {
      return Walk::kStopped;
    }
  }
  return Walk::kEnd;
}

// Whether protobuf's parser refuses this field's value when it is not UTF-8:
// proto3 strings only (proto2 strings are at most logged in debug builds).
bool ParserChecksUtf8(const FieldDescriptor& field) {
  return field.type() == FieldDescriptor::TYPE_STRING &&
         field.file()->syntax() == FileDescriptor::SYNTAX_PROTO3;
}

// The same check as protobuf's parser (parse_context.cc, VerifyUTF8).
bool IsUtf8(absl::string_view value) {
  return ::google::protobuf::internal::IsStructurallyValidUTF8(value.data(),
                                                               static_cast<int>(value.size()));
}

// Whether a packed run of `field`'s scalars is well formed, as the parser
// reads it: varints to the end, or a whole number of fixed-width values.
bool IsValidPacked(const FieldDescriptor& field, absl::string_view value) {
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return value.size() % 8 == 0;
    case FieldDescriptor::CPPTYPE_FLOAT:
      return value.size() % 4 == 0;
    default:
      break;
  }
  if (field.type() == FieldDescriptor::TYPE_FIXED64 ||
      field.type() == FieldDescriptor::TYPE_SFIXED64) {
    return value.size() % 8 == 0;
  }
  if (field.type() == FieldDescriptor::TYPE_FIXED32 ||
      field.type() == FieldDescriptor::TYPE_SFIXED32) {
    return value.size() % 4 == 0;
  }
  CodedInputStream in(reinterpret_cast<const uint8_t*>(value.data()),
                      static_cast<int>(value.size()));
  while (in.CurrentPosition() < static_cast<int>(value.size())) {
    uint64_t ignored;
    if (!in.ReadVarint64(&ignored)) return false;
  }
  return true;
}

// The path of one occurrence of `field` in a message at `parent`: name,
// name[index] for a repeated field, name["key"] for a map entry (by its wire
// index when the key cannot be read), and the entry's own path for a map
// entry's value.
std::string ChildPath(const std::string& parent, const Descriptor& parent_type,
                      const FieldDescriptor& field, int index, absl::string_view value) {
  if (parent_type.options().map_entry() && field.number() == 2) return parent;
  std::string path = parent.empty() ? field.name() : absl::StrCat(parent, ".", field.name());
  if (field.is_map()) {
    const Descriptor& entry = *field.message_type();
    std::optional<std::string> key;
    if (entry.map_key()->type() == FieldDescriptor::TYPE_STRING) {
      key = ReadStringField(value, entry, {"key"});
    }
    if (key.has_value()) {
      const bool cut = key->size() > kMaxKeyInPath;
      if (cut) key->resize(kMaxKeyInPath);
      return absl::StrCat(path, "[\"", absl::CHexEscape(*key), cut ? "\"...]" : "\"]");
    }
  }
  if (field.is_repeated()) absl::StrAppend(&path, "[", index, "]");
  return path;
}

// The first reason, in wire order, why `bytes` at `path` do not parse as
// `type`; "" if none is found.
std::string FindProblem(absl::string_view bytes, const Descriptor& type, const std::string& path,
                        int depth) {
  std::map<int, int> occurrences;  // field number -> how many came before
  std::string problem;
  const Walk walk = WalkLengthDelimited(bytes, [&](int number, absl::string_view value) {
    const FieldDescriptor* field = type.FindFieldByNumber(number);
    if (field == nullptr) return true;  // unknown fields are kept, not refused
    const int index = occurrences[number]++;
    if (ParserChecksUtf8(*field)) {
      if (IsUtf8(value)) return true;
      problem = absl::StrCat("string field ", ChildPath(path, type, *field, index, value), " (",
                             field->full_name(), ") is not valid UTF-8");
      return false;
    }
    if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
      if (depth >= kMaxDepth) return true;
      problem = FindProblem(value, *field->message_type(),
                            ChildPath(path, type, *field, index, value), depth + 1);
      return problem.empty();
    }
    if (field->is_repeated() && field->is_packable() && !IsValidPacked(*field, value)) {
      problem =
          absl::StrCat("the packed values of field ", ChildPath(path, type, *field, index, value),
                       " (", field->full_name(), ") are not valid protobuf wire format");
      return false;
    }
    return true;
  });
  if (walk != Walk::kBroken) return problem;
  if (path.empty()) return "the bytes are not valid protobuf wire format";
  return absl::StrCat("the bytes of field ", path, " (a ", type.full_name(),
                      ") are not valid protobuf wire format");
}

}  // namespace

bool ParseMessage(const grpc::ByteBuffer& bytes, google::protobuf::Message* message) {
  if (!bytes.Valid()) {  // no payload at all reads as an empty message
    message->Clear();
    return true;
  }
  // Shares the slices (no copy): the reader wants a mutable buffer.
  grpc::ByteBuffer readable(bytes);
  grpc::ProtoBufferReader reader(&readable);
  return reader.status().ok() && message->ParseFromZeroCopyStream(&reader);
}

absl::Status ParseFailure(const grpc::ByteBuffer& bytes, const google::protobuf::Descriptor& type,
                          absl::string_view what) {
  grpc::Slice flat;
  std::string why;
  if (bytes.Valid() && bytes.DumpToSingleSlice(&flat).ok()) {
    why = ExplainParseFailure(
        absl::string_view(reinterpret_cast<const char*>(flat.begin()), flat.size()), type);
  }
  return absl::InvalidArgumentError(absl::StrCat(what, " could not be parsed as ", type.full_name(),
                                                 why.empty() ? "" : ": ", why));
}

absl::Status ParseRequest(const grpc::ByteBuffer& bytes, google::protobuf::Message* message,
                          absl::string_view what) {
  if (ParseMessage(bytes, message)) return absl::OkStatus();
  return ParseFailure(bytes, *message->GetDescriptor(), what);
}

std::string ExplainParseFailure(absl::string_view bytes, const google::protobuf::Descriptor& type) {
  return FindProblem(bytes, type, /*path=*/"", /*depth=*/0);
}

std::optional<std::string> ReadStringField(absl::string_view bytes,
                                           const google::protobuf::Descriptor& type,
                                           absl::Span<const absl::string_view> path) {
  if (path.empty()) return std::nullopt;
  const FieldDescriptor* field = type.FindFieldByName(std::string(path.front()));
  if (field == nullptr || field->is_repeated()) return std::nullopt;
  const bool last = path.size() == 1;
  if (last ? field->type() != FieldDescriptor::TYPE_STRING
           : field->type() != FieldDescriptor::TYPE_MESSAGE) {
    return std::nullopt;
  }
  std::optional<std::string> found;
  WalkLengthDelimited(bytes, [&](int number, absl::string_view value) {
    if (number != field->number()) return true;
    if (last) {
      // The last occurrence wins; one that is not UTF-8 makes the field unreadable.
      found = IsUtf8(value) ? std::optional<std::string>(std::string(value)) : std::nullopt;
    } else if (std::optional<std::string> inner =
                   ReadStringField(value, *field->message_type(), path.subspan(1))) {
      found = std::move(inner);  // occurrences of a message merge: the last set value wins
    }
    return true;
  });
  return found;
}

absl::Status SerializeResponse(const google::protobuf::Message& message, grpc::ByteBuffer* bytes) {
  bytes->Clear();  // gRPC's writer refuses a buffer that still holds bytes
  bool own_buffer;
  const grpc::Status status =
      grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, bytes, &own_buffer);
  if (status.ok()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("the response could not be serialized as ",
                                          message.GetDescriptor()->full_name(), ": ",
                                          status.error_message()));
}

}  // namespace predlog::services
