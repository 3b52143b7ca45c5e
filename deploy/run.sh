#!/usr/bin/env bash
# README's first command: installs deps, builds, and starts predlogd in the
# embedded default (built-in Kafka-protocol broker + RocksDB under ./data).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/build.sh
if [ ! -x build/services/predlogd ]; then
  echo "run.sh: predlogd is not built yet: the service binary arrives with the gateway/ingest" >&2
  echo "        work (issue 3). The shard store and its tests are ready: deploy/test.sh" >&2
  exit 1
fi
mkdir -p data
exec build/services/predlogd --data_dir=./data "$@"
