// TrailWriter: checks each record (digests, leaf, chain, event, log order),
// renders it in the export's format (trail_export.cc has the grammar), writes
// it through a FileSink and builds the manifest; AddBatch renders JSON lines
// on worker threads.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <deque>
#include <map>
#include <optional>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/util/json_util.h"
#include "services/export/trail_export.h"
#include "services/export/trail_internal.h"
#include "services/export/trail_json.h"
#include "storage/sha256.h"
#include "storage/status_macros.h"

namespace predlog::services {

namespace {

using ::predlog::services::export_internal::AppendCsvHeader;
using ::predlog::services::export_internal::AppendCsvRow;
using ::predlog::services::export_internal::BaseName;
using ::predlog::services::export_internal::CsvColumns;
using ::predlog::services::export_internal::ErrnoStatus;
using ::predlog::services::export_internal::FileSink;
using ::predlog::services::export_internal::HexDigest;
using ::predlog::services::export_internal::kFlushBytes;
using ::predlog::services::export_internal::RecordArena;
using ::predlog::services::export_internal::RecordName;
using ::predlog::services::export_internal::RenameDurably;
using ::predlog::services::export_internal::RowKey;
using ::predlog::services::export_internal::WriteFileDurably;
using ::predlog::storage::Digest;
using ::predlog::v1::AuditEvent;
using ::predlog::v1::ExportManifest;

// CSV rows kept in memory while the header waits for the first prediction;
// beyond this they go to a spill file beside the export.
constexpr size_t kMaxPendingCsvBytes = 64 << 20;

}  // namespace

class TrailWriter::Impl {
 public:
  Impl(std::string path, ExportFormat format, std::unique_ptr<FileSink> sink)
      : path_(std::move(path)), format_(format), sink_(std::move(sink)) {}

  ~Impl() {
    StopWorkers();
    if (spill_ != nullptr) ::unlink(spill_->path().c_str());  // an unfinished export
    // A failed or abandoned export leaves nothing that looks like one.
    if (!written_) ::unlink(sink_->path().c_str());
  }

  absl::Status Add(const predlog::v1::ExportedRecord& record) {
    RETURN_IF_ERROR(Usable());
    if (!workers_.empty()) {
      return absl::FailedPreconditionError("Add after AddBatch: use one or the other");
    }
    Prepared prepared;
    std::string* const out = sink_->buffer();
    const size_t before = out->size();
    arena_.Reset();
    Prepare(record, arena_.get(), format_ == ExportFormat::kJsonl ? out : nullptr, &prepared);
    if (absl::Status accepted = Accept(record, prepared); !accepted.ok()) {
      out->resize(before);  // nothing of a rejected record
      return accepted;
    }
    if (format_ == ExportFormat::kJsonl) {
      broken_ = sink_->MaybeFlush();
    } else {
      broken_ = AddCsvRow(record, *prepared.event, prepared);
    }
    return broken_;
  }

  absl::Status AddBatch(predlog::v1::ExportBatch batch) {
    TakeProofs(&batch);
    if (format_ == ExportFormat::kCsv) {
      // A CSV row depends on the header, which depends on the first
      // prediction: rows are rendered in order, here.
      RETURN_IF_ERROR(Usable());
      int next_unreadable = 0;
      for (int i = 0; i < batch.records_size(); ++i) {
        RETURN_IF_ERROR(AcceptUnreadableBefore(batch, i, &next_unreadable));
        RETURN_IF_ERROR(Add(batch.records(i)));
      }
      return AcceptUnreadableBefore(batch, batch.records_size(), &next_unreadable);
    }
    if (finished_) return absl::FailedPreconditionError("the export is already finished");
    // Once workers run, broken_ is theirs: their failures are pipeline_error_.
    if (workers_.empty()) RETURN_IF_ERROR(Usable());
    absl::MutexLock lock(&mu_);
    if (!pipeline_error_.ok()) return pipeline_error_;
    if (workers_.empty()) {
      const int n = std::clamp<int>(static_cast<int>(std::thread::hardware_concurrency()), 1,
                                    kMaxRenderWorkers);
      for (int i = 0; i < n; ++i) workers_.emplace_back([this] { RenderLoop(); });
    }
    // Bounds the memory of batches waiting to be rendered or committed.
    const auto has_room = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return next_seq_ - next_commit_ < kMaxBatchesInFlight || !pipeline_error_.ok();
    };
    mu_.Await(absl::Condition(&has_room));
    if (!pipeline_error_.ok()) return pipeline_error_;
    queue_.push_back(Job{next_seq_++, std::move(batch)});
    return absl::OkStatus();
  }

  uint64_t records() const { return records_.load(std::memory_order_relaxed); }

  absl::StatusOr<ExportManifest> Finish(ExportManifest manifest, const std::string& manifest_path) {
    if (finished_) return absl::FailedPreconditionError("the export is already finished");
    finished_ = true;
    if (!workers_.empty()) {
      StopWorkers();  // after they committed every batch queued
      absl::MutexLock lock(&mu_);
      RETURN_IF_ERROR(pipeline_error_);
    }
    RETURN_IF_ERROR(broken_);
    RETURN_IF_ERROR(unreadable_error_);
    CloseRange();
    if (format_ == ExportFormat::kCsv && !header_written_) {
      RETURN_IF_ERROR(WriteCsvHeader(CsvColumns()));
    }
    RETURN_IF_ERROR(sink_->Close());
    RETURN_IF_ERROR(AttachProofs());
    manifest.set_format_version(4);
    manifest.set_file_name(BaseName(path_));
    const absl::string_view format = ExportFormatName(format_);
    manifest.set_file_format(format.data(), format.size());
    manifest.set_file_sha256(storage::ToHex(sink_->sha256()));
    manifest.set_file_bytes(sink_->bytes());
    manifest.set_record_count(records());
    manifest.clear_shards();
    for (auto& shard : shards_) *manifest.add_shards() = std::move(shard);
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    std::string json;
    const auto status = google::protobuf::util::MessageToJsonString(manifest, &json, options);
    if (!status.ok()) {
      return absl::InternalError(
          absl::StrCat("cannot print the manifest as JSON: ", status.ToString()));
    }
    // The manifest first, then the file under its name: until both are in
    // place, what is at `path_` is not the file this manifest describes (an
    // older export, or nothing), so no crash leaves an export that verifies
    // but is incomplete.
    RETURN_IF_ERROR(WriteFileDurably(manifest_path, json));
    if (absl::Status renamed = RenameDurably(sink_->path(), path_); !renamed.ok()) {
      ::unlink(manifest_path.c_str());
      return renamed;
    }
    written_ = true;
    return manifest;
  }

 private:
  // Render workers at most: rendering a batch is the expensive part of Add,
  // and batches are independent but for their place in the log.
  static constexpr int kMaxRenderWorkers = 4;
  // Batches queued, being rendered or waiting to be committed; bounds memory
  // (a batch is ~1 MB of events and ~2 MB of lines).
  static constexpr uint64_t kMaxBatchesInFlight = 8;

  // A batch handed to AddBatch; `seq` is its place in the file.
  struct Job {
    uint64_t seq = 0;
    predlog::v1::ExportBatch batch;
  };

  // A record checked on its own (digests, leaf, chain, event) and, for JSON
  // lines, rendered. What remains is its place in the log (Accept).
  struct Prepared {
    // The first failure of the record's own checks, naming the record.
    absl::Status status;
    // False when the record came without prev_chain_sha256: the chain value
    // before it could not be read (the record before it is unreadable), so
    // its own chain value cannot be checked against its leaf.
    bool prev_known = true;
    // `status` says the event bytes do not parse. Log order is checked before
    // that, and after the digests, so the error of a record is the one Add
    // always returned for it.
    bool parse_failed = false;
    Digest leaf{};
    Digest prev{};
    Digest chain{};
    const AuditEvent* event = nullptr;  // on Prepare's arena
  };

  absl::Status Usable() const {
    if (finished_) return absl::FailedPreconditionError("the export is already finished");
    if (!broken_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("an earlier write failed: ", broken_.message()));
    }
    return absl::OkStatus();
  }

  // Thread-safe: uses no member. Parses the event onto `arena` and, when
  // `out` is not null and every check passed, appends its JSON line to `out`.
  static void Prepare(const predlog::v1::ExportedRecord& record, google::protobuf::Arena* arena,
                      std::string* out, Prepared* p) {
    const auto fail = [&](absl::string_view what) {
      p->status = absl::InvalidArgumentError(
          absl::StrCat(RecordName(record.shard(), record.index()), ": ", what));
    };
    p->prev_known = !record.prev_chain_sha256().empty();
    const std::optional<Digest> leaf = storage::DigestFromHex(record.leaf_sha256());
    const std::optional<Digest> prev =
        p->prev_known ? storage::DigestFromHex(record.prev_chain_sha256()) : Digest{};
    const std::optional<Digest> chain = storage::DigestFromHex(record.chain_sha256());
    if (!leaf || !prev || !chain) {
      return fail(
          "leaf_sha256 and chain_sha256 must be 64 hex digits each, and prev_chain_sha256 "
          "too unless it is empty");
    }
    p->leaf = *leaf;
    p->prev = *prev;
    p->chain = *chain;
    if (storage::Sha256(record.event_bytes()) != p->leaf) {
      return fail("leaf_sha256 does not match the event bytes");
    }
    if (p->prev_known && storage::ChainNext(p->prev, p->leaf) != p->chain) {
      return fail("chain_sha256 is not SHA-256(prev_chain_sha256 || leaf)");
    }
    AuditEvent* const event = google::protobuf::Arena::CreateMessage<AuditEvent>(arena);
    if (!event->ParseFromString(record.event_bytes())) {
      p->parse_failed = true;
      return fail("event_bytes are not a predlog.v1.AuditEvent");
    }
    p->event = event;
    if (out == nullptr) return;
    // The record's own hex was checked to be digits, but maybe upper case:
    // the line holds the canonical lower case.
    const HexDigest leaf_hex(p->leaf), prev_hex(p->prev), chain_hex(p->chain);
    TrailLineFields fields;
    fields.shard = record.shard();
    fields.index = record.index();
    fields.event = event;
    fields.leaf_sha256 = leaf_hex.view();
    fields.prev_chain_sha256 = p->prev_known ? prev_hex.view() : absl::string_view();
    fields.chain_sha256 = chain_hex.view();
    fields.event_bytes = record.event_bytes();
    if (record.has_appended_at()) fields.appended_at = &record.appended_at();
    AppendTrailLine(fields, out);
  }

  // Checks the prepared record's place in the log and, when it fits, counts
  // it in the manifest. The record's own failure, when it has one, comes
  // before (digests) or after (parsing) the log order checks.
  absl::Status Accept(const predlog::v1::ExportedRecord& record, const Prepared& p) {
    if (!p.status.ok() && !p.parse_failed) return p.status;
    RETURN_IF_ERROR(unreadable_error_);
    const bool new_shard = shards_.empty() || shards_.back().shard() != record.shard();
    const std::string name = RecordName(record.shard(), record.index());
    if (new_shard) {
      if (seen_shards_.contains(record.shard())) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": out of log order: shard ",
                                                       record.shard(), " resumed after ",
                                                       shards_.back().shard()));
      }
    } else {
      if (record.index() <= last_index_) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": out of log order after ",
                                                       RecordName(record.shard(), last_index_)));
      }
    }
    // The chain value before a record is unknown exactly when the record
    // before it is unreadable: the server could not read that chain value.
    const bool after_unreadable =
        !new_shard && last_unreadable_ && record.index() == last_index_ + 1;
    if (!p.prev_known && !after_unreadable) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": prev_chain_sha256 is empty, but the record before it was not unreadable"));
    }
    if (p.prev_known && after_unreadable) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": has a prev_chain_sha256, but the record before it was unreadable"));
    }
    if (!new_shard && !last_unreadable_ && record.index() == last_index_ + 1 &&
        p.prev != last_chain_) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": prev_chain_sha256 does not continue the chain of ",
                       RecordName(record.shard(), last_index_)));
    }
    if (!p.status.ok()) return p.status;

    if (new_shard || last_unreadable_ || record.index() != last_index_ + 1) {
      CloseRange();
      if (new_shard) {
        seen_shards_.insert(record.shard());
        shards_.emplace_back().set_shard(record.shard());
      }
      ExportManifest::Range* range = shards_.back().add_ranges();
      range->set_first_index(record.index());
      if (p.prev_known) {
        const HexDigest prev_hex(p.prev);
        range->set_prev_chain_sha256(prev_hex.view().data(), prev_hex.view().size());
      }
    }
    ExportManifest::ShardRanges& shard = shards_.back();
    shard.set_records(shard.records() + 1);
    shard.mutable_ranges(shard.ranges_size() - 1)->set_last_index(record.index());
    last_index_ = record.index();
    last_unreadable_ = false;
    last_chain_ = p.chain;
    records_.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }

  // Records the server could not read, in their place in the stream: listed
  // in the manifest, and the next record starts a range of its own.
  absl::Status AcceptUnreadable(const predlog::v1::UnreadableRecords& u) {
    const std::string what =
        absl::StrCat("unreadable range ", u.shard(), "#", u.first_index(), "..", u.last_index());
    const auto fail = [&](absl::string_view why) {
      unreadable_error_ = absl::InvalidArgumentError(absl::StrCat(what, ": ", why));
      return unreadable_error_;
    };
    if (u.shard().empty()) return fail("it names no shard");
    if (u.first_index() > u.last_index()) return fail("it ends before it begins");
    const bool new_shard = shards_.empty() || shards_.back().shard() != u.shard();
    if (new_shard) {
      if (seen_shards_.contains(u.shard())) {
        return fail(absl::StrCat("out of log order: shard ", u.shard(), " resumed after ",
                                 shards_.back().shard()));
      }
    } else if (u.first_index() <= last_index_) {
      return fail(absl::StrCat("out of log order after ", RecordName(u.shard(), last_index_)));
    }
    CloseRange();
    if (new_shard) {
      seen_shards_.insert(u.shard());
      shards_.emplace_back().set_shard(u.shard());
    }
    ExportManifest::Unreadable* out = shards_.back().add_unreadable();
    out->set_first_index(u.first_index());
    out->set_last_index(u.last_index());
    out->set_reason(u.reason());
    last_index_ = u.last_index();
    last_unreadable_ = true;
    return absl::OkStatus();
  }

  // Accepts the batch's unreadable ranges from *next on that go before its
  // record `before` (all that are left when `before` is its record count).
  absl::Status AcceptUnreadableBefore(const predlog::v1::ExportBatch& batch, int before,
                                      int* next) {
    for (; *next < batch.unreadable_size(); ++*next) {
      const predlog::v1::UnreadableRecords& u = batch.unreadable(*next);
      const int64_t place = u.records_before();
      if (place > before && before < batch.records_size()) return absl::OkStatus();
      if (place != before) {
        unreadable_error_ = absl::InvalidArgumentError(
            absl::StrCat("unreadable range ", u.shard(), "#", u.first_index(), "..", u.last_index(),
                         ": records_before ", place,
                         place > before ? absl::StrCat(" is past the batch's ", before, " records")
                                        : std::string(" is out of order in its batch")));
        return unreadable_error_;
      }
      RETURN_IF_ERROR(AcceptUnreadable(u));
    }
    return absl::OkStatus();
  }

  // Fills in the chain anchor of the range being written, if any (only its
  // last record's chain value matters, so it is written once, not per record).
  void CloseRange() {
    if (shards_.empty() || shards_.back().ranges_size() == 0) return;
    ExportManifest::ShardRanges& shard = shards_.back();
    const HexDigest chain_hex(last_chain_);
    shard.mutable_ranges(shard.ranges_size() - 1)
        ->set_chain_sha256(chain_hex.view().data(), chain_hex.view().size());
  }

  // A render worker: takes batches in order, checks and renders them alone,
  // then waits for its batch's turn and commits it (log order, manifest,
  // file), so the file is in AddBatch order while rendering runs in parallel.
  void RenderLoop() {
    RecordArena arena;
    std::string text;
    std::vector<Prepared> prepared;
    std::vector<size_t> ends;  // of each record's line in `text`
    while (true) {
      Job job;
      bool failed = false;
      {
        absl::MutexLock lock(&mu_);
        const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !queue_.empty() || stopping_;
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        failed = !pipeline_error_.ok();
      }
      text.clear();
      prepared.clear();
      ends.clear();
      if (!failed) {  // after a failure the rest is dropped
        for (const predlog::v1::ExportedRecord& record : job.batch.records()) {
          arena.Reset();
          Prepared& p = prepared.emplace_back();
          Prepare(record, arena.get(), &text, &p);
          p.event = nullptr;  // gone with the next Reset
          ends.push_back(text.size());
          if (!p.status.ok()) break;
        }
      }
      {
        absl::MutexLock lock(&mu_);
        const auto turn = [this, seq = job.seq]()
                              ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return next_commit_ == seq; };
        mu_.Await(absl::Condition(&turn));
        failed = !pipeline_error_.ok();
      }
      // Until next_commit_ moves on, only this worker touches the manifest
      // state and the sink (the mutex orders it after the previous commit).
      absl::Status status;
      if (!failed) status = Commit(job.batch, prepared, ends, text);
      absl::MutexLock lock(&mu_);
      if (!status.ok() && pipeline_error_.ok()) pipeline_error_ = status;
      ++next_commit_;
    }
  }

  // Accepts the batch's records in order and writes the lines of those
  // accepted: a rejected record, and everything after it, is not written.
  absl::Status Commit(const predlog::v1::ExportBatch& batch, const std::vector<Prepared>& prepared,
                      const std::vector<size_t>& ends, const std::string& text) {
    absl::Status status;
    size_t accepted_end = 0;
    int next_unreadable = 0;
    for (size_t i = 0; i < prepared.size(); ++i) {
      status = AcceptUnreadableBefore(batch, static_cast<int>(i), &next_unreadable);
      if (!status.ok()) break;
      status = Accept(batch.records(static_cast<int>(i)), prepared[i]);
      if (!status.ok()) break;
      accepted_end = ends[i];
    }
    if (status.ok() && prepared.size() == static_cast<size_t>(batch.records_size())) {
      status = AcceptUnreadableBefore(batch, batch.records_size(), &next_unreadable);
    }
    if (absl::Status flushed = sink_->Append(absl::string_view(text.data(), accepted_end));
        !flushed.ok()) {
      broken_ = flushed;
      return flushed;
    }
    return status;
  }

  // Lets the workers finish what is queued, and joins them.
  void StopWorkers() {
    if (workers_.empty()) return;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& worker : workers_) worker.join();
    workers_.clear();
  }

  // CSV rows wait for the header until the first prediction names the input
  // columns; the rows before it stay in memory, or in a spill file when many.
  absl::Status AddCsvRow(const predlog::v1::ExportedRecord& record, const AuditEvent& event,
                         const Prepared& prepared) {
    if (!header_written_ && event.has_prediction_logged()) {
      RETURN_IF_ERROR(WriteCsvHeader(CsvColumns::For(event.prediction_logged())));
    }
    const HexDigest leaf(prepared.leaf), prev(prepared.prev), chain(prepared.chain);
    RowKey key;
    key.shard = record.shard();
    key.index = record.index();
    key.leaf = leaf.view();
    key.prev_chain = prepared.prev_known ? prev.view() : absl::string_view();
    key.chain = chain.view();
    key.event_bytes = record.event_bytes();
    if (record.has_appended_at()) key.appended_at = &record.appended_at();
    if (header_written_) {
      AppendCsvRow(columns_, key, event, sink_->buffer());
      return sink_->MaybeFlush();
    }
    // Rows before the header are not predictions (the first prediction
    // writes it), so all their input cells are empty; but how many there are
    // is known only then. Render them without input columns and remember
    // where each row's run of empty cells is: the header inserts the missing
    // commas there (just before the row's last comma, which precedes
    // event_bytes_base64, whose alphabet has no comma).
    AppendCsvRow(CsvColumns(), key, event, &pending_);
    pending_comma_runs_.push_back(spilled_bytes_ + pending_.rfind(','));
    if (pending_.size() < kMaxPendingCsvBytes) return absl::OkStatus();
    if (spill_ == nullptr) {
      ASSIGN_OR_RETURN(spill_, FileSink::Create(path_ + ".pending"));
    }
    spilled_bytes_ += pending_.size();
    spill_->buffer()->append(pending_);
    pending_.clear();
    return spill_->Flush();
  }

  absl::Status WriteCsvHeader(CsvColumns columns) {
    columns_ = std::move(columns);
    header_written_ = true;
    AppendCsvHeader(columns_, sink_->buffer());
    if (spill_ != nullptr) {
      RETURN_IF_ERROR(spill_->Close());
      RETURN_IF_ERROR(CopySpillToSink());
    }
    AppendPending(pending_.data(), pending_.size());
    pending_.clear();
    pending_.shrink_to_fit();
    pending_comma_runs_.clear();
    pending_comma_runs_.shrink_to_fit();
    return sink_->MaybeFlush();
  }

  // Appends pending row bytes (the next `n` of the pending stream) to the
  // export, widening each row's run of empty cells by the input columns.
  void AppendPending(const char* data, size_t n) {
    const std::string commas(columns_.names().size(), ',');
    std::string* out = sink_->buffer();
    size_t at = 0;
    while (next_comma_run_ < pending_comma_runs_.size() &&
           pending_comma_runs_[next_comma_run_] < copied_bytes_ + n) {
      const size_t split =
          static_cast<size_t>(pending_comma_runs_[next_comma_run_] - copied_bytes_);
      out->append(data + at, split - at);
      out->append(commas);
      at = split;
      ++next_comma_run_;
    }
    out->append(data + at, n - at);
    copied_bytes_ += n;
  }

  // Appends the spill file to the export in chunks (it may be large) and removes it.
  absl::Status CopySpillToSink() {
    const std::string spill_path = spill_->path();
    spill_.reset();
    const int fd = ::open(spill_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "cannot open", spill_path);
    absl::Status status;
    std::string chunk(kFlushBytes, '\0');
    while (status.ok()) {
      const ssize_t n = ::read(fd, chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) status = ErrnoStatus(errno, "cannot read", spill_path);
      if (n <= 0) break;
      AppendPending(chunk.data(), static_cast<size_t>(n));
      status = sink_->MaybeFlush();
    }
    ::close(fd);
    ::unlink(spill_path.c_str());
    return status;
  }

  // Keeps the batch's checkpoints and range proofs for the manifest.
  void TakeProofs(predlog::v1::ExportBatch* batch) {
    for (predlog::v1::ShardCheckpoint& c : *batch->mutable_checkpoints()) {
      checkpoints_[c.shard()] = std::move(*c.mutable_note());
    }
    for (predlog::v1::RangeProof& p : *batch->mutable_range_proofs()) {
      range_proofs_[std::make_tuple(p.shard(), p.first_index(), p.last_index())] =
          std::move(*p.mutable_proof_sha256());
    }
    for (predlog::v1::ShardEdges& e : *batch->mutable_edges()) {
      edges_[e.shard()] = std::move(e);
    }
    batch->clear_checkpoints();
    batch->clear_range_proofs();
    batch->clear_edges();
  }

  // Puts each shard's checkpoint and each range's proof into shards_.
  // INVALID_ARGUMENT for a proof of a run the export does not have (the
  // server must prove exactly the runs it sent).
  absl::Status AttachProofs() {
    for (ExportManifest::ShardRanges& shard : shards_) {
      if (auto it = checkpoints_.find(shard.shard()); it != checkpoints_.end()) {
        shard.set_checkpoint(std::move(it->second));
        checkpoints_.erase(it);
      }
      for (ExportManifest::Range& range : *shard.mutable_ranges()) {
        auto it = range_proofs_.find(
            std::make_tuple(shard.shard(), range.first_index(), range.last_index()));
        if (it == range_proofs_.end()) continue;
        *range.mutable_proof_sha256() = std::move(it->second);
        range_proofs_.erase(it);
      }
    }
    // A shard the export read but that holds none of its records is listed
    // with its checkpoint all the same: an export of everything then proves
    // that shard had nothing to hold (its checkpoint's size says how many).
    for (auto& [name, note] : checkpoints_) {
      ExportManifest::ShardRanges& shard = shards_.emplace_back();
      shard.set_shard(name);
      shard.set_checkpoint(std::move(note));
    }
    for (ExportManifest::ShardRanges& shard : shards_) {
      auto it = edges_.find(shard.shard());
      if (it == edges_.end()) continue;
      if (it->second.has_before())
        *shard.mutable_edge_before() = std::move(*it->second.mutable_before());
      if (it->second.has_after())
        *shard.mutable_edge_after() = std::move(*it->second.mutable_after());
      edges_.erase(it);
    }
    if (!edges_.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("the server sent the edges of ",
                                                     edges_.begin()->first,
                                                     ", which has no checkpoint in the export"));
    }
    if (!range_proofs_.empty()) {
      const auto& [shard, first, last] = range_proofs_.begin()->first;
      return absl::InvalidArgumentError(absl::StrCat("the server sent a range proof of ", shard,
                                                     "#", first, "..", last,
                                                     ", which is not a run of the export"));
    }
    return absl::OkStatus();
  }

  // Constant after construction.
  const std::string path_;
  const ExportFormat format_;
  const std::unique_ptr<FileSink> sink_;

  // The caller's thread only.
  bool finished_ = false;
  // Checkpoints by shard, and range proofs by (shard, first, last), as the
  // server sent them (AddBatch), until Finish puts them in the manifest.
  std::map<std::string, std::string> checkpoints_;
  std::map<std::tuple<std::string, uint64_t, uint64_t>,
           google::protobuf::RepeatedPtrField<std::string>>
      range_proofs_;
  // Edges by shard (an export of everything with from/to), likewise.
  std::map<std::string, predlog::v1::ShardEdges> edges_;
  bool written_ = false;              // Finish put the file under its name
  std::vector<std::thread> workers_;  // started by the first AddBatch
  // The record being added by Add, parsed on an arena reset per record
  // (cheaper than a reused heap message: features are many small submessages).
  RecordArena arena_;

  // Written by Add, or by the worker whose turn it is to commit.
  absl::Status broken_;  // the first failed write; every later call fails
  std::atomic<uint64_t> records_{0};
  // The manifest's shards so far; the last one is the shard being written.
  // Its last range's chain_sha256 is filled in by CloseRange.
  std::vector<ExportManifest::ShardRanges> shards_;
  absl::flat_hash_set<std::string> seen_shards_;
  // Of shards_.back(): the last index accepted, as a record or the end of an
  // unreadable range (last_unreadable_), and the last record's chain value.
  uint64_t last_index_ = 0;
  bool last_unreadable_ = false;
  Digest last_chain_{};
  // The first bad unreadable range: every later Accept and Finish fail.
  absl::Status unreadable_error_;

  // The AddBatch pipeline.
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;     // of the next batch queued
  uint64_t next_commit_ ABSL_GUARDED_BY(mu_) = 0;  // of the next batch to commit
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The first rejected record or failed write; later batches are dropped.
  absl::Status pipeline_error_ ABSL_GUARDED_BY(mu_);

  // CSV
  bool header_written_ = false;
  CsvColumns columns_;
  std::string pending_;
  std::unique_ptr<FileSink> spill_;
  uint64_t spilled_bytes_ = 0;  // pending bytes moved to spill_
  // Offsets in the pending stream (spill, then pending_) where each pending
  // row's empty input cells go; the next one to insert; bytes copied so far.
  std::vector<uint64_t> pending_comma_runs_;
  size_t next_comma_run_ = 0;
  uint64_t copied_bytes_ = 0;
};

TrailWriter::TrailWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TrailWriter::~TrailWriter() = default;

absl::StatusOr<std::unique_ptr<TrailWriter>> TrailWriter::Create(const std::string& path,
                                                                 ExportFormat format) {
  ASSIGN_OR_RETURN(std::unique_ptr<FileSink> sink, FileSink::Create(path + kPartialSuffix));
  return std::unique_ptr<TrailWriter>(
      new TrailWriter(std::make_unique<Impl>(path, format, std::move(sink))));
}

absl::Status TrailWriter::Add(const predlog::v1::ExportedRecord& record) {
  return impl_->Add(record);
}

absl::Status TrailWriter::AddBatch(predlog::v1::ExportBatch batch) {
  return impl_->AddBatch(std::move(batch));
}

uint64_t TrailWriter::records() const { return impl_->records(); }

absl::StatusOr<ExportManifest> TrailWriter::Finish(ExportManifest manifest,
                                                   const std::string& manifest_path) {
  return impl_->Finish(std::move(manifest), manifest_path);
}

}  // namespace predlog::services
