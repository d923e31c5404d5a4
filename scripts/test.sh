#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite through CTest. GPU tests carry the
# label "gpu" and skip themselves where there is no CUDA driver.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
