#include "services/server/model_registry.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "replay/lineage.h"
#include "replay/replayer.h"
#include "services/kafka/kafka_config.h"
#include "storage/shard_store.h"
#include "storage/status_macros.h"

namespace predlog::services {
namespace {

using ::predlog::v1::LogReceipt;
using ::predlog::v1::RegistryReceipt;

}  // namespace

ModelRegistry::ModelRegistry(Producer* producer, Ingest* ingest, storage::ArtifactStore* artifacts,
                             ModelRegistryOptions options)
    : ingest_(ingest),
      artifacts_(artifacts),
      options_(std::move(options)),
      writer_(producer, ingest, options_.writer) {}

absl::Status ModelRegistry::NeedShards() const {
  if (ingest_ == nullptr) {
    return absl::FailedPreconditionError(
        "the registry needs the ingest role in this predlogd process (it reads the registry "
        "shard)");
  }
  return absl::OkStatus();
}

absl::Status ModelRegistry::Upload::Begin(const predlog::v1::RegisterModelRequest& first) {
  RETURN_IF_ERROR(registry_->NeedShards());
  if (!first.has_metadata()) {
    return absl::InvalidArgumentError(
        "metadata is missing: the first RegisterModel message must carry it, chunks follow");
  }
  metadata_ = first.metadata();
  claimed_actor_ = first.actor();
  const predlog::v1::ModelRef& model = metadata_.model();
  if (model.name().empty()) return absl::InvalidArgumentError("metadata.model.name is empty");
  if (model.version().empty()) return absl::InvalidArgumentError("metadata.model.version is empty");
  if (metadata_.framework().empty()) {
    return absl::InvalidArgumentError("metadata.framework is empty (e.g. \"xgboost\")");
  }
  if (!model.artifact_sha256().empty()) {
    expected_ = storage::DigestFromHex(model.artifact_sha256());
    if (!expected_.has_value() || storage::ToHex(*expected_) != model.artifact_sha256()) {
      return absl::InvalidArgumentError(
          "metadata.model.artifact_sha256 is not 64 lower-case hex characters");
    }
  }
  ASSIGN_OR_RETURN(writer_, registry_->artifacts_->NewWriter());
  return absl::OkStatus();
}

absl::Status ModelRegistry::Upload::Append(absl::string_view chunk) {
  if (writer_ == nullptr) return absl::FailedPreconditionError("upload not begun");
  if (writer_->bytes_written() + chunk.size() > registry_->options_.max_artifact_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the artifact exceeds the limit of ", registry_->options_.max_artifact_bytes, " bytes"));
  }
  return writer_->Append(chunk);
}

void ModelRegistry::Upload::Finish(
    std::function<void(absl::StatusOr<predlog::v1::RegisterModelResponse>)> done) {
  if (writer_ == nullptr) {
    done(absl::FailedPreconditionError("upload not begun"));
    return;
  }
  if (absl::Status ok = registry_->NeedShards(); !ok.ok()) {
    done(ok);
    return;
  }
  if (writer_->bytes_written() == 0) {
    done(absl::InvalidArgumentError("no artifact bytes were uploaded after the metadata"));
    return;
  }
  absl::StatusOr<storage::ArtifactInfo> stored = writer_->Commit(expected_);
  if (!stored.ok()) {
    done(absl::IsInvalidArgument(stored.status())
             ? absl::InvalidArgumentError(
                   absl::StrCat("metadata.model.artifact_sha256: ", stored.status().message()))
             : stored.status());
    return;
  }
  metadata_.mutable_model()->set_artifact_sha256(storage::ToHex(stored->digest));
  metadata_.set_artifact_size_bytes(stored->size_bytes);
  predlog::v1::AuditEvent event;
  EventWriter::StampEnvelope(actor_, claimed_actor_, &event);
  *event.mutable_model_registered() = metadata_;
  if (absl::Status valid = storage::ValidateEvent(event, registry_->options_.limits); !valid.ok()) {
    done(EventWriter::RenameFieldPath(valid, "model_registered", "metadata"));
    return;
  }
  predlog::v1::ModelRef model = metadata_.model();
  registry_->WriteEvent(
      event, model.name(), "metadata",
      [model, size = stored->size_bytes, done](absl::StatusOr<RegistryReceipt> receipt) {
        if (!receipt.ok()) {
          done(receipt.status());
          return;
        }
        predlog::v1::RegisterModelResponse response;
        *response.mutable_model() = model;
        response.set_artifact_size_bytes(size);
        *response.mutable_receipt() = std::move(*receipt);
        done(std::move(response));
      });
}

void ModelRegistry::Deploy(const predlog::v1::DeployModelRequest& request, absl::string_view actor,
                           std::function<void(absl::StatusOr<RegistryReceipt>)> done) {
  if (absl::Status ok = NeedShards(); !ok.ok()) {
    done(ok);
    return;
  }
  if (!request.has_deployment()) {
    done(absl::InvalidArgumentError("deployment is missing"));
    return;
  }
  predlog::v1::AuditEvent event;
  EventWriter::StampEnvelope(actor, request.actor(), &event);
  predlog::v1::ModelDeployed* deploy = event.mutable_model_deployed();
  *deploy = request.deployment();
  if (absl::Status valid = storage::ValidateEvent(event, options_.limits); !valid.ok()) {
    done(EventWriter::RenameFieldPath(valid, "model_deployed", "deployment"));
    return;
  }
  const predlog::v1::ModelRef& model = deploy->model();
  absl::StatusOr<predlog::v1::ModelRegistered> registered =
      ingest_->registry().GetModel(model.name(), model.version());
  if (absl::IsNotFound(registered.status())) {
    done(absl::FailedPreconditionError(absl::StrCat("deployment.model ", model.name(), "@",
                                                    model.version(),
                                                    " is not registered; register it first")));
    return;
  }
  if (!registered.ok()) {
    done(registered.status());
    return;
  }
  const std::string& digest = registered->model().artifact_sha256();
  if (model.artifact_sha256().empty()) {
    deploy->mutable_model()->set_artifact_sha256(digest);
  } else if (model.artifact_sha256() != digest) {
    done(absl::InvalidArgumentError(
        absl::StrCat("deployment.model.artifact_sha256 is ", model.artifact_sha256(), " but ",
                     model.name(), "@", model.version(), " is registered with ", digest)));
    return;
  }
  WriteEvent(event, deploy->route(), "deployment", std::move(done));
}

void ModelRegistry::WriteEvent(const predlog::v1::AuditEvent& event, absl::string_view key,
                               absl::string_view what,
                               std::function<void(absl::StatusOr<RegistryReceipt>)> done) {
  // Durable so that a Rerun or a deploy right after sees the registration.
  writer_.Write(kRegistryTopic, key, std::move(event), /*wait_durable=*/true, what,
                [done = std::move(done)](absl::StatusOr<LogReceipt> receipt) {
                  if (!receipt.ok()) {
                    done(receipt.status());
                    return;
                  }
                  if (receipt->outcome() == LogReceipt::CONFLICT) {
                    done(absl::AlreadyExistsError(receipt->reason()));
                    return;
                  }
                  if (receipt->outcome() == LogReceipt::REJECTED) {
                    // A lineage cycle depends on what is registered, not on
                    // the request alone: fix the registry (or the request's
                    // parents) first.
                    done(absl::StrContains(receipt->reason(), storage::kLineageCycleReason)
                             ? absl::FailedPreconditionError(receipt->reason())
                             : absl::InvalidArgumentError(receipt->reason()));
                    return;
                  }
                  RegistryReceipt out;
                  out.set_outcome(receipt->outcome());
                  *out.mutable_position() = receipt->position();
                  out.set_leaf_sha256(receipt->leaf_sha256());
                  out.set_reason(receipt->reason());
                  done(std::move(out));
                });
}

void ModelRegistry::RegisterDataset(const predlog::v1::RegisterDatasetRequest& request,
                                    absl::string_view actor,
                                    std::function<void(absl::StatusOr<RegistryReceipt>)> done) {
  if (absl::Status ok = NeedShards(); !ok.ok()) {
    done(ok);
    return;
  }
  if (!request.has_dataset()) {
    done(absl::InvalidArgumentError("dataset is missing"));
    return;
  }
  // The registry records content by digest: without one a duplicate could
  // not be told from a conflict.
  if (request.dataset().dataset().digest().empty()) {
    done(absl::InvalidArgumentError(
        "dataset.dataset.digest is empty (the lower-case hex SHA-256 of the content)"));
    return;
  }
  predlog::v1::AuditEvent event;
  EventWriter::StampEnvelope(actor, request.actor(), &event);
  *event.mutable_dataset_registered() = request.dataset();
  if (absl::Status valid = storage::ValidateEvent(event, options_.limits); !valid.ok()) {
    done(EventWriter::RenameFieldPath(valid, "dataset_registered", "dataset"));
    return;
  }
  const predlog::v1::DatasetRef& dataset = request.dataset().dataset();
  const std::string named = absl::StrCat(dataset.name(), "@", dataset.version());
  WriteEvent(event, dataset.name(), "dataset",
             [named, shard = ingest_->registry().name(),
              done = std::move(done)](absl::StatusOr<RegistryReceipt> receipt) {
               if (absl::IsAlreadyExists(receipt.status())) {
                 done(absl::AlreadyExistsError(absl::StrCat(
                     "dataset ", named, " is already registered with other content (shard ", shard,
                     ": ", receipt.status().message(),
                     "); a dataset version is write-once: register the new content as a new "
                     "version")));
                 return;
               }
               done(std::move(receipt));
             });
}

absl::StatusOr<predlog::v1::DatasetRecord> ModelRegistry::GetDataset(
    const predlog::v1::GetDatasetRequest& request) const {
  RETURN_IF_ERROR(NeedShards());
  if (request.name().empty()) return absl::InvalidArgumentError("name is empty");
  if (request.version().empty()) return absl::InvalidArgumentError("version is empty");
  const storage::ShardStore& shard = ingest_->registry();
  ASSIGN_OR_RETURN(storage::RegistryState registry, shard.GetRegistry());
  const auto it = registry.datasets.find({request.name(), request.version()});
  if (it == registry.datasets.end()) {
    return absl::NotFoundError(
        absl::StrCat("dataset ", request.name(), "@", request.version(), " is not registered"));
  }
  return replay::ToDatasetRecord(it->second, shard);
}

absl::StatusOr<predlog::v1::ModelRecord> ModelRegistry::GetModel(
    const predlog::v1::GetModelRequest& request) const {
  RETURN_IF_ERROR(NeedShards());
  if (request.name().empty()) return absl::InvalidArgumentError("name is empty");
  if (request.version().empty()) return absl::InvalidArgumentError("version is empty");
  ASSIGN_OR_RETURN(storage::RegistryState registry, ingest_->registry().GetRegistry());
  for (predlog::v1::ModelRecord& record :
       replay::ToModelRecords(registry, ingest_->registry().name())) {
    const predlog::v1::ModelRef& model = record.registration().model();
    if (model.name() == request.name() && model.version() == request.version()) return record;
  }
  return absl::NotFoundError(
      absl::StrCat("model ", request.name(), "@", request.version(), " is not registered"));
}

absl::StatusOr<predlog::v1::ListModelsResponse> ModelRegistry::ListModels(
    const predlog::v1::ListModelsRequest& request) const {
  RETURN_IF_ERROR(NeedShards());
  ASSIGN_OR_RETURN(storage::RegistryState registry, ingest_->registry().GetRegistry());
  predlog::v1::ListModelsResponse response;
  for (predlog::v1::ModelRecord& record :
       replay::ToModelRecords(registry, ingest_->registry().name())) {
    if (request.name().empty() || record.registration().model().name() == request.name()) {
      *response.add_models() = std::move(record);
    }
  }
  return response;
}

}  // namespace predlog::services
