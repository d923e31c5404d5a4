// The reference interpreter's semantics: reductions, storage rounding and hyper-parameters,
// checked against values computed by hand.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ir/interpreter.h"
#include "ir/numeric.h"
#include "ir/verifier.h"
#include "test_support.h"

using namespace optjit;
using namespace optjit_test;

namespace {



double uniform(std::mt19937_64& rng, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

HostTensor random_tensor(std::mt19937_64& rng, size_t n) {
    HostTensor t;
    for (size_t i = 0; i < n; ++i) {
        t.p.push_back(uniform(rng, -1, 1));
        t.g.push_back(uniform(rng, -1, 1));
    }
    return t;
}

// Relative, with a floor far below the O(1) values of these tests for an element that cancels
// to nearly zero.
bool close(double a, double b) { return std::fabs(a - b) <= 1e-12 * std::max(std::fabs(a), std::fabs(b)) + 1e-15; }

std::string thrown_message(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

}  // namespace

TEST_CASE("interpreter: tensor and global reductions") {
    // Each state records one reduction so its value can be read back per element.
    Program prog = parse_and_verify(R"(optimizer reductions
  state s_sum = 0
  state s_max = 0
  state s_gsum = 0
  state s_gmax = 0
  state s_after = 0
  update
    s_sum = tensor_sum(g)
    s_max = tensor_max(g)
    s_gsum = global_sum(g * g)
    s_gmax = global_max(p)
    p = 2 * p
    s_after = tensor_sum(p)
)",
                                    "reductions");
    Interpreter interp(prog, hyper_values(prog, {}));
    std::vector<HostTensor> ts(3);
    ts[0].p = {1, -2, 3};
    ts[0].g = {0.5, -1.5, 2};
    ts[1].p = {4, -5};
    ts[1].g = {-3, -0.25};  // all negative: the max is not 0
    ts[2].p = {-0.5};
    ts[2].g = {1.25};
    for (HostTensor& t : ts) interp.init_states(t);
    interp.step(1, ts);

    const std::vector<double> sum = {1.0, -3.25, 1.25};
    const std::vector<double> max = {2.0, -0.25, 1.25};
    const double gsum = 0.25 + 2.25 + 4 + 9 + 0.0625 + 1.5625;
    const double gmax = 4;
    const std::vector<double> after = {4.0, -2.0, -1.0};  // sum of 2p: reductions read p as reassigned
    for (size_t t = 0; t < ts.size(); ++t) {
        CAPTURE(t);
        for (size_t i = 0; i < ts[t].p.size(); ++i) {
            CHECK(ts[t].states[0][i] == sum[t]);
            CHECK(ts[t].states[1][i] == max[t]);
            CHECK(ts[t].states[2][i] == gsum);
            CHECK(ts[t].states[3][i] == gmax);
            CHECK(ts[t].states[4][i] == after[t]);
        }
    }
    CHECK(ts[0].p == std::vector<double>{2, -4, 6});

    // In order of appearance: tensor reductions one value per tensor, global ones a single value.
    const auto& r = interp.last_reductions();
    REQUIRE(r.size() == 5);
    CHECK(r[0] == sum);
    CHECK(r[1] == max);
    CHECK(r[2] == std::vector<double>{gsum});
    CHECK(r[3] == std::vector<double>{gmax});
    CHECK(r[4] == after);
}

TEST_CASE("interpreter: a program without reductions reports none") {
    Program prog = parse_and_verify("optimizer sgd\n hyper lr = 0.1\n update\n p = p - lr * g\n", "sgd");
    Interpreter interp(prog, hyper_values(prog, {}));
    std::vector<HostTensor> ts(1);
    ts[0].p = {1, 2};
    ts[0].g = {10, 20};
    interp.init_states(ts[0]);
    interp.step(1, ts);
    CHECK(interp.last_reductions().empty());
    CHECK(ts[0].p == std::vector<double>{1 - 0.1 * 10, 2 - 0.1 * 20});
}

TEST_CASE("interpreter: SGD with clipping by the global gradient norm") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    // As torch.nn.utils.clip_grad_norm_ followed by plain SGD.
    Program prog = parse_and_verify(R"(optimizer clipped_sgd
  hyper lr = 0.1
  hyper max_norm = 1
  update
    norm = sqrt(global_sum(g * g))
    p = p - lr * min(1, max_norm / (norm + 1e-6)) * g
)",
                                    "clipped_sgd");
    // A max_norm below the norm clips; one far above it does not.
    for (double max_norm : {0.5, 1e6}) {
        CAPTURE(max_norm);
        const double lr = uniform(rng, 0.01, 1);
        Interpreter interp(prog, hyper_values(prog, {{"lr", lr}, {"max_norm", max_norm}}));
        std::vector<HostTensor> ts;
        for (int t = 0; t < 3; ++t) ts.push_back(random_tensor(rng, std::uniform_int_distribution<size_t>(1, 100)(rng)));
        for (HostTensor& t : ts) interp.init_states(t);
        std::vector<HostTensor> want = ts;
        for (int64_t step = 1; step <= 5; ++step) {
            for (size_t t = 0; t < ts.size(); ++t)
                for (size_t i = 0; i < ts[t].g.size(); ++i) want[t].g[i] = ts[t].g[i] = uniform(rng, -1, 1);
            interp.step(step, ts);

            double sq = 0;
            for (const HostTensor& t : want)
                for (double g : t.g) sq += g * g;
            double norm = std::sqrt(sq);
            double coef = std::min(1.0, max_norm / (norm + 1e-6));
            for (HostTensor& t : want)
                for (size_t i = 0; i < t.p.size(); ++i) t.p[i] -= lr * coef * t.g[i];

            REQUIRE(interp.last_reductions().size() == 1);
            CHECK(close(interp.last_reductions()[0][0], sq));
            for (size_t t = 0; t < ts.size(); ++t)
                for (size_t i = 0; i < ts[t].p.size(); ++i) CHECK(close(ts[t].p[i], want[t].p[i]));
        }
    }
}

TEST_CASE("interpreter: a LAMB-like per-tensor trust ratio") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    // Adam's direction plus decoupled decay, scaled per tensor by ||p|| / ||u|| (You et al. 2020).
    Program prog = parse_and_verify(R"(optimizer lamb_like
  hyper lr = 0.01
  hyper beta1 = 0.9
  hyper beta2 = 0.999
  hyper eps = 1e-6
  hyper weight_decay = 0.01
  state m = 0
  state v = 0
  update
    m = lerp(m, g, 1 - beta1)
    v = lerp(v, g * g, 1 - beta2)
    u = m / (1 - beta1 ^ step) / (sqrt(v / (1 - beta2 ^ step)) + eps) + weight_decay * p
    w_norm = sqrt(tensor_sum(p * p))
    u_norm = sqrt(tensor_sum(u * u))
    trust = select(w_norm > 0, select(u_norm > 0, w_norm / u_norm, 1), 1)
    p = p - lr * trust * u
)",
                                    "lamb_like");
    const double lr = uniform(rng, 1e-3, 0.1), b1 = uniform(rng, 0.5, 0.95), b2 = uniform(rng, 0.9, 0.9999);
    const double eps = 1e-6, wd = uniform(rng, 0.01, 0.2);
    Interpreter interp(prog, hyper_values(prog, {{"lr", lr}, {"beta1", b1}, {"beta2", b2}, {"weight_decay", wd}}));
    std::vector<HostTensor> ts;
    for (int t = 0; t < 3; ++t) ts.push_back(random_tensor(rng, std::uniform_int_distribution<size_t>(1, 100)(rng)));
    for (HostTensor& t : ts) interp.init_states(t);
    // The hand-written version: plain vectors, two passes per tensor.
    std::vector<std::vector<double>> p(ts.size()), m(ts.size()), v(ts.size());
    for (size_t t = 0; t < ts.size(); ++t) {
        p[t] = ts[t].p;
        m[t].assign(p[t].size(), 0);
        v[t].assign(p[t].size(), 0);
    }
    for (int64_t step = 1; step <= 5; ++step) {
        for (HostTensor& t : ts)
            for (double& g : t.g) g = uniform(rng, -1, 1);
        interp.step(step, ts);
        const auto& red = interp.last_reductions();
        REQUIRE(red.size() == 2);
        for (size_t t = 0; t < ts.size(); ++t) {
            CAPTURE(t);
            const size_t n = p[t].size();
            std::vector<double> u(n);
            double pp = 0, uu = 0;
            for (size_t i = 0; i < n; ++i) {
                double g = ts[t].g[i];
                m[t][i] = m[t][i] + (1 - b1) * (g - m[t][i]);
                v[t][i] = v[t][i] + (1 - b2) * (g * g - v[t][i]);
                double mhat = m[t][i] / (1 - std::pow(b1, double(step)));
                double vhat = v[t][i] / (1 - std::pow(b2, double(step)));
                u[i] = mhat / (std::sqrt(vhat) + eps) + wd * p[t][i];
                pp += p[t][i] * p[t][i];
                uu += u[i] * u[i];
            }
            double trust = std::sqrt(pp) / std::sqrt(uu);
            for (size_t i = 0; i < n; ++i) p[t][i] -= lr * trust * u[i];

            CHECK(close(red[0][t], pp));
            CHECK(close(red[1][t], uu));
            for (size_t i = 0; i < n; ++i) {
                CHECK(close(ts[t].p[i], p[t][i]));
                CHECK(close(ts[t].states[0][i], m[t][i]));
                CHECK(close(ts[t].states[1][i], v[t][i]));
            }
        }
    }
}

TEST_CASE("interpreter: stored values are rounded to the storage signature") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    Program prog = load_example("adamw");
    StorageSignature sig;
    sig.param = DType::BF16;
    sig.states["m"] = StateStorage{StateFormat::BF16};  // v stays fp32
    const std::vector<double> hypers = hyper_values(prog, {{"lr", 1e-2}});
    Interpreter rounded(prog, hypers, sig);
    Interpreter exact(prog, hypers);

    std::vector<HostTensor> ts;
    for (size_t n : {7, 300}) ts.push_back(random_tensor(rng, n));
    for (HostTensor& t : ts) {
        for (double& x : t.p) x = round_to(DType::BF16, x);  // a bf16 parameter starts as bf16
        rounded.init_states(t);
    }
    size_t p_changed_by_rounding = 0, m_changed_by_rounding = 0;
    for (int64_t step = 1; step <= 5; ++step) {
        for (HostTensor& t : ts)
            for (double& g : t.g) g = uniform(rng, -1, 1);
        // The float64 result of this step from the same (already rounded) inputs.
        std::vector<HostTensor> ref = ts;
        exact.step(step, ref);
        rounded.step(step, ts);
        for (size_t t = 0; t < ts.size(); ++t) {
            for (size_t i = 0; i < ts[t].p.size(); ++i) {
                CHECK(ts[t].p[i] == round_to(DType::BF16, ref[t].p[i]));
                CHECK(ts[t].states[0][i] == round_to(DType::BF16, ref[t].states[0][i]));
                CHECK(ts[t].states[1][i] == round_to(DType::F32, ref[t].states[1][i]));
                p_changed_by_rounding += ts[t].p[i] != ref[t].p[i];
                m_changed_by_rounding += ts[t].states[0][i] != ref[t].states[0][i];
            }
        }
    }
    // Random doubles are almost never bf16 values: the rounding must have happened.
    CHECK(p_changed_by_rounding > 0);
    CHECK(m_changed_by_rounding > 0);
}

TEST_CASE("interpreter: set_hyper changes the results") {
    Program prog = load_example("adamw");
    std::mt19937_64 rng(test_seed());
    HostTensor t0 = random_tensor(rng, 50);
    auto run = [&](Interpreter& interp) {
        std::vector<HostTensor> ts = {t0};
        interp.init_states(ts[0]);
        for (int64_t step = 1; step <= 3; ++step) interp.step(step, ts);
        return ts[0];
    };
    Interpreter defaults(prog, hyper_values(prog, {}));
    Interpreter changed(prog, hyper_values(prog, {}));
    changed.set_hyper("lr", 0.1);
    changed.set_hyper("weight_decay", 0);
    Interpreter constructed(prog, hyper_values(prog, {{"lr", 0.1}, {"weight_decay", 0}}));
    HostTensor a = run(defaults), b = run(changed), c = run(constructed);
    CHECK(a.p != b.p);
    CHECK(b.p == c.p);  // set_hyper is the same as constructing with the value
    CHECK(b.states == c.states);
    CHECK(a.states == b.states);  // lr and weight_decay do not touch m and v

    // Changing a hyper-parameter between steps takes effect at the next step.
    std::vector<HostTensor> ts = {t0};
    Interpreter interp(prog, hyper_values(prog, {}));
    interp.init_states(ts[0]);
    interp.step(1, ts);
    std::vector<HostTensor> before = ts;
    interp.set_hyper("lr", 0);
    interp.set_hyper("weight_decay", 0);
    interp.step(2, ts);
    CHECK(ts[0].p == before[0].p);  // lr = 0: p stands still
    CHECK(ts[0].states != before[0].states);  // the moments still move

    CHECK_THROWS_AS(interp.set_hyper("learning_rate", 1), std::invalid_argument);
}

TEST_CASE("interpreter: hyper_values applies overrides and rejects unknown names") {
    Program prog = load_example("adamw");
    CHECK(hyper_values(prog, {}) == std::vector<double>{1e-3, 0.9, 0.999, 1e-8, 1e-2});
    CHECK(hyper_values(prog, {{"beta2", 0.95}, {"lr", 3e-4}}) == std::vector<double>{3e-4, 0.9, 0.95, 1e-8, 1e-2});

    std::string msg = thrown_message([&] { hyper_values(prog, {{"lr", 1e-3}, {"momentum", 0.9}}); });
    CHECK(msg.find("'adamw'") != std::string::npos);
    CHECK(msg.find("'momentum'") != std::string::npos);
    CHECK(msg.find("lr, beta1, beta2, eps, weight_decay") != std::string::npos);

    // A program without hyper-parameters says so.
    Program bare = parse_and_verify("optimizer bare\n update\n p = p - g\n", "bare");
    msg = thrown_message([&] { hyper_values(bare, {{"lr", 1}}); });
    CHECK(msg.find("'bare'") != std::string::npos);
    CHECK(msg.find("none") != std::string::npos);

    // set_hyper gives the same message.
    Interpreter interp(prog, hyper_values(prog, {}));
    msg = thrown_message([&] { interp.set_hyper("momentum", 0.9); });
    CHECK(msg.find("'momentum'") != std::string::npos);
    CHECK(msg.find("lr, beta1, beta2, eps, weight_decay") != std::string::npos);
}

TEST_CASE("interpreter: misuse is rejected") {
    Program prog = load_example("adamw");
    CHECK_THROWS_AS(Interpreter(prog, {1e-3, 0.9}), std::invalid_argument);  // too few hyper values
    Interpreter interp(prog, hyper_values(prog, {}));
    std::vector<HostTensor> ts(1);
    ts[0].p = {1, 2, 3};
    ts[0].g = {1, 2};
    interp.init_states(ts[0]);
    CHECK_THROWS_AS(interp.step(1, ts), std::invalid_argument);  // g shorter than p
    ts[0].g = {1, 2, 3};
    ts[0].states.clear();
    CHECK_THROWS_AS(interp.step(1, ts), std::invalid_argument);  // states not initialized
}
