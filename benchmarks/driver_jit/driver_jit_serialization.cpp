// Probe: does the CUDA driver compile PTX for two threads at once? (Tenth session; not part of
// the build: it needs the CUDA toolkit's headers and libcuda.)
//
//   optjit compile adamw --target sm_90 --emit ptx --param-dtype bf16 --grad-dtype bf16 -o f32.ptx
//   optjit compile adamw --target sm_90 --emit ptx --param-dtype bf16 --grad-dtype bf16
//       --state m=q8s --state v=q8u -o q8.ptx
//   (cat q8.ptx; grep -v '^\.\(version\|target\|address_size\)' f32.ptx |
//       sed 's/optjit_adamw/optjit_small/g; s/optjit_\$_/optjit_s_$_/g') > both.ptx
//   g++ -O2 -std=c++17 -I/usr/local/cuda/include driver_jit_serialization.cpp -o probe
//       -L/usr/local/cuda/lib64/stubs -lcuda -lpthread
//   CUDA_CACHE_DISABLE=1 ./probe f32.ptx q8.ptx both.ptx
//
// H200, driver 580.159.04 (CUDA 13.0), 2026-11-26, three trials (times in ms from the start):
//   serial cuModuleLoadDataEx:      small 0-176, big 176-429 | 0-71, 71-244  | 0-92, 92-348
//   two threads, cuModuleLoadDataEx: small 0-327 (its compile 99), big 0-227 | 0-234 (64), 0-169
//                                    | 0-342 (86), 0-256: the small one waits for the big one
//   two threads, cuLinkComplete:    small 0-94, big 0-200 | 0-66, 0-177 | 0-91, 0-254: concurrent
//                                    (but relocatable code: 146 registers for q8 AdamW, not 96)
//   big alone, CU_JIT_SPLIT_COMPILE=0: 248, 244, 248 (no gain for one kernel)
//   big alone, optimization level 1:   156, 191, 222 (level 4 in the same runs: 169-256)
//   both kernels in one module, split=0: 258, 258, 274 (the two compile side by side)
// The big (q8) kernel's compile alone varies 156-256 ms between runs on that machine.
//
// H100, same driver, 2026-12-07, the whole-chunk q8 kernel (optjit compile ... --whole-chunks),
// three trials: serial ex small 0-92 / 0-82 / 0-87, big to 202 / 191 / 200; concurrent ex:
// small 0-196 / 0-184 / 0-194 (waits); concurrent link: small 0-63, big 0-110 (and alike);
// small through cuLink beside big through cuModuleLoadDataEx: both done at 110-112 (the
// link's compile 75-79 ms runs beside; loading its cubin waits ~35 ms for the other load);
// big alone 110-111; big at optimization level 1: 90-92; both in one module, split 0: 110-126.
// So a dense kernel compiled through cuLink costs a quantized group's first step nothing.
#include <cuda.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <cstring>
using Clock = std::chrono::steady_clock;
static double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }
#define CK(x) do { CUresult r_ = (x); if (r_) { const char* s; cuGetErrorString(r_, &s); fprintf(stderr, "%s: %s\n", #x, s); exit(1);} } while (0)
static std::string slurp(const char* p) { std::ifstream f(p); std::stringstream s; s << f.rdbuf(); return s.str(); }
CUcontext ctx;
Clock::time_point T0;
struct R { double start, end, wall; };
R load_ex(const std::string& ptx, int level, int split) {
    cuCtxSetCurrent(ctx);
    auto a = Clock::now();
    CUjit_option o[3] = {CU_JIT_OPTIMIZATION_LEVEL, CU_JIT_WALL_TIME, CU_JIT_SPLIT_COMPILE};
    void* v[3] = {(void*)(uintptr_t)level, nullptr, (void*)(uintptr_t)split};
    CUmodule m;
    CK(cuModuleLoadDataEx(&m, ptx.c_str(), split >= 0 ? 3 : 2, o, v));
    float w; memcpy(&w, &v[1], 4);
    auto b = Clock::now();
    return {ms(T0, a), ms(T0, b), w};
}
R load_link(const std::string& ptx, int level) {
    cuCtxSetCurrent(ctx);
    auto a = Clock::now();
    CUjit_option o[2] = {CU_JIT_OPTIMIZATION_LEVEL, CU_JIT_WALL_TIME};
    void* v[2] = {(void*)(uintptr_t)level, nullptr};
    CUlinkState ls;
    CK(cuLinkCreate(2, o, v, &ls));
    CK(cuLinkAddData(ls, CU_JIT_INPUT_PTX, (void*)ptx.c_str(), ptx.size() + 1, "k", 0, nullptr, nullptr));
    void* cubin; size_t size;
    CK(cuLinkComplete(ls, &cubin, &size));
    auto c = Clock::now();
    CUmodule m;
    CK(cuModuleLoadData(&m, cubin));
    CK(cuLinkDestroy(ls));
    float w; memcpy(&w, &v[1], 4);
    auto b = Clock::now();
    fprintf(stderr, "   (link %.1f ms, load cubin %.2f ms)\n", ms(a, c), ms(c, b));
    return {ms(T0, a), ms(T0, b), w};
}
int main(int argc, char** argv) {
    std::string small = slurp(argv[1]), big = slurp(argv[2]), both = slurp(argv[3]);
    CK(cuInit(0)); CUdevice d; CK(cuDeviceGet(&d, 0)); CK(cuDevicePrimaryCtxRetain(&ctx, d)); cuCtxSetCurrent(ctx);
    // Distinct PTX each trial so no cache can serve it (also CUDA_CACHE_DISABLE=1).
    for (int trial = 0; trial < 3; ++trial) {
        auto tag = [&](const std::string& p, const char* what) { return p + "\n// " + what + std::to_string(trial) + "\n"; };
        R a, b;
        T0 = Clock::now(); a = load_ex(tag(small, "s1"), 4, -1); b = load_ex(tag(big, "s1"), 4, -1);
        printf("trial %d serial ex:     small %.0f-%.0f (jit %.0f)  big %.0f-%.0f (jit %.0f)\n", trial, a.start, a.end, a.wall, b.start, b.end, b.wall);
        T0 = Clock::now(); { std::thread t([&] { a = load_ex(tag(small, "c1"), 4, -1); }); b = load_ex(tag(big, "c1"), 4, -1); t.join(); }
        printf("trial %d concurrent ex: small %.0f-%.0f (jit %.0f)  big %.0f-%.0f (jit %.0f)\n", trial, a.start, a.end, a.wall, b.start, b.end, b.wall);
        T0 = Clock::now(); { std::thread t([&] { a = load_link(tag(small, "l1"), 4); }); b = load_link(tag(big, "l1"), 4); t.join(); }
        printf("trial %d concurrent link: small %.0f-%.0f (jit %.0f)  big %.0f-%.0f (jit %.0f)\n", trial, a.start, a.end, a.wall, b.start, b.end, b.wall);
        T0 = Clock::now(); { std::thread t([&] { a = load_link(tag(small, "m1"), 4); }); b = load_ex(tag(big, "m1"), 4, -1); t.join(); }
        printf("trial %d small link beside big ex: small %.0f-%.0f (jit %.0f)  big %.0f-%.0f (jit %.0f)\n", trial, a.start, a.end, a.wall, b.start, b.end, b.wall);
        T0 = Clock::now(); b = load_ex(tag(big, "alone"), 4, -1);
        printf("trial %d big alone: %.0f ms (jit %.0f)\n", trial, b.end - b.start, b.wall);
        T0 = Clock::now(); b = load_ex(tag(big, "sp0"), 4, 0);
        printf("trial %d big split=0: %.0f ms (jit %.0f)\n", trial, b.end - b.start, b.wall);
        T0 = Clock::now(); b = load_ex(tag(big, "o1"), 1, -1);
        printf("trial %d big level 1: %.0f ms (jit %.0f)\n", trial, b.end - b.start, b.wall);
        T0 = Clock::now(); b = load_ex(tag(both, "both"), 4, 0);
        printf("trial %d both in one module split=0: %.0f ms (jit %.0f)\n", trial, b.end - b.start, b.wall);
    }
}
