// Conversions between float and the 16-bit storage types, bit-exact with what kernels do:
// round to nearest even, NaN stays NaN.
#pragma once

#include <bit>
#include <cmath>
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

// Stochastic rounding of bf16 parameters: 16 random bits from a counter-based generator keyed
// by (seed, step, global element index), so a run is reproducible and a shard rounds as the
// whole tensor does; the bits are added below the bf16 mantissa and the result truncated, so
// a value rounds up with probability equal to its distance from the bf16 below (unbiased).
// Kernels compute exactly this (compiler/element_math.cpp).
inline uint32_t stochastic_bits(uint64_t seed, uint64_t step, uint64_t index) {
    uint64_t x = index * 0x9e3779b97f4a7c15ull ^ step * 0xd1b54a32d192ed03ull ^ seed;
    x ^= x >> 33;  // murmur3's 64-bit finalizer
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb93fe53a8ce5ull;
    x ^= x >> 33;
    return uint32_t(x) & 0xffff;
}
inline uint16_t float_to_bf16_stochastic(float f, uint32_t random16) {
    uint32_t u = std::bit_cast<uint32_t>(f);
    if (std::isnan(f)) return uint16_t((u >> 16) | 0x40);
    return uint16_t((u + random16) >> 16);
}

// The element type an unquantized state format stores.
inline DType state_dtype(StateFormat f) { return f == StateFormat::BF16 ? DType::BF16 : DType::F32; }

}  // namespace optjit
