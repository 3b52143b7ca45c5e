#include "services/cli/registry_client.h"

#include <string>

namespace predlog::services {

grpc::Status UploadModel(predlog::v1::Registry::StubInterface* stub, grpc::ClientContext* context,
                         const predlog::v1::RegisterModelRequest& first, std::istream& artifact,
                         predlog::v1::RegisterModelResponse* response, size_t chunk_bytes) {
  std::unique_ptr<grpc::ClientWriterInterface<predlog::v1::RegisterModelRequest>> stream =
      stub->RegisterModel(context, response);
  // A failed Write means the server already answered; Finish says why.
  bool open = stream->Write(first);
  std::string buffer(chunk_bytes, '\0');
  predlog::v1::RegisterModelRequest chunk;
  while (open && artifact) {
    artifact.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = artifact.gcount();
    if (got <= 0) break;
    chunk.set_chunk(buffer.data(), static_cast<size_t>(got));
    open = stream->Write(chunk);
  }
  if (artifact.bad()) {
    context->TryCancel();
    stream->Finish().ok();
    return grpc::Status(grpc::StatusCode::CANCELLED, "reading the artifact failed");
  }
  if (open) stream->WritesDone();
  return stream->Finish();
}

}  // namespace predlog::services
