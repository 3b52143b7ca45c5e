#!/usr/bin/env bash
# README's first command: installs deps, builds, and starts predlogd in the
# embedded default (built-in Kafka-protocol broker + RocksDB under ./data).
# Extra arguments go to predlogd (e.g. --grpc_listen=127.0.0.1:6000).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/build.sh
mkdir -p data
cat <<'MSG'
predlogd is starting (Ctrl-C stops it). Log and read a prediction with any gRPC client, e.g.
grpcurl (server reflection is on):
  grpcurl -plaintext -d '{"prediction": {"predictionId": "p1", "subjectId": "c1",
    "servedAt": "2026-11-27T10:00:00Z", "model": {"name": "credit", "version": "v1"},
    "inputs": [{"name": "income", "doubleValue": 52000}]}}' 127.0.0.1:50051 predlog.v1.PredictionLog/Log
  grpcurl -plaintext -d '{"predictionId": "p1"}' 127.0.0.1:50051 predlog.v1.PredictionLog/GetPrediction
MSG
exec build/services/predlogd --data_dir=./data "$@"
