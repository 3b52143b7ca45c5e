// --kafka_properties: the file's grammar, the properties predlog refuses
// because it sets them itself, and proof that the file's settings reach every
// client predlogd creates against a cluster (producer, consumers, metadata).
#include <librdkafka/rdkafka.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/kafka/embedded_broker.h"
#include "services/kafka/ingest.h"
#include "services/kafka/kafka_config.h"
#include "services/kafka/producer.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

// The value librdkafka holds for `name` in `conf`.
std::string ConfGet(rd_kafka_conf_t* conf, const char* name) {
  char value[512];
  size_t size = sizeof(value);
  if (rd_kafka_conf_get(conf, name, value, &size) != RD_KAFKA_CONF_OK) return "<unset>";
  return value;
}

TEST(KafkaPropertiesTest, ParsesPropertiesAndTheyReachLibrdkafka) {
  const std::string text =
      "# SASL_SSL with SCRAM\n"
      "security.protocol=SASL_SSL\r\n"
      "  sasl.mechanism = SCRAM-SHA-512\n"
      "! a Java-style comment\n"
      "\n"
      "sasl.username=predlog-gateway\n"
      "sasl.password= p#ss=word \n"
      "client.id=predlogd\n";
  ASSERT_OK_AND_ASSIGN(KafkaSettings settings, ParseKafkaProperties(text, "client.properties"));
  EXPECT_THAT(
      settings,
      ElementsAre(Pair("security.protocol", "SASL_SSL"), Pair("sasl.mechanism", "SCRAM-SHA-512"),
                  Pair("sasl.username", "predlog-gateway"), Pair("sasl.password", "p#ss=word"),
                  Pair("client.id", "predlogd")));
  ASSERT_OK_AND_ASSIGN(rd_kafka_conf_t * conf, NewKafkaConf(settings));
  EXPECT_EQ(ConfGet(conf, "security.protocol"), "sasl_ssl");
  EXPECT_EQ(ConfGet(conf, "sasl.mechanisms"), "SCRAM-SHA-512");
  EXPECT_EQ(ConfGet(conf, "sasl.username"), "predlog-gateway");
  EXPECT_EQ(ConfGet(conf, "client.id"), "predlogd");
  rd_kafka_conf_destroy(conf);
}

TEST(KafkaPropertiesTest, WhatPredlogSetsForCorrectnessIsRefusedNamingPropertyAndLine) {
  for (const char* name : {"enable.idempotence", "acks", "auto.offset.reset", "enable.auto.commit",
                           "isolation.level", "partitioner", "bootstrap.servers", "group.id"}) {
    const std::string text = absl::StrCat("security.protocol=SSL\n\n", name, "=whatever\n");
    EXPECT_THAT(ParseKafkaProperties(text, "p.properties"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("kafka properties file p.properties line 3: "),
                               HasSubstr(absl::StrCat(name, " is set by predlog itself: ")))))
        << name;
  }
  // Every property on the list, with its reason.
  for (const PredlogKafkaProperty& own : PredlogKafkaProperties()) {
    EXPECT_THAT(ParseKafkaProperties(absl::StrCat(own.name, "=1\n"), "p"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(own.why)))
        << own.name;
  }
}

TEST(KafkaPropertiesTest, BadLinesAreRefusedNamingTheLine) {
  const struct {
    std::string text;
    std::string why;
  } cases[] = {
      {"security.protocol SSL\n", "line 1: want name=value"},
      {"# c\n=SSL\n", "line 2: the property name before '=' is empty"},
      {"sasl.passwrd=x\n", "line 1: sasl.passwrd: No such configuration property"},
      {"security.protocol=bogus\n", "line 1: security.protocol: Invalid value"},
      {"client.id=a\nclient.id=b\n", "line 2: client.id is already set on line 1"},
  };
  for (const auto& c : cases) {
    EXPECT_THAT(ParseKafkaProperties(c.text, "p"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("kafka properties file p "), HasSubstr(c.why))))
        << c.text;
  }
}

TEST(KafkaPropertiesTest, SecretValuesAreNeverShownInErrors) {
  // librdkafka refuses the setting (no such property): the message names it
  // but hides the value, which could be a real password mistyped.
  EXPECT_THAT(ParseKafkaProperties("sasl.passwordd=hunter2\n", "p"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("line 1: sasl.passwordd: librdkafka refused the value"),
                             Not(HasSubstr("hunter2")))));
  EXPECT_THAT(NewKafkaConf({{"client.id", "a"}, {"sasl.passwordd", "hunter2"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("sasl.passwordd=<hidden>"), Not(HasSubstr("hunter2")))));
  // Other values are shown, to say what was wrong.
  EXPECT_THAT(NewKafkaConf({{"security.protocol", "bogus"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("security.protocol=bogus")));
}

TEST(KafkaPropertiesTest, LoadNamesAFileItCannotRead) {
  TempDir dir;
  EXPECT_THAT(
      LoadKafkaProperties(dir.Sub("missing.properties")),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(dir.Sub("missing.properties"))));
}

// Settings whose effect shows: TLS with a CA file that does not exist makes
// librdkafka refuse to create the client. Each client predlogd creates
// against a cluster fails so with the file's settings and starts without.
TEST(KafkaPropertiesTest, TheFilesSettingsReachEveryClientPredlogCreates) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EmbeddedBroker> broker, EmbeddedBroker::Start({2}));
  const std::string address = broker->bootstrap_servers();
  ASSERT_OK_AND_ASSIGN(KafkaSettings tls,
                       ParseKafkaProperties(absl::StrCat("security.protocol=SSL\n"
                                                         "ssl.ca.location=",
                                                         dir.Sub("no-such-ca.pem"), "\n"),
                                            "p"));
  // The metadata client (DiscoverIncarnation).
  EXPECT_THAT(DiscoverIncarnation(address, absl::Seconds(10), tls),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("ssl.ca.location")));
  ASSERT_OK_AND_ASSIGN(const std::string incarnation,
                       DiscoverIncarnation(address, absl::Seconds(10)));
  EXPECT_EQ(incarnation, broker->incarnation());

  // The producer.
  ProducerOptions producer_options;
  producer_options.bootstrap_servers = address;
  producer_options.client_properties = tls;
  EXPECT_THAT(Producer::Open(producer_options),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("ssl.ca.location")));
  producer_options.client_properties.clear();
  EXPECT_OK(Producer::Open(producer_options));

  // The ingest's consumers: without a group, and in a group (which adds the
  // registry's own consumer).
  for (const std::string group : {"", "predlog-ingest"}) {
    SCOPED_TRACE(group);
    IngestOptions ingest_options;
    ingest_options.data_dir = dir.Sub("ingest" + group);
    ingest_options.bootstrap_servers = address;
    ingest_options.incarnation = incarnation;
    ingest_options.partitions = 2;
    ingest_options.group_id = group;
    ingest_options.client_properties = tls;
    EXPECT_THAT(Ingest::Start(ingest_options),
                StatusIs(absl::StatusCode::kInternal, HasSubstr("ssl.ca.location")));
    ingest_options.client_properties.clear();
    EXPECT_OK(Ingest::Start(ingest_options));
  }
}

}  // namespace
}  // namespace predlog::services
