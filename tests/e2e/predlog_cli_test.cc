// The predlog CLI as a support engineer and an auditor use it: subprocesses
// against a predlogd child on free ports, after `predlog demo credit` filled
// it. Each subcommand's happy path, its error paths, and the exit codes.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "predlog/v1/replay.pb.h"
#include "predlog/v1/service.pb.h"
#include "tests/e2e/child_process.h"
#include "tests/testing/temp_dir.h"

namespace predlog {
namespace {

using ::predlog::testing::ReadFile;
using ::predlog::testing::RunCommand;
using ::predlog::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

// One predlogd for the suite, filled by the demo (small sizes: the story,
// not the volume).
class PredlogCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    server_ = new testing::Predlogd(
        PREDLOGD_BINARY, {"--data_dir=" + dir_->Sub("data"), "--grpc_listen=127.0.0.1:0",
                          "--http_listen=", "--partitions=2", "--snapshot_every_events=200"});
    ASSERT_FALSE(server_->grpc().empty()) << server_->startup_line();
    auto [code, out] = RunCommand(Cli() + " demo credit --customers 60 --predictions 800");
    ASSERT_EQ(code, 0) << out;
    demo_output_ = new std::string(out);
    // "Customer c-0042 was denied at 2026-...Z (prediction p-000123, ..."
    const size_t at = out.find("Customer ");
    ASSERT_NE(at, std::string::npos) << out;
    std::vector<std::string> words = absl::StrSplit(out.substr(at), ' ');
    customer_ = new std::string(words[1]);
    decision_time_ = new std::string(words[5]);
    absl::string_view prediction = words[7];
    absl::ConsumeSuffix(&prediction, ",");
    prediction_ = new std::string(prediction);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }

  static std::string Cli() {
    return std::string(PREDLOG_CLI_BINARY) + " --server=" + server_->grpc();
  }

  static TempDir* dir_;
  static testing::Predlogd* server_;
  static std::string* demo_output_;
  static std::string* customer_;
  static std::string* prediction_;
  static std::string* decision_time_;
};

TempDir* PredlogCliTest::dir_ = nullptr;
testing::Predlogd* PredlogCliTest::server_ = nullptr;
std::string* PredlogCliTest::demo_output_ = nullptr;
std::string* PredlogCliTest::customer_ = nullptr;
std::string* PredlogCliTest::prediction_ = nullptr;
std::string* PredlogCliTest::decision_time_ = nullptr;

TEST_F(PredlogCliTest, DemoNamesADeniedCustomerAndTheCommandsToInvestigate) {
  EXPECT_THAT(*demo_output_, HasSubstr("registered credit@v1"));
  EXPECT_THAT(*demo_output_, HasSubstr("deployed   credit@v2 on credit-limit at 10%"));
  EXPECT_THAT(*demo_output_, HasSubstr("logged     800 predictions"));
  EXPECT_THAT(*demo_output_, HasSubstr("predlog replay --server=" + server_->grpc() + " " +
                                       *prediction_ + " --explain"));
  EXPECT_THAT(*demo_output_,
              HasSubstr("predlog lineage --server=" + server_->grpc() + " " + *prediction_));
  EXPECT_THAT(*demo_output_, HasSubstr("registered crm-applications@2026-10, defaults@2026-10 "
                                       "-> applications@2026-10"));
  EXPECT_TRUE(absl::StartsWith(*customer_, "c-")) << *customer_;
  EXPECT_TRUE(absl::StartsWith(*prediction_, "p-")) << *prediction_;
}

TEST_F(PredlogCliTest, TrailListsTheCustomersPredictions) {
  auto [code, out] = RunCommand(Cli() + " trail --subject " + *customer_);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("SERVED_AT"));
  EXPECT_THAT(out, HasSubstr(*prediction_));
  EXPECT_THAT(out, HasSubstr("(deny)"));
  auto [json_code, json] = RunCommand(Cli() + " trail --json --subject " + *customer_);
  EXPECT_EQ(json_code, 0);
  EXPECT_THAT(json, HasSubstr("\"predictionId\":\"" + *prediction_ + "\""));
  // Narrowed by model and time.
  auto [v9_code, v9] = RunCommand(Cli() + " trail --subject " + *customer_ + " --model credit@v9");
  EXPECT_EQ(v9_code, 1) << v9;
  EXPECT_THAT(v9, HasSubstr("no predictions match"));
  auto [bad_code, bad] = RunCommand(Cli() + " trail --subject x --from yesterday");
  EXPECT_EQ(bad_code, 2);
  EXPECT_THAT(bad, HasSubstr("--from"));
  auto [none_code, none] = RunCommand(Cli() + " trail");
  EXPECT_EQ(none_code, 2);
  EXPECT_THAT(none, HasSubstr("--subject"));
}

TEST_F(PredlogCliTest, ReplayReproducesExplainsAndCompares) {
  auto [code, out] = RunCommand(Cli() + " replay " + *prediction_ + " --explain");
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("match        exact (bit for bit)"));
  EXPECT_THAT(out, HasSubstr("verified"));
  EXPECT_THAT(out, HasSubstr("why: contributions to the margin"));
  EXPECT_THAT(out, HasSubstr("█"));
  auto [cf_code, cf] = RunCommand(Cli() + " replay " + *prediction_ + " --against credit@v2");
  EXPECT_EQ(cf_code, 0) << cf;
  EXPECT_THAT(cf, HasSubstr("counterfactual credit@v2 says"));

  auto [missing_code, missing] = RunCommand(Cli() + " replay no-such-prediction");
  EXPECT_EQ(missing_code, 1);
  EXPECT_THAT(missing, HasSubstr("prediction_id no-such-prediction is not recorded"));
  auto [bad_code, bad] = RunCommand(Cli() + " replay " + *prediction_ + " --against credit");
  EXPECT_EQ(bad_code, 2);
  EXPECT_THAT(bad, HasSubstr("--against"));
  auto [flag_code, flag] = RunCommand(Cli() + " replay " + *prediction_ + " --explian");
  EXPECT_EQ(flag_code, 2);
  EXPECT_THAT(flag, HasSubstr("unknown flag --explian"));
}

TEST_F(PredlogCliTest, TraceRerunsAChainLoggedThroughTheCli) {
  // A two-step chain built from a real prediction: the same inputs and
  // output, the second step a child of the first.
  auto [get_code, get] = RunCommand(Cli() + " get --json " + *prediction_);
  ASSERT_EQ(get_code, 0) << get;
  predlog::v1::PredictionRecord record;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(get, &record).ok()) << get;
  std::string lines;
  for (int step = 0; step < 2; ++step) {
    predlog::v1::PredictionLogged p = record.event().prediction_logged();
    p.set_prediction_id("chain-" + std::to_string(step));
    p.set_trace_id("trace-cli");
    if (step == 1) p.add_parent_prediction_ids("chain-0");
    std::string json;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(p, &json).ok());
    lines = json + "\n" + lines;  // children first
  }
  WriteFile(dir_->Sub("chain.jsonl"), lines);
  auto [log_code, log] = RunCommand(Cli() + " log < " + dir_->Sub("chain.jsonl"));
  ASSERT_EQ(log_code, 0) << log;
  EXPECT_THAT(log, HasSubstr("APPLIED"));
  auto [code, out] = RunCommand(Cli() + " trace trace-cli");
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("every step reproduces exactly"));
  EXPECT_LT(out.find("chain-0"), out.find("chain-1")) << "parents first";
  auto [missing_code, missing] = RunCommand(Cli() + " trace no-such-trace");
  EXPECT_EQ(missing_code, 1);
  EXPECT_THAT(missing, HasSubstr("no-such-trace"));
  // The trace's predictions, found by its id alone, in served order.
  auto [trail_code, trail] = RunCommand(Cli() + " trail --trace trace-cli");
  EXPECT_EQ(trail_code, 0) << trail;
  EXPECT_THAT(trail, HasSubstr("chain-0"));
  EXPECT_THAT(trail, HasSubstr("chain-1"));
  EXPECT_THAT(trail, Not(HasSubstr(*prediction_ + " ")));
  auto [none_code, none] = RunCommand(Cli() + " trail --trace no-such-trace");
  EXPECT_EQ(none_code, 1) << none;
  EXPECT_THAT(none, HasSubstr("no predictions match"));
  auto [mixed_code, mixed] = RunCommand(Cli() + " trail --trace trace-cli --subject x");
  EXPECT_EQ(mixed_code, 2) << mixed;
  EXPECT_THAT(mixed, HasSubstr("--trace"));
}

TEST_F(PredlogCliTest, StateShowsTheRecordAsOfATime) {
  auto [code, out] =
      RunCommand(Cli() + " state --entity customer/" + *customer_ + " --at " + *decision_time_);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("income"));
  EXPECT_THAT(out, HasSubstr("credit_limit"));
  auto [before_code, before] =
      RunCommand(Cli() + " state --entity customer/" + *customer_ + " --at 2001-01-01");
  EXPECT_EQ(before_code, 1) << before;
  EXPECT_THAT(before, HasSubstr("did not exist"));
  auto [bad_code, bad] = RunCommand(Cli() + " state --entity " + *customer_);
  EXPECT_EQ(bad_code, 2);
  EXPECT_THAT(bad, HasSubstr("--entity"));
}

TEST_F(PredlogCliTest, ChangesListsTheCustomersRecordedChangesOldestFirst) {
  // The demo records every customer (one change setting every field) before
  // it scores anyone, and changes some records along the way.
  const std::string entity = "customer/" + *customer_;
  auto [code, out] = RunCommand(Cli() + " changes --entity " + entity);
  EXPECT_EQ(code, 0) << out;
  const std::vector<std::string> lines =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(out), '\n');
  ASSERT_GE(lines.size(), 2u) << out;
  EXPECT_THAT(lines[0], MatchesRegex("RECORDED_AT +CHANGE +POSITION +ACTOR"));
  // The first change created the record: every field set, at its position.
  EXPECT_THAT(lines[1], MatchesRegex("20[0-9-]+T[0-9:.]+Z +set .*credit_limit=[0-9.]+.* +"
                                     "predlog\\.events-[01]#[0-9]+.*"));
  // In the JSON every line is one record holding the EntityChanged.
  auto [json_code, json] = RunCommand(Cli() + " changes --json --entity " + entity);
  EXPECT_EQ(json_code, 0) << json;
  const std::vector<std::string> records =
      absl::StrSplit(absl::StripTrailingAsciiWhitespace(json), '\n');
  EXPECT_EQ(records.size(), lines.size() - 1) << json;
  for (const std::string& line : records) {
    predlog::v1::PredictionRecord record;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &record).ok()) << line;
    EXPECT_EQ(record.event().entity_changed().entity_id(), *customer_);
  }
  auto [one_code, one] = RunCommand(Cli() + " changes --limit 1 --entity " + entity);
  EXPECT_EQ(one_code, 0) << one;
  EXPECT_EQ(std::count(one.begin(), one.end(), '\n'), 2) << one;
  auto [before_code, before] =
      RunCommand(Cli() + " changes --entity " + entity + " --to 2001-01-01");
  EXPECT_EQ(before_code, 1) << before;
  EXPECT_THAT(before, HasSubstr("no changes of " + entity + " match"));
  auto [bad_code, bad] = RunCommand(Cli() + " changes --entity " + *customer_);
  EXPECT_EQ(bad_code, 2) << bad;
  EXPECT_THAT(bad, HasSubstr("--entity"));
}

TEST_F(PredlogCliTest, ModelsRegisterAndDeploy) {
  auto [code, out] = RunCommand(Cli() + " models");
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("credit@v1"));
  EXPECT_THAT(out, HasSubstr("credit-limit 90%"));
  EXPECT_THAT(out, HasSubstr("credit-limit 10%"));

  WriteFile(dir_->Sub("model.bin"), "not really a model, but bytes all the same");
  auto [reg_code, reg] =
      RunCommand(Cli() + " model register --name scorecard --version s1 --framework custom " +
                 "--file " + dir_->Sub("model.bin") + " --pipeline credit-features@3 " +
                 "--dataset applications@2026-10=abc123 --hyperparameter depth=3");
  EXPECT_EQ(reg_code, 0) << reg;
  EXPECT_THAT(reg, HasSubstr("APPLIED scorecard@s1"));
  auto [dep_code, dep] = RunCommand(Cli() + " model deploy --route score --model scorecard@s1 " +
                                    "--traffic 0.5 --reason test");
  EXPECT_EQ(dep_code, 0) << dep;
  EXPECT_THAT(dep, HasSubstr("on score at 50% traffic"));
  auto [missing_code, missing] =
      RunCommand(Cli() + " model deploy --route score --model scorecard@s9");
  EXPECT_EQ(missing_code, 1);
  EXPECT_THAT(missing, HasSubstr("scorecard@s9 is not registered"));
  auto [usage_code, usage] = RunCommand(Cli() + " model register --name a --version b");
  EXPECT_EQ(usage_code, 2);
  EXPECT_THAT(usage, HasSubstr("--file is required"));
  auto [traffic_code, traffic] =
      RunCommand(Cli() + " model deploy --route r --model a@b --traffic 2");
  EXPECT_EQ(traffic_code, 2);
  EXPECT_THAT(traffic, HasSubstr("--traffic"));
}

TEST_F(PredlogCliTest, ModelGetShowsMetricsTrainingTimesAndRunId) {
  WriteFile(dir_->Sub("tracked.bin"), "a tracked model's bytes");
  auto [reg_code, reg] = RunCommand(
      Cli() + " model register --name tracked --version t1 --framework custom --file " +
      dir_->Sub("tracked.bin") + " --metric auc=0.913@holdout@2026-10 --metric logloss=0.25" +
      " --training-started 2026-10-30T08:00:00Z --training-duration 1h30m" +
      " --run-id mlflow-0a1b2c3d");
  ASSERT_EQ(reg_code, 0) << reg;
  auto [code, out] = RunCommand(Cli() + " model get tracked@t1");
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("metric:             auc = 0.913  on holdout@2026-10"));
  EXPECT_THAT(out, HasSubstr("metric:             logloss = 0.25\n"));
  EXPECT_THAT(out, HasSubstr("training started:   2026-10-30T08:00:00.000Z"));
  EXPECT_THAT(out, HasSubstr("training duration:  1h30m"));
  EXPECT_THAT(out, HasSubstr("run id:             mlflow-0a1b2c3d"));
  auto [json_code, json] = RunCommand(Cli() + " model get tracked@t1 --json");
  EXPECT_EQ(json_code, 0) << json;
  EXPECT_THAT(json, HasSubstr("\"externalRunId\":\"mlflow-0a1b2c3d\""));
  EXPECT_THAT(json, HasSubstr("\"trainingDurationMs\":\"5400000\""));
  auto [bad_code, bad] = RunCommand(Cli() + " model register --name x --version y --file " +
                                    dir_->Sub("tracked.bin") + " --metric auc");
  EXPECT_EQ(bad_code, 2);
  EXPECT_THAT(bad, HasSubstr("--metric: 'auc' is not name=value"));
}

TEST_F(PredlogCliTest, DatasetRegisterByPathThenGetDuplicateAndConflict) {
  const std::string data = dir_->Sub("applications");
  std::filesystem::create_directories(data + "/meta");
  WriteFile(data + "/part-0.csv", "id,income\n1,52000\n");
  WriteFile(data + "/meta/schema.json", "{}");
  const std::string register_cmd =
      Cli() + " dataset register --name loans --version 2026-10 --path " + data +
      " --source 'postgres://crm/applications' --rows 1 --derived-from raw-applications@2026-10" +
      " --derived-from-model fraud@v2 --pipeline extract@7 --pipeline-digest 4f2a9c1" +
      " --reason 'monthly extract' --actor data-eng";
  auto [code, out] = RunCommand(register_cmd);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("APPLIED loans@2026-10  sha256:"));
  EXPECT_THAT(out, HasSubstr("(20 bytes)"));

  auto [get_code, got] = RunCommand(Cli() + " dataset get loans@2026-10");
  EXPECT_EQ(get_code, 0) << got;
  EXPECT_THAT(got, HasSubstr("source:         postgres://crm/applications"));
  EXPECT_THAT(got, HasSubstr("derived from:   raw-applications@2026-10"));
  EXPECT_THAT(got, HasSubstr("from model:     fraud@v2"));
  EXPECT_THAT(got, HasSubstr("pipeline:       extract@7 (code 4f2a9c1)"));
  EXPECT_THAT(got, HasSubstr("rows:           1\n"));
  EXPECT_THAT(got, HasSubstr("reason:         monthly extract"));
  EXPECT_THAT(got, HasSubstr("(claimed: data-eng)"));

  auto [dup_code, dup] = RunCommand(register_cmd);
  EXPECT_EQ(dup_code, 0) << dup;
  EXPECT_THAT(dup, HasSubstr("DUPLICATE loans@2026-10"));

  WriteFile(data + "/part-0.csv", "id,income\n1,52001\n");
  auto [conflict_code, conflict] = RunCommand(register_cmd);
  EXPECT_EQ(conflict_code, 1) << conflict;
  EXPECT_THAT(conflict, HasSubstr("loans@2026-10 is already registered with other content"));

  auto [missing_code, missing] = RunCommand(Cli() + " dataset get loans@1999-01");
  EXPECT_EQ(missing_code, 1);
  EXPECT_THAT(missing, HasSubstr("loans@1999-01 is not registered"));
  auto [usage_code, usage] =
      RunCommand(Cli() + " dataset register --name a --version b --digest sha256:00 --path x");
  EXPECT_EQ(usage_code, 2);
  EXPECT_THAT(usage, HasSubstr("exactly one of --digest"));
  auto [hex_code, hex] =
      RunCommand(Cli() + " dataset register --name a --version b --digest sha256:XYZ");
  EXPECT_EQ(hex_code, 1);
  EXPECT_THAT(hex, HasSubstr("dataset.dataset.digest is not 64 lower-case hex characters"));
}

TEST_F(PredlogCliTest, ExportVerifiesAndEveryKindOfTamperingIsNamed) {
  const std::string file = dir_->Sub("trail.jsonl");
  auto [code, out] =
      RunCommand(Cli() + " export --subject " + *customer_ + " --format jsonl --out " + file);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("manifest " + file + ".manifest.json"));
  auto [ok_code, ok] = RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify " + file + " " + file +
                                  ".manifest.json");
  EXPECT_EQ(ok_code, 0) << ok;
  EXPECT_THAT(ok, HasSubstr("OK"));
  EXPECT_THAT(ok, HasSubstr("Without --key it cannot prove the manifest came from predlog"));

  const std::string original = ReadFile(file);
  std::vector<std::string> lines = absl::StrSplit(original, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u);
  auto verify_tampered = [&](const std::string& content) {
    const std::string tampered = dir_->Sub("tampered.jsonl");
    WriteFile(tampered, content);
    return RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify " + tampered + " " + file +
                      ".manifest.json");
  };
  // One byte of the served score changed.
  std::string flipped = original;
  const size_t score = flipped.find("floatScores");
  ASSERT_NE(score, std::string::npos);
  flipped[score + 15] = flipped[score + 15] == '1' ? '2' : '1';
  auto [flip_code, flip] = verify_tampered(flipped);
  EXPECT_EQ(flip_code, 1) << flip;
  EXPECT_THAT(flip, HasSubstr("line 1"));
  // A line dropped.
  std::string dropped;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i != 1) dropped += lines[i] + "\n";
  }
  auto [drop_code, drop] = verify_tampered(dropped);
  EXPECT_EQ(drop_code, 1) << drop;
  EXPECT_THAT(drop, HasSubstr("missing from the file"));
  // Two lines swapped.
  std::string swapped = lines[1] + "\n" + lines[0] + "\n";
  for (size_t i = 2; i < lines.size(); ++i) swapped += lines[i] + "\n";
  auto [swap_code, swap] = verify_tampered(swapped);
  EXPECT_EQ(swap_code, 1) << swap;
  EXPECT_THAT(swap, HasSubstr("out of log order"));

  // Everything, as CSV, verifies too.
  const std::string csv = dir_->Sub("all.csv");
  auto [csv_code, csv_out] = RunCommand(Cli() + " export --all --format csv --out " + csv);
  ASSERT_EQ(csv_code, 0) << csv_out;
  auto [csv_ok_code, csv_ok] =
      RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify " + csv + " " + csv + ".manifest.json");
  EXPECT_EQ(csv_ok_code, 0) << csv_ok;
  EXPECT_THAT(ReadFile(csv), HasSubstr("input.income"));

  auto [usage_code, usage] = RunCommand(Cli() + " export --subject a --model b@c --out x");
  EXPECT_EQ(usage_code, 2);
  EXPECT_THAT(usage, HasSubstr("exactly one of"));
  auto [format_code, format] = RunCommand(Cli() + " export --all --format xml --out x");
  EXPECT_EQ(format_code, 2);
  EXPECT_THAT(format, HasSubstr("--format"));
}

TEST_F(PredlogCliTest, BackupIsRestoredByPredlogdWithTheSameRecordsAndReruns) {
  const std::string backups = dir_->Sub("backups");
  auto [code, out] = RunCommand(Cli() + " backup --out " + backups);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("backup 1 written to " + backups));
  EXPECT_THAT(out, HasSubstr("predlog.registry-0"));
  EXPECT_THAT(out, HasSubstr("artifacts  2 copied"));  // credit@v1 and @v2
  EXPECT_THAT(out, HasSubstr("predlogd --restore " + backups + " --restore_backup_id 1"));
  auto [export_code, export_out] =
      RunCommand(Cli() + " export --all --format jsonl --out " + dir_->Sub("before.jsonl"));
  ASSERT_EQ(export_code, 0) << export_out;

  // Refusals: a relative --out (the path is predlogd's), another partition count.
  auto [relative_code, relative] = RunCommand(Cli() + " backup --out backups");
  EXPECT_EQ(relative_code, 2);
  EXPECT_THAT(relative, HasSubstr("--out backups is not an absolute path"));
  auto [partitions_code, partitions] = RunCommand(
      std::string(PREDLOGD_BINARY) + " --restore " + backups + " --data_dir " +
      dir_->Sub("restored") + " --partitions=3 --grpc_listen=127.0.0.1:0 --http_listen=");
  EXPECT_EQ(partitions_code, 2) << partitions;
  EXPECT_THAT(partitions, HasSubstr("--partitions 3 differs from backup 1"));

  testing::Predlogd restored(PREDLOGD_BINARY,
                             {"--restore=" + backups, "--data_dir=" + dir_->Sub("restored"),
                              "--grpc_listen=127.0.0.1:0", "--http_listen=", "--partitions=2"});
  ASSERT_FALSE(restored.grpc().empty()) << restored.startup_line();
  const std::string restored_cli = std::string(PREDLOG_CLI_BINARY) + " --server=" + restored.grpc();
  auto [after_code, after_out] =
      RunCommand(restored_cli + " export --all --format jsonl --out " + dir_->Sub("after.jsonl"));
  ASSERT_EQ(after_code, 0) << after_out;
  EXPECT_TRUE(ReadFile(dir_->Sub("before.jsonl")) == ReadFile(dir_->Sub("after.jsonl")));
  auto [replay_code, replay] = RunCommand(restored_cli + " replay " + *prediction_);
  EXPECT_EQ(replay_code, 0) << replay;
  EXPECT_THAT(replay, HasSubstr("match        exact (bit for bit)"));
  // A data dir that holds shards is not restored into.
  auto [used_code, used] = RunCommand(std::string(PREDLOGD_BINARY) + " --restore " + backups +
                                      " --data_dir " + dir_->Sub("restored") +
                                      " --partitions=2 --grpc_listen=127.0.0.1:0 --http_listen=");
  EXPECT_EQ(used_code, 1) << used;
  EXPECT_THAT(used, HasSubstr("already holds shards (" + dir_->Sub("restored") + "/shards)"));
}

TEST_F(PredlogCliTest, StatusShowsEveryShard) {
  auto [code, out] = RunCommand(Cli() + " status");
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("predlog.events-0"));
  EXPECT_THAT(out, HasSubstr("predlog.events-1"));
  EXPECT_THAT(out, HasSubstr("predlog.registry-0"));
  EXPECT_THAT(out, HasSubstr("predlog.access-0"));
  EXPECT_THAT(out, HasSubstr("LAG"));
}

// The access trail as an auditor reads it: the newest reads first, each
// with its request; exported like any shard, with proofs that verify.
TEST_F(PredlogCliTest, AccessListsWhoReadWhatAndTheTrailExportsProven) {
  // Other tests of the suite read too: only what this one reads counts.
  const std::string since = absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone());
  auto [get_code, get] = RunCommand(Cli() + " get " + *prediction_);
  ASSERT_EQ(get_code, 0) << get;
  auto [code, out] = RunCommand(Cli() + " access --method GetPrediction --limit 1 --from " + since);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("APPENDED_AT"));
  EXPECT_THAT(out, HasSubstr("(nobody: no identities)"));
  EXPECT_THAT(out, HasSubstr("/predlog.v1.PredictionLog/GetPrediction"));
  EXPECT_THAT(out, HasSubstr("{\"predictionId\":\"" + *prediction_ + "\"}"));
  EXPECT_THAT(out, HasSubstr("predlog.access-0#"));
  EXPECT_THAT(out, Not(HasSubstr("newest")));
  // When more match than are shown, it says so.
  auto [more_code, more] = RunCommand(Cli() + " access --limit 1");
  EXPECT_EQ(more_code, 0) << more;
  EXPECT_THAT(more, HasSubstr("/predlog.v1.Audit/ListAccess"));
  EXPECT_THAT(more, HasSubstr("the newest 1 shown; there may be more"));
  auto [json_code, json] = RunCommand(Cli() + " access --json --limit 2");
  EXPECT_EQ(json_code, 0) << json;
  EXPECT_THAT(json, HasSubstr("\"method\":\"/predlog.v1.Audit/ListAccess\""));
  auto [none_code, none] = RunCommand(Cli() + " access --identity ada-auditor");
  EXPECT_EQ(none_code, 0) << none;
  EXPECT_THAT(none, HasSubstr("no recorded access matches"));
  auto [bad_code, bad] = RunCommand(Cli() + " access --limit 0");
  EXPECT_EQ(bad_code, 2);
  EXPECT_THAT(bad, HasSubstr("--limit"));

  const std::string file = dir_->Sub("access.jsonl");
  auto [export_code, exported] = RunCommand(Cli() + " export --access-trail --out " + file);
  ASSERT_EQ(export_code, 0) << exported;
  EXPECT_THAT(ReadFile(file), HasSubstr("\"accessRecorded\":{\"method\":"));
  auto [verify_code, verified] =
      RunCommand(Cli() + " verify " + file + " " + file + ".manifest.json --key " +
                 dir_->Sub("data") + "/keys/checkpoint.key.pub");
  EXPECT_EQ(verify_code, 0) << verified;
  EXPECT_THAT(verified, HasSubstr("predlog.access-0: checkpoint of "));
  EXPECT_THAT(verified, HasSubstr("the export holds every shard of predlog.access its "
                                  "checkpoints name, each with every record below"));
}

// The demo registers each month's data: crm-applications and defaults ->
// applications@month -> credit@v1 (2026-10) and credit@v2 (2026-11).
TEST_F(PredlogCliTest, LineageShowsTheDataBehindADecisionAndImpactTheDecisionsBehindData) {
  auto [code, out] = RunCommand(Cli() + " lineage " + *prediction_);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("prediction:" + *prediction_ + "  subject " + *customer_));
  EXPECT_THAT(out, HasSubstr("made by: model:credit@v1  artifact sha256:"));
  EXPECT_THAT(out, HasSubstr("trained on: dataset:applications@2026-10  sha256:"));
  EXPECT_THAT(out, HasSubstr("derived from: dataset:crm-applications@2026-10"));
  EXPECT_THAT(out, HasSubstr("source postgres://crm/applications WHERE month = '2026-10'"));
  EXPECT_THAT(out, HasSubstr("produced by: pipeline:credit-features@3"));
  auto [dot_code, dot] = RunCommand(Cli() + " lineage --dot " + *prediction_);
  EXPECT_EQ(dot_code, 0) << dot;
  EXPECT_THAT(dot, HasSubstr("digraph lineage {"));
  EXPECT_THAT(dot, HasSubstr("\"model:credit@v1\" -> \"dataset:applications@2026-10\" "
                             "[label=\"trained on\"]"));
  auto [missing_code, missing] = RunCommand(Cli() + " lineage no-such-prediction");
  EXPECT_EQ(missing_code, 1) << missing;

  // Impact: every credit@v1 prediction, none of credit@v2's.
  auto [impact_code, impact] = RunCommand(Cli() + " impact crm-applications@2026-10 --json");
  ASSERT_EQ(impact_code, 0) << impact;
  predlog::v1::Impact answer;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(impact, &answer).ok()) << impact;
  ASSERT_EQ(answer.models_size(), 1) << impact;
  EXPECT_EQ(answer.models(0).model().version(), "v1");
  EXPECT_TRUE(answer.models(0).downstream());
  EXPECT_GT(answer.total_predictions(), 400u);
  EXPECT_LT(answer.total_predictions(), 800u);
  auto [text_code, text] = RunCommand(Cli() + " impact crm-applications@2026-11 --limit 3");
  EXPECT_EQ(text_code, 0) << text;
  // The downstream tree: the dataset, what was derived from it, the model.
  EXPECT_THAT(text, HasSubstr("\ndataset:crm-applications@2026-11  sha256:"));
  EXPECT_THAT(text, HasSubstr("\n  derived from it: dataset:applications@2026-11  sha256:"));
  EXPECT_THAT(text, HasSubstr("\n    trained on it: model:credit@v2  artifact sha256:"));
  EXPECT_THAT(text, HasSubstr("credit@v2  "));
  EXPECT_THAT(text, HasSubstr("(trained downstream)"));
  EXPECT_THAT(text, HasSubstr("(more: --page-token "));
  auto [bad_code, bad] = RunCommand(Cli() + " impact applications");
  EXPECT_EQ(bad_code, 2) << bad;

  // Exported as a verifiable trail: exactly the impacted predictions.
  auto [count_code, counted] = RunCommand(Cli() + " impact applications@2026-10 --json");
  ASSERT_EQ(count_code, 0) << counted;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(counted, &answer).ok()) << counted;
  const std::string file = dir_->Sub("impact.jsonl");
  auto [export_code, exported] =
      RunCommand(Cli() + " export --impact applications@2026-10 --out " + file);
  ASSERT_EQ(export_code, 0) << exported;
  EXPECT_THAT(exported,
              HasSubstr(absl::StrCat("exported ", answer.total_predictions(), " records")));
  auto [verify_code, verified] =
      RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify " + file + " " + file +
                 ".manifest.json --key " + dir_->Sub("data") + "/keys/checkpoint.key.pub");
  EXPECT_EQ(verify_code, 0) << verified;
  EXPECT_THAT(ReadFile(file + ".manifest.json"),
              HasSubstr("impact of dataset applications@2026-10"));
}

TEST_F(PredlogCliTest, CaseFileHasEverythingAndItsExportVerifies) {
  const std::string dir = dir_->Sub("case");
  auto [code, out] =
      RunCommand(Cli() + " case " + *prediction_ + " --out " + dir + " --against credit@v2");
  EXPECT_EQ(code, 0) << out;
  for (const char* name :
       {"summary.md", "event.json", "model.json", "lineage.json", "lineage.dot", "rerun.json",
        "record_at_decision.json", "trail.jsonl", "export.jsonl", "export.jsonl.manifest.json"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + name)) << name;
  }
  const std::string summary = ReadFile(dir + "/summary.md");
  EXPECT_THAT(summary, HasSubstr("# Case file: prediction " + *prediction_));
  EXPECT_THAT(summary, HasSubstr("exact match, bit for bit"));
  EXPECT_THAT(summary, HasSubstr("Trained on dataset applications@2026-10"));
  EXPECT_THAT(summary, HasSubstr("derived from: dataset:crm-applications@2026-1"));
  EXPECT_THAT(summary, HasSubstr("Counterfactual"));
  EXPECT_THAT(summary, HasSubstr("records verified"));
  EXPECT_THAT(summary, Not(HasSubstr("## Problems")));
  auto [verify_code, verify] = RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify " + dir +
                                          "/export.jsonl " + dir + "/export.jsonl.manifest.json");
  EXPECT_EQ(verify_code, 0) << verify;
}

// A subject id, a feature value and an id in an error message that hold
// terminal controls (ESC[2J clears the screen, OSC 0 retitles the window, a
// C1 CSI, a bidi override) are shown escaped in every human output; --json
// keeps the exact bytes (JSON escapes them itself).
TEST_F(PredlogCliTest, HumanOutputEscapesControlCharactersAndJsonKeepsThem) {
  const std::string lines = dir_->Sub("controls.jsonl");
  WriteFile(lines, R"({"predictionId":"esc-1","subjectId":"esc-\u001b[2J-\u009b1m-\u202e",)"
                   R"("servedAt":"2026-11-27T10:00:00Z","model":{"name":"credit","version":"v1"},)"
                   R"("inputs":[{"name":"note","stringValue":"a\nb\u001b]0;pwned\u0007"}],)"
                   R"("output":{"label":"deny\u001b[31m"}})"
                   "\n");
  auto [log_code, log] = RunCommand(Cli() + " log < " + lines);
  ASSERT_EQ(log_code, 0) << log;
  // The shell hands the raw bytes to predlog: ESC, then U+009B and U+202E in UTF-8.
  const std::string subject = R"sh("$(printf 'esc-\033[2J-\302\2331m-\342\200\256')")sh";

  auto [code, out] = RunCommand(Cli() + " trail --subject " + subject);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr(R"(esc-\x1b[2J-\u009b1m-\u202e)"));
  EXPECT_THAT(out, HasSubstr(R"x((deny\x1b[31m))x"));
  EXPECT_THAT(out, Not(HasSubstr("\x1b"))) << out;
  EXPECT_THAT(out, Not(HasSubstr("\xc2\x9b")));
  EXPECT_THAT(out, Not(HasSubstr("\xe2\x80\xae")));

  auto [get_code, get] = RunCommand(Cli() + " get esc-1");
  EXPECT_EQ(get_code, 0) << get;
  EXPECT_THAT(get, HasSubstr(R"(a\x0ab\x1b]0;pwned\x07)"));
  EXPECT_THAT(get, Not(HasSubstr("\x1b")));
  EXPECT_THAT(get, Not(HasSubstr("\x07")));

  // An error message that echoes the id is escaped too.
  auto [missing_code, missing] = RunCommand(Cli() + R"sh( get "$(printf 'nope-\033[2J')")sh");
  EXPECT_EQ(missing_code, 1);
  EXPECT_THAT(missing, HasSubstr(R"(nope-\x1b[2J)"));
  EXPECT_THAT(missing, Not(HasSubstr("\x1b")));

  auto [json_code, json] = RunCommand(Cli() + " trail --json --subject " + subject);
  EXPECT_EQ(json_code, 0) << json;
  predlog::v1::PredictionRecord record;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &record).ok()) << json;
  EXPECT_EQ(record.event().prediction_logged().subject_id(),
            "esc-\x1b[2J-\xc2\x9b"
            "1m-\xe2\x80\xae");
  EXPECT_EQ(record.event().prediction_logged().inputs(0).string_value(), "a\nb\x1b]0;pwned\x07");
}

// Only a line recorded as given exits 0: a CONFLICT (same id, other content)
// or REJECTED receipt is a failure, in the table and with --json.
TEST_F(PredlogCliTest, LogExitsOneWhenALineEndsConflict) {
  const std::string first = dir_->Sub("conflict-first.jsonl");
  const std::string second = dir_->Sub("conflict-second.jsonl");
  const std::string line =
      R"({"predictionId":"conflict-1","subjectId":"c-conflict","servedAt":"2026-11-27T10:00:00Z",)"
      R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"income","doubleValue":)";
  WriteFile(first, line + "52000}]}\n");
  WriteFile(second, line + "99000}]}\n");
  auto [code, out] = RunCommand(Cli() + " log < " + first);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("APPLIED"));

  auto [conflict_code, conflict] = RunCommand(Cli() + " log < " + second);
  EXPECT_EQ(conflict_code, 1) << conflict;
  EXPECT_THAT(conflict, HasSubstr("CONFLICT"));
  auto [json_code, json] = RunCommand(Cli() + " log --json < " + second);
  EXPECT_EQ(json_code, 1) << json;
  EXPECT_THAT(json, HasSubstr(R"("outcome":"CONFLICT")"));
  // The same content again is a DUPLICATE: nothing lost, exit 0.
  auto [dup_code, dup] = RunCommand(Cli() + " log --json < " + first);
  EXPECT_EQ(dup_code, 0) << dup;
  EXPECT_THAT(dup, HasSubstr(R"("outcome":"DUPLICATE")"));
}

// A line protobuf's JSON parser refuses is named by its line number, its
// field as the line spells it and the real reason, in both line forms.
TEST_F(PredlogCliTest, LogNamesTheFieldAndReasonOfARefusedLine) {
  const std::string lines = dir_->Sub("refused.jsonl");
  WriteFile(lines,
            R"({"predictionId":"bad-b64","subjectId":"c-bad","servedAt":"2026-11-27T10:00:00Z",)"
            R"("model":{"name":"credit","version":"v1"},"rawRequest":"not base64!"})"
            "\n"
            R"({"prediction":{"predictionId":"no-zone","subjectId":"c-bad",)"
            R"("servedAt":"2026-11-27T10:00:00","model":{"name":"credit","version":"v1"}}})"
            "\n"
            R"({"prediction":{"predictionId":"bad-b64-input","subjectId":"c-bad",)"
            R"("servedAt":"2026-11-27T10:00:00Z","model":{"name":"credit","version":"v1"},)"
            R"("inputs":[{"name":"x","doubleValue":1},{"name":"blob","bytesValue":"%%%"}]}})"
            "\n"
            R"({"predictionId":"no-zone-2","subjectId":"c-bad","servedAt":"2026-11-27 10:00"})"
            "\n");
  auto [code, out] = RunCommand(Cli() + " log < " + lines);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("line 1: rawRequest: 'not base64!' is not base64"));
  EXPECT_THAT(out, HasSubstr("line 2: prediction.servedAt: '2026-11-27T10:00:00' has no time "
                             "zone; want RFC 3339 with Z or an offset"));
  EXPECT_THAT(out, HasSubstr("line 3: prediction.inputs[1].bytesValue: '%%%' is not base64"));
  EXPECT_THAT(out, HasSubstr("line 4: servedAt: '2026-11-27 10:00' is not an RFC 3339 time"));
  EXPECT_THAT(out, Not(HasSubstr("Cannot find field")));
}

// `predlog --help`, `predlog help`, `-h` and each subcommand's --help answer
// on stdout with exit 0; bare `predlog` is a usage error listing the same.
TEST(PredlogCliHelp, HelpListsSubcommandsAndEachOnesFlagsDefaultsAndExample) {
  const std::string cli = PREDLOG_CLI_BINARY;
  const std::vector<std::string> subcommands = {"log",    "get",     "trail",  "replay", "trace",
                                                "state",  "changes", "models", "model",  "export",
                                                "verify", "status",  "case",   "demo",   "dataset"};
  for (const char* help : {" --help", " help", " -h"}) {
    // stdout only: stderr is dropped inside the subshell.
    auto [code, out] = RunCommand("(" + cli + help + " 2>/dev/null)");
    EXPECT_EQ(code, 0) << help << ": " << out;
    EXPECT_THAT(out, HasSubstr("usage: predlog SUBCOMMAND"));
    for (const std::string& name : subcommands) {
      EXPECT_THAT(out, HasSubstr("\n  " + name + " ")) << help << " lists " << name;
    }
    EXPECT_THAT(out, HasSubstr("--timeout_seconds N      each call's deadline; default: 30"));
  }
  for (const std::string& name : subcommands) {
    auto [code, out] = RunCommand("(" + cli + " " + name + " --help 2>/dev/null)");
    EXPECT_EQ(code, 0) << name << ": " << out;
    EXPECT_THAT(out, HasSubstr("usage: predlog " + name)) << name;
    EXPECT_THAT(out, HasSubstr("\n  predlog " + name)) << name << " has an example";
  }
  auto [trail_code, trail] = RunCommand("(" + cli + " trail --help 2>/dev/null)");
  EXPECT_EQ(trail_code, 0) << trail;
  EXPECT_THAT(trail, HasSubstr("--subject S"));
  EXPECT_THAT(trail, HasSubstr("--limit N                at most N predictions; default: all"));
  EXPECT_THAT(trail, HasSubstr("examples:\n  predlog trail --subject c-0042"));
  EXPECT_THAT(trail, HasSubstr("\n  predlog trail --trace "));
  auto [help_trail_code, help_trail] = RunCommand("(" + cli + " help trail 2>/dev/null)");
  EXPECT_EQ(help_trail_code, 0);
  EXPECT_EQ(help_trail, trail);
  auto [demo_code, demo] = RunCommand(cli + " demo --help");
  EXPECT_EQ(demo_code, 0) << demo;
  EXPECT_THAT(demo, HasSubstr("--customers N            default: 1000"));

  // Bare predlog: the list on stderr, nothing on stdout, exit 2.
  auto [bare_code, bare] = RunCommand("(" + cli + " >/dev/null)");
  EXPECT_EQ(bare_code, 2);
  EXPECT_THAT(bare, HasSubstr("missing subcommand"));
  EXPECT_THAT(bare, HasSubstr("\n  trail "));
  EXPECT_EQ(RunCommand("(" + cli + " 2>/dev/null)").second, "");
  auto [unknown_code, unknown] = RunCommand(cli + " help frobnicate");
  EXPECT_EQ(unknown_code, 2);
  EXPECT_THAT(unknown, HasSubstr("unknown subcommand 'frobnicate'"));
}

TEST(PredlogCliErrors, UsageAndUnreachableServer) {
  auto [usage_code, usage] = RunCommand(std::string(PREDLOG_CLI_BINARY) + " frobnicate");
  EXPECT_EQ(usage_code, 2);
  EXPECT_THAT(usage, HasSubstr("unknown subcommand 'frobnicate'"));
  auto [none_code, none] = RunCommand(std::string(PREDLOG_CLI_BINARY));
  EXPECT_EQ(none_code, 2);
  EXPECT_THAT(none, HasSubstr("missing subcommand"));
  EXPECT_EQ(RunCommand(std::string(PREDLOG_CLI_BINARY) + " get").first, 2);
  auto [value_code, value] = RunCommand(std::string(PREDLOG_CLI_BINARY) + " trail --subject");
  EXPECT_EQ(value_code, 2);
  EXPECT_THAT(value, HasSubstr("--subject needs a value"));
  // Nothing listens on port 1.
  auto [down_code, down] = RunCommand(std::string(PREDLOG_CLI_BINARY) +
                                      " --server=127.0.0.1:1 --timeout_seconds=2 " + "get p-1");
  EXPECT_EQ(down_code, 1);
  EXPECT_THAT(down, HasSubstr("cannot reach predlogd at 127.0.0.1:1"));
  auto [verify_code, verify] =
      RunCommand(std::string(PREDLOG_CLI_BINARY) + " verify /no/such/file /no/such/manifest");
  EXPECT_EQ(verify_code, 1);
  EXPECT_THAT(verify, HasSubstr("/no/such/manifest"));
}

// The demo fails cleanly (a message and exit 1, not an abort) when a call
// fails while its prediction stream is open: here v2 is already registered
// with other bytes, which the demo meets halfway through.
TEST(PredlogCliDemo, AFailureMidStreamIsAMessageNotACrash) {
  TempDir dir;
  testing::Predlogd server(PREDLOGD_BINARY,
                           {"--data_dir=" + dir.Sub("data"), "--grpc_listen=127.0.0.1:0",
                            "--http_listen=", "--partitions=2"});
  ASSERT_FALSE(server.grpc().empty()) << server.startup_line();
  const std::string cli = std::string(PREDLOG_CLI_BINARY) + " --server=" + server.grpc();
  WriteFile(dir.Sub("junk.bin"), "not the demo's v2");
  auto [reg_code, reg] =
      RunCommand(cli + " model register --name credit --version v2 --file " + dir.Sub("junk.bin"));
  ASSERT_EQ(reg_code, 0) << reg;
  auto [code, out] = RunCommand(cli + " demo credit --customers 10 --predictions 100");
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("register credit@v2"));
  EXPECT_THAT(out, Not(HasSubstr("terminate")));
}

// The first slice's contract (log JSON lines, get) still holds.
TEST(PredlogCliLog, LogsJsonLinesAndReadsThemBackWithPreciseExitCodes) {
  TempDir dir;
  testing::Predlogd server(PREDLOGD_BINARY,
                           {"--data_dir=" + dir.Sub("data"), "--grpc_listen=127.0.0.1:0",
                            "--http_listen=", "--partitions=2"});
  ASSERT_FALSE(server.grpc().empty()) << server.startup_line();
  const std::string cli = std::string(PREDLOG_CLI_BINARY) + " --server=" + server.grpc();
  const std::string lines = dir.Sub("predictions.jsonl");
  {
    std::ofstream out(lines);
    out << R"({"predictionId":"cli-1","subjectId":"c1","servedAt":"2026-11-27T10:00:00Z",)"
        << R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"income","doubleValue":52000}]})"
        << "\n"
        << R"({"prediction":{"predictionId":"cli-2","subjectId":"c2","servedAt":"2026-11-27T10:00:01Z",)"
        << R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"debt","doubleValue":3}]},)"
        << R"("actor":"support"})"
        << "\n";
  }
  auto [log_code, log_out] = RunCommand(cli + " log --json < " + lines);
  EXPECT_EQ(log_code, 0) << log_out;
  EXPECT_THAT(log_out, HasSubstr(R"("predictionId":"cli-1","outcome":"APPLIED")"));
  EXPECT_THAT(log_out, HasSubstr(R"("predictionId":"cli-2","outcome":"APPLIED")"));

  auto [get_code, get_out] = RunCommand(cli + " get cli-2");
  EXPECT_EQ(get_code, 0) << get_out;
  // predlogd knows nobody here: the request's actor shows as a claim.
  EXPECT_THAT(get_out, HasSubstr("support (claimed)"));
  EXPECT_THAT(get_out, HasSubstr("debt"));
  auto [json_code, json_out] = RunCommand(cli + " get --json cli-2");
  EXPECT_EQ(json_code, 0);
  EXPECT_THAT(json_out, HasSubstr(R"("claimedActor":"support")"));
  EXPECT_THAT(json_out, HasSubstr(R"("actor":"")"));

  auto [missing_code, missing_out] = RunCommand(cli + " get no-such-id");
  EXPECT_EQ(missing_code, 1);
  EXPECT_THAT(missing_out, HasSubstr("prediction_id no-such-id is not recorded"));
  // A bad line: its number named, exit 1, the good line still logged.
  const std::string mixed = dir.Sub("mixed.jsonl");
  std::ofstream(mixed)
      << "{not json\n"
      << R"({"predictionId":"cli-3","subjectId":"c3","servedAt":"2026-11-27T10:00:02Z",)"
      << R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"x","doubleValue":1}]})"
      << "\n";
  auto [mixed_code, mixed_out] = RunCommand(cli + " log < " + mixed);
  EXPECT_EQ(mixed_code, 1);
  EXPECT_THAT(mixed_out, HasSubstr("line 1: not a LogRequest"));
  EXPECT_EQ(RunCommand(cli + " get cli-3").first, 0);
  // An invalid prediction: the receipt carries INVALID_ARGUMENT naming the field.
  const std::string invalid = dir.Sub("invalid.jsonl");
  std::ofstream(invalid) << R"({"predictionId":"cli-4","servedAt":"2026-11-27T10:00:02Z",)"
                         << R"("model":{"name":"credit","version":"v1"},"inputs":[{"name":"x"}]})"
                         << "\n";
  auto [invalid_code, invalid_out] = RunCommand(cli + " log < " + invalid);
  EXPECT_EQ(invalid_code, 1);
  EXPECT_THAT(invalid_out, HasSubstr("prediction.subject_id is empty"));
  EXPECT_EQ(server.Stop(), 0);
  auto [down_code, down_out] = RunCommand(cli + " get cli-1");
  EXPECT_EQ(down_code, 1);
  EXPECT_THAT(down_out, HasSubstr(server.grpc()));
}

}  // namespace
}  // namespace predlog
