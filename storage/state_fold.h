// How events change folded state. The shard uses these to keep its `state`
// column family current, and replay uses the same functions to rebuild state
// at a cut, so "current" and "as of" can never disagree.
#ifndef PREDLOG_STORAGE_STATE_FOLD_H_
#define PREDLOG_STORAGE_STATE_FOLD_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "predlog/v1/events.pb.h"
#include "storage/sha256.h"

namespace predlog::storage {

// Applies one EntityChanged (folded at shard `index`) to `state`, which holds
// the entity's state before it (default-constructed if the entity is new).
// Deletion clears the fields; a later change re-creates the entity.
void ApplyEntityChange(const predlog::v1::EntityChanged& change, uint64_t index,
                       predlog::v1::EntityState* state);

// A registry body together with the log record that set it.
template <typename Body>
struct RegistryEntry {
  uint64_t index = 0;
  Digest leaf{};
  Body body;
};

// The model registry as folded state: registered models and datasets, and
// the latest deploy of each model on each route.
struct RegistryState {
  // (name, version) -> registration. Write-once: the shard keeps a second
  // registration with other content as a conflict, never as a record.
  std::map<std::pair<std::string, std::string>, RegistryEntry<predlog::v1::ModelRegistered>> models;
  std::map<std::pair<std::string, std::string>, RegistryEntry<predlog::v1::DatasetRegistered>>
      datasets;
  // (route, "name@version") -> that model's latest deploy on the route. A
  // traffic_fraction of 0 means the model was withdrawn from the route.
  std::map<std::pair<std::string, std::string>, RegistryEntry<predlog::v1::ModelDeployed>>
      deployments;
};

// Applies one record of a shard's log (at `index`, with `leaf`) to the
// registry; other bodies leave it unchanged. Only records reach this: a
// duplicate or conflicting registration never became one, so a record always
// sets its key.
void ApplyRegistryRecord(const predlog::v1::AuditEvent& event, uint64_t index, const Digest& leaf,
                         RegistryState* registry);

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_STATE_FOLD_H_
