#include "services/web/transcode.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "storage/status_macros.h"

namespace predlog::web {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

const FieldDescriptor* FindField(const Descriptor& type, absl::string_view name) {
  const std::string key(name);
  if (const FieldDescriptor* field = type.FindFieldByName(key)) return field;
  for (int i = 0; i < type.field_count(); ++i) {
    if (type.field(i)->json_name() == key) return type.field(i);
  }
  return nullptr;
}

bool IsTimestamp(const Descriptor& type) {
  return type.full_name() == google::protobuf::Timestamp::descriptor()->full_name();
}

// INVALID_ARGUMENT when `field` is in a oneof of `message` that another
// field already holds (the second is refused, not silently swapped in).
absl::Status CheckOneof(const Message& message, const FieldDescriptor& field,
                        absl::string_view parameter) {
  const auto* oneof = field.containing_oneof();
  if (oneof == nullptr) return absl::OkStatus();
  const FieldDescriptor* set = message.GetReflection()->GetOneofFieldDescriptor(message, oneof);
  if (set == nullptr || set == &field) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("parameter ", parameter, " cannot be given with ",
                                                 set->name(), " (one of ", oneof->name(), ")"));
}

absl::Status Bad(absl::string_view parameter, absl::string_view value, absl::string_view want) {
  return absl::InvalidArgumentError(
      absl::StrCat("parameter ", parameter, ": \"", value, "\" is not ", want));
}

// Sets the last field of a parameter on `message`.
absl::Status SetLeaf(Message* message, const FieldDescriptor& field, absl::string_view parameter,
                     absl::string_view value) {
  const Reflection& reflection = *message->GetReflection();
  const bool repeated = field.is_repeated();
  if (field.is_map()) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter ", parameter, ": a map cannot be given as a parameter"));
  }
  if (!repeated && reflection.HasField(*message, &field)) {
    return absl::InvalidArgumentError(absl::StrCat("parameter ", parameter, " is given twice"));
  }
  if (!repeated) RETURN_IF_ERROR(CheckOneof(*message, field, parameter));
  const std::string text(value);
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      if (field.type() == FieldDescriptor::TYPE_STRING &&
          !google::protobuf::internal::IsStructurallyValidUTF8(text.data(),
                                                               static_cast<int>(text.size()))) {
        return absl::InvalidArgumentError(absl::StrCat("parameter ", parameter, " is not UTF-8"));
      }
      repeated ? reflection.AddString(message, &field, text)
               : reflection.SetString(message, &field, text);
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_BOOL: {
      if (value != "true" && value != "false" && value != "1" && value != "0") {
        return Bad(parameter, value, "true or false");
      }
      const bool b = value == "true" || value == "1";
      repeated ? reflection.AddBool(message, &field, b) : reflection.SetBool(message, &field, b);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v = 0;
      if (!absl::SimpleAtoi(value, &v)) return Bad(parameter, value, "a 32-bit integer");
      repeated ? reflection.AddInt32(message, &field, v) : reflection.SetInt32(message, &field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v = 0;
      if (!absl::SimpleAtoi(value, &v)) return Bad(parameter, value, "a 64-bit integer");
      repeated ? reflection.AddInt64(message, &field, v) : reflection.SetInt64(message, &field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v = 0;
      if (value.empty() || value[0] == '-' || !absl::SimpleAtoi(value, &v)) {
        return Bad(parameter, value, "an unsigned 32-bit integer");
      }
      repeated ? reflection.AddUInt32(message, &field, v)
               : reflection.SetUInt32(message, &field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v = 0;
      if (value.empty() || value[0] == '-' || !absl::SimpleAtoi(value, &v)) {
        return Bad(parameter, value, "an unsigned 64-bit integer");
      }
      repeated ? reflection.AddUInt64(message, &field, v)
               : reflection.SetUInt64(message, &field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double v = 0;
      if (!absl::SimpleAtod(value, &v) || !std::isfinite(v)) {
        return Bad(parameter, value, "a finite number");
      }
      if (field.cpp_type() == FieldDescriptor::CPPTYPE_FLOAT &&
          std::fabs(v) > std::numeric_limits<float>::max()) {
        return Bad(parameter, value, "a finite 32-bit float");
      }
      if (field.cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
        repeated ? reflection.AddFloat(message, &field, static_cast<float>(v))
                 : reflection.SetFloat(message, &field, static_cast<float>(v));
      } else {
        repeated ? reflection.AddDouble(message, &field, v)
                 : reflection.SetDouble(message, &field, v);
      }
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* type = field.enum_type();
      const auto* named = type->FindValueByName(text);
      int number = 0;
      if (named == nullptr && absl::SimpleAtoi(value, &number)) {
        named = type->FindValueByNumber(number);
      }
      if (named == nullptr) return Bad(parameter, value, absl::StrCat("a ", type->name()));
      repeated ? reflection.AddEnumValue(message, &field, named->number())
               : reflection.SetEnumValue(message, &field, named->number());
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      if (!IsTimestamp(*field.message_type()) || repeated) {
        return absl::InvalidArgumentError(absl::StrCat("parameter ", parameter, ": a repeated ",
                                                       field.message_type()->full_name(),
                                                       " cannot be given as a parameter"));
      }
      google::protobuf::Timestamp time;
      if (!google::protobuf::util::TimeUtil::FromString(text, &time)) {
        return Bad(parameter, value, "an RFC 3339 time (e.g. 2026-11-27T05:54:27Z)");
      }
      reflection.MutableMessage(message, &field)->CopyFrom(time);
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("parameter ", parameter, ": unsupported type"));
}

}  // namespace

namespace {

// Singular fields already set by earlier parameters of one request, by the
// message holding them and the field (a proto and a JSON name are one field;
// a proto3 field at its default has no presence to ask).
using GivenFields = std::set<std::pair<const Message*, const FieldDescriptor*>>;

// SetParameter, refusing a singular field in `given` (and adding it) when
// `given` is not null.
absl::Status SetParameterOnce(Message* message, absl::string_view parameter,
                              absl::string_view value, GivenFields* given) {
  const std::vector<absl::string_view> path = absl::StrSplit(parameter, '.');
  // Every name is checked before anything is set, so an unknown name sets
  // nothing (a bad value may leave an empty parent message set: the request
  // is refused anyway).
  std::vector<const FieldDescriptor*> fields;
  const Descriptor* type = message->GetDescriptor();
  for (size_t i = 0; i < path.size(); ++i) {
    const FieldDescriptor* field = type == nullptr ? nullptr : FindField(*type, path[i]);
    if (field == nullptr) {
      return absl::InvalidArgumentError(
          type == nullptr ? absl::StrCat("unknown parameter ", parameter, ": ", path[i - 1],
                                         " has no fields to name")
                          : absl::StrCat("unknown parameter ", parameter, ": ", type->full_name(),
                                         " has no field ", path[i]));
    }
    fields.push_back(field);
    const bool nested = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
                        !field->is_repeated() && !IsTimestamp(*field->message_type());
    type = nested ? field->message_type() : nullptr;
  }
  if (type != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("parameter ", parameter, ": a ",
                                                   type->full_name(), " is given by its fields (",
                                                   parameter, ".<field>=...)"));
  }
  Message* at = message;
  for (size_t i = 0; i + 1 < fields.size(); ++i) {
    RETURN_IF_ERROR(CheckOneof(*at, *fields[i], parameter));
    at = at->GetReflection()->MutableMessage(at, fields[i]);
  }
  const FieldDescriptor& leaf = *fields.back();
  if (given != nullptr && !leaf.is_repeated() && !given->insert({at, &leaf}).second) {
    return absl::InvalidArgumentError(absl::StrCat("parameter ", parameter, " is given twice"));
  }
  return SetLeaf(at, leaf, parameter, value);
}

}  // namespace

absl::Status SetParameter(Message* message, absl::string_view parameter, absl::string_view value) {
  return SetParameterOnce(message, parameter, value, nullptr);
}

absl::Status SetParameters(google::protobuf::Message* message,
                           const std::vector<std::pair<std::string, std::string>>& parameters) {
  GivenFields given;
  for (const auto& [parameter, value] : parameters) {
    RETURN_IF_ERROR(SetParameterOnce(message, parameter, value, &given));
  }
  return absl::OkStatus();
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorJson(const absl::Status& status) {
  // A Struct prints the message with JSON's escaping.
  google::protobuf::Struct body;
  (*body.mutable_fields())["code"].set_number_value(static_cast<int>(status.code()));
  (*body.mutable_fields())["status"].set_string_value(absl::StatusCodeToString(status.code()));
  (*body.mutable_fields())["message"].set_string_value(std::string(status.message()));
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(body, &json).ok()) {
    return absl::StrCat("{\"code\": ", static_cast<int>(status.code()), ", \"status\": \"",
                        absl::StatusCodeToString(status.code()),
                        "\", \"message\": \"(not UTF-8)\"}");
  }
  return json;
}

absl::Status ToJson(const Message& message, std::string* json) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  json->clear();
  if (!google::protobuf::util::MessageToJsonString(message, json, options).ok()) {
    return absl::InternalError(
        absl::StrCat("the ", message.GetDescriptor()->full_name(), " cannot be printed as JSON"));
  }
  return absl::OkStatus();
}

}  // namespace predlog::web
