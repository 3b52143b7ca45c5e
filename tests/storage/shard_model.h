// A deterministic stream of source messages with duplicates, conflicts and
// garbage, and a simple in-memory model of what a shard must make of it. The
// randomized test and the crash test check the real ShardStore against it.
#ifndef PREDLOG_TESTS_STORAGE_SHARD_MODEL_H_
#define PREDLOG_TESTS_STORAGE_SHARD_MODEL_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "storage/shard_store.h"

namespace predlog::testing {

// The payload at `offset` of the stream `seed`: mostly new predictions, some
// repeats of earlier ids (same content), some conflicting repeats, some
// garbage and some invalid events. Same (seed, offset), same bytes.
std::string StreamPayload(uint64_t seed, int64_t offset);

// What a shard must contain after folding a prefix of a stream.
class ShardModel {
 public:
  struct Applied {
    int64_t offset;
    std::string payload;
  };
  struct Rejected {
    int64_t offset;
    storage::RejectKind kind;
  };

  // Folds one message (offsets strictly increasing) and returns its outcome.
  storage::FoldOutcome Apply(int64_t offset, const std::string& payload);

  const std::vector<Applied>& log() const { return log_; }
  const std::vector<Rejected>& rejected() const { return rejected_; }
  uint64_t duplicates() const { return duplicates_; }

 private:
  std::vector<Applied> log_;
  std::vector<Rejected> rejected_;
  // prediction_id -> deterministic serialization of its PredictionLogged.
  std::map<std::string, std::string> bodies_;
  uint64_t duplicates_ = 0;
};

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_STORAGE_SHARD_MODEL_H_
