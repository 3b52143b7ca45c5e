#include "storage/event_validation.h"

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"

namespace predlog::storage {
namespace {

using ::predlog::testing::IsOk;
using ::predlog::testing::MakePrediction;
using ::predlog::testing::PredictionSpec;
using ::predlog::testing::StatusIs;
using ::testing::HasSubstr;

absl::Status ValidatePrediction(void (*mutate)(predlog::v1::AuditEvent*)) {
  predlog::v1::AuditEvent event = MakePrediction(PredictionSpec{});
  mutate(&event);
  return ValidateEvent(event);
}

TEST(ValidateEvent, WellFormedPredictionIsAccepted) {
  EXPECT_THAT(ValidateEvent(MakePrediction(PredictionSpec{})), IsOk());
}

TEST(ValidateEvent, EachMissingPredictionFieldIsNamed) {
  struct Case {
    void (*mutate)(predlog::v1::AuditEvent*);
    const char* field;
  };
  const Case cases[] = {
      {[](auto* e) { e->mutable_prediction_logged()->clear_prediction_id(); },
       "prediction_logged.prediction_id is empty"},
      {[](auto* e) { e->mutable_prediction_logged()->clear_subject_id(); },
       "prediction_logged.subject_id is empty"},
      {[](auto* e) { e->mutable_prediction_logged()->clear_served_at(); },
       "prediction_logged.served_at is missing"},
      {[](auto* e) { e->mutable_prediction_logged()->clear_model(); },
       "prediction_logged.model is missing"},
      {[](auto* e) { e->mutable_prediction_logged()->mutable_model()->clear_version(); },
       "prediction_logged.model.version is empty"},
      {[](auto* e) { e->mutable_prediction_logged()->mutable_model()->set_name("credit@v1"); },
       "prediction_logged.model.name may not contain '@'"},
      {[](auto* e) { e->mutable_prediction_logged()->mutable_model()->set_artifact_sha256("xyz"); },
       "prediction_logged.model.artifact_sha256 is not 64 lower-case hex characters"},
      {[](auto* e) {
         auto* model = e->mutable_prediction_logged()->mutable_model();
         model->set_artifact_sha256(absl::AsciiStrToUpper(model->artifact_sha256()));
       },
       "prediction_logged.model.artifact_sha256 is not 64 lower-case hex characters"},
      {[](auto* e) { e->mutable_prediction_logged()->clear_inputs(); },
       "prediction_logged.inputs is empty"},
      {[](auto* e) { e->mutable_prediction_logged()->mutable_inputs(2)->clear_name(); },
       "prediction_logged.inputs[2].name is empty"},
      {[](auto* e) { e->clear_body(); }, "body is not set"},
      {[](auto* e) { e->set_schema_version(kSchemaVersion + 1); }, "schema_version"},
      {[](auto* e) { e->mutable_source_reset(); }, "source_reset is written by predlog only"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ValidatePrediction(c.mutate),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)))
        << c.field;
  }
}

TEST(ValidateEvent, TimestampsOutsideProtobufsRangeAreNamed) {
  struct Case {
    void (*mutate)(predlog::v1::AuditEvent*);
    const char* message;
  };
  const Case cases[] = {
      // Year 1 minus a second, and year 10000.
      {[](auto* e) {
         e->mutable_prediction_logged()->mutable_served_at()->set_seconds(-62135596801);
       },
       "prediction_logged.served_at.seconds is -62135596801"},
      {[](auto* e) {
         e->mutable_prediction_logged()->mutable_served_at()->set_seconds(253402300800);
       },
       "prediction_logged.served_at.seconds is 253402300800"},
      {[](auto* e) { e->mutable_prediction_logged()->mutable_served_at()->set_nanos(-1); },
       "prediction_logged.served_at.nanos is -1"},
      {[](auto* e) {
         e->mutable_prediction_logged()->mutable_served_at()->set_nanos(1'000'000'000);
       },
       "prediction_logged.served_at.nanos is 1000000000"},
      {[](auto* e) { e->mutable_recorded_at()->set_seconds(253402300800); },
       "recorded_at.seconds is 253402300800"},
      {[](auto* e) { e->mutable_recorded_at()->set_nanos(-5); }, "recorded_at.nanos is -5"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ValidatePrediction(c.mutate),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.message;
  }
  // The bounds themselves are valid: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z.
  EXPECT_THAT(ValidatePrediction([](auto* e) {
                e->mutable_prediction_logged()->mutable_served_at()->set_seconds(-62135596800);
                e->mutable_recorded_at()->set_seconds(-62135596800);
              }),
              IsOk());
  EXPECT_THAT(ValidatePrediction([](auto* e) {
                auto* at = e->mutable_prediction_logged()->mutable_served_at();
                at->set_seconds(253402300799);
                at->set_nanos(999'999'999);
              }),
              IsOk());
}

TEST(ValidateEvent, LimitsAreEnforcedWithTheLimitInTheMessage) {
  PredictionSpec spec;
  spec.features = 11;
  EventLimits limits;
  limits.max_features = 10;
  EXPECT_THAT(ValidateEvent(MakePrediction(spec), limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("prediction_logged.inputs has 11 features; the limit is 10")));
  spec.features = 1;
  spec.prediction_id = std::string(600, 'x');
  EXPECT_THAT(ValidateEvent(MakePrediction(spec)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("prediction_logged.prediction_id is 600 bytes")));
}

TEST(ValidateEvent, DeploymentTrafficFractionMustBeAShare) {
  predlog::v1::AuditEvent event;
  auto* d = event.mutable_model_deployed();
  d->set_route("credit");
  d->mutable_model()->set_name("m");
  d->mutable_model()->set_version("v1");
  d->set_traffic_fraction(1.5);
  EXPECT_THAT(ValidateEvent(event), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("model_deployed.traffic_fraction")));
  d->set_traffic_fraction(0.1);
  EXPECT_THAT(ValidateEvent(event), IsOk());
}

}  // namespace
}  // namespace predlog::storage
