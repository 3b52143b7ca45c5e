#!/usr/bin/env bash
# README's first command: installs deps, builds, and starts predlogd in the
# embedded default (built-in Kafka-protocol broker + RocksDB under ./data).
# Extra arguments go to predlogd (e.g. --grpc_listen=127.0.0.1:6000).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/build.sh
mkdir -p data
cat <<'MSG'
predlogd is starting (Ctrl-C stops it). In another terminal, the credit-scoring walk-through
(README.md) fills it and names a denied customer to investigate:
  export PATH=$PWD/build/services:$PATH
  predlog demo credit
Or log and read one prediction yourself:
  echo '{"predictionId": "p1", "subjectId": "c1", "servedAt": "2026-11-27T10:00:00Z",
         "model": {"name": "credit", "version": "v1"},
         "inputs": [{"name": "income", "doubleValue": 52000}],
         "output": {"floatScores": [0.27], "label": "approve"}}' | tr -d '\n' | predlog log
  predlog get p1
Metrics: curl -s http://127.0.0.1:9464/metrics   (gRPC reflection is on for other clients)
MSG
exec build/services/predlogd --data_dir=./data "$@"
