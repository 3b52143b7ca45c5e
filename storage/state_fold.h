// How events change folded state. The shard uses these to keep its `state`
// column family current, and replay uses the same functions to rebuild state
// at a cut, so "current" and "as of" can never disagree.
#ifndef PREDLOG_STORAGE_STATE_FOLD_H_
#define PREDLOG_STORAGE_STATE_FOLD_H_

#include <cstdint>

#include "predlog/v1/events.pb.h"

namespace predlog::storage {

// Applies one EntityChanged (folded at shard `index`) to `state`, which holds
// the entity's state before it (default-constructed if the entity is new).
// Deletion clears the fields; a later change re-creates the entity.
void ApplyEntityChange(const predlog::v1::EntityChanged& change, uint64_t index,
                       predlog::v1::EntityState* state);

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_STATE_FOLD_H_
