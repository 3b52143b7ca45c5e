// The role table: which roles may call each method predlogd serves.
//
//   writer   serving code: logs predictions and customer-record changes.
//   support  answers a complaint: reads predictions, replays them, reads the
//            registry.
//   auditor  exports verifiable trails, checks them against the live shards,
//            reads shard status and the registry (lineage).
//   auditor  also has checkpoints signed and consistency proofs (the tree's
//            sizes and hashes, no event data).
//   admin    changes what serves: registers and deploys models, takes
//            backups; reads the registry and shard status and has
//            checkpoints signed.
//
// Every call that reads recorded data is marked Trail::kRecorded: it leaves an
// AccessRecorded in the access trail (who read what), which auditors read
// with ListAccess (itself recorded); so does a backup, a copy of everything.
// Writes are their own record; status, chain values, checkpoints and proofs
// hold no event data.
//
// The registry's reads (GetModel, ListModels, GetDataset) hold no customer data, so every
// role that works with models has them. Shard status (GetStatus) holds counts,
// offsets and chain heads, no event data: auditors and admins. gRPC health is
// open (load balancers probe it without credentials); reflection lists the
// schema, which any authenticated identity may read.
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "services/auth/auth.h"

namespace predlog::auth {
namespace {

constexpr RoleSet kWriter = {Role::kWriter};
constexpr RoleSet kSupport = {Role::kSupport};
constexpr RoleSet kAuditor = {Role::kAuditor};
constexpr RoleSet kAdmin = {Role::kAdmin};
constexpr RoleSet kRegistryReaders = {Role::kSupport, Role::kAuditor, Role::kAdmin};
// Provenance (lineage, impact) answers support's and auditors' questions.
constexpr RoleSet kProvenanceReaders = {Role::kSupport, Role::kAuditor};
constexpr RoleSet kStatusReaders = {Role::kAuditor, Role::kAdmin};
// A signed checkpoint holds a tree size and root, no event data.
constexpr RoleSet kCheckpointSigners = {Role::kAuditor, Role::kAdmin};

constexpr MethodAccess kTable[] = {
    // predlog.v1.PredictionLog (service.proto)
    {"/predlog.v1.PredictionLog/Log", Access::kRoles, kWriter},
    {"/predlog.v1.PredictionLog/LogStream", Access::kRoles, kWriter},
    {"/predlog.v1.PredictionLog/LogBatch", Access::kRoles, kWriter},
    {"/predlog.v1.PredictionLog/ChangeEntity", Access::kRoles, kWriter},
    {"/predlog.v1.PredictionLog/GetPrediction", Access::kRoles, kSupport, Trail::kRecorded},
    {"/predlog.v1.PredictionLog/ListPredictions", Access::kRoles, kSupport, Trail::kRecorded},
    // A customer's record as it changed: recorded customer data.
    {"/predlog.v1.PredictionLog/ListEntityChanges", Access::kRoles, kSupport, Trail::kRecorded},
    // predlog.v1.Registry (registry.proto)
    {"/predlog.v1.Registry/RegisterModel", Access::kRoles, kAdmin},
    {"/predlog.v1.Registry/DeployModel", Access::kRoles, kAdmin},
    {"/predlog.v1.Registry/GetModel", Access::kRoles, kRegistryReaders, Trail::kRecorded},
    {"/predlog.v1.Registry/ListModels", Access::kRoles, kRegistryReaders, Trail::kRecorded},
    {"/predlog.v1.Registry/RegisterDataset", Access::kRoles, kAdmin},
    {"/predlog.v1.Registry/GetDataset", Access::kRoles, kRegistryReaders, Trail::kRecorded},
    // predlog.v1.Replay (replay.proto)
    {"/predlog.v1.Replay/Rerun", Access::kRoles, kSupport, Trail::kRecorded},
    {"/predlog.v1.Replay/RerunTrace", Access::kRoles, kSupport, Trail::kRecorded},
    {"/predlog.v1.Replay/GetEntityAt", Access::kRoles, kSupport, Trail::kRecorded},
    {"/predlog.v1.Replay/GetRegistryAt", Access::kRoles, kSupport, Trail::kRecorded},
    {"/predlog.v1.Replay/GetLineage", Access::kRoles, kProvenanceReaders, Trail::kRecorded},
    {"/predlog.v1.Replay/GetImpact", Access::kRoles, kProvenanceReaders, Trail::kRecorded},
    // predlog.v1.Audit (audit.proto)
    {"/predlog.v1.Audit/ExportTrail", Access::kRoles, kAuditor, Trail::kRecorded},
    {"/predlog.v1.Audit/GetStatus", Access::kRoles, kStatusReaders},
    {"/predlog.v1.Audit/GetChainValues", Access::kRoles, kAuditor},
    {"/predlog.v1.Audit/SignCheckpoints", Access::kRoles, kCheckpointSigners},
    {"/predlog.v1.Audit/GetConsistencyProof", Access::kRoles, kAuditor},
    {"/predlog.v1.Audit/ListAccess", Access::kRoles, kAuditor, Trail::kRecorded},
    // predlog.v1.Admin (admin.proto)
    // A backup copies every shard (the access trail too): a read of everything.
    {"/predlog.v1.Admin/CreateBackup", Access::kRoles, kAdmin, Trail::kRecorded},
    // gRPC's own services.
    {"/grpc.health.v1.Health/Check", Access::kOpen, {}},
    {"/grpc.health.v1.Health/Watch", Access::kOpen, {}},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Access::kAnyIdentity, {}},
    {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Access::kAnyIdentity, {}},
};

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kWriter:
      return "writer";
    case Role::kSupport:
      return "support";
    case Role::kAuditor:
      return "auditor";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

std::string RoleSet::ToString() const {
  std::vector<absl::string_view> names;
  for (Role role : kAllRoles) {
    if (Has(role)) names.push_back(RoleName(role));
  }
  return names.empty() ? "no role" : absl::StrJoin(names, ",");
}

absl::StatusOr<RoleSet> ParseRoles(absl::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError(
        "no role given (want writer, support, auditor or admin, comma-separated)");
  }
  RoleSet roles;
  for (absl::string_view name : absl::StrSplit(text, ',')) {
    bool known = false;
    for (Role role : kAllRoles) {
      if (name != RoleName(role)) continue;
      if (roles.Has(role)) {
        return absl::InvalidArgumentError(absl::StrCat("the role ", name, " is listed twice"));
      }
      roles.Add(role);
      known = true;
    }
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat("unknown role \"", name,
                                                     "\" (want writer, support, auditor or admin, ",
                                                     "comma-separated without spaces)"));
    }
  }
  return roles;
}

absl::Span<const MethodAccess> RoleTable() { return kTable; }

const MethodAccess* FindMethodAccess(absl::string_view method) {
  static const auto* by_method = [] {
    auto* map = new absl::flat_hash_map<absl::string_view, const MethodAccess*>();
    for (const MethodAccess& entry : kTable) map->emplace(entry.method, &entry);
    return map;
  }();
  auto it = by_method->find(method);
  return it == by_method->end() ? nullptr : it->second;
}

}  // namespace predlog::auth
