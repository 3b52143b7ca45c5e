// Request bytes to protos and response protos to bytes, done by predlog
// rather than by gRPC, so that a request that cannot be parsed is answered
// INVALID_ARGUMENT saying why. gRPC 1.51's callback API answers a request
// that fails to deserialize with UNIMPLEMENTED and an empty message (unary),
// or ends a stream's reads as if the client had closed it (streams); the
// services in grpc_services.h therefore register every method as raw
// (ByteBuffer in, ByteBuffer out) and call these.
//
// Why a parse fails, found after the fact by walking the wire format against
// the request's descriptor (only on the failure path; the fast path is
// protobuf's own parser, as in gRPC's codec):
//   - a proto3 `string` field whose bytes are not valid UTF-8 (protobuf's
//     parser refuses it; proto2 strings and `bytes` fields are not checked),
//     named by its path from the request and its full name:
//       string field prediction.inputs[2].name (predlog.v1.Feature.name) is not valid UTF-8
//   - bytes that are not protobuf wire format, at the top, inside a message
//     field (named by its path) or in a packed repeated scalar field:
//       the bytes are not valid protobuf wire format
//       the bytes of field prediction (a predlog.v1.PredictionLogged) are not valid protobuf
//       wire format
// Repeated fields are indexed in wire order, map entries by key
// (context["region"]); the first problem in wire order is named, which is the
// one protobuf's parser stopped at.
#ifndef PREDLOG_SERVICES_SERVER_REQUEST_PARSE_H_
#define PREDLOG_SERVICES_SERVER_REQUEST_PARSE_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace predlog::services {

// Parses `bytes`, one gRPC message, into `message` (replacing its content)
// as gRPC's protobuf codec would; false when they do not parse (`message` is
// then unspecified). The fast path, with no error text to build. Thread-
// compatible: concurrent calls on distinct messages are safe.
bool ParseMessage(const grpc::ByteBuffer& bytes, google::protobuf::Message* message);

// The answer to bytes that ParseMessage refused: INVALID_ARGUMENT "<what>
// could not be parsed as <type's full name>", followed by ": <why>" when
// ExplainParseFailure finds why. `what` names the message for the caller
// ("the request", "request 3 of the stream").
absl::Status ParseFailure(const grpc::ByteBuffer& bytes, const google::protobuf::Descriptor& type,
                          absl::string_view what);

// ParseMessage, then ParseFailure when it fails: OK or INVALID_ARGUMENT.
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, google::protobuf::Message* message,
                          absl::string_view what = "the request");

// Why `bytes` do not parse as `type` (see the top of this file), or "" when
// neither invalid UTF-8 nor broken wire format explains it (e.g. nesting
// deeper than protobuf's recursion limit). Bytes that do parse also give "".
std::string ExplainParseFailure(absl::string_view bytes, const google::protobuf::Descriptor& type);

// Best effort over bytes that may not parse: the value of the string field
// reached by `path` (field names, from `type` down through singular message
// fields), as the parser would keep it (the last occurrence), if it is
// present, valid UTF-8 and before any broken wire format. Used to put the
// prediction_id on the receipt of a LogStream request that cannot be parsed.
std::optional<std::string> ReadStringField(absl::string_view bytes,
                                           const google::protobuf::Descriptor& type,
                                           absl::Span<const absl::string_view> path);

// Serializes `message` into `bytes` (replacing what they held) exactly as
// gRPC's protobuf codec does. OK, or INTERNAL when protobuf cannot (a
// message over 2 GB).
absl::Status SerializeResponse(const google::protobuf::Message& message, grpc::ByteBuffer* bytes);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_REQUEST_PARSE_H_
