// Whole-tensor conversions between values and a block-quantized state's codes and scales, on
// the host or the GPU, for data already in the target's memory. (Checkpoints convert on the
// host, where their bytes are: encode_state/decode_state in ir/quantization.h, which these
// kernels equal bit for bit.)
//
// They are kernels of two built-in programs, generated, cached and launched like any
// optimizer's (a program that assigns an array to itself leaves it unstored):
//   quantize:    state s = 0; update: s = g; p = p     (g: the values; p is not touched)
//   dequantize:  state s = 0; update: p = s; s = s     (p: the values; the state is only read)
// so the codes are exactly those a step with IEEE math stores (ir/quantization.h): these kernels
// always use IEEE arithmetic, whatever an optimizer's MathMode. Tensors of every size are
// converted (the small-tensor rule of optimizer states does not apply to an explicit request).
#pragma once

#include <cstdint>

#include "compiler/target.h"
#include "ir/storage.h"
#include "runtime/cuda_driver.h"

namespace optjit {

struct QuantizedBuffers {
    uint64_t codes = 0;   // code_bytes(storage, n) bytes
    uint64_t scales = 0;  // scale_count(storage, offset, n) floats (rank-1: see `columns`)
    // Rank-1 storage (q4u:rank1): the tensor's last dimension. `scales` is then the statistics
    // buffer, 2 * rank1_statistic_count(n, columns) floats (the stored ones first; the rest is
    // room for a step's, compiler/kernel_abi.h). 0: the tensor has one dimension and is stored
    // block-wise, as plain q4u.
    int64_t columns = 0;
};

// `values`, `codes` and `scales` are addresses in the target's memory (host pointers for the
// host target, device pointers for a GPU target). `offset`: the global index of element 0 when
// the tensor is a shard (a multiple of the block size). GPU conversions run on `stream` and are
// complete when the call returns. Throws std::invalid_argument for a format that is not
// block-quantized, a misplaced shard or a rank-1 tensor that is not rows of its columns,
// cuda::CudaError for GPU failures.
void quantize_tensor(const Target& target, const StateStorage& storage, DType values_type, uint64_t values, QuantizedBuffers out,
                     int64_t n, int64_t offset = 0, cuda::Stream stream = nullptr);
void dequantize_tensor(const Target& target, const StateStorage& storage, QuantizedBuffers in, DType values_type, uint64_t values,
                       int64_t n, int64_t offset = 0, cuda::Stream stream = nullptr);

}  // namespace optjit
