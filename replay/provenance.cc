// Replayer::GetLineage and GetImpact: provenance of a prediction upstream,
// and of a dataset downstream, over the graph of replay/lineage.h.
#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "replay/lineage.h"
#include "replay/replayer.h"
#include "storage/key_codec.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"

namespace predlog::replay {
namespace {

using predlog::v1::LineageEdge;

// A lineage walks at most this many predictions of a model chain: chains are
// a few models deep; the bound keeps a pathological parent graph finite.
constexpr size_t kMaxLineagePredictions = 1000;

constexpr uint32_t kDefaultImpactPage = 100;
constexpr uint32_t kMaxImpactPage = 10000;
// Index entries one GetImpact call walks at most (~100 ms of the key-only
// walk): a page may come back short, even empty, with a token.
constexpr size_t kMaxImpactEntriesPerCall = 100'000;

// Where a GetImpact page ends, and the cut every page of one answer reads:
//   token := web-safe base64 of
//            version:u8(=2) lp(name) lp(version) from:time to:time
//            registry_cut:u64 shards:u32 end:u64 * shards
//            datasets:u32 readers:u8 * datasets  phase:u32 shard:u32 lp(cursor)
// (from/to as the request's [from, to), infinite when unset.) The request's
// fields tie a token to its request; the cuts keep every page of one answer
// on the log its first page saw, however the log grows.
struct ImpactCursor {
  uint64_t registry_cut = 0;
  std::vector<uint64_t> ends;  // per events shard: records [0, end) count
  // Per impacted dataset (in phase order): whether a prediction of a model
  // that is not downstream read it, below the cut. Counted on the first
  // page; a dataset phase without readers is skipped, not walked (all its
  // entries are downstream models' predictions, listed already).
  std::vector<uint8_t> readers;
  uint32_t phase = 0;  // index into models then datasets
  uint32_t shard = 0;
  // The scan's place in the shard: a ScanModel cursor in a model phase; in
  // a dataset phase the last index entry walked, served_at:time index:u64.
  std::string cursor;
};

constexpr uint8_t kImpactTokenVersion = 2;

std::string EncodeImpactCursor(const predlog::v1::GetImpactRequest& request,
                               const storage::TimeRange& served, const ImpactCursor& c) {
  std::string raw;
  storage::AppendU8(&raw, kImpactTokenVersion);
  storage::AppendLengthPrefixed(&raw, request.dataset().name());
  storage::AppendLengthPrefixed(&raw, request.dataset().version());
  storage::AppendTime(&raw, served.from);
  storage::AppendTime(&raw, served.to);
  storage::AppendU64(&raw, c.registry_cut);
  storage::AppendU32(&raw, static_cast<uint32_t>(c.ends.size()));
  for (uint64_t end : c.ends) storage::AppendU64(&raw, end);
  storage::AppendU32(&raw, static_cast<uint32_t>(c.readers.size()));
  for (uint8_t r : c.readers) storage::AppendU8(&raw, r);
  storage::AppendU32(&raw, c.phase);
  storage::AppendU32(&raw, c.shard);
  storage::AppendLengthPrefixed(&raw, c.cursor);
  return absl::WebSafeBase64Escape(raw);
}

absl::StatusOr<ImpactCursor> DecodeImpactCursor(const predlog::v1::GetImpactRequest& request,
                                                const storage::TimeRange& served, size_t shards) {
  const absl::Status bad = absl::InvalidArgumentError(
      "page_token is not one this server issued for this dataset, from and to");
  std::string raw;
  if (!absl::WebSafeBase64Unescape(request.page_token(), &raw)) return bad;
  absl::string_view in = raw;
  uint8_t version = 0;
  absl::string_view name, dataset_version;
  absl::Time from, to;
  uint32_t count = 0;
  ImpactCursor c;
  if (!storage::ReadU8(&in, &version) || version != kImpactTokenVersion ||
      !storage::ReadLengthPrefixed(&in, &name) ||
      !storage::ReadLengthPrefixed(&in, &dataset_version) || name != request.dataset().name() ||
      dataset_version != request.dataset().version() || !storage::ReadTime(&in, &from) ||
      !storage::ReadTime(&in, &to) || absl::ToUnixMicros(from) != absl::ToUnixMicros(served.from) ||
      absl::ToUnixMicros(to) != absl::ToUnixMicros(served.to) ||
      !storage::ReadU64(&in, &c.registry_cut) || !storage::ReadU32(&in, &count) ||
      count != shards) {
    return bad;
  }
  c.ends.resize(count);
  for (uint64_t& end : c.ends) {
    if (!storage::ReadU64(&in, &end)) return bad;
  }
  uint32_t datasets = 0;
  if (!storage::ReadU32(&in, &datasets) || datasets > in.size()) return bad;
  c.readers.resize(datasets);
  for (uint8_t& r : c.readers) {
    if (!storage::ReadU8(&in, &r)) return bad;
  }
  absl::string_view cursor;
  if (!storage::ReadU32(&in, &c.phase) || !storage::ReadU32(&in, &c.shard) ||
      !storage::ReadLengthPrefixed(&in, &cursor) || !in.empty() || c.shard >= shards) {
    return bad;
  }
  c.cursor = std::string(cursor);
  return c;
}

using Key = std::pair<std::string, std::string>;

}  // namespace

absl::StatusOr<predlog::v1::Lineage> Replayer::GetLineage(
    const predlog::v1::GetLineageRequest& request) const {
  if (request.prediction_id().empty()) {
    return absl::InvalidArgumentError("prediction_id is empty");
  }
  const storage::ShardStore& registry_shard = *shards_.registry;
  ASSIGN_OR_RETURN(uint64_t cut, CutOf(registry_shard, request.as_of()));
  ASSIGN_OR_RETURN(RegistryAt at, state_at_.Registry(registry_shard, cut));

  ASSIGN_OR_RETURN(storage::LocatedRecord root,
                   storage::FindPrediction(shards_, request.prediction_id(), request.subject_id()));
  predlog::v1::Lineage out;
  LineageGraph graph(at.registry, registry_shard);
  graph.Reset(&out);

  // The predictions: the root, then its parents (a model chain), breadth-first.
  std::deque<storage::LocatedRecord> queue;
  queue.push_back(std::move(root));
  absl::flat_hash_set<std::string> seen = {request.prediction_id()};
  size_t walked = 0;
  while (!queue.empty() && walked < kMaxLineagePredictions) {
    const storage::LocatedRecord located = std::move(queue.front());
    queue.pop_front();
    ++walked;
    ASSIGN_OR_RETURN(predlog::v1::PredictionRecord record,
                     ToPredictionRecord(*located.shard, located.partition, located.record));
    const predlog::v1::PredictionLogged p = record.event().prediction_logged();
    const std::string id = graph.AddPrediction(std::move(record));
    if (out.root().empty()) out.set_root(id);
    graph.AddEdge(id, graph.AddModel(p.model()), LineageEdge::MADE_BY);
    for (const predlog::v1::DatasetRef& source : p.data_sources()) {
      graph.AddEdge(id, graph.AddDataset(source), LineageEdge::READ);
    }
    graph.AddEdge(id, graph.AddPipeline(p.pipeline()), LineageEdge::PRODUCED_BY);
    for (const std::string& parent : p.parent_prediction_ids()) {
      if (!seen.insert(parent).second) {
        graph.AddEdge(id, PredictionNodeId(parent), LineageEdge::FED_BY);
        continue;
      }
      absl::StatusOr<storage::LocatedRecord> found = storage::FindPrediction(shards_, parent, "");
      if (!found.ok()) {
        // Not recorded, or in a shard this process cannot read now: a node
        // that says so, and the rest of the graph still answers.
        predlog::v1::PredictionRecord missing;
        missing.mutable_event()->mutable_prediction_logged()->set_prediction_id(parent);
        graph.AddEdge(id,
                      graph.AddPrediction(std::move(missing), /*recorded=*/false,
                                          absl::IsNotFound(found.status())
                                              ? std::string("not in the log")
                                              : std::string(found.status().message())),
                      LineageEdge::FED_BY);
        continue;
      }
      // The parent's node is added when it is walked; the edge names it now.
      graph.AddEdge(id, PredictionNodeId(parent), LineageEdge::FED_BY);
      queue.push_back(*std::move(found));
    }
  }
  // Parents past the bound: nodes, so that every edge names one.
  out.set_truncated(!queue.empty());
  for (const storage::LocatedRecord& located : queue) {
    absl::StatusOr<predlog::v1::PredictionRecord> record =
        ToPredictionRecord(*located.shard, located.partition, located.record);
    if (!record.ok()) return record.status();
    graph.AddPrediction(*std::move(record), /*recorded=*/true, "not walked");
  }
  RETURN_IF_ERROR(graph.ExpandUpstream());
  out.mutable_registry_cut()->set_shard(registry_shard.name());
  out.mutable_registry_cut()->set_index(at.stats.cut);
  return out;
}

absl::StatusOr<predlog::v1::Impact> Replayer::GetImpact(
    const predlog::v1::GetImpactRequest& request) const {
  const predlog::v1::DatasetRef& dataset = request.dataset();
  if (dataset.name().empty()) return absl::InvalidArgumentError("dataset.name is empty");
  if (dataset.version().empty()) return absl::InvalidArgumentError("dataset.version is empty");
  if (request.as_of().has_index()) {
    return absl::InvalidArgumentError(
        "as_of.index names one shard's records; GetImpact reads every shard: use as_of.time or "
        "as_of.after");
  }
  if (request.page_size() > kMaxImpactPage) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size is ", request.page_size(), "; at most ", kMaxImpactPage));
  }
  const size_t page_size = request.page_size() == 0 ? kDefaultImpactPage : request.page_size();
  storage::TimeRange served;
  if (request.has_from()) served.from = storage::TimeFromProto(request.from());
  if (request.has_to()) served.to = storage::TimeFromProto(request.to());
  if (served.from > served.to) return absl::InvalidArgumentError("from is after to");
  std::vector<int> partitions(shards_.events.size());
  for (size_t p = 0; p < partitions.size(); ++p) partitions[p] = static_cast<int>(p);
  RETURN_IF_ERROR(shards_.CheckFolded(
      partitions, absl::StrCat("finding the impact of ", dataset.name(), "@", dataset.version())));

  // The cut: from the token, or taken now for the first page.
  const storage::ShardStore& registry_shard = *shards_.registry;
  const bool first_page = request.page_token().empty();
  ImpactCursor at_cursor;
  if (first_page) {
    ASSIGN_OR_RETURN(at_cursor.registry_cut, CutOf(registry_shard, request.as_of()));
    for (const storage::ShardStore* shard : shards_.events) {
      ASSIGN_OR_RETURN(at_cursor.ends.emplace_back(), CutOf(*shard, request.as_of()));
    }
  } else {
    ASSIGN_OR_RETURN(at_cursor, DecodeImpactCursor(request, served, shards_.events.size()));
  }
  ASSIGN_OR_RETURN(RegistryAt at, state_at_.Registry(registry_shard, at_cursor.registry_cut));

  predlog::v1::Impact out;
  LineageGraph graph(at.registry, registry_shard);
  ASSIGN_OR_RETURN(Downstream downstream,
                   graph.ExpandDownstream(dataset.name(), dataset.version(), out.mutable_graph()));
  out.mutable_graph()->mutable_registry_cut()->set_shard(registry_shard.name());
  out.mutable_graph()->mutable_registry_cut()->set_index(at.stats.cut);
  const std::set<Key> models(downstream.models.begin(), downstream.models.end());

  if (request.graph_only()) return out;

  if (first_page) {
    // Counted from the indexes' keys and values alone: no record is read.
    struct Count {
      bool downstream = false;
      uint64_t predictions = 0;
      absl::Time first = absl::InfiniteFuture();
      absl::Time last = absl::InfinitePast();
      void Add(absl::Time t) {
        ++predictions;
        first = std::min(first, t);
        last = std::max(last, t);
      }
    };
    std::map<Key, Count> counts;
    for (const Key& model : downstream.models) {
      Count& count = counts[model];
      count.downstream = true;
      for (size_t s = 0; s < shards_.events.size(); ++s) {
        const uint64_t end = at_cursor.ends[s];
        RETURN_IF_ERROR(shards_.events[s]->VisitModelIndex(model.first, model.second, served,
                                                           [&](const storage::IndexEntry& entry) {
                                                             if (entry.index < end)
                                                               count.Add(entry.served_at);
                                                             return true;
                                                           }));
      }
    }
    // Predictions of other models that read an impacted dataset, each once
    // whichever impacted datasets it read.
    absl::flat_hash_set<std::pair<size_t, uint64_t>> counted;
    at_cursor.readers.assign(downstream.datasets.size(), 0);
    for (size_t d = 0; d < downstream.datasets.size(); ++d) {
      const Key& data = downstream.datasets[d];
      for (size_t s = 0; s < shards_.events.size(); ++s) {
        const uint64_t end = at_cursor.ends[s];
        RETURN_IF_ERROR(shards_.events[s]->VisitDataSourceIndex(
            data.first, data.second, served, [&](const storage::IndexEntry& entry) {
              if (entry.index >= end) return true;
              Key model(entry.model_name, entry.model_version);
              if (models.count(model) > 0) return true;
              at_cursor.readers[d] = 1;
              if (!counted.insert({s, entry.index}).second) return true;
              counts[std::move(model)].Add(entry.served_at);
              return true;
            }));
      }
    }
    for (const auto& [key, count] : counts) {
      predlog::v1::ImpactedModel* model = out.add_models();
      model->mutable_model()->set_name(key.first);
      model->mutable_model()->set_version(key.second);
      model->set_downstream(count.downstream);
      model->set_predictions(count.predictions);
      if (count.predictions > 0) {
        storage::TimeToProto(count.first, model->mutable_first_served_at());
        storage::TimeToProto(count.last, model->mutable_last_served_at());
      }
      out.set_total_predictions(out.total_predictions() + count.predictions);
    }
  }

  // The page: phases are the downstream models, then the impacted datasets.
  const size_t phases = downstream.models.size() + downstream.datasets.size();
  if (at_cursor.readers.size() != downstream.datasets.size()) {
    return absl::InvalidArgumentError("page_token is not one this server issued");
  }
  ImpactCursor next = at_cursor;
  size_t walked = 0;  // index entries this call walked
  const auto list = [&](const storage::ShardStore& shard, const storage::StoredRecord& record,
                        const predlog::v1::PredictionLogged& p, std::string via) {
    predlog::v1::ImpactedPrediction* listed = out.add_predictions();
    listed->set_prediction_id(p.prediction_id());
    listed->set_subject_id(p.subject_id());
    *listed->mutable_model() = p.model();
    *listed->mutable_served_at() = p.served_at();
    listed->mutable_position()->set_shard(shard.name());
    listed->mutable_position()->set_index(record.index);
    listed->set_via(std::move(via));
  };
  while (next.phase < phases && static_cast<size_t>(out.predictions_size()) < page_size &&
         walked < kMaxImpactEntriesPerCall) {
    const bool model_phase = next.phase < downstream.models.size();
    const Key& node = model_phase ? downstream.models[next.phase]
                                  : downstream.datasets[next.phase - downstream.models.size()];
    if (!model_phase && next.readers[next.phase - downstream.models.size()] == 0) {
      next.shard = 0;
      next.cursor.clear();
      ++next.phase;
      continue;
    }
    const storage::ShardStore& shard = *shards_.events[next.shard];
    const uint64_t end = next.ends[next.shard];
    const size_t room = page_size - out.predictions_size();
    bool shard_done = false;
    if (model_phase) {
      // Every entry of a downstream model is listed (but for records past
      // the cut), so reading records as the index goes costs nothing extra.
      ASSIGN_OR_RETURN(storage::ScanPage page,
                       shard.ScanModel(node.first, node.second, served, next.cursor, room));
      walked += page.records.size();
      for (const storage::StoredRecord& record : page.records) {
        if (record.index >= end) continue;
        ASSIGN_OR_RETURN(predlog::v1::AuditEvent event, record.Event());
        list(shard, record, event.prediction_logged(), ModelNodeId(node.first, node.second));
      }
      next.cursor = std::move(page.next_cursor);
      shard_done = next.cursor.empty();
    } else {
      // Most entries of an impacted dataset may be predictions of downstream
      // models (listed already): they are told apart by the index value,
      // and only the others' records are read.
      storage::TimeRange range = served;
      absl::Time after_time = absl::InfinitePast();
      uint64_t after_index = 0;
      const bool resuming = !next.cursor.empty();
      if (resuming) {
        absl::string_view in = next.cursor;
        if (!storage::ReadTime(&in, &after_time) || !storage::ReadU64(&in, &after_index)) {
          return absl::InvalidArgumentError("page_token is not one this server issued");
        }
        range.from = std::max(range.from, after_time);
      }
      std::vector<uint64_t> candidates;
      std::string last;
      bool stopped = false;
      RETURN_IF_ERROR(shard.VisitDataSourceIndex(
          node.first, node.second, range, [&](const storage::IndexEntry& entry) {
            if (resuming && (entry.served_at < after_time ||
                             (entry.served_at == after_time && entry.index <= after_index))) {
              return true;
            }
            ++walked;
            last.clear();
            storage::AppendTime(&last, entry.served_at);
            storage::AppendU64(&last, entry.index);
            if (entry.index < end &&
                models.count(Key(entry.model_name, entry.model_version)) == 0) {
              candidates.push_back(entry.index);
            }
            stopped = candidates.size() >= room || walked >= kMaxImpactEntriesPerCall;
            return !stopped;
          }));
      for (uint64_t index : candidates) {
        ASSIGN_OR_RETURN(storage::StoredRecord record, shard.Get(index));
        ASSIGN_OR_RETURN(predlog::v1::AuditEvent event, record.Event());
        const predlog::v1::PredictionLogged& p = event.prediction_logged();
        // Listed under the first impacted dataset it read, in phase order.
        bool earlier = false;
        for (const predlog::v1::DatasetRef& source : p.data_sources()) {
          const Key key(source.name(), source.version());
          earlier |= key < node && std::binary_search(downstream.datasets.begin(),
                                                      downstream.datasets.end(), key);
        }
        if (!earlier) list(shard, record, p, DatasetNodeId(node.first, node.second));
      }
      next.cursor = stopped ? std::move(last) : std::string();
      shard_done = !stopped;
    }
    if (shard_done && ++next.shard == shards_.events.size()) {
      next.shard = 0;
      ++next.phase;
    }
  }
  if (next.phase < phases) out.set_next_page_token(EncodeImpactCursor(request, served, next));
  return out;
}

}  // namespace predlog::replay
