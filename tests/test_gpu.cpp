// GPU tests (CTest label `gpu`): every test begins with a skip where no CUDA driver or GPU is
// present, so this binary passes on a machine without one. With a GPU: every example in every
// dtype combination against the interpreter through run_steps on target cuda; one compile for
// 100 learning rates; the disk cache (PTX entries, reloading, corrupt entries);
// tensors not aligned to 16 bytes (the kernel's scalar path); every example in every
// block-quantized format; the quantize and dequantize entry points.
//
// Each run draws fresh random data (std::random_device); the seed is in every failure message,
// and OPTJIT_TEST_SEED=N replays it.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "compiler/compile.h"
#include "compiler/kernel_abi.h"
#include "ir/interpreter.h"
#include "ir/numeric.h"
#include "ir/verifier.h"
#include "runtime/checked_run.h"
#include "runtime/cuda_driver.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/random.h"
#include "example_checks.h"
#include "library_checks.h"
#include "optimizer_checks.h"

using namespace optjit;
using namespace optjit_test;
namespace fs = std::filesystem;

namespace {


// Skips the rest of the test where there is no GPU (reported as a message, the test passes).
#define REQUIRE_GPU()                                                                  \
    do {                                                                               \
        if (!gpu_ready()) {                                                            \
            MESSAGE(doctest::String(("skipped: " + cuda::unavailable_reason()).c_str()));                         \
            return;                                                                    \
        }                                                                              \
    } while (0)


// True with a GPU. The first call points the process-wide cache (which run_steps uses) at a
// temporary directory, so these tests neither read nor fill the user's ~/.cache/optjit.
bool gpu_ready() {
    if (!cuda::available()) return false;
    static TempDir global_cache("global");
    static bool once = [] {
        ::setenv("OPTJIT_CACHE_DIR", global_cache.path.c_str(), 1);
        cuda::init();
        return true;
    }();
    return once;
}

Target gpu_target() { return Target{Target::Kind::NVPTX, cuda::init()}; }


constexpr uint8_t kSentinel = 0xa5;
constexpr size_t kGuardBytes = 256;

// One array of a direct launch: n elements of `type` starting `offset` bytes into a fresh
// allocation (cuda::malloc aligns to 256 bytes), with sentinel bytes before and after.
struct DeviceArray {
    DType type;
    int64_t n;
    size_t offset;
    cuda::DeviceAlloc alloc;
    DeviceArray(DType t, int64_t count, size_t off)
        : type(t), n(count), offset(off), alloc(off + size_t(count) * dtype_bytes(t) + kGuardBytes) {
        cuda::memset_d8(alloc.get(), kSentinel, alloc.size());
    }
    cuda::DevicePtr data() const { return alloc.get() + offset; }
    void upload(const std::vector<double>& values) {
        std::vector<uint8_t> bytes(size_t(n) * dtype_bytes(type));
        for (int64_t i = 0; i < n; ++i) store_element(type, bytes.data(), size_t(i), values[size_t(i)]);
        if (!bytes.empty()) cuda::memcpy_htod(data(), bytes.data(), bytes.size());
    }
    // The values, and whether every byte outside [offset, offset + n elements) is intact.
    std::vector<double> download(bool* guards_intact) const {
        std::vector<uint8_t> all(alloc.size());
        cuda::memcpy_dtoh(all.data(), alloc.get(), all.size());
        std::vector<double> out(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) out[size_t(i)] = load_element(type, all.data() + offset, size_t(i));
        size_t end = offset + size_t(n) * dtype_bytes(type);
        for (size_t i = 0; i < all.size(); ++i)
            if ((i < offset || i >= end) && all[i] != kSentinel) *guards_intact = false;
        return out;
    }
};

struct DirectResult {
    std::vector<std::string> names;     // p, then states
    std::vector<double> max_rel_diff;   // against the interpreter
    std::vector<double> bound;
    std::vector<std::vector<double>> p; // p after the run, per tensor
    bool guards_intact = true;
};

// `steps` launches of the kernel for `request` from `cache` over tensors of `sizes` elements,
// tensor t's arrays starting offsets[t] bytes past 256-byte alignment, against the interpreter.
// `hypers_for_step(step)` gives each step's run-time hyper-parameters.
template <class HyperFn>
DirectResult run_direct(KernelCache& cache, const KernelRequest& request, const std::vector<int64_t>& sizes,
                        const std::vector<size_t>& offsets, int steps, uint64_t seed, HyperFn hypers_for_step) {
    const Program& prog = request.program;
    const StorageSignature& st = request.storage;
    std::shared_ptr<const Kernel> kernel = cache.get(request);
    const size_t count = sizes.size();
    std::vector<DType> state_types;
    for (const StateDecl& s : prog.states) state_types.push_back(state_dtype(st.state(s.name).format));

    std::vector<std::vector<std::unique_ptr<DeviceArray>>> arrays(count);  // p, g, states
    std::vector<HostTensor> reference(count);
    std::vector<TensorArgs> args(count);
    Interpreter interp(prog, hyper_values(prog, hypers_for_step(1)), st);
    int64_t base = 0;
    for (size_t t = 0; t < count; ++t) {
        int64_t n = sizes[t];
        arrays[t].push_back(std::make_unique<DeviceArray>(st.param, n, offsets[t]));
        arrays[t].push_back(std::make_unique<DeviceArray>(st.grad, n, offsets[t]));
        for (DType d : state_types) arrays[t].push_back(std::make_unique<DeviceArray>(d, n, offsets[t]));
        HostTensor& r = reference[t];
        for (int64_t i = 0; i < n; ++i) r.p.push_back(round_to(st.param, normal(seed, 0, uint64_t(base + i))));
        r.g.resize(size_t(n));
        interp.init_states(r);
        arrays[t][0]->upload(r.p);
        for (size_t s = 0; s < state_types.size(); ++s) arrays[t][2 + s]->upload(r.states[s]);
        args[t].p = arrays[t][0]->data();
        args[t].g = arrays[t][1]->data();
        for (size_t s = 0; s < state_types.size(); ++s) args[t].states.push_back(arrays[t][2 + s]->data());
        args[t].n = n;
        base += n;
    }
    TensorTable table = build_table(*kernel, args);
    cuda::DeviceAlloc device_table(std::max<size_t>(table.words.size() * 8, 8));
    if (!table.words.empty()) cuda::memcpy_htod(device_table.get(), table.words.data(), table.words.size() * 8);

    for (int step = 1; step <= steps; ++step) {
        Hypers h = hypers_for_step(step);
        for (const auto& [name, v] : h) interp.set_hyper(name, v);
        base = 0;
        for (size_t t = 0; t < count; ++t) {
            for (int64_t i = 0; i < sizes[t]; ++i) reference[t].g[size_t(i)] = round_to(st.grad, normal(seed, uint64_t(step), uint64_t(base + i)));
            arrays[t][1]->upload(reference[t].g);
            base += sizes[t];
        }
        interp.step(step, reference);
        launch_cuda(*kernel, device_table.get(), table, launch_scalars(*kernel, h, step), nullptr);
        cuda::synchronize();
    }

    DirectResult out;
    out.names.push_back("p");
    for (const StateDecl& s : prog.states) out.names.push_back(s.name);
    for (size_t k = 0; k < out.names.size(); ++k) {
        size_t column = k == 0 ? 0 : k + 1;
        std::vector<double> got, want;
        for (size_t t = 0; t < count; ++t) {
            std::vector<double> v = arrays[t][column]->download(&out.guards_intact);
            if (k == 0) out.p.push_back(v);
            got.insert(got.end(), v.begin(), v.end());
            const std::vector<double>& r = k == 0 ? reference[t].p : reference[t].states[k - 1];
            want.insert(want.end(), r.begin(), r.end());
        }
        // The gradient arrays are only read: their guards are checked too.
        out.max_rel_diff.push_back(max_relative_difference(got, want));
        out.bound.push_back(bound_for(prog, st, out.names[k]));
    }
    for (size_t t = 0; t < count; ++t) arrays[t][1]->download(&out.guards_intact);
    return out;
}

void check_direct(const DirectResult& r) {
    CHECK(r.guards_intact);
    for (size_t k = 0; k < r.names.size(); ++k) {
        INFO(r.names[k], ": max rel diff ", r.max_rel_diff[k], " (bound ", r.bound[k], ")");
        CHECK(r.max_rel_diff[k] <= r.bound[k]);
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("gpu: the device is usable or the tests skip") {
    if (!cuda::available()) {
        CHECK_FALSE(cuda::unavailable_reason().empty());
        MESSAGE(doctest::String(("skipped: " + cuda::unavailable_reason()).c_str()));
        return;
    }
    REQUIRE_GPU();
    CHECK(cuda::unavailable_reason().empty());
    int cc = cuda::init();
    MESSAGE(doctest::String(("GPU: " + cuda::device_name() + ", sm_" + std::to_string(cc) + ", " + std::to_string(cuda::multiprocessor_count()) + " SMs").c_str()));
    CHECK(cc >= 80);
    CHECK(cuda::multiprocessor_count() > 0);
}

TEST_CASE("gpu: adagrad matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("adagrad", gpu_target()); }
TEST_CASE("gpu: adam matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("adam", gpu_target()); }
TEST_CASE("gpu: adamw matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("adamw", gpu_target()); }
TEST_CASE("gpu: ademamix matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("ademamix", gpu_target()); }
TEST_CASE("gpu: adam_amsgrad matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("adam_amsgrad", gpu_target()); }
TEST_CASE("gpu: adamw_amsgrad matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("adamw_amsgrad", gpu_target()); }
TEST_CASE("gpu: adan matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("adan", gpu_target()); }
TEST_CASE("gpu: lamb matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("lamb", gpu_target()); }
TEST_CASE("gpu: lars matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("lars", gpu_target()); }
TEST_CASE("gpu: lion matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("lion", gpu_target()); }
TEST_CASE("gpu: rmsprop matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("rmsprop", gpu_target()); }
TEST_CASE("gpu: sgd matches the interpreter in every dtype") { REQUIRE_GPU(); check_example_on("sgd", gpu_target()); }

// Block-quantized states: every example in every format, step by step against the interpreter
// (codes identical or one apart across a midpoint). Sizes: tiny tensors (fp32 states, a launch
// of their own), a short last block and chunk, odd q4 lengths, and a large tensor.
const std::vector<int64_t> kQuantizedSizes = {1, 4095, 4096, 5001, 16684, 300001};
TEST_CASE("gpu: quantized adagrad matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("adagrad", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized adam matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("adam", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized adamw matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("adamw", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized ademamix matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("ademamix", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized adam_amsgrad matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("adam_amsgrad", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized adamw_amsgrad matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("adamw_amsgrad", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: reductions (tensor and global, sums and maxima, four levels) match the interpreter") {
    REQUIRE_GPU();
    check_reductions_on(gpu_target());
}
TEST_CASE("gpu: quantized adan matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("adan", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized lamb matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("lamb", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized lars matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("lars", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized lion matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("lion", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized rmsprop matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("rmsprop", gpu_target(), kQuantizedSizes); }
TEST_CASE("gpu: quantized sgd matches the interpreter in every format") { REQUIRE_GPU(); check_quantized_example_on("sgd", gpu_target(), kQuantizedSizes); }

TEST_CASE("gpu: rank-1 states match the interpreter in every example") {
    REQUIRE_GPU();
    for (const std::string& name : example_names()) {
        INFO(name);
        check_quantized_example_on(name, gpu_target(), {96, 96 * 50, 96 * 171, 96 * 3125}, {"q4u:128:rank1"}, 96);
    }
}

TEST_CASE("gpu: rank-1 states with one, a few and many columns, and beside an 8-bit state") {
    REQUIRE_GPU();
    for (int64_t columns : {1, 7, 5000}) check_quantized_example_on("adamw", gpu_target(), {columns * (100000 / columns + 1)}, {"q4u:128:rank1"}, columns);
    check_rank1_beside_q8_on(gpu_target());
}

TEST_CASE("gpu: the quantize and dequantize entry points equal the reference bit for bit") {
    REQUIRE_GPU();
    check_tensor_codec_on(gpu_target());
}

TEST_CASE("gpu: the entry points with rank-1 storage equal the reference bit for bit") {
    REQUIRE_GPU();
    check_rank1_tensor_codec_on(gpu_target());
}

TEST_CASE("gpu: stochastic rounding uses the interpreter's stream and is reproducible") {
    REQUIRE_GPU();
    check_stochastic_rounding_on(gpu_target());
}

TEST_CASE("gpu: every example is covered") {
    REQUIRE_GPU();
    for (const std::string& name : example_names()) {
        INFO(name);
        CHECK(example_hypers().count(name) == 1);
    }
}

TEST_CASE("gpu: fast math and exp log pow agree with the interpreter") {
    REQUIRE_GPU();
    Target target = gpu_target();
    check_fast_math_on(target, {"adamw", "adam", "rmsprop", "adagrad"}, {1, 17, 4097, 16385, 100000});
    const char* text = R"(optimizer mathy
  hyper lr = 1e-2
  hyper k = 3
  update
    b = 0 - abs(g) - 0.5
    p = p - lr * exp(g) * log(abs(g) + 1) + 0.001 * abs(g) ^ 1.7 + 0.001 * (b ^ 5 + b ^ k + b ^ -2)
)";
    for (DType t : {DType::F32, DType::BF16}) {
        uint64_t seed = test_seed();
        RunOptions o;
        o.request = KernelRequest{parse_and_verify(text, "<test>"), {}, {}, target, {}};
        o.request.storage.param = t;
        o.sizes = {3, 4095, 20000};
        o.seed = seed;
        o.check = true;
        o.hypers = {{"lr", 0.05}};
        INFO("exp/log/pow, p ", dtype_name(t), ", seed ", seed);
        RunSummary s;
        if (!checked_run(o, s)) continue;
        INFO(describe(s));
        CHECK(s.tensors[0].max_rel_diff <= tolerance_for(t) * (t == DType::F32 ? 1 : 2));
    }
}

TEST_CASE("gpu: 100 learning rates through one cache compile once") {
    REQUIRE_GPU();
    TempDir dir;
    KernelCache cache(dir.path.string());
    KernelRequest request{load_example("adamw"), {}, {}, gpu_target(), {}};
    uint64_t seed = test_seed();
    INFO("seed ", seed);
    std::vector<double> previous;
    for (int i = 0; i < 100; ++i) {
        double lr = 1e-4 * std::pow(1.07, i);
        INFO("lr ", lr);
        DirectResult r = run_direct(cache, request, {1000, 4096}, {0, 0}, 1, seed,
                                    [&](int) { return Hypers{{"lr", lr}, {"weight_decay", 0.1}}; });
        check_direct(r);
        std::vector<double> p = r.p[0];
        if (!previous.empty()) CHECK(p != previous);
        previous = p;
    }
    CacheStats stats = cache.stats();
    CHECK(stats.compiles == 1);
    CHECK(stats.memory_hits == 99);
    CHECK(stats.disk_hits == 0);

    // A schedule: a different lr every step of one run.
    DirectResult r = run_direct(cache, request, {5000}, {0}, 20, seed,
                                [](int step) { return Hypers{{"lr", 0.01 * step}, {"weight_decay", 0.05}}; });
    check_direct(r);
    CHECK(cache.stats().compiles == 1);
}

// Kernels are kept on disk as PTX (the driver caches the machine code), relocatable ones as
// cuLink's cubin (runtime/kernel_cache.cpp): each kind is written, reloaded, and rejected when
// truncated, flipped, garbage, empty, or refused by the driver though its checksum holds.
TEST_CASE("gpu: the disk cache writes reloads and rejects corrupt entries") {
    REQUIRE_GPU();
    TempDir dir;
    KernelRequest request{load_example("adamw"), {}, {}, gpu_target(), {}};
    request.storage.param = DType::BF16;
    std::string suffix = ".ptx", marker = ".entry optjit_adamw";  // the entry's extension, and bytes it must hold
    SUBCASE("dense states: the PTX") {}
    SUBCASE("dense states, relocatable: the cubin") {
        request.options.gpu_relocatable = true;
        suffix = ".cubin";
        marker = "\x7f" "ELF";
    }
    SUBCASE("8-bit states: the PTX") {
        request.storage.states["m"] = StateStorage{StateFormat::Q8S, 256};
        request.storage.states["v"] = StateStorage{StateFormat::Q8U, 256};
    }
    const bool quantized = has_quantized_state(request.storage);
    uint64_t seed = test_seed();
    INFO("seed ", seed, ", cache ", dir.path.string(), ", entry ", suffix, quantized ? ", 8-bit states" : "");
    auto works = [&](KernelCache& cache) {
        if (quantized) {  // run_direct has no block scales; the quantized cases check these kernels' steps
            std::shared_ptr<const Kernel> k = cache.get(request);
            CHECK(k->cuda_function != nullptr);
            CHECK(cuda::registers(k->cuda_function) > 0);
            return;
        }
        DirectResult r = run_direct(cache, request, {17, 4096, 5000}, {0, 0, 0}, 3, seed,
                                    [](int) { return Hypers{{"lr", 0.02}}; });
        check_direct(r);
    };
    auto recompiled = [&](const char* why) {
        INFO(why);
        KernelCache cache(dir.path.string());
        cache.get(request);
        CacheStats s = cache.stats();
        CHECK(s.disk_rejected == 1);
        CHECK(s.compiles == 1);
        CHECK(s.disk_hits == 0);
        works(cache);
    };

    std::string key;
    {
        KernelCache first(dir.path.string());
        std::shared_ptr<const Kernel> k = first.get(request);
        key = k->key();
        CHECK(k->cuda_function != nullptr);
        CacheStats s = first.stats();
        CHECK(s.compiles == 1);
        CHECK(s.disk_hits == 0);
        CHECK(s.disk_rejected == 0);
        works(first);
    }
    fs::path entry = dir.path / (key + suffix);
    REQUIRE(fs::is_regular_file(entry));
    {
        std::ifstream in(entry, std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        CHECK(bytes.find(marker) != std::string::npos);
    }
    // The entry is the only file, and no temporary files are left behind.
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
    for (const auto& e : fs::directory_iterator(dir.path)) {
        INFO(e.path().string());
        CHECK(e.path().string().find(".tmp") == std::string::npos);
    }

    {
        KernelCache second(dir.path.string());
        std::shared_ptr<const Kernel> k = second.get(request);
        CHECK(k->key() == key);
        CacheStats s = second.stats();
        CHECK(s.disk_hits == 1);
        CHECK(s.compiles == 0);
        CHECK(s.disk_rejected == 0);
        works(second);
    }

    fs::resize_file(entry, fs::file_size(entry) / 2);
    recompiled("truncated: rejected, recompiled, rewritten");
    REQUIRE(fs::is_regular_file(entry));
    {
        KernelCache fourth(dir.path.string());
        fourth.get(request);
        CHECK(fourth.stats().disk_hits == 1);
        CHECK(fourth.stats().compiles == 0);
    }

    {
        std::fstream f(entry, std::ios::in | std::ios::out | std::ios::binary);
        auto middle = std::streamoff(fs::file_size(entry) / 2);
        f.seekg(middle);
        char c = 0;
        f.read(&c, 1);
        c = char(c ^ 0x5a);
        f.seekp(middle);
        f.write(&c, 1);
    }
    recompiled("one byte flipped in the middle of the payload");

    for (int variant = 0; variant < 2; ++variant) {
        {
            std::ofstream f(entry, std::ios::binary | std::ios::trunc);
            if (variant == 0) f << std::string(4096, 'x');
        }
        recompiled(variant == 0 ? "garbage of the right length with no header" : "an empty file");
    }

    {  // a well-formed entry whose payload the driver cannot load
        std::ofstream f(entry, std::ios::binary | std::ios::trunc);
        f << encode_cache_entry(std::string(4096, 'x'));
    }
    recompiled("checksum right, payload refused by the driver");
    {
        KernelCache last(dir.path.string());
        last.get(request);
        CHECK(last.stats().disk_hits == 1);
    }
}

TEST_CASE("gpu: tensors not aligned to 16 bytes take the scalar path and match the interpreter") {
    REQUIRE_GPU();
    Target target = gpu_target();
    uint64_t seed = test_seed();
    INFO("seed ", seed);
    Program adamw = load_example("adamw");
    Hypers h{{"lr", 0.03}, {"weight_decay", 0.1}};
    KernelCache cache("");
    SUBCASE("fp32, 4 bytes past alignment") {
        KernelRequest r{adamw, {}, {}, target, {}};
        check_direct(run_direct(cache, r, {4096 * 3 + 5}, {4}, 5, seed, [&](int) { return h; }));
    }
    SUBCASE("bf16 p and states, 2 and 4 bytes past alignment") {
        KernelRequest r{adamw, {}, {}, target, {}};
        r.storage.param = DType::BF16;
        r.storage.grad = DType::BF16;
        r.storage.states = {{"m", StateStorage{StateFormat::BF16}}, {"v", StateStorage{StateFormat::BF16}}};
        check_direct(run_direct(cache, r, {8192 + 1, 4096 * 2}, {2, 4}, 5, seed, [&](int) { return h; }));
    }
    SUBCASE("aligned and unaligned tensors in one launch") {
        KernelRequest r{adamw, {}, {}, target, {}};
        r.storage.param = DType::F16;
        check_direct(run_direct(cache, r, {4096, 4097, 4096 * 4, 4096 * 4, 3, 100000}, {0, 4, 0, 4, 12, 8}, 5, seed,
                                [&](int) { return h; }));
    }
    SUBCASE("lion with an offset of 12 bytes") {
        KernelRequest r{load_example("lion"), {}, {}, target, {}};
        check_direct(run_direct(cache, r, {4096 * 2 + 100}, {12}, 4, seed, [](int) { return Hypers{{"lr", 2e-6}}; }));
    }
}

TEST_CASE("gpu: a kernel for another compute capability is refused") {
    REQUIRE_GPU();
    int cc = cuda::init();
    int other = cc == 80 ? 90 : 80;
    KernelCache cache("");
    KernelRequest r{load_example("sgd"), {}, {}, Target{Target::Kind::NVPTX, other}, {}};
    CHECK_THROWS_AS(cache.get(r), std::invalid_argument);
    CHECK(cache.stats().compiles == 0);
}

TEST_CASE("gpu: an empty launch and empty tensors") {
    REQUIRE_GPU();
    KernelCache cache("");
    KernelRequest r{load_example("adam"), {}, {}, gpu_target(), {}};
    uint64_t seed = test_seed();
    INFO("seed ", seed);
    check_direct(run_direct(cache, r, {0, 5, 0, 4096, 0}, {0, 0, 0, 0, 0}, 2, seed, [](int) { return Hypers{{"lr", 0.01}}; }));
    std::shared_ptr<const Kernel> k = cache.get(r);
    TensorTable empty = build_table(*k, {});
    CHECK(empty.num_chunks == 0);
    CHECK_NOTHROW(launch_cuda(*k, 0, empty, launch_scalars(*k, {}, 1), nullptr));
    cuda::synchronize();
}

TEST_CASE("gpu: every elementwise operation matches the interpreter") {
    REQUIRE_GPU();
    check_elementwise_on(gpu_target());
}

// Divisions and square roots take branch-free fast paths in quantized kernels, and the whole
// update again with IEEE instructions where an operand is out of their range: both paths must
// give what the host kernel (IEEE division and square root) gives, bit for bit. Zero dividends
// and zero square roots are common (m * (g > 1), v * (g < 1)); dividends beyond 2^60 and square
// roots below 2^-101 appear in a few percent of the elements, so some chunks take each path.
// Quotients by a launch scalar overflow where g > 1.36 (u) and where g < -0.86 (w): the fast
// path leaves NaN there, which the guard must see where it reaches a comparison (u) or,
// through min, an output (w); between -2 and 2 nothing else sends a chunk to the IEEE path.
TEST_CASE("gpu: zero and out-of-range divisions and square roots equal the host kernel bit for bit") {
    REQUIRE_GPU();
    const char* kSpecials = R"(optimizer specials
  hyper lr = 1e-2
  state m = 0
  state v = 0
  update
    u = g * 2.5e36 / lr
    w = (g - 0.5) * 2.5e36 / lr
    m = lerp(m, g, 0.1)
    v = lerp(v, g * g, 0.01)
    a = (m * (g > 1)) / (sqrt(v * (g < 1)) + 1e-8)
    b = (g * select(g > 2, 1e19, 1)) / (abs(p) + 1) + sqrt(g * g * select(g < -2, 1e-35, 1))
    p = p - lr * (a + b * 1e-3 + (u > 1e37) * 1e-3) + min(abs(w), 1) * 1e-6
)";
    // fp32 states also in the pipelined loop, whose divisions and square roots are guarded.
    const std::pair<StateFormat, int> kRuns[] = {{StateFormat::F32, 0}, {StateFormat::F32, 1}, {StateFormat::Q8S, 0}, {StateFormat::FP8, 0},
                                                 {StateFormat::Q4S, 0}};
    for (auto [f, pipelined] : kRuns) {
        RunOptions o;
        o.request = KernelRequest{parse_and_verify(kSpecials, "<specials>"), {}, {}, Target{Target::Kind::Host, 0}, {}};
        o.request.options.math = MathMode::Ieee;  // the guarded IEEE paths (fast math is the quantized default)
        o.request.options.gpu_pipelined = pipelined;
        o.request.storage.param = o.request.storage.grad = DType::BF16;
        o.request.storage.states["m"] = StateStorage{f, f == StateFormat::Q4S ? 128u : 256u};
        o.request.storage.states["v"] = StateStorage{f == StateFormat::Q8S ? StateFormat::Q8U : f, f == StateFormat::Q4S ? 128u : 256u};
        o.sizes = {3 * 4096 + 5, 70001};
        o.steps = 5;
        o.seed = test_seed();
        INFO("format ", std::string(format_name(f)), ", pipelined ", pipelined, ", seed ", o.seed);
        RunSummary host, gpu;
        if (!checked_run(o, host)) continue;
        o.request.target = gpu_target();
        if (!checked_run(o, gpu)) continue;
        REQUIRE(host.tensors.size() == gpu.tensors.size());
        for (size_t t = 0; t < host.tensors.size(); ++t) {
            INFO(host.tensors[t].name, ": host norm ", host.tensors[t].norm, ", gpu norm ", gpu.tensors[t].norm);
            CHECK(host.tensors[t].checksum == gpu.tensors[t].checksum);
        }
    }
}

// Dense kernels (no block-quantized state) in the quantized kernels' pipelined chunk loop
// (--gpu-tune pipelined=1): the examples with and without reductions, 4 and 8 elements a
// thread, stochastic rounding. (Not "every dtype" in its name: benchmarks/issue_session.sh
// runs those cases in one process and this one in another.)
TEST_CASE("gpu: dense kernels in the pipelined loop match the interpreter, with reductions and stochastic rounding") {
    REQUIRE_GPU();
    {
        ScopedEnv tune("OPTJIT_GPU_TUNE", "pipelined=1");
        for (const char* name : {"adamw", "adan", "lamb", "lion", "sgd"}) check_example_on(name, gpu_target());
        check_stochastic_rounding_on(gpu_target());
    }
    ScopedEnv tune("OPTJIT_GPU_TUNE", "pipelined=1,elements_per_thread=8");
    check_example_on("adamw", gpu_target());
}

// optjit::Optimizer on the GPU: the checks test_optimizer.cpp runs on the host.
TEST_CASE("gpu: library: every optimizer equals its definition, with each option and policy") {
    REQUIRE_GPU();
    const uint64_t seed = test_seed();
    for (const LibraryCase& c : library_cases())
        if (selected(c)) check_library_case(c, Device::Cuda, seed);
}

TEST_CASE("gpu: optimizer: one launch over many tensors equals a launch per tensor, bit for bit") {
    REQUIRE_GPU();
    check_multi_tensor_equals_per_tensor(Device::Cuda);
}
TEST_CASE("gpu: optimizer: tensors of whole chunks get a kernel without the short-chunk path, and step as beside a short tensor") {
    REQUIRE_GPU();
    check_whole_chunks_step_as_beside_a_short_tensor(Device::Cuda);
}

TEST_CASE("gpu: optimizer: groups keep their own hyper-parameters and state formats") {
    REQUIRE_GPU();
    check_groups_are_independent(Device::Cuda);
}
TEST_CASE("gpu: optimizer: states the options leave unused are not kept, unless asked") {
    REQUIRE_GPU();
    check_unused_states_are_not_kept(Device::Cuda);
}
TEST_CASE("gpu: optimizer: shards with global offsets step exactly as the whole tensor") {
    REQUIRE_GPU();
    check_shards_step_as_the_whole_tensor(Device::Cuda);
}
TEST_CASE("gpu: optimizer: a new learning rate every step matches the interpreter and compiles nothing") {
    REQUIRE_GPU();
    check_matches_interpreter_with_a_schedule(Device::Cuda);
}

// The thirteenth session's bug: the group's fp32-state kernel ran with the q8 kernel's scalars.
TEST_CASE("gpu: optimizer: small tensors beside 8-bit ones match the interpreter with their own kernel's scalars") {
    REQUIRE_GPU();
    check_matches_interpreter_with_a_schedule(Device::Cuda, test_formats()[2]);
}
TEST_CASE("gpu: checkpoint: states round-trip bit for bit on the GPU, and the next step agrees") {
    REQUIRE_GPU();
    check_checkpoint_round_trip(Device::Cuda, Device::Cuda);
}
TEST_CASE("gpu: checkpoint: every rejected checkpoint is refused before any state is written") {
    REQUIRE_GPU();
    check_checkpoint_refusals(Device::Cuda);
}
TEST_CASE("gpu: checkpoint: a change of format or block size converts, when asked") {
    REQUIRE_GPU();
    check_checkpoint_conversions(Device::Cuda);
}
TEST_CASE("gpu: checkpoint: states move between the GPU and the host bit for bit") {
    REQUIRE_GPU();
    check_checkpoint_round_trip(Device::Cuda, Device::Host);
    check_checkpoint_round_trip(Device::Host, Device::Cuda);
}

// Capturable kernels compute their scalars on the device (compiler/device_scalars.h): equal,
// bit for bit, to the host's launch_scalars for every example, at several steps, with
// hyper-parameters off their defaults.
TEST_CASE("gpu: capturable: NAME_scalars computes the host's launch scalars for every example") {
    REQUIRE_GPU();
    for (const std::string& name : example_names()) {
        Program program = load_example(name);
        KernelRequest request{program, {}, StorageSignature{}, gpu_target(), {}};
        request.options.capturable = true;
        std::shared_ptr<const Kernel> kernel = KernelCache::global().get(request);
        const Program& lowered = kernel->spec().lowered;
        std::map<std::string, double> hypers;
        for (size_t i = 0; i < lowered.hypers.size(); ++i) hypers[lowered.hypers[i].name] = lowered.hypers[i].value * (1 + 0.125 * double(i + 1));
        cuda::DeviceAlloc block(scalar_block_bytes(lowered));
        for (int64_t step : {int64_t(1), int64_t(2), int64_t(10), int64_t(1000), int64_t(123457)}) {
            INFO(name, ", step ", step);
            std::vector<double> words{double(step - 1)};
            for (double v : hyper_values(lowered, hypers)) words.push_back(v);
            cuda::memcpy_htod(block.get(), words.data(), words.size() * 8);
            launch_cuda_scalars(*kernel, block.get(), nullptr);
            std::vector<uint8_t> out(scalar_block_bytes(lowered));
            cuda::memcpy_dtoh(out.data(), block.get(), out.size());
            double device_step;
            std::memcpy(&device_step, out.data(), 8);
            CHECK(device_step == double(step));
            std::vector<float> expected = launch_scalars(*kernel, hypers, step);
            std::vector<float> got(expected.size());
            std::memcpy(got.data(), out.data() + scalar_block_floats_offset(lowered), got.size() * 4);
            for (size_t i = 0; i < got.size(); ++i)
                CHECK_MESSAGE(std::bit_cast<uint32_t>(got[i]) == std::bit_cast<uint32_t>(expected[i]), "scalar ", kernel_scalars(lowered)[i], ": ",
                              got[i], " where the host computes ", expected[i]);
        }
    }
}

// The issue's test: a whole step captured in a CUDA graph, replayed 10 times with 10 learning
// rates written into the device block (two groups, fp32, 8-bit and rank-1 states, a shard),
// equals eager steps bit for bit; the step is counted on the device.
TEST_CASE("gpu: optimizer: a captured step replayed with 10 learning rates equals eager steps") {
    REQUIRE_GPU();
    const uint64_t seed = test_seed();
    INFO("seed ", seed);
    Program program = load_example("adamw");
    CheckpointFixture eager_params(Device::Cuda, seed, q8_with_rank1()), graph_params(Device::Cuda, seed, q8_with_rank1());
    Optimizer eager(program, eager_params.groups);
    OptimizerOptions options;
    options.capturable = true;
    Optimizer captured(program, graph_params.groups, options);
    cuda::Stream stream = cuda::stream_create();
    cuda::GraphExec graph = cuda::capture_graph(stream, [&] { captured.step(stream); });
    for (int64_t step = 1; step <= 10; ++step) {
        const double lr = 1e-3 * (1 + 0.37 * double(step)), lr_embeddings = 0.5 * lr;
        eager.set_hyper(1, "lr", lr);
        eager.set_hyper(0, "lr", lr_embeddings);
        cuda::memcpy_htod(captured.hyper_address(1, "lr"), &lr, 8);
        cuda::memcpy_htod(captured.hyper_address(0, "lr"), &lr_embeddings, 8);
        eager_params.set_gradients(step);
        graph_params.set_gradients(step);
        eager.step();
        cuda::graph_launch(graph, stream);
        cuda::stream_synchronize(stream);
    }
    CHECK(captured.step_count() == 10);
    CHECK(captured.hyper(1, "lr") == 1e-3 * (1 + 0.37 * 10));
    for (size_t t = 0; t < eager_params.params.size(); ++t) CHECK(eager_params.params[t]->values() == graph_params.params[t]->values());
    CHECK(CheckpointFixture::states(captured, Device::Cuda) == CheckpointFixture::states(eager, Device::Cuda));
    // An eager step of the capturable optimizer continues the same count and values.
    eager_params.set_gradients(11);
    graph_params.set_gradients(11);
    eager.step();
    captured.step();
    CHECK(captured.step_count() == 11);
    for (size_t t = 0; t < eager_params.params.size(); ++t) CHECK(eager_params.params[t]->values() == graph_params.params[t]->values());
    // Resuming a count leaves the hyper-parameters a schedule wrote into the block.
    captured.set_step_count(20);
    CHECK(captured.step_count() == 20);
    CHECK(captured.hyper(1, "lr") == 1e-3 * (1 + 0.37 * 10));
    cuda::graph_destroy(graph);
    cuda::stream_destroy(stream);
}

TEST_CASE("gpu: optimizer: unaligned tensors reduce as aligned ones (LAMB, clipped, 8-bit states)") {
    REQUIRE_GPU();
    check_unaligned_tensors_reduce_as_aligned(Device::Cuda);
}

// Capturable mode with reductions: clipping by the global norm and the non-finite policy in a
// captured step (the slots zeroed by an async memset, the reduction pass reading the scalar
// block), replayed with new learning rates, against eager steps of the same options. A NaN in
// step 3's gradient skips that step in both, and neither counts it (the device does).
TEST_CASE("gpu: optimizer: a captured step with clipping and the non-finite policy equals eager steps") {
    REQUIRE_GPU();
    const uint64_t seed = test_seed();
    INFO("seed ", seed);
    Program program = load_example("adamw");
    CheckpointFixture eager_params(Device::Cuda, seed, q8_with_rank1()), graph_params(Device::Cuda, seed, q8_with_rank1());
    OptimizerOptions options;
    options.max_grad_norm = 0.5;
    options.skip_nonfinite = true;
    Optimizer eager(program, eager_params.groups, options);
    options.capturable = true;
    Optimizer captured(program, graph_params.groups, options);
    cuda::Stream stream = cuda::stream_create();
    cuda::GraphExec graph = cuda::capture_graph(stream, [&] { captured.step(stream); });
    for (int64_t step = 1; step <= 10; ++step) {
        INFO("step ", step);
        const double lr = 1e-3 * (1 + 0.37 * double(step));
        eager.set_hyper("lr", lr);
        for (size_t g = 0; g < 2; ++g) cuda::memcpy_htod(captured.hyper_address(g, "lr"), &lr, 8);
        eager_params.set_gradients(step);
        graph_params.set_gradients(step);
        if (step == 3)
            for (CheckpointFixture* f : {&eager_params, &graph_params}) {
                TestParam& t = *f->params[3];
                store_element(t.grad_dtype, t.grad->host.data(), 17, std::numeric_limits<double>::quiet_NaN());
                t.grad->upload();
            }
        std::vector<std::vector<uint8_t>> before;
        for (auto& t : graph_params.params) before.push_back(t->values());
        eager.step();
        cuda::graph_launch(graph, stream);
        cuda::stream_synchronize(stream);
        CHECK(captured.nonfinite_count() == (step == 3 ? 1.0 : 0.0));
        CHECK(eager.nonfinite_count() == captured.nonfinite_count());
        if (step == 3) {
            for (size_t t = 0; t < graph_params.params.size(); ++t) CHECK(graph_params.params[t]->values() == before[t]);
        } else {
            CHECK(captured.grad_norm() > 0.5);  // every step clips
            CHECK(std::abs(captured.grad_norm() - eager.grad_norm()) <= 1e-12 * eager.grad_norm());
        }
        for (size_t t = 0; t < eager_params.params.size(); ++t) check_bf16_close(eager_params.params[t]->values(), graph_params.params[t]->values());
        CHECK(eager.step_count() == (step < 3 ? step : step - 1));
        CHECK(captured.step_count() == eager.step_count());
    }
    cuda::graph_destroy(graph);
    cuda::stream_destroy(stream);
}
