#!/usr/bin/env bash
# The main job: set up, then check and summarize every example program, and run each one for
# a few steps through the reference interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/optjit --version
build/optjit check examples/*.opt
for f in examples/*.opt; do
  build/optjit run "$f" --target interp --size 4096 --steps 10
done
