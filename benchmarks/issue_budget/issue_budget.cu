// issue_budget: how many instructions an element a step with low-bit states may issue and still
// move its bytes at 90 % of copy bandwidth. A measurement of the hardware, not of optjit.
//
// Each kernel moves exactly the bytes of AdamW with bf16 parameters and gradients and 8-bit
// (blocks of 256) or 4-bit (blocks of 128) states: p read and written, g read, two states' codes
// read and written, their block scales read and written. In between it runs K dependent-chain
// instructions an element of one kind, eight independent chains a thread:
//   ffma  fused multiply-adds (the FMA pipe, full rate: the most favourable instruction)
//   alu   alternating LOP3 and IADD3 (the ALU pipe: compares, selects, shifts, logic are here)
//   mix   two FFMA to one ALU instruction (about the mix of optjit's quantized kernels)
// A thread takes 8 elements a chunk; a persistent grid of 256-thread blocks, the next chunk loaded
// before the current one is computed.
// The instructions an element of each kernel (K plus the data movement's own) are counted from
// its SASS by count_budget_sass.sh; this program prints the time and % of copy.
//
// Build (the CUDA toolkit is not a dependency of optjit; this is an experiment):
//   nvcc -O3 -arch=sm_90 -std=c++17 -o issue_budget benchmarks/issue_budget/issue_budget.cu
// Run on the GPU: ./issue_budget [log2 elements, default 28]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                                      \
    do {                                                                              \
        cudaError_t e = (x);                                                          \
        if (e != cudaSuccess) {                                                       \
            std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); \
            std::exit(1);                                                             \
        }                                                                             \
    } while (0)

enum Op { FFMA = 0, ALU = 1, MIX = 2 };

template <int Bits> struct Codes;
template <> struct Codes<8> { using Word = uint2; static constexpr int block = 256; };
template <> struct Codes<4> { using Word = uint32_t; static constexpr int block = 128; };

__device__ __forceinline__ uint32_t code_of(uint2 w, int i) {
    return ((i < 4 ? w.x : w.y) >> (8 * (i & 3))) & 0xff;
}
__device__ __forceinline__ uint32_t code_of(uint32_t w, int i) { return (w >> (4 * i)) & 0xf; }

template <int Op, int K>
__device__ __forceinline__ void work(float (&x)[8], float a, float b, uint32_t ka, uint32_t kb) {
    // Step k of all eight chains before step k + 1 of any: eight independent instructions in a row.
#pragma unroll
    for (int k = 0; k < K; ++k) {
        bool alu = Op == ALU || (Op == MIX && k % 3 == 2);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            if (!alu) {
                x[i] = __fmaf_rn(x[i], a, b);
            } else {
                // xor then add of launch values that change with k: no two steps fold into one
                uint32_t u = __float_as_uint(x[i]);
                u = (k & 1) ? u + (kb ^ k) : u ^ (ka + k);
                x[i] = __uint_as_float(u);
            }
        }
    }
}

// What a thread reads for its eight elements.
template <int Bits> struct Chunk {
    uint4 p, g;
    typename Codes<Bits>::Word m, v;
    float m_scale, v_scale;
};

// A persistent grid: each thread loads its next chunk before it computes the current one, so a
// warp's loads are in flight while it computes (the software pipeline optjit's kernels have).
template <int Bits, int Op, int K, int Depth>
__global__ void __launch_bounds__(256) step(uint4* __restrict__ p, const uint4* __restrict__ g,
                                            typename Codes<Bits>::Word* __restrict__ m,
                                            typename Codes<Bits>::Word* __restrict__ v,
                                            float* __restrict__ m_scale, float* __restrict__ v_scale,
                                            float a, float b, uint32_t ka, uint32_t kb,
                                            size_t chunks) {
    constexpr int threads_per_block = Codes<Bits>::block / 8;
    size_t stride = size_t(gridDim.x) * blockDim.x;
    auto load = [&](size_t t) {
        size_t block = t / threads_per_block;
        return Chunk<Bits>{p[t], g[t], m[t], v[t], m_scale[block], v_scale[block]};
    };
    size_t t = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    Chunk<Bits> ahead[Depth];
#pragma unroll
    for (int d = 0; d < Depth; ++d) ahead[d] = load(t + d * stride < chunks ? t + d * stride : t);
    for (; t < chunks; t += stride) {
        Chunk<Bits> c = ahead[0];
#pragma unroll
        for (int d = 0; d + 1 < Depth; ++d) ahead[d] = ahead[d + 1];
        if (t + Depth * stride < chunks) ahead[Depth - 1] = load(t + Depth * stride);
        const __nv_bfloat162* pp = reinterpret_cast<const __nv_bfloat162*>(&c.p);
        const __nv_bfloat162* gg = reinterpret_cast<const __nv_bfloat162*>(&c.g);
        float pi[8], mi[8], vi[8], x[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            float2 pv = __bfloat1622float2(pp[i / 2]), gv = __bfloat1622float2(gg[i / 2]);
            pi[i] = i & 1 ? pv.y : pv.x;
            float gi = i & 1 ? gv.y : gv.x;
            mi[i] = __fmaf_rn(float(code_of(c.m, i)) * c.m_scale, a, gi);
            vi[i] = __fmaf_rn(float(code_of(c.v, i)) * c.v_scale, a, gi * gi);
            x[i] = mi[i] + vi[i];
        }
        work<Op, K>(x, a, b, ka, kb);
        uint4 po;
        uint32_t* pw = &po.x;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            __nv_bfloat162 h = __floats2bfloat162_rn(__fmaf_rn(x[2 * i], b, pi[2 * i]),
                                                     __fmaf_rn(x[2 * i + 1], b, pi[2 * i + 1]));
            pw[i] = *reinterpret_cast<uint32_t*>(&h);
        }
        p[t] = po;
        typename Codes<Bits>::Word mo{}, vo{};
        if constexpr (Bits == 8) {
            uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                w[i / 4] |= (uint32_t(mi[i] * x[i]) & 0xff) << (8 * (i & 3));
                w[2 + i / 4] |= (uint32_t(vi[i] * x[i]) & 0xff) << (8 * (i & 3));
            }
            mo = {w[0], w[1]};
            vo = {w[2], w[3]};
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                mo |= (uint32_t(mi[i] * x[i]) & 0xf) << (4 * i);
                vo |= (uint32_t(vi[i] * x[i]) & 0xf) << (4 * i);
            }
        }
        m[t] = mo;
        v[t] = vo;
        if (t % threads_per_block == 0) {
            m_scale[t / threads_per_block] = mi[0] * x[0];
            v_scale[t / threads_per_block] = vi[0] * x[0];
        }
    }
}

struct Buffers {
    void *p, *g, *m, *v, *ms, *vs;
};

double median(std::vector<float> x) {
    std::sort(x.begin(), x.end());
    return x[x.size() / 2];
}

template <typename Launch> double time_ms(Launch launch, int reps = 25) {
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    launch();
    CHECK(cudaDeviceSynchronize());
    std::vector<float> t;
    for (int r = 0; r < reps; ++r) {
        CHECK(cudaEventRecord(e0));
        launch();
        CHECK(cudaEventRecord(e1));
        CHECK(cudaEventSynchronize(e1));
        float ms;
        CHECK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms);
    }
    CHECK(cudaGetLastError());
    return median(t);
}

// Grids: "one-shot" (a thread per chunk, no loop: every resident warp loads at once, the
// hardware starts new blocks as old ones finish), or persistent with the next Depth chunks
// loaded ahead.
template <int Bits, int Op, int K, int Depth>
void run_one(const Buffers& b, size_t n, double copy_gbs, const char* op, bool one_shot) {
    using Word = typename Codes<Bits>::Word;
    size_t threads = n / 8;
    double bytes = n * (2.0 + 2.0 + 2.0 + 2.0 * 2.0 * Bits / 8) + 2.0 * 2.0 * 4.0 * n / Codes<Bits>::block;
    int sms = 0, blocks_per_sm = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, step<Bits, Op, K, Depth>, 256, 0));
    size_t grid = one_shot ? threads / 256 : size_t(sms) * blocks_per_sm;
    double ms = time_ms([&] {
        step<Bits, Op, K, Depth><<<grid, 256>>>(
            (uint4*)b.p, (const uint4*)b.g, (Word*)b.m, (Word*)b.v, (float*)b.ms, (float*)b.vs,
            0.999f, 1e-3f, 0x5bd1e995u, 0x1b873593u, threads);
    });
    double gbs = bytes / ms / 1e6;
    std::printf("q%d %-4s K=%-3d %-12s %d blocks/SM %8.3f ms %8.1f GB/s %6.1f %% of copy\n", Bits, op,
                K, one_shot ? "one-shot" : Depth == 1 ? "ahead 1" : "ahead 2", blocks_per_sm, ms, gbs,
                100 * gbs / copy_gbs);
}

template <int Bits, int Op, int... Ks> void sweep(const Buffers& b, size_t n, double copy_gbs, const char* op) {
    (run_one<Bits, Op, Ks, 1>(b, n, copy_gbs, op, true), ...);
    (run_one<Bits, Op, Ks, 1>(b, n, copy_gbs, op, false), ...);
    (run_one<Bits, Op, Ks, 2>(b, n, copy_gbs, op, false), ...);
}

int main(int argc, char** argv) {
    int log2n = argc > 1 ? std::atoi(argv[1]) : 28;
    size_t n = size_t(1) << log2n;
    Buffers b;
    CHECK(cudaMalloc(&b.p, n * 2));
    CHECK(cudaMalloc(&b.g, n * 2));
    CHECK(cudaMalloc(&b.m, n));
    CHECK(cudaMalloc(&b.v, n));
    CHECK(cudaMalloc(&b.ms, n / 128 * 4));
    CHECK(cudaMalloc(&b.vs, n / 128 * 4));
    // Codes of 0x3c (a small positive value) everywhere, finite scales: no denormal or NaN paths.
    CHECK(cudaMemset(b.p, 0x3c, n * 2));
    CHECK(cudaMemset(b.g, 0x3c, n * 2));
    CHECK(cudaMemset(b.m, 0x3c, n));
    CHECK(cudaMemset(b.v, 0x3c, n));
    CHECK(cudaMemset(b.ms, 0x3c, n / 128 * 4));
    CHECK(cudaMemset(b.vs, 0x3c, n / 128 * 4));
    // The copy moves as many bytes as a q8 step (read + write): ~10 bytes an element.
    size_t copy_bytes = n * 5;
    void *src, *dst;
    CHECK(cudaMalloc(&src, copy_bytes));
    CHECK(cudaMalloc(&dst, copy_bytes));
    CHECK(cudaMemset(src, 1, copy_bytes));
    double copy_ms = time_ms([&] { CHECK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice)); });
    double copy_gbs = 2.0 * copy_bytes / copy_ms / 1e6;
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("%s, %d SMs; 2^%d elements; copy %.3f ms, %.1f GB/s (read + write)\n", prop.name,
                prop.multiProcessorCount, log2n, copy_ms, copy_gbs);
    sweep<8, FFMA, 0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80>(b, n, copy_gbs, "ffma");
    sweep<8, ALU, 0, 8, 16, 24, 32, 40, 48>(b, n, copy_gbs, "alu");
    sweep<8, MIX, 0, 12, 24, 36, 48, 60, 72>(b, n, copy_gbs, "mix");
    sweep<4, FFMA, 0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80>(b, n, copy_gbs, "ffma");
    sweep<4, ALU, 0, 8, 16, 24, 32, 40, 48>(b, n, copy_gbs, "alu");
    sweep<4, MIX, 0, 12, 24, 36, 48, 60, 72>(b, n, copy_gbs, "mix");
    return 0;
}
