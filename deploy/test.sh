#!/usr/bin/env bash
# README's test command: installs what is missing, builds, runs every test.
# Pass ctest arguments to narrow it, e.g. `deploy/test.sh -L unit`.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
