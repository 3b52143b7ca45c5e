#include "services/kafka/kafka_config.h"

#include "absl/strings/str_cat.h"

namespace predlog::services {

int32_t PartitionForKey(absl::string_view key, int partitions) {
  return rd_kafka_msg_partitioner_murmur2(nullptr, key.data(), key.size(), partitions, nullptr,
                                          nullptr);
}

absl::StatusOr<rd_kafka_conf_t*> NewKafkaConf(const KafkaSettings& settings) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof(err)) !=
        RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return absl::InvalidArgumentError(
          absl::StrCat("kafka setting ", name, "=", value, ": ", err));
    }
  }
  return conf;
}

absl::StatusOr<rd_kafka_t*> NewKafkaClient(rd_kafka_type_t type, const KafkaSettings& settings) {
  absl::StatusOr<rd_kafka_conf_t*> conf = NewKafkaConf(settings);
  if (!conf.ok()) return conf.status();
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, *conf, err, sizeof(err));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return absl::InternalError(absl::StrCat("rd_kafka_new: ", err));
  }
  return rk;
}

}  // namespace predlog::services
