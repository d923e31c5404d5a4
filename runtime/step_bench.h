// `optjit bench`: steps a workload through optjit::Optimizer on the host or the GPU, one row per
// state format, and prints what a reader needs to judge the step against the memory:
//
//   step ms     median over timed steps (CUDA events on the GPU, a steady clock on the host),
//               with a new learning rate every step
//   GB moved    bytes the step must move: p read and written, g read, each state's values or
//               codes read and written, each block scale read and written, and for a program
//               with reductions (LAMB, LARS, clipping) one more read of what the reductions'
//               arguments read (the reduction pass: g for clipping; p, g and states for LAMB)
//   GB/s        GB moved / step time
//   copy GB/s   a copy of the same bytes (read + write) timed in the same run: a device-to-device
//               copy on the GPU, a copy split over the worker threads on the host
//   % copy      GB/s against copy GB/s
//   state B/par state memory per parameter
//   first ms    the first step, with every kernel it needs compiled (or found in the cache)
//   compiles    kernels compiled during the timed steps (0: a schedule never recompiles)
//
// The workloads, a library optimizer (AdamW unless --optimizer names another) with bf16
// parameters and gradients:
//   tensor   one tensor (2^28 elements on the GPU, 2^24 on the host; --size changes it)
//   llama    a parameter list shaped like Llama-3.2-1B: 146 tensors, 1.24 B parameters
//   small    4096 tensors of 1 to 65536 elements (log-uniform): the cost of many small tensors
// State formats: fp32, bf16, q8 (blocks of 256), q4 (128), fp8, for every state; the quantized
// ones signed (q8s, q4s), or unsigned (q8u, q4u) for a state that stays non-negative (AdamW's v).
// Tensors under 4096 elements keep fp32 states (in a launch of their own). With --capturable
// the optimizer is capturable and each timed step is a CUDA graph replay, its new lr written
// into the device block on the same stream.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/target.h"
#include "passes/gradient_policies.h"

namespace optjit {

// A tensor of a workload: its elements and its last dimension (0 for one dimension).
struct BenchShape {
    int64_t n, columns;
};

// torch's Linear weights are [out, in]: rows of `in` columns.
std::vector<BenchShape> llama_3_2_1b_shapes();

struct StepBenchOptions {
    bool gpu = true;                       // else the host
    std::vector<std::string> workloads;    // empty: tensor, llama and small (the host: tensor and small)
    std::vector<std::string> formats;      // empty: fp32 bf16 q8 q4 fp8
    int64_t tensor_elements = 0;           // 0: the target's default
    int steps = 30;                        // timed steps (after the first)
    bool capturable = false;               // GPU: each step a replay of a captured CUDA graph
    std::string optimizer = "adamw";       // a library name (ir/library.h)
    std::map<std::string, double> hypers;  // over the program's defaults (lr follows a schedule)
    GradientPolicies policies;             // passes/gradient_policies.h
    MathMode math = MathMode::Auto;        // compiler/target.h
};

// Prints the table to stdout; throws std::invalid_argument for an unknown workload or format.
void run_step_bench(const StepBenchOptions& options);

}  // namespace optjit
