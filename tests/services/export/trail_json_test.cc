// The fast TrailLine emitter against protobuf's own JSON printer, on
// randomized events of every body type.
#include "services/export/trail_json.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/stubs/strutil.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "predlog/v1/audit.pb.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"

namespace predlog::services {
namespace {

using ::predlog::v1::AuditEvent;

class RandomEvents {
 public:
  explicit RandomEvents(uint64_t seed) : rng_(seed) {}

  AuditEvent Next() {
    AuditEvent e;
    MaybeString(e.mutable_event_id());
    if (Chance(0.8)) Time(e.mutable_recorded_at());
    MaybeString(e.mutable_actor());
    if (Chance(0.5)) e.set_schema_version(Int(0, 3));
    MaybeString(e.mutable_claimed_actor());
    switch (Int(0, 7)) {
      case 0:
        break;  // no body
      case 1:
      case 2:
        Prediction(e.mutable_prediction_logged());
        break;
      case 3: {
        auto* m = e.mutable_model_registered();
        if (Chance(0.7)) Model(m->mutable_model());
        MaybeString(m->mutable_framework());
        if (Chance(0.5)) m->set_artifact_size_bytes(Chance(0.5) ? rng_() : Int(0, 1000));
        if (Chance(0.7)) {
          auto* p = m->mutable_provenance();
          for (int i = Int(0, 2); i > 0; --i) Dataset(p->add_datasets());
          MaybeString(p->mutable_code_commit());
          StringMap(p->mutable_hyperparameters());
          StringMap(p->mutable_library_versions());
          if (Chance(0.5)) Pipeline(p->mutable_pipeline());
          for (int i = Int(0, 3); i > 0; --i) *p->add_feature_names() = Str();
        }
        MaybeString(m->mutable_description());
        for (int i = Int(0, 2); i > 0; --i) {
          auto* metric = m->add_metrics();
          MaybeString(metric->mutable_name());
          if (Chance(0.8)) metric->set_value(Double());
          if (Chance(0.5)) Dataset(metric->mutable_dataset());
        }
        if (Chance(0.5)) Time(m->mutable_training_started_at());
        if (Chance(0.5)) m->set_training_duration_ms(Int64());
        MaybeString(m->mutable_external_run_id());
        break;
      }
      case 4: {
        auto* d = e.mutable_model_deployed();
        MaybeString(d->mutable_route());
        if (Chance(0.7)) Model(d->mutable_model());
        if (Chance(0.7)) d->set_traffic_fraction(Double());
        MaybeString(d->mutable_reason());
        break;
      }
      case 5: {
        auto* c = e.mutable_entity_changed();
        MaybeString(c->mutable_entity_type());
        MaybeString(c->mutable_entity_id());
        for (int i = Int(0, 4); i > 0; --i) Val(&(*c->mutable_set_fields())[Str()]);
        for (int i = Int(0, 2); i > 0; --i) *c->add_unset_fields() = Str();
        c->set_deleted(Chance(0.3));
        break;
      }
      case 6: {
        auto* d = e.mutable_dataset_registered();
        if (Chance(0.7)) Dataset(d->mutable_dataset());
        for (int i = Int(0, 2); i > 0; --i) Dataset(d->add_derived_from());
        if (Chance(0.5)) Pipeline(d->mutable_pipeline());
        if (Chance(0.5)) d->set_size_bytes(Chance(0.5) ? rng_() : Int(0, 1000));
        if (Chance(0.5)) d->set_row_count(Int(0, 100000));
        MaybeString(d->mutable_source());
        for (int i = Int(0, 2); i > 0; --i) Model(d->add_derived_from_models());
        MaybeString(d->mutable_reason());
        break;
      }
      case 7:
        if (Chance(0.5)) {
          auto* r = e.mutable_source_reset();
          MaybeString(r->mutable_previous_incarnation());
          r->set_previous_last_offset(Int64());
          MaybeString(r->mutable_new_incarnation());
          r->set_new_first_offset(Int64());
        } else {
          auto* g = e.mutable_source_gap();
          MaybeString(g->mutable_incarnation());
          g->set_first_missing_offset(Int64());
          g->set_last_missing_offset(Int64());
          MaybeString(g->mutable_reason());
        }
        break;
    }
    return e;
  }

  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  double Double() {
    static const double kSpecial[] = {0.0,
                                      -0.0,
                                      std::numeric_limits<double>::quiet_NaN(),
                                      std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity(),
                                      std::numeric_limits<double>::denorm_min(),
                                      -std::numeric_limits<double>::denorm_min(),
                                      std::numeric_limits<double>::min(),
                                      std::numeric_limits<double>::max(),
                                      std::numeric_limits<double>::lowest(),
                                      0.1,
                                      1e15,
                                      1e16,
                                      1e-4,
                                      1e-5,
                                      123456789012345678.0,
                                      0.30000000000000004};
    switch (Int(0, 5)) {
      case 0:
        return kSpecial[Int(0, sizeof(kSpecial) / sizeof(kSpecial[0]) - 1)];
      case 1: {  // any bit pattern: subnormals, huge and tiny exponents
        const uint64_t bits = rng_();
        double d;
        std::memcpy(&d, &bits, sizeof(d));
        return d;
      }
      case 2:  // short decimals
        return Int(-100000, 100000) / std::pow(10.0, Int(0, 8));
      case 3:
        return static_cast<double>(static_cast<float>(Int(0, 1000) / 1000.0));
      case 4:  // subnormals
        return std::ldexp(static_cast<double>(rng_() >> 12), -1074);
      default:
        return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
    }
  }

  float Float() {
    switch (Int(0, 3)) {
      case 0: {
        const uint32_t bits = static_cast<uint32_t>(rng_());
        float f;
        std::memcpy(&f, &bits, sizeof(f));
        return f;
      }
      case 1:  // subnormals and the smallest normals
        return std::ldexp(static_cast<float>(Int(0, 1 << 24)), -149);
      case 2:
        return static_cast<float>(Int(-100000, 100000) / std::pow(10.0, Int(0, 6)));
      default:
        return static_cast<float>(Double());
    }
  }

  int64_t Int64() {
    switch (Int(0, 3)) {
      case 0:
        return 0;
      case 1:
        return std::numeric_limits<int64_t>::min();
      case 2:
        return std::numeric_limits<int64_t>::max();
      default:
        return static_cast<int64_t>(rng_());
    }
  }

  // Unicode: ASCII with the escaped characters, C0/C1 controls, the
  // invisible characters protobuf escapes, BMP and supplementary planes.
  std::string Str() {
    static const uint32_t kPoints[] = {
        'a',    'Z',     '0',     ' ',     '"',     '\\',    '/',     '<',    '>',    '&',
        '\'',   '\n',    '\r',    '\t',    '\b',    '\f',    0x00,    0x01,   0x1f,   0x7f,
        0x80,   0x9f,    0xa0,    0xad,    0xe9,    0x600,   0x6dd,   0x70f,  0x17b4, 0x200b,
        0x200f, 0x2028,  0x2029,  0x202e,  0x2060,  0x206f,  0x4e2d,  0xfeff, 0xfff9, 0xfffb,
        0xfffd, 0x1d173, 0x1f600, 0xe0001, 0xe0020, 0xe007f, 0x10ffff};
    std::string s;
    for (int n = Int(0, 12); n > 0; --n) {
      const uint32_t cp = Chance(0.5) ? static_cast<uint32_t>(Int(0x20, 0x7e))
                                      : kPoints[Int(0, sizeof(kPoints) / sizeof(kPoints[0]) - 1)];
      AppendUtf8(cp, &s);
    }
    return s;
  }

  std::string Bytes() {
    std::string b(Int(0, 20), '\0');
    for (char& c : b) c = static_cast<char>(rng_());
    return b;
  }

  void MaybeString(std::string* s) {
    if (Chance(0.8)) *s = Str();
  }

  void Time(google::protobuf::Timestamp* ts) {
    static const int32_t kNanos[] = {0, 1, 999'999'999, 500'000'000, 123'000, 7'000'000};
    switch (Int(0, 3)) {
      case 0:
        ts->set_seconds(Int(0, 1) ? -62135596800 : 253402300799);
        break;
      case 1:
        ts->set_seconds(-static_cast<int64_t>(rng_() % 62135596800));
        break;
      default:
        ts->set_seconds(static_cast<int64_t>(rng_() % 253402300800));
    }
    switch (Int(0, 3)) {
      case 0:
        ts->set_nanos(kNanos[Int(0, 5)]);
        break;
      case 1:
        ts->set_nanos(Int(0, 999) * 1'000'000);
        break;
      case 2:
        ts->set_nanos(Int(0, 999'999) * 1'000);
        break;
      default:
        ts->set_nanos(Int(0, 999'999'999));
    }
    // Now and then outside what protobuf maps: the emitter must decline.
    if (Chance(0.01)) ts->set_seconds(Chance(0.5) ? 253402300800 : -62135596801);
    if (Chance(0.01)) ts->set_nanos(Chance(0.5) ? -1 : 1'000'000'000);
  }

  void Model(predlog::v1::ModelRef* m) {
    MaybeString(m->mutable_name());
    MaybeString(m->mutable_version());
    MaybeString(m->mutable_artifact_sha256());
  }
  void Pipeline(predlog::v1::PipelineRef* p) {
    MaybeString(p->mutable_name());
    MaybeString(p->mutable_version());
    MaybeString(p->mutable_code_digest());
  }
  void Dataset(predlog::v1::DatasetRef* d) {
    MaybeString(d->mutable_name());
    MaybeString(d->mutable_version());
    MaybeString(d->mutable_digest());
  }
  void StringMap(google::protobuf::Map<std::string, std::string>* map) {
    for (int i = Int(0, 4); i > 0; --i) (*map)[Chance(0.1) ? "" : Str()] = Str();
  }
  void Val(predlog::v1::Value* v) {
    switch (Int(0, 6)) {
      case 0:
        v->set_double_value(Double());
        break;
      case 1:
        v->set_float_value(Float());
        break;
      case 2:
        v->set_int64_value(Int64());
        break;
      case 3:
        v->set_bool_value(Chance(0.5));
        break;
      case 4:
        v->set_string_value(Chance(0.2) ? "" : Str());
        break;
      case 5:
        v->set_bytes_value(Bytes());
        break;
      default:
        break;  // unset
    }
  }
  void Prediction(predlog::v1::PredictionLogged* p) {
    MaybeString(p->mutable_prediction_id());
    MaybeString(p->mutable_subject_id());
    if (Chance(0.8)) Time(p->mutable_served_at());
    MaybeString(p->mutable_service());
    if (Chance(0.8)) Model(p->mutable_model());
    if (Chance(0.6)) Pipeline(p->mutable_pipeline());
    for (int i = Int(0, 8); i > 0; --i) {
      auto* f = p->add_inputs();
      MaybeString(f->mutable_name());
      switch (Int(0, 6)) {
        case 0:
          f->set_double_value(Double());
          break;
        case 1:
          f->set_float_value(Float());
          break;
        case 2:
          f->set_int64_value(Int64());
          break;
        case 3:
          f->set_bool_value(Chance(0.5));
          break;
        case 4:
          f->set_string_value(Chance(0.3) ? "" : Str());
          break;
        case 5:
          f->set_bytes_value(Bytes());
          break;
        default:
          break;
      }
    }
    if (Chance(0.3)) p->set_raw_request(Bytes());
    if (Chance(0.8)) {
      auto* o = p->mutable_output();
      for (int i = Int(0, 3); i > 0; --i) o->add_float_scores(Float());
      for (int i = Int(0, 2); i > 0; --i) o->add_double_scores(Double());
      MaybeString(o->mutable_label());
      MaybeString(o->mutable_score_kind());
    }
    MaybeString(p->mutable_trace_id());
    for (int i = Int(0, 2); i > 0; --i) *p->add_parent_prediction_ids() = Str();
    StringMap(p->mutable_context());
    for (int i = Int(0, 2); i > 0; --i) Dataset(p->add_data_sources());
  }

 private:
  std::mt19937_64 rng_;
};

TEST(TrailJson, FastEmitterKnowsEveryFieldOfTheCompiledSchema) {
  // Fails when a field is added to events.proto or audit.proto without
  // teaching the emitter: production then renders through the reference.
  EXPECT_TRUE(FastTrailJsonCoversSchema());
}

TEST(TrailJson, FastEmitterMatchesProtobufOnRandomizedEventsOfEveryBody) {
  // Unmappable timestamps make protobuf warn about its half-written output.
  google::protobuf::LogSilencer quiet;
  RandomEvents random(20240611);
  int compared = 0, unmapped = 0;
  for (int i = 0; i < 20000; ++i) {
    // Parse the serialized event as the export does: strings are then valid UTF-8.
    const AuditEvent built = random.Next();
    const std::string bytes = built.SerializeAsString();
    AuditEvent event;
    ASSERT_TRUE(event.ParseFromString(bytes));
    TrailLineFields fields;
    fields.shard = i % 7 == 0 ? "" : "predlog.events-3";
    fields.index = i % 5 == 0 ? 0 : static_cast<uint64_t>(i) * 1'000'000'007ULL;
    fields.event = &event;
    fields.leaf_sha256 = "a5";
    fields.prev_chain_sha256 = i % 3 == 0 ? "" : "00ff";
    fields.chain_sha256 = "c0";
    fields.event_bytes = bytes;

    const absl::StatusOr<std::string> reference = TrailLineJsonReference(fields);
    std::string fast;
    const bool handled = AppendTrailLineJsonFast(fields, &fast);
    if (!reference.ok()) {
      // Only events protobuf cannot map (timestamps out of range) fail, and
      // the fast emitter must decline them too.
      EXPECT_FALSE(handled) << event.DebugString();
      EXPECT_TRUE(fast.empty());
      ++unmapped;
      continue;
    }
    ASSERT_TRUE(handled) << event.DebugString();
    ASSERT_EQ(fast, *reference) << event.DebugString();
    ++compared;
  }
  EXPECT_GT(compared, 18000);
  EXPECT_GT(unmapped, 0);
}

TEST(TrailJson, WithSingleEntryMapsTheReferenceIsMessageToJsonString) {
  // The reference differs from MessageToJsonString only in map order.
  RandomEvents random(7);
  for (int i = 0; i < 3000; ++i) {
    AuditEvent event = random.Next();
    event.mutable_recorded_at()->set_seconds(1'700'000'000);
    event.mutable_recorded_at()->set_nanos(0);
    if (event.has_prediction_logged()) {
      auto* p = event.mutable_prediction_logged();
      p->clear_served_at();
      p->mutable_context()->clear();
      (*p->mutable_context())["region"] = "eu-west-1";
    }
    if (event.has_entity_changed()) {
      auto* fields = event.mutable_entity_changed()->mutable_set_fields();
      while (fields->size() > 1) fields->erase(fields->begin());
    }
    if (event.has_model_registered()) {
      event.mutable_model_registered()->mutable_provenance()->clear_hyperparameters();
      event.mutable_model_registered()->mutable_provenance()->clear_library_versions();
      event.mutable_model_registered()->clear_training_started_at();
    }
    AuditEvent parsed;
    ASSERT_TRUE(parsed.ParseFromString(event.SerializeAsString()));
    predlog::v1::TrailLine line;
    line.set_shard("predlog.events-0");
    line.set_index(static_cast<uint64_t>(i));
    *line.mutable_event() = parsed;
    line.set_leaf_sha256("ab");
    line.set_event_bytes(event.SerializeAsString());
    std::string expected;
    ASSERT_TRUE(
        google::protobuf::util::MessageToJsonString(line, &expected, TrailJsonOptions()).ok());

    TrailLineFields fields;
    fields.shard = line.shard();
    fields.index = line.index();
    fields.event = &parsed;
    fields.leaf_sha256 = line.leaf_sha256();
    fields.event_bytes = line.event_bytes();
    std::string fast;
    ASSERT_TRUE(AppendTrailLineJsonFast(fields, &fast));
    ASSERT_EQ(fast, expected);
  }
}

TEST(TrailJson, SizedPredictionLineIsTheProtobufLine) {
  const std::string bytes = testing::MakeSizedPredictionPayload(42, 1024, 100);
  AuditEvent event;
  ASSERT_TRUE(event.ParseFromString(bytes));
  TrailLineFields fields;
  fields.shard = "predlog.events-1";
  fields.index = 57;
  fields.event = &event;
  fields.event_bytes = bytes;
  std::string line;
  AppendTrailLine(fields, &line);
  ASSERT_OK_AND_ASSIGN(const std::string reference, TrailLineJsonReference(fields));
  EXPECT_EQ(line, reference + "\n");
  EXPECT_THAT(line, ::testing::StartsWith(R"({"shard":"predlog.events-1","index":"57","event":{)"));
}

TEST(TrailJson, EventWithoutJsonMappingLeavesTheEventOut) {
  AuditEvent event = testing::MakePrediction({});
  event.mutable_recorded_at()->set_seconds(253402300800);  // year 10000
  const std::string bytes = event.SerializeAsString();
  TrailLineFields fields;
  fields.shard = "s";
  fields.index = 1;
  fields.event = &event;
  fields.event_bytes = bytes;
  std::string fast;
  EXPECT_FALSE(AppendTrailLineJsonFast(fields, &fast));
  std::string line;
  AppendTrailLine(fields, &line);
  EXPECT_THAT(line, ::testing::Not(::testing::HasSubstr("\"event\"")));
  EXPECT_THAT(line, ::testing::HasSubstr("\"eventBytes\""));
}

TEST(TrailJson, NumbersPrintAsSimpleDtoaAndSimpleFtoaOnRandomBitPatterns) {
  RandomEvents random(99);
  std::mt19937_64 bits(5);
  for (int i = 0; i < 300000; ++i) {
    double d = random.Double();
    if (i % 2 == 0) {
      const uint64_t b = bits();
      std::memcpy(&d, &b, sizeof(d));
    }
    if (std::isfinite(d)) {
      std::string mine;
      AppendJsonDouble(d, &mine);
      ASSERT_EQ(mine, google::protobuf::SimpleDtoa(d)) << absl::StrCat(d);
    }
    float f = random.Float();
    if (i % 2 == 0) {
      const uint32_t b = static_cast<uint32_t>(bits());
      std::memcpy(&f, &b, sizeof(f));
    }
    if (std::isfinite(f)) {
      std::string mine;
      AppendJsonFloat(f, &mine);
      ASSERT_EQ(mine, google::protobuf::SimpleFtoa(f)) << absl::StrCat(f);
    }
  }
}

TEST(TrailJson, ScalarsPrintAsProtobufDoes) {
  const auto d = [](double v) {
    std::string s;
    AppendJsonDouble(v, &s);
    return s;
  };
  const auto f = [](float v) {
    std::string s;
    AppendJsonFloat(v, &s);
    return s;
  };
  EXPECT_EQ(d(0.1), "0.1");
  EXPECT_EQ(d(-0.0), "-0");
  EXPECT_EQ(d(1e20), "1e+20");
  EXPECT_EQ(d(1e-5), "1e-05");
  EXPECT_EQ(d(0.0001), "0.0001");
  EXPECT_EQ(d(1.5070000002160668), "1.5070000002160668");
  EXPECT_EQ(d(5e-324), "4.94065645841247e-324");
  EXPECT_EQ(f(0.1f), "0.1");
  EXPECT_EQ(f(1e-45f), "1.40129846e-45");
  EXPECT_EQ(f(3.4028235e38f), "3.40282347e+38");
  std::string b;
  AppendBase64("ab", &b);
  EXPECT_EQ(b, "YWI=");
}

}  // namespace
}  // namespace predlog::services
