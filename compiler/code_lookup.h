// Nearest-code choice for the table formats (q8s, q8u, q4s, q4u) without searching the tables:
// what the kernels do, as data the back ends embed and as plain C++ the tests check against
// ir/quantization.h's nearest_code for every float.
//
// A normalized value v (|v| < 2) becomes a key, on each side of zero one that grows with v:
//   signed tables:   key = |bits(v)| as a signed integer: v's magnitude bits, and for a
//                    negative v 2^31 less them (from 2^30 up as |v| falls; -0 is INT_MIN)
//   unsigned tables: key = bits(v) as a signed integer             (negative v: below every entry)
// (one instruction each: the signed key is an integer absolute value).
// The key is clamped to [low_key, high_key], the range where codes change (below and above it,
// v rounds to the same code as at the ends), and bucketed by its top bits, key >> shift: with
// shift 16, 1/128 of a binade, narrower than the tables' closest codes, so a bucket holds at
// most one point where the code steps up. Bucket t's entry is
//   (c << 24) + 2^24 - (s - (t << shift)) - (t << shift)    (mod 2^32)
// for c the code at the bucket's first key and s the first key of the next code (s = the next
// bucket's first key where there is none), so that
//   code = (entry + key) >> 24
// one table load and an addition: key - (t << shift) is the key's low bits, and the sum carries
// into bit 24 exactly when key >= s. Ties go to the upper code and values past the table clamp,
// as nearest_code says, because each entry is built from nearest_code itself. NaN is not
// handled here: the kernels send a NaN value to code 0 on their own.
//
// A signed table whose steps are far enough apart for buckets of 1/4 of a binade or wider
// (q4s: shift 21) covers every key of the domain, 0 to 2^31 (-0), in at most 1025 entries, and
// is not clamped (`whole_range`): two instructions fewer a code.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/storage.h"

namespace optjit {

struct CodeLookup {
    StateFormat format;
    bool is_signed = false;
    bool whole_range = false;           // every key of the domain has an entry: no clamp
    int shift = 16;                     // a bucket is 2^shift keys
    int32_t low_key = 0, high_key = 0;  // keys clamp to [low_key, high_key] (whole_range: the domain's)
    std::vector<uint32_t> entries;      // entries[(uint32(key) >> shift) - (low_key >> shift)]
};

// The lookup for q8s, q8u, q4s or q4u (built once, from the tables; throws if a bucket would
// hold two steps).
const CodeLookup& code_lookup(StateFormat f);

// The key of `normalized` before clamping.
int32_t lookup_key(const CodeLookup& lookup, float normalized);

// The kernels' algorithm, step for step (NaN: code 0, as the kernels do separately).
uint8_t lookup_code(const CodeLookup& lookup, float normalized);

// Evenly spaced tables need no lookup. Where code i stands for (i + 1) / N (q4u, N = 16), the
// code of x is floor(x * N - 1/2) clamped to [0, N - 1], a tie going up as nearest_code says.
// A GPU kernel finds it for x = value * inverse, the exact product (where the lookup takes the
// rounded one), in one fused multiply-add that rounds down and one integer max:
//   max(bits(fma_rm(value, inverse * N, 2^23 - 1/2)), kGridBias) = kGridBias + code
// (the sum's binade from 2^23 has a unit spacing, so rounding down is the floor; a sum below
// 2^23, x * N < 1/2, is a float below 2^23, whose bits are below kGridBias's). `inverse * N`
// is exact for N a power of two. Values at most the block's largest magnitude keep the sum
// below 2^23 + N. NaN and infinite values are the kernels' slow path's.
constexpr int32_t kGridBias = 0x4b000000;  // the bits of 2^23

// N for an evenly spaced table whose N is a power of two, else 0.
int grid_steps(StateFormat f);

// The code the fast path computes, from the exact product value * scaled_inverse (scaled_inverse
// = inverse * N) in float64.
uint8_t grid_code(int steps, float value, float scaled_inverse);

}  // namespace optjit
