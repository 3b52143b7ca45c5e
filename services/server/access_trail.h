// AccessTrail: who read what. Every gRPC call of a method the role table
// marks recorded (auth::MethodAccess::recorded: reads of predictions, replays,
// states as of a cut, exports, the registry, the trail itself) appends an
// AccessRecorded event to predlog.access through Record before the method
// runs, and is answered only once that record is durable: a call whose
// access cannot be recorded is refused, never served unrecorded. ListAccess
// reads the trail back, newest first.
//
// The trail is a shard like the others (predlog.access-0: hash chain, Merkle
// tree, signed checkpoints, `predlog export --access-trail` proves it), so an
// auditor's reads are as tamper-evident as the predictions they read.
//
// Thread-safe. Borrows the producer and the ingest, which must outlive it.
#ifndef PREDLOG_SERVICES_SERVER_ACCESS_TRAIL_H_
#define PREDLOG_SERVICES_SERVER_ACCESS_TRAIL_H_

#include <cstddef>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "predlog/v1/audit.pb.h"
#include "services/auth/auth.h"
#include "services/kafka/ingest.h"
#include "services/kafka/producer.h"
#include "services/server/event_writer.h"

namespace predlog::services {

class AccessTrail {
 public:
  // `writer`: as the gateway's other writes are configured (direct appends on
  // one machine, Kafka otherwise). `ingest` may be null (a gateway without
  // shards): ListAccess is then UNAVAILABLE.
  AccessTrail(Producer* producer, Ingest* ingest, EventWriterOptions writer)
      : ingest_(ingest), writer_(producer, ingest, writer) {}

  // The longest AccessRecorded.request_json kept whole, in bytes; a longer
  // one is cut at a UTF-8 character boundary and marked as cut.
  static constexpr size_t kMaxRequestJsonBytes = 16 << 10;

  // Appends an AccessRecorded for one call of `method` (its gRPC path) by
  // `caller` from `peer` (gRPC's peer string) asking `request`, keyed by the
  // caller's name, and calls `done` exactly once (possibly before returning)
  // when it is durable: folded into predlog.access-0 with its WAL synced
  // (--sync) on one machine, in Kafka (acks=all) otherwise. Errors name the
  // access trail: RESOURCE_EXHAUSTED (disk below its reserve, too much in
  // flight) and UNAVAILABLE mean retry later; DATA_LOSS when the trail's
  // shard lost acknowledged records; INTERNAL when the fold rejected it.
  void Record(absl::string_view method, const auth::Caller& caller, absl::string_view peer,
              const google::protobuf::Message& request, std::function<void(absl::Status)> done);

  // Whether calls of `method` (a gRPC path, as the role table names it) are
  // recorded: its role-table entry says auth::Trail::kRecorded. INTERNAL for
  // a method the role table does not know: a handler whose path literal is
  // mistyped is refused rather than served unrecorded (fails closed).
  // Every front end (the gRPC adapters, the HTTP API) asks this.
  static absl::StatusOr<bool> Recorded(absl::string_view method);

  // Entries per ListAccess page when page_size is 0, and at most.
  static constexpr uint32_t kDefaultPageSize = 100;
  static constexpr uint32_t kMaxPageSize = 1000;
  // Records of the trail one call reads at most, matching or not: a filter
  // that matches little returns a short page with a token to go on.
  static constexpr uint64_t kMaxScannedRecords = 20'000;

  // One page of the trail, newest first, filtered (ListAccessRequest).
  // INVALID_ARGUMENT for page_size above kMaxPageSize, to before from, or a
  // page token this server did not issue; UNAVAILABLE without shards here;
  // DATA_LOSS when the trail's shard lost acknowledged records or a record
  // of it cannot be read (naming its index).
  absl::StatusOr<predlog::v1::ListAccessResponse> List(
      const predlog::v1::ListAccessRequest& request) const;

 private:
  Ingest* const ingest_;
  EventWriter writer_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_ACCESS_TRAIL_H_
