// Nearest-code choice for the table formats (q8s, q8u, q4s, q4u) without searching the tables:
// what the kernels do, as data the back ends embed and as plain C++ the tests check against
// ir/quantization.h's nearest_code for every float.
//
// A normalized value v (|v| < 2) becomes a 31-bit key that grows with v:
//   signed tables:   key = bits(v) ^ (bits(v) >> 31, arithmetic)   (a negative v's bits flipped)
//   unsigned tables: key = bits(v) as a signed integer             (negative v: below every entry)
// The key is clamped to [low_key, high_key], the range where codes change (below and above it,
// v rounds to the same code as at the ends), and bucketed by its top 16 bits: 1/128 of a
// binade, narrower than the tables' closest codes, so a bucket holds at most one point where
// the code steps up. Bucket t's entry is
//   (c << 24) + 2^24 - (s - (t << 16)) - (t << 16)    (mod 2^32)
// for c the code at the bucket's first key and s the first key of the next code (s = the next
// bucket's first key where there is none), so that
//   code = (entry + key) >> 24
// one table load and an addition: key - (t << 16) is the key's low 16 bits, and the sum carries
// into bit 24 exactly when key >= s. Ties go to the upper code and values past the table clamp,
// as nearest_code says, because each entry is built from nearest_code itself. NaN is not
// handled here: the kernels send a NaN value to code 0 on their own.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/storage.h"

namespace optjit {

struct CodeLookup {
    StateFormat format;
    bool is_signed = false;
    int32_t low_key = 0, high_key = 0;  // keys clamp to [low_key, high_key]
    std::vector<uint32_t> entries;      // entries[(key >> 16) - (low_key >> 16)]
};

// The lookup for q8s, q8u, q4s or q4u (built once, from the tables; throws if a bucket would
// hold two steps).
const CodeLookup& code_lookup(StateFormat f);

// The key of `normalized` before clamping.
int32_t lookup_key(const CodeLookup& lookup, float normalized);

// The kernels' algorithm, step for step (NaN: code 0, as the kernels do separately).
uint8_t lookup_code(const CodeLookup& lookup, float normalized);

}  // namespace optjit
