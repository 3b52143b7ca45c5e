// A shard's RocksDB opened directly, as an attacker with disk access (or an
// older build) would see it: for tests that tamper with stored bytes.
#ifndef PREDLOG_TESTS_TESTING_RAW_SHARD_DB_H_
#define PREDLOG_TESTS_TESTING_RAW_SHARD_DB_H_

#include <cstdint>
#include <string>
#include <vector>

#include "rocksdb/db.h"
#include "storage/key_codec.h"
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

// Rewrites a closed shard as an older build wrote it: drops the column
// families `dropped` (the indexes later formats added) and writes `format`
// into meta. The next writable open upgrades it; a read-only open refuses
// what it lacks.
inline void DowngradeShard(const std::string& shard_dir, uint32_t format,
                           const std::vector<std::string>& dropped) {
  for (const std::string& cf : dropped) {
    EditRawShardDb(shard_dir, cf, [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* index) {
      PREDLOG_CHECK(db->DropColumnFamily(index).ok());
    });
  }
  EditRawShardDb(shard_dir, "meta", [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta) {
    std::string v;
    storage::AppendU32(&v, format);
    PREDLOG_CHECK(db->Put(rocksdb::WriteOptions(), meta, "format", v).ok());
  });
}

// The format a closed shard's meta records.
inline uint32_t ShardFormat(const std::string& shard_dir) {
  uint32_t format = 0;
  EditRawShardDb(shard_dir, "meta", [&](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta) {
    std::string v;
    PREDLOG_CHECK(db->Get(rocksdb::ReadOptions(), meta, "format", &v).ok());
    absl::string_view in = v;
    PREDLOG_CHECK(storage::ReadU32(&in, &format));
  });
  return format;
}

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_TESTING_RAW_SHARD_DB_H_
