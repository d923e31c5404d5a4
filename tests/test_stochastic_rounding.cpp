// Stochastic rounding of bf16 parameters: the generator's contract (reproducible, keyed by seed,
// step and index, unbiased), kernels against the interpreter using the same stream, and the
// reason it exists: updates smaller than half a bf16 ulp still move parameters on average.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "example_checks.h"
#include "ir/numeric.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"

using namespace optjit;
using namespace optjit_test;

TEST_CASE("stochastic rounding: the generator is reproducible, keyed and unbiased") {
    CHECK(stochastic_bits(1, 2, 3) == stochastic_bits(1, 2, 3));
    CHECK(stochastic_bits(1, 2, 3) != stochastic_bits(2, 2, 3));
    CHECK(stochastic_bits(1, 2, 3) != stochastic_bits(1, 3, 3));
    CHECK(stochastic_bits(1, 2, 3) != stochastic_bits(1, 2, 4));
    uint64_t seed = test_seed();
    INFO("seed ", seed);
    // 1 + 0.3 ulp rounds up 30% of the time: the mean is the value itself.
    const float ulp = 0x1p-7f, value = 1.0f + 0.3f * ulp;
    const int64_t n = 1 << 20;
    double sum = 0;
    int64_t bits_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t r = stochastic_bits(seed, 7, uint64_t(i));
        bits_sum += r;
        sum += bf16_bits_to_float(float_to_bf16_stochastic(value, r));
    }
    double mean = sum / double(n), sigma = ulp * std::sqrt(0.3 * 0.7 / double(n));
    CHECK(std::fabs(mean - value) < 6 * sigma);
    CHECK(std::fabs(double(bits_sum) / double(n) - 32767.5) < 6 * 18918.0 / std::sqrt(double(n)));  // uniform over 16 bits
    CHECK(float_to_bf16_stochastic(1.0f, 0xffff) == float_to_bf16_bits(1.0f));  // exact values never move
    CHECK(std::isnan(bf16_bits_to_float(float_to_bf16_stochastic(std::nanf(""), 0x1234))));
    CHECK(bf16_bits_to_float(float_to_bf16_stochastic(INFINITY, 0xffff)) == INFINITY);
}

TEST_CASE("stochastic rounding: host kernels use the interpreter's stream, and runs are reproducible") { check_stochastic_rounding_on(Target{}); }

// p = p - lr with lr a 32nd of the bf16 ulp of p: to nearest even p never moves; stochastically
// it moves by lr a step on average.
TEST_CASE("stochastic rounding: updates below half an ulp move bf16 parameters on average") {
    Program drift = program_from("optimizer drift\n  hyper lr = 0\n  update\n    p = p - lr + 0 * g\n");
    const int64_t n = 1 << 16;
    const double lr = 0x1p-12;  // ulp of [1, 2) is 2^-7
    for (bool stochastic : {false, true}) {
        KernelRequest request{drift, {}, {}, Target{}, {}};
        request.storage.param = DType::BF16;
        request.options.stochastic_rounding = stochastic;
        auto kernel = KernelCache::global().get(request);
        std::vector<uint16_t> p(n, float_to_bf16_bits(1.5f));
        std::vector<float> g(n, 1.0f);
        TensorArgs args{uint64_t(p.data()), uint64_t(g.data()), {}, {}, n, 0};
        TensorTable table = build_table(*kernel, std::span<const TensorArgs>(&args, 1));
        for (int step = 1; step <= 64; ++step)
            launch_host(*kernel, table, launch_scalars(*kernel, {{"lr", lr}}, step), ThreadPool::global(), test_seed());
        double mean = 0;
        for (uint16_t b : p) mean += bf16_bits_to_float(b);
        mean /= double(n);
        INFO("stochastic ", stochastic, ": mean ", mean);
        if (!stochastic) CHECK(mean == 1.5);
        else CHECK(std::fabs(mean - (1.5 - 64 * lr)) < 1e-3);  // expected drift 2^-6 = 0.0156; sigma about 2e-5
    }
}
