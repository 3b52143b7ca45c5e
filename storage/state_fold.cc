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

void ApplyRegistryRecord(const predlog::v1::AuditEvent& event, uint64_t index, const Digest& leaf,
                         RegistryState* registry) {
  switch (event.body_case()) {
    case predlog::v1::AuditEvent::kModelRegistered: {
      const auto& model = event.model_registered().model();
      registry->models[{model.name(), model.version()}] = {index, leaf, event.model_registered()};
      break;
    }
    case predlog::v1::AuditEvent::kDatasetRegistered: {
      const auto& dataset = event.dataset_registered().dataset();
      registry->datasets[{dataset.name(), dataset.version()}] = {index, leaf,
                                                                 event.dataset_registered()};
      break;
    }
    case predlog::v1::AuditEvent::kModelDeployed: {
      const auto& deploy = event.model_deployed();
      registry->deployments[{deploy.route(), deploy.model().name() + "@" +
                                                 deploy.model().version()}] = {index, leaf, deploy};
      break;
    }
    default:
      break;
  }
}

}  // namespace predlog::storage
