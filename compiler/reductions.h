// Reductions in kernels (tensor_sum, tensor_max, global_sum, global_max): what the NVPTX and
// host back ends share.
//
// A kernel whose program has reductions comes with a reduction pass for each level of them
// (ir/analysis.h's reduction_levels): NAME_reductions, NAME_reductions_2, ...
// (reductions_symbol(), compiler/codegen.h), which run first in a step, in order. The pass of
// a level walks every element of the launch as the update would see it (decoded, with the
// program's math up to each argument; the reductions of earlier levels read from their
// slots), sums or maximizes the arguments of its level's reductions over a lane's elements,
// keeps the lane's totals across its chunks (a tensor's until the block moves to another
// tensor, the global ones until it ends), then combines the lanes (GPU: the warp's shuffles)
// and adds each total into its slot with one atomic. The update kernel (and a rank-1
// statistics pass) then reads each slot as its reduction's value. Slots live in device memory
// and are combined on the device: a step never waits for the host. compiler/kernel_abi.h lays
// the slots out.
#pragma once

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>

#include <functional>
#include <vector>

#include "compiler/kernel_abi.h"
#include "compiler/rank1_statistics.h"

namespace optjit {

// The chunks and lanes: a lane takes `lanes.elements_per_lane` elements of a chunk, with
// `lane_count` lanes a chunk, in runs of `run` consecutive elements: run r of lane l starts at
// element first + (r * lane_count + l) * run (GPU: a thread's runs of 16 bytes or 8 codes, with
// neighbouring threads on neighbouring runs, so that a warp's vector loads are coalesced; host:
// one lane, the whole chunk).
struct ReductionWalk {
    StatisticsWalk lanes;
    int64_t lane_count = 1;
    int64_t run = 1;  // a power of two of at most 8 dividing elements_per_lane (ElementLoader::load_run)
    llvm::Value* global_slots = nullptr;  // pointers in lanes.address_space (compiler/kernel_abi.h)
    llvm::Value* tensor_slots = nullptr;
    // Combines a value over the lanes of a chunk: a float64 sum, or an i32 maximum key
    // (`maximum` set). Every lane calls it. Absent where a lane is the whole chunk (host).
    std::function<llvm::Value*(llvm::IRBuilder<>&, llvm::Value*, bool maximum)> across_lanes;
    llvm::Value* leader = nullptr;  // i1: the lane that adds the combined value (nullptr: every lane)
};

// Emits the body of the reduction pass of `level` (the reductions of that level; those of
// earlier levels read from their slots) into the builder's function and leaves the builder
// after it.
void emit_reduction_pass(llvm::IRBuilder<>& b, llvm::Module& module, const KernelSpec& spec, const ReductionWalk& walk, int level);

// The fp32 value of every reduction (ir/analysis.h's order) for the tensor `tensor` (i64 index
// in the launch's table), loaded from the slots (pointers in `address_space`); with
// `below_level`, only of the reductions of lower levels (nullptr for the others). For
// ElementValues::reductions; empty for a program without reductions.
std::vector<llvm::Value*> emit_reduction_values(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* global_slots,
                                                llvm::Value* tensor_slots, llvm::Value* tensor, int below_level = 0);

}  // namespace optjit
