// `predlog demo credit`: the credit-scoring story against a running predlogd,
// so a newcomer sees the whole system in five minutes. It trains model v1
// (XGBoost), registers it with its provenance and deploys it; records 1,000
// customers (EntityChanged) and scores them through the gateway, logging
// every prediction; halfway it trains v2 on drifted data and deploys it as a
// 10% canary; along the way it updates some customer records. It ends by
// naming a denied customer and the commands that investigate the decision.
#ifndef PREDLOG_SERVICES_CLI_CREDIT_DEMO_H_
#define PREDLOG_SERVICES_CLI_CREDIT_DEMO_H_

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace predlog::services {

struct CreditDemoOptions {
  int customers = 1000;
  int predictions = 20'000;
  // Share of predictions after the canary deploy that v2 serves.
  double canary_fraction = 0.1;
  uint64_t seed = 1;
  // How the commands it prints reach predlogd (e.g. "--server=host:port"); empty: default.
  std::string server_flag;
};

struct CreditDemoResult {
  std::string denied_customer;
  std::string denied_prediction;
  std::string decision_time;  // ISO 8601
  int predictions_logged = 0;
  int customer_changes = 0;
};

// Runs the story; progress and the closing instructions go to `out` and
// `err`. Fails with the first call that fails.
absl::StatusOr<CreditDemoResult> RunCreditDemo(std::shared_ptr<grpc::Channel> channel,
                                               const CreditDemoOptions& options, std::ostream& out,
                                               std::ostream& err);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_CLI_CREDIT_DEMO_H_
