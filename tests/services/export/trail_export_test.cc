// TrailWriter and VerifyExport on records read back from real shards.
#include "services/export/trail_export.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "storage/acked_mark.h"
#include "storage/sha256.h"
#include "storage/shard_store.h"
#include "storage/timestamps.h"
#include "tests/testing/events.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace predlog::services {
namespace {

using ::predlog::storage::ShardStore;
using ::predlog::testing::Msg;
using ::predlog::testing::ReadFile;
using ::predlog::testing::StatusIs;
using ::predlog::testing::TempDir;
using ::predlog::v1::AuditEvent;
using ::predlog::v1::ExportBatch;
using ::predlog::v1::ExportedRecord;
using ::predlog::v1::ExportManifest;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

// A prediction with CSV-hostile content: commas, quotes, a newline.
AuditEvent Prediction(int n, const std::string& subject, bool extra_input) {
  testing::PredictionSpec spec;
  spec.prediction_id = absl::StrCat("p", n);
  spec.subject_id = subject;
  spec.features = 3;
  spec.score = static_cast<float>(n % 10) / 10.0f;
  spec.served_at = absl::FromUnixSeconds(1'700'000'000) + absl::Milliseconds(n * 250);
  spec.recorded_at = spec.served_at;
  AuditEvent event = testing::MakePrediction(spec);
  auto* p = event.mutable_prediction_logged();
  auto* note = p->add_inputs();
  note->set_name("note, free text");
  note->set_string_value(n % 3 == 0 ? "said \"hi\",\nthen left" : "plain");
  p->add_inputs()->set_name("missing");  // unset value
  if (extra_input) {
    auto* extra = p->add_inputs();
    extra->set_name("late_feature");
    extra->set_int64_value(-9'000'000'000'000LL);
  }
  return event;
}

// Two shards of real records: predictions of alice and bob, entity changes
// and a model registration, read back from ShardStores.
class TrailExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int shard = 0; shard < 2; ++shard) {
      storage::ShardOptions options;
      options.dir = dir_.Sub(absl::StrCat("shard-", shard));
      options.name = absl::StrCat("predlog.events-", shard);
      ASSERT_OK_AND_ASSIGN(stores_[shard], ShardStore::Open(options));
      std::vector<std::string> payloads;
      for (int i = 0; i < 12; ++i) {
        AuditEvent event;
        if (i == 4) {
          event = testing::MakeEntityChange("customer", "alice", {{"limit", 1500.5}}, {"note"});
        } else if (i == 9) {
          event = testing::MakeModelRegistered("credit-limit", "v2", std::string(64, 'a'));
        } else {
          event = Prediction(shard * 100 + i, i % 2 == 0 ? "alice" : "bob", i == 7);
        }
        payloads.push_back(event.SerializeAsString());
      }
      std::vector<storage::SourceMessage> messages;
      for (size_t i = 0; i < payloads.size(); ++i) {
        messages.push_back(Msg("incarnation-1", static_cast<int64_t>(i), payloads[i]));
      }
      ASSERT_OK_AND_ASSIGN(auto result, stores_[shard]->ApplyBatch(messages));
      for (const auto& m : result.messages) {
        ASSERT_EQ(m.outcome, storage::FoldOutcome::kApplied) << m.reason;
      }
    }
  }

  ExportedRecord ToExported(const ShardStore& store, const storage::StoredRecord& r) {
    ExportedRecord e;
    e.set_shard(store.name());
    e.set_index(r.index);
    e.set_event_bytes(r.payload);
    e.set_leaf_sha256(storage::ToHex(r.leaf));
    // The chain value before it: the previous record's, or across an
    // accepted loss the last record's before the lost indexes (as the
    // server's export does).
    storage::Digest prev = storage::kChainGenesis;
    for (uint64_t i = r.index; i-- > 0;) {
      absl::StatusOr<storage::StoredRecord> before = store.Get(i);
      if (absl::IsNotFound(before.status())) continue;
      EXPECT_TRUE(before.ok()) << before.status();
      if (before.ok()) prev = before->chain;
      break;
    }
    e.set_prev_chain_sha256(storage::ToHex(prev));
    e.set_chain_sha256(storage::ToHex(r.chain));
    if (r.appended_at) storage::TimeToProto(*r.appended_at, e.mutable_appended_at());
    return e;
  }

  // Folds `event` alone into a fresh shard "predlog.events-9" and exports it
  // as CSV named `name`; sets the manifest's path.
  void ExportOneEventAsCsv(const AuditEvent& event, const std::string& name,
                           std::string* manifest) {
    storage::ShardOptions options;
    options.dir = dir_.Sub(name + "-shard");
    options.name = "predlog.events-9";
    ASSERT_OK_AND_ASSIGN(auto store, ShardStore::Open(options));
    const std::string payload = event.SerializeAsString();
    ASSERT_OK_AND_ASSIGN(auto applied, store->ApplyBatch({Msg("incarnation-1", 0, payload)}));
    ASSERT_EQ(applied.messages[0].outcome, storage::FoldOutcome::kApplied);
    ASSERT_OK_AND_ASSIGN(auto stored, store->ReadRange(0, 1));
    *manifest = Export({ToExported(*store, stored[0])}, ExportFormat::kCsv, name);
  }

  // Every record of both shards, shard by shard.
  std::vector<ExportedRecord> AllRecords() {
    std::vector<ExportedRecord> out;
    for (const auto& store : stores_) {
      absl::StatusOr<std::vector<storage::StoredRecord>> records = store->ReadRange(0, 1000);
      EXPECT_TRUE(records.ok()) << records.status();
      for (const auto& r : *records) out.push_back(ToExported(*store, r));
    }
    return out;
  }

  // One subject's predictions in shard 0: a sparse export.
  std::vector<ExportedRecord> SubjectRecords(const std::string& subject) {
    absl::StatusOr<storage::ScanPage> page = stores_[0]->ScanSubject(subject, {}, "", 1000);
    EXPECT_TRUE(page.ok()) << page.status();
    std::vector<ExportedRecord> out;
    for (const auto& r : page->records) out.push_back(ToExported(*stores_[0], r));
    return out;
  }

  // Writes `records` as `format`; returns the manifest path.
  std::string Export(const std::vector<ExportedRecord>& records, ExportFormat format,
                     const std::string& name = "trail",
                     const predlog::v1::ExportTrailRequest* filter = nullptr) {
    const std::string file = dir_.Sub(absl::StrCat(name, ".", ExportFormatName(format)));
    const std::string manifest_path = dir_.Sub(absl::StrCat(name, ".manifest.json"));
    absl::StatusOr<std::unique_ptr<TrailWriter>> writer = TrailWriter::Create(file, format);
    EXPECT_TRUE(writer.ok()) << writer.status();
    for (const auto& r : records) EXPECT_OK((*writer)->Add(r));
    ExportManifest manifest;
    manifest.set_exported_by("auditor@host");
    if (filter != nullptr) {
      *manifest.mutable_filter() = *filter;
    } else {
      // What predlogd would have written: one subject's predictions are a
      // subject export, anything else an export of everything.
      std::set<std::string> subjects;
      bool predictions = true;
      for (const auto& r : records) {
        predlog::v1::AuditEvent event;
        predictions =
            predictions && event.ParseFromString(r.event_bytes()) && event.has_prediction_logged();
        if (predictions) subjects.insert(event.prediction_logged().subject_id());
      }
      if (predictions && subjects.size() == 1) {
        manifest.mutable_filter()->set_subject_id(*subjects.begin());
      } else {
        manifest.mutable_filter()->set_all(true);
      }
    }
    absl::StatusOr<ExportManifest> done = (*writer)->Finish(manifest, manifest_path);
    EXPECT_TRUE(done.ok()) << done.status();
    return manifest_path;
  }

  std::string FileOf(const std::string& manifest_path, ExportFormat format) {
    return manifest_path.substr(0, manifest_path.size() - strlen(".manifest.json")) + "." +
           std::string(ExportFormatName(format));
  }

  ExportVerification Verify(const std::string& manifest_path) {
    absl::StatusOr<ExportVerification> v = VerifyExport("", manifest_path);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : ExportVerification{};
  }

  // The line (or CSV row) of `shard#index`: its byte range and line number.
  struct Located {
    size_t begin = 0, end = 0;
    int line = 0;
  };
  static Located Locate(const std::string& file, ExportFormat format, const std::string& shard,
                        uint64_t index) {
    Located at;
    const std::string key =
        format == ExportFormat::kJsonl
            ? absl::StrCat("{\"shard\":\"", shard, "\"",
                           index == 0 ? "" : absl::StrCat(",\"index\":\"", index, "\""),
                           ",\"event\"")
            : absl::StrCat("\n", shard, ",", index, ",");
    size_t pos = file.find(key);
    EXPECT_NE(pos, std::string::npos) << key;
    if (format == ExportFormat::kCsv) ++pos;
    at.begin = pos;
    at.line = static_cast<int>(std::count(file.begin(), file.begin() + pos, '\n')) + 1;
    if (format == ExportFormat::kJsonl) {
      at.end = file.find('\n', pos) + 1;
    } else {
      // The row ends at the CRLF that is followed by the next row or the end.
      size_t p = pos;
      bool quoted = false;
      for (; p < file.size(); ++p) {
        if (file[p] == '"') quoted = !quoted;
        if (file[p] == '\n' && !quoted) break;
      }
      at.end = p + 1;
    }
    return at;
  }

  // The bytes TrailWriter renders for `record` on its own (CSV: without header).
  std::string RenderAlone(const ExportedRecord& record, ExportFormat format) {
    const std::string manifest = Export({record}, format, "alone");
    std::string file = ReadFile(FileOf(manifest, format));
    if (format == ExportFormat::kCsv) file = file.substr(file.find("\r\n") + 2);
    return file;
  }

  TempDir dir_;
  std::unique_ptr<ShardStore> stores_[2];
};

constexpr ExportFormat kFormats[] = {ExportFormat::kJsonl, ExportFormat::kCsv};

TEST(ExportFormatTest, ParsesJsonlAndCsvAndNamesAnythingElse) {
  ASSERT_OK_AND_ASSIGN(ExportFormat jsonl, ParseExportFormat("jsonl"));
  EXPECT_EQ(jsonl, ExportFormat::kJsonl);
  ASSERT_OK_AND_ASSIGN(ExportFormat csv, ParseExportFormat("csv"));
  EXPECT_EQ(csv, ExportFormat::kCsv);
  EXPECT_THAT(ParseExportFormat("xml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"xml\"")));
}

TEST_F(TrailExportTest, ContiguousExportOfTwoShardsVerifies) {
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path = Export(AllRecords(), format);
    const ExportVerification v = Verify(manifest_path);
    EXPECT_TRUE(v.ok) << v.failure;
    EXPECT_EQ(v.records_checked, 24u);
    EXPECT_EQ(v.failure, "");
  }
}

TEST_F(TrailExportTest, ManifestListsOneRangePerShardWithTheStoredChainAnchors) {
  const std::string manifest_path = Export(AllRecords(), ExportFormat::kJsonl);
  ExportManifest manifest;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(ReadFile(manifest_path), &manifest).ok());
  EXPECT_EQ(manifest.format_version(), 4u);
  EXPECT_EQ(manifest.file_name(), "trail.jsonl");
  EXPECT_EQ(manifest.file_format(), "jsonl");
  EXPECT_EQ(manifest.record_count(), 24u);
  EXPECT_EQ(manifest.exported_by(), "auditor@host");
  EXPECT_TRUE(manifest.filter().all());
  const std::string file = ReadFile(FileOf(manifest_path, ExportFormat::kJsonl));
  EXPECT_EQ(manifest.file_bytes(), file.size());
  EXPECT_EQ(manifest.file_sha256(), storage::ToHex(storage::Sha256(file)));
  ASSERT_EQ(manifest.shards_size(), 2);
  for (int s = 0; s < 2; ++s) {
    const auto& shard = manifest.shards(s);
    EXPECT_EQ(shard.shard(), absl::StrCat("predlog.events-", s));
    EXPECT_EQ(shard.records(), 12u);
    ASSERT_EQ(shard.ranges_size(), 1);
    EXPECT_EQ(shard.ranges(0).first_index(), 0u);
    EXPECT_EQ(shard.ranges(0).last_index(), 11u);
    EXPECT_EQ(shard.ranges(0).prev_chain_sha256(), storage::ToHex(storage::kChainGenesis));
    EXPECT_EQ(shard.ranges(0).chain_sha256(), storage::ToHex(stores_[s]->Head().chain_head));
  }
}

TEST_F(TrailExportTest, SparseExportOfOneSubjectVerifiesWithOneRangePerRecord) {
  const std::vector<ExportedRecord> alice = SubjectRecords("alice");
  ASSERT_EQ(alice.size(), 5u);  // indexes 0, 2, 6, 8, 10
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path = Export(alice, format);
    const ExportVerification v = Verify(manifest_path);
    EXPECT_TRUE(v.ok) << v.failure;
    EXPECT_EQ(v.records_checked, 5u);
    ExportManifest manifest;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(ReadFile(manifest_path), &manifest).ok());
    ASSERT_EQ(manifest.shards_size(), 1);
    EXPECT_EQ(manifest.shards(0).ranges_size(), 5);
  }
}

TEST_F(TrailExportTest, EveryRecordMustMatchTheFilterItsManifestClaims) {
  // Alice's export, with her filter, verifies. The same file with only the
  // manifest's filter changed (another subject; another month) does not.
  const std::vector<ExportedRecord> alice = SubjectRecords("alice");
  predlog::v1::ExportTrailRequest filter;
  filter.set_subject_id("alice");
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path = Export(alice, format, "trail", &filter);
    ExportVerification v = Verify(manifest_path);
    EXPECT_TRUE(v.ok) << v.failure;

    ExportManifest manifest;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(ReadFile(manifest_path), &manifest).ok());
    auto rewrite = [&](const ExportManifest& m) {
      std::string json;
      ASSERT_TRUE(google::protobuf::util::MessageToJsonString(m, &json).ok());
      std::ofstream(manifest_path, std::ios::trunc) << json;
    };
    ExportManifest bob = manifest;
    bob.mutable_filter()->set_subject_id("bob");
    rewrite(bob);
    v = Verify(manifest_path);
    EXPECT_FALSE(v.ok);
    EXPECT_THAT(v.failure, HasSubstr("is a prediction of subject alice, not of the manifest's "
                                     "filter subject bob"));

    ExportManifest later = manifest;
    later.mutable_filter()->mutable_from()->set_seconds(4'102'444'800);  // 2100-01-01
    rewrite(later);
    v = Verify(manifest_path);
    EXPECT_FALSE(v.ok);
    EXPECT_THAT(v.failure, HasSubstr("before the manifest's filter from 2100-01-01"));

    ExportManifest model = manifest;
    model.mutable_filter()->mutable_model()->set_name("no-such-model");
    model.mutable_filter()->mutable_model()->set_version("v1");
    rewrite(model);
    v = Verify(manifest_path);
    EXPECT_FALSE(v.ok);
    EXPECT_THAT(v.failure, HasSubstr("not of the manifest's filter model no-such-model@v1"));

    // Claiming the sparse export holds everything, or nothing in particular.
    ExportManifest all = manifest;
    all.mutable_filter()->set_all(true);
    rewrite(all);
    v = Verify(manifest_path);
    EXPECT_FALSE(v.ok);
    EXPECT_THAT(v.failure, HasSubstr("in an export of everything that is not a recorded loss"));
    ExportManifest none = manifest;
    none.clear_filter();
    rewrite(none);
    v = Verify(manifest_path);
    EXPECT_FALSE(v.ok);
    EXPECT_THAT(v.failure, HasSubstr("it has no filter"));
  }
}

TEST_F(TrailExportTest, AnExportOfEverythingHoldsWhatItsShardsAppendedInItsTimeRange) {
  const std::vector<ExportedRecord> all = AllRecords();
  absl::Time first = absl::InfiniteFuture(), last = absl::InfinitePast();
  for (const ExportedRecord& r : all) {
    ASSERT_TRUE(r.has_appended_at());
    first = std::min(first, storage::TimeFromProto(r.appended_at()));
    last = std::max(last, storage::TimeFromProto(r.appended_at()));
  }
  predlog::v1::ExportTrailRequest filter;
  filter.set_all(true);
  storage::TimeToProto(first, filter.mutable_from());
  storage::TimeToProto(last + absl::Microseconds(1), filter.mutable_to());
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path = Export(all, format, "trail", &filter);
    ExportVerification v = Verify(manifest_path);
    EXPECT_TRUE(v.ok) << v.failure;
    // Each line carries its record's append time.
    EXPECT_THAT(ReadFile(FileOf(manifest_path, format)),
                HasSubstr(format == ExportFormat::kJsonl ? "\"appendedAt\":\"" : "appended_at"));

    // The same file under a manifest whose range ends before its last record.
    ExportManifest manifest;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(ReadFile(manifest_path), &manifest).ok());
    storage::TimeToProto(last, manifest.mutable_filter()->mutable_to());
    std::string json;
    ASSERT_TRUE(google::protobuf::util::MessageToJsonString(manifest, &json).ok());
    std::ofstream(manifest_path, std::ios::trunc) << json;
    v = Verify(manifest_path);
    EXPECT_FALSE(v.ok);
    EXPECT_THAT(v.failure, HasSubstr("not before the manifest's filter to"));
  }
}

TEST_F(TrailExportTest, AppendTimesThatGoBackWithinAShardAreNotWhatAShardWrites) {
  std::vector<ExportedRecord> all = AllRecords();
  // Record 3 of shard 0 claims to have been appended a day before record 2.
  const absl::Time at = storage::TimeFromProto(all[2].appended_at());
  storage::TimeToProto(at - absl::Hours(24), all[3].mutable_appended_at());
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path = Export(all, format);
    ExportVerification v = Verify(manifest_path);
    EXPECT_FALSE(v.ok);
    EXPECT_THAT(v.failure, HasSubstr("a shard's append times never go back"));
  }
}

TEST_F(TrailExportTest, CsvHasTheDocumentedHeaderAndQuotesHostileCells) {
  const std::string file =
      ReadFile(FileOf(Export(AllRecords(), ExportFormat::kCsv), ExportFormat::kCsv));
  EXPECT_THAT(
      file,
      ::testing::StartsWith(
          "shard,index,leaf_sha256,prev_chain_sha256,chain_sha256,appended_at,recorded_at,actor,"
          "kind,prediction_id,subject_id,served_at,model_name,model_version,"
          "artifact_sha256,pipeline_name,pipeline_version,scores,label,trace_id,"
          "input.feature_0,input.feature_1,input.feature_2,"
          "\"input.note, free text\",input.missing,extra_inputs,event_bytes_base64\r\n"));
  EXPECT_THAT(file, HasSubstr(",\"said \"\"hi\"\",\nthen left\","));
  EXPECT_THAT(file, HasSubstr(",\"{\"\"late_feature\"\":\"\"-9000000000000\"\"}\","));
  EXPECT_THAT(file, HasSubstr(",entity_changed,,,,,,,,,,,,,,,,,"));
}

// A spreadsheet must never evaluate logged text as a formula (CSV
// injection): text cells starting with = + - @ TAB, CR or LF get a leading ',
// numbers keep their sign, and the export still verifies.
TEST_F(TrailExportTest, CsvTextThatLooksLikeAFormulaIsShownAsText) {
  testing::PredictionSpec spec;
  spec.prediction_id = "=HYPERLINK(\"http://evil\",\"x\")";
  spec.subject_id = "-2+3";
  spec.features = 1;
  AuditEvent event = testing::MakePrediction(spec);
  event.set_actor("@SUM(A1)");
  auto* p = event.mutable_prediction_logged();
  p->mutable_output()->set_label("+1");
  p->set_trace_id("\tcmd");
  p->mutable_inputs(0)->set_double_value(-5.5);
  auto* text = p->add_inputs();
  text->set_name("comment");
  text->set_string_value("=cmd|' /C calc'!A0");
  auto* safe = p->add_inputs();
  safe->set_name("city");
  safe->set_string_value("Lyon");
  auto* blob = p->add_inputs();
  blob->set_name("blob");
  blob->set_bytes_value(std::string("\xf8\x01", 2));  // base64 "+AE="

  std::string manifest;
  ASSERT_NO_FATAL_FAILURE(ExportOneEventAsCsv(event, "f", &manifest));
  const std::string file = ReadFile(FileOf(manifest, ExportFormat::kCsv));

  EXPECT_THAT(file, HasSubstr(",'@SUM(A1),prediction_logged,"));
  EXPECT_THAT(file, HasSubstr(",\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",'-2+3,"));
  EXPECT_THAT(file, HasSubstr(",'+1,'\tcmd,-5.5,'=cmd|' /C calc'!A0,Lyon,'+AE=,"));
  // No cell of the row starts with a formula character unescaped.
  const std::string row = file.substr(file.find("\r\n") + 2);
  for (const absl::string_view cell : absl::StrSplit(row, ',')) {
    if (cell.empty() || cell == "-5.5") continue;
    EXPECT_EQ(absl::string_view("=+-@\t\r\n").find(cell.front()), absl::string_view::npos) << cell;
  }
  EXPECT_EQ(Verify(manifest).records_checked, 1u);
}

// The actor column shows the client's claim beside the authenticated actor
// (issue 14), and what it shows is re-rendered and verified like any cell.
TEST_F(TrailExportTest, CsvActorShowsTheClaimBesideTheAuthenticatedActor) {
  const struct {
    const char* actor;
    const char* claim;
    const char* cell;
  } cases[] = {
      {"limits-api", "", ",limits-api,prediction_logged,"},
      {"", "limits-api", ",limits-api (claimed),prediction_logged,"},
      {"svc-a", "alice", ",svc-a (claimed: alice),prediction_logged,"},
      {"alice", "alice", ",alice,prediction_logged,"},
      {"", "=1+1", ",'=1+1 (claimed),prediction_logged,"},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.cell);
    testing::PredictionSpec spec;
    spec.prediction_id = "claim-" + std::to_string(n);
    spec.features = 1;
    AuditEvent event = testing::MakePrediction(spec);
    event.set_actor(c.actor);
    event.set_claimed_actor(c.claim);
    std::string manifest;
    ASSERT_NO_FATAL_FAILURE(ExportOneEventAsCsv(event, "claim" + std::to_string(n++), &manifest));
    EXPECT_THAT(ReadFile(FileOf(manifest, ExportFormat::kCsv)), HasSubstr(c.cell));
    EXPECT_EQ(Verify(manifest).records_checked, 1u);
  }
}

// A line break before the formula does not hide it: a cell is quoted with
// its line break kept, and the spreadsheet evaluates what follows.
TEST_F(TrailExportTest, CsvTextStartingWithALineBreakIsShownAsText) {
  testing::PredictionSpec spec;
  spec.prediction_id = "lf-formula";
  spec.subject_id = "\n=1+1";
  spec.features = 1;
  AuditEvent event = testing::MakePrediction(spec);
  event.set_actor("\r=1+1");
  auto* p = event.mutable_prediction_logged();
  p->mutable_output()->set_label("\n@SUM(A1)");
  auto* text = p->add_inputs();
  text->set_name("comment");
  text->set_string_value("\n=cmd|' /C calc'!A0");

  std::string manifest;
  ASSERT_NO_FATAL_FAILURE(ExportOneEventAsCsv(event, "lf", &manifest));
  const std::string file = ReadFile(FileOf(manifest, ExportFormat::kCsv));

  EXPECT_THAT(file, HasSubstr(",\"'\r=1+1\",prediction_logged,lf-formula,\"'\n=1+1\","));
  EXPECT_THAT(file, HasSubstr(",\"'\n@SUM(A1)\","));
  EXPECT_THAT(file, HasSubstr(",\"'\n=cmd|' /C calc'!A0\","));
  EXPECT_THAT(file, ::testing::Not(HasSubstr(",\"\n")));
  EXPECT_EQ(Verify(manifest).records_checked, 1u);
}

// Records before the first prediction are held until it names the input
// columns; they must get as many (empty) cells as every later row.
TEST_F(TrailExportTest, CsvRowsBeforeTheFirstPredictionHaveEveryColumn) {
  std::vector<ExportedRecord> records;
  for (const ExportedRecord& r : AllRecords()) {
    // From shard 0's entity change (index 4) on: the export starts with a
    // record that is not a prediction.
    if (r.shard() != "predlog.events-0" || r.index() >= 4) records.push_back(r);
  }
  const std::string manifest_path = Export(records, ExportFormat::kCsv);
  const std::string file = ReadFile(FileOf(manifest_path, ExportFormat::kCsv));
  const std::string header = file.substr(0, file.find("\r\n"));
  const std::string first_row =
      file.substr(header.size() + 2, file.find("\r\n", header.size() + 2) - header.size() - 2);
  EXPECT_THAT(first_row, HasSubstr(",entity_changed,"));
  // Neither contains a quoted comma: count the cells by commas.
  EXPECT_EQ(std::count(first_row.begin(), first_row.end(), ','),
            std::count(header.begin(), header.end(), ',') - 1)  // "input.note, free text"
      << first_row;
  const ExportVerification v = Verify(manifest_path);
  EXPECT_TRUE(v.ok) << v.failure;
  EXPECT_EQ(v.records_checked, records.size());
}

// One flipped byte at a time, in each part of a line: the failure names it.
TEST_F(TrailExportTest, FlippedByteIsFoundAndNamed) {
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path = Export(AllRecords(), format);
    const std::string path = FileOf(manifest_path, format);
    const std::string original = ReadFile(path);
    const Located at = Locate(original, format, "predlog.events-1", 6);
    const std::string line = absl::StrCat("line ", at.line);
    const std::string row = original.substr(at.begin, at.end - at.begin);
    const auto flip_at = [&](size_t offset_in_row, char to) {
      std::string tampered = original;
      tampered[at.begin + offset_in_row] = to;
      WriteFile(path, tampered);
      return Verify(manifest_path);
    };

    // Inside the decoded event: the actor.
    const size_t actor = row.find("limits-api");
    ASSERT_NE(actor, std::string::npos);
    ExportVerification v = flip_at(actor, 'L');
    EXPECT_FALSE(v.ok);
    EXPECT_THAT(v.failure,
                ::testing::StartsWith(absl::StrCat(line, " (predlog.events-1#6): the ",
                                                   format == ExportFormat::kJsonl ? "line" : "row",
                                                   " is not what its event_bytes decode to")));

    // Inside event_bytes (base64, away from the padding).
    const size_t b64 =
        format == ExportFormat::kJsonl ? row.find("\"eventBytes\":\"") + 14 : row.rfind(',') + 1;
    const size_t middle = b64 + 40;
    v = flip_at(middle, row[middle] == 'A' ? 'B' : 'A');
    EXPECT_EQ(
        v.failure,
        absl::StrCat(line, " (predlog.events-1#6): leaf_sha256 does not match the event bytes"));

    // In a hash: the leaf, then the chain.
    const std::string leaf = AllRecords()[18].leaf_sha256();
    const size_t leaf_at = row.find(leaf);
    ASSERT_NE(leaf_at, std::string::npos);
    v = flip_at(leaf_at + 10, leaf[10] == '0' ? '1' : '0');
    EXPECT_EQ(
        v.failure,
        absl::StrCat(line, " (predlog.events-1#6): leaf_sha256 does not match the event bytes"));
    const std::string chain = AllRecords()[18].chain_sha256();
    v = flip_at(row.find(chain) + 5, chain[5] == '0' ? '1' : '0');
    EXPECT_EQ(v.failure, absl::StrCat(line,
                                      " (predlog.events-1#6): chain_sha256 is not "
                                      "SHA-256(prev_chain_sha256 || leaf_sha256)"));

    // In the index: 6 becomes 2, behind the record before it.
    const size_t index_at =
        format == ExportFormat::kJsonl ? row.find("\"index\":\"6\"") + 9 : row.find(",6,") + 1;
    v = flip_at(index_at, '2');
    EXPECT_EQ(v.failure,
              absl::StrCat(
                  line, " (predlog.events-1#2): out of log order after predlog.events-1#5 on line ",
                  Locate(original, format, "predlog.events-1", 5).line));
    // ... or 6 becomes 7, which the manifest lists next but one.
    v = flip_at(index_at, '7');
    EXPECT_THAT(v.failure, HasSubstr("out of log order after predlog.events-1#7 on " + line));

    WriteFile(path, original);
    EXPECT_TRUE(Verify(manifest_path).ok);
  }
}

TEST_F(TrailExportTest, DroppedLineIsNamedAsMissing) {
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path = Export(AllRecords(), format);
    const std::string path = FileOf(manifest_path, format);
    std::string file = ReadFile(path);
    const Located at = Locate(file, format, "predlog.events-0", 5);
    file.erase(at.begin, at.end - at.begin);
    WriteFile(path, file);
    const ExportVerification v = Verify(manifest_path);
    EXPECT_FALSE(v.ok);
    EXPECT_EQ(v.failure, "predlog.events-0#5 is listed in the manifest but missing from the file");
  }
}

TEST_F(TrailExportTest, DroppedLastLineOfASparseExportIsNamedAsMissing) {
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path = Export(SubjectRecords("alice"), format);
    const std::string path = FileOf(manifest_path, format);
    std::string file = ReadFile(path);
    const Located at = Locate(file, format, "predlog.events-0", 10);
    file.erase(at.begin, at.end - at.begin);
    WriteFile(path, file);
    EXPECT_EQ(Verify(manifest_path).failure,
              "predlog.events-0#10 is listed in the manifest but missing from the file");
  }
}

TEST_F(TrailExportTest, SwappedLinesAreNamedAsOutOfOrder) {
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::string manifest_path = Export(AllRecords(), format);
    const std::string path = FileOf(manifest_path, format);
    const std::string file = ReadFile(path);
    const Located a = Locate(file, format, "predlog.events-0", 7);
    const Located b = Locate(file, format, "predlog.events-0", 8);
    ASSERT_EQ(a.end, b.begin);
    const std::string swapped = file.substr(0, a.begin) + file.substr(b.begin, b.end - b.begin) +
                                file.substr(a.begin, a.end - a.begin) + file.substr(b.end);
    WriteFile(path, swapped);
    const int second_line =
        a.line + static_cast<int>(std::count(file.begin() + b.begin, file.begin() + b.end, '\n'));
    EXPECT_EQ(
        Verify(manifest_path).failure,
        absl::StrCat("line ", second_line,
                     " (predlog.events-0#7): out of log order after predlog.events-0#8 on line ",
                     a.line));
  }
}

// An attacker rewrites a record and recomputes its leaf (and its line) to match.
TEST_F(TrailExportTest, RewrittenRecordWithRecomputedLeafIsCaughtByTheChain) {
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    const std::vector<ExportedRecord> records = AllRecords();
    const std::string manifest_path = Export(records, format);
    const std::string path = FileOf(manifest_path, format);
    const std::string file = ReadFile(path);
    const Located at = Locate(file, format, "predlog.events-0", 3);

    ExportedRecord forged = records[3];
    AuditEvent event;
    ASSERT_TRUE(event.ParseFromString(forged.event_bytes()));
    event.mutable_prediction_logged()->mutable_output()->set_float_scores(0, 0.99f);
    event.mutable_prediction_logged()->mutable_output()->set_label("deny");
    forged.set_event_bytes(event.SerializeAsString());
    const storage::Digest leaf = storage::Sha256(forged.event_bytes());
    forged.set_leaf_sha256(storage::ToHex(leaf));
    const storage::Digest prev = *storage::DigestFromHex(forged.prev_chain_sha256());
    forged.set_chain_sha256(storage::ToHex(storage::ChainNext(prev, leaf)));
    const std::string with_new_chain = RenderAlone(forged, format);

    // The stale chain value left in place: the record's own chain check fails.
    std::string stale = with_new_chain;
    const size_t pos = stale.find(forged.chain_sha256());
    ASSERT_NE(pos, std::string::npos);
    stale.replace(pos, 64, records[3].chain_sha256());
    std::string tampered = file;
    tampered.replace(at.begin, at.end - at.begin, stale);
    WriteFile(path, tampered);
    EXPECT_EQ(Verify(manifest_path).failure,
              absl::StrCat("line ", at.line,
                           " (predlog.events-0#3): chain_sha256 is not SHA-256(prev_chain_sha256 "
                           "|| leaf_sha256)"));

    // The chain recomputed too: the next record no longer continues it.
    tampered = file;
    tampered.replace(at.begin, at.end - at.begin, with_new_chain);
    WriteFile(path, tampered);
    const Located next = Locate(tampered, format, "predlog.events-0", 4);
    EXPECT_EQ(Verify(manifest_path).failure,
              absl::StrCat("line ", next.line,
                           " (predlog.events-0#4): prev_chain_sha256 does not continue the chain "
                           "of predlog.events-0#3 on line ",
                           at.line));
  }
}

TEST_F(TrailExportTest, RewrittenRecordOfASparseExportIsCaughtByTheManifestAnchor) {
  const std::vector<ExportedRecord> alice = SubjectRecords("alice");
  const std::string manifest_path = Export(alice, ExportFormat::kJsonl);
  const std::string path = FileOf(manifest_path, ExportFormat::kJsonl);
  const std::string file = ReadFile(path);
  const Located at = Locate(file, ExportFormat::kJsonl, "predlog.events-0", 6);
  ExportedRecord forged = alice[2];
  AuditEvent event;
  ASSERT_TRUE(event.ParseFromString(forged.event_bytes()));
  event.mutable_prediction_logged()->set_trace_id("forged");
  forged.set_event_bytes(event.SerializeAsString());
  const storage::Digest leaf = storage::Sha256(forged.event_bytes());
  forged.set_leaf_sha256(storage::ToHex(leaf));
  forged.set_chain_sha256(storage::ToHex(
      storage::ChainNext(*storage::DigestFromHex(forged.prev_chain_sha256()), leaf)));
  std::string tampered = file;
  tampered.replace(at.begin, at.end - at.begin, RenderAlone(forged, ExportFormat::kJsonl));
  WriteFile(path, tampered);
  EXPECT_EQ(Verify(manifest_path).failure,
            absl::StrCat("line ", at.line,
                         " (predlog.events-0#6): chain_sha256 is not the manifest's anchor for its "
                         "range"));
}

TEST_F(TrailExportTest, ChangedWhitespaceIsFound) {
  const std::string manifest_path = Export(AllRecords(), ExportFormat::kJsonl);
  const std::string path = FileOf(manifest_path, ExportFormat::kJsonl);
  WriteFile(path, ReadFile(path) + "\n");
  EXPECT_EQ(Verify(manifest_path).failure,
            "line 25: does not parse as a TrailLine: expected '{' at byte 1");
}

TEST_F(TrailExportTest, TruncatedManifestIsAnError) {
  const std::string manifest_path = Export(AllRecords(), ExportFormat::kJsonl);
  const std::string manifest = ReadFile(manifest_path);
  WriteFile(manifest_path, manifest.substr(0, manifest.size() / 2));
  EXPECT_THAT(VerifyExport("", manifest_path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not parse as a predlog.v1.ExportManifest")));
}

TEST_F(TrailExportTest, MissingFileIsNotFound) {
  const std::string manifest_path = Export(AllRecords(), ExportFormat::kJsonl);
  EXPECT_THAT(VerifyExport(dir_.Sub("nope.jsonl"), manifest_path),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope.jsonl")));
  EXPECT_THAT(VerifyExport("", dir_.Sub("nope.manifest.json")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope.manifest.json")));
}

TEST_F(TrailExportTest, WrongFileFailsOnItsFirstLine) {
  const std::string jsonl_manifest = Export(AllRecords(), ExportFormat::kJsonl, "a");
  const std::string csv_manifest = Export(AllRecords(), ExportFormat::kCsv, "b");
  absl::StatusOr<ExportVerification> v =
      VerifyExport(FileOf(csv_manifest, ExportFormat::kCsv), jsonl_manifest);
  ASSERT_OK(v.status());
  EXPECT_FALSE(v->ok);
  EXPECT_EQ(v->failure, "line 1: does not parse as a TrailLine: expected '{' at byte 1");

  // Another subject's export against this manifest: its first record is not
  // alice's.
  const std::string bob = Export(SubjectRecords("bob"), ExportFormat::kJsonl, "c");
  v = VerifyExport(FileOf(bob, ExportFormat::kJsonl),
                   Export(SubjectRecords("alice"), ExportFormat::kJsonl, "d"));
  ASSERT_OK(v.status());
  EXPECT_EQ(v->failure,
            "line 1 (predlog.events-0#1): is a prediction of subject bob, not of the manifest's "
            "filter subject alice");
}

TEST_F(TrailExportTest, EventWithoutJsonMappingIsExportedWithoutItsDecodedEvent) {
  AuditEvent event = testing::MakePrediction({});
  event.mutable_recorded_at()->set_seconds(253402300800);  // year 10000
  ExportedRecord r;
  r.set_shard("predlog.events-9");
  r.set_event_bytes(event.SerializeAsString());
  const storage::Digest leaf = storage::Sha256(r.event_bytes());
  r.set_leaf_sha256(storage::ToHex(leaf));
  r.set_prev_chain_sha256(storage::ToHex(storage::kChainGenesis));
  r.set_chain_sha256(storage::ToHex(storage::ChainNext(storage::kChainGenesis, leaf)));
  for (const ExportFormat format : kFormats) {
    const std::string manifest_path = Export({r}, format, "odd");
    EXPECT_TRUE(Verify(manifest_path).ok) << Verify(manifest_path).failure;
    const std::string file = ReadFile(FileOf(manifest_path, format));
    if (format == ExportFormat::kJsonl) {
      EXPECT_THAT(file, ::testing::Not(HasSubstr("\"event\"")));
    } else {
      EXPECT_THAT(file, HasSubstr(",invalid(seconds=253402300800 nanos=0),"));
    }
  }
}

TEST_F(TrailExportTest, WriterRejectsRecordsTheServerMustNeverSend) {
  std::vector<ExportedRecord> records = AllRecords();
  ASSERT_OK_AND_ASSIGN(auto writer, TrailWriter::Create(dir_.Sub("w.jsonl"), ExportFormat::kJsonl));
  ASSERT_OK(writer->Add(records[0]));
  ASSERT_OK(writer->Add(records[1]));

  ExportedRecord bad_leaf = records[2];
  bad_leaf.set_event_bytes(bad_leaf.event_bytes() + " ");
  EXPECT_THAT(writer->Add(bad_leaf),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "predlog.events-0#2: leaf_sha256 does not match the event bytes"));
  EXPECT_THAT(writer->Add(records[1]),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "predlog.events-0#1: out of log order after predlog.events-0#1"));
  ExportedRecord broken_chain = records[3];
  broken_chain.set_index(2);
  EXPECT_THAT(writer->Add(broken_chain),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("predlog.events-0#2: prev_chain_sha256 does not continue")));
  ASSERT_OK(writer->Add(records[12]));  // shard 1 begins
  EXPECT_THAT(writer->Add(records[3]),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resumed after")));
  EXPECT_EQ(writer->records(), 3u);

  ExportManifest everything;
  everything.mutable_filter()->set_all(true);
  ASSERT_OK(writer->Finish(everything, dir_.Sub("w.manifest.json")).status());
  EXPECT_THAT(writer->Add(records[13]),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already finished")));
  // The rejected records left nothing behind: the export verifies.
  const ExportVerification v = Verify(dir_.Sub("w.manifest.json"));
  EXPECT_TRUE(v.ok) << v.failure;
  EXPECT_EQ(v.records_checked, 3u);
}

// `records` in batches of `size`, as ExportTrail streams them.
std::vector<ExportBatch> Batches(const std::vector<ExportedRecord>& records, size_t size) {
  std::vector<ExportBatch> batches;
  for (size_t i = 0; i < records.size(); ++i) {
    if (i % size == 0) batches.emplace_back();
    *batches.back().add_records() = records[i];
  }
  return batches;
}

TEST_F(TrailExportTest, AddBatchWritesTheSameFileAndManifestAsAdd) {
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    // Shard 0 from index 3 (an export of everything from a time), then shard
    // 1, over batch boundaries.
    std::vector<ExportedRecord> records = AllRecords();
    records.erase(records.begin(), records.begin() + 3);
    const std::string by_add = Export(records, format, "by_add");

    const std::string file = dir_.Sub(absl::StrCat("by_batch.", ExportFormatName(format)));
    ASSERT_OK_AND_ASSIGN(auto writer, TrailWriter::Create(file, format));
    for (ExportBatch& batch : Batches(records, 5)) ASSERT_OK(writer->AddBatch(std::move(batch)));
    ExportManifest manifest;
    manifest.set_exported_by("auditor@host");
    manifest.mutable_filter()->set_all(true);
    ASSERT_OK_AND_ASSIGN(ExportManifest written,
                         writer->Finish(manifest, dir_.Sub("by_batch.manifest.json")));

    EXPECT_EQ(ReadFile(file), ReadFile(FileOf(by_add, format)));
    EXPECT_EQ(written.record_count(), records.size());
    ExportManifest expected;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(ReadFile(by_add), &expected).ok());
    ASSERT_EQ(written.shards_size(), expected.shards_size());
    for (int i = 0; i < written.shards_size(); ++i) {
      EXPECT_EQ(written.shards(i).SerializeAsString(), expected.shards(i).SerializeAsString());
    }
    const ExportVerification v = Verify(dir_.Sub("by_batch.manifest.json"));
    EXPECT_TRUE(v.ok) << v.failure;
  }
}

TEST_F(TrailExportTest, AddBatchStopsAtARejectedRecordAfterAcceptingTheRecordsBeforeIt) {
  std::vector<ExportedRecord> records = AllRecords();
  records[5].set_event_bytes(records[5].event_bytes() + " ");

  const std::string file = dir_.Sub("bad.jsonl");
  ASSERT_OK_AND_ASSIGN(auto writer, TrailWriter::Create(file, ExportFormat::kJsonl));
  absl::Status status;
  for (ExportBatch& batch : Batches(records, 3)) {
    status = writer->AddBatch(std::move(batch));
    if (!status.ok()) break;
  }
  // The error comes back from a later AddBatch or, at the latest, Finish.
  if (status.ok())
    status = writer->Finish(ExportManifest(), dir_.Sub("bad.manifest.json")).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               "predlog.events-0#5: leaf_sha256 does not match the event bytes"));
  EXPECT_EQ(writer->records(), 5u);  // 0..4, and nothing after the bad one
}

TEST_F(TrailExportTest, CreateInAMissingDirectoryIsNotFound) {
  EXPECT_THAT(TrailWriter::Create(dir_.Sub("no/such/dir/t.jsonl"), ExportFormat::kJsonl),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no/such/dir")));
}

TEST_F(TrailExportTest, AnUnfinishedOrFailedExportLeavesNoFileThatLooksLikeOne) {
  const std::string file = dir_.Sub("t.jsonl");
  const std::string manifest_path = dir_.Sub("t.jsonl.manifest.json");
  const std::string partial = file + kPartialSuffix;
  std::vector<ExportedRecord> records = AllRecords();
  {
    // Abandoned halfway (the stream broke): the file is named as unfinished
    // while it is written, and gone afterwards.
    ASSERT_OK_AND_ASSIGN(auto writer, TrailWriter::Create(file, ExportFormat::kJsonl));
    ASSERT_OK(writer->Add(records[0]));
    EXPECT_TRUE(std::ifstream(partial).good());
    EXPECT_FALSE(std::ifstream(file).good());
  }
  EXPECT_FALSE(std::ifstream(partial).good());
  EXPECT_FALSE(std::ifstream(file).good());

  // A complete export, then a failed one over it (a rejected record, then
  // the writer dropped, as the CLI does): the complete pair stays as it was.
  const std::string done = Export(records, ExportFormat::kJsonl, "t");
  const std::string exported = ReadFile(FileOf(done, ExportFormat::kJsonl));
  {
    ASSERT_OK_AND_ASSIGN(
        auto writer, TrailWriter::Create(FileOf(done, ExportFormat::kJsonl), ExportFormat::kJsonl));
    ASSERT_OK(writer->Add(records[0]));
    ExportedRecord bad = records[1];
    bad.set_event_bytes(bad.event_bytes() + " ");
    EXPECT_FALSE(writer->Add(bad).ok());
  }
  EXPECT_FALSE(std::ifstream(FileOf(done, ExportFormat::kJsonl) + kPartialSuffix).good());
  EXPECT_EQ(ReadFile(FileOf(done, ExportFormat::kJsonl)), exported);
  EXPECT_TRUE(Verify(done).ok);
  // Finish renames the file into place only once its manifest is written.
  ASSERT_OK_AND_ASSIGN(auto writer, TrailWriter::Create(file, ExportFormat::kJsonl));
  ASSERT_OK(writer->Add(records[0]));
  ExportManifest manifest;
  manifest.mutable_filter()->set_all(true);
  ASSERT_OK(writer->Finish(manifest, manifest_path).status());
  EXPECT_FALSE(std::ifstream(partial).good());
  EXPECT_TRUE(Verify(manifest_path).ok);
}

// What the server streams when records 5..7 of shard 0 cannot be read: the
// range in its place, and record 8 without the chain value before it.
std::vector<ExportBatch> WithUnreadable(const std::vector<ExportedRecord>& records,
                                        const std::string& shard, uint64_t first, uint64_t last,
                                        size_t batch_size) {
  std::vector<ExportBatch> batches;
  bool placed = false;
  const auto place = [&] {
    auto* u = batches.back().add_unreadable();
    u->set_shard(shard);
    u->set_first_index(first);
    u->set_last_index(last);
    u->set_reason(absl::StrCat("shard ", shard, ": read record at index ", first,
                               ": Corruption: block checksum mismatch"));
    u->set_records_before(static_cast<uint32_t>(batches.back().records_size()));
    placed = true;
  };
  for (const ExportedRecord& r : records) {
    if (r.shard() == shard && r.index() >= first && r.index() <= last) continue;
    if (batches.empty() || static_cast<size_t>(batches.back().records_size()) == batch_size) {
      batches.emplace_back();
    }
    if (!placed && r.shard() == shard && r.index() > last) place();
    ExportedRecord* out = batches.back().add_records();
    *out = r;
    if (r.shard() == shard && r.index() == last + 1) out->clear_prev_chain_sha256();
  }
  if (!placed) place();
  return batches;
}

TEST_F(TrailExportTest, UnreadableRecordsAreInTheManifestAndEachReadableRunVerifiesOnItsOwn) {
  for (const ExportFormat format : kFormats) {
    SCOPED_TRACE(ExportFormatName(format));
    for (size_t batch_size : {3, 100}) {
      const std::string file =
          dir_.Sub(absl::StrCat("u", batch_size, ".", ExportFormatName(format)));
      ASSERT_OK_AND_ASSIGN(auto writer, TrailWriter::Create(file, format));
      for (ExportBatch& batch :
           WithUnreadable(AllRecords(), "predlog.events-0", 5, 7, batch_size)) {
        ASSERT_OK(writer->AddBatch(std::move(batch)));
      }
      ExportManifest manifest;
      manifest.mutable_filter()->set_all(true);
      ASSERT_OK_AND_ASSIGN(ExportManifest written,
                           writer->Finish(manifest, file + ".manifest.json"));
      ASSERT_EQ(written.shards_size(), 2);
      const auto& shard = written.shards(0);
      EXPECT_EQ(shard.records(), 9u);
      EXPECT_EQ(written.record_count(), 21u);
      ASSERT_EQ(shard.unreadable_size(), 1);
      EXPECT_EQ(shard.unreadable(0).first_index(), 5u);
      EXPECT_EQ(shard.unreadable(0).last_index(), 7u);
      EXPECT_THAT(shard.unreadable(0).reason(), HasSubstr("block checksum mismatch"));
      ASSERT_EQ(shard.ranges_size(), 2);
      EXPECT_EQ(shard.ranges(0).last_index(), 4u);
      EXPECT_EQ(shard.ranges(0).chain_sha256(), AllRecords()[4].chain_sha256());
      EXPECT_EQ(shard.ranges(1).first_index(), 8u);
      EXPECT_EQ(shard.ranges(1).prev_chain_sha256(), "");
      EXPECT_EQ(written.shards(1).unreadable_size(), 0);

      ASSERT_OK_AND_ASSIGN(ExportVerification v, VerifyExport("", file + ".manifest.json"));
      EXPECT_TRUE(v.consistent) << v.failure;
      EXPECT_FALSE(v.ok);
      EXPECT_EQ(v.records_checked, 21u);
      EXPECT_EQ(v.failure,
                "the export is incomplete: 3 records in 1 range could not be read when it was made "
                "(predlog.events-0 records 5..7: shard predlog.events-0: read record at index 5: "
                "Corruption: block checksum mismatch)");
      ASSERT_EQ(v.unreadable.size(), 1u);
      EXPECT_EQ(v.unreadable[0].shard, "predlog.events-0");
      // Record 8's leaf is tied to its chain value only by the live shard.
      ASSERT_EQ(v.claims.size(), 4u);
      EXPECT_EQ(v.claims[1].index, 8u);
      EXPECT_EQ(v.claims[1].leaf_sha256, AllRecords()[8].leaf_sha256());
      EXPECT_EQ(v.claims[1].chain_sha256, AllRecords()[8].chain_sha256());
    }
  }
}

TEST_F(TrailExportTest, WriterRejectsUnreadableRangesAndMissingChainValuesThatDoNotFit) {
  std::vector<ExportedRecord> records = AllRecords();
  const auto add = [&](const std::vector<ExportBatch>& batches) {
    absl::StatusOr<std::unique_ptr<TrailWriter>> writer =
        TrailWriter::Create(dir_.Sub("r.jsonl"), ExportFormat::kJsonl);
    EXPECT_TRUE(writer.ok());
    absl::Status status;
    for (ExportBatch batch : batches) {
      status = (*writer)->AddBatch(std::move(batch));
      if (!status.ok()) return status;
    }
    ExportManifest manifest;
    manifest.mutable_filter()->set_all(true);
    return (*writer)->Finish(manifest, dir_.Sub("r.manifest.json")).status();
  };
  // No chain value before record 8, but nothing unreadable before it.
  std::vector<ExportBatch> batches = Batches(records, 100);
  batches[0].mutable_records(8)->clear_prev_chain_sha256();
  EXPECT_THAT(add(batches),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "predlog.events-0#8: prev_chain_sha256 is empty, but the record before it "
                       "was not unreadable"));
  // A chain value before record 8 that the server said it could not read.
  batches = WithUnreadable(records, "predlog.events-0", 5, 7, 100);
  batches[0].mutable_records(5)->set_prev_chain_sha256(records[7].chain_sha256());
  EXPECT_THAT(add(batches), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("the record before it was unreadable")));
  // A range over records already written, and one past the batch's records.
  batches = WithUnreadable(records, "predlog.events-0", 5, 7, 100);
  batches[0].mutable_unreadable(0)->set_first_index(4);
  EXPECT_THAT(add(batches), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("out of log order after predlog.events-0#4")));
  batches = WithUnreadable(records, "predlog.events-1", 10, 11, 100);  // the last records
  batches[0].mutable_unreadable(0)->set_records_before(1000);
  EXPECT_THAT(add(batches),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("records_before 1000")));
  EXPECT_OK(add(WithUnreadable(records, "predlog.events-0", 5, 7, 100)));
}

TEST_F(TrailExportTest, ALineWithoutItsChainValueBeforeItFailsUnlessItFollowsAnUnreadableRange) {
  const std::string manifest_path = Export(AllRecords(), ExportFormat::kJsonl);
  const std::string path = FileOf(manifest_path, ExportFormat::kJsonl);
  std::string file = ReadFile(path);
  const Located at = Locate(file, ExportFormat::kJsonl, "predlog.events-0", 6);
  const std::string prev = ",\"prevChainSha256\":\"" + AllRecords()[6].prev_chain_sha256() + "\"";
  const size_t pos = file.find(prev, at.begin);
  ASSERT_LT(pos, at.end);
  file.erase(pos, prev.size());
  WriteFile(path, file);
  EXPECT_EQ(Verify(manifest_path).failure,
            absl::StrCat("line ", at.line,
                         " (predlog.events-0#6): has no prev_chain_sha256, but it follows "
                         "predlog.events-0#5 on line ",
                         at.line - 1));
}

// The live shard's stored values, as Audit.GetChainValues answers them.
ChainValueFetcher ShardFetcher(const std::unique_ptr<ShardStore> (&stores)[2]) {
  return [&stores](const std::vector<predlog::v1::Position>& positions)
             -> absl::StatusOr<std::vector<predlog::v1::ChainValue>> {
    std::vector<predlog::v1::ChainValue> values;
    for (const auto& p : positions) {
      const ShardStore* store = nullptr;
      for (const auto& s : stores) {
        if (s->name() == p.shard()) store = s.get();
      }
      if (store == nullptr) return absl::NotFoundError("no shard " + p.shard());
      absl::StatusOr<storage::StoredRecord> r = store->Get(p.index());
      if (!r.ok()) return r.status();
      predlog::v1::ChainValue& v = values.emplace_back();
      *v.mutable_position() = p;
      v.set_leaf_sha256(storage::ToHex(r->leaf));
      v.set_chain_sha256(storage::ToHex(r->chain));
    }
    return values;
  };
}

// Shard 1 lost records 12..14 (its synced acknowledgement mark says 15 were
// written) and an operator accepted the loss: an export of everything has a
// gap there, and the live check of the range after it asks for the chain
// value of the last record before the lost ones, which the shard has.
TEST_F(TrailExportTest, AnExportOfEverythingAcrossAnAcceptedLossAgreesWithTheLiveShards) {
  const std::string dir = dir_.Sub("shard-1");
  stores_[1].reset();
  ASSERT_OK_AND_ASSIGN(std::optional<storage::AckedMark::Value> mark,
                       storage::AckedMark::Read(dir + "/acked"));
  ASSERT_TRUE(mark.has_value());
  {
    ASSERT_OK_AND_ASSIGN(auto writer, storage::AckedMark::Open(dir + "/acked", /*sync=*/true));
    storage::AckedMark::Value claimed = *mark;
    claimed.next_index = 15;
    ASSERT_OK(writer->Write(claimed));
  }
  storage::ShardOptions options;
  options.dir = dir;
  options.name = "predlog.events-1";
  options.accept_lost_range = "12..14";
  ASSERT_OK_AND_ASSIGN(stores_[1], ShardStore::Open(options));
  ASSERT_EQ(stores_[1]->Head().next_index, 16u);  // the RecordsLost record is 15
  const std::string payload = Prediction(112, "alice", false).SerializeAsString();
  std::vector<storage::SourceMessage> more = {Msg("incarnation-1", 12, payload)};
  ASSERT_OK(stores_[1]->ApplyBatch(more).status());

  predlog::v1::ExportTrailRequest filter;
  filter.set_all(true);
  const std::string manifest_path = Export(AllRecords(), ExportFormat::kJsonl, "loss", &filter);
  ASSERT_OK_AND_ASSIGN(ExportVerification v, VerifyExport("", manifest_path));
  ASSERT_TRUE(v.ok) << v.failure;
  ASSERT_OK_AND_ASSIGN(ServerCheck check, CheckAgainstServer(v, 1000, ShardFetcher(stores_)));
  EXPECT_THAT(check.mismatches, ::testing::IsEmpty());
  EXPECT_EQ(check.claims_checked, 4u);  // shard 0's end; shard 1: 0..11's end, 15..16's ends
}

// A forger rewrites record 3 of shard 0, recomputes its leaf and the chain
// from it on, and writes a manifest to match: offline verification cannot
// tell; the live shard's chain value at the range's end can.
TEST_F(TrailExportTest, ReencodedExportPassesOfflineButNotAgainstTheLiveShards) {
  std::vector<ExportedRecord> records = AllRecords();
  const std::string honest = Export(records, ExportFormat::kJsonl, "honest");
  ASSERT_OK_AND_ASSIGN(ExportVerification v, VerifyExport("", honest));
  ASSERT_TRUE(v.ok) << v.failure;
  ASSERT_OK_AND_ASSIGN(ServerCheck check, CheckAgainstServer(v, 1000, ShardFetcher(stores_)));
  EXPECT_EQ(check.claims_checked, 2u);  // one range per shard: its chain value after it
  EXPECT_THAT(check.mismatches, ::testing::IsEmpty());

  AuditEvent event;
  ASSERT_TRUE(event.ParseFromString(records[3].event_bytes()));
  event.mutable_prediction_logged()->mutable_output()->set_label("deny");
  records[3].set_event_bytes(event.SerializeAsString());
  for (size_t i = 3; i < 12; ++i) {
    const storage::Digest leaf = storage::Sha256(records[i].event_bytes());
    records[i].set_leaf_sha256(storage::ToHex(leaf));
    if (i > 3) records[i].set_prev_chain_sha256(records[i - 1].chain_sha256());
    records[i].set_chain_sha256(storage::ToHex(
        storage::ChainNext(*storage::DigestFromHex(records[i].prev_chain_sha256()), leaf)));
  }
  const std::string forged = Export(records, ExportFormat::kJsonl, "forged");
  ASSERT_OK_AND_ASSIGN(v, VerifyExport("", forged));
  EXPECT_TRUE(v.ok) << v.failure;  // what offline verification cannot prove
  ASSERT_OK_AND_ASSIGN(check, CheckAgainstServer(v, 1, ShardFetcher(stores_)));
  EXPECT_EQ(check.claims_checked, 2u);
  ASSERT_EQ(check.mismatches.size(), 1u);
  EXPECT_EQ(check.mismatches[0],
            absl::StrCat("predlog.events-0#11: the chain_sha256 anchor of range 0..11 is ",
                         records[11].chain_sha256().substr(0, 16), "…, the server's shard has ",
                         AllRecords()[11].chain_sha256().substr(0, 16), "…"));
}

// After an unreadable range the first record's chain value has nothing
// before it to check against offline: its leaf is a claim the live shard checks.
TEST_F(TrailExportTest, RewrittenFirstRecordAfterAnUnreadableRangeIsCaughtByTheLiveShard) {
  std::vector<ExportedRecord> records = AllRecords();
  AuditEvent event;
  ASSERT_TRUE(event.ParseFromString(records[8].event_bytes()));
  event.mutable_prediction_logged()->set_subject_id("someone-else");
  records[8].set_event_bytes(event.SerializeAsString());
  records[8].set_leaf_sha256(storage::ToHex(storage::Sha256(records[8].event_bytes())));
  const std::string file = dir_.Sub("gap.jsonl");
  ASSERT_OK_AND_ASSIGN(auto writer, TrailWriter::Create(file, ExportFormat::kJsonl));
  for (ExportBatch& batch : WithUnreadable(records, "predlog.events-0", 5, 7, 100)) {
    ASSERT_OK(writer->AddBatch(std::move(batch)));
  }
  ExportManifest manifest;
  manifest.mutable_filter()->set_all(true);
  ASSERT_OK(writer->Finish(manifest, file + ".manifest.json").status());
  ASSERT_OK_AND_ASSIGN(ExportVerification v, VerifyExport("", file + ".manifest.json"));
  EXPECT_TRUE(v.consistent) << v.failure;
  ASSERT_OK_AND_ASSIGN(ServerCheck check, CheckAgainstServer(v, 1000, ShardFetcher(stores_)));
  ASSERT_EQ(check.mismatches.size(), 1u);
  EXPECT_THAT(
      check.mismatches[0],
      ::testing::StartsWith("predlog.events-0#8: the leaf_sha256 of the first record of "
                            "range 8..11 (the chain value before it could not be read) is "));

  // A claim the live shard cannot answer is named, and the others still checked.
  std::vector<ChainClaim> claims = v.claims;
  v.claims.insert(v.claims.begin(), ChainClaim{"predlog.events-0", 99, std::string(64, '0'), "",
                                               "the chain_sha256 anchor of range 90..99"});
  ASSERT_OK_AND_ASSIGN(check, CheckAgainstServer(v, 1000, ShardFetcher(stores_)));
  EXPECT_EQ(check.claims_checked, claims.size() + 1);
  ASSERT_EQ(check.mismatches.size(), 2u);
  EXPECT_THAT(check.mismatches[0],
              ::testing::StartsWith("predlog.events-0#99: the server cannot confirm the "
                                    "chain_sha256 anchor of range 90..99: NOT_FOUND: "));
}

}  // namespace
}  // namespace predlog::services
