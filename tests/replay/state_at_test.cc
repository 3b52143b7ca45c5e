#include "replay/state_at.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "storage/event_validation.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"
#include "storage/state_fold.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::replay {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::predlog::testing::IsOk;
using ::predlog::testing::MakeEntityChange;
using ::predlog::testing::MakeModelRegistered;
using ::predlog::testing::MakePredictionPayload;
using ::predlog::testing::Msg;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using predlog::v1::AuditEvent;
using predlog::v1::EntityState;
using storage::FoldOutcome;
using storage::RegistryState;
using storage::ShardStore;
using storage::SourceMessage;
using storage::StoredRecord;
using ::testing::HasSubstr;
using ::testing::SizeIs;

using EntityKey = std::pair<std::string, std::string>;  // (type, id)

std::string ArtifactHex(const std::string& name, const std::string& version) {
  return storage::ToHex(storage::Sha256(absl::StrCat(name, "@", version)));
}

AuditEvent MakeDeploy(const std::string& route, const std::string& name, const std::string& version,
                      double fraction, const std::string& reason) {
  AuditEvent event;
  event.set_event_id(absl::StrCat("deploy-", route, "-", name, "-", version, "-", fraction));
  event.set_actor("ml-platform");
  event.set_schema_version(storage::kSchemaVersion);
  auto* deploy = event.mutable_model_deployed();
  deploy->set_route(route);
  deploy->mutable_model()->set_name(name);
  deploy->mutable_model()->set_version(version);
  deploy->mutable_model()->set_artifact_sha256(ArtifactHex(name, version));
  deploy->set_traffic_fraction(fraction);
  deploy->set_reason(reason);
  return event;
}

// Empty when equal; otherwise what differs (MessageDifferencer compares map
// fields as maps, so field order in the bytes does not matter).
std::string Diff(const google::protobuf::Message& want, const google::protobuf::Message& got) {
  std::string report;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&report);
  if (differencer.Compare(want, got)) return "";
  return report.empty() ? "differs" : report;
}

template <typename Map>
std::string DiffEntries(absl::string_view what, const Map& want, const Map& got) {
  std::string out;
  for (const auto& [key, entry] : want) {
    auto it = got.find(key);
    if (it == got.end()) {
      absl::StrAppend(&out, what, " ", key.first, "/", key.second, " missing; ");
      continue;
    }
    if (it->second.index != entry.index) {
      absl::StrAppend(&out, what, " ", key.first, "/", key.second, " index ", it->second.index,
                      " want ", entry.index, "; ");
    }
    if (it->second.leaf != entry.leaf) {
      absl::StrAppend(&out, what, " ", key.first, "/", key.second, " leaf differs; ");
    }
    const std::string body = Diff(entry.body, it->second.body);
    if (!body.empty()) absl::StrAppend(&out, what, " ", key.first, "/", key.second, ": ", body);
  }
  for (const auto& [key, entry] : got) {
    if (want.count(key) == 0) {
      absl::StrAppend(&out, what, " ", key.first, "/", key.second, " unexpected; ");
    }
  }
  return out;
}

// Empty when equal, field by field, including each entry's index and leaf.
std::string DiffRegistry(const RegistryState& want, const RegistryState& got) {
  return absl::StrCat(DiffEntries("model", want.models, got.models),
                      DiffEntries("dataset", want.datasets, got.datasets),
                      DiffEntries("deployment", want.deployments, got.deployments));
}

// What the test's own fold from record 0 says about records [0, cut).
struct Reference {
  std::map<EntityKey, EntityState> entities;
  // Tracked apart from EntityState: true after a change that is not a delete.
  std::map<EntityKey, bool> exists;
  RegistryState registry;
};

// ---------------------------------------------------------------------------
// A randomized shard: predictions interleaved with customer changes (set,
// unset, delete, re-create), changes to "account" entities that share the
// customers' ids, and a registry script (register, canary 0.1, promote 1.0,
// withdraw the previous version with 0) on two routes.

constexpr uint64_t kRecords = 3150;
constexpr uint64_t kSnapshotEvery = 300;  // snapshots at 300, 600, ..., 3000
constexpr int kCustomers = 20;
constexpr int kAccounts = 5;
constexpr uint64_t kSeed = 20261127;

struct Variant {
  const char* name;
  bool take_snapshots;  // CreateSnapshot every kSnapshotEvery records
  bool use_snapshots;   // StateAtOptions.use_snapshots
};

// Names the variant in test output (gtest would print the struct's bytes).
void PrintTo(const Variant& variant, std::ostream* os) { *os << variant.name; }

class StateAtRandomShardTest : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    storage::ShardOptions options;
    options.dir = dir_.Sub("predlog.events-0");
    ASSERT_OK_AND_ASSIGN(shard_, ShardStore::Open(options));
    BuildPayloads();
    ASSERT_NO_FATAL_FAILURE(Fold());
  }

  uint64_t Next(uint64_t n) { return rng_() % n; }

  void BuildPayloads() {
    // The registry script of each route, in the order it must happen.
    std::vector<std::vector<AuditEvent>> scripts(2);
    const std::vector<std::tuple<std::string, std::string, int>> routes = {
        {"limits", "credit-limit", 4}, {"fraud-check", "fraud", 3}};
    for (size_t r = 0; r < routes.size(); ++r) {
      const auto& [route, model, versions] = routes[r];
      for (int v = 1; v <= versions; ++v) {
        const std::string version = absl::StrCat("v", v);
        scripts[r].push_back(MakeModelRegistered(model, version, ArtifactHex(model, version)));
        scripts[r].push_back(MakeDeploy(route, model, version, 0.1, "canary"));
        scripts[r].push_back(MakeDeploy(route, model, version, 1.0, "promote"));
        if (v > 1) {
          scripts[r].push_back(
              MakeDeploy(route, model, absl::StrCat("v", v - 1), 0.0, "withdraw previous"));
        }
      }
    }
    // Registry records at distinct random positions spread over the log.
    std::set<uint64_t> registry_at;
    while (registry_at.size() < scripts[0].size() + scripts[1].size()) {
      registry_at.insert(Next(kRecords));
    }
    std::vector<size_t> script_pos(scripts.size(), 0);

    const std::vector<std::string> field_names = {"limit", "score", "segment", "income",
                                                  "region_code"};
    std::map<EntityKey, bool> live;  // the generator's own view, to pick operations
    for (uint64_t i = 0; i < kRecords; ++i) {
      AuditEvent event;
      const uint64_t kind = Next(100);
      if (registry_at.count(i) > 0) {
        size_t r = Next(scripts.size());
        if (script_pos[r] == scripts[r].size()) r = 1 - r;
        event = scripts[r][script_pos[r]++];
      } else if (kind < 25) {
        const bool account = kind >= 22;
        const EntityKey key = {account ? "account" : "customer",
                               absl::StrCat("c", Next(account ? kAccounts : kCustomers))};
        std::vector<std::pair<std::string, double>> set;
        std::vector<std::string> unset;
        bool deleted = false;
        const uint64_t op = Next(100);
        if (!live[key]) {
          if (changes_[key] > 0) ++recreations_;
          set.emplace_back("limit", static_cast<double>(Next(10000)));
          for (uint64_t n = Next(3); n > 0; --n) {
            set.emplace_back(field_names[Next(field_names.size())],
                             static_cast<double>(Next(1000)) / 4);
          }
        } else if (op < 55) {
          for (uint64_t n = 1 + Next(2); n > 0; --n) {
            set.emplace_back(field_names[Next(field_names.size())],
                             static_cast<double>(Next(1000)) / 4);
          }
        } else if (op < 80) {
          // Sometimes a field that is not there: unsetting it is a no-op.
          for (uint64_t n = 1 + Next(2); n > 0; --n) {
            unset.push_back(field_names[Next(field_names.size())]);
          }
        } else {
          deleted = true;
          ++deletes_;
        }
        live[key] = !deleted;
        ++changes_[key];
        event = MakeEntityChange(key.first, key.second, set, unset, deleted);
      } else {
        PredictionSpec spec;
        spec.prediction_id = absl::StrCat("p", i);
        spec.subject_id = absl::StrCat("c", Next(kCustomers));
        spec.features = 4;
        spec.score = static_cast<float>(Next(1000)) / 1000.0f;
        event = predlog::testing::MakePrediction(spec);
      }
      payloads_.push_back(event.SerializeAsString());
    }
    registry_records_ = registry_at.size();
  }

  // ApplyBatch in random-size batches; with take_snapshots, batches end at
  // every kSnapshotEvery records and a snapshot is taken there.
  void Fold() {
    uint64_t next = 0;
    while (next < kRecords) {
      uint64_t end = std::min(kRecords, next + 1 + Next(64));
      if (GetParam().take_snapshots) {
        end = std::min(end, (next / kSnapshotEvery + 1) * kSnapshotEvery);
      }
      std::vector<SourceMessage> messages;
      for (uint64_t i = next; i < end; ++i) {
        messages.push_back(Msg("inc", static_cast<int64_t>(i), payloads_[i]));
      }
      ASSERT_OK_AND_ASSIGN(storage::BatchResult result, shard_->ApplyBatch(messages));
      ASSERT_THAT(result.messages, SizeIs(end - next));
      for (uint64_t i = next; i < end; ++i) {
        // Every message is a record, at the index equal to its offset: the
        // reference fold and the expected stats rely on it.
        ASSERT_EQ(result.messages[i - next].outcome, FoldOutcome::kApplied)
            << "offset " << i << ": " << result.messages[i - next].reason;
        ASSERT_EQ(result.messages[i - next].index, i);
      }
      next = end;
      if (GetParam().take_snapshots && next % kSnapshotEvery == 0) {
        ASSERT_OK_AND_ASSIGN(storage::SnapshotInfo snapshot, shard_->CreateSnapshot());
        ASSERT_EQ(snapshot.index, next);
        snapshots_.push_back(next);
      }
    }
    ASSERT_EQ(shard_->Head().next_index, kRecords);
  }

  StateAtOptions Options() const {
    StateAtOptions options;
    options.use_snapshots = GetParam().use_snapshots;
    return options;
  }

  // The snapshot an answer at `cut` must start from.
  uint64_t ExpectedSnapshot(uint64_t cut) const {
    if (!GetParam().use_snapshots) return 0;
    uint64_t best = 0;
    for (uint64_t s : snapshots_) {
      if (s <= cut) best = std::max(best, s);
    }
    return best;
  }

  // 0, 1, the head, every snapshot boundary and its neighbours (the same
  // boundaries in the no-snapshot variants), then random cuts up to 100.
  std::vector<uint64_t> Cuts() {
    std::set<uint64_t> cuts = {0, 1, kRecords};
    for (uint64_t s = kSnapshotEvery; s <= kRecords; s += kSnapshotEvery) {
      cuts.insert({s - 1, s, s + 1});
    }
    while (cuts.size() < 100) cuts.insert(Next(kRecords + 1));
    return {cuts.begin(), cuts.end()};
  }

  // The test's own fold: every record from 0, parsed and applied in log
  // order, with the state captured at each of `cuts` (sorted).
  std::map<uint64_t, Reference> ReferenceAt(const std::vector<uint64_t>& cuts) {
    std::vector<StoredRecord> records;
    while (records.size() < kRecords) {
      auto page = shard_->ReadRange(records.size(), 1000);
      EXPECT_THAT(page, IsOk());
      if (!page.ok() || page->empty()) break;
      for (StoredRecord& record : *page) records.push_back(std::move(record));
    }
    EXPECT_EQ(records.size(), kRecords);
    std::map<uint64_t, Reference> out;
    Reference state;
    size_t next_cut = 0;
    for (uint64_t i = 0; i <= records.size(); ++i) {
      while (next_cut < cuts.size() && cuts[next_cut] == i) out[cuts[next_cut++]] = state;
      if (i == records.size()) break;
      const StoredRecord& record = records[i];
      EXPECT_EQ(record.index, i);
      AuditEvent event;
      EXPECT_TRUE(event.ParseFromString(record.payload)) << "record " << i;
      if (event.has_entity_changed()) {
        const auto& change = event.entity_changed();
        const EntityKey key = {change.entity_type(), change.entity_id()};
        storage::ApplyEntityChange(change, i, &state.entities[key]);
        state.exists[key] = !change.deleted();
      }
      storage::ApplyRegistryRecord(event, i, record.leaf, &state.registry);
    }
    EXPECT_EQ(out.size(), cuts.size());
    return out;
  }

  static std::vector<EntityKey> CheckedEntities() {
    std::vector<EntityKey> keys;
    for (int i = 0; i < kCustomers; ++i) keys.emplace_back("customer", absl::StrCat("c", i));
    for (int i = 0; i < kAccounts; ++i) keys.emplace_back("account", absl::StrCat("c", i));
    return keys;
  }

  TempDir dir_;
  std::unique_ptr<ShardStore> shard_;
  std::mt19937_64 rng_{kSeed};
  std::vector<std::string> payloads_;
  std::vector<uint64_t> snapshots_;
  std::map<EntityKey, int> changes_;
  int deletes_ = 0;
  int recreations_ = 0;
  size_t registry_records_ = 0;
};

TEST_P(StateAtRandomShardTest, GeneratedShardCoversDeletesRecreationsAndSnapshots) {
  // Guards the generator: the other tests mean little without these.
  EXPECT_GE(deletes_, 50);
  EXPECT_GE(recreations_, 40);
  EXPECT_EQ(registry_records_, 26u);
  if (GetParam().take_snapshots) {
    EXPECT_EQ(snapshots_,
              std::vector<uint64_t>({300, 600, 900, 1200, 1500, 1800, 2100, 2400, 2700, 3000}));
  } else {
    EXPECT_THAT(shard_->ListSnapshots(), IsOk());
    EXPECT_TRUE(shard_->ListSnapshots()->empty());
  }
}

TEST_P(StateAtRandomShardTest, EntityAtEveryCutEqualsFoldFromRecordZero) {
  const std::vector<uint64_t> cuts = Cuts();
  ASSERT_THAT(cuts, SizeIs(100));
  const std::map<uint64_t, Reference> reference = ReferenceAt(cuts);
  const StateAt state_at(Options());
  const std::vector<EntityKey> entities = CheckedEntities();
  for (size_t k = 0; k < cuts.size(); ++k) {
    const uint64_t cut = cuts[k];
    const Reference& want = reference.at(cut);
    // A third of the entities at each cut, rotating, and customer c1 (whose id
    // is a prefix of c10..c19) always: each entity is checked at ~33 cuts,
    // and folding from 0 stays within the test's time budget.
    for (size_t e = 0; e < entities.size(); ++e) {
      if ((e + k) % 3 != 0 && e != 1) continue;
      const EntityKey& key = entities[e];
      SCOPED_TRACE(absl::StrCat(key.first, "/", key.second, " at cut ", cut));
      ASSERT_OK_AND_ASSIGN(EntityAt got, state_at.Entity(*shard_, key.first, key.second, cut));
      auto it = want.entities.find(key);
      const EntityState expected = it == want.entities.end() ? EntityState() : it->second;
      EXPECT_EQ(Diff(expected, got.state), "");
      auto exists = want.exists.find(key);
      EXPECT_EQ(got.exists, exists != want.exists.end() && exists->second);
      EXPECT_EQ(got.stats.cut, cut);
      EXPECT_EQ(got.stats.snapshot_index, ExpectedSnapshot(cut));
      EXPECT_EQ(got.stats.records_folded, cut - ExpectedSnapshot(cut));
    }
  }
}

TEST_P(StateAtRandomShardTest, RegistryAtEveryCutEqualsFoldFromRecordZero) {
  const std::vector<uint64_t> cuts = Cuts();
  const std::map<uint64_t, Reference> reference = ReferenceAt(cuts);
  const StateAt state_at(Options());
  for (uint64_t cut : cuts) {
    SCOPED_TRACE(absl::StrCat("cut ", cut));
    ASSERT_OK_AND_ASSIGN(RegistryAt got, state_at.Registry(*shard_, cut));
    EXPECT_EQ(DiffRegistry(reference.at(cut).registry, got.registry), "");
    EXPECT_EQ(got.stats.cut, cut);
    EXPECT_EQ(got.stats.snapshot_index, ExpectedSnapshot(cut));
    EXPECT_EQ(got.stats.records_folded, cut - ExpectedSnapshot(cut));
  }
}

TEST_P(StateAtRandomShardTest, AtTheHeadEqualsTheShardsCurrentState) {
  const StateAt state_at(Options());
  for (const EntityKey& key : CheckedEntities()) {
    SCOPED_TRACE(absl::StrCat(key.first, "/", key.second));
    ASSERT_OK_AND_ASSIGN(EntityAt got, state_at.Entity(*shard_, key.first, key.second, kRecords));
    ASSERT_OK_AND_ASSIGN(EntityState current, shard_->GetEntity(key.first, key.second));
    EXPECT_EQ(Diff(current, got.state), "");
    EXPECT_EQ(got.exists, !current.deleted());
  }
  ASSERT_OK_AND_ASSIGN(RegistryAt got, state_at.Registry(*shard_, kRecords));
  ASSERT_OK_AND_ASSIGN(RegistryState current, shard_->GetRegistry());
  EXPECT_EQ(DiffRegistry(current, got.registry), "");

  // The whole script ran: 7 registrations; on each route the last version
  // carries all traffic and every earlier one was withdrawn.
  EXPECT_THAT(got.registry.models, SizeIs(7));
  ASSERT_THAT(got.registry.deployments, SizeIs(7));
  const std::map<std::pair<std::string, std::string>, double> fractions = {
      {{"limits", "credit-limit@v1"}, 0.0}, {{"limits", "credit-limit@v2"}, 0.0},
      {{"limits", "credit-limit@v3"}, 0.0}, {{"limits", "credit-limit@v4"}, 1.0},
      {{"fraud-check", "fraud@v1"}, 0.0},   {{"fraud-check", "fraud@v2"}, 0.0},
      {{"fraud-check", "fraud@v3"}, 1.0}};
  for (const auto& [key, fraction] : fractions) {
    auto it = got.registry.deployments.find(key);
    ASSERT_NE(it, got.registry.deployments.end()) << key.first << "/" << key.second;
    EXPECT_EQ(it->second.body.traffic_fraction(), fraction) << key.first << "/" << key.second;
  }
}

TEST_P(StateAtRandomShardTest, CutBeyondTheHeadIsOutOfRangeNamingTheShard) {
  const StateAt state_at(Options());
  for (uint64_t cut : {kRecords + 1, uint64_t{1} << 40}) {
    EXPECT_THAT(state_at.Entity(*shard_, "customer", "c1", cut),
                StatusIs(absl::StatusCode::kOutOfRange,
                         HasSubstr(absl::StrCat("cut ", cut, " is beyond predlog.events-0"))));
    EXPECT_THAT(state_at.Registry(*shard_, cut),
                StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("predlog.events-0")));
  }
}

TEST_P(StateAtRandomShardTest, EntityNeverSeenDoesNotExistAndIsEmpty) {
  const StateAt state_at(Options());
  // "c1" is in many records (c1, c10..c19, as subject and entity id): the
  // byte prefilter matches them and the parse must still reject them.
  for (const EntityKey& key : std::vector<EntityKey>{
           {"customer", "never-seen"}, {"customer", "c"}, {"account", "c10"}, {"loan", "c1"}}) {
    for (uint64_t cut : {uint64_t{0}, uint64_t{1499}, uint64_t{1500}, kRecords}) {
      SCOPED_TRACE(absl::StrCat(key.first, "/", key.second, " at cut ", cut));
      ASSERT_OK_AND_ASSIGN(EntityAt got, state_at.Entity(*shard_, key.first, key.second, cut));
      EXPECT_FALSE(got.exists);
      EXPECT_EQ(Diff(EntityState(), got.state), "");
      EXPECT_EQ(got.stats.snapshot_index, ExpectedSnapshot(cut));
      EXPECT_EQ(got.stats.records_folded, cut - ExpectedSnapshot(cut));
    }
  }
}

// Only meaningful with snapshots taken and used.
class StateAtDeletedSnapshotTest : public StateAtRandomShardTest {};

TEST_P(StateAtDeletedSnapshotTest, SnapshotDirectoryDeletedBehindTheCacheStillGivesTheRightAnswer) {
  constexpr uint64_t kCut = 1507;  // answered from the snapshot at 1500
  const std::map<uint64_t, Reference> reference = ReferenceAt({kCut});
  const Reference& want = reference.at(kCut);
  const EntityKey key = {"customer", "c3"};
  const EntityState expected = want.entities.at(key);

  StateAtOptions options = Options();
  options.max_open_snapshots = 1;
  const StateAt state_at(options);
  ASSERT_OK_AND_ASSIGN(EntityAt first, state_at.Entity(*shard_, key.first, key.second, kCut));
  EXPECT_EQ(first.stats.snapshot_index, 1500u);
  EXPECT_EQ(Diff(expected, first.state), "");

  ASSERT_OK_AND_ASSIGN(std::vector<storage::SnapshotInfo> snapshots, shard_->ListSnapshots());
  auto snapshot = std::find_if(snapshots.begin(), snapshots.end(),
                               [](const storage::SnapshotInfo& s) { return s.index == 1500; });
  ASSERT_NE(snapshot, snapshots.end());
  ASSERT_TRUE(std::filesystem::exists(snapshot->path));
  std::filesystem::remove_all(snapshot->path);
  ASSERT_FALSE(std::filesystem::exists(snapshot->path));

  // The cached read-only instance holds its files open (RocksDB opens every
  // table file at open with the default max_open_files = -1), and unlinked
  // files stay readable on POSIX: it still answers from the snapshot.
  ASSERT_OK_AND_ASSIGN(EntityAt cached, state_at.Entity(*shard_, key.first, key.second, kCut));
  EXPECT_EQ(Diff(expected, cached.state), "");
  EXPECT_EQ(cached.exists, want.exists.at(key));
  EXPECT_EQ(cached.stats.snapshot_index, 1500u);
  EXPECT_EQ(cached.stats.records_folded, 7u);
  ASSERT_OK_AND_ASSIGN(RegistryAt cached_registry, state_at.Registry(*shard_, kCut));
  EXPECT_EQ(DiffRegistry(want.registry, cached_registry.registry), "");
  EXPECT_EQ(cached_registry.stats.snapshot_index, 1500u);

  // Once the instance leaves the cache (another snapshot evicts it; a new
  // StateAt never had it), the catalog still lists the snapshot but it cannot
  // be opened: the answer is folded from record 0 instead of failing.
  ASSERT_THAT(state_at.Entity(*shard_, key.first, key.second, 300), IsOk());
  const StateAt fresh(Options());
  for (const StateAt* s : {&state_at, &fresh}) {
    ASSERT_OK_AND_ASSIGN(EntityAt refolded, s->Entity(*shard_, key.first, key.second, kCut));
    EXPECT_EQ(Diff(expected, refolded.state), "");
    EXPECT_EQ(refolded.exists, want.exists.at(key));
    EXPECT_EQ(refolded.stats.snapshot_index, 0u);
    EXPECT_EQ(refolded.stats.records_folded, kCut);
    ASSERT_OK_AND_ASSIGN(RegistryAt registry, s->Registry(*shard_, kCut));
    EXPECT_EQ(DiffRegistry(want.registry, registry.registry), "");
    EXPECT_EQ(registry.stats.snapshot_index, 0u);
    EXPECT_EQ(registry.stats.records_folded, kCut);
  }
  // Cuts served by the other snapshots are unaffected.
  ASSERT_OK_AND_ASSIGN(EntityAt later, fresh.Entity(*shard_, key.first, key.second, 1800));
  EXPECT_EQ(later.stats.snapshot_index, 1800u);
}

std::string VariantName(const ::testing::TestParamInfo<Variant>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Variants, StateAtRandomShardTest,
                         ::testing::Values(Variant{"SnapshotsEvery300", true, true},
                                           Variant{"NoSnapshots", false, true},
                                           Variant{"SnapshotsPresentButNotUsed", true, false}),
                         VariantName);
INSTANTIATE_TEST_SUITE_P(Variants, StateAtDeletedSnapshotTest,
                         ::testing::Values(Variant{"SnapshotsEvery300", true, true}), VariantName);

// ---------------------------------------------------------------------------
// Small hand-written shards with the expected answers spelled out.

class StateAtTest : public ::testing::Test {
 protected:
  std::unique_ptr<ShardStore> OpenShard(const std::string& dir) {
    storage::ShardOptions options;
    options.dir = dir;
    auto shard = ShardStore::Open(options);
    EXPECT_THAT(shard, IsOk());
    return shard.ok() ? std::move(*shard) : nullptr;
  }

  // Appends `event` as the shard's next record.
  void Append(ShardStore* shard, const AuditEvent& event) {
    const std::string payload = event.SerializeAsString();
    const uint64_t index = shard->Head().next_index;
    std::vector<SourceMessage> messages = {Msg("inc", static_cast<int64_t>(index), payload)};
    ASSERT_OK_AND_ASSIGN(storage::BatchResult result, shard->ApplyBatch(messages));
    ASSERT_EQ(result.messages[0].outcome, FoldOutcome::kApplied) << result.messages[0].reason;
    ASSERT_EQ(result.messages[0].index, index);
  }

  void AppendPrediction(ShardStore* shard) {
    PredictionSpec spec;
    spec.prediction_id = absl::StrCat("p", shard->Head().next_index);
    spec.subject_id = "c1";
    ASSERT_NO_FATAL_FAILURE(Append(shard, predlog::testing::MakePrediction(spec)));
  }

  TempDir dir_;
};

TEST_F(StateAtTest, CustomerRecordAsOfEachCutWithSnapshotsInBetween) {
  std::unique_ptr<ShardStore> shard = OpenShard(dir_.Sub("shard"));
  ASSERT_NE(shard, nullptr);
  AppendPrediction(shard.get());                                                               // 0
  Append(shard.get(), MakeEntityChange("customer", "c1", {{"limit", 1000}, {"segment", 1}}));  // 1
  AppendPrediction(shard.get());                                                               // 2
  Append(shard.get(), MakeEntityChange("customer", "c1", {{"limit", 1500}}));                  // 3
  ASSERT_THAT(shard->CreateSnapshot(), IsOk());                                                // @4
  AppendPrediction(shard.get());                                                               // 4
  Append(shard.get(), MakeEntityChange("customer", "c1", {}, {"segment"}));                    // 5
  Append(shard.get(), MakeEntityChange("customer", "c1", {}, {}, true));                       // 6
  AppendPrediction(shard.get());                                                               // 7
  ASSERT_THAT(shard->CreateSnapshot(), IsOk());                                                // @8
  Append(shard.get(), MakeEntityChange("customer", "c1", {{"limit", 300}}));                   // 8
  AppendPrediction(shard.get());                                                               // 9
  ASSERT_EQ(shard->Head().next_index, 10u);

  struct Want {
    uint64_t cut;
    bool exists;
    bool deleted;
    std::map<std::string, double> fields;
    uint64_t last_changed_index;
    uint64_t snapshot_index;
    uint64_t records_folded;
  };
  const std::vector<Want> wants = {
      {0, false, false, {}, 0, 0, 0},
      {1, false, false, {}, 0, 0, 1},
      {2, true, false, {{"limit", 1000}, {"segment", 1}}, 1, 0, 2},
      {4, true, false, {{"limit", 1500}, {"segment", 1}}, 3, 4, 0},
      {5, true, false, {{"limit", 1500}, {"segment", 1}}, 3, 4, 1},
      {6, true, false, {{"limit", 1500}}, 5, 4, 2},
      {7, false, true, {}, 6, 4, 3},
      {8, false, true, {}, 6, 8, 0},
      {9, true, false, {{"limit", 300}}, 8, 8, 1},
      {10, true, false, {{"limit", 300}}, 8, 8, 2},
  };
  const StateAt state_at;
  for (const Want& want : wants) {
    SCOPED_TRACE(absl::StrCat("cut ", want.cut));
    ASSERT_OK_AND_ASSIGN(EntityAt got, state_at.Entity(*shard, "customer", "c1", want.cut));
    EXPECT_EQ(got.exists, want.exists);
    EXPECT_EQ(got.state.deleted(), want.deleted);
    EXPECT_EQ(got.state.entity_id(), want.cut >= 2 ? "c1" : "");
    std::map<std::string, double> fields;
    for (const auto& [name, value] : got.state.fields()) fields[name] = value.double_value();
    EXPECT_EQ(fields, want.fields);
    EXPECT_EQ(got.state.last_changed_index(), want.last_changed_index);
    EXPECT_EQ(got.stats.snapshot_index, want.snapshot_index);
    EXPECT_EQ(got.stats.records_folded, want.records_folded);
  }
}

TEST_F(StateAtTest, DeploymentsAsOfEachCutFollowCanaryPromoteWithdraw) {
  std::unique_ptr<ShardStore> shard = OpenShard(dir_.Sub("registry"));
  ASSERT_NE(shard, nullptr);
  const std::string v1 = ArtifactHex("credit-limit", "v1");
  const std::string v2 = ArtifactHex("credit-limit", "v2");
  Append(shard.get(), MakeModelRegistered("credit-limit", "v1", v1));                // 0
  Append(shard.get(), MakeDeploy("limits", "credit-limit", "v1", 1.0, "launch"));    // 1
  Append(shard.get(), MakeModelRegistered("credit-limit", "v2", v2));                // 2
  Append(shard.get(), MakeDeploy("limits", "credit-limit", "v2", 0.1, "canary"));    // 3
  ASSERT_THAT(shard->CreateSnapshot(), IsOk());                                      // @4
  Append(shard.get(), MakeDeploy("limits", "credit-limit", "v2", 1.0, "promote"));   // 4
  Append(shard.get(), MakeDeploy("limits", "credit-limit", "v1", 0.0, "withdraw"));  // 5

  const StateAt state_at;
  auto fractions = [&](uint64_t cut) {
    std::map<std::string, std::pair<double, uint64_t>> out;  // name@version -> (fraction, index)
    auto got = state_at.Registry(*shard, cut);
    EXPECT_THAT(got, IsOk());
    if (!got.ok()) return out;
    for (const auto& [key, entry] : got->registry.deployments) {
      EXPECT_EQ(key.first, "limits");
      auto record = shard->Get(entry.index);
      EXPECT_THAT(record, IsOk());
      if (record.ok()) {
        EXPECT_EQ(entry.leaf, record->leaf) << key.second;
      }
      out[key.second] = {entry.body.traffic_fraction(), entry.index};
    }
    return out;
  };
  using F = std::map<std::string, std::pair<double, uint64_t>>;
  EXPECT_EQ(fractions(1), F());
  EXPECT_EQ(fractions(2), F({{"credit-limit@v1", {1.0, 1}}}));
  EXPECT_EQ(fractions(4), F({{"credit-limit@v1", {1.0, 1}}, {"credit-limit@v2", {0.1, 3}}}));
  EXPECT_EQ(fractions(5), F({{"credit-limit@v1", {1.0, 1}}, {"credit-limit@v2", {1.0, 4}}}));
  EXPECT_EQ(fractions(6), F({{"credit-limit@v1", {0.0, 5}}, {"credit-limit@v2", {1.0, 4}}}));

  ASSERT_OK_AND_ASSIGN(RegistryAt at4, state_at.Registry(*shard, 4));
  EXPECT_EQ(at4.stats.snapshot_index, 4u);
  EXPECT_EQ(at4.stats.records_folded, 0u);
  ASSERT_THAT(at4.registry.models, SizeIs(2));
  EXPECT_EQ(at4.registry.models.at({"credit-limit", "v2"}).body.model().artifact_sha256(), v2);
  EXPECT_EQ(at4.registry.models.at({"credit-limit", "v2"}).index, 2u);
}

// The snapshot cache must tell shards apart even when their names agree (the
// name defaults to the directory's name, e.g. two data dirs each holding a
// "predlog.events-0").
TEST_F(StateAtTest, ShardsWithTheSameNameDoNotShareCachedSnapshots) {
  TempDir other;
  std::unique_ptr<ShardStore> a = OpenShard(dir_.Sub("predlog.events-0"));
  std::unique_ptr<ShardStore> b = OpenShard(other.Sub("predlog.events-0"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(a->name(), b->name());
  Append(a.get(), MakeEntityChange("customer", "c1", {{"limit", 111}}));
  Append(b.get(), MakeEntityChange("customer", "c1", {{"limit", 222}}));
  ASSERT_THAT(a->CreateSnapshot(), IsOk());
  ASSERT_THAT(b->CreateSnapshot(), IsOk());

  const StateAt state_at;
  ASSERT_OK_AND_ASSIGN(EntityAt from_a, state_at.Entity(*a, "customer", "c1", 1));
  ASSERT_OK_AND_ASSIGN(EntityAt from_b, state_at.Entity(*b, "customer", "c1", 1));
  EXPECT_EQ(from_a.stats.snapshot_index, 1u);
  EXPECT_EQ(from_b.stats.snapshot_index, 1u);
  EXPECT_EQ(from_a.state.fields().at("limit").double_value(), 111);
  EXPECT_EQ(from_b.state.fields().at("limit").double_value(), 222);
}

}  // namespace
}  // namespace predlog::replay
