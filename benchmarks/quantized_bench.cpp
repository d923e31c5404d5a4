// optjit-quantized-bench: the figures of the low-bit state issue, printed, never asserted.
//
// AdamW with bf16 parameters and gradients, states in fp32, bf16, q8 (m q8s, v q8u, blocks of
// 256), q4 (m q4s, v q4u, blocks of 128), fp8 (e4m3, blocks of 256) and q4r1 (q4 with v
// rank-1 normalized: a statistics pass before each step), on two workloads:
//   one tensor of 2^28 elements (16384 x 16384);
//   a parameter list shaped like Llama-3.2-1B: 146 tensors, 1.236 B parameters (16 layers of
//   q, k, v, o, gate, up, down projections and two norms; the tied embedding; the final norm).
//   Tensors under 4096 elements (the norms) keep fp32 states, in a second launch.
// Each row: the median step time over 30 CUDA-event-timed steps (a new lr every step), the
// bytes the step must move (p read and written, g read, each state's codes or values read and
// written, each block scale read and written), GB/s, a device-to-device copy of the same bytes
// timed in the same run, and the state memory per parameter (rank-1: with the room for a step's
// statistics). A rank-1 step also reads g and v's codes a second time, in its statistics pass:
// that traffic is overhead, not counted as bytes the step must move.
//
// usage: optjit-quantized-bench [sweep]   (sweep: also tuning variants of the quantized kernels)
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "compiler/compile.h"
#include "compiler/kernel_abi.h"
#include "ir/numeric.h"
#include "ir/quantization.h"
#include "ir/verifier.h"
#include "runtime/cuda_driver.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/random.h"
#include "runtime/step_bench.h"

using namespace optjit;

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

Program adamw() {
    std::ifstream in(std::string(OPTJIT_SOURCE_DIR) + "/examples/adamw.opt");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_and_verify(ss.str(), "examples/adamw.opt");
}

struct Format {
    const char* label;
    StateStorage m, v;
};

const std::vector<Format>& formats() {
    static const std::vector<Format> f = {
        {"fp32", {StateFormat::F32}, {StateFormat::F32}},
        {"bf16", {StateFormat::BF16}, {StateFormat::BF16}},
        {"q8", {StateFormat::Q8S, 256}, {StateFormat::Q8U, 256}},
        {"q4", {StateFormat::Q4S, 128}, {StateFormat::Q4U, 128}},
        {"fp8", {StateFormat::FP8, 256}, {StateFormat::FP8, 256}},
        {"q4r1", {StateFormat::Q4S, 128}, {StateFormat::Q4U, 128, true}},
    };
    return f;
}

// Single-codec variants, to tell the codecs' costs apart (sweep only).
const std::vector<Format>& codec_variants() {
    static const std::vector<Format> f = {
        {"q8u,q8u", {StateFormat::Q8U, 256}, {StateFormat::Q8U, 256}},  // lookup, no sign
        {"q8s,q8s", {StateFormat::Q8S, 256}, {StateFormat::Q8S, 256}},  // lookup with sign
        {"q4u,q4u", {StateFormat::Q4U, 128}, {StateFormat::Q4U, 128}},  // arithmetic only
        {"fp32,q8u", {StateFormat::F32}, {StateFormat::Q8U, 256}},      // one quantized state
    };
    return f;
}

using Shape = BenchShape;  // elements and last dimension (0 for one dimension), runtime/step_bench.h

const std::vector<Shape> kOneTensor = {{int64_t(1) << 28, int64_t(1) << 14}};

// Scales (or rank-1 statistics) one state of a tensor keeps.
int64_t scale_floats(const StateStorage& s, const Shape& t) { return s.rank1 ? rank1_statistic_count(t.n, t.columns) : scale_count(s, 0, t.n); }

// Bytes of one state of a tensor, and the bytes a step moves for it (read and written).
double state_bytes(const StateStorage& s, const Shape& t) {
    if (!is_block_quantized(s.format)) return double(t.n) * dtype_bytes(state_dtype(s.format));
    return double(code_bytes(s, t.n)) + 4.0 * double(scale_floats(s, t));
}

// Device memory for a list of tensors, 256-byte aligned pieces of one allocation per array.
struct Arena {
    cuda::DeviceAlloc memory;
    size_t used = 0;
    explicit Arena(size_t bytes) : memory(bytes) {}
    cuda::DevicePtr take(size_t bytes) {
        cuda::DevicePtr p = memory.get() + used;
        used += (bytes + 255) / 256 * 256;
        if (used > memory.size()) throw std::runtime_error("arena overflow");
        return p;
    }
};

// `n` values of `t`: normal * scale (absolute values if `positive`), from a repeating block
// computed once per kind.
void fill_values(cuda::DevicePtr dst, DType t, int64_t n, uint64_t seed, double scale, bool positive) {
    const int64_t block = 1 << 22;
    static std::map<std::tuple<DType, uint64_t, double, bool>, std::vector<uint8_t>> patterns;
    std::vector<uint8_t>& host = patterns[{t, seed, scale, positive}];
    if (host.empty()) {
        host.resize(size_t(block) * dtype_bytes(t));
        for (int64_t i = 0; i < block; ++i) {
            double v = normal(seed, 0, uint64_t(i)) * scale;
            store_element(t, host.data(), size_t(i), positive ? std::fabs(v) : v);
        }
    }
    for (int64_t at = 0; at < n; at += block)
        cuda::memcpy_htod(dst + uint64_t(at) * dtype_bytes(t), host.data(), size_t(std::min(block, n - at)) * dtype_bytes(t));
}

// Random code bytes of a state in `format`: uniform over the codes, but for fp8 none of its
// two NaN codes (a NaN makes its whole block NaN), and for a second moment (`non_negative`) only
// codes of values >= 0, as a real v holds (a negative v makes every square root take the slow
// path, which no real step does).
void fill_codes(cuda::DevicePtr dst, size_t bytes, StateFormat format, bool non_negative) {
    const size_t block = size_t(16) << 20;
    static std::map<std::pair<StateFormat, bool>, std::vector<uint8_t>> made;
    std::vector<uint8_t>& host = made[{format, non_negative}];
    if (host.empty()) {
        host.resize(block);
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (uint8_t& b : host) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b = uint8_t(x >> 56);
            if (format == StateFormat::FP8) {
                if (non_negative) b &= 0x7f;
                if ((b & 0x7f) == 0x7f) b ^= 1;
            } else if (non_negative && format == StateFormat::Q8S) {
                b = uint8_t(127 + b % 129);  // code 127 is 0, 255 is 1
            } else if (non_negative && format == StateFormat::Q4S) {
                b = uint8_t((7 + (b >> 4) % 9) << 4 | (7 + (b & 15) % 9));  // code 7 is 0, 15 is 1
            }
        }
    }
    for (size_t at = 0; at < bytes; at += block) cuda::memcpy_htod(dst + at, host.data(), std::min(block, bytes - at));
}

// A program with AdamW's states and memory traffic but no division or square root: what the
// quantized storage costs by itself.
const char* kMomentsOnly = R"(optimizer adamw
  hyper lr = 1e-3
  state m = 0
  state v = 0
  update
    m = lerp(m, g, 0.1)
    v = lerp(v, g * g, 0.001)
    p = p - lr * m * v
)";

void run_workload(const char* name, const std::vector<Shape>& shapes, const CodegenOptions& options, bool quantized_only = false,
                  bool moments_only = false, const std::vector<Format>& which = formats()) {
    const Program program = moments_only ? parse_and_verify(kMomentsOnly, "<moments-only>") : adamw();
    int cc = cuda::init();
    int64_t total = 0;
    for (const Shape& t : shapes) total += t.n;
    std::string variant;
    if (options.gpu_threads_per_block) variant += fmt::format(", {} threads a block", options.gpu_threads_per_block);
    if (options.gpu_min_blocks_per_sm) variant += fmt::format(", registers for {} blocks an SM", options.gpu_min_blocks_per_sm);
    if (options.math == MathMode::Fast) variant += ", fast math";
    if (moments_only) variant += ", moments only (no division, no square root)";
    fmt::print("== {}: {} tensors, {:.4g} parameters; AdamW, bf16 p and g{}\n", name, shapes.size(), double(total), variant);
    fmt::print("  {:<6} {:>9} {:>10} {:>8} {:>10} {:>8} {:>12} {:>9}\n", "states", "step ms", "GB moved", "GB/s", "copy GB/s", "% copy",
               "state B/par", "compiles");
    for (const Format& f : which) {
        if (quantized_only && !is_block_quantized(f.m.format) && !is_block_quantized(f.v.format)) continue;
        // Per tensor: its storage (small tensors keep fp32 states) and its buffers.
        StorageSignature sig;
        sig.param = sig.grad = DType::BF16;
        sig.states = {{"m", f.m}, {"v", f.v}};
        double bytes = 0, state_memory = 0;
        size_t arena_bytes = 0;
        for (const Shape& t : shapes) {
            StorageSignature st = storage_for_tensor(sig, t.n, t.columns);
            double s = state_bytes(st.state("m"), t) + state_bytes(st.state("v"), t);
            double room = st.state("v").rank1 ? 4.0 * double(scale_floats(st.state("v"), t)) : 0;  // a step's statistics
            bytes += double(t.n) * 6 + 2 * s;
            state_memory += s + room;
            arena_bytes += size_t(t.n) * 6 + size_t(s + room) + 8 * 256;
        }
        Arena arena(arena_bytes);
        std::map<std::string, std::pair<KernelRequest, std::vector<TensorArgs>>> launches;
        for (const Shape& t : shapes) {
            StorageSignature st = storage_for_tensor(sig, t.n, t.columns);
            TensorArgs a;
            a.n = t.n;
            a.columns = t.columns;
            a.p = arena.take(size_t(t.n) * 2);
            a.g = arena.take(size_t(t.n) * 2);
            for (const char* state : {"m", "v"}) {
                const StateStorage& s = st.state(state);
                if (is_block_quantized(s.format)) {
                    a.states.push_back(arena.take(code_bytes(s, t.n)));
                    a.scales.push_back(arena.take(size_t(scale_floats(s, t)) * 4 * (s.rank1 ? 2 : 1)));
                } else {
                    a.states.push_back(arena.take(size_t(t.n) * dtype_bytes(state_dtype(s.format))));
                    a.scales.push_back(0);
                }
            }
            auto& l = launches[to_string(st, program)];
            l.first = KernelRequest{program, {}, st, Target{Target::Kind::NVPTX, cc}, {}};
            l.first.options = options;
            l.second.push_back(a);
        }
        // Contents like a model's: normal parameters, small gradients and moments, random codes,
        // scales of the moments' size (values change no control flow, only which table entries
        // the lookups hit and whether IEEE division takes its slow path on odd operands).
        for (auto& [key, l] : launches)
            for (const TensorArgs& a : l.second) {
                fill_values(a.p, DType::BF16, a.n, 1, 1.0, false);
                fill_values(a.g, DType::BF16, a.n, 2, 1e-2, false);
                for (size_t s = 0; s < 2; ++s) {
                    const StateStorage& st = l.first.storage.state(s == 0 ? "m" : "v");
                    if (!is_block_quantized(st.format)) {
                        fill_values(a.states[s], state_dtype(st.format), a.n, 3 + s, s == 0 ? 1e-3 : 1e-5, s == 1);
                        continue;
                    }
                    fill_codes(a.states[s], code_bytes(st, a.n), st.format, s == 1);
                    std::vector<float> scales(size_t(scale_floats(st, {a.n, a.columns})), s == 0 ? 1e-2f : 1e-4f);
                    cuda::memcpy_htod(a.scales[s], scales.data(), scales.size() * 4);
                }
            }
        KernelCache& cache = KernelCache::global();
        struct Ready {
            std::shared_ptr<const Kernel> kernel;
            TensorTable table;
            cuda::DeviceAlloc device_table;
        };
        std::vector<Ready> ready;
        for (auto& [key, l] : launches) {
            Ready r;
            r.kernel = cache.get(l.first);
            r.table = build_table(*r.kernel, l.second);
            r.device_table = cuda::DeviceAlloc(r.table.words.size() * 8);
            cuda::memcpy_htod(r.device_table.get(), r.table.words.data(), r.table.words.size() * 8);
            ready.push_back(std::move(r));
        }
        size_t half = size_t(bytes / 2);
        cuda::DeviceAlloc a(half), b(half);
        cuda::memset_d8(a.get(), 0x3c, half);
        cuda::Event start = cuda::event_create(), stop = cuda::event_create();
        auto time_ms = [&](auto body) {
            std::vector<double> times;
            for (int i = 0; i < 33; ++i) {
                cuda::event_record(start, nullptr);
                body(i);
                cuda::event_record(stop, nullptr);
                if (i >= 3) times.push_back(cuda::event_elapsed_ms(start, stop));
            }
            return median(times);
        };
        int compiles = cache.stats().compiles;
        double step_ms = time_ms([&](int i) {
            for (const Ready& r : ready)
                launch_cuda(*r.kernel, r.device_table.get(), r.table, launch_scalars(*r.kernel, {{"lr", 1e-4 * (1 + 0.01 * i)}}, i + 1), nullptr);
        });
        double copy_ms = time_ms([&](int) { cuda::memcpy_dtod_async(b.get(), a.get(), half, nullptr); });
        double gbs = bytes / step_ms / 1e6, copy_gbs = 2.0 * double(half) / copy_ms / 1e6;
        fmt::print("  {:<6} {:>9.3f} {:>10.3f} {:>8.0f} {:>10.0f} {:>7.1f}% {:>12.3f} {:>9}\n", f.label, step_ms, bytes / 1e9, gbs, copy_gbs,
                   100 * gbs / copy_gbs, state_memory / double(total), cache.stats().compiles - compiles);
        if (!ready.empty()) {  // the launch doing most of the work
            auto most = std::max_element(ready.begin(), ready.end(), [](const Ready& a, const Ready& b) { return a.table.num_chunks < b.table.num_chunks; });
            const Kernel& k = *most->kernel;
            fmt::print("         kernel: {} threads x {} elements, {} registers, {} blocks/SM\n", gpu_threads_per_block(k.spec()),
                       gpu_elements_per_thread(k.spec()), cuda::registers(k.cuda_function), k.gpu_blocks_per_sm);
        }
        cuda::event_destroy(start);
        cuda::event_destroy(stop);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // rows appear as they are measured
    try {
        if (!cuda::available()) {
            fmt::print("optjit-quantized-bench: no GPU ({})\n", cuda::unavailable_reason());
            return 0;
        }
        bool sweep = argc > 1 && std::string(argv[1]) == "sweep";
        run_workload("one tensor of 2^28 elements", kOneTensor, {});
        run_workload("Llama-3.2-1B parameter list", llama_3_2_1b_shapes(), {});
        if (sweep) {  // where the quantized kernels' time goes
            CodegenOptions fast;
            fast.math = MathMode::Fast;
            run_workload("one tensor of 2^28 elements", kOneTensor, fast, true);
            run_workload("one tensor of 2^28 elements", kOneTensor, {}, false, true);
            for (int blocks : {5, 6}) {
                CodegenOptions capped;
                capped.gpu_min_blocks_per_sm = blocks;
                run_workload("one tensor of 2^28 elements", kOneTensor, capped, true);
            }
            run_workload("one tensor of 2^28 elements", kOneTensor, {}, false, false, codec_variants());
            run_workload("one tensor of 2^28 elements", kOneTensor, {}, false, true, codec_variants());
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "optjit-quantized-bench: {}\n", e.what());
        return 1;
    }
    return 0;
}
