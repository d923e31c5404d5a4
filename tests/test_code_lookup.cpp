// The kernels' search-free code choice (compiler/code_lookup.h) against nearest_code, over its
// domain (normalized values, |v| < 2, and NaN): every float within 300 ulps of every decision
// point and of every bucket edge, both signs, plus random floats of every exponent.
#include <doctest/doctest.h>

#include <bit>
#include <cfenv>
#include <cmath>
#include <limits>
#include <random>
#include <span>

#include "compiler/code_lookup.h"
#include "ir/quantization.h"
#include "test_support.h"

using namespace optjit;

TEST_CASE("code lookup: equals nearest_code around every decision point and bucket edge") {
    for (StateFormat f : {StateFormat::Q8S, StateFormat::Q8U, StateFormat::Q4S, StateFormat::Q4U}) {
        INFO(format_name(f));
        const CodeLookup& lookup = code_lookup(f);
        // q4s's steps are far enough apart for the clamp-free table over the whole domain.
        CHECK(lookup.whole_range == (f == StateFormat::Q4S));
        std::span<const float> table = code_table(f);
        std::vector<float> centres(table.begin(), table.end());
        for (size_t i = 1; i < table.size(); ++i) centres.push_back(float((double(table[i - 1]) + table[i]) / 2));
        for (uint32_t t = 0; t <= lookup.entries.size(); ++t) {
            uint32_t key = ((uint32_t(lookup.low_key) >> lookup.shift) + t) << lookup.shift;  // a bucket's first key, as a value
            centres.push_back(std::bit_cast<float>(lookup.is_signed && key >= 0x40000000u ? 0x80000000u | (0x80000000u - key) : key));
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

// The kernels' evenly spaced path (code_lookup.h's grid_code): the float64 model equals
// nearest_code around every decision point, and the fma rounding down that the GPU executes
// gives the model's code for products that are not floats (the model's point: the exact product).
TEST_CASE("code lookup: evenly spaced codes by one fma rounding down") {
    CHECK(grid_steps(StateFormat::Q4U) == 16);
    for (StateFormat f : {StateFormat::Q8S, StateFormat::Q8U, StateFormat::Q4S, StateFormat::FP8}) CHECK(grid_steps(f) == 0);
    const int steps = grid_steps(StateFormat::Q4U);
    std::span<const float> table = code_table(StateFormat::Q4U);
    int64_t checked = 0;
    for (size_t i = 0; i <= table.size(); ++i) {
        // Midpoints, ends, zero and negative values (the kernels' domain is [-absmax, absmax]).
        float centre = i == 0 ? 0.0f : i == table.size() ? 1.0f : float((double(table[i - 1]) + table[i]) / 2);
        uint32_t bits = std::bit_cast<uint32_t>(centre);
        for (int64_t d = -300; d <= 300; ++d) {
            int64_t b = int64_t(bits) + d;
            if (b < 0) continue;
            for (float v : {std::bit_cast<float>(uint32_t(b)), -std::bit_cast<float>(uint32_t(b))}) {
                if (!(std::fabs(v) <= 1.0f)) continue;
                ++checked;
                REQUIRE_MESSAGE(grid_code(steps, v, float(steps)) == nearest_code(StateFormat::Q4U, v), "value ", v);
            }
        }
    }
    CHECK(checked > 10000);

    // The instruction: bits(fma_rm(value, scaled_inverse, 2^23 - 1/2)), max kGridBias, less the
    // bias, for values within the block's largest magnitude (value <= 1 / inverse).
    auto kernel_code = [](float value, float scaled_inverse) {
        const int mode = std::fegetround();
        std::fesetround(FE_DOWNWARD);
        volatile float a = value, b = scaled_inverse, c = 0x1p23f - 0.5f;
        float sum = std::fmaf(a, b, c);
        std::fesetround(mode);
        return std::max(std::bit_cast<int32_t>(sum), kGridBias) - kGridBias;
    };
    const uint64_t seed = optjit_test::test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    std::uniform_int_distribution<int> exponent(-40, 40);
    int64_t differs_from_rounded = 0;
    for (int k = 0; k < 2000000; ++k) {
        float absmax = std::ldexp(std::fabs(unit(rng)) + 0x1p-20f, exponent(rng));
        float inverse = 1.0f / absmax;
        float value = absmax * unit(rng);
        if (k % 4 == 0) value = absmax * float((rng() % (2 * steps + 1)) / double(2 * steps));  // near a midpoint
        if (std::fabs(value * inverse) > 1.0f) continue;  // the fast path's domain
        float scaled = inverse * float(steps);
        int code = kernel_code(value, scaled);
        REQUIRE_MESSAGE(code == int(grid_code(steps, value, scaled)), "value ", value, " inverse ", inverse);
        const float rounded = value * inverse;
        if (code != int(nearest_code(StateFormat::Q4U, rounded))) {
            // Only where a midpoint lies between the exact product and the rounded one.
            ++differs_from_rounded;
            const double exact = double(value) * double(inverse);
            const double midpoint = (std::floor(exact * steps - 0.5) + 1.5) / steps;
            const double below = std::min(exact, double(rounded)), above = std::max(exact, double(rounded));
            REQUIRE_MESSAGE(((below <= midpoint && midpoint <= above) || (below <= midpoint - 1.0 / steps && midpoint - 1.0 / steps <= above)),
                            "value ", value, " inverse ", inverse);
        }
    }
    CHECK(differs_from_rounded > 0);  // the near-midpoint draws reach the cases that differ
}
