// Host kernels with block-quantized states against the interpreter running the same formats
// (tests/example_checks.h), shards against whole tensors, and what a new state starts as.
#include <doctest/doctest.h>

#include <cstring>

#include "example_checks.h"
#include "ir/quantization.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/random.h"
#include "runtime/tensor_codec.h"

using namespace optjit;
using namespace optjit_test;

namespace {

const std::vector<int64_t> kSizes = {1, 4095, 4096, 5001, 16684, 70001};

}  // namespace

TEST_CASE("quantized host: adagrad matches the interpreter in every format") { check_quantized_example_on("adagrad", Target{}, kSizes); }
TEST_CASE("quantized host: adam matches the interpreter in every format") { check_quantized_example_on("adam", Target{}, kSizes); }
TEST_CASE("quantized host: adamw matches the interpreter in every format") { check_quantized_example_on("adamw", Target{}, kSizes); }
TEST_CASE("quantized host: ademamix matches the interpreter in every format") { check_quantized_example_on("ademamix", Target{}, kSizes); }
TEST_CASE("quantized host: lion matches the interpreter in every format") { check_quantized_example_on("lion", Target{}, kSizes); }
TEST_CASE("quantized host: rmsprop matches the interpreter in every format") { check_quantized_example_on("rmsprop", Target{}, kSizes); }
TEST_CASE("quantized host: sgd matches the interpreter in every format") { check_quantized_example_on("sgd", Target{}, kSizes); }

// Two shards of a tensor, each with its own codes and scales and its global offset, step
// exactly as the whole tensor does.
TEST_CASE("quantized host: a sharded tensor steps bit for bit as the whole tensor") {
    Program adamw = load_example("adamw");
    for (const char* format : {"q8s:256", "q4u:128", "fp8:512"}) {
        INFO(std::string(format));
        std::string error;
        StateStorage st = *parse_state_storage(format, &error);
        KernelRequest request{adamw, {}, {}, Target{}, {}};
        request.storage.states = {{"m", st}, {"v", st}};
        KernelCache cache("");
        auto kernel = cache.get(request);
        const int64_t n = 50001, cut = 16 * 1024 + 2048;  // a shard boundary on a block boundary, not a chunk boundary
        uint64_t seed = test_seed();
        std::vector<float> p(n), g(n);
        for (int64_t i = 0; i < n; ++i) p[i] = float(normal(seed, 0, uint64_t(i)));
        struct State {
            std::vector<uint8_t> codes;
            std::vector<float> scales;
        };
        auto fresh = [&](int64_t count) {
            return State{std::vector<uint8_t>(code_bytes(st, count), zero_code_byte(st.format)), std::vector<float>(size_t(scale_count(st, 0, count)), 0.0f)};
        };
        std::vector<float> p_whole = p, p_shards = p;
        State m_whole = fresh(n), v_whole = fresh(n), m0 = fresh(cut), v0 = fresh(cut), m1 = fresh(n - cut), v1 = fresh(n - cut);
        auto args_for = [&](float* pp, float* gg, State& m, State& v, int64_t count, int64_t offset) {
            return TensorArgs{uint64_t(pp), uint64_t(gg), {uint64_t(m.codes.data()), uint64_t(v.codes.data())},
                              {uint64_t(m.scales.data()), uint64_t(v.scales.data())}, count, offset};
        };
        std::vector<TensorArgs> whole{args_for(p_whole.data(), g.data(), m_whole, v_whole, n, 0)};
        std::vector<TensorArgs> shards{args_for(p_shards.data(), g.data(), m0, v0, cut, 0),
                                       args_for(p_shards.data() + cut, g.data() + cut, m1, v1, n - cut, cut)};
        TensorTable whole_table = build_table(*kernel, whole), shard_table = build_table(*kernel, shards);
        for (int step = 1; step <= 5; ++step) {
            for (int64_t i = 0; i < n; ++i) g[i] = float(normal(seed, uint64_t(step), uint64_t(i)));
            std::vector<float> scalars = launch_scalars(*kernel, {{"lr", 0.01}}, step);
            launch_host(*kernel, whole_table, scalars, ThreadPool::global());
            launch_host(*kernel, shard_table, scalars, ThreadPool::global());
        }
        CHECK(std::memcmp(p_whole.data(), p_shards.data(), n * 4) == 0);
        for (auto [whole_state, first, second] : {std::tuple{&m_whole, &m0, &m1}, std::tuple{&v_whole, &v0, &v1}}) {
            std::vector<uint8_t> codes = first->codes;  // cut is even: no byte holds codes of both shards
            codes.insert(codes.end(), second->codes.begin(), second->codes.end());
            CHECK(codes == whole_state->codes);
            std::vector<float> scales = first->scales;
            scales.insert(scales.end(), second->scales.begin(), second->scales.end());
            CHECK(scales == whole_state->scales);
        }
        // A shard that does not start on a block boundary is refused.
        std::vector<TensorArgs> bad{args_for(p_shards.data() + 100, g.data() + 100, m1, v1, 1000, 100)};
        CHECK_THROWS_WITH_AS(build_table(*kernel, bad), doctest::Contains("block boundary"), std::invalid_argument);
        // A quantized state without scales is refused.
        bad = {args_for(p_shards.data(), g.data(), m1, v1, 1000, 0)};
        bad[0].scales[1] = 0;
        CHECK_THROWS_WITH_AS(build_table(*kernel, bad), doctest::Contains("block scales"), std::invalid_argument);
    }
}

// Rank-1 second moments (q4u:128:rank1): the statistics pass and the update against the
// interpreter, every state of every example stored so, in matrices of 96 columns (the
// 96-element tensor keeps fp32 states); then one, a few and many columns; then the usual
// pairing (m 8-bit, v rank-1).
TEST_CASE("quantized host: rank-1 states match the interpreter in every example") {
    for (const std::string& name : example_names()) {
        INFO(name);
        check_quantized_example_on(name, Target{}, {96, 96 * 50, 96 * 171, 96 * 731}, {"q4u:128:rank1"}, 96);
    }
}

TEST_CASE("quantized host: rank-1 states with one, a few and many columns, and beside an 8-bit state") {
    for (int64_t columns : {1, 7, 5000}) check_quantized_example_on("adamw", Target{}, {columns * (20000 / columns + 1)}, {"q4u:128:rank1"}, columns);
    check_rank1_beside_q8_on(Target{});
}

// A kernel with a rank-1 state needs whole tensors as rows of columns.
TEST_CASE("quantized host: rank-1 states refuse shards and tensors that are not rows of their columns") {
    KernelRequest request{load_example("adamw"), {}, {}, Target{}, {}};
    request.storage.states = {{"v", StateStorage{StateFormat::Q4U, 128, true}}};
    KernelCache cache("");
    auto kernel = cache.get(request);
    std::vector<float> p(8192), g(8192), m(8192), statistics(2 * (64 + 128));
    std::vector<uint8_t> codes(4096);
    TensorArgs a{uint64_t(p.data()), uint64_t(g.data()), {uint64_t(m.data()), uint64_t(codes.data())}, {0, uint64_t(statistics.data())}, 8192, 0, 128};
    CHECK_NOTHROW(build_table(*kernel, std::vector<TensorArgs>{a}));
    TensorArgs shard = a;
    shard.offset = 8192;
    CHECK_THROWS_WITH_AS(build_table(*kernel, std::vector<TensorArgs>{shard}), doctest::Contains("needs the whole tensor"), std::invalid_argument);
    for (int64_t columns : {int64_t(0), int64_t(100)}) {
        TensorArgs bad = a;
        bad.columns = columns;
        CHECK_THROWS_WITH_AS(build_table(*kernel, std::vector<TensorArgs>{bad}), doctest::Contains("are not rows of"), std::invalid_argument);
    }
}

TEST_CASE("quantized host: the quantize and dequantize entry points equal the reference bit for bit") { check_tensor_codec_on(Target{}); }
TEST_CASE("quantized host: the entry points with rank-1 storage equal the reference bit for bit") { check_rank1_tensor_codec_on(Target{}); }

TEST_CASE("quantized host: the entry points refuse what they cannot convert") {
    std::vector<float> values(4096, 1.0f);
    std::vector<uint8_t> codes(4096);
    std::vector<float> scales(16);
    CHECK_THROWS_WITH_AS(quantize_tensor(Target{}, StateStorage{StateFormat::BF16}, DType::F32, uint64_t(values.data()),
                                         {uint64_t(codes.data()), uint64_t(scales.data())}, 4096),
                         doctest::Contains("not a block-quantized format"), std::invalid_argument);
    CHECK_THROWS_WITH_AS(quantize_tensor(Target{}, StateStorage{StateFormat::Q8S, 256}, DType::F32, uint64_t(values.data()),
                                         {uint64_t(codes.data()), uint64_t(scales.data())}, 1000, 100),
                         doctest::Contains("block boundary"), std::invalid_argument);
}

TEST_CASE("quantized kernels: a GPU chunk always holds whole quantization blocks") {
    for (auto [requested, block, threads] : {std::tuple{0, 256u, 128}, std::tuple{96, 256u, 128}, std::tuple{0, 4096u, 512},
                                             std::tuple{300, 32u, 512}, std::tuple{64, 128u, 64}}) {
        KernelRequest r{load_example("adamw"), {}, {}, Target{Target::Kind::NVPTX, 90}, {}};
        r.storage.states["m"] = StateStorage{StateFormat::Q8S, block};
        r.options.gpu_threads_per_block = requested;
        KernelSpec spec = lower(r);
        INFO("requested ", requested, " threads, block ", block);
        CHECK(gpu_threads_per_block(spec) == threads);
        CHECK(gpu_elements_per_thread(spec) == kQuantizedElementsPerThread);
        CHECK(chunk_elements(spec) % block == 0);
    }
    // The host chunk holds every block size.
    KernelRequest host{load_example("adamw"), {}, {}, Target{}, {}};
    host.storage.states["m"] = StateStorage{StateFormat::Q4U, 4096};
    CHECK(chunk_elements(lower(host)) % 4096 == 0);
}
