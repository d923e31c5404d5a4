#include "compiler/code_lookup.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>
#include <mutex>
#include <stdexcept>

#include "ir/quantization.h"

namespace optjit {

namespace {

// Smallest float not below the double `x`.
float float_at_or_above(double x) {
    float f = float(x);
    if (double(f) < x) f = std::nextafter(f, INFINITY);
    return f;
}

CodeLookup build(StateFormat f) {
    std::span<const float> table = code_table(f);
    CodeLookup out;
    out.format = f;
    out.max_code = int(table.size()) - 1;
    out.is_signed = table.front() < 0;
    if (out.is_signed) {
        out.center = int(std::find(table.begin(), table.end(), 0.0f) - table.begin());
        for (int k = 1; k <= out.center; ++k)
            if (table[out.center - k] != -table[out.center + k])
                throw std::logic_error(fmt::format("{} table is not symmetric at code {}", format_name(f), out.center - k));
    }
    std::vector<float> magnitudes(table.begin() + out.center, table.end());
    // Decision point i lies between magnitudes i and i + 1: a >= threshold[i] takes i + 1.
    std::vector<float> threshold;
    std::vector<bool> exact;
    for (size_t i = 0; i + 1 < magnitudes.size(); ++i) {
        double mid = (double(magnitudes[i]) + double(magnitudes[i + 1])) / 2;
        threshold.push_back(float_at_or_above(mid));
        exact.push_back(double(threshold.back()) == mid);
    }
    auto top = [](float v) { return std::bit_cast<uint32_t>(v) >> 16; };
    out.first_bucket = top(threshold.front()) - 1;  // bucket 0 (and all below) has index 0
    const uint32_t last_bucket = top(1.0f);
    size_t next = 0;  // first decision point not below the current bucket
    for (uint32_t bucket = out.first_bucket; bucket <= last_bucket; ++bucket) {
        while (next < threshold.size() && top(threshold[next]) < bucket) ++next;
        uint32_t entry = uint32_t(next) << 24 | 0x10000;
        if (next < threshold.size() && top(threshold[next]) == bucket) {
            if (next + 1 < threshold.size() && top(threshold[next + 1]) == bucket)
                throw std::logic_error(fmt::format("{}: two decision points in one bucket", format_name(f)));
            entry = uint32_t(next) << 24 | uint32_t(exact[next]) << 23 | (std::bit_cast<uint32_t>(threshold[next]) & 0xffff);
        }
        out.buckets.push_back(entry);
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

uint8_t lookup_code(const CodeLookup& lookup, float normalized) {
    uint32_t bits = std::bit_cast<uint32_t>(normalized);
    uint32_t magnitude = bits & 0x7fffffff;
    bool negative = bits >> 31;
    int64_t bucket = std::clamp<int64_t>(int64_t(magnitude >> 16) - lookup.first_bucket, 0, int64_t(lookup.buckets.size()) - 1);
    uint32_t entry = lookup.buckets[size_t(bucket)];
    uint32_t index = entry >> 24, exact = (entry >> 23) & 1, threshold = entry & 0x1ffff;
    uint32_t low = magnitude & 0xffff;
    int code;
    if (lookup.is_signed) {
        uint32_t k = index + (low >= threshold + (negative ? exact : 0));
        code = negative ? std::max(lookup.center - int(k), 0) : lookup.center + int(k);
    } else {
        code = negative ? 0 : int(index + (low >= threshold));
    }
    if (magnitude > 0x7f800000) code = 0;  // NaN
    return uint8_t(std::min(code, lookup.max_code));
}

}  // namespace optjit
