#include "replay/state_at.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "storage/logging.h"
#include "storage/status_macros.h"

namespace predlog::replay {
namespace {

// Records read per RocksDB iterator page while folding.
constexpr size_t kFoldPage = 4096;

absl::Status CheckCut(const storage::ShardStore& shard, uint64_t cut) {
  const uint64_t next = shard.Head().next_index;
  if (cut > next) {
    return absl::OutOfRangeError(
        absl::StrCat("cut ", cut, " is beyond ", shard.name(), ", which holds ", next, " records"));
  }
  return absl::OkStatus();
}

// Calls `fn` with every record in [from, to) of `shard`, in log order.
template <typename Fn>
absl::Status ForEachRecord(const storage::ShardStore& shard, uint64_t from, uint64_t to, Fn fn) {
  while (from < to) {
    ASSIGN_OR_RETURN(std::vector<storage::StoredRecord> page,
                     shard.ReadRange(from, std::min<uint64_t>(kFoldPage, to - from)));
    if (page.empty() || page.front().index != from) {
      return absl::DataLossError(
          absl::StrCat(shard.name(), ": record ", from, " is missing from the log"));
    }
    for (const storage::StoredRecord& record : page) {
      if (record.index >= to) break;
      RETURN_IF_ERROR(fn(record));
    }
    from = page.back().index + 1;
  }
  return absl::OkStatus();
}

bool Contains(absl::string_view haystack, absl::string_view needle) {
  return needle.empty() ||
         memmem(haystack.data(), haystack.size(), needle.data(), needle.size()) != nullptr;
}

}  // namespace

absl::StatusOr<std::pair<uint64_t, std::shared_ptr<const storage::ShardStore>>>
StateAt::SnapshotFor(const storage::ShardStore& shard, uint64_t cut) const {
  if (!options_.use_snapshots) return std::make_pair(uint64_t{0}, nullptr);
  ASSIGN_OR_RETURN(std::vector<storage::SnapshotInfo> snapshots, shard.ListSnapshots());
  const storage::SnapshotInfo* best = nullptr;
  for (const storage::SnapshotInfo& s : snapshots) {
    if (s.index <= cut && s.index > 0 && (best == nullptr || s.index > best->index)) best = &s;
  }
  if (best == nullptr) return std::make_pair(uint64_t{0}, nullptr);
  // Keyed by the checkpoint directory, not the shard's name: names default to
  // the directory's base name, so two data dirs can hold equally named shards.
  const std::string& key = best->path;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = open_.begin(); it != open_.end(); ++it) {
      if (it->first == key) {
        open_.splice(open_.begin(), open_, it);
        return std::make_pair(best->index, open_.front().second);
      }
    }
  }
  // Opened outside the lock: opening takes milliseconds. Two callers may open
  // the same snapshot at once; the cache keeps one of them.
  absl::StatusOr<std::unique_ptr<storage::ShardStore>> opened = shard.OpenSnapshot(*best);
  if (!opened.ok()) {
    // Catalogued but not openable (its directory deleted or damaged behind
    // our back): like an unreadable cached one, it only costs time.
    PREDLOG_LOG(WARNING) << "state-at: " << shard.name() << " snapshot " << best->index
                         << " cannot be opened, folding from 0: " << opened.status();
    return std::make_pair(uint64_t{0}, nullptr);
  }
  std::shared_ptr<const storage::ShardStore> snapshot(std::move(*opened));
  absl::MutexLock lock(&mu_);
  open_.emplace_front(key, snapshot);
  while (open_.size() > std::max<size_t>(1, options_.max_open_snapshots)) open_.pop_back();
  return std::make_pair(best->index, snapshot);
}

void StateAt::Forget(const storage::ShardStore* snapshot) const {
  absl::MutexLock lock(&mu_);
  open_.remove_if([&](const auto& entry) { return entry.second.get() == snapshot; });
}

absl::StatusOr<EntityAt> StateAt::Entity(const storage::ShardStore& shard, absl::string_view type,
                                         absl::string_view id, uint64_t cut) const {
  RETURN_IF_ERROR(CheckCut(shard, cut));
  EntityAt out;
  out.stats.cut = cut;
  ASSIGN_OR_RETURN(auto snapshot, SnapshotFor(shard, cut));
  if (snapshot.second != nullptr) {
    absl::StatusOr<predlog::v1::EntityState> state = snapshot.second->GetEntity(type, id);
    if (state.ok()) {
      out.state = std::move(*state);
      out.stats.snapshot_index = snapshot.first;
    } else if (absl::IsNotFound(state.status())) {
      out.stats.snapshot_index = snapshot.first;
    } else {
      // A snapshot that cannot be read (pruned under us, damaged) only costs
      // time: fold from the beginning instead.
      PREDLOG_LOG(WARNING) << "state-at: " << shard.name() << " snapshot " << snapshot.first
                           << " unreadable, folding from 0: " << state.status();
      Forget(snapshot.second.get());
    }
  }
  predlog::v1::AuditEvent event;
  RETURN_IF_ERROR(
      ForEachRecord(shard, out.stats.snapshot_index, cut, [&](const storage::StoredRecord& record) {
        ++out.stats.records_folded;
        // A change to this entity carries its id in its bytes: most records
        // are skipped without parsing.
        if (!Contains(record.payload, id)) return absl::OkStatus();
        if (!event.ParseFromString(record.payload)) {
          return absl::DataLossError(
              absl::StrCat(shard.name(), ": record ", record.index, " does not parse"));
        }
        if (event.has_entity_changed() && event.entity_changed().entity_type() == type &&
            event.entity_changed().entity_id() == id) {
          storage::ApplyEntityChange(event.entity_changed(), record.index, &out.state);
        }
        return absl::OkStatus();
      }));
  out.exists = !out.state.entity_id().empty() && !out.state.deleted();
  return out;
}

absl::StatusOr<RegistryAt> StateAt::Registry(const storage::ShardStore& shard, uint64_t cut) const {
  RETURN_IF_ERROR(CheckCut(shard, cut));
  RegistryAt out;
  out.stats.cut = cut;
  ASSIGN_OR_RETURN(auto snapshot, SnapshotFor(shard, cut));
  if (snapshot.second != nullptr) {
    absl::StatusOr<storage::RegistryState> registry = snapshot.second->GetRegistry();
    if (registry.ok()) {
      out.registry = std::move(*registry);
      out.stats.snapshot_index = snapshot.first;
    } else {
      PREDLOG_LOG(WARNING) << "state-at: " << shard.name() << " snapshot " << snapshot.first
                           << " unreadable, folding from 0: " << registry.status();
      Forget(snapshot.second.get());
    }
  }
  predlog::v1::AuditEvent event;
  RETURN_IF_ERROR(
      ForEachRecord(shard, out.stats.snapshot_index, cut, [&](const storage::StoredRecord& record) {
        ++out.stats.records_folded;
        if (!event.ParseFromString(record.payload)) {
          return absl::DataLossError(
              absl::StrCat(shard.name(), ": record ", record.index, " does not parse"));
        }
        storage::ApplyRegistryRecord(event, record.index, record.leaf, &out.registry);
        return absl::OkStatus();
      }));
  return out;
}

}  // namespace predlog::replay
