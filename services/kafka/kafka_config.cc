#include "services/kafka/kafka_config.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace predlog::services {
namespace {

// What predlog's producer (producer.cc), consumers (ingest.cc) and metadata
// client (DiscoverIncarnation) set, librdkafka's aliases included.
constexpr absl::string_view kFromFlags = "predlogd takes it from --kafka_brokers";
constexpr absl::string_view kIdempotent =
    "an acknowledged event must be in Kafka exactly once: predlog's producer is idempotent with "
    "acks=all";
constexpr absl::string_view kSized =
    "predlog sizes it to its 1 MiB event limit (kMaxMessageBytes), on producer and consumer alike";
constexpr absl::string_view kShardsAreTheTruth =
    "the shards say what was folded: predlog stores and commits offsets itself";
constexpr absl::string_view kTuned = "predlog tunes it itself (services/kafka/)";
constexpr PredlogKafkaProperty kPredlogProperties[] = {
    {"bootstrap.servers", kFromFlags},
    {"metadata.broker.list", kFromFlags},
    {"enable.idempotence", kIdempotent},
    {"acks", kIdempotent},
    {"request.required.acks", kIdempotent},
    {"transactional.id", "predlog's producer is idempotent, not transactional"},
    {"partitioner",
     "a subject's events must land where Java's murmur2 partitioner puts them "
     "(murmur2_random): reads look for them there"},
    {"message.max.bytes", kSized},
    {"max.partition.fetch.bytes", kSized},
    {"auto.offset.reset",
     "an offset Kafka no longer has must become a recorded gap (error), never a silent skip"},
    {"enable.auto.commit", kShardsAreTheTruth},
    {"enable.auto.offset.store", kShardsAreTheTruth},
    {"auto.commit.interval.ms", kShardsAreTheTruth},
    {"group.id", "predlogd takes it from --ingest_group"},
    {"partition.assignment.strategy",
     "a rebalance must move only the partitions that change owner (cooperative-sticky)"},
    {"isolation.level", "the ingest must fold committed messages only (read_committed)"},
    {"enable.partition.eof", kTuned},
    {"linger.ms", kTuned},
    {"queue.buffering.max.ms", kTuned},
    {"message.timeout.ms", kTuned},
    {"delivery.timeout.ms", kTuned},
    {"queue.buffering.max.messages", kTuned},
    {"socket.nagle.disable", kTuned},
    {"fetch.error.backoff.ms", kTuned},
    {"log_level", kTuned},
};

// Whether a property's value is a secret, never to be shown.
bool IsSecret(absl::string_view name) {
  return absl::StrContains(name, "password") || absl::StrContains(name, "secret") ||
         absl::StrContains(name, "key") || absl::StrContains(name, "jaas");
}

std::string Shown(absl::string_view name, absl::string_view value) {
  return IsSecret(name) ? "<hidden>" : std::string(value);
}

}  // namespace

absl::Span<const PredlogKafkaProperty> PredlogKafkaProperties() { return kPredlogProperties; }

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
          absl::StrCat("kafka setting ", name, "=", Shown(name, value), ": ",
                       IsSecret(name) ? "librdkafka refused the value" : err));
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

absl::StatusOr<KafkaSettings> ParseKafkaProperties(absl::string_view text, absl::string_view file) {
  KafkaSettings settings;
  std::vector<int> lines;  // settings[i] is on line lines[i]
  rd_kafka_conf_t* scratch = rd_kafka_conf_new();
  int line_number = 0;
  absl::Status status;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    absl::ConsumeSuffix(&line, "\r");
    line = absl::StripLeadingAsciiWhitespace(line);
    if (line.empty() || line.front() == '#' || line.front() == '!') continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("kafka properties file ", file, " line ", line_number, ": ", why));
    };
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      status = bad("want name=value");
      break;
    }
    const std::string name(absl::StripTrailingAsciiWhitespace(line.substr(0, eq)));
    const std::string value(absl::StripAsciiWhitespace(line.substr(eq + 1)));
    if (name.empty()) {
      status = bad("the property name before '=' is empty");
      break;
    }
    bool refused = false;
    for (const PredlogKafkaProperty& own : kPredlogProperties) {
      if (name == own.name) {
        status = bad(absl::StrCat(name, " is set by predlog itself: ", own.why));
        refused = true;
        break;
      }
    }
    if (refused) break;
    for (size_t i = 0; i < settings.size(); ++i) {
      if (settings[i].first == name) {
        status = bad(absl::StrCat(name, " is already set on line ", lines[i]));
        refused = true;
        break;
      }
    }
    if (refused) break;
    char err[512];
    if (rd_kafka_conf_set(scratch, name.c_str(), value.c_str(), err, sizeof(err)) !=
        RD_KAFKA_CONF_OK) {
      status = bad(absl::StrCat(name, ": ", IsSecret(name) ? "librdkafka refused the value" : err));
      break;
    }
    settings.emplace_back(name, value);
    lines.push_back(line_number);
  }
  rd_kafka_conf_destroy(scratch);
  if (!status.ok()) return status;
  return settings;
}

absl::StatusOr<KafkaSettings> LoadKafkaProperties(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("kafka properties file ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseKafkaProperties(text.str(), path);
}

}  // namespace predlog::services
