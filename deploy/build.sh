#!/usr/bin/env bash
# Configures (Ninja, ccache, RelWithDebInfo with assertions) and builds predlog in ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
"$PWD/deploy/install-deps.sh"
if [ ! -f build/build.ninja ]; then
  cmake --preset default
fi
cmake --build build
