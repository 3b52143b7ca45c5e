#include "services/server/access_trail.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "services/kafka/kafka_config.h"
#include "storage/event_validation.h"
#include "storage/timestamps.h"

namespace predlog::services {
namespace {

// Records read from the trail's shard per ReadRange while listing.
constexpr size_t kReadChunk = 256;

// `request` as compact protobuf JSON, cut to kMaxRequestJsonBytes at a UTF-8
// character boundary (a protobuf string must stay valid UTF-8).
std::string RequestJson(const google::protobuf::Message& request) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(request, &json, options).ok()) {
    return absl::StrCat("(a ", request.GetDescriptor()->full_name(),
                        " that has no JSON form; its bytes are ", request.ByteSizeLong(), ")");
  }
  if (json.size() <= AccessTrail::kMaxRequestJsonBytes) return json;
  size_t cut = AccessTrail::kMaxRequestJsonBytes;
  while (cut > 0 && (static_cast<unsigned char>(json[cut]) & 0xC0) == 0x80) --cut;
  const size_t total = json.size();
  json.resize(cut);
  absl::StrAppend(&json, "... (cut: the request is ", total, " bytes as JSON)");
  return json;
}

// Whether `method` (a full gRPC path) is what `wanted` names: the path
// itself, or its method name after the last '/'.
bool MethodMatches(absl::string_view method, absl::string_view wanted) {
  if (wanted.empty() || method == wanted) return true;
  const size_t slash = method.rfind('/');
  return slash != absl::string_view::npos && method.substr(slash + 1) == wanted;
}

}  // namespace

absl::StatusOr<bool> AccessTrail::Recorded(absl::string_view method) {
  const auth::MethodAccess* entry = auth::FindMethodAccess(method);
  if (entry == nullptr) {
    return absl::InternalError(absl::StrCat(
        "predlogd's handler names the method ", method,
        ", which its role table does not know (services/auth/role_table.cc): refused"));
  }
  return entry->trail == auth::Trail::kRecorded;
}

void AccessTrail::Record(absl::string_view method, const auth::Caller& caller,
                         absl::string_view peer, const google::protobuf::Message& request,
                         std::function<void(absl::Status)> done) {
  predlog::v1::AuditEvent event;
  EventWriter::StampEnvelope(caller.name, /*claimed_actor=*/"", &event);
  predlog::v1::AccessRecorded* access = event.mutable_access_recorded();
  access->set_method(std::string(method));
  access->set_request_json(RequestJson(request));
  access->set_peer(std::string(peer));
  access->set_credential(caller.credential);
  // As every writer does before Write (the direct path folds it unchecked).
  if (absl::Status valid = storage::ValidateEvent(event, storage::EventLimits()); !valid.ok()) {
    done(absl::InternalError(absl::StrCat(
        "the access record of this call is not valid, so the call is refused: ", valid.message())));
    return;
  }
  writer_.Write(kAccessTopic, caller.name, std::move(event), /*wait_durable=*/false,
                "the access record", [done = std::move(done)](auto receipt) {
                  if (!receipt.ok()) {
                    done(absl::Status(receipt.status().code(),
                                      absl::StrCat("the access trail could not record this call, "
                                                   "so it is refused: ",
                                                   receipt.status().message())));
                    return;
                  }
                  if (receipt->outcome() != predlog::v1::LogReceipt::APPLIED &&
                      receipt->outcome() != predlog::v1::LogReceipt::ACCEPTED) {
                    done(absl::InternalError(absl::StrCat(
                        "the access trail refused this call's record, so the call is refused: ",
                        receipt->reason())));
                    return;
                  }
                  done(absl::OkStatus());
                });
}

absl::StatusOr<predlog::v1::ListAccessResponse> AccessTrail::List(
    const predlog::v1::ListAccessRequest& request) const {
  if (ingest_ == nullptr) {
    return absl::UnavailableError("ListAccess reads this process's shards; it runs no ingest");
  }
  if (request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size ", request.page_size(), " is above the limit of ", kMaxPageSize));
  }
  const size_t page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  const storage::ShardStore& shard = ingest_->access();
  if (absl::Status lost = shard.CheckNotLost(); !lost.ok()) return lost;
  const absl::Time from =
      request.has_from() ? storage::TimeFromProto(request.from()) : absl::InfinitePast();
  const absl::Time to =
      request.has_to() ? storage::TimeFromProto(request.to()) : absl::InfiniteFuture();
  if (to < from) return absl::InvalidArgumentError("to is before from");

  // The trail's records appended in [from, to) are the indexes [low, high):
  // append times never go back along a shard's log (CutAtTime).
  uint64_t high = shard.Head().next_index;
  if (request.has_to()) {
    absl::StatusOr<uint64_t> cut = shard.CutAtTime(to);
    if (!cut.ok()) return cut.status();
    high = std::min(high, *cut);
  }
  uint64_t low = 0;
  if (request.has_from()) {
    absl::StatusOr<uint64_t> cut = shard.CutAtTime(from);
    if (!cut.ok()) return cut.status();
    low = *cut;
  }
  // page_token := decimal index: the page begins below it.
  if (!request.page_token().empty()) {
    uint64_t below = 0;
    if (!absl::SimpleAtoi(request.page_token(), &below) || below > shard.Head().next_index) {
      return absl::InvalidArgumentError("page_token is not one this server issued");
    }
    high = std::min(high, below);
  }

  predlog::v1::ListAccessResponse response;
  const uint64_t scan_end = high - std::min(high - std::min(high, low), kMaxScannedRecords);
  uint64_t next = high;  // records [next, high) were read
  while (next > std::max(low, scan_end) &&
         static_cast<size_t>(response.entries_size()) < page_size) {
    const uint64_t begin = std::max({low, scan_end, next >= kReadChunk ? next - kReadChunk : 0});
    absl::StatusOr<std::vector<storage::StoredRecord>> records =
        shard.ReadRange(begin, static_cast<size_t>(next - begin));
    if (!records.ok()) return records.status();
    // Newest first; stop at a full page, remembering where. (Indexes of a
    // loss the shard recorded are not in the log: ReadRange skips them.)
    next = begin;
    for (auto it = records->rbegin(); it != records->rend(); ++it) {
      absl::StatusOr<predlog::v1::AuditEvent> event = it->Event();
      if (!event.ok()) return event.status();
      if (!event->has_access_recorded()) continue;  // a SourceReset, SourceGap, RecordsLost
      if (request.has_identity() && event->actor() != request.identity()) continue;
      if (!MethodMatches(event->access_recorded().method(), request.method())) continue;
      predlog::v1::AccessEntry* entry = response.add_entries();
      entry->set_index(it->index);
      if (it->appended_at.has_value()) {
        storage::TimeToProto(*it->appended_at, entry->mutable_appended_at());
      }
      *entry->mutable_event() = *std::move(event);
      if (static_cast<size_t>(response.entries_size()) == page_size) {
        next = it->index;
        break;
      }
    }
  }
  if (next > low) response.set_next_page_token(absl::StrCat(next));
  return response;
}

}  // namespace predlog::services
