// The logic behind predlog.v1.Registry, without gRPC. A registration stores
// the artifact first (content-addressed, fsync'd) and only then writes the
// ModelRegistered event, so a recorded model always has its bytes; deploys
// must name a registered model; datasets are registered by digest (their
// bytes stay where they are). All are events on predlog.registry (key:
// model name / route) folded into the registry shard, which reads come from.
//
// Thread-safe. Borrows the producer, the ingest (null: no reads, no durable
// writes) and the artifact store, which must outlive it.
#ifndef PREDLOG_SERVICES_SERVER_MODEL_REGISTRY_H_
#define PREDLOG_SERVICES_SERVER_MODEL_REGISTRY_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "predlog/v1/registry.pb.h"
#include "services/kafka/ingest.h"
#include "services/kafka/producer.h"
#include "services/server/event_writer.h"
#include "storage/artifact_store.h"
#include "storage/event_validation.h"

namespace predlog::services {

struct ModelRegistryOptions {
  EventWriterOptions writer;
  storage::EventLimits limits;
  // Largest artifact accepted.
  uint64_t max_artifact_bytes = uint64_t{4} << 30;
};

class ModelRegistry {
 public:
  ModelRegistry(Producer* producer, Ingest* ingest, storage::ArtifactStore* artifacts,
                ModelRegistryOptions options);

  // Writes take `actor`, the name of the identity that authenticated the call
  // ("" when predlogd knows nobody): it is recorded as AuditEvent.actor, the
  // request's own actor field as AuditEvent.claimed_actor.
  //
  // One RegisterModel call: Begin with the first message, Append each chunk,
  // then Finish. Not thread-safe (one per call). Abandoning an upload
  // removes its partial artifact.
  class Upload {
   public:
    // INVALID_ARGUMENT naming the field when the first message has no
    // usable metadata.
    absl::Status Begin(const predlog::v1::RegisterModelRequest& first);
    absl::Status Append(absl::string_view chunk);
    // Stores the artifact and records the model; `done` runs exactly once.
    // ALREADY_EXISTS when name@version is registered with other content;
    // FAILED_PRECONDITION naming the path when its training datasets lead
    // back to it through registered lineage (storage::kLineageCycleReason;
    // the artifact stays stored, content-addressed, the model unregistered).
    void Finish(std::function<void(absl::StatusOr<predlog::v1::RegisterModelResponse>)> done);

   private:
    friend class ModelRegistry;
    Upload(ModelRegistry* registry, absl::string_view actor) : registry_(registry), actor_(actor) {}
    ModelRegistry* const registry_;
    const std::string actor_;
    predlog::v1::ModelRegistered metadata_;
    std::string claimed_actor_;
    std::optional<storage::Digest> expected_;
    std::unique_ptr<storage::ArtifactWriter> writer_;
  };
  std::unique_ptr<Upload> StartUpload(absl::string_view actor) {
    return std::unique_ptr<Upload>(new Upload(this, actor));
  }

  // FAILED_PRECONDITION when the model is not registered; INVALID_ARGUMENT
  // names the field.
  void Deploy(const predlog::v1::DeployModelRequest& request, absl::string_view actor,
              std::function<void(absl::StatusOr<predlog::v1::RegistryReceipt>)> done);

  // Writes a DatasetRegistered (key: dataset name) and waits for its fold.
  // INVALID_ARGUMENT names the field (dataset.name, dataset.version and
  // dataset.digest are required); the same content again is OK with outcome
  // DUPLICATE and the earlier record's position; other content for the same
  // name@version is ALREADY_EXISTS naming the earlier record. Parents need
  // not be registered; a registration whose parents, followed upstream
  // through registered datasets and models, lead back to it would close a
  // lineage cycle: FAILED_PRECONDITION naming the path, nothing registered.
  void RegisterDataset(const predlog::v1::RegisterDatasetRequest& request, absl::string_view actor,
                       std::function<void(absl::StatusOr<predlog::v1::RegistryReceipt>)> done);
  // The registration with its record's position, leaf and envelope (who
  // registered it, when); NOT_FOUND naming name@version; INVALID_ARGUMENT
  // for an empty name or version. Blocks on RocksDB reads.
  absl::StatusOr<predlog::v1::DatasetRecord> GetDataset(
      const predlog::v1::GetDatasetRequest& request) const;

  absl::StatusOr<predlog::v1::ModelRecord> GetModel(
      const predlog::v1::GetModelRequest& request) const;
  absl::StatusOr<predlog::v1::ListModelsResponse> ListModels(
      const predlog::v1::ListModelsRequest& request) const;

 private:
  // Writes a registry event (durably when this process folds it) and turns
  // the receipt into a RegistryReceipt; CONFLICT becomes ALREADY_EXISTS,
  // REJECTED FAILED_PRECONDITION for a lineage cycle, else INVALID_ARGUMENT.
  void WriteEvent(const predlog::v1::AuditEvent& event, absl::string_view key,
                  absl::string_view what,
                  std::function<void(absl::StatusOr<predlog::v1::RegistryReceipt>)> done);
  absl::Status NeedShards() const;

  Ingest* const ingest_;
  storage::ArtifactStore* const artifacts_;
  const ModelRegistryOptions options_;
  EventWriter writer_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_SERVER_MODEL_REGISTRY_H_
