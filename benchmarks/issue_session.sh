#!/usr/bin/env bash
# One device-machine call for the figures issues 5 and 6 ask, from an install folder (no build
# on the device):  benchmarks/issue_session.sh PREFIX [SECONDS]   (logs under $OUT when set)
#   1. the Llama list, every state format, and torch fused AdamW in the same call;
#   2. the library's q8 optimizers on the Llama list, LARS with fp32 states;
#   3. the first step of a fresh process: no disk cache, no driver cache (cold), then warm;
#   4. the tune knobs worth a comparison (OPTJIT_GPU_TUNE);
#   5. the small-tensor workload, then the GPU test suite, split in parallel filters;
#   6. the GPU test suite alone (5 without the small workload);
# in the order PARTS names (default "1 2 3 4 5"; "6 1 2" checks new kernels first), and stops
# starting new parts once SECONDS (default 420) have passed. With REQUIRE_CARD=H200 it stops at
# once on any other card (the issues' bars name an H200).
set -uo pipefail
prefix=${1:-dist}
budget=${2:-420}
out=${OUT:-/tmp}
bin="$prefix/bin/optjit"
start=$SECONDS
left() { [ $((SECONDS - start)) -lt "$budget" ]; }
export OPTJIT_CACHE_DIR=$(mktemp -d)   # the timed runs share one warm cache
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ -n "${REQUIRE_CARD:-}" && "$card" != *"$REQUIRE_CARD"* ]]; then echo "not a $REQUIRE_CARD: stopping"; exit 3; fi
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv | tee "$out/nvidia-smi.txt"

part1() {
echo "== 1. Llama list, every format, then torch fused AdamW (same call)"
"$bin" bench --workload llama --steps 20 2>&1 | tee "$out/llama.txt"
python3 benchmarks/torch_adamw_bench.py --steps 20 2>&1 | tee "$out/torch.txt"
}

part2() {
echo "== 2. library q8 optimizers, Llama list"
for opt in "sgd --hyper momentum=0.9" lion ademamix rmsprop "rmsprop --hyper momentum=0.9 --hyper centered=1" lamb "lars --hyper momentum=0.9"; do
  left || break
  echo "-- $opt"
  "$bin" bench --workload llama --states q8 --optimizer $opt --steps 20 2>&1 | tail -1
done 2>&1 | tee "$out/library.txt"
left && "$bin" bench --workload llama --states fp32 --optimizer lars --hyper momentum=0.9 --steps 20 2>&1 | tail -1
}

part3() {
echo "== 3. first step of a fresh process: cold (no caches), then warm"
for fmt in fp32 bf16 q8 q4 fp8; do
  for rep in 1 2; do
    left || break 2
    cold=$(mktemp -d)
    OPTJIT_CACHE_DIR=$cold CUDA_CACHE_PATH=$cold/driver "$bin" bench --workload llama --states $fmt \
      --steps 3 2>&1 | tail -1 | awk -v f=$fmt -v r=$rep '{print "cold", f, r, "first ms", $(NF-2), "|", $0}'
  done
done 2>&1 | tee "$out/first_step.txt"
# Where a cold q8 step's time goes: each kernel's LLVM phases and the driver's compile.
if left; then
  cold=$(mktemp -d)
  OPTJIT_DEBUG=1 OPTJIT_CACHE_DIR=$cold CUDA_CACHE_PATH=$cold/driver "$bin" bench --workload llama --states q8 --steps 3 2>&1 \
    | grep -E 'passes .* ms|ready in|first ms|^  q8' | sed 's/^/cold q8 debug | /' | tee -a "$out/first_step.txt"
fi
warm=$(mktemp -d)
if left; then
  OPTJIT_CACHE_DIR=$warm CUDA_CACHE_PATH=$warm/driver "$bin" bench --workload llama --states q8 --steps 3 >/dev/null 2>&1
  OPTJIT_CACHE_DIR=$warm CUDA_CACHE_PATH=$warm/driver "$bin" bench --workload llama --states q8 --steps 3 2>&1 | tail -1 \
    | sed 's/^/warm q8 | /' | tee -a "$out/first_step.txt"
fi
}

part4() {
  echo "== 4. tune knobs"
  # AdamW's quantized rows under each knob; unrolling also for AdEMAMix (three q8 states); the
  # dense rows (the H200 left them nearest the bar, 90.1-90.5 % in the twelfth session) in the
  # pipelined loop.
  for run in "max_blocks_per_sm=0 adamw q8 q4 fp8" "max_blocks_per_sm=3 adamw q8 q4 fp8" \
             "unroll_chunks=2 adamw q8 q4 fp8" "unroll_chunks=2 ademamix q8" \
             "elements_per_thread=8 adamw fp32" "pipelined=1 adamw fp32 bf16" "pipelined=1,elements_per_thread=8 adamw fp32"; do
    left || break
    set -- $run; tune=$1; opt=$2; shift 2
    echo "-- $tune $opt: $*"
    OPTJIT_GPU_TUNE=$tune "$bin" bench --workload llama ${*/#/--states } --optimizer $opt --steps 20 2>&1 | tail -$#
  done 2>&1 | tee "$out/tune.txt"
}

part5() {
left && "$bin" bench --workload small --steps 20 2>&1 | tee "$out/small.txt"
part6
}

part6() {
echo "== GPU test suite"
if left; then
  tests="$prefix/libexec/optjit/optjit_gpu_tests"
  # Eight filters balanced by hand; the ninth process runs every case none of them names, so a
  # new case is never left out.
  filters=("*every dtype*" "*quantized a*" "*quantized l*,*quantized r*,*quantized s*" "*rank-1*,*entry points*,*stochastic*,*covered*,*fast math*"
           "*cache*,*not aligned*,*another compute*,*empty*,*elementwise*,*zero and*" "*library*"
           "*optimizer:*" "*checkpoint*,*capturable:*")
  rest=$(IFS=,; echo "${filters[*]}")
  pids=()
  for i in "${!filters[@]}" rest; do
    if [ "$i" = rest ]; then select=(-tce="$rest"); else select=(-tc="${filters[$i]}"); fi
    OPTJIT_SOURCE_DIR=$PWD OPTJIT_CACHE_DIR=$(mktemp -d) "$tests" "${select[@]}" --duration=true >"$out/gpu_tests_$i.txt" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  grep -h "test cases:" "$out"/gpu_tests_*.txt
  echo "slowest cases (s):"  # doctest --duration: "0.123456 s: NAME"
  grep -h "^[0-9.]* s: " "$out"/gpu_tests_*.txt | sort -rn | head -8
  grep -l "FAILED\|ERROR" "$out"/gpu_tests_*.txt && grep -h -B2 -A12 "ERROR" "$out"/gpu_tests_*.txt | head -80
fi
}

for part in ${PARTS:-1 2 3 4 5}; do
  left || break
  "part$part"
done
echo "session: $((SECONDS - start)) s"
