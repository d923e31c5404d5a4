// Conversions between float and the 16-bit storage types, bit-exact with what kernels do:
// round to nearest even, NaN stays NaN.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "ir/storage.h"

namespace optjit {

inline uint16_t float_to_bf16_bits(float f) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}
inline float bf16_bits_to_float(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

inline uint16_t float_to_f16_bits(float f) { return std::bit_cast<uint16_t>(static_cast<_Float16>(f)); }
inline float f16_bits_to_float(uint16_t h) { return static_cast<float>(std::bit_cast<_Float16>(h)); }

// `v` as it reads back after being stored as `t` (computed in fp32 first, as kernels do).
inline double round_to(DType t, double v) {
    float f = static_cast<float>(v);
    switch (t) {
    case DType::F32: return f;
    case DType::BF16: return bf16_bits_to_float(float_to_bf16_bits(f));
    case DType::F16: return f16_bits_to_float(float_to_f16_bits(f));
    }
    return f;
}

// Reads element `i` of a buffer of dtype `t` as a double.
inline double load_element(DType t, const void* base, size_t i) {
    switch (t) {
    case DType::F32: return static_cast<const float*>(base)[i];
    case DType::BF16: return bf16_bits_to_float(static_cast<const uint16_t*>(base)[i]);
    case DType::F16: return f16_bits_to_float(static_cast<const uint16_t*>(base)[i]);
    }
    return 0;
}

// Stores `v` (rounded to nearest even) as element `i` of a buffer of dtype `t`.
inline void store_element(DType t, void* base, size_t i, double v) {
    float f = static_cast<float>(v);
    switch (t) {
    case DType::F32: static_cast<float*>(base)[i] = f; return;
    case DType::BF16: static_cast<uint16_t*>(base)[i] = float_to_bf16_bits(f); return;
    case DType::F16: static_cast<uint16_t*>(base)[i] = float_to_f16_bits(f); return;
    }
}

// The element type an unquantized state format stores.
inline DType state_dtype(StateFormat f) { return f == StateFormat::BF16 ? DType::BF16 : DType::F32; }

}  // namespace optjit
