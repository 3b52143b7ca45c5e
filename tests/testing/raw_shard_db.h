// A shard's RocksDB opened directly, as an attacker with disk access (or an
// older build) would see it: for tests that tamper with stored bytes.
#ifndef PREDLOG_TESTS_TESTING_RAW_SHARD_DB_H_
#define PREDLOG_TESTS_TESTING_RAW_SHARD_DB_H_

#include <string>
#include <vector>

#include "rocksdb/db.h"
#include "storage/logging.h"

namespace predlog::testing {

// Opens `<shard_dir>/db` with every column family, calls edit(db, cf) with
// the one named `cf_name`, and closes it. The shard must not be open.
// Aborts the test binary (PREDLOG_CHECK) if RocksDB refuses.
template <typename Edit>
void EditRawShardDb(const std::string& shard_dir, const std::string& cf_name, Edit edit) {
  const std::string path = shard_dir + "/db";
  std::vector<std::string> names;
  PREDLOG_CHECK(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok()) << path;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  PREDLOG_CHECK(rocksdb::DB::Open(rocksdb::DBOptions(), path, descriptors, &handles, &db).ok())
      << path;
  rocksdb::ColumnFamilyHandle* cf = nullptr;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == cf_name) cf = handles[i];
  }
  PREDLOG_CHECK(cf != nullptr) << "no column family " << cf_name << " in " << path;
  edit(db, cf);
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
}

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_TESTING_RAW_SHARD_DB_H_
