#include "compiler/code_lookup.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <mutex>
#include <span>
#include <stdexcept>

#include "ir/quantization.h"

namespace optjit {

namespace {

float value_of_key(bool is_signed, int32_t key) {
    uint32_t bits = uint32_t(key);
    // A signed table's keys from 0x40000000 up are negative values: 2^31 less their magnitude.
    if (is_signed && bits >= 0x40000000u) bits = 0x80000000u | (0x80000000u - bits);
    return std::bit_cast<float>(bits);
}

CodeLookup build(StateFormat f) {
    CodeLookup out;
    out.format = f;
    out.is_signed = code_table(f).front() < 0;
    auto code = [&](int32_t key) { return int(nearest_code(f, value_of_key(out.is_signed, key))); };
    // The smallest positive value whose code differs from zero's: codes below it are all the
    // code of 0 (signed: the mirror image bounds the negative side the same way).
    const int zero_code = code(0);
    int32_t lo = 0, hi = std::bit_cast<int32_t>(1.0f);
    while (lo + 1 < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        (code(mid) == zero_code ? lo : hi) = mid;
    }
    out.low_key = ((hi >> 16) - 1) << 16;  // a whole bucket below the first step
    // Signed: the key of -low_key's value (negative values below it in magnitude all take the
    // code of 0, as positive ones below low_key do).
    out.high_key = out.is_signed ? int32_t(0x80000000u - uint32_t(out.low_key)) : (std::bit_cast<int32_t>(1.0f) | 0xffff);
    for (int32_t t = out.low_key >> 16; t <= out.high_key >> 16; ++t) {
        const int32_t first = t << 16, last = first | 0xffff;
        const int c = code(first), c_last = code(last);
        int32_t step = first + 0x10000;  // the first key of code c + 1, if in the bucket
        if (c_last != c) {
            if (c_last != c + 1)
                throw std::logic_error(fmt::format("{}: bucket {:#x} holds more than one step", format_name(f), t));
            int32_t a = first, z = last;  // code(a) == c, code(z) == c + 1
            while (a + 1 < z) {
                int32_t mid = a + (z - a) / 2;
                (code(mid) == c ? a : z) = mid;
            }
            step = z;
        }
        out.entries.push_back((uint32_t(c) << 24) + (1u << 24) - uint32_t(step - first) - uint32_t(first));
    }
    return out;
}

}  // namespace

const CodeLookup& code_lookup(StateFormat f) {
    static std::mutex mutex;
    static std::map<StateFormat, CodeLookup> built;
    std::lock_guard lock(mutex);
    auto it = built.find(f);
    if (it == built.end()) it = built.emplace(f, build(f)).first;
    return it->second;
}

int32_t lookup_key(const CodeLookup& lookup, float normalized) {
    int32_t bits = std::bit_cast<int32_t>(normalized);
    // The integer absolute value (INT_MIN, -0's bits, stays itself), without C++'s overflow.
    return lookup.is_signed && bits < 0 ? int32_t(0u - uint32_t(bits)) : bits;
}

uint8_t lookup_code(const CodeLookup& lookup, float normalized) {
    if (std::isnan(normalized)) return 0;
    int32_t key = std::clamp(lookup_key(lookup, normalized), lookup.low_key, lookup.high_key);
    uint32_t entry = lookup.entries[size_t((key >> 16) - (lookup.low_key >> 16))];
    return uint8_t((entry + uint32_t(key)) >> 24);
}

int grid_steps(StateFormat f) {
    if (f == StateFormat::FP8) return 0;
    std::span<const float> table = code_table(f);
    const size_t n = table.size();
    if (!std::has_single_bit(n)) return 0;
    for (size_t i = 0; i < n; ++i)
        if (table[i] != float(double(i + 1) / double(n))) return 0;
    return int(n);
}

uint8_t grid_code(int steps, float value, float scaled_inverse) {
    // The product of two floats is exact in float64, and so is subtracting 1/2 wherever the
    // floor is not -1 anyway.
    double below = std::floor(double(value) * double(scaled_inverse) - 0.5);
    return uint8_t(std::clamp(below, 0.0, double(steps - 1)));
}

}  // namespace optjit
