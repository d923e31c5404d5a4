// How far quantized AdamW strays from fp32 AdamW, on host kernels: one step from the same
// state (bitsandbytes' test: the fp32 states are re-synced to the dequantized 8-bit ones before
// every step), and 200-step trajectories without re-syncing. The bounds are measured figures
// with margin (NOTES.md has the measurements); a regression in the codecs or the fused step
// moves these far past them.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "example_checks.h"
#include "ir/quantization.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/random.h"
#include "runtime/tensor_codec.h"

using namespace optjit;
using namespace optjit_test;

namespace {

// AdamW over one fp32 tensor on the host, with states stored as `m` and `v`.
class HostAdamW {
public:
    HostAdamW(int64_t n, const StateStorage& m, const StateStorage& v, const Hypers& hypers) : n_(n), hypers_(hypers) {
        KernelRequest request{load_example("adamw"), {}, {}, Target{}, {}};
        request.storage.states = {{"m", m}, {"v", v}};
        kernel_ = KernelCache::global().get(request);
        p = std::vector<float>(size_t(n));
        g = std::vector<float>(size_t(n));
        for (const StateStorage& s : {m, v}) {
            State st{s};
            if (is_block_quantized(s.format)) {
                st.codes.assign(code_bytes(s, n), zero_code_byte(s.format));
                st.scales.assign(size_t(scale_count(s, 0, n)), 0.0f);
            } else {
                st.values.assign(size_t(n), 0.0f);
            }
            states_.push_back(std::move(st));
        }
        TensorArgs args{uint64_t(p.data()), uint64_t(g.data()), {}, {}, n, 0};
        for (State& s : states_) {
            args.states.push_back(is_block_quantized(s.storage.format) ? uint64_t(s.codes.data()) : uint64_t(s.values.data()));
            args.scales.push_back(is_block_quantized(s.storage.format) ? uint64_t(s.scales.data()) : 0);
        }
        table_ = build_table(*kernel_, std::span<const TensorArgs>(&args, 1));
    }

    void step() {
        ++step_;
        launch_host(*kernel_, table_, launch_scalars(*kernel_, hypers_, step_), ThreadPool::global());
    }

    // State s's values, as the kernel reads them.
    std::vector<float> state(int s) const {
        const State& st = states_[size_t(s)];
        if (!is_block_quantized(st.storage.format)) return st.values;
        return dequantize(st.storage, QuantizedTensor{st.codes, st.scales}, n_);
    }
    // Overwrites fp32 state s (the re-sync of bitsandbytes' test).
    void set_state(int s, const std::vector<float>& values) { states_[size_t(s)].values = values; }

    std::vector<float> p, g;

private:
    struct State {
        StateStorage storage;
        std::vector<float> values;
        std::vector<uint8_t> codes;
        std::vector<float> scales;
    };
    int64_t n_;
    Hypers hypers_;
    int64_t step_ = 0;
    std::shared_ptr<const Kernel> kernel_;
    std::vector<State> states_;
    TensorTable table_;
};

const Hypers kHypers = {{"lr", 1e-3}, {"beta1", 0.9}, {"beta2", 0.999}, {"eps", 1e-8}, {"weight_decay", 0.0}};

}  // namespace

// bitsandbytes compares its 8-bit AdamW with torch's, copying the dequantized 8-bit states into
// torch's every 10 steps; the issue asks for every step. Re-synced every step the two agree
// exactly here (the parameter update reads the new state before it is quantized, in the same
// fp32 math); every 10 steps, the 8-bit states' rounding accumulates for up to 10 steps.
TEST_CASE("quantized accuracy: q8 AdamW re-synced to fp32 AdamW stays within 6e-4 mean relative error (bitsandbytes' test)") {
    const int64_t n = int64_t(1) << 20;
    uint64_t seed = test_seed();
    INFO("seed ", seed);
    for (int every : {1, 10}) {
        HostAdamW q8(n, StateStorage{StateFormat::Q8S, 256}, StateStorage{StateFormat::Q8U, 256}, kHypers);
        HostAdamW fp32(n, StateStorage{}, StateStorage{}, kHypers);
        for (int64_t i = 0; i < n; ++i) q8.p[size_t(i)] = float(normal(seed, 0, uint64_t(i)));
        // bitsandbytes' statistic, the mean of |p8 - p32| / |p32|; and, for the 10-step cadence,
        // the L1 distance relative to |p32|'s: the mean of ratios is dominated by the few p
        // closest to 0 (|p| ~ 1e-6 among 2^20 normal values), so its worst case is the seed's luck.
        double worst = 0, worst_l1 = 0, state_apart = 0;
        for (int step = 1; step <= 30; ++step) {
            if ((step - 1) % every == 0) {
                fp32.p = q8.p;
                fp32.set_state(0, q8.state(0));
                fp32.set_state(1, q8.state(1));
            }
            for (int64_t i = 0; i < n; ++i) q8.g[size_t(i)] = fp32.g[size_t(i)] = float(normal(seed, uint64_t(step), uint64_t(i)) * 0.1);
            q8.step();
            fp32.step();
            double sum = 0, distance = 0, size = 0;
            for (int64_t i = 0; i < n; ++i) {
                double d = std::fabs(double(q8.p[size_t(i)]) - fp32.p[size_t(i)]);
                sum += d / (std::fabs(double(fp32.p[size_t(i)])) + 1e-8);
                distance += d;
                size += std::fabs(double(fp32.p[size_t(i)]));
            }
            worst = std::max(worst, sum / double(n));
            worst_l1 = std::max(worst_l1, distance / size);
            std::vector<float> m8 = q8.state(0), m32 = fp32.state(0);
            for (int64_t i = 0; i < n; ++i) state_apart = std::max(state_apart, double(std::fabs(m8[size_t(i)] - m32[size_t(i)])));
        }
        MESSAGE("re-synced every ", every, " steps, worst over 30 steps: mean relative error of p ", worst, ", relative L1 distance ", worst_l1);
        CHECK(state_apart > 0);  // the stored states really are quantized
        if (every == 1) {
            // The bar, 6e-4 (measured: exactly 0).
            CHECK(worst < 6e-4);
            CHECK(worst == 0);
        } else {
            // As bitsandbytes itself re-syncs. Measured 4.70e-5 to 4.72e-5 over seeds (the mean
            // relative error meanwhile ranged from 4.8e-4 to 4.8e-3, and failed a 3e-3 bound).
            CHECK(worst_l1 < 1e-4);
        }
    }
}

// 200 steps of a noisy quadratic (g = p - target + noise) from the same start and the same
// gradients' noise: the quantized run's distance from the fp32 run, relative to how far the
// fp32 run moved, and its final loss relative to fp32's.
TEST_CASE("quantized accuracy: 200-step trajectories of q8, q4 and fp8 AdamW stay near fp32's") {
    const int64_t n = int64_t(1) << 18;
    uint64_t seed = test_seed();
    INFO("seed ", seed);
    Hypers hypers = kHypers;
    hypers["lr"] = 1e-2;
    struct Case {
        const char* name;
        StateStorage m, v;
        double max_distance, max_loss_ratio;
    };
    // Measured over seeds (n = 2^18, lr 1e-2, 200 steps): distance q8 0.032, q4 0.270 to
    // 0.279, fp8 0.054; loss ratio q8 1.076, q4 1.234 to 1.247, fp8 1.127 to 1.129. Bounds:
    // about 1.4 times the measured departure from fp32.
    const Case cases[] = {
        {"q8", {StateFormat::Q8S, 256}, {StateFormat::Q8U, 256}, 0.045, 1.11},
        {"q4", {StateFormat::Q4S, 128}, {StateFormat::Q4U, 128}, 0.38, 1.33},
        {"fp8", {StateFormat::FP8, 256}, {StateFormat::FP8, 256}, 0.075, 1.18},
    };
    std::vector<float> start(static_cast<size_t>(n)), target(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        start[size_t(i)] = float(normal(seed, 0, uint64_t(i)));
        target[size_t(i)] = float(normal(seed ^ 0x5eed, 0, uint64_t(i)));
    }
    auto run = [&](const StateStorage& m, const StateStorage& v) {
        HostAdamW opt(n, m, v, hypers);
        opt.p = start;
        for (int step = 1; step <= 200; ++step) {
            for (int64_t i = 0; i < n; ++i)
                opt.g[size_t(i)] = opt.p[size_t(i)] - target[size_t(i)] + 0.5f * float(normal(seed, uint64_t(step), uint64_t(i)));
            opt.step();
        }
        return opt.p;
    };
    auto loss = [&](const std::vector<float>& p) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += (double(p[size_t(i)]) - target[size_t(i)]) * (double(p[size_t(i)]) - target[size_t(i)]);
        return s;
    };
    std::vector<float> reference = run(StateStorage{}, StateStorage{});
    double moved = 0;
    for (int64_t i = 0; i < n; ++i) moved += std::pow(double(reference[size_t(i)]) - start[size_t(i)], 2);
    for (const Case& c : cases) {
        std::vector<float> p = run(c.m, c.v);
        double apart = 0;
        for (int64_t i = 0; i < n; ++i) apart += std::pow(double(p[size_t(i)]) - reference[size_t(i)], 2);
        double distance = std::sqrt(apart / moved), loss_ratio = loss(p) / loss(reference);
        MESSAGE(std::string(c.name), ": distance from the fp32 trajectory / distance fp32 moved = ", distance, "; final loss / fp32's = ", loss_ratio);
        CHECK(distance < c.max_distance);
        CHECK(distance > 0);
        CHECK(loss_ratio < c.max_loss_ratio);
    }
}
