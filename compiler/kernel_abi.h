// The calling convention of generated kernels, shared by code generation and the runtime.
//
// A launch steps many tensors. They are described by a table of 64-bit words, one row per
// tensor, built once per parameter group and reused every step:
//
//   row t: [ p, g, state_0 .. state_{S-1}, n, chunk_begin, chunk_end ]
//
// (pointers as integers; n elements; chunks [chunk_begin, chunk_end) of the launch's chunk
// space belong to tensor t). A chunk is `chunk_elements` consecutive elements of one tensor;
// the last chunk of a tensor may be short. Work is distributed by chunk, so a 2 K-element
// bias and a 262 M-element embedding share one launch and every thread stays busy.
//
// GPU kernel:   void NAME(const i64* table, i32 num_tensors, i64 num_chunks, float scalars...)
//   each block takes chunks blockIdx.x, blockIdx.x + gridDim.x, ...
// Host kernel:  void NAME(const i64* table, i32 num_tensors, i64 chunk_begin, i64 chunk_end, const float* scalars)
//   one call per worker thread, over its range of chunks.
//
// Scalars are the values fixed for a launch that the element loop reads, as fp32, in the
// order kernel_scalars() gives: `step`, every hyper-parameter, every scalars-section value.
// The runtime computes them in float64 on the host, once per launch (ir/ reference semantics).
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
    int p() const { return 0; }
    int g() const { return 1; }
    int state(int s) const { return 2 + s; }
    int n() const { return 2 + num_states; }
    int chunk_begin() const { return 3 + num_states; }
    int chunk_end() const { return 4 + num_states; }
    int row_words() const { return 5 + num_states; }
};

// Everything that selects a kernel.
struct KernelSpec {
    Program lowered;  // verified and run through the pipeline
    StorageSignature storage;
    Target target;
    CodegenOptions options;
};

// Names of the launch scalars of a lowered program, in argument order.
std::vector<std::string> kernel_scalars(const Program& lowered);

// Storage types of the arrays a kernel touches: p, g, then each state.
std::vector<DType> array_types(const KernelSpec& spec);

// Threads per GPU block.
int gpu_threads_per_block(const KernelSpec& spec);
// Elements per GPU vector access of the narrowest array (16 bytes: 4 for fp32, 8 for 16-bit).
int gpu_vector_elements(const KernelSpec& spec);
// Elements each GPU thread updates per chunk.
int gpu_elements_per_thread(const KernelSpec& spec);

// Elements per chunk.
int64_t chunk_elements(const KernelSpec& spec);

}  // namespace optjit
