// The role table against the schema: every method of every service in
// proto/predlog/v1 must have an entry (a merge that adds an RPC fails here,
// naming it, until it is given its roles), every predlog entry must name a
// method that exists, and the roles are the ones the issue sets out.
#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "services/auth/auth.h"

namespace predlog::auth {
namespace {

using ::google::protobuf::DescriptorPool;
using ::google::protobuf::FileDescriptor;

// "predlog/v1/audit.proto", ... for every .proto file in the source tree.
std::vector<std::string> ProtoFiles() {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(PREDLOG_PROTO_DIR)) {
    if (entry.path().extension() == ".proto") {
      files.push_back("predlog/v1/" + entry.path().filename().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Every method of every service of proto/predlog/v1, by gRPC path, with the
// file that declares it.
std::map<std::string, std::string> SchemaMethods() {
  std::map<std::string, std::string> methods;
  for (const std::string& name : ProtoFiles()) {
    const FileDescriptor* file = DescriptorPool::generated_pool()->FindFileByName(name);
    EXPECT_NE(file, nullptr) << name
                             << " has no generated descriptor: add it to PREDLOG_PROTOS in "
                                "proto/CMakeLists.txt";
    if (file == nullptr) continue;
    for (int s = 0; s < file->service_count(); ++s) {
      const auto* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        methods[absl::StrCat("/", service->full_name(), "/", service->method(m)->name())] = name;
      }
    }
  }
  return methods;
}

TEST(RoleTableTest, EveryMethodOfEveryServiceHasAnEntry) {
  const std::map<std::string, std::string> methods = SchemaMethods();
  // The four services of today at least: the walk really found the schema.
  ASSERT_GE(methods.size(), 17u);
  for (const auto& [method, file] : methods) {
    const MethodAccess* access = FindMethodAccess(method);
    EXPECT_NE(access, nullptr)
        << method << " (" << file
        << ") has no entry in the role table (services/auth/role_table.cc): nobody may call it "
           "until it is given the roles that may";
    if (access == nullptr) continue;
    // predlog's own methods go by role, never open to everyone.
    EXPECT_EQ(access->access, Access::kRoles) << method;
    EXPECT_FALSE(access->roles.empty()) << method;
  }
}

TEST(RoleTableTest, EveryPredlogEntryNamesAMethodOfTheSchema) {
  const std::map<std::string, std::string> methods = SchemaMethods();
  for (const MethodAccess& entry : RoleTable()) {
    if (!absl::StartsWith(entry.method, "/predlog.")) continue;
    EXPECT_EQ(methods.count(std::string(entry.method)), 1u)
        << entry.method << " is in the role table but no service of proto/predlog/v1 has it";
  }
}

TEST(RoleTableTest, RolesAreTheIssuesTable) {
  const RoleSet writer = {Role::kWriter}, support = {Role::kSupport}, auditor = {Role::kAuditor},
                admin = {Role::kAdmin};
  const std::map<std::string, RoleSet> want = {
      {"/predlog.v1.PredictionLog/Log", writer},
      {"/predlog.v1.PredictionLog/LogStream", writer},
      {"/predlog.v1.PredictionLog/LogBatch", writer},
      {"/predlog.v1.PredictionLog/ChangeEntity", writer},
      {"/predlog.v1.PredictionLog/GetPrediction", support},
      {"/predlog.v1.PredictionLog/ListPredictions", support},
      {"/predlog.v1.PredictionLog/ListEntityChanges", support},
      {"/predlog.v1.Replay/Rerun", support},
      {"/predlog.v1.Replay/RerunTrace", support},
      {"/predlog.v1.Replay/GetEntityAt", support},
      {"/predlog.v1.Replay/GetRegistryAt", support},
      {"/predlog.v1.Registry/GetModel", {Role::kSupport, Role::kAuditor, Role::kAdmin}},
      {"/predlog.v1.Registry/ListModels", {Role::kSupport, Role::kAuditor, Role::kAdmin}},
      {"/predlog.v1.Registry/RegisterModel", admin},
      {"/predlog.v1.Registry/DeployModel", admin},
      {"/predlog.v1.Registry/GetDataset", {Role::kSupport, Role::kAuditor, Role::kAdmin}},
      {"/predlog.v1.Registry/RegisterDataset", admin},
      {"/predlog.v1.Audit/ExportTrail", auditor},
      {"/predlog.v1.Audit/GetStatus", {Role::kAuditor, Role::kAdmin}},
      {"/predlog.v1.Audit/GetChainValues", auditor},
  };
  for (const auto& [method, roles] : want) {
    const MethodAccess* access = FindMethodAccess(method);
    ASSERT_NE(access, nullptr) << method;
    EXPECT_EQ(access->roles.ToString(), roles.ToString()) << method;
  }
}

TEST(RoleTableTest, HealthIsOpenAndReflectionNeedsAnIdentity) {
  for (const char* method : {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"}) {
    const MethodAccess* access = FindMethodAccess(method);
    ASSERT_NE(access, nullptr) << method;
    EXPECT_EQ(access->access, Access::kOpen) << method;
  }
  const MethodAccess* reflection =
      FindMethodAccess("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo");
  ASSERT_NE(reflection, nullptr);
  EXPECT_EQ(reflection->access, Access::kAnyIdentity);
}

TEST(RoleTableTest, AMethodWithoutAnEntryIsNotFound) {
  EXPECT_EQ(FindMethodAccess("/predlog.v1.Audit/DropEverything"), nullptr);
  EXPECT_EQ(FindMethodAccess(""), nullptr);
  // Paths match exactly: no prefix or case games.
  EXPECT_EQ(FindMethodAccess("/predlog.v1.Audit/ExportTrailX"), nullptr);
  EXPECT_EQ(FindMethodAccess("/predlog.v1.audit/ExportTrail"), nullptr);
}

}  // namespace
}  // namespace predlog::auth
