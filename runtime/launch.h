// Launching a kernel over a list of tensors, on the host or on the GPU.
//
// The caller owns memory. The tensor table (compiler/kernel_abi.h) is built once for a list
// of tensors and reused every step; the scalars are computed per step, in float64 on the host
// (the reference semantics), so `lr` and `step` are plain arguments and never recompile.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/cuda_driver.h"
#include "runtime/kernel_cache.h"
#include "runtime/thread_pool.h"

namespace optjit {

// One tensor of a launch: addresses in the memory of the kernel's target.
struct TensorArgs {
    uint64_t p = 0;
    uint64_t g = 0;
    std::vector<uint64_t> states;  // declaration order; the codes of a block-quantized state
    // Per state: its block scales if block-quantized (else 0 or absent); for a rank-1 state its
    // statistics buffer, 2 * (n / columns + columns) floats (compiler/kernel_abi.h).
    std::vector<uint64_t> scales;
    int64_t n = 0;
    int64_t offset = 0;            // global index of element 0 when the tensor is a shard
    int64_t columns = 0;           // the tensor's last dimension (kernels with rank-1 states)
};

struct TensorTable {
    std::vector<int64_t> words;  // rows as compiler/kernel_abi.h lays them out
    int32_t num_tensors = 0;
    int64_t num_chunks = 0;
    // Rank-1 states the kernel stores: each statistics buffer and its count of stored
    // statistics (rows + columns).
    std::vector<std::pair<uint64_t, int64_t>> rank1_statistics;
};

// What build_table refuses: the row and a sentence about it (what() is "tensor N: sentence").
struct TableError : std::invalid_argument {
    TableError(size_t tensor_index, std::string sentence);
    size_t tensor;
    std::string reason;
};

// Whether every tensor of a GPU launch with block-quantized states is a whole number of its
// kernel's chunks with every array 16-byte aligned: then the launch can take a kernel without
// the path for short and unaligned chunks (CodegenOptions::whole_chunks). The chunk is the one
// lower() will give `request` (compiler/compile.h's resolved_options: OPTJIT_GPU_TUNE included).
bool whole_chunks_hold(const KernelRequest& request, std::span<const TensorArgs> tensors);

// Where `requests` (every launch an Optimizer compiles, concurrently) hold a GPU kernel with
// block-quantized states, asks for the dense GPU ones to compile as relocatable code
// (CodegenOptions::gpu_relocatable): the driver compiles whole programs one at a time, so a
// quantized group's small tensors (fp32 states) would otherwise wait for the quantized kernel's
// compile or it for theirs. Only there: the relocatable dense kernel ran the many-small-tensors
// workload 6-9 points slower on the H100 (fp32 89.8 -> 80.8 % of copy, bf16 73.9 -> 67.8).
void relocate_dense_beside_quantized(std::vector<KernelRequest>& requests);

// Throws TableError if a tensor's state count does not match, a quantized state has no
// scales, a shard does not start on a block boundary, or a kernel with rank-1 states gets a
// shard or a tensor that is not whole rows of its columns.
TensorTable build_table(const Kernel& kernel, std::span<const TensorArgs> tensors);

// The kernel's launch scalars for `step`: run-time hyper-parameter values by name (every
// hyper-parameter of the lowered program; missing ones take their defaults). Throws
// std::invalid_argument for an unknown name.
std::vector<float> launch_scalars(const Kernel& kernel, const std::map<std::string, double>& hypers, int64_t step);

// Where a launch's kernels keep their reductions' values (compiler/kernel_abi.h): addresses in
// the memory of the kernel's target, zeroed before the step's first reduction pass (what
// runtime/step_reductions.h does). Unused by kernels without reductions.
struct ReductionSlots {
    uint64_t global = 0;  // the step's global slots, shared by its launches
    uint64_t tensor = 0;  // this launch's tensor slots: table.num_tensors rows
};

// What a launch call runs. A step with reductions is every launch's reduction pass of level
// 1, then of level 2, ..., then every launch's update: a level's reductions must be complete,
// over every launch, before anything reads them (step_passes()).
struct LaunchPass {
    // 0: the update, with the rank-1 statistics steps where the kernel has them; L >= 1: the
    // reduction pass of level L (ir/analysis.h's reduction_levels).
    int level = 0;
    static LaunchPass update() { return {0}; }
    static LaunchPass reductions(int level) { return {level}; }
    bool is_update() const { return level == 0; }
};
// The passes of a step over launches of these kernels, in order: every reduction level any of
// them has, then the update. A launch skips the levels its kernel lacks (has_pass).
std::vector<LaunchPass> step_passes(const std::vector<const Kernel*>& kernels);
// Whether `kernel`'s step includes `pass`.
bool has_pass(const Kernel& kernel, LaunchPass pass);

// Runs a host kernel over the table, split across the pool's threads (with rank-1 states, the
// whole step compiler/kernel_abi.h describes).
// `seed` keys stochastic rounding (kernels without it ignore it).
void launch_host(const Kernel& kernel, const TensorTable& table, const std::vector<float>& scalars, ThreadPool& pool, uint64_t seed = 0,
                 ReductionSlots slots = {}, LaunchPass pass = {});

// Launches a GPU kernel (with rank-1 states, the whole step compiler/kernel_abi.h describes);
// `table` must hold the table's words in device memory. Asynchronous.
void launch_cuda(const Kernel& kernel, cuda::DevicePtr table, const TensorTable& shape, const std::vector<float>& scalars,
                 cuda::Stream stream, uint64_t seed = 0, ReductionSlots slots = {}, LaunchPass pass = {});
// The same for a capturable kernel, whose scalars are in the device's `scalar_block`
// (compiler/kernel_abi.h); and the one-thread NAME_scalars that fills the block for a step
// (once a step for every launch sharing the block: it counts the step). Asynchronous, with no
// host work that a CUDA graph would not replay. Programs that skip non-finite steps pass the
// address of the non-finite count's global slot (read before the step clears it), kernels
// with hypers_by_value the hyper-parameters (compiler/kernel_abi.h).
void launch_cuda(const Kernel& kernel, cuda::DevicePtr table, const TensorTable& shape, cuda::DevicePtr scalar_block,
                 cuda::Stream stream, uint64_t seed = 0, ReductionSlots slots = {}, LaunchPass pass = {});
void launch_cuda_scalars(const Kernel& kernel, cuda::DevicePtr scalar_block, cuda::Stream stream, cuda::DevicePtr nonfinite_count = 0,
                         const std::vector<double>& hypers = {});

}  // namespace optjit
