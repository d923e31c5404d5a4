#include "compiler/code_lookup.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <mutex>
#include <optional>
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

// Bucket entries for keys [low_key, high_key] at `shift` (code_lookup.h), or nothing where a
// bucket holds two steps.
std::optional<std::vector<uint32_t>> bucket_entries(StateFormat f, bool is_signed, int shift, uint32_t low_key, uint32_t high_key) {
    auto code = [&](uint32_t key) { return int(nearest_code(f, value_of_key(is_signed, int32_t(key)))); };
    std::vector<uint32_t> entries;
    const uint32_t width = 1u << shift;
    for (uint32_t t = low_key >> shift; t <= high_key >> shift; ++t) {
        const uint32_t first = t << shift, last = std::min(first | (width - 1), high_key);
        const int c = code(first), c_last = code(last);
        uint32_t step = first + width;  // the first key of code c + 1, if in the bucket
        if (c_last != c) {
            if (c_last != c + 1) return std::nullopt;
            uint32_t a = first, z = last;  // code(a) == c, code(z) == c + 1
            while (a + 1 < z) {
                uint32_t mid = a + (z - a) / 2;
                (code(mid) == c ? a : z) = mid;
            }
            step = z;
        }
        entries.push_back((uint32_t(c) << 24) + (1u << 24) - (step - first) - first);
    }
    return entries;
}

CodeLookup build(StateFormat f) {
    CodeLookup out;
    out.format = f;
    out.is_signed = code_table(f).front() < 0;
    // Signed: buckets of a quarter binade or wider over the whole domain, where they can.
    if (out.is_signed) {
        for (int shift = 23; shift >= 21; --shift) {
            if (auto entries = bucket_entries(f, true, shift, 0, 0x80000000u)) {
                out.whole_range = true;
                out.shift = shift;
                out.low_key = 0;
                out.high_key = INT32_MIN;  // -0's key, the largest as an unsigned number
                out.entries = std::move(*entries);
                return out;
            }
        }
    }
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
    auto entries = bucket_entries(f, out.is_signed, out.shift, uint32_t(out.low_key), uint32_t(out.high_key));
    if (!entries) throw std::logic_error(fmt::format("{}: a bucket holds more than one step", format_name(f)));
    out.entries = std::move(*entries);
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
    int32_t key = lookup_key(lookup, normalized);
    if (!lookup.whole_range) key = std::clamp(key, lookup.low_key, lookup.high_key);
    uint32_t entry = lookup.entries[size_t((uint32_t(key) >> lookup.shift) - (uint32_t(lookup.low_key) >> lookup.shift))];
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
