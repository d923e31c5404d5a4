#!/usr/bin/env bash
# The main job: set up, then check and summarize every example program, and run each for a
# few steps through the reference interpreter and through a kernel JIT-compiled for this CPU,
# checked against the interpreter, with fp32 and with 8-bit states (and on the GPU too, where
# there is one); then the step benchmark on the GPU if there is one, else on this CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/optjit --version
build/optjit check examples/*.opt
for f in examples/*.opt; do
  # Every state 8-bit: codes checked step by step against the interpreter.
  q8=""; for s in $(grep -E '^\s*state ' "$f" | awk '{print $2}'); do q8="$q8 --state $s=q8s"; done
  build/optjit run "$f" --target interp --size 4096 --steps 10
  build/optjit run "$f" --target host --size 100000 --steps 10 --check
  build/optjit run "$f" --target host --size 100000 --steps 10 --check --param-dtype bf16 $q8
  if build/optjit run "$f" --target cuda --size 1 --steps 1 >/dev/null 2>&1; then
    build/optjit run "$f" --target cuda --size 1000000 --steps 10 --check
    build/optjit run "$f" --target cuda --size 1000000 --steps 10 --check --param-dtype bf16 $q8
  fi
done
build/optjit bench
