// HTTP/JSON transcoding for /api/v1/: HTTP requests to the gRPC request
// messages the service classes take, and their answers back to HTTP.
//
// Rules (those of Google's HTTP/JSON transcoding, google/api/http.proto,
// "HTTP mapping" and its query-parameter rules, as grpc-gateway applies them):
// - A path variable or query parameter names a field of the request message
//   by its proto name or its JSON name (`page_size` or `pageSize`), dotted
//   for nested singular message fields (`against.name`, `as_of.after.index`).
// - A scalar takes its value as text: decimal integers within the field's
//   range, `true`/`false` (also 1/0), finite numbers within the field's
//   range, enum values by name (or number). A repeated scalar appends one
//   value per parameter; a singular field given twice is refused (where
//   grpc-gateway keeps the last), and so is a path variable given again as a
//   query parameter (where grpc-gateway drops the parameter): an ambiguous
//   request is an error here.
// - google.protobuf.Timestamp takes RFC 3339 text (2026-11-27T05:54:27Z,
//   fractions and offsets allowed; protobuf's TimeUtil::FromString).
// - Answers are the response message in the protobuf JSON mapping
//   (https://protobuf.dev/programming-guides/proto3/#json): lowerCamelCase
//   names, every scalar printed even at its default, 64-bit integers as
//   strings, Timestamps as RFC 3339.
// - Errors map gRPC codes to HTTP statuses as google/rpc/code.proto
//   documents them; the body is {"code": <gRPC code>, "status": "<NAME>",
//   "message": "..."}.
//
// Stateless; thread-safe.
#ifndef PREDLOG_SERVICES_WEB_TRANSCODE_H_
#define PREDLOG_SERVICES_WEB_TRANSCODE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace predlog::web {

// Sets the field `parameter` of `message` (rules above) to `value`.
// INVALID_ARGUMENT naming the parameter: no such field ("unknown parameter
// X: predlog.v1.Y has no field X"), a field that cannot be given as text (a
// map, a repeated or unsupported message), a value that does not parse as
// the field's type (saying the type), a second value for a singular field,
// or a field of a oneof another parameter already set.
absl::Status SetParameter(google::protobuf::Message* message, absl::string_view parameter,
                          absl::string_view value);

// SetParameter for each of `parameters` in order (path variables first,
// then the query's), refusing a singular field given twice under any of its
// names ("parameter X is given twice").
absl::Status SetParameters(google::protobuf::Message* message,
                           const std::vector<std::pair<std::string, std::string>>& parameters);

// The HTTP status for a gRPC/absl code (google/rpc/code.proto's mapping):
// OK 200, INVALID_ARGUMENT/FAILED_PRECONDITION/OUT_OF_RANGE 400,
// UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404,
// ALREADY_EXISTS/ABORTED 409, RESOURCE_EXHAUSTED 429, CANCELLED 499,
// UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, others 500.
int HttpStatusOf(absl::StatusCode code);

// The JSON body of an error answer (rules above). `status` must not be OK.
std::string ErrorJson(const absl::Status& status);

// `message` in the protobuf JSON mapping (rules above). INTERNAL when it
// cannot be printed (a string field that is not UTF-8).
absl::Status ToJson(const google::protobuf::Message& message, std::string* json);

}  // namespace predlog::web

#endif  // PREDLOG_SERVICES_WEB_TRANSCODE_H_
