// optjit-codegen-bench: the figures of the code generation issue, printed, never asserted.
//
//   compile      IR to PTX for AdamW in each state format of optjit bench, median of many
//                compiles, ptxas's time where the toolkit is installed (and the host JIT)
//   warm-start   a new process loading AdamW from the disk cache (GPU only)
//   gpu          AdamW over one 2^28-element tensor, fp32 and bf16, against a device copy of
//                the same bytes in the same run (bytes the step must move: p read and written,
//                g read, each state read and written)
//   cpu          AdamW fp32 over 2^26 elements on every core, against a multi-threaded copy
//
// usage: optjit-codegen-bench [compile] [warm-start] [gpu] [cpu]   (default: all that apply)
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <fstream>
#include <sstream>
#include <set>
#include <string>
#include <vector>

#include "compiler/compile.h"
#include "compiler/kernel_abi.h"
#include "ir/numeric.h"
#include "ir/verifier.h"
#include "runtime/cuda_driver.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/random.h"
#include "runtime/thread_pool.h"

using namespace optjit;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

std::string source_dir() { return OPTJIT_SOURCE_DIR; }

Program adamw() {
    std::ifstream in(source_dir() + "/examples/adamw.opt");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_and_verify(ss.str(), "examples/adamw.opt");
}

KernelRequest request(Target target, DType param, StateFormat states, uint32_t block = 0) {
    KernelRequest r{adamw(), {}, {}, target, {}};
    r.storage.param = param;
    r.storage.grad = param;
    StateFormat positive = states == StateFormat::Q8S ? StateFormat::Q8U : states == StateFormat::Q4S ? StateFormat::Q4U : states;
    r.storage.states["m"] = StateStorage{states, block};
    r.storage.states["v"] = StateStorage{positive, block};  // v >= 0: the unsigned formats, as optjit bench
    r.options.whole_chunks = block != 0;                    // as optjit::Optimizer on the Llama list
    return r;
}

// Seconds of CPU time ptxas takes to assemble `ptx` for sm_90 at -O3, the local stand-in for
// the driver's PTX compile of a cold first step; nullopt where the toolkit's ptxas is absent.
std::optional<double> ptxas_seconds(const std::string& ptx) {
    const char* ptxas = "/usr/local/cuda/bin/ptxas";
    if (access(ptxas, X_OK) != 0) return std::nullopt;
    std::string dir = std::filesystem::temp_directory_path() / fmt::format("optjit-ptxas-{}", getpid());
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/k.ptx") << ptx;
    std::string command = fmt::format("{} -arch=sm_90 -O3 {}/k.ptx -o {}/k.cubin", ptxas, dir, dir);
    auto cpu_seconds = [] {
        rusage u{};
        getrusage(RUSAGE_CHILDREN, &u);
        return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
    };
    double before = cpu_seconds();
    int rc = std::system(command.c_str());
    double seconds = cpu_seconds() - before;
    std::filesystem::remove_all(dir);
    if (rc != 0) return std::nullopt;
    return seconds;
}

void bench_compile() {
    fmt::print("== compile: IR to PTX for AdamW (median of 15, this machine; ptxas: median CPU time of 5 -O3 runs, the\n"
               "   local stand-in for the driver's compile of a cold first step)\n");
    struct Row {
        DType param;
        StateFormat states;
        uint32_t block;
        const char* label;
    };
    const Row rows[] = {{DType::F32, StateFormat::F32, 0, "fp32"}, {DType::BF16, StateFormat::F32, 0, "bf16 p, fp32"},
                        {DType::BF16, StateFormat::BF16, 0, "bf16"},  {DType::BF16, StateFormat::Q8S, 256, "bf16 p, q8"},
                        {DType::BF16, StateFormat::Q4S, 128, "bf16 p, q4"}, {DType::BF16, StateFormat::FP8, 256, "bf16 p, fp8"}};
    for (const Row& row : rows) {
        for (int sm : {80, 90}) {
            if (row.block && sm == 80) continue;  // the Llama list's quantized kernels: sm_90 only
            std::vector<double> total, passes, codegen, optimize, emit, assemble;
            std::string ptx;
            for (int i = 0; i < 15; ++i) {
                CompileTimes t;
                auto t0 = Clock::now();
                ptx = emit_text(request(Target{Target::Kind::NVPTX, sm}, row.param, row.states, row.block), Emit::Assembly, &t);
                total.push_back(ms_since(t0));
                passes.push_back(t.passes_ms);
                codegen.push_back(t.codegen_ms);
                optimize.push_back(t.optimize_ms);
                emit.push_back(t.emit_ms);
            }
            std::string ptxas_note;
            if (sm == 90) {
                for (int i = 0; i < 5; ++i)
                    if (auto s = ptxas_seconds(ptx)) assemble.push_back(1000 * *s);
                ptxas_note = assemble.empty() ? "; ptxas: none here" : fmt::format("; ptxas {:.0f} ms", median(assemble));
            }
            fmt::print("  adamw {} sm_{}: {:.2f} ms (passes {:.2f}, LLVM IR {:.2f}, O3 {:.2f}, PTX {:.2f}){}\n", row.label, sm, median(total),
                       median(passes), median(codegen), median(optimize), median(emit), ptxas_note);
        }
    }
    std::vector<double> host;
    for (int i = 0; i < 10; ++i) {
        KernelCache cache("");
        auto t0 = Clock::now();
        cache.get(request(Target{}, DType::F32, StateFormat::F32));
        host.push_back(ms_since(t0));
    }
    fmt::print("  adamw fp32 host (IR to machine code through ORC): {:.2f} ms\n", median(host));
}

// Child process of the start-up measurement: get AdamW through the disk cache in `dir` (a
// compile when the directory is empty).
int start_child(const std::string& dir) {
    auto t0 = Clock::now();
    int cc = cuda::init();
    double init_ms = ms_since(t0);
    KernelCache cache(dir);
    auto t1 = Clock::now();
    auto kernel = cache.get(request(Target{Target::Kind::NVPTX, cc}, DType::F32, StateFormat::F32));
    double load_ms = ms_since(t1);
    CacheStats s = cache.stats();
    fmt::print("  new process: CUDA driver init and context {:.1f} ms; kernel {:.2f} ms (disk hits {}, compiles {})\n", init_ms, load_ms,
               s.disk_hits, s.compiles);
    return s.disk_hits + s.compiles == 1 ? 0 : 1;
}

void bench_warm_start(const char* self) {
    fmt::print("== start-up: cold (LLVM, then the driver's PTX compile with its JIT cache off), then warm (our disk cache, the driver's JIT cache)\n");
    std::string dir = fmt::format("/tmp/optjit-bench-cache-{}", ::getpid());
    std::filesystem::remove_all(dir);
    for (int i = 0; i < 4; ++i) {
        std::string cmd = fmt::format("{}'{}' --start-child '{}'", i == 0 ? "CUDA_CACHE_DISABLE=1 " : "", self, dir);
        std::fflush(stdout);  // the child's lines after ours
        if (std::system(cmd.c_str()) != 0) fmt::print("  start-up child failed\n");
    }
    std::filesystem::remove_all(dir);
}

// Fills a device buffer of `n` elements of `t` with normal values (scale, plus offset).
void fill_device(cuda::DevicePtr dst, DType t, int64_t n, uint64_t seed, double scale, double offset, bool positive) {
    const int64_t block = 1 << 22;
    std::vector<uint8_t> host(size_t(block) * dtype_bytes(t));
    for (int64_t i = 0; i < block; ++i) {
        double v = normal(seed, 0, i) * scale;
        store_element(t, host.data(), i, (positive ? std::fabs(v) : v) + offset);
    }
    for (int64_t at = 0; at < n; at += block) {
        int64_t count = std::min(block, n - at);
        cuda::memcpy_htod(dst + at * dtype_bytes(t), host.data(), count * dtype_bytes(t));
    }
}

void bench_gpu() {
    int cc = cuda::init();
    fmt::print("== GPU: {} (sm_{}, {} SMs), AdamW on one tensor of 2^28 elements\n", cuda::device_name(), cc, cuda::multiprocessor_count());
    const int64_t n = int64_t(1) << 28;
    const int reps = 30;
    cuda::Event start = cuda::event_create(), stop = cuda::event_create();
    auto time_ms = [&](auto&& body) {
        std::vector<double> times;
        for (int i = 0; i < reps + 3; ++i) {
            cuda::event_record(start, nullptr);
            body(i);
            cuda::event_record(stop, nullptr);
            double ms = cuda::event_elapsed_ms(start, stop);
            if (i >= 3) times.push_back(ms);
        }
        return median(times);
    };
    fmt::print("  {:<22} {:>16} {:>6} {:>8} {:>10} {:>12} {:>8} {:>10} {:>8}\n", "storage", "ept x tpb", "regs", "blk/SM",
               "step ms", "bytes moved", "GB/s", "copy GB/s", "% copy");
    for (auto [param, states, label] : {std::tuple{DType::F32, StateFormat::F32, "fp32 p,g,m,v"},
                                        std::tuple{DType::BF16, StateFormat::BF16, "bf16 p,g,m,v"},
                                        std::tuple{DType::BF16, StateFormat::F32, "bf16 p,g; fp32 m,v"}}) {
        DType st = state_dtype(states);
        int pb = dtype_bytes(param), sb = dtype_bytes(st);
        cuda::DevicePtr p = cuda::malloc(n * pb), g = cuda::malloc(n * pb), m = cuda::malloc(n * sb), v = cuda::malloc(n * sb);
        fill_device(p, param, n, 1, 1.0, 0, false);
        fill_device(g, param, n, 2, 1.0, 0, false);
        fill_device(m, st, n, 3, 0.1, 0, false);
        fill_device(v, st, n, 4, 0.01, 1e-4, true);
        double bytes = double(n) * (2 * pb + pb + 4 * sb);
        // A copy moving the same number of bytes (half read, half written), timed in the same run.
        size_t half = size_t(bytes / 2);
        cuda::DevicePtr a = cuda::malloc(half), b = cuda::malloc(half);
        cuda::memset_d8(a, 0x3c, half);
        // Tuning variants: (elements per thread, minimum blocks per SM), automatic first.
        struct Variant {
            int ept, tpb, vec;
            bool fast;
        };
        for (Variant var : {Variant{0, 0, 0, false}, Variant{4, 256, 0, false}, Variant{4, 128, 0, false}, Variant{8, 128, 0, false},
                            Variant{8, 512, 0, false}, Variant{4, 256, 8, false}, Variant{4, 128, 8, false}, Variant{8, 256, 8, false},
                            Variant{8, 0, 0, true}, Variant{4, 0, 8, true}}) {
            auto [ept, tpb, vec, fast] = var;
            int min_blocks = 0;
            KernelRequest req = request(Target{Target::Kind::NVPTX, cc}, param, states);
            req.options.gpu_elements_per_thread = ept;
            req.options.gpu_threads_per_block = tpb;
            req.options.gpu_vector_bytes = vec;
            req.options.math = fast ? MathMode::Fast : MathMode::Ieee;
            KernelCache& cache = KernelCache::global();
            auto kernel = cache.get(req);
            std::vector<TensorArgs> args{{p, g, {m, v}, {}, n}};
            TensorTable table = build_table(*kernel, args);
            cuda::DevicePtr dtable = cuda::malloc(table.words.size() * 8);
            cuda::memcpy_htod(dtable, table.words.data(), table.words.size() * 8);
            int compiles = cache.stats().compiles;
            double step_ms = time_ms([&](int i) {
                // A new learning rate every step: run-time data, never a recompile.
                launch_cuda(*kernel, dtable, table, launch_scalars(*kernel, {{"lr", 1e-3 * (1 + 0.01 * i)}}, i + 1), nullptr);
            });
            double copy_ms = time_ms([&](int) { cuda::memcpy_dtod_async(b, a, half, nullptr); });
            double gbs = bytes / step_ms / 1e6, copy_gbs = 2.0 * half / copy_ms / 1e6;
            std::string variant = fmt::format("{}{}x{}{}{}", ept == 0 ? "auto " : "", gpu_elements_per_thread(kernel->spec()),
                                              gpu_threads_per_block(kernel->spec()), vec ? fmt::format(" v{}", vec) : "",
                                              fast ? " fast" : "");
            fmt::print("  {:<22} {:>16} {:>6} {:>8} {:>10.3f} {:>12.3g} {:>8.0f} {:>10.0f} {:>7.1f}%{}\n", label, variant,
                       cuda::registers(kernel->cuda_function), kernel->gpu_blocks_per_sm, step_ms, bytes, gbs, copy_gbs, 100 * gbs / copy_gbs,
                       cache.stats().compiles != compiles ? "  (RECOMPILED)" : "");
            cuda::free(dtable);
        }
        for (cuda::DevicePtr d : {p, g, m, v, a, b}) cuda::free(d);
    }
    cuda::event_destroy(start);
    cuda::event_destroy(stop);
}

void bench_cpu() {
    ThreadPool& pool = ThreadPool::global();
    const int64_t n = int64_t(1) << 26;
    fmt::print("== CPU: AdamW fp32 over 2^26 elements, {} threads\n", pool.size());
    KernelCache cache("");
    auto kernel = cache.get(request(Target{}, DType::F32, StateFormat::F32));
    std::vector<float> p(n), g(n), m(n), v(n);
    pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            p[i] = float(normal(1, 0, i));
            g[i] = float(normal(2, 0, i));
            m[i] = 0.1f * float(normal(3, 0, i));
            v[i] = 1e-4f + 0.01f * float(std::fabs(normal(4, 0, i)));
        }
    });
    std::vector<TensorArgs> args{{uint64_t(p.data()), uint64_t(g.data()), {uint64_t(m.data()), uint64_t(v.data())}, {}, n}};
    TensorTable table = build_table(*kernel, args);
    std::vector<double> step_times, copy_times;
    double bytes = double(n) * 28;
    size_t half = size_t(bytes / 2);
    std::vector<uint8_t> a(half, 0x3c), b(half);
    for (int i = 0; i < 12; ++i) {
        std::vector<float> scalars = launch_scalars(*kernel, {{"lr", 1e-3 * (1 + 0.01 * i)}}, i + 1);
        auto t0 = Clock::now();
        launch_host(*kernel, table, scalars, pool);
        double step = ms_since(t0);
        t0 = Clock::now();
        pool.parallel_for(int64_t(half) / 4096, [&](int64_t s, int64_t e) { std::memcpy(b.data() + s * 4096, a.data() + s * 4096, (e - s) * 4096); });
        double copy = ms_since(t0);
        if (i >= 2) {
            step_times.push_back(step);
            copy_times.push_back(copy);
        }
    }
    double step_ms = median(step_times), copy_ms = median(copy_times);
    double gbs = bytes / step_ms / 1e6, copy_gbs = bytes / copy_ms / 1e6;
    fmt::print("  step {:.2f} ms, {:.0f} GB/s; copy of the same bytes {:.2f} ms, {:.0f} GB/s: {:.1f}% of copy\n", step_ms, gbs, copy_ms,
               copy_gbs, 100 * gbs / copy_gbs);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::string(argv[1]) == "--start-child") return start_child(argv[2]);
    std::set<std::string> want(argv + 1, argv + argc);
    auto wanted = [&](const char* s) { return want.empty() || want.count(s); };
    try {
        if (wanted("compile")) bench_compile();
        bool gpu = cuda::available();
        if (!gpu && (want.count("gpu") || want.count("warm-start"))) fmt::print("== GPU parts skipped: {}\n", cuda::unavailable_reason());
        if (gpu && wanted("warm-start")) bench_warm_start(argv[0]);
        if (gpu && wanted("gpu")) bench_gpu();
        if (wanted("cpu")) bench_cpu();
    } catch (const std::exception& e) {
        fmt::print(stderr, "optjit-codegen-bench: {}\n", e.what());
        return 1;
    }
    return 0;
}
