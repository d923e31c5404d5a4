#!/usr/bin/env bash
# One device-machine session: the GPU tests, every example through the CUDA kernel against the
# interpreter (dtypes, then every block-quantized format), then the code generation and
# quantized-state benchmarks. Runs from an install folder (no build there):
#   benchmarks/gpu_session.sh dist      (logs under $OUT when set)
set -uo pipefail
prefix=${1:-dist}
out=${OUT:-/tmp}
export OPTJIT_CACHE_DIR=$(mktemp -d)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$out/nvidia-smi.txt"
if [ -x "$prefix/libexec/optjit/optjit_gpu_tests" ]; then
  OPTJIT_SOURCE_DIR=$PWD "$prefix/libexec/optjit/optjit_gpu_tests" 2>&1 | tee "$out/gpu_tests.txt" | tail -4
fi
fails=0
for f in "$prefix"/share/optjit/examples/*.opt; do
  states=$(grep -E '^\s*state ' "$f" | awk '{print $2}')
  bf16_states=""; for s in $states; do bf16_states="$bf16_states --state $s=bf16"; done
  for opts in "" "--param-dtype bf16 --grad-dtype bf16 $bf16_states" "--param-dtype bf16 --grad-dtype f32" "--param-dtype f16 --grad-dtype f16" "--fast-math"; do
    for size in 1 4097 1000003; do
      if ! "$prefix"/bin/optjit run "$f" --target cuda --size $size --steps 10 --seed $RANDOM --check $opts >"$out/run.log" 2>&1; then
        echo "FAIL: $f size $size $opts"; cat "$out/run.log"; fails=$((fails+1))
      fi
    done
  done
done
echo "cuda checks: $fails failed"
qfails=0
for f in "$prefix"/share/optjit/examples/*.opt; do
  states=$(grep -E '^\s*state ' "$f" | awk '{print $2}')
  for fmt in q8s q8u q4s q4u fp8; do
    opts=""; for s in $states; do opts="$opts --state $s=$fmt"; done
    if ! "$prefix"/bin/optjit run "$f" --target cuda --size 1000003 --steps 20 --seed $RANDOM --check --param-dtype bf16 --grad-dtype bf16 $opts >"$out/run.log" 2>&1; then
      echo "FAIL: $f $opts"; cat "$out/run.log"; qfails=$((qfails+1))
    fi
  done
done
echo "quantized cuda checks: $qfails failed"
"$prefix"/bin/optjit run "$prefix"/share/optjit/examples/adamw.opt --target cuda --size 1000003 --steps 10 --check
"$prefix"/bin/optjit-codegen-bench 2>&1 | tee "$out/bench.txt"
"$prefix"/bin/optjit-quantized-bench ${QUANTIZED_BENCH_ARGS:-} 2>&1 | tee "$out/quantized_bench.txt"
