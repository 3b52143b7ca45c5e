#include "storage/shard_set.h"

#include "absl/strings/str_cat.h"
#include "storage/status_macros.h"

namespace predlog::storage {

absl::Status ShardSet::CheckFolded(const std::vector<int>& partitions,
                                   absl::string_view what) const {
  return check_folded ? check_folded(partitions, what) : absl::OkStatus();
}

absl::StatusOr<std::vector<int>> ShardSet::PartitionsOf(absl::string_view key,
                                                        absl::string_view what) const {
  const int home = partition_of(key);
  RETURN_IF_ERROR(CheckFolded({home}, what));
  std::vector<int> partitions;
  for (int p = 0; p < static_cast<int>(events.size()); ++p) {
    if (p == home) {
      partitions.push_back(p);
    } else if (events[p]->Counters().misrouted > 0) {
      // Never a partial answer: misrouted events there are folded elsewhere.
      RETURN_IF_ERROR(
          CheckFolded({p}, absl::StrCat(what, " (its shard ", p, " holds misrouted events)")));
      partitions.push_back(p);
    }
  }
  return partitions;
}

absl::StatusOr<LocatedRecord> FindPrediction(const ShardSet& shards,
                                             absl::string_view prediction_id,
                                             absl::string_view subject_id) {
  if (prediction_id.empty()) return absl::InvalidArgumentError("prediction_id is empty");
  std::vector<int> partitions;
  if (!subject_id.empty()) {
    ASSIGN_OR_RETURN(partitions,
                     shards.PartitionsOf(subject_id, absl::StrCat("subject ", subject_id)));
  } else {
    for (int p = 0; p < static_cast<int>(shards.events.size()); ++p) partitions.push_back(p);
  }
  absl::Status lost = absl::OkStatus();
  for (int p : partitions) {
    // A shard that lost acknowledged records serves nothing until the loss
    // is accepted; the id may be in it, so not finding it elsewhere says so.
    if (absl::Status intact = shards.events[p]->CheckNotLost(); !intact.ok()) {
      lost = intact;
      continue;
    }
    absl::StatusOr<StoredRecord> record = shards.events[p]->GetByPredictionId(prediction_id);
    if (absl::IsNotFound(record.status())) continue;
    RETURN_IF_ERROR(record.status());
    return LocatedRecord{p, shards.events[p], std::move(*record)};
  }
  if (!lost.ok()) {
    return absl::DataLossError(
        absl::StrCat("prediction_id ", prediction_id, " may be in a shard that ", lost.message()));
  }
  // Not here; it may be in a shard another instance folds.
  std::vector<int> all(shards.events.size());
  for (size_t p = 0; p < all.size(); ++p) all[p] = static_cast<int>(p);
  RETURN_IF_ERROR(shards.CheckFolded(all, absl::StrCat("prediction_id ", prediction_id,
                                                       " is not in this instance's shards; "
                                                       "searching the rest")));
  return absl::NotFoundError(absl::StrCat("prediction_id ", prediction_id, " is not recorded"));
}

}  // namespace predlog::storage
