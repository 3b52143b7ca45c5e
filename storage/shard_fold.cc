// ShardStore::Impl::ApplyBatch: the fold of a batch of source messages into ONE
// RocksDB WriteBatch (records, indexes, state, rejected records, incarnations
// and the head), and the fold of each kind of message. The formats written
// here are the grammar at the top of shard_store_impl.h.
#include <sys/statvfs.h>

#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "storage/artifact_store.h"
#include "storage/deterministic_bytes.h"
#include "storage/event_validation.h"
#include "storage/key_codec.h"
#include "storage/logging.h"
#include "storage/sha256.h"
#include "storage/shard_group.h"
#include "storage/shard_store.h"
#include "storage/shard_store_impl.h"
#include "storage/state_fold.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::storage {
using namespace internal;  // NOLINT(build/namespaces): the helpers shared by ShardStore::Impl
namespace {

using ::predlog::v1::AuditEvent;

// Whether two bodies carry the same content: equal deterministic
// serializations (map entries sorted). Byte equality, not field equality, so a
// retry with a NaN input is a duplicate and -0.0 vs 0.0 is a difference.
bool SameContent(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return DeterministicBytes(a) == DeterministicBytes(b);
}

std::string EncodeIncarnation(const Incarnation& inc) {
  std::string value;
  AppendI64(&value, inc.last_offset);
  value.append(inc.name);
  return value;
}

// The lineage parents of a registry node as state keys, in their listed
// order: a dataset's derived_from datasets, then its derived_from_models; a
// model's training datasets (provenance.datasets). Datasets and models are
// separate namespaces, as their state keys are.
void AppendLineageParents(const predlog::v1::DatasetRegistered& d, std::vector<std::string>* out) {
  for (const auto& parent : d.derived_from()) {
    out->push_back(StateKey2(kDatasetTag, parent.name(), parent.version()));
  }
  for (const auto& model : d.derived_from_models()) {
    out->push_back(StateKey2(kModelTag, model.name(), model.version()));
  }
}
void AppendLineageParents(const predlog::v1::ModelRegistered& m, std::vector<std::string>* out) {
  for (const auto& dataset : m.provenance().datasets()) {
    out->push_back(StateKey2(kDatasetTag, dataset.name(), dataset.version()));
  }
}

// "dataset name@version" or "model name@version" for a state key of either.
std::string LineageNodeName(absl::string_view key) {
  const char tag = key.empty() ? '\0' : key[0];
  key.remove_prefix(key.empty() ? 0 : 1);
  absl::string_view name, version;
  ReadLengthPrefixed(&key, &name);
  ReadLengthPrefixed(&key, &version);
  return absl::StrCat(tag == kModelTag ? "model " : "dataset ", name, "@", version);
}

}  // namespace

void internal::PutDataSourceEntries(const predlog::v1::PredictionLogged& p, absl::Time served_at,
                                    absl::string_view index_key,
                                    rocksdb::ColumnFamilyHandle* by_source,
                                    rocksdb::WriteBatch* batch, std::string* key,
                                    std::string* value) {
  const auto& sources = p.data_sources();
  if (sources.empty()) return;
  value->clear();
  AppendLengthPrefixed(value, p.model().name());
  AppendLengthPrefixed(value, p.model().version());
  // A dataset named twice is one entry. A few sources (the usual case) are
  // compared pairwise, without allocating; a long list (nothing bounds it
  // but the message size) through a set, so it stays linear.
  constexpr int kPairwiseUpTo = 16;
  absl::flat_hash_set<std::pair<absl::string_view, absl::string_view>> seen;
  for (int i = 0; i < sources.size(); ++i) {
    const predlog::v1::DatasetRef& source = sources[i];
    if (sources.size() <= kPairwiseUpTo) {
      bool repeated = false;
      for (int j = 0; j < i && !repeated; ++j) {
        repeated = sources[j].name() == source.name() && sources[j].version() == source.version();
      }
      if (repeated) continue;
    } else if (!seen.emplace(source.name(), source.version()).second) {
      continue;
    }
    key->clear();
    AppendLengthPrefixed(key, source.name());
    AppendLengthPrefixed(key, source.version());
    AppendTime(key, served_at);
    key->append(index_key.data(), index_key.size());
    batch->Put(by_source, *key, *value);
  }
}

void internal::PutEntityEntry(const predlog::v1::AuditEvent& event,
                              std::optional<absl::Time> appended_at, absl::string_view index_key,
                              rocksdb::ColumnFamilyHandle* by_entity, rocksdb::WriteBatch* batch,
                              std::string* key) {
  const predlog::v1::EntityChanged& change = event.entity_changed();
  // The grammar (shard_store_impl.h, by_entity) says why recorded_at, and
  // why appended_at stands in for a missing one.
  const absl::Time recorded_at = event.has_recorded_at() ? TimeFromProto(event.recorded_at())
                                                         : appended_at.value_or(absl::UnixEpoch());
  key->clear();
  AppendLengthPrefixed(key, change.entity_type());
  AppendLengthPrefixed(key, change.entity_id());
  AppendTime(key, recorded_at);
  key->append(index_key.data(), index_key.size());
  batch->Put(by_entity, *key, rocksdb::Slice());
}

absl::StatusOr<BatchResult> ShardStore::Impl::ApplyBatch(absl::Span<const SourceMessage> messages) {
  for (;;) {
    blocked_on_.reset();
    absl::StatusOr<BatchResult> result = TryApplyBatch(messages);
    // Written or failed: the ids this batch held are free for other shards.
    if (options_.group != nullptr) {
      options_.group->Release(reserved_);
      reserved_.clear();
    }
    if (!blocked_on_.has_value()) return result;
    // Another shard is folding one of this batch's prediction_ids. Nothing of
    // this attempt was written; fold again once that shard's write is done,
    // so this copy is compared with its record (storage/shard_group.h).
    options_.group->AwaitReleased(*blocked_on_);
    // Two shards that met each other's ids in opposite orders wake together;
    // a random pause keeps them from colliding again and again.
    thread_local std::mt19937 rng(std::random_device{}());
    absl::SleepFor(absl::Microseconds(std::uniform_int_distribution<int>(0, 500)(rng)));
  }
}

absl::StatusOr<BatchResult> ShardStore::Impl::TryApplyBatch(
    absl::Span<const SourceMessage> messages) {
  if (options_.read_only) {
    return absl::FailedPreconditionError(
        absl::StrCat("shard ", options_.name, " is open read-only"));
  }
  if (lost_.has_value()) return LostError();
  RETURN_IF_ERROR(CheckFreeSpace(messages));
  BatchState b;
  {
    absl::MutexLock lock(&mu_);
    b.h = head_;
  }
  batch_.Clear();
  batch_predictions_.clear();
  state_overlay_.clear();
  batch_error_ = absl::OkStatus();
  batch_time_ = NextAppendTime();

  BatchResult result;
  result.messages.resize(messages.size());
  const uint64_t resets_before = b.h.head.counters.source_resets;
  const uint64_t next_index_before = b.h.head.next_index;
  for (size_t i = 0; i < messages.size(); ++i) {
    MessageResult& r = result.messages[i];
    if (messages[i].direct) {
      // Numbered among the direct appends; no redelivery check, and the
      // Kafka source position stays as it is.
      SourceMessage m = messages[i];
      m.offset = static_cast<int64_t>(b.h.head.direct_appends++);
      b.source_seq = 0;
      FoldMessage(m, &b, &r);
      r.direct_offset = m.offset;
      if (!batch_error_.ok()) return batch_error_;
      continue;
    }
    const SourceMessage& m = messages[i];
    std::optional<SourcePosition>& last = b.h.head.last_source;
    if (!last.has_value() || last->incarnation != m.incarnation) {
      // A source this shard has moved on from: what it folded from there is a
      // redelivery; anything newer cannot be ordered into the log any more, so
      // it is kept in rejected, never skipped silently.
      if (std::optional<std::pair<uint32_t, Incarnation>> old = FindIncarnation(m.incarnation, b);
          old.has_value()) {
        if (m.offset <= old->second.last_offset) {
          r.outcome = FoldOutcome::kRedelivered;
          ++b.h.head.counters.redelivered;
        } else {
          Reject(
              m, old->first, RejectKind::kRejected, std::nullopt,
              absl::StrCat("from superseded source incarnation ", m.incarnation, ": offset ",
                           m.offset, " is after its last folded offset ", old->second.last_offset,
                           " and the shard now folds ", last->incarnation),
              &b, &r);
        }
        continue;
      }
      // Incarnations are numbered 1, 2, ... without gaps.
      uint32_t seq;
      {
        absl::MutexLock lock(&mu_);
        seq = static_cast<uint32_t>(incarnations_.size() + b.new_incarnations + 1);
      }
      ++b.new_incarnations;
      const bool reset = last.has_value();
      Incarnation previous;
      if (reset) {
        previous = Incarnation{last->incarnation, last->offset};
        batch_.Put(cfs_[kMetaCf], IncarnationKey(b.h.incarnation_seq), EncodeIncarnation(previous));
        b.incarnation_updates.emplace_back(b.h.incarnation_seq, previous);
      }
      const Incarnation current{std::string(m.incarnation), -1};
      batch_.Put(cfs_[kMetaCf], IncarnationKey(seq), EncodeIncarnation(current));
      b.incarnation_updates.emplace_back(seq, current);
      b.h.incarnation_seq = seq;
      b.source_seq = seq;
      last = SourcePosition{current.name, -1};
      if (reset) WriteSourceReset(previous.name, previous.last_offset, m.incarnation, m.offset, &b);
    }
    if (m.offset <= last->offset) {
      r.outcome = FoldOutcome::kRedelivered;
      ++b.h.head.counters.redelivered;
      continue;
    }
    last->offset = m.offset;
    b.source_seq = b.h.incarnation_seq;
    if (m.gap_first_offset.has_value()) {
      WriteSourceGap(m, &b, &r);
    } else {
      FoldMessage(m, &b, &r);
    }
    if (!batch_error_.ok()) return batch_error_;
  }
  result.source_resets = static_cast<int>(b.h.head.counters.source_resets - resets_before);

  std::string head_value;
  EncodeHead(b.h, &head_value);
  batch_.Put(cfs_[kMetaCf], ToSlice(kHeadKey), head_value);
  RETURN_IF_ERROR(FromRocks(
      db_->Write(write_options_, &batch_),
      absl::StrCat("shard ", options_.name, ": write batch of ", messages.size(), " messages")));
  // The WAL is synced (with sync_writes): now the mark may say so. A failed
  // mark write loses no data, only the detection of a later loss; the next
  // write retries it.
  if (mark_ != nullptr && b.h.head.next_index != next_index_before) {
    if (absl::Status marked =
            mark_->Write({b.h.head.next_index, b.h.head.chain_head, false, mark_identity_});
        !marked.ok()) {
      PREDLOG_LOG(ERROR) << "shard " << options_.name << ": " << marked;
    }
  }
  absl::MutexLock lock(&mu_);
  head_ = std::move(b.h);
  for (auto& [seq, inc] : b.incarnation_updates) incarnations_[seq] = std::move(inc);
  return result;
}

void ShardStore::Impl::FoldMessage(const SourceMessage& m, BatchState* b, MessageResult* r) {
  if (m.payload.empty()) {
    return Reject(m, b->source_seq, RejectKind::kRejected, std::nullopt, "empty message", b, r);
  }
  if (m.payload.size() > options_.max_message_bytes) {
    std::string reason = absl::StrCat("message is ", m.payload.size(), " bytes; the limit is ",
                                      options_.max_message_bytes);
    if (m.payload.size() <= kMaxRejectedKeptBytes) {
      return Reject(m, b->source_seq, RejectKind::kRejected, std::nullopt, std::move(reason), b, r);
    }
    // Too large to keep whole: its digest names it, a prefix shows what it was.
    absl::StrAppend(&reason, "; kept: its first ", kRejectedPrefixBytes,
                    " bytes; SHA-256 of all of it: ", ToHex(Sha256(m.payload)));
    SourceMessage prefix = m;
    prefix.payload = m.payload.substr(0, kRejectedPrefixBytes);
    return Reject(prefix, b->source_seq, RejectKind::kRejected, std::nullopt, std::move(reason), b,
                  r);
  }
  if (m.event != nullptr) {
    folded_ = m.event;  // parsed and validated by the caller: not again
  } else {
    NewEvent();
    if (!event_->ParseFromArray(m.payload.data(), static_cast<int>(m.payload.size()))) {
      return Reject(m, b->source_seq, RejectKind::kRejected, std::nullopt,
                    "not a serialized predlog.v1.AuditEvent (protobuf parse failed)", b, r);
    }
    if (absl::Status valid = ValidateEvent(*event_, options_.limits); !valid.ok()) {
      return Reject(m, b->source_seq, RejectKind::kRejected, std::nullopt,
                    std::string(valid.message()), b, r);
    }
  }
  if (options_.group != nullptr) {
    const bool prediction = folded_->has_prediction_logged();
    const bool entity = folded_->has_entity_changed();
    const std::string* key = prediction ? &folded_->prediction_logged().subject_id()
                             : entity   ? &folded_->entity_changed().entity_id()
                                        : nullptr;
    if (key != nullptr) {
      const int32_t home = options_.group->PartitionOf(*key);
      if (home != options_.partition) {
        ++b->h.head.counters.misrouted;
        // An entity's record is one fold in one order, in its key's shard:
        // a change arriving elsewhere cannot be ordered into it.
        if (entity) {
          return Reject(
              m, b->source_seq, RejectKind::kRejected, std::nullopt,
              absl::StrCat("entity_changed.entity_id ", *key, " belongs to partition ", home,
                           " (murmur2 of the key) but arrived on partition ", options_.partition,
                           "; produce with key = entity_id and partitioner=murmur2_random"),
              b, r);
        }
      }
    }
  }
  if (folded_->has_access_recorded() != options_.access_trail) {
    return Reject(m, b->source_seq, RejectKind::kRejected, std::nullopt,
                  options_.access_trail
                      ? absl::StrCat("shard ", options_.name,
                                     " is the access trail: it takes access_recorded events only")
                      : absl::StrCat("access_recorded belongs in the access trail "
                                     "(predlog.access), not in shard ",
                                     options_.name),
                  b, r);
  }
  switch (folded_->body_case()) {
    case AuditEvent::kPredictionLogged:
      return FoldPrediction(m, b, r);
    case AuditEvent::kAccessRecorded:
      r->outcome = FoldOutcome::kApplied;
      r->index = AppendRecord(m.payload, m.offset, b, &r->leaf);
      return;
    case AuditEvent::kModelRegistered: {
      const auto& registered = folded_->model_registered();
      const auto& model = registered.model();
      if (options_.artifacts != nullptr) {
        // The gateway stores the artifact before it writes the event; an
        // event produced straight to Kafka must name one that is stored too.
        const std::optional<Digest> digest = DigestFromHex(model.artifact_sha256());
        absl::StatusOr<ArtifactInfo> stored = options_.artifacts->Stat(*digest);
        if (absl::IsNotFound(stored.status())) {
          return Reject(
              m, b->source_seq, RejectKind::kRejected, std::nullopt,
              absl::StrCat("model_registered.model.artifact_sha256 ", model.artifact_sha256(),
                           " is not in the artifact store ", options_.artifacts->dir(),
                           "; register models with predlog model register (or the "
                           "Registry/RegisterModel call), which uploads the artifact"),
              b, r);
        }
        if (!stored.ok()) {
          batch_error_ = stored.status();
          return;
        }
        if (registered.artifact_size_bytes() != 0 &&
            registered.artifact_size_bytes() != stored->size_bytes) {
          return Reject(
              m, b->source_seq, RejectKind::kRejected, std::nullopt,
              absl::StrCat("model_registered.artifact_size_bytes is ",
                           registered.artifact_size_bytes(), " but the stored artifact ",
                           model.artifact_sha256(), " has ", stored->size_bytes, " bytes"),
              b, r);
        }
      }
      return FoldKeyedBody(m, StateKey2(kModelTag, model.name(), model.version()), registered, b,
                           r);
    }
    case AuditEvent::kDatasetRegistered: {
      const auto& dataset = folded_->dataset_registered().dataset();
      return FoldKeyedBody(m, StateKey2(kDatasetTag, dataset.name(), dataset.version()),
                           folded_->dataset_registered(), b, r);
    }
    case AuditEvent::kModelDeployed: {
      const auto& deploy = folded_->model_deployed();
      // A deploy names a version this shard's registry holds (registered in
      // an earlier record or earlier in this batch), with its digest if given.
      absl::StatusOr<std::optional<std::string>> model =
          ReadStateForWrite(StateKey2(kModelTag, deploy.model().name(), deploy.model().version()));
      if (!model.ok()) {
        batch_error_ = model.status();
        return;
      }
      const std::string named = absl::StrCat(deploy.model().name(), "@", deploy.model().version());
      if (!model->has_value()) {
        return Reject(m, b->source_seq, RejectKind::kRejected, std::nullopt,
                      absl::StrCat("model_deployed.model ", named, " is not registered"), b, r);
      }
      if (!deploy.model().artifact_sha256().empty()) {
        uint64_t index = 0;
        Digest leaf;
        predlog::v1::ModelRegistered registered;
        if (!ParseIndexedState(**model, &index, &leaf, &registered)) {
          batch_error_ = absl::DataLossError(
              absl::StrCat("shard ", options_.name, ": corrupt state of model ", named));
          return;
        }
        if (registered.model().artifact_sha256() != deploy.model().artifact_sha256()) {
          return Reject(m, b->source_seq, RejectKind::kRejected, std::nullopt,
                        absl::StrCat("model_deployed.model.artifact_sha256 is ",
                                     deploy.model().artifact_sha256(), " but ", named,
                                     " was registered at index ", index, " with ",
                                     registered.model().artifact_sha256()),
                        b, r);
        }
      }
      r->outcome = FoldOutcome::kApplied;
      r->index = AppendRecord(m.payload, m.offset, b, &r->leaf);
      std::string key = StateKey2(kDeploymentTag, deploy.route(), deploy.model().name());
      AppendLengthPrefixed(&key, deploy.model().version());
      return PutState(key, IndexedState(r->index, r->leaf, deploy));
    }
    case AuditEvent::kEntityChanged:
      return FoldEntityChange(m, b, r);
    case AuditEvent::kSourceReset:
    case AuditEvent::kSourceGap:
    case AuditEvent::kRecordsLost:
    case AuditEvent::BODY_NOT_SET:
      break;  // ValidateEvent rejected these.
  }
  PREDLOG_CHECK(false) << "validated event with unhandled body " << folded_->body_case();
}

void ShardStore::Impl::FoldPrediction(const SourceMessage& m, BatchState* b, MessageResult* r) {
  const auto& p = folded_->prediction_logged();
  const std::string& id = p.prediction_id();

  // Is the id taken, by this batch, by this shard's log, or by another shard's?
  std::optional<PendingRecord> original;
  std::string original_shard;  // empty: this shard
  if (auto it = batch_predictions_.find(id); it != batch_predictions_.end()) {
    original = it->second;
  } else {
    std::string index_value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), cfs_[kByPredictionCf], ToSlice(id), &index_value);
    if (s.ok()) {
      uint64_t index;
      if (!DecodeIndexKey(index_value, &index)) {
        batch_error_ = absl::DataLossError(
            absl::StrCat("shard ", options_.name, ": corrupt by_prediction entry for ", id));
        return;
      }
      absl::StatusOr<StoredRecord> stored = Get(index);
      if (!stored.ok()) {
        batch_error_ = stored.status();
        return;
      }
      original_payload_ = std::move(stored->payload);
      original = PendingRecord{index, stored->leaf, original_payload_};
    } else if (!s.IsNotFound()) {
      batch_error_ = FromRocks(s, absl::StrCat("shard ", options_.name, ": lookup ", id));
      return;
    } else if (options_.group != nullptr) {
      if (!options_.group->TryReserve(id, options_.partition)) {
        blocked_on_ = id;
        batch_error_ = absl::AbortedError(
            absl::StrCat("prediction_id ", id, " is being folded by another shard"));
        return;
      }
      reserved_.push_back(id);
      absl::StatusOr<std::optional<ShardGroup::Found>> found =
          options_.group->FindElsewhere(id, options_.partition);
      if (!found.ok()) {
        batch_error_ = found.status();
        return;
      }
      if (found->has_value()) {
        original_payload_ = std::move((*found)->payload);
        original = PendingRecord{(*found)->index, (*found)->leaf, original_payload_};
        original_shard = std::move((*found)->shard);
      }
    }
  }
  if (original.has_value()) {
    // Identical content means an equal PredictionLogged body; the envelope
    // (event id, recorded_at, actor) of a retry may differ.
    const bool same = original_.ParseFromArray(original->payload.data(),
                                               static_cast<int>(original->payload.size())) &&
                      original_.has_prediction_logged() &&
                      SameContent(original_.prediction_logged(), p);
    if (same) {
      r->outcome = FoldOutcome::kDuplicate;
      r->index = original->index;
      r->leaf = original->leaf;
      r->original_shard = std::move(original_shard);
      ++b->h.head.counters.duplicates;
      return;
    }
    if (original_shard.empty()) {
      return Reject(m, b->source_seq, RejectKind::kConflict, original->index,
                    absl::StrCat("prediction_id ", id, " is already recorded at index ",
                                 original->index, " with different content"),
                    b, r);
    }
    Reject(m, b->source_seq, RejectKind::kConflict, std::nullopt,
           absl::StrCat("prediction_id ", id, " is already recorded in ", original_shard,
                        " at index ", original->index, " with different content"),
           b, r);
    r->index = original->index;
    r->original_shard = std::move(original_shard);
    return;
  }

  r->outcome = FoldOutcome::kApplied;
  r->index = AppendRecord(m.payload, m.offset, b, &r->leaf);
  batch_predictions_.emplace(id, PendingRecord{r->index, r->leaf, m.payload});

  const std::string index_key = IndexKey(r->index);
  batch_.Put(cfs_[kByPredictionCf], ToSlice(id), index_key);
  const absl::Time served_at = TimeFromProto(p.served_at());
  key_.clear();
  AppendLengthPrefixed(&key_, p.subject_id());
  AppendTime(&key_, served_at);
  key_.append(index_key);
  batch_.Put(cfs_[kBySubjectCf], key_, rocksdb::Slice());
  key_.clear();
  AppendLengthPrefixed(&key_, p.model().name());
  AppendLengthPrefixed(&key_, p.model().version());
  AppendTime(&key_, served_at);
  key_.append(index_key);
  batch_.Put(cfs_[kByModelCf], key_, rocksdb::Slice());
  if (!p.trace_id().empty()) {
    key_.clear();
    AppendLengthPrefixed(&key_, p.trace_id());
    AppendTime(&key_, served_at);
    key_.append(index_key);
    batch_.Put(cfs_[kByTraceCf], key_, rocksdb::Slice());
  }
  PutDataSourceEntries(p, served_at, index_key, cfs_[kBySourceCf], &batch_, &key_, &source_value_);
}

void ShardStore::Impl::FoldKeyedBody(const SourceMessage& m, const std::string& state_key,
                                     const google::protobuf::Message& body, BatchState* b,
                                     MessageResult* r) {
  absl::StatusOr<std::optional<std::string>> existing = ReadStateForWrite(state_key);
  if (!existing.ok()) {
    batch_error_ = existing.status();
    return;
  }
  if (existing->has_value()) {
    uint64_t index = 0;
    Digest leaf;
    std::unique_ptr<google::protobuf::Message> stored(body.New());
    if (!ParseIndexedState(**existing, &index, &leaf, stored.get())) {
      batch_error_ = absl::DataLossError(absl::StrCat(
          "shard ", options_.name, ": corrupt state of ", body.GetDescriptor()->name()));
      return;
    }
    if (SameContent(*stored, body)) {
      r->outcome = FoldOutcome::kDuplicate;
      r->index = index;
      r->leaf = leaf;
      ++b->h.head.counters.duplicates;
      return;
    }
    return Reject(m, b->source_seq, RejectKind::kConflict, index,
                  absl::StrCat(body.GetDescriptor()->name(), " for this name and version is ",
                               "already recorded at index ", index, " with different content"),
                  b, r);
  }
  // A new node of the lineage graph. Registration is write-once and parents
  // may be registered later, so the graph gains a cycle only here: when the
  // new node's registered ancestors lead back to it.
  std::vector<std::string> parents;
  if (folded_->has_dataset_registered()) {
    AppendLineageParents(folded_->dataset_registered(), &parents);
  } else if (folded_->has_model_registered()) {
    AppendLineageParents(folded_->model_registered(), &parents);
  }
  if (!parents.empty()) {
    absl::StatusOr<std::optional<std::string>> cycle =
        FindLineageCycle(state_key, std::move(parents));
    if (!cycle.ok()) {
      batch_error_ = cycle.status();
      return;
    }
    if (cycle->has_value()) {
      return Reject(m, b->source_seq, RejectKind::kRejected, std::nullopt,
                    absl::StrCat(folded_->has_dataset_registered() ? "dataset_registered"
                                                                   : "model_registered",
                                 " ", kLineageCycleReason, ": ", **cycle),
                    b, r);
    }
  }
  r->outcome = FoldOutcome::kApplied;
  r->index = AppendRecord(m.payload, m.offset, b, &r->leaf);
  PutState(state_key, IndexedState(r->index, r->leaf, body));
}

absl::StatusOr<std::optional<std::string>> ShardStore::Impl::FindLineageCycle(
    const std::string& node, std::vector<std::string> parents) {
  // Depth first from the node's parents, each in its listed order, through
  // registered nodes only (an unregistered one has no known parents yet),
  // each node expanded once: the first path back to `node` in that order.
  struct Frame {
    std::string key;
    std::vector<std::string> parents;
    size_t next = 0;
  };
  std::vector<Frame> path;
  path.push_back(Frame{node, std::move(parents)});
  absl::flat_hash_set<std::string> expanded;
  while (!path.empty()) {
    if (path.back().next == path.back().parents.size()) {
      path.pop_back();
      continue;
    }
    const std::string parent = path.back().parents[path.back().next++];
    if (parent == node) {
      std::string cycle;
      for (const Frame& f : path) absl::StrAppend(&cycle, LineageNodeName(f.key), " <- ");
      absl::StrAppend(&cycle, LineageNodeName(node));
      return cycle;
    }
    if (!expanded.insert(parent).second) continue;
    ASSIGN_OR_RETURN(std::optional<std::string> value, ReadStateForWrite(parent));
    if (!value.has_value()) continue;
    Frame frame{parent, {}};
    uint64_t index = 0;
    Digest leaf;
    bool parsed;
    if (parent[0] == kModelTag) {
      predlog::v1::ModelRegistered model;
      parsed = ParseIndexedState(*value, &index, &leaf, &model);
      AppendLineageParents(model, &frame.parents);
    } else {
      predlog::v1::DatasetRegistered dataset;
      parsed = ParseIndexedState(*value, &index, &leaf, &dataset);
      AppendLineageParents(dataset, &frame.parents);
    }
    if (!parsed) {
      return absl::DataLossError(
          absl::StrCat("shard ", options_.name, ": corrupt state of ", LineageNodeName(parent)));
    }
    path.push_back(std::move(frame));
  }
  return std::nullopt;
}

void ShardStore::Impl::FoldEntityChange(const SourceMessage& m, BatchState* b, MessageResult* r) {
  const auto& change = folded_->entity_changed();
  const std::string key = StateKey2(kEntityTag, change.entity_type(), change.entity_id());
  absl::StatusOr<std::optional<std::string>> existing = ReadStateForWrite(key);
  if (!existing.ok()) {
    batch_error_ = existing.status();
    return;
  }
  predlog::v1::EntityState state;
  if (existing->has_value() && !state.ParseFromString(**existing)) {
    batch_error_ =
        absl::DataLossError(absl::StrCat("shard ", options_.name, ": corrupt state of entity ",
                                         change.entity_type(), "/", change.entity_id()));
    return;
  }
  r->outcome = FoldOutcome::kApplied;
  r->index = AppendRecord(m.payload, m.offset, b, &r->leaf);
  ApplyEntityChange(change, r->index, &state);
  PutState(key, state.SerializeAsString());
  PutEntityEntry(*folded_, batch_time_, IndexKey(r->index), cfs_[kByEntityCf], &batch_, &key_);
}

uint64_t ShardStore::Impl::AppendRecord(absl::string_view payload, int64_t offset, BatchState* b,
                                        Digest* leaf) {
  ShardHead& h = b->h.head;
  const uint64_t index = h.next_index++;
  *leaf = Sha256(payload);
  h.chain_head = ChainNext(h.chain_head, *leaf);
  ++h.counters.applied;

  const std::string index_key = IndexKey(index);
  header_.clear();
  AppendU8(&header_, kRecordFormat);
  header_.append(leaf->begin(), leaf->end());
  header_.append(h.chain_head.begin(), h.chain_head.end());
  AppendU32(&header_, b->source_seq);
  AppendI64(&header_, offset);
  AppendI64(&header_, absl::ToUnixMicros(batch_time_));
  const rocksdb::Slice key_slice = ToSlice(index_key);
  const rocksdb::Slice value_parts[2] = {ToSlice(header_), ToSlice(payload)};
  batch_.Put(cfs_[kEventsCf], rocksdb::SliceParts(&key_slice, 1),
             rocksdb::SliceParts(value_parts, 2));

  key_.clear();
  AppendTime(&key_, batch_time_);
  key_.append(index_key);
  batch_.Put(cfs_[kByTimeCf], key_, rocksdb::Slice());
  AppendMerkleLeaf(RecordMerkleLeaf(batch_time_, *leaf), /*keep_leaf=*/false, b);
  return index;
}

void ShardStore::Impl::AppendMerkleLeaf(const Digest& leaf_hash, bool keep_leaf, BatchState* b) {
  completed_.clear();
  b->h.tree.Append(leaf_hash, &completed_);
  for (const MerkleNode& n : completed_) {
    if (n.level == 0 && !keep_leaf) continue;  // the record's header gives it
    key_.clear();
    AppendMerkleKey(&key_, n.level, n.index);
    batch_.Put(cfs_[kMerkleCf], key_, ToSlice(AsBytes(n.hash)));
  }
}

void ShardStore::Impl::Reject(const SourceMessage& m, uint32_t source_seq, RejectKind kind,
                              std::optional<uint64_t> original, std::string reason, BatchState* b,
                              MessageResult* r) {
  ShardHead& h = b->h.head;
  const uint64_t seq = h.next_rejected++;
  if (kind == RejectKind::kConflict) {
    ++h.counters.conflicts;
    r->outcome = FoldOutcome::kConflict;
    r->index = original.value_or(0);  // the caller sets another shard's index
  } else {
    ++h.counters.rejected;
    r->outcome = FoldOutcome::kRejected;
  }
  header_.clear();
  AppendU8(&header_, kRejectedFormat);
  AppendU8(&header_, static_cast<uint8_t>(kind));
  AppendU32(&header_, source_seq);
  AppendI64(&header_, m.offset);
  AppendU8(&header_, original.has_value() ? 1 : 0);
  AppendU64(&header_, original.value_or(0));
  AppendLengthPrefixed(&header_, reason);
  const std::string key = IndexKey(seq);
  const rocksdb::Slice key_slice = ToSlice(key);
  const rocksdb::Slice value_parts[2] = {ToSlice(header_), ToSlice(m.payload)};
  batch_.Put(cfs_[kRejectedCf], rocksdb::SliceParts(&key_slice, 1),
             rocksdb::SliceParts(value_parts, 2));
  r->reason = std::move(reason);
}

void ShardStore::Impl::StartSystemEvent(absl::string_view kind, const BatchState& b) {
  NewEvent();
  event_->set_event_id(absl::StrCat(kind, "-", b.h.head.next_index));
  event_->set_actor("predlog");
  event_->set_schema_version(kSchemaVersion);
  TimeToProto(batch_time_, event_->mutable_recorded_at());
}

uint64_t ShardStore::Impl::AppendSystemEvent(BatchState* b, Digest* leaf) {
  const std::string payload = event_->SerializeAsString();
  const uint64_t index = AppendRecord(payload, /*offset=*/-1, b, leaf);
  // A system record is not a folded message.
  --b->h.head.counters.applied;
  return index;
}

void ShardStore::Impl::WriteSourceGap(const SourceMessage& m, BatchState* b, MessageResult* r) {
  StartSystemEvent("source-gap", *b);
  auto* gap = event_->mutable_source_gap();
  gap->set_incarnation(std::string(m.incarnation));
  gap->set_first_missing_offset(*m.gap_first_offset);
  gap->set_last_missing_offset(m.offset);
  gap->set_reason(std::string(m.payload));
  r->outcome = FoldOutcome::kApplied;
  r->index = AppendSystemEvent(b, &r->leaf);
  ++b->h.head.counters.gaps;
}

absl::Time ShardStore::Impl::NextAppendTime() {
  const absl::Time now = options_.clock ? options_.clock() : absl::Now();
  // Whole microseconds: what the record and by_time keep.
  last_appended_at_ = std::max(last_appended_at_, absl::FromUnixMicros(absl::ToUnixMicros(now)));
  return last_appended_at_;
}

absl::Status ShardStore::Impl::CheckFreeSpace(absl::Span<const SourceMessage> messages) const {
  if (options_.min_free_bytes == 0) return absl::OkStatus();
  struct statvfs fs;
  if (statvfs(db_path_.c_str(), &fs) != 0) return absl::OkStatus();  // RocksDB will say why
  uint64_t incoming = 0;
  for (const SourceMessage& m : messages) incoming += m.payload.size();
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  // (Compared without the sum, which a reserve near 2^64 would overflow.)
  if (free_bytes >= incoming && free_bytes - incoming >= options_.min_free_bytes) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "shard ", options_.name, ": the disk of ", options_.dir, " has ", free_bytes,
      " bytes free, below the reserve of ", options_.min_free_bytes,
      " bytes; nothing was written, and writing resumes by itself once space is freed"));
}

absl::Status ShardStore::Impl::AcceptLoss() {
  const LostRecords lost = *lost_;
  BatchState b;
  {
    absl::MutexLock lock(&mu_);
    b.h = head_;
  }
  batch_.Clear();
  batch_time_ = NextAppendTime();
  // The lost indexes are never given to another record: the loss takes the
  // index after them, and the chain goes on from the last intact record. The
  // Merkle tree gets a leaf for each lost index, so leaf i stays record i.
  for (uint64_t i = b.h.head.next_index; i < lost.end_index; ++i) {
    AppendMerkleLeaf(LostMerkleLeaf(i), /*keep_leaf=*/true, &b);
  }
  b.h.head.next_index = lost.end_index;
  b.source_seq = b.h.incarnation_seq;
  StartSystemEvent("records-lost", b);
  auto* l = event_->mutable_records_lost();
  l->set_first_lost_index(lost.first_index);
  l->set_last_lost_index(lost.end_index - 1);
  l->set_intact_chain_sha256(ToHex(b.h.head.chain_head));
  l->set_acked_chain_sha256(ToHex(lost.acked_chain_head));
  l->set_reason(std::string(LostError().message()));
  Digest leaf;
  const uint64_t index = AppendSystemEvent(&b, &leaf);
  std::string head_value;
  EncodeHead(b.h, &head_value);
  batch_.Put(cfs_[kMetaCf], ToSlice(kHeadKey), head_value);
  rocksdb::WriteOptions synced;
  synced.sync = true;
  RETURN_IF_ERROR(FromRocks(db_->Write(synced, &batch_),
                            absl::StrCat("shard ", options_.name, ": record the loss")));
  RETURN_IF_ERROR(mark_->Write({b.h.head.next_index, b.h.head.chain_head, false, mark_identity_}));
  PREDLOG_LOG(WARNING) << "shard " << options_.name << ": the loss of records " << lost.first_index
                       << ".." << lost.end_index - 1 << " was accepted and recorded at index "
                       << index;
  {
    absl::MutexLock lock(&mu_);
    head_ = std::move(b.h);
  }
  lost_.reset();
  return absl::OkStatus();
}

void ShardStore::Impl::WriteSourceReset(const std::string& previous, int64_t previous_offset,
                                        absl::string_view incarnation, int64_t first_offset,
                                        BatchState* b) {
  StartSystemEvent("source-reset", *b);
  auto* reset = event_->mutable_source_reset();
  reset->set_previous_incarnation(previous);
  reset->set_previous_last_offset(previous_offset);
  reset->set_new_incarnation(std::string(incarnation));
  reset->set_new_first_offset(first_offset);
  Digest leaf;
  AppendSystemEvent(b, &leaf);
  ++b->h.head.counters.source_resets;
}

absl::StatusOr<std::optional<std::string>> ShardStore::Impl::ReadStateForWrite(
    const std::string& key) {
  using Result = std::optional<std::string>;
  if (auto it = state_overlay_.find(key); it != state_overlay_.end()) return Result(it->second);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cfs_[kStateCf], key, &value);
  if (s.IsNotFound()) return Result();
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("shard ", options_.name, ": read state")));
  return Result(std::move(value));
}

void ShardStore::Impl::PutState(const std::string& key, std::string value) {
  batch_.Put(cfs_[kStateCf], key, value);
  state_overlay_[key] = std::move(value);
}

std::optional<std::pair<uint32_t, Incarnation>> ShardStore::Impl::FindIncarnation(
    absl::string_view name, const BatchState& b) const {
  // The batch's own updates are newer than the published map.
  for (auto it = b.incarnation_updates.rbegin(); it != b.incarnation_updates.rend(); ++it) {
    if (it->second.name == name) return *it;
  }
  absl::MutexLock lock(&mu_);
  for (const auto& [seq, inc] : incarnations_) {
    if (inc.name == name) return std::make_pair(seq, inc);
  }
  return std::nullopt;
}

}  // namespace predlog::storage
