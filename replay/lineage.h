// Lineage: the provenance graph of datasets, models and pipelines that the
// registry's records draw (DatasetRegistered.derived_from and
// derived_from_models, ModelRegistered.provenance), walked upstream (where
// did this come from?) or downstream (what depends on this dataset?).
//
// Built from a RegistryState, so the same graph answers "now" (the shard's
// state) and "as of" any cut (replay/state_at.h folds the registry to it).
// Nodes are keyed by kind and name@version: a dataset and a model may share
// a name@version. A node that a record names but that is not registered in
// the state is still a node, with registered = false (history arrives out of
// order). The registry shard's fold refuses registrations that would close a
// cycle; every walk keeps a visited set all the same, so a graph is finite
// whatever the state holds.
//
// Not thread-safe (one per call); borrows the RegistryState, which must
// outlive it.
#ifndef PREDLOG_REPLAY_LINEAGE_H_
#define PREDLOG_REPLAY_LINEAGE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "predlog/v1/replay.pb.h"
#include "storage/shard_store.h"
#include "storage/state_fold.h"

namespace predlog::replay {

// Node ids as LineageNode.id spells them.
std::string DatasetNodeId(absl::string_view name, absl::string_view version);
std::string ModelNodeId(absl::string_view name, absl::string_view version);
std::string PipelineNodeId(absl::string_view name, absl::string_view version);
std::string PredictionNodeId(absl::string_view prediction_id);

// A registered dataset as the API shows it: the registration from the state
// and, from its record in `shard` (the registry shard the state was folded
// from), who registered it and when. DATA_LOSS / NOT_FOUND from the shard
// when the record cannot be read.
absl::StatusOr<predlog::v1::DatasetRecord> ToDatasetRecord(
    const storage::RegistryEntry<predlog::v1::DatasetRegistered>& entry,
    const storage::ShardStore& shard);

// A prediction's record as the API shows it (PredictionRecord): the event
// parsed from `record`, its position in `shard` (the events shard of
// `partition`), source and leaf. DATA_LOSS when the bytes do not parse.
absl::StatusOr<predlog::v1::PredictionRecord> ToPredictionRecord(
    const storage::ShardStore& shard, int partition, const storage::StoredRecord& record);

// What is downstream of a dataset: the impacted datasets (the root among
// them) and models, each by (name, version), sorted.
struct Downstream {
  std::vector<std::pair<std::string, std::string>> datasets;
  std::vector<std::pair<std::string, std::string>> models;
};

class LineageGraph {
 public:
  // `registry` folded from `shard` (the registry shard; its records give
  // datasets' registered_by). Both borrowed.
  LineageGraph(const storage::RegistryState& registry, const storage::ShardStore& shard);

  // Clears `out` and makes it the graph nodes and edges are added to (the
  // caller sets its root and registry_cut). Borrowed until the next Reset.
  void Reset(predlog::v1::Lineage* out);

  // Adds a node (once; later calls return its id) and returns its id. A
  // model or dataset is looked up in the registry. Adding a node does not
  // walk from it: Expand does.
  std::string AddDataset(const predlog::v1::DatasetRef& ref);
  std::string AddModel(const predlog::v1::ModelRef& ref);
  // Empty name: no node, returns "".
  std::string AddPipeline(const predlog::v1::PipelineRef& ref);
  // A prediction node with its record. `recorded` false: a prediction that
  // another names (a parent) but that is not in the log or could not be
  // looked up, with only its id in the record (registered = false). `note`
  // says why (LineageNode.note), or that a recorded one was not walked.
  std::string AddPrediction(predlog::v1::PredictionRecord record, bool recorded = true,
                            std::string note = "");
  // Adds the edge `from` -> `to` once (an edge points upstream).
  void AddEdge(const std::string& from, const std::string& to,
               predlog::v1::LineageEdge::Relation relation);

  // Walks upstream from every registered model and dataset node not walked
  // yet, breadth-first: a model to its training and evaluation datasets and
  // its training pipeline, a dataset to its parent datasets, the models it
  // was derived from and its pipeline. Errors: reading a dataset's record.
  absl::Status ExpandUpstream();

  // Walks downstream from dataset name@version (registered or not) into
  // `out` (Reset to root "dataset:<name>@<version>"): datasets derived from
  // it, models trained on any of them, datasets derived from those models'
  // outputs, and so on. Evaluation datasets are not followed: measuring a
  // model on data does not change what it predicts. Returns the impacted
  // datasets and models.
  absl::StatusOr<Downstream> ExpandDownstream(absl::string_view name, absl::string_view version,
                                              predlog::v1::Lineage* out);

 private:
  // A model or dataset node by name@version.
  struct Key {
    predlog::v1::LineageNode::Kind kind;
    std::string name;
    std::string version;
  };
  struct Dependent {
    Key key;
    predlog::v1::LineageEdge::Relation relation;
  };
  // Node id -> the nodes that depend on it, in registry order: built on the
  // first downstream walk.
  void BuildDependents();
  // The node `id`, added with `kind` when new (`added` says which).
  predlog::v1::LineageNode* Node(const std::string& id, predlog::v1::LineageNode::Kind kind,
                                 bool* added);

  const storage::RegistryState& registry_;
  const storage::ShardStore& shard_;
  predlog::v1::Lineage* out_ = nullptr;
  absl::flat_hash_map<std::string, int> nodes_;  // id -> index in out_->nodes()
  absl::flat_hash_set<std::string> edges_;       // "from\nto\nrelation"
  // Registered model and dataset nodes added but not walked upstream yet.
  std::vector<Key> to_expand_;
  absl::Status error_;  // the first record that could not be read
  bool dependents_built_ = false;
  absl::flat_hash_map<std::string, std::vector<Dependent>> dependents_;
};

}  // namespace predlog::replay

#endif  // PREDLOG_REPLAY_LINEAGE_H_
