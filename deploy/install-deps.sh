#!/usr/bin/env bash
# Installs the Debian 12 packages predlog builds and tests with. Idempotent:
# does nothing (no apt-get at all) when every package is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config clang-format
  libabsl-dev libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc
  librocksdb-dev librdkafka-dev libssl-dev
  libxgboost-dev libcpp-httplib-dev libarchive-dev
  libjemalloc-dev libpq-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  kcat
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node and npm drive the browser test (tests/web/). Asked for by command, not
# by package name: a node from elsewhere (e.g. a nodejs package that bundles
# npm) would conflict with Debian's npm package.
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
