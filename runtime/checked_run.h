// Runs optimizer steps over random tensors on a target, optionally side by side with the
// reference interpreter: what `optjit run` does, and what the kernel tests check.
//
// Data: each tensor's parameter starts as standard normal values, each step's gradient is
// standard normal, drawn from the seed (runtime/random.h) and rounded to the storage dtypes.
// Tensors under kMinQuantizedElements keep fp32 states (ir/storage.h): they go in a launch of
// their own, with the kernel for that storage.
//
// Checking: without block-quantized states the interpreter runs alongside from the same start
// and the final values are compared. With them, a code one apart flips the next step's input,
// so the interpreter is re-synced to the kernel's state before every step (as bitsandbytes'
// tests do) and each step's output is compared: p and the other states within tolerance,
// codes identical or one apart only across a midpoint, scales within tolerance (relative to
// the larger of the block's scale and the tensor's RMS scale, as values are compared).
// Every buffer has a guard region after its last element, filled with a sentinel and checked
// after the run, so a kernel that writes past a tensor's end is caught.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/compile.h"

namespace optjit {

struct RunOptions {
    KernelRequest request;                 // target "interp" is request.target == host with interp = true
    bool interp = false;                   // run the reference interpreter instead of a kernel
    std::vector<int64_t> sizes = {4096};   // one launch over tensors of these sizes
    int64_t columns = 0;                   // > 0: every tensor is rows of this many columns (rank-1 states)
    int64_t steps = 10;
    uint64_t seed = 0;
    std::map<std::string, double> hypers;  // run-time values; others take their defaults
    bool check = false;                    // also run the interpreter and compare
};

struct TensorSummary {
    std::string name;           // "p" or a state's name, over all tensors of the run
    double norm = 0;            // L2 norm of the final values
    uint64_t checksum = 0;      // FNV-1a of the final values' fp32 bits
    double max_rel_diff = 0;    // against the interpreter, when checked
    double tolerance = 0;
    int64_t worst_element = -1; // index (over the concatenated tensors) of the largest difference
    // Block-quantized states (checked step by step, from the same state): codes compared,
    // codes that differ by rounding (fp32 and float64 math on either side of a decision): one
    // apart where the value lies within kStraddle of the midpoint between them, or any two
    // codes whose values differ by at most kStraddle of the tensor's RMS block maximum (a value
    // that cancels to near 0 and is its own scale: a one-element last block, a rank-1 row of one
    // column), codes wrong otherwise, and the largest difference of a block scale, relative to
    // the larger of that scale and the tensor's RMS scale.
    int64_t codes_compared = 0, codes_straddling = 0, codes_wrong = 0;
    double max_scale_rel_diff = 0;
};

// How close to a midpoint (in units of the block's absmax) a value must be for a code one apart
// to count as rounding rather than an error: a few fp32 roundings of the state's terms.
constexpr double kStraddle = 1e-5;

struct RunSummary {
    std::vector<TensorSummary> tensors;  // p, then states in declaration order
    // When checked: the program's reductions (ir/analysis.h's order) in the last step or, with
    // quantized states, in every step from the same state: the kernels' values against the
    // reference's (max_rel_diff, within the run's tolerance), and the norm of the kernels'.
    std::vector<TensorSummary> reductions;
    double first_step_ms = 0;            // wall time of step 1, compile included
    int compiles = 0;                    // kernels compiled during the run
    bool passed = true;                  // every difference within tolerance
};

// Throws std::invalid_argument for bad options, cuda::CudaError for GPU failures, and
// std::runtime_error if a guard region was overwritten.
RunSummary run_steps(const RunOptions& options);

// Largest relative difference |a - b| / max(|b|, rms(b)), and where it is.
// `scale`, where given, is a larger RMS to measure small values against (b's part of a tensor).
double max_relative_difference(const std::vector<double>& a, const std::vector<double>& b, int64_t* where = nullptr, double scale = 0);
// Tolerance for values stored as `t` after some steps of fp32 math; a run is held to the
// loosest tolerance of the types it stores.
double tolerance_for(DType t);

}  // namespace optjit
