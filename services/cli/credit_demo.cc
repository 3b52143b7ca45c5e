#include "services/cli/credit_demo.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "predlog/v1/registry.grpc.pb.h"
#include "predlog/v1/service.grpc.pb.h"
#include "services/cli/cli_format.h"
#include "services/cli/credit_models.h"
#include "services/cli/registry_client.h"
#include "storage/sha256.h"
#include "storage/status_macros.h"
#include "storage/timestamps.h"
#include "xgboost/c_api.h"

namespace predlog::services {
namespace {

namespace v1 = ::predlog::v1;

constexpr int kFeatures = 10;  // the named credit columns
constexpr char kRoute[] = "credit-limit";
constexpr char kModel[] = "credit";
constexpr char kPipeline[] = "credit-features";
constexpr char kPipelineVersion[] = "3";
// Probability of default at or above which the application is denied.
constexpr float kDenyAbove = 0.5f;

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

std::string XgboostVersion() {
  int major = 0, minor = 0, patch = 0;
  XGBoostVersion(&major, &minor, &patch);
  return absl::StrCat(major, ".", minor, ".", patch);
}

std::string FloatsDigest(const std::vector<float>& values) {
  return storage::ToHex(storage::Sha256(absl::string_view(
      reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float))));
}

// The training data's digest: what a dataset registry would record.
std::string DataDigest(const demo::CreditData& data) {
  storage::Sha256Hasher hasher;
  hasher.Update(absl::string_view(reinterpret_cast<const char*>(data.x.data()),
                                  data.x.size() * sizeof(float)));
  hasher.Update(absl::string_view(reinterpret_cast<const char*>(data.y.data()),
                                  data.y.size() * sizeof(float)));
  return storage::ToHex(hasher.Finish());
}

class Demo {
 public:
  Demo(std::shared_ptr<grpc::Channel> channel, const CreditDemoOptions& options, std::ostream& out)
      : options_(options),
        out_(out),
        log_(v1::PredictionLog::NewStub(channel)),
        registry_(v1::Registry::NewStub(channel)),
        rng_(options.seed) {}

  absl::StatusOr<CreditDemoResult> Run();

 private:
  // Trains name@version on `data`, registers it with its provenance.
  absl::StatusOr<std::string> TrainAndRegister(const std::string& version,
                                               const demo::CreditData& data,
                                               const std::string& dataset_version);
  // Registers the month's data as a dataset registry would see it: the CRM's
  // export of applications (the rows), the defaults observed later (the
  // labels), and applications@month, the training set the feature pipeline
  // joined from the two.
  absl::Status RegisterDatasets(const demo::CreditData& data, const std::string& month);
  absl::Status Deploy(const std::string& version, double fraction, const std::string& reason);
  absl::Status ChangeCustomer(int customer, const std::vector<std::string>& fields);
  std::string CustomerId(int customer) const { return absl::StrFormat("c-%04d", customer); }

  const CreditDemoOptions options_;
  std::ostream& out_;
  std::unique_ptr<v1::PredictionLog::Stub> log_;
  std::unique_ptr<v1::Registry::Stub> registry_;
  std::mt19937_64 rng_;
  // Each customer's current record: the features, as the demo's CRM holds them.
  std::vector<std::vector<float>> customers_;
  std::vector<double> credit_limit_;
  std::map<std::string, std::string> digest_;  // version -> artifact digest
  int changes_ = 0;
};

absl::Status Demo::RegisterDatasets(const demo::CreditData& data, const std::string& month) {
  auto ref = [](const std::string& name, const std::string& version, const std::string& digest) {
    v1::DatasetRef r;
    r.set_name(name);
    r.set_version(version);
    r.set_digest(digest);
    return r;
  };
  const v1::DatasetRef rows = ref("crm-applications", month, FloatsDigest(data.x));
  const v1::DatasetRef labels = ref("defaults", month, FloatsDigest(data.y));
  std::vector<v1::DatasetRegistered> datasets(3);
  *datasets[0].mutable_dataset() = rows;
  datasets[0].set_source(absl::StrCat("postgres://crm/applications WHERE month = '", month, "'"));
  datasets[0].set_size_bytes(data.x.size() * sizeof(float));
  *datasets[1].mutable_dataset() = labels;
  datasets[1].set_source(absl::StrCat("s3://risk/defaults/", month, ".parquet"));
  datasets[1].set_size_bytes(data.y.size() * sizeof(float));
  v1::DatasetRegistered& joined = datasets[2];
  *joined.mutable_dataset() = ref("applications", month, DataDigest(data));
  *joined.add_derived_from() = rows;
  *joined.add_derived_from() = labels;
  joined.mutable_pipeline()->set_name(kPipeline);
  joined.mutable_pipeline()->set_version(kPipelineVersion);
  joined.set_reason(absl::StrCat("training set for the ", month, " credit model"));
  for (v1::DatasetRegistered& dataset : datasets) {
    dataset.set_row_count(data.y.size());
    v1::RegisterDatasetRequest request;
    request.set_actor("demo:data-eng");
    *request.mutable_dataset() = std::move(dataset);
    v1::RegistryReceipt receipt;
    grpc::ClientContext context;
    RETURN_IF_ERROR(
        FromGrpc(registry_->RegisterDataset(&context, request, &receipt),
                 absl::StrCat("register ", request.dataset().dataset().name(), "@", month)));
  }
  out_ << "registered crm-applications@" << month << ", defaults@" << month << " -> applications@"
       << month << "\n";
  return absl::OkStatus();
}

absl::StatusOr<std::string> Demo::TrainAndRegister(const std::string& version,
                                                   const demo::CreditData& data,
                                                   const std::string& dataset_version) {
  RETURN_IF_ERROR(RegisterDatasets(data, dataset_version));
  demo::TrainOptions train;
  train.trees = 50;
  train.max_depth = 4;
  train.seed = options_.seed;
  ASSIGN_OR_RETURN(std::string artifact, demo::TrainXgboostModel(data, train));
  v1::RegisterModelRequest first;
  first.set_actor("demo:ml-platform");
  v1::ModelRegistered* m = first.mutable_metadata();
  m->mutable_model()->set_name(kModel);
  m->mutable_model()->set_version(version);
  m->set_framework("xgboost");
  m->set_description(
      absl::StrCat("credit default risk, trained on applications@", dataset_version));
  v1::TrainingProvenance* p = m->mutable_provenance();
  v1::DatasetRef* dataset = p->add_datasets();
  dataset->set_name("applications");
  dataset->set_version(dataset_version);
  dataset->set_digest(DataDigest(data));
  p->set_code_commit(version == "v1" ? "9c1e0f3" : "b72d4a8");
  (*p->mutable_hyperparameters())["trees"] = absl::StrCat(train.trees);
  (*p->mutable_hyperparameters())["max_depth"] = absl::StrCat(train.max_depth);
  (*p->mutable_hyperparameters())["objective"] = train.objective;
  (*p->mutable_library_versions())["xgboost"] = XgboostVersion();
  p->mutable_pipeline()->set_name(kPipeline);
  p->mutable_pipeline()->set_version(kPipelineVersion);
  for (const std::string& name : data.feature_names) p->add_feature_names(name);
  std::istringstream bytes(artifact);
  v1::RegisterModelResponse response;
  grpc::ClientContext context;
  RETURN_IF_ERROR(FromGrpc(UploadModel(registry_.get(), &context, first, bytes, &response),
                           absl::StrCat("register ", kModel, "@", version)));
  digest_[version] = response.model().artifact_sha256();
  out_ << "registered " << kModel << "@" << version
       << "  sha256:" << response.model().artifact_sha256().substr(0, 16)
       << "…  trained on applications@" << dataset_version << "\n";
  return artifact;
}

absl::Status Demo::Deploy(const std::string& version, double fraction, const std::string& reason) {
  v1::DeployModelRequest request;
  request.set_actor("demo:release");
  v1::ModelDeployed* d = request.mutable_deployment();
  d->set_route(kRoute);
  d->mutable_model()->set_name(kModel);
  d->mutable_model()->set_version(version);
  d->set_traffic_fraction(fraction);
  d->set_reason(reason);
  v1::RegistryReceipt receipt;
  grpc::ClientContext context;
  RETURN_IF_ERROR(FromGrpc(registry_->DeployModel(&context, request, &receipt),
                           absl::StrCat("deploy ", kModel, "@", version)));
  out_ << "deployed   " << kModel << "@" << version << " on " << kRoute << " at "
       << std::lround(fraction * 100) << "%  (" << reason << ")\n";
  return absl::OkStatus();
}

absl::Status Demo::ChangeCustomer(int customer, const std::vector<std::string>& fields) {
  static const demo::CreditData names = demo::MakeCreditData(1, kFeatures, 0);
  v1::ChangeEntityRequest request;
  request.set_actor("demo:crm");
  v1::EntityChanged* c = request.mutable_change();
  c->set_entity_type("customer");
  c->set_entity_id(CustomerId(customer));
  for (int f = 0; f < kFeatures; ++f) {
    const std::string& name = names.feature_names[f];
    if (!fields.empty() && std::find(fields.begin(), fields.end(), name) == fields.end()) continue;
    const float v = customers_[customer][f];
    if (std::isnan(v)) {
      c->add_unset_fields(name);
    } else {
      // The record keeps the value the model sees, written as people would.
      double value = v;
      (void)absl::SimpleAtod(ShortestFloat(v), &value);
      (*c->mutable_set_fields())[name].set_double_value(value);
    }
  }
  if (fields.empty() || std::find(fields.begin(), fields.end(), "credit_limit") != fields.end()) {
    (*c->mutable_set_fields())["credit_limit"].set_double_value(credit_limit_[customer]);
  }
  v1::LogReceipt receipt;
  grpc::ClientContext context;
  RETURN_IF_ERROR(FromGrpc(log_->ChangeEntity(&context, request, &receipt),
                           absl::StrCat("record customer ", CustomerId(customer))));
  ++changes_;
  return absl::OkStatus();
}

absl::StatusOr<CreditDemoResult> Demo::Run() {
  const auto start = absl::Now();
  out_ << "training credit model v1 on applications@2026-10 ...\n";
  const demo::CreditData v1_data = demo::MakeCreditData(4000, kFeatures, options_.seed);
  ASSIGN_OR_RETURN(std::string v1_artifact, TrainAndRegister("v1", v1_data, "2026-10"));
  RETURN_IF_ERROR(Deploy("v1", 1.0, "initial launch"));
  ASSIGN_OR_RETURN(std::unique_ptr<demo::ServingBooster> v1_booster,
                   demo::ServingBooster::Load(v1_artifact));
  std::unique_ptr<demo::ServingBooster> v2_booster;

  // Customers: today's population.
  const demo::CreditData people =
      demo::MakeCreditData(options_.customers, kFeatures, options_.seed + 100);
  for (int i = 0; i < options_.customers; ++i) {
    customers_.emplace_back(people.x.begin() + size_t(i) * kFeatures,
                            people.x.begin() + size_t(i + 1) * kFeatures);
    credit_limit_.push_back(std::round(customers_.back()[0] * 0.1 / 100) * 100);
  }
  {
    // Four writers: each record waits for its fold, so one at a time is slow.
    std::vector<std::thread> writers;
    std::vector<absl::Status> results(4);
    for (int w = 0; w < 4; ++w) {
      writers.emplace_back([&, w] {
        for (int i = w; i < options_.customers && results[w].ok(); i += 4) {
          results[w] = ChangeCustomer(i, {});
        }
      });
    }
    for (auto& t : writers) t.join();
    for (const absl::Status& s : results) RETURN_IF_ERROR(s);
  }
  out_ << "recorded   " << options_.customers << " customers (customer/c-0000 ...)\n";

  // Predictions through one LogStream; receipts are read concurrently.
  grpc::ClientContext stream_context;
  auto stream = log_->LogStream(&stream_context);
  std::atomic<int> receipts{0}, failed{0};
  std::string first_error;
  std::thread reader([&] {
    v1::LogReceipt receipt;
    while (stream->Read(&receipt)) {
      ++receipts;
      if (receipt.error_code() != 0 && failed++ == 0) first_error = receipt.reason();
    }
  });
  struct Denied {
    int customer;
    std::string prediction;
    absl::Time served_at;
    float score;
  };
  std::vector<Denied> denied;
  std::vector<absl::Time> last_change(options_.customers, absl::InfinitePast());
  const int halfway = options_.predictions / 2;
  Progress progress("logging predictions", static_cast<uint64_t>(options_.predictions));
  int logged = 0;
  // The reader thread must be joined on every path: errors inside the loop
  // end it, and are returned after the stream is closed.
  const absl::Status loop = [&]() -> absl::Status {
    for (int n = 0; n < options_.predictions; ++n) {
      if (n == halfway) {
        out_ << "training credit model v2 on drifted applications@2026-11 ...\n";
        const demo::CreditData v2_data =
            demo::MakeCreditData(4000, kFeatures, options_.seed + 1, /*drift=*/1.0f);
        ASSIGN_OR_RETURN(std::string v2_artifact, TrainAndRegister("v2", v2_data, "2026-11"));
        ASSIGN_OR_RETURN(v2_booster, demo::ServingBooster::Load(v2_artifact));
        RETURN_IF_ERROR(Deploy("v1", 1 - options_.canary_fraction, "make room for the v2 canary"));
        RETURN_IF_ERROR(Deploy("v2", options_.canary_fraction, "canary: retrained on 2026-11"));
      }
      const int customer = static_cast<int>(rng_() % uint64_t(options_.customers));
      // Now and then a customer's record changes (a raise, a new card).
      if (n % 50 == 25) {
        const int changed = static_cast<int>(rng_() % uint64_t(options_.customers));
        customers_[changed][3] = std::min(1.0f, customers_[changed][3] + 0.2f);  // utilization
        credit_limit_[changed] = std::max(500.0, credit_limit_[changed] - 500);
        RETURN_IF_ERROR(ChangeCustomer(changed, {"utilization", "credit_limit"}));
        last_change[changed] = absl::Now();
      }
      const bool canary = v2_booster != nullptr && std::uniform_real_distribution<double>(
                                                       0, 1)(rng_) < options_.canary_fraction;
      demo::ServingBooster& booster = canary ? *v2_booster : *v1_booster;
      const std::string version = canary ? "v2" : "v1";
      ASSIGN_OR_RETURN(std::vector<float> scores, booster.Predict(customers_[customer]));
      v1::LogRequest request;
      request.set_actor("demo:limits-api");
      v1::PredictionLogged* p = request.mutable_prediction();
      p->set_prediction_id(absl::StrFormat("p-%06d", n));
      p->set_subject_id(CustomerId(customer));
      const absl::Time served_at = absl::Now();
      storage::TimeToProto(served_at, p->mutable_served_at());
      p->set_service("limits-api");
      p->mutable_model()->set_name(kModel);
      p->mutable_model()->set_version(version);
      p->mutable_model()->set_artifact_sha256(digest_[version]);
      p->mutable_pipeline()->set_name(kPipeline);
      p->mutable_pipeline()->set_version(kPipelineVersion);
      for (int f = 0; f < kFeatures; ++f) {
        v1::Feature* input = p->add_inputs();
        input->set_name(people.feature_names[f]);
        if (!std::isnan(customers_[customer][f])) input->set_float_value(customers_[customer][f]);
      }
      p->mutable_output()->add_float_scores(scores[0]);
      p->mutable_output()->set_score_kind("probability_of_default");
      const bool deny = scores[0] >= kDenyAbove;
      p->mutable_output()->set_label(deny ? "deny" : "approve");
      (*p->mutable_context())["route"] = kRoute;
      (*p->mutable_context())["arm"] = canary ? "canary" : "control";
      if (deny && !canary) denied.push_back({customer, p->prediction_id(), served_at, scores[0]});
      if (!stream->Write(request)) break;
      ++logged;
      progress.Update(static_cast<uint64_t>(logged));
    }
    return absl::OkStatus();
  }();
  progress.Done();
  stream->WritesDone();
  if (!loop.ok()) stream_context.TryCancel();
  reader.join();
  const grpc::Status finished = stream->Finish();
  RETURN_IF_ERROR(loop);
  RETURN_IF_ERROR(FromGrpc(finished, "log predictions"));
  if (failed > 0) {
    return absl::InternalError(absl::StrCat(failed.load(), " predictions failed: ", first_error));
  }
  if (receipts != logged) {
    return absl::InternalError(absl::StrCat(logged - receipts, " predictions got no receipt"));
  }
  out_ << "logged     " << logged << " predictions (" << changes_ - options_.customers
       << " customer records updated along the way) in "
       << absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(100))) << "\n";
  if (denied.empty()) return absl::NotFoundError("no application was denied; try another --seed");

  // The most interesting denial: a customer whose record changed after the
  // decision, so "as it was then" differs from "now".
  const Denied* pick = &denied.back();
  for (const Denied& d : denied) {
    if (last_change[d.customer] > d.served_at) {
      pick = &d;
      break;
    }
  }
  CreditDemoResult result;
  result.denied_customer = CustomerId(pick->customer);
  result.denied_prediction = pick->prediction;
  result.decision_time = IsoTime(pick->served_at);
  result.predictions_logged = logged;
  result.customer_changes = changes_;
  const std::string server = options_.server_flag.empty() ? "" : " " + options_.server_flag;
  out_ << "\nCustomer " << result.denied_customer << " was denied at " << result.decision_time
       << " (prediction " << result.denied_prediction << ", " << kModel
       << "@v1 said probability of default " << pick->score << ").\nInvestigate:\n"
       << "  predlog trail" << server << " --subject " << result.denied_customer << "\n"
       << "  predlog replay" << server << " " << result.denied_prediction << " --explain\n"
       << "  predlog replay" << server << " " << result.denied_prediction
       << " --against credit@v2\n"
       << "  predlog state" << server << " --entity customer/" << result.denied_customer << " --at "
       << result.decision_time << "\n"
       << "  predlog changes" << server << " --entity customer/" << result.denied_customer << "\n"
       << "  predlog export" << server << " --subject " << result.denied_customer
       << " --format jsonl --out " << result.denied_customer << ".jsonl\n"
       << "  predlog verify " << result.denied_customer << ".jsonl " << result.denied_customer
       << ".jsonl.manifest.json\n"
       << "  predlog lineage" << server << " " << result.denied_prediction << "\n"
       << "  predlog impact" << server << " applications@2026-10\n"
       << "  predlog case" << server << " " << result.denied_prediction << " --out case-"
       << result.denied_prediction << "\n";
  return result;
}

}  // namespace

absl::StatusOr<CreditDemoResult> RunCreditDemo(std::shared_ptr<grpc::Channel> channel,
                                               const CreditDemoOptions& options, std::ostream& out,
                                               std::ostream& err) {
  if (options.customers < 1) return absl::InvalidArgumentError("--customers must be >= 1");
  if (options.predictions < 2) return absl::InvalidArgumentError("--predictions must be >= 2");
  if (options.canary_fraction <= 0 || options.canary_fraction >= 1) {
    return absl::InvalidArgumentError("--canary must be a fraction in (0, 1)");
  }
  Demo demo(std::move(channel), options, out);
  return demo.Run();
}

}  // namespace predlog::services
