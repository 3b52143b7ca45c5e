#include "replay/lineage.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "replay/replayer.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::replay {
namespace {

using predlog::v1::LineageEdge;
using predlog::v1::LineageNode;

}  // namespace

std::string DatasetNodeId(absl::string_view name, absl::string_view version) {
  return absl::StrCat("dataset:", name, "@", version);
}
std::string ModelNodeId(absl::string_view name, absl::string_view version) {
  return absl::StrCat("model:", name, "@", version);
}
std::string PipelineNodeId(absl::string_view name, absl::string_view version) {
  return absl::StrCat("pipeline:", name, "@", version);
}
std::string PredictionNodeId(absl::string_view prediction_id) {
  return absl::StrCat("prediction:", prediction_id);
}

absl::StatusOr<predlog::v1::DatasetRecord> ToDatasetRecord(
    const storage::RegistryEntry<predlog::v1::DatasetRegistered>& entry,
    const storage::ShardStore& shard) {
  // The envelope (who registered it, when) is in the record, not the state.
  ASSIGN_OR_RETURN(storage::StoredRecord stored, shard.Get(entry.index));
  ASSIGN_OR_RETURN(predlog::v1::AuditEvent event, stored.Event());
  predlog::v1::DatasetRecord record;
  *record.mutable_registration() = entry.body;
  record.mutable_position()->set_shard(shard.name());
  record.mutable_position()->set_index(entry.index);
  record.set_leaf_sha256(storage::ToHex(entry.leaf));
  record.set_registered_by(event.actor());
  record.set_claimed_by(event.claimed_actor());
  if (event.has_recorded_at()) *record.mutable_recorded_at() = event.recorded_at();
  return record;
}

absl::StatusOr<predlog::v1::PredictionRecord> ToPredictionRecord(
    const storage::ShardStore& shard, int partition, const storage::StoredRecord& record) {
  predlog::v1::PredictionRecord out;
  if (!out.mutable_event()->ParseFromString(record.payload)) {
    return absl::DataLossError(
        absl::StrCat(shard.name(), ": record ", record.index, " does not parse"));
  }
  out.mutable_position()->set_shard(shard.name());
  out.mutable_position()->set_index(record.index);
  out.mutable_source()->set_incarnation(record.source.incarnation);
  out.mutable_source()->set_partition(partition);
  out.mutable_source()->set_offset(record.source.offset);
  out.set_leaf_sha256(storage::ToHex(record.leaf));
  if (record.appended_at) storage::TimeToProto(*record.appended_at, out.mutable_appended_at());
  return out;
}

LineageGraph::LineageGraph(const storage::RegistryState& registry, const storage::ShardStore& shard)
    : registry_(registry), shard_(shard) {}

void LineageGraph::Reset(predlog::v1::Lineage* out) {
  out->Clear();
  out_ = out;
  nodes_.clear();
  edges_.clear();
  to_expand_.clear();
  error_ = absl::OkStatus();
}

LineageNode* LineageGraph::Node(const std::string& id, LineageNode::Kind kind, bool* added) {
  auto [it, inserted] = nodes_.try_emplace(id, out_->nodes_size());
  *added = inserted;
  if (!inserted) return out_->mutable_nodes(it->second);
  LineageNode* node = out_->add_nodes();
  node->set_kind(kind);
  node->set_id(id);
  return node;
}

std::string LineageGraph::AddDataset(const predlog::v1::DatasetRef& ref) {
  std::string id = DatasetNodeId(ref.name(), ref.version());
  bool added = false;
  LineageNode* node = Node(id, LineageNode::DATASET, &added);
  if (!added) return id;
  const auto it = registry_.datasets.find({ref.name(), ref.version()});
  if (it == registry_.datasets.end()) {
    *node->mutable_dataset()->mutable_registration()->mutable_dataset() = ref;
    return id;
  }
  node->set_registered(true);
  absl::StatusOr<predlog::v1::DatasetRecord> record = ToDatasetRecord(it->second, shard_);
  if (record.ok()) {
    *node->mutable_dataset() = *std::move(record);
  } else {
    *node->mutable_dataset()->mutable_registration() = it->second.body;
    if (error_.ok()) error_ = record.status();
  }
  to_expand_.push_back({LineageNode::DATASET, ref.name(), ref.version()});
  return id;
}

std::string LineageGraph::AddModel(const predlog::v1::ModelRef& ref) {
  std::string id = ModelNodeId(ref.name(), ref.version());
  bool added = false;
  LineageNode* node = Node(id, LineageNode::MODEL, &added);
  if (!added) return id;
  predlog::v1::ModelRecord* record = node->mutable_model();
  const auto it = registry_.models.find({ref.name(), ref.version()});
  if (it == registry_.models.end()) {
    *record->mutable_registration()->mutable_model() = ref;
    return id;
  }
  node->set_registered(true);
  *record = ToModelRecord(registry_, it->second, shard_.name());
  to_expand_.push_back({LineageNode::MODEL, ref.name(), ref.version()});
  return id;
}

std::string LineageGraph::AddPipeline(const predlog::v1::PipelineRef& ref) {
  if (ref.name().empty()) return "";
  std::string id = PipelineNodeId(ref.name(), ref.version());
  bool added = false;
  LineageNode* node = Node(id, LineageNode::PIPELINE, &added);
  if (added) {
    node->set_registered(true);
    *node->mutable_pipeline() = ref;
  }
  return id;
}

std::string LineageGraph::AddPrediction(predlog::v1::PredictionRecord record, bool recorded,
                                        std::string note) {
  std::string id = PredictionNodeId(record.event().prediction_logged().prediction_id());
  bool added = false;
  LineageNode* node = Node(id, LineageNode::PREDICTION, &added);
  if (added) {
    node->set_registered(recorded);
    node->set_note(std::move(note));
    *node->mutable_prediction() = std::move(record);
  }
  return id;
}

void LineageGraph::AddEdge(const std::string& from, const std::string& to,
                           LineageEdge::Relation relation) {
  if (from.empty() || to.empty()) return;
  if (!edges_.insert(absl::StrCat(from, "\n", to, "\n", static_cast<int>(relation))).second) {
    return;
  }
  LineageEdge* edge = out_->add_edges();
  edge->set_from(from);
  edge->set_to(to);
  edge->set_relation(relation);
}

absl::Status LineageGraph::ExpandUpstream() {
  // to_expand_ grows while it is walked: index, not iterators.
  for (size_t i = 0; i < to_expand_.size(); ++i) {
    const Key key = to_expand_[i];
    if (key.kind == LineageNode::DATASET) {
      const predlog::v1::DatasetRegistered& d = registry_.datasets.at({key.name, key.version}).body;
      const std::string id = DatasetNodeId(key.name, key.version);
      for (const predlog::v1::DatasetRef& parent : d.derived_from()) {
        AddEdge(id, AddDataset(parent), LineageEdge::DERIVED_FROM);
      }
      for (const predlog::v1::ModelRef& parent : d.derived_from_models()) {
        AddEdge(id, AddModel(parent), LineageEdge::DERIVED_FROM);
      }
      AddEdge(id, AddPipeline(d.pipeline()), LineageEdge::PRODUCED_BY);
    } else {
      const predlog::v1::ModelRegistered& m = registry_.models.at({key.name, key.version}).body;
      const std::string id = ModelNodeId(key.name, key.version);
      for (const predlog::v1::DatasetRef& data : m.provenance().datasets()) {
        AddEdge(id, AddDataset(data), LineageEdge::TRAINED_ON);
      }
      for (const predlog::v1::EvaluationMetric& metric : m.metrics()) {
        if (metric.dataset().name().empty()) continue;
        AddEdge(id, AddDataset(metric.dataset()), LineageEdge::EVALUATED_ON);
      }
      AddEdge(id, AddPipeline(m.provenance().pipeline()), LineageEdge::PRODUCED_BY);
    }
  }
  to_expand_.clear();
  return error_;
}

void LineageGraph::BuildDependents() {
  if (dependents_built_) return;
  dependents_built_ = true;
  for (const auto& [key, entry] : registry_.datasets) {
    const Key self{LineageNode::DATASET, key.first, key.second};
    for (const predlog::v1::DatasetRef& parent : entry.body.derived_from()) {
      dependents_[DatasetNodeId(parent.name(), parent.version())].push_back(
          {self, LineageEdge::DERIVED_FROM});
    }
    for (const predlog::v1::ModelRef& parent : entry.body.derived_from_models()) {
      dependents_[ModelNodeId(parent.name(), parent.version())].push_back(
          {self, LineageEdge::DERIVED_FROM});
    }
  }
  for (const auto& [key, entry] : registry_.models) {
    const Key self{LineageNode::MODEL, key.first, key.second};
    for (const predlog::v1::DatasetRef& data : entry.body.provenance().datasets()) {
      dependents_[DatasetNodeId(data.name(), data.version())].push_back(
          {self, LineageEdge::TRAINED_ON});
    }
  }
}

absl::StatusOr<Downstream> LineageGraph::ExpandDownstream(absl::string_view name,
                                                          absl::string_view version,
                                                          predlog::v1::Lineage* out) {
  BuildDependents();
  Reset(out);
  predlog::v1::DatasetRef root;
  root.set_name(std::string(name));
  root.set_version(std::string(version));
  out->set_root(AddDataset(root));
  Downstream downstream;
  downstream.datasets.emplace_back(root.name(), root.version());
  std::deque<std::string> queue = {out->root()};
  while (!queue.empty()) {
    const std::string id = std::move(queue.front());
    queue.pop_front();
    const auto it = dependents_.find(id);
    if (it == dependents_.end()) continue;
    for (const Dependent& dependent : it->second) {
      const Key& key = dependent.key;
      const size_t before = nodes_.size();
      std::string dependent_id;
      if (key.kind == LineageNode::DATASET) {
        predlog::v1::DatasetRef ref;
        ref.set_name(key.name);
        ref.set_version(key.version);
        dependent_id = AddDataset(ref);
        if (nodes_.size() > before) downstream.datasets.emplace_back(key.name, key.version);
      } else {
        predlog::v1::ModelRef ref;
        ref.set_name(key.name);
        ref.set_version(key.version);
        dependent_id = AddModel(ref);
        if (nodes_.size() > before) downstream.models.emplace_back(key.name, key.version);
      }
      AddEdge(dependent_id, id, dependent.relation);
      if (nodes_.size() > before) queue.push_back(std::move(dependent_id));
    }
  }
  // Only the downstream walk: the upstream walk's queue is not wanted here.
  to_expand_.clear();
  RETURN_IF_ERROR(error_);
  std::sort(downstream.datasets.begin(), downstream.datasets.end());
  std::sort(downstream.models.begin(), downstream.models.end());
  return downstream;
}

}  // namespace predlog::replay
