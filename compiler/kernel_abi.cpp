#include "compiler/kernel_abi.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "ir/analysis.h"
#include "ir/numeric.h"

namespace optjit {

std::vector<std::string> kernel_scalars(const Program& lowered) {
    std::vector<std::string> names{std::string(kStepName)};
    for (const HyperDecl& h : lowered.hypers) names.push_back(h.name);
    for (const Assign& a : lowered.scalars) names.push_back(a.target);
    return names;
}

TableLayout table_layout(const KernelSpec& spec) { return TableLayout{int(spec.lowered.states.size()), has_rank1_state(spec.storage)}; }

bool rank1_state_is_stored(const KernelSpec& spec, const std::string& name) {
    if (!spec.storage.state(name).rank1) return false;
    for (const Assign& a : spec.lowered.update)
        if (a.target == name && !(a.value.op == Op::Ref && a.value.name == name)) return true;
    return false;
}

bool has_reductions(const KernelSpec& spec) { return !reductions(spec.lowered).empty(); }

uint32_t reduction_max_key(float value) {
    uint32_t bits = std::isnan(value) ? kReductionNaNBits : std::bit_cast<uint32_t>(value);
    return (bits >> 31) ? ~bits : bits | 0x80000000u;
}

double reduction_slot_value(Op op, uint64_t slot) {
    if (op == Op::TensorSum || op == Op::GlobalSum) return std::bit_cast<double>(slot);
    uint32_t key = uint32_t(slot);
    if (key == 0) return -std::numeric_limits<double>::infinity();
    uint32_t bits = (key >> 31) ? key & 0x7fffffffu : ~key;
    return double(std::bit_cast<float>(bits));
}

bool has_statistics_pass(const KernelSpec& spec) {
    for (const StateDecl& s : spec.lowered.states)
        if (rank1_state_is_stored(spec, s.name)) return true;
    return false;
}

std::vector<DType> array_types(const KernelSpec& spec) {
    std::vector<DType> types{spec.storage.param, spec.storage.grad};
    for (const StateDecl& s : spec.lowered.states) {
        StateFormat f = spec.storage.state(s.name).format;
        if (!is_block_quantized(f)) types.push_back(state_dtype(f));
    }
    return types;
}

bool has_quantized_state(const KernelSpec& spec) { return has_quantized_state(spec.storage); }

uint32_t largest_block(const KernelSpec& spec) {
    uint32_t block = 0;
    for (const StateDecl& s : spec.lowered.states) {
        const StateStorage& st = spec.storage.state(s.name);
        if (is_block_quantized(st.format)) block = std::max(block, st.block);
    }
    return block;
}

// The automatic choices below were measured on an H200 (benchmarks/codegen_bench.cpp, AdamW
// over 2^28 elements, notes in benchmarks/NOTES.md): one access of 16 bytes per thread to its
// widest array, in blocks of 128 threads, beat larger unrolls (fewer resident warps) and
// register caps (spills) for fp32, bf16 and mixed storage alike.
int gpu_threads_per_block(const KernelSpec& spec) {
    int t = spec.options.gpu_threads_per_block;
    t = t > 0 ? t : 128;
    // A chunk is a whole number of quantization blocks (powers of two): a power of two of at
    // least a block's threads.
    if (has_quantized_state(spec))
        t = std::max<int>(int(std::bit_ceil(unsigned(t))), int(largest_block(spec)) / gpu_elements_per_thread(spec));
    return t;
}

int gpu_vector_elements(const KernelSpec& spec) {
    int narrowest = 4, widest = 1;
    for (DType t : array_types(spec)) {
        narrowest = std::min(narrowest, dtype_bytes(t));
        widest = std::max(widest, dtype_bytes(t));
    }
    if (spec.options.gpu_vector_bytes == 8 || spec.options.gpu_vector_bytes == 16) return spec.options.gpu_vector_bytes / narrowest;
    return 16 / widest;
}

int gpu_elements_per_thread(const KernelSpec& spec) {
    if (has_quantized_state(spec)) return kQuantizedElementsPerThread;
    int vec = gpu_vector_elements(spec);
    int requested = spec.options.gpu_elements_per_thread;
    if (requested <= 0) return vec;
    return std::max(vec, requested / vec * vec);
}

bool gpu_pipelined_loop(const KernelSpec& spec) {
    // Only this loop decodes and encodes quantized states.
    return has_quantized_state(spec) || spec.options.gpu_pipelined > 0;
}

// Both defaults from the H200 (Llama list, AdamW, % of copy, runs of 1 / 2 / 4 with the L2
// asked for the chunk 2 / 3 / 5 ahead in the block's walk; benchmarks/NOTES.md): runs of 2 and
// 2 ahead were best or within 0.1 of it for every format: q8 82.4 (81.3 and 81.0 with runs of
// 1 and 4), q4 69.3 (65.1, 67.2), fp8 86.5 (84.8, 83.1); 5 ahead lost 2 to 8 points.
int gpu_prefetch_chunks(const KernelSpec& spec) {
    int requested = spec.options.gpu_prefetch_chunks;
    return requested >= 0 ? requested : 2;
}

int gpu_run_chunks(const KernelSpec& spec) {
    int requested = spec.options.gpu_run_chunks;
    return requested >= 0 ? requested : 2;
}

int gpu_unroll_chunks(const KernelSpec& spec) {
    int requested = spec.options.gpu_unroll_chunks;
    return requested > 0 ? std::min(requested, 4) : 1;
}

// H100, Llama list, AdamW, % of copy, two runs each (`OPTJIT_GPU_TUNE=max_blocks_per_sm=N
// optjit bench --workload llama --states F`, fifteenth session), as many as fit (5 for the
// whole-chunk kernels, 96 registers) / at most 3 / at most 4: q8 90.8, 90.8 / 92.3, 92.5 /
// 92.0, 91.5; q4 89.8, 90.6 / 90.9, 90.8 / 91.5, 91.5; fp8 93.0, 93.2 / 94.2, 94.5 / 94.2,
// 93.7. Dense kernels lose with a cap (fp32 93.5 / 84.7 / 92.5). 4 is also the general
// quantized kernels' own occupancy (125 registers), which every H200 figure ran.
int gpu_max_blocks_per_sm(const KernelSpec& spec) {
    int requested = spec.options.gpu_max_blocks_per_sm;
    if (requested >= 0) return requested;
    return spec.target.is_gpu() && has_quantized_state(spec) ? 4 : 0;
}

int64_t chunk_elements(const KernelSpec& spec) {
    // Host: large enough that a call per chunk costs nothing, small enough to stay in L2, and
    // a multiple of every block size (4096 at most).
    return spec.target.is_gpu() ? int64_t(gpu_threads_per_block(spec)) * gpu_elements_per_thread(spec) : 16384;
}

bool gpu_whole_chunks(const KernelSpec& spec) { return spec.options.whole_chunks && spec.target.is_gpu() && has_quantized_state(spec); }

size_t scalar_block_floats_offset(const Program& lowered) { return scalar_block_hyper(lowered.hypers.size()); }
size_t scalar_block_bytes(const Program& lowered) { return scalar_block_scalar(lowered, kernel_scalars(lowered).size()); }

}  // namespace optjit
