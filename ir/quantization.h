// Block-quantized state formats, as plain host code: the reference every quantizing kernel is
// checked against, and what the interpreter uses to store quantized states.
//
// A block is `block` consecutive elements of the flattened tensor, numbered from the tensor's
// global first element (a shard starting at a global offset quantizes as the whole tensor
// does). Per block, scale = absmax of the values being stored (fp32), floored at 1e-12:
//   q8s, q8u, q4s, q4u: code = the table entry nearest to value / scale, ties to the upper
//                       code, values past either end of the table clamp to it;
//                       value = table[code] * scale.
//   fp8:                code = e4m3(value / (scale / 448)), round to nearest even, saturating
//                       at +-448; value = e4m3 value * scale / 448.
// q4 formats pack two codes a byte, the even element in the high nibble.
// NaN policy: a block holding a NaN gets a NaN scale, so the whole block reads back as NaN
// (a failure stays visible, as it would in fp32). A state initialized to 0 starts with scale 0
// (it reads back as exactly 0 whatever its codes).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ir/storage.h"

namespace optjit {

// Block scales and rank-1 statistics are floored at this (a block of zeros still has a scale).
constexpr float kScaleFloor = 1e-12f;

// The code table of q8s, q8u, q4s or q4u, ascending (256 or 16 entries).
std::span<const float> code_table(StateFormat f);

// The code of the entry nearest to `normalized` (ties to the upper code, clamped at the ends).
// `f` is q8s, q8u, q4s or q4u; NaN gives code 0.
uint8_t nearest_code(StateFormat f, float normalized);

// fp8 e4m3 (bias 7, no infinities, 0x7f and 0xff are NaN, largest finite 448).
uint8_t float_to_e4m3(float v);  // round to nearest even, saturating at +-448; NaN -> 0x7f
float e4m3_to_float(uint8_t code);

// The code byte a state that starts at 0 is filled with: the code of 0 where the table has
// one (q8s 127, q4s 0x77), else 0. With scale 0 every code reads back as 0; these keep the
// sign of that 0 positive.
uint8_t zero_code_byte(StateFormat f);

// Bytes of codes and number of scales that `n` elements of a quantized state take.
size_t code_bytes(const StateStorage& s, int64_t n);
int64_t scale_count(const StateStorage& s, int64_t first_element, int64_t n);

// What a state of `n` elements (a shard from `first_element`; rows of `columns` for a rank-1
// state, 0 for one dimension) takes in memory, as kernels, the optimizer and checkpoints lay it
// out: its values (fp32, bf16) or codes; the scales a step reads (rank-1: the rows' then the
// columns' statistics); and the bytes of its scale buffer (rank-1: twice those, the room for a
// step's new statistics, compiler/kernel_abi.h). No scales for fp32 and bf16.
struct StateLayout {
    size_t value_bytes = 0;
    size_t stored_scales = 0;
    size_t scale_bytes = 0;
};
StateLayout state_layout(const StateStorage& s, int64_t n, int64_t first_element = 0, int64_t columns = 0);

// A whole state's stored bytes, sized as state_layout says, from fp32 values (the room for a
// rank-1 step's statistics zeroed); and its values read back from such bytes. fp32 and bf16 as
// stored (bf16 rounded to nearest even); block-quantized states through quantize/dequantize.
struct StateBytes {
    std::vector<uint8_t> values, scales;
};
StateBytes encode_state(const StateStorage& s, std::span<const float> values, int64_t first_element = 0, int64_t columns = 0);
std::vector<float> decode_state(const StateStorage& s, std::span<const uint8_t> values, std::span<const uint8_t> scales, int64_t n,
                                int64_t first_element = 0, int64_t columns = 0);

// A quantized tensor (or shard) as stored: codes and one fp32 scale per block it touches.
struct QuantizedTensor {
    std::vector<uint8_t> codes;
    std::vector<float> scales;
};

// Quantizes `values` (elements first_element .. first_element + n of the global tensor; a
// shard must start at a block boundary) as `s` says. With `columns` > 0 a rank-1 `s` stores
// the whole tensor as rows of `columns` (quantize_rank1 below): `scales` holds the rows'
// statistics, then the columns'.
QuantizedTensor quantize(const StateStorage& s, std::span<const float> values, int64_t first_element = 0, int64_t columns = 0);
// The values a quantized tensor reads back as.
std::vector<float> dequantize(const StateStorage& s, const QuantizedTensor& q, int64_t n, int64_t first_element = 0, int64_t columns = 0);
// The scale element i of a whole tensor of `n` elements was normalized by: its block's, or
// for a rank-1 `s` with `columns` the smaller of its row's and column's statistics (NaN wins).
float element_scale(const StateStorage& s, const QuantizedTensor& q, int64_t i, int64_t n, int64_t columns = 0);
// What storing `values` as `s` and reading them back gives, in place (float64 in, fp32 math).
void round_trip(const StateStorage& s, std::span<double> values, int64_t first_element = 0);

// Rank-1 normalization of a second moment (q4u with StateStorage::rank1; Li et al., "Memory
// Efficient Optimizers with 4-bit States", 2023). A tensor of two or more dimensions is viewed
// as rows x columns (columns: its last dimension; rows: the product of the others). Each row
// and each column keeps the largest magnitude of its elements (fp32, floored at 1e-12 like a
// block scale), and each element is normalized by the smaller of its row's and its column's:
//   code  = q4u's nearest code of value * (1 / min(row_max, column_max)), the reciprocal in fp32;
//   value = q4u table[code] * min(row_max, column_max).
// The statistics take the place of block scales (rows + columns fp32 values); codes are packed
// as q4u's. NaN policy as for blocks: a NaN makes its row's and its column's statistic NaN, so
// they read back as NaN.
struct Rank1Tensor {
    std::vector<uint8_t> codes;
    std::vector<float> row_max, column_max;
};
// Statistics a rank-1 state of `n` elements in rows of `columns` keeps: rows, then columns.
int64_t rank1_statistic_count(int64_t n, int64_t columns);
Rank1Tensor quantize_rank1(std::span<const float> values, int64_t rows, int64_t columns);
std::vector<float> dequantize_rank1(const Rank1Tensor& q, int64_t rows, int64_t columns);

}  // namespace optjit
