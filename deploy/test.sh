#!/usr/bin/env bash
# README's test command: installs what is missing, builds, runs every test.
# Pass ctest arguments to narrow it, e.g. `deploy/test.sh -L unit`.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/build.sh
# The browser test's driver (tests/web/package-lock.json), installed again only
# when node_modules is missing or older than the lock.
if [ ! -f tests/web/node_modules/.package-lock.json ] ||
   [ tests/web/package-lock.json -nt tests/web/node_modules/.package-lock.json ]; then
  (cd tests/web && npm ci --no-audit --no-fund)
fi
mkdir -p build/test-artifacts/web
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
