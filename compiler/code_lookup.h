// Nearest-code choice for the 8-bit tables and q4s without searching them: what the kernels
// do, as data the back ends embed and as plain C++ the tests check against
// ir/quantization.h's nearest_code for every float.
//
// The magnitude a = |normalized| is bucketed by the top 16 bits of its fp32 pattern (the
// exponent and 7 mantissa bits: 1/128 of a binade, narrower than the tables' closest codes,
// so a bucket holds at most one decision point). Each bucket's 32-bit entry holds
//   bits 24..31: k, the magnitude index at the bucket's first float
//   bit  23:     whether the decision point in the bucket is an exact float midpoint
//   bits 0..16:  the low 16 bits from which the next index wins (0x10000: none in the bucket)
// so the index is k + (low16(a) >= threshold): one shared-memory load and a comparison.
// Signed tables (q8s, q4s) are symmetric about their 0 code `center`; a negative value takes
// code center - index, with ties to the upper code meaning ties towards 0 (one more ulp when
// the midpoint is exact). Values beyond the table clamp; NaN takes code 0.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/storage.h"

namespace optjit {

struct CodeLookup {
    StateFormat format;
    bool is_signed = false;
    int center = 0;             // code of 0 in a signed table
    int max_code = 0;           // table size - 1
    uint32_t first_bucket = 0;  // top 16 bits of the first bucket's floats
    std::vector<uint32_t> buckets;
};

// The lookup for q8s, q8u or q4s (built once, from the tables; throws if a bucket would hold
// two decision points).
const CodeLookup& code_lookup(StateFormat f);

// The kernels' algorithm, step for step.
uint8_t lookup_code(const CodeLookup& lookup, float normalized);

}  // namespace optjit
