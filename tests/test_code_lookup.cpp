// The kernels' search-free code choice (compiler/code_lookup.h) against nearest_code, over its
// domain (normalized values, |v| < 2, and NaN): every float within 300 ulps of every decision
// point and of every bucket edge, both signs, plus random floats of every exponent.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>

#include "compiler/code_lookup.h"
#include "ir/quantization.h"

using namespace optjit;

TEST_CASE("code lookup: equals nearest_code around every decision point and bucket edge") {
    for (StateFormat f : {StateFormat::Q8S, StateFormat::Q8U, StateFormat::Q4S, StateFormat::Q4U}) {
        INFO(format_name(f));
        const CodeLookup& lookup = code_lookup(f);
        std::span<const float> table = code_table(f);
        std::vector<float> centres(table.begin(), table.end());
        for (size_t i = 1; i < table.size(); ++i) centres.push_back(float((double(table[i - 1]) + table[i]) / 2));
        for (uint32_t t = 0; t <= lookup.entries.size(); ++t) {
            uint32_t key = uint32_t((lookup.low_key >> 16) + t) << 16;  // a bucket's first key, as a value
            centres.push_back(std::bit_cast<float>(lookup.is_signed && key >= 0x40000000u ? ~key : key));
        }
        centres.push_back(0.0f);
        centres.push_back(1.0f);
        int64_t checked = 0, wrong = 0;
        for (float c : centres) {
            uint32_t bits = std::bit_cast<uint32_t>(std::fabs(c));
            for (int64_t d = -300; d <= 300; ++d) {
                int64_t b = int64_t(bits) + d;
                if (b < 0) continue;
                for (float v : {std::bit_cast<float>(uint32_t(b)), -std::bit_cast<float>(uint32_t(b))}) {
                    if (!(std::fabs(v) < 2.0f)) continue;  // the domain: normalized values are within 1 + ulps
                    ++checked;
                    if (lookup_code(lookup, v) != nearest_code(f, v)) {
                        if (++wrong < 5) FAIL_CHECK("value ", v, ": lookup ", int(lookup_code(lookup, v)), ", nearest ", int(nearest_code(f, v)));
                    }
                }
            }
        }
        CHECK(wrong == 0);
        CHECK(checked > 100000);
        std::mt19937 rng(std::random_device{}());
        for (int k = 0; k < 2000000; ++k) {
            float v = std::bit_cast<float>(uint32_t(rng()) & 0xbfffffffu);  // |v| < 2, every exponent
            if (lookup_code(lookup, v) != nearest_code(f, v)) {
                FAIL_CHECK("value ", v);
                break;
            }
        }
        for (float v : {std::numeric_limits<float>::quiet_NaN(), 0x1.fffffep0f, -0x1.fffffep0f, 1.0f, -1.0f, 0.0f, -0.0f, 1e-30f, -1e-30f})
            CHECK(lookup_code(lookup, v) == nearest_code(f, v));
    }
}
