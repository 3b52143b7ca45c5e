// Lineage graphs for people (cli_format.h): the indented tree and Graphviz.

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "services/cli/cli_format.h"
#include "storage/timestamps.h"

namespace predlog::services {

namespace v1 = ::predlog::v1;

namespace {

std::string RelationText(v1::LineageEdge::Relation relation) {
  switch (relation) {
    case v1::LineageEdge::MADE_BY:
      return "made by";
    case v1::LineageEdge::READ:
      return "read";
    case v1::LineageEdge::FED_BY:
      return "fed by";
    case v1::LineageEdge::TRAINED_ON:
      return "trained on";
    case v1::LineageEdge::EVALUATED_ON:
      return "evaluated on";
    case v1::LineageEdge::DERIVED_FROM:
      return "derived from";
    case v1::LineageEdge::PRODUCED_BY:
      return "produced by";
    default:
      return "depends on";
  }
}

// The same edge read downstream, from what it was made from.
std::string DependentText(v1::LineageEdge::Relation relation) {
  switch (relation) {
    case v1::LineageEdge::TRAINED_ON:
      return "trained on it";
    case v1::LineageEdge::DERIVED_FROM:
      return "derived from it";
    default:
      return absl::StrCat(RelationText(relation), " it");
  }
}

std::string Short(const std::string& digest) {
  return digest.size() > 12 ? absl::StrCat(digest.substr(0, 12), "...") : digest;
}

// One line describing a node: kind, name and what matters about it.
std::string NodeText(const v1::LineageNode& node) {
  std::string text = node.id();
  auto add = [&text](absl::string_view label, absl::string_view value) {
    if (!value.empty()) absl::StrAppend(&text, "  ", label, value);
  };
  switch (node.kind()) {
    case v1::LineageNode::PREDICTION: {
      if (!node.registered()) {
        absl::StrAppend(&text, "  (not in the log)");
        break;
      }
      const v1::PredictionLogged& p = node.prediction().event().prediction_logged();
      add("subject ", p.subject_id());
      add("served ", IsoTime(p.served_at()));
      add("output ", p.output().label());
      add("at ", absl::StrCat(node.prediction().position().shard(), "#",
                              node.prediction().position().index()));
      break;
    }
    case v1::LineageNode::MODEL: {
      const v1::ModelRegistered& m = node.model().registration();
      if (!node.registered()) {
        add("artifact sha256:", Short(m.model().artifact_sha256()));
        absl::StrAppend(&text, "  (not registered)");
        break;
      }
      add("artifact sha256:", Short(m.model().artifact_sha256()));
      add("commit ", m.provenance().code_commit());
      add("run ", m.external_run_id());
      for (const v1::ModelDeployed& deploy : node.model().deployments()) {
        add("serving ", absl::StrCat(deploy.route(), " ", deploy.traffic_fraction() * 100, "%"));
      }
      break;
    }
    case v1::LineageNode::DATASET: {
      const v1::DatasetRegistered& d = node.dataset().registration();
      add("sha256:", Short(d.dataset().digest()));
      if (!node.registered()) {
        absl::StrAppend(&text, "  (not registered)");
        break;
      }
      if (d.row_count() > 0) add("rows ", absl::StrCat(d.row_count()));
      add("source ", d.source());
      add("by ", node.dataset().registered_by());
      break;
    }
    case v1::LineageNode::PIPELINE:
      add("code ", node.pipeline().code_digest());
      break;
    default:
      break;
  }
  return text;
}

}  // namespace

void PrintLineageTree(const v1::Lineage& graph, bool downstream, std::ostream& out) {
  std::map<std::string, const v1::LineageNode*> nodes;
  for (const v1::LineageNode& node : graph.nodes()) nodes[node.id()] = &node;
  std::map<std::string, std::vector<const v1::LineageEdge*>> edges;
  for (const v1::LineageEdge& edge : graph.edges()) {
    edges[downstream ? edge.to() : edge.from()].push_back(&edge);
  }
  std::set<std::string> printed;
  struct Frame {
    std::string id;
    std::string label;
    int depth;
  };
  std::vector<Frame> stack = {{graph.root(), "", 0}};
  while (!stack.empty()) {
    const Frame frame = std::move(stack.back());
    stack.pop_back();
    const auto node = nodes.find(frame.id);
    out << std::string(2 * frame.depth, ' ') << frame.label
        << (node == nodes.end() ? frame.id : NodeText(*node->second));
    if (!printed.insert(frame.id).second) {
      out << "  (above)\n";
      continue;
    }
    out << "\n";
    const auto children = edges.find(frame.id);
    if (children == edges.end()) continue;
    // Pushed in reverse so they print in the order found.
    for (auto it = children->second.rbegin(); it != children->second.rend(); ++it) {
      const v1::LineageEdge& edge = **it;
      stack.push_back(
          {downstream ? edge.from() : edge.to(),
           (downstream ? DependentText(edge.relation()) : RelationText(edge.relation())) + ": ",
           frame.depth + 1});
    }
  }
}

namespace {

std::string DotQuote(absl::string_view text) {
  return absl::StrCat("\"", absl::StrReplaceAll(text, {{"\\", "\\\\"}, {"\"", "\\\""}}), "\"");
}

}  // namespace

void PrintLineageDot(const v1::Lineage& graph, std::ostream& out) {
  out << "digraph lineage {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n";
  for (const v1::LineageNode& node : graph.nodes()) {
    const char* shape = node.kind() == v1::LineageNode::PREDICTION ? "ellipse"
                        : node.kind() == v1::LineageNode::MODEL    ? "box"
                        : node.kind() == v1::LineageNode::DATASET  ? "cylinder"
                                                                   : "component";
    out << "  " << DotQuote(node.id()) << " [shape=" << shape
        << (node.registered() ? "" : ", style=dashed")
        << (node.id() == graph.root() ? ", penwidth=2" : "") << "];\n";
  }
  for (const v1::LineageEdge& edge : graph.edges()) {
    out << "  " << DotQuote(edge.from()) << " -> " << DotQuote(edge.to())
        << " [label=" << DotQuote(RelationText(edge.relation())) << "];\n";
  }
  out << "}\n";
}

}  // namespace predlog::services
