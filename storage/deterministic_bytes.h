// The one deterministic serialization of a protobuf message (map entries in
// key order): what "same content" means when the shard compares a retry with
// its original, and what the export's reference JSON printer reads.
#ifndef PREDLOG_STORAGE_DETERMINISTIC_BYTES_H_
#define PREDLOG_STORAGE_DETERMINISTIC_BYTES_H_

#include <string>

#include "google/protobuf/message.h"

namespace predlog::storage {

std::string DeterministicBytes(const google::protobuf::Message& message);

}  // namespace predlog::storage

#endif  // PREDLOG_STORAGE_DETERMINISTIC_BYTES_H_
