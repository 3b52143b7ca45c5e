#include "storage/state_fold.h"

namespace predlog::storage {

void ApplyEntityChange(const predlog::v1::EntityChanged& change, uint64_t index,
                       predlog::v1::EntityState* state) {
  state->set_entity_type(change.entity_type());
  state->set_entity_id(change.entity_id());
  state->set_last_changed_index(index);
  if (change.deleted()) {
    state->clear_fields();
    state->set_deleted(true);
    return;
  }
  state->set_deleted(false);
  for (const auto& [name, value] : change.set_fields()) (*state->mutable_fields())[name] = value;
  for (const auto& name : change.unset_fields()) state->mutable_fields()->erase(name);
}

}  // namespace predlog::storage
