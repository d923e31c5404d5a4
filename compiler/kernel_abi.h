// The calling convention of generated kernels, shared by code generation and the runtime.
//
// A launch steps many tensors. They are described by a table of 64-bit words, one row per
// tensor, built once per parameter group and reused every step:
//
//   row t: [ p, g, state_0 .. state_{S-1}, scales_0 .. scales_{S-1}, n, chunk_begin, chunk_end, offset (, columns) ]
//
// (pointers as integers; a block-quantized state's pointer is its codes and scales_s its fp32
// block scales, 0 for other formats; n elements; chunks [chunk_begin, chunk_end) of the
// launch's chunk space belong to tensor t; offset is the global index of the tensor's first
// element when it is a shard, a multiple of every block size). A chunk is `chunk_elements`
// consecutive elements of one tensor, a multiple of every block size, so blocks never cross
// chunks; the last chunk of a tensor may be short. Work is distributed by chunk, so a 2
// K-element bias and a 262 M-element embedding share one launch and every thread stays busy.
//
// GPU kernel:   void NAME(const i64* table, i32 num_tensors, i64 num_chunks, i64 seed, float scalars...)
//   each block takes chunks blockIdx.x, blockIdx.x + gridDim.x, ...
// Host kernel:  void NAME(const i64* table, i32 num_tensors, i64 chunk_begin, i64 chunk_end, const float* scalars, i64 seed)
//   one call per worker thread, over its range of chunks.
// `seed` keys the random stream of stochastic rounding (with the step and the element's global
// index); kernels without it ignore it.
//
// Scalars are the values fixed for a launch that the element loop reads, as fp32, in the
// order kernel_scalars() gives: `step`, every hyper-parameter, every scalars-section value.
// The runtime computes them in float64 on the host, once per launch (ir/ reference semantics).
//
// Capturable kernels (CodegenOptions::capturable, GPU only) take, in place of the scalars,
// one pointer to a scalar block in device memory:
//   void NAME(const i64* table, i32 num_tensors, i64 num_chunks, i64 seed, ScalarBlock* block)
//   ScalarBlock: f64 step (steps taken), f64 hypers[H] (the lowered program's hyper-parameters,
//                in declaration order), then f32 scalars[K] (kernel_scalars() order)
// and the module holds NAME_scalars(ScalarBlock* block), run by one thread before the update:
// it adds 1 to `step` and computes every scalar from the step and the hypers in float64, as
// the runtime does for eager launches, rounding each to fp32. Writing a hyper-parameter into
// the block between graph replays is how a schedule reaches a captured step.
// With CodegenOptions::count_applied_steps (programs that skip non-finite steps,
// passes/gradient_policies.h), a skipped step does not count:
//   NAME_scalars(ScalarBlock* block, const f64* nonfinite_count)
// runs before the step clears its reduction slots, with the address of the non-finite count's
// global slot: it adds 1 to `step` (steps applied) only where that count, the previous step's,
// is 0 (the runtime writes -1 there when there is no step to commit), and computes the scalars
// for step + 1. With CodegenOptions::hypers_by_value, NAME_scalars takes f64 hypers[H] as
// arguments after those and reads them there, not from the block (eager steps, no copies).
//
// Rank-1 states (q4u:rank1, ir/quantization.h). Every row has one more word, `columns` (the
// tensor's last dimension; rows = n / columns), and such a state's scales_s points to
// 2 * (rows + columns) floats: the stored statistics (row maxima, then column maxima: what a
// checkpoint keeps), then the same again for the statistics of the step being computed. The
// module holds a second kernel, NAME_statistics (statistics_symbol(), compiler/codegen.h),
// with the same arguments, and a step is, in order (only where the kernel stores a rank-1
// state: has_statistics_pass()):
//   1. fill every rank-1 state's new statistics with the bits of kScaleFloor;
//   2. NAME_statistics: recomputes each element's new state value and raises its row's and
//      column's new statistic to its magnitude (atomic maxima on the fp32 bits, NaN winning);
//   3. NAME: the update, decoding with the stored statistics, encoding with the new ones;
//   4. copy the new statistics over the stored ones.
// runtime/launch.h does all four. A tensor without columns (one dimension) stores such a state
// as plain q4u (storage_for_tensor) and goes in a launch of its own.
//
// Reductions (tensor_sum, tensor_max, global_sum, global_max; compiler/reductions.h). Every
// kernel of a program with reductions takes two more pointers, after `seed`:
//   GPU:  NAME(table, num_tensors, num_chunks, seed, global_slots, tensor_slots, scalars...)
//   host: every host kernel takes them, after `seed` (kernels without reductions ignore them)
// Slots are 8 bytes: global reduction k (ir/analysis.h numbers each scope's reductions) in
// global_slots[k], shared by every launch of a step; tensor reduction k of row t in
// tensor_slots[t * tensor_reduction_count + k]. A sum's slot holds a float64; a maximum's holds
// reduction_max_key() of an fp32 in its low 4 bytes. A step, for all launches that share the
// global slots:
//   1. zero every slot (0 is an empty sum, and a key below every value's: -inf);
//   2. for each level L of the program's reductions (ir/analysis.h's reduction_levels), the
//      pass of that level of every launch (NAME_reductions for level 1, NAME_reductions_L
//      after): each adds its elements' arguments of the level's reductions into their slots
//      with atomics (the order of those additions varies from run to run), reading the slots of
//      the levels before it as those reductions' values;
//   3. each launch's step as above, every kernel reading the slots as the reductions' values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/program.h"
#include "ir/storage.h"
#include "compiler/target.h"

namespace optjit {

struct TableLayout {
    int num_states = 0;
    bool rank1 = false;  // the kernel has a rank-1 state: rows end in `columns`
    int p() const { return 0; }
    int g() const { return 1; }
    int state(int s) const { return 2 + s; }
    int scales(int s) const { return 2 + num_states + s; }
    int n() const { return 2 + 2 * num_states; }
    int chunk_begin() const { return 3 + 2 * num_states; }
    int chunk_end() const { return 4 + 2 * num_states; }
    int offset() const { return 5 + 2 * num_states; }
    int columns() const { return 6 + 2 * num_states; }
    int row_words() const { return 6 + 2 * num_states + (rank1 ? 1 : 0); }
};

// Everything that selects a kernel.
struct KernelSpec {
    Program lowered;  // verified and run through the pipeline
    StorageSignature storage;
    Target target;
    CodegenOptions options;
};

TableLayout table_layout(const KernelSpec& spec);
// Whether state `name` is rank-1 and the program assigns it, so that the statistics pass finds
// its new statistics (a rank-1 state the program only reads, as the dequantize entry point
// does, keeps the ones it has), and whether the kernel has a statistics pass at all.
bool rank1_state_is_stored(const KernelSpec& spec, const std::string& name);
bool has_statistics_pass(const KernelSpec& spec);

// Whether the program has reductions: a reduction pass, and the two slot pointers.
bool has_reductions(const KernelSpec& spec);
// A maximum's slot: the fp32's bits made an unsigned order (negative values inverted, others
// with the top bit set; every NaN as kReductionNaNBits, above +inf); 0 means no element.
constexpr uint32_t kReductionNaNBits = 0x7fffffff;
uint32_t reduction_max_key(float value);
// What a slot of a reduction of kind `op` holds, as a double (read by the runtime and tests).
double reduction_slot_value(Op op, uint64_t slot);

// Names of the launch scalars of a lowered program, in argument order.
std::vector<std::string> kernel_scalars(const Program& lowered);

// The scalar block of a capturable kernel, in bytes: the f64 step, hyper-parameter i (f64),
// where the fp32 scalars begin, scalar i (f32), and the block's size.
constexpr size_t kScalarBlockStep = 0;
inline size_t scalar_block_hyper(size_t i) { return 8 * (1 + i); }
size_t scalar_block_floats_offset(const Program& lowered);
inline size_t scalar_block_scalar(const Program& lowered, size_t i) { return scalar_block_floats_offset(lowered) + 4 * i; }
size_t scalar_block_bytes(const Program& lowered);

// Storage types of the arrays a kernel touches: p, g, then each state that is not
// block-quantized (those move as codes, one or half a byte an element).
std::vector<DType> array_types(const KernelSpec& spec);

// Whether a state of the kernel is block-quantized, and the largest block size (0 if none).
bool has_quantized_state(const KernelSpec& spec);
uint32_t largest_block(const KernelSpec& spec);

// Threads per GPU block.
int gpu_threads_per_block(const KernelSpec& spec);
// Elements per GPU vector access of the narrowest array (16 bytes: 4 for fp32, 8 for 16-bit).
int gpu_vector_elements(const KernelSpec& spec);
// Elements each GPU thread updates per chunk. In kernels with quantized states a thread
// owns that many consecutive elements (kQuantizedElementsPerThread, whatever the options ask:
// 16 measured slower, 168 registers for q8 AdamW), so a block of B elements is B / 8
// neighbouring threads: a warp for 256, half a warp for 128.
int gpu_elements_per_thread(const KernelSpec& spec);
constexpr int kQuantizedElementsPerThread = 8;

// Whether the GPU update kernel runs the software-pipelined chunk loop, which the three knobs
// below shape: always where a state is block-quantized, else where CodegenOptions::
// gpu_pipelined asks it.
bool gpu_pipelined_loop(const KernelSpec& spec);
// Pipelined kernels: the chunk ahead of the one being processed that a block asks L2 for
// (CodegenOptions::gpu_prefetch_chunks); 0: none.
int gpu_prefetch_chunks(const KernelSpec& spec);
// Pipelined kernels: the consecutive chunks a block takes at a time
// (CodegenOptions::gpu_run_chunks; automatic: 2); 0: one contiguous range a block.
int gpu_run_chunks(const KernelSpec& spec);
// Pipelined kernels: chunks a pass of the chunk loop's body processes
// (CodegenOptions::gpu_unroll_chunks; automatic: 1).
int gpu_unroll_chunks(const KernelSpec& spec);

// The update grid's blocks an SM, at most (CodegenOptions::gpu_max_blocks_per_sm); 0: as many
// as fit. Automatic: 4 for kernels with block-quantized states, as many as fit otherwise.
int gpu_max_blocks_per_sm(const KernelSpec& spec);

// Elements per chunk.
int64_t chunk_elements(const KernelSpec& spec);
// Kernels with block-quantized states that leave out the path for short and unaligned chunks
// (CodegenOptions::whole_chunks).
bool gpu_whole_chunks(const KernelSpec& spec);

}  // namespace optjit
