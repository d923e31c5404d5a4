// What a kernel is compiled for: the host CPU (as detected at run time) or an NVIDIA GPU of a
// given compute capability, plus the options that change generated code.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace optjit {

struct Target {
    enum class Kind { Host, NVPTX } kind = Kind::Host;
    int sm = 0;  // compute capability * 10 (80, 86, 89, 90) for NVPTX

    bool is_gpu() const { return kind == Kind::NVPTX; }
    // "host", "sm_80", "sm_90".
    std::string name() const;
    std::string triple() const;
    std::string cpu() const;       // "sm_90"; the host CPU's name
    std::string features() const;  // "+ptx78"; the host CPU's features
    int ptx_version() const;       // the lowest PTX ISA version the sm needs (78 for sm_90)

    friend bool operator==(const Target&, const Target&) = default;
};

// "host" or "sm_NN" (NN from 80 to 90); nullopt with a sentence in `error` otherwise.
std::optional<Target> parse_target(std::string_view s, std::string* error);

// NVPTX's address space of device (global) memory.
constexpr unsigned kNvptxGlobal = 1;

// How a kernel's divisions, square roots and reciprocal square roots round.
//   Ieee: correctly rounded, as the interpreter; the GPU kernel equals the host's bit for bit.
//   Fast: on the GPU the hardware's approximations (within 2 ulp, subnormals flushed to zero),
//         multiplies fused into adds where that saves an instruction, and products by
//         launch-uniform factors regrouped (with a decoded state's scale: one multiplication a
//         block); on the host LLVM's fast-math flags (afn, arcp).
//   Auto: Fast for GPU kernels with a block-quantized state, Ieee otherwise. Such states are
//         rounded to 8 or 4 bits (a step of 2^-7 of the block's scale at best), far above the
//         2^-22 fast math adds, and their kernels are bound by the instructions they issue:
//         bitsandbytes builds its 8-bit optimizers with --use_fast_math for the same reason.
enum class MathMode { Auto, Ieee, Fast };
std::string_view math_mode_name(MathMode m);  // "auto", "ieee", "fast"

// Options that change generated code (and so belong to the cache key).
struct CodegenOptions {
    // Resolved by lowering (compiler/compile.h's lower(), resolved_math): a KernelSpec never
    // holds Auto.
    MathMode math = MathMode::Auto;
    // GPU tuning, 0 for the automatic choice: elements each thread updates per chunk (a
    // multiple of the 16-byte vector; kernels with block-quantized states always take 8), and
    // the blocks per SM ptxas must fit (it then budgets registers for that occupancy).
    int gpu_elements_per_thread = 0;
    int gpu_min_blocks_per_sm = 0;
    int gpu_threads_per_block = 0;  // 0: 128
    // Bytes of one access to the narrowest array: 8 or 16; 0 makes accesses to the widest
    // array 16 bytes.
    int gpu_vector_bytes = 0;
    // Pipelined kernels (kernel_abi.h's gpu_pipelined_loop): a block asks L2 for the chunk this
    // many ahead of the one it processes (its next one is already loading into registers); 0
    // or 1: none, -1: the automatic choice.
    int gpu_prefetch_chunks = -1;
    // Pipelined kernels: blocks take runs of this many consecutive chunks, block b runs b, b +
    // grid, ...; 0: one contiguous range a block; -1: the automatic choice.
    int gpu_run_chunks = -1;
    // Pipelined kernels: chunks the loop body processes one after the other (the loop
    // unrolled), so that the registers a chunk's loads land in alternate between copies
    // instead of being moved at the back edge; 0: the automatic choice.
    int gpu_unroll_chunks = 0;
    // GPU kernels without block-quantized states: 1, the software-pipelined chunk loop of the
    // quantized kernels (a thread's next chunk loading while it computes this one, runs of
    // chunks, L2 asked along the walk, guarded branch-free division and square root); 0, the
    // grid-stride loop that loads a chunk, then computes it.
    int gpu_pipelined = 0;
    // The update kernel's resident blocks an SM that the runtime's grid assumes, at most (the
    // code is the same; its launches take fewer blocks); 0: as many as fit; -1: the automatic
    // choice (kernel_abi.h's gpu_max_blocks_per_sm).
    int gpu_max_blocks_per_sm = -1;
    // GPU kernels with block-quantized states: every tensor of every launch is a whole number
    // of chunks, its arrays aligned for vector accesses (the Optimizer sets it where it has
    // checked so), so the kernel has no element-by-element path for short or unaligned chunks:
    // that path is a quarter of the driver's compile of a q8 kernel, most of a cold first step.
    bool whole_chunks = false;
    // GPU kernels: compiled through cuLink as relocatable code and kept on disk as a cubin
    // (runtime/kernel_cache.cpp). The driver runs whole-program compiles one at a time in a
    // process but cuLink's beside them, so the Optimizer asks this for the dense kernels it
    // compiles beside quantized ones (launch.h's relocate_dense_beside_quantized).
    bool gpu_relocatable = false;
    // bf16 parameters round stochastically (ir/numeric.h's stochastic_bits, keyed by the
    // launch's seed, the step and the element's global index) instead of to nearest even.
    bool stochastic_rounding = false;
    // GPU kernels read their scalars from a device block that a generated NAME_scalars kernel
    // fills, incrementing the step (compiler/kernel_abi.h): a step can be captured in a CUDA
    // graph and replayed with hyper-parameters changed through the block.
    bool capturable = false;
    // Capturable kernels only: NAME_scalars takes the hyper-parameters as arguments (float64,
    // declaration order) and writes them into the block, instead of reading them from it. For
    // eager steps whose step number the device keeps (programs that skip non-finite steps): a
    // launch argument reaches the device with no copy and no synchronization.
    bool hypers_by_value = false;
    // Capturable kernels only: the step skips non-finite gradients (passes/gradient_policies.h)
    // and does not count a skipped step: NAME_scalars takes the count's slot and commits the
    // previous step only where it is 0 (compiler/kernel_abi.h).
    bool count_applied_steps = false;
    friend bool operator==(const CodegenOptions&, const CodegenOptions&) = default;
};

// Sets the GPU tuning knob `knob` (elements_per_thread, threads_per_block, vector_bytes,
// min_blocks_per_sm, max_blocks_per_sm, prefetch_chunks, run_chunks, unroll_chunks, pipelined) of
// `options`; false for an unknown knob.
bool set_gpu_tune(CodegenOptions& options, std::string_view knob, int value);
// The knobs' names, comma-separated, for messages.
std::string gpu_tune_knob_names();
// The knobs of OPTJIT_GPU_TUNE ("knob=N,knob=N"), for experiments with kernels a program does
// not compile itself (optjit bench, the Optimizer): lower() applies them to every kernel.
// Throws std::invalid_argument for a malformed value or an unknown knob.
void apply_gpu_tune_environment(CodegenOptions& options);

// `requested` with Auto decided for a kernel of `target` (see MathMode).
MathMode resolved_math(MathMode requested, const Target& target, bool has_quantized_state);

}  // namespace optjit
