// Every example program against its optimizer's published update, written out by hand below in
// plain double loops (never through the IR). Each run draws fresh random tensors, gradients and
// hyper-parameters; the seed is in every failure message, and OPTJIT_TEST_SEED=N replays it.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ir/interpreter.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "test_support.h"

using namespace optjit;
using namespace optjit_test;

namespace {

using Hypers = std::map<std::string, double>;




double uniform(std::mt19937_64& rng, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
// Log-uniform: for scales like lr and eps that span decades.
double log_uniform(std::mt19937_64& rng, double lo, double hi) { return std::exp(uniform(rng, std::log(lo), std::log(hi))); }

std::string describe(const Hypers& h) {
    std::ostringstream s;
    s.precision(17);
    for (const auto& [name, v] : h) s << name << "=" << v << " ";
    return h.empty() ? "(defaults)" : s.str();
}

// The published update of one element. `s` holds the element's states in the order of
// `states` (by name, so the program may declare them in any order).
struct Reference {
    std::vector<std::string> states;
    std::vector<double> init;
    std::function<void(int64_t step, double& p, double g, double* s)> step;
};

struct Outcome {
    size_t compared = 0;
    size_t mismatches = 0;
    std::string first;  // the first mismatch, for the failure message
};

// Runs `steps` steps of `program` (float64, no storage rounding) and of `ref` over a few tensors
// of random sizes with random p and fresh random gradients each step, comparing every element
// of p and of every state after every step.
Outcome run_against_reference(const Program& program, const Hypers& hypers, const Reference& ref, uint64_t seed, int steps = 6) {
    std::mt19937_64 rng(seed);
    REQUIRE(ref.states.size() == program.states.size());
    REQUIRE(ref.init.size() == ref.states.size());
    std::vector<int> slot;  // program state index of each reference state
    for (const std::string& name : ref.states) {
        slot.push_back(program.state_index(name));
        REQUIRE_MESSAGE(slot.back() >= 0, "program has no state ", name);
    }

    Interpreter interp(program, hyper_values(program, hypers));
    const int ntensors = 3;
    std::vector<HostTensor> got(ntensors);
    std::vector<std::vector<double>> want_p(ntensors);
    std::vector<std::vector<std::vector<double>>> want_s(ntensors);  // [tensor][reference state][element]
    std::vector<double> grad_scale(ntensors);
    for (int t = 0; t < ntensors; ++t) {
        size_t n = std::uniform_int_distribution<size_t>(1, 300)(rng);
        got[t].p.resize(n);
        for (double& x : got[t].p) x = uniform(rng, -1, 1);
        got[t].g.resize(n);
        interp.init_states(got[t]);
        want_p[t] = got[t].p;
        for (double init : ref.init) want_s[t].emplace_back(n, init);
        grad_scale[t] = log_uniform(rng, 1e-3, 10);  // gradients of different magnitudes per tensor
    }

    Outcome out;
    // Relative tolerance, with a tiny floor relative to the largest value of the array for an
    // element that cancels to nearly zero (p - lr * u when p is close to lr * u).
    auto compare = [&](const std::vector<double>& g, const std::vector<double>& w, const std::string& what, int64_t step, int t) {
        double scale = 0;
        for (double x : w) scale = std::max(scale, std::fabs(x));
        for (size_t i = 0; i < w.size(); ++i) {
            ++out.compared;
            double tol = 1e-12 * std::max(std::fabs(g[i]), std::fabs(w[i])) + 1e-15 * scale;
            if (!(std::fabs(g[i] - w[i]) <= tol)) {  // NaN counts as a mismatch
                if (out.mismatches++ == 0) {
                    std::ostringstream m;
                    m.precision(17);
                    m << what << "[" << i << "] of tensor " << t << " after step " << step << ": program " << g[i]
                      << ", reference " << w[i];
                    out.first = m.str();
                }
            }
        }
    };

    std::vector<double> s(ref.states.size());
    for (int64_t step = 1; step <= steps; ++step) {
        for (int t = 0; t < ntensors; ++t)
            for (double& x : got[t].g) x = grad_scale[t] * uniform(rng, -1, 1);
        interp.step(step, got);
        for (int t = 0; t < ntensors; ++t) {
            for (size_t i = 0; i < want_p[t].size(); ++i) {
                for (size_t k = 0; k < s.size(); ++k) s[k] = want_s[t][k][i];
                ref.step(step, want_p[t][i], got[t].g[i], s.data());
                for (size_t k = 0; k < s.size(); ++k) want_s[t][k][i] = s[k];
            }
            compare(got[t].p, want_p[t], "p", step, t);
            for (size_t k = 0; k < s.size(); ++k) compare(got[t].states[slot[k]], want_s[t][k], ref.states[k], step, t);
        }
    }
    return out;
}

void check_against_reference(const Program& program, const Hypers& hypers, const Reference& ref, uint64_t seed, int steps = 6) {
    INFO("hyper-parameters: ", describe(hypers));
    Outcome out = run_against_reference(program, hypers, ref, seed, steps);
    INFO("first mismatch: ", out.first);
    CHECK(out.compared > 0);
    CHECK(out.mismatches == 0);
}

// ---- The published updates ----------------------------------------------------------------

// torch.optim.Adam (single-tensor path): L2 weight decay into the gradient, lerp_ for the first
// moment, eps after sqrt(v) / sqrt(bias_correction2), addcdiv_ with -lr / bias_correction1.
Reference adam_reference(double lr, double beta1, double beta2, double eps, double wd) {
    return {{"m", "v"}, {0, 0}, [=](int64_t step, double& p, double g, double* s) {
                double& m = s[0];
                double& v = s[1];
                double gw = g + wd * p;
                m = m + (1 - beta1) * (gw - m);
                v = beta2 * v + (1 - beta2) * gw * gw;
                double bc1 = 1 - std::pow(beta1, double(step));
                double bc2 = 1 - std::pow(beta2, double(step));
                double denom = std::sqrt(v) / std::sqrt(bc2) + eps;
                p = p - lr / bc1 * (m / denom);
            }};
}

// torch.optim.AdamW: decoupled decay p *= 1 - lr * wd first, then Adam without L2.
Reference adamw_reference(double lr, double beta1, double beta2, double eps, double wd) {
    return {{"m", "v"}, {0, 0}, [=](int64_t step, double& p, double g, double* s) {
                double& m = s[0];
                double& v = s[1];
                p = p * (1 - lr * wd);
                m = m + (1 - beta1) * (g - m);
                v = beta2 * v + (1 - beta2) * g * g;
                double bc1 = 1 - std::pow(beta1, double(step));
                double bc2 = 1 - std::pow(beta2, double(step));
                double denom = std::sqrt(v) / std::sqrt(bc2) + eps;
                p = p - lr / bc1 * (m / denom);
            }};
}

// sail-sg/Adan's _single_tensor_adan: neg_pre_grad is -g on the first step (so the difference
// is 0), then -(the last gradient); `prev_g` keeps the last gradient itself.
Reference adan_reference(double lr, double b1, double b2, double b3, double eps, double wd, bool no_prox) {
    return {{"m", "diff", "n", "prev_g"}, {0, 0, 0, 0}, [=](int64_t step, double& p, double g, double* s) {
                double &m = s[0], &diff = s[1], &n = s[2], &prev = s[3];
                double neg_grad_or_diff = (step == 1 ? -g : -prev) + g;
                m = m * b1 + (1 - b1) * g;
                diff = diff * b2 + (1 - b2) * neg_grad_or_diff;
                neg_grad_or_diff = neg_grad_or_diff * b2 + g;
                n = n * b3 + (1 - b3) * neg_grad_or_diff * neg_grad_or_diff;
                double denom = std::sqrt(n) / std::sqrt(1 - std::pow(b3, double(step))) + eps;
                double step_size = lr / (1 - std::pow(b1, double(step)));
                double step_size_diff = lr * b2 / (1 - std::pow(b2, double(step)));
                if (no_prox) p *= 1 - lr * wd;
                p -= step_size * m / denom;
                p -= step_size_diff * diff / denom;
                if (!no_prox) p /= 1 + lr * wd;
                prev = g;
            }};
}

// torch.optim.SGD: the momentum buffer is a copy of the (decayed) gradient on the first step,
// then buf = momentum * buf + (1 - dampening) * g; without momentum torch keeps no buffer and
// steps by g (the reference still tracks the buffer so the state can be compared).
Reference sgd_reference(double lr, double momentum, double dampening, double wd, bool nesterov) {
    return {{"buf"}, {0}, [=](int64_t step, double& p, double g, double* s) {
                double& buf = s[0];
                double d = g + wd * p;
                buf = step == 1 ? d : momentum * buf + (1 - dampening) * d;
                if (momentum != 0) d = nesterov ? d + momentum * buf : buf;
                p = p - lr * d;
            }};
}

// Lion as lucidrains' lion-pytorch: decoupled decay, sign of the beta1 interpolation, then the
// momentum with beta2.
Reference lion_reference(double lr, double beta1, double beta2, double wd) {
    return {{"m"}, {0}, [=](int64_t, double& p, double g, double* s) {
                double& m = s[0];
                p = p * (1 - lr * wd);
                double c = beta1 * m + (1 - beta1) * g;
                double sign = c > 0 ? 1.0 : c < 0 ? -1.0 : 0.0;
                p = p - lr * sign;
                m = beta2 * m + (1 - beta2) * g;
            }};
}

// The schedulers of github.com/apple/ml-ademamix; warmup == 0 stands for None.
double ademamix_alpha(int64_t step, double alpha_end, double warmup) {
    if (warmup > 0 && double(step) < warmup) {
        double a = double(step) / warmup;
        return (1 - a) * 0 + a * alpha_end;
    }
    return alpha_end;
}
double ademamix_beta3(int64_t step, double beta_end, double beta_start, double warmup) {
    auto f = [](double beta) { return std::log(0.5) / std::log(beta + 1e-8) - 1; };  // half-life
    // math.pow is C's pow. The volatile keeps clang from rewriting pow(0.5, x) as exp2(-x),
    // which rounds differently, and 1 ulp of beta3 is ~1e-11 of m2 when beta3 is near 1.
    auto f_inv = [](double t) {
        volatile double half = 0.5;
        return std::pow(half, 1 / (t + 1));
    };
    if (warmup > 0 && double(step) < warmup) {
        double a = double(step) / warmup;
        return f_inv((1 - a) * f(beta_start) + a * f(beta_end));
    }
    return beta_end;
}

// AdEMAMix as the official PyTorch code: m1 bias-corrected, m2 not, weight decay in the update.
Reference ademamix_reference(double lr, double beta1, double beta2, double beta3, double alpha, double eps, double wd,
                             double warmup) {
    return {{"m1", "m2", "nu"}, {0, 0, 0}, [=](int64_t step, double& p, double g, double* s) {
                double& m1 = s[0];
                double& m2 = s[1];
                double& nu = s[2];
                double bc1 = 1 - std::pow(beta1, double(step));
                double bc2 = 1 - std::pow(beta2, double(step));
                double a = ademamix_alpha(step, alpha, warmup);
                double b3 = ademamix_beta3(step, beta3, beta1, warmup);
                m1 = beta1 * m1 + (1 - beta1) * g;
                m2 = b3 * m2 + (1 - b3) * g;
                nu = beta2 * nu + (1 - beta2) * g * g;
                double denom = std::sqrt(nu) / std::sqrt(bc2) + eps;
                double update = (m1 / bc1 + a * m2) / denom;
                update = update + wd * p;
                p = p - lr * update;
            }};
}

// torch.optim.RMSprop: grad_avg exists (and is read) only when centered; the momentum buffer
// only when momentum > 0. The reference tracks both always so the states can be compared.
Reference rmsprop_reference(double lr, double alpha, double eps, double wd, double momentum, bool centered) {
    return {{"square_avg", "grad_avg", "buf"}, {0, 0, 0}, [=](int64_t, double& p, double g, double* s) {
                double& square_avg = s[0];
                double& grad_avg = s[1];
                double& buf = s[2];
                double d = g + wd * p;
                square_avg = alpha * square_avg + (1 - alpha) * d * d;
                grad_avg = grad_avg + (1 - alpha) * (d - grad_avg);
                double avg = centered ? std::sqrt(square_avg - grad_avg * grad_avg) : std::sqrt(square_avg);
                avg += eps;
                buf = momentum * buf + d / avg;
                if (momentum > 0) p = p - lr * buf;
                else p = p - lr * (d / avg);
            }};
}

// torch.optim.Adagrad: clr = lr / (1 + (step - 1) * lr_decay); sum starts at
// initial_accumulator_value.
Reference adagrad_reference(double lr, double lr_decay, double wd, double init, double eps) {
    return {{"sum"}, {init}, [=](int64_t step, double& p, double g, double* s) {
                double& sum = s[0];
                double d = g + wd * p;
                double clr = lr / (1 + double(step - 1) * lr_decay);
                sum = sum + d * d;
                double std_ = std::sqrt(sum) + eps;
                p = p - clr * (d / std_);
            }};
}

}  // namespace

// ---- Tests --------------------------------------------------------------------------------

// Most examples have an elementwise reference here (random hyper-parameters, the interpreter);
// every example is a library optimizer with the whole-tensor definitions of
// tests/library_checks.h (interpreter, host and GPU, options and policies), which are the only
// ones for those that reduce over tensors and for the AMSGrad variants.
TEST_CASE("examples: every example program has a reference test here or in library_checks.h") {
    const std::set<std::string> here = {"adagrad", "adam", "adamw", "ademamix", "adan", "lion", "rmsprop", "sgd"};
    const std::set<std::string> library_only = {"adam_amsgrad", "adamw_amsgrad", "lamb", "lars"};
    std::set<std::string> found;
    for (const auto& entry : std::filesystem::directory_iterator(examples_dir()))
        if (entry.path().extension() == ".opt") found.insert(entry.path().stem().string());
    std::set<std::string> expected = here;
    expected.insert(library_only.begin(), library_only.end());
    CHECK(found == expected);
}

TEST_CASE("examples: each begins with a comment naming its source and round-trips through the printer") {
    for (const auto& entry : std::filesystem::directory_iterator(examples_dir())) {
        if (entry.path().extension() != ".opt") continue;
        const std::string name = entry.path().stem().string();
        CAPTURE(name);
        std::ifstream in(entry.path());
        std::string first_line;
        std::getline(in, first_line);
        CHECK(first_line.rfind("# ", 0) == 0);
        Program prog = load_example(name);
        CHECK(prog.name == name);
        ParseResult again = parse(print(prog));
        REQUIRE(again.ok());
        CHECK(again.program == prog);
    }
}

TEST_CASE("examples: adam.opt is torch.optim.Adam") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    Program prog = load_example("adam");
    SUBCASE("torch defaults") { check_against_reference(prog, {}, adam_reference(1e-3, 0.9, 0.999, 1e-8, 0), seed + 1); }
    SUBCASE("random hyper-parameters") {
        double lr = log_uniform(rng, 1e-4, 1e-1), b1 = uniform(rng, 0.5, 0.99), b2 = uniform(rng, 0.9, 0.9999);
        double eps = log_uniform(rng, 1e-10, 1e-3), wd = uniform(rng, 0.01, 0.5);
        check_against_reference(prog, {{"lr", lr}, {"beta1", b1}, {"beta2", b2}, {"eps", eps}, {"weight_decay", wd}},
                                adam_reference(lr, b1, b2, eps, wd), seed + 1);
    }
}

TEST_CASE("examples: adamw.opt is torch.optim.AdamW") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    Program prog = load_example("adamw");
    SUBCASE("torch defaults") { check_against_reference(prog, {}, adamw_reference(1e-3, 0.9, 0.999, 1e-8, 1e-2), seed + 1); }
    SUBCASE("random hyper-parameters") {
        double lr = log_uniform(rng, 1e-4, 1e-1), b1 = uniform(rng, 0.5, 0.99), b2 = uniform(rng, 0.9, 0.9999);
        double eps = log_uniform(rng, 1e-10, 1e-3), wd = uniform(rng, 0.01, 0.5);
        check_against_reference(prog, {{"lr", lr}, {"beta1", b1}, {"beta2", b2}, {"eps", eps}, {"weight_decay", wd}},
                                adamw_reference(lr, b1, b2, eps, wd), seed + 1);
    }
}

TEST_CASE("examples: sgd.opt is torch.optim.SGD") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    Program prog = load_example("sgd");
    double lr = log_uniform(rng, 1e-3, 1e-1), mu = uniform(rng, 0.5, 0.99), damp = uniform(rng, 0.05, 0.5);
    double wd = uniform(rng, 0.01, 0.5);
    SUBCASE("torch defaults") { check_against_reference(prog, {}, sgd_reference(1e-3, 0, 0, 0, false), seed + 1); }
    SUBCASE("momentum with dampening, nesterov = 0") {
        check_against_reference(prog, {{"lr", lr}, {"momentum", mu}, {"dampening", damp}, {"weight_decay", wd}, {"nesterov", 0}},
                                sgd_reference(lr, mu, damp, wd, false), seed + 1);
    }
    SUBCASE("nesterov = 1 (torch requires dampening 0)") {
        check_against_reference(prog, {{"lr", lr}, {"momentum", mu}, {"weight_decay", wd}, {"nesterov", 1}},
                                sgd_reference(lr, mu, 0, wd, true), seed + 1);
    }
    SUBCASE("no momentum: dampening is ignored") {
        check_against_reference(prog, {{"lr", lr}, {"dampening", damp}, {"weight_decay", wd}}, sgd_reference(lr, 0, damp, wd, false),
                                seed + 1);
    }
}

TEST_CASE("examples: lion.opt is Lion (lucidrains/lion-pytorch)") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    Program prog = load_example("lion");
    SUBCASE("lion-pytorch defaults") { check_against_reference(prog, {}, lion_reference(1e-4, 0.9, 0.99, 0), seed + 1); }
    SUBCASE("random hyper-parameters") {
        double lr = log_uniform(rng, 1e-5, 1e-2), b1 = uniform(rng, 0.5, 0.99), b2 = uniform(rng, 0.9, 0.999);
        double wd = uniform(rng, 0.01, 2);
        check_against_reference(prog, {{"lr", lr}, {"beta1", b1}, {"beta2", b2}, {"weight_decay", wd}}, lion_reference(lr, b1, b2, wd),
                                seed + 1);
    }
}

TEST_CASE("examples: ademamix.opt is AdEMAMix (apple/ml-ademamix)") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    Program prog = load_example("ademamix");
    double lr = log_uniform(rng, 1e-4, 1e-1), b1 = uniform(rng, 0.5, 0.95), b2 = uniform(rng, 0.9, 0.9999);
    double b3 = uniform(rng, 0.99, 0.99999), alpha = uniform(rng, 1, 10), eps = log_uniform(rng, 1e-10, 1e-3);
    double wd = uniform(rng, 0.01, 0.5);
    Hypers h = {{"lr", lr}, {"beta1", b1}, {"beta2", b2}, {"beta3", b3}, {"alpha", alpha}, {"eps", eps}, {"weight_decay", wd}};
    SUBCASE("official defaults (no warmup)") {
        check_against_reference(prog, {}, ademamix_reference(1e-3, 0.9, 0.999, 0.9999, 2, 1e-8, 0, 0), seed + 1);
    }
    SUBCASE("random hyper-parameters, no warmup") {
        check_against_reference(prog, h, ademamix_reference(lr, b1, b2, b3, alpha, eps, wd, 0), seed + 1);
    }
    SUBCASE("warmup ending within the run") {
        // Steps 1..T-1 are warming up, the rest are not: both branches of each scheduler run.
        double T = double(std::uniform_int_distribution<int>(2, 6)(rng));
        h["T_alpha_beta3"] = T;
        check_against_reference(prog, h, ademamix_reference(lr, b1, b2, b3, alpha, eps, wd, T), seed + 1, 8);
    }
    SUBCASE("beta1 = 0: m1 is the gradient itself") {
        h["beta1"] = 0;
        h["T_alpha_beta3"] = 4;
        check_against_reference(prog, h, ademamix_reference(lr, 0, b2, b3, alpha, eps, wd, 4), seed + 1);
    }
}

TEST_CASE("examples: rmsprop.opt is torch.optim.RMSprop") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    Program prog = load_example("rmsprop");
    double lr = log_uniform(rng, 1e-4, 1e-1), alpha = uniform(rng, 0.8, 0.999), eps = log_uniform(rng, 1e-10, 1e-3);
    double wd = uniform(rng, 0.01, 0.5), mu = uniform(rng, 0.5, 0.99);
    SUBCASE("torch defaults") { check_against_reference(prog, {}, rmsprop_reference(1e-2, 0.99, 1e-8, 0, 0, false), seed + 1); }
    for (int centered = 0; centered <= 1; ++centered) {
        for (bool momentum : {false, true}) {
            double m = momentum ? mu : 0;
            SUBCASE(("centered = " + std::to_string(centered) + ", momentum " + (momentum ? "> 0" : "= 0")).c_str()) {
                check_against_reference(prog,
                                        {{"lr", lr}, {"alpha", alpha}, {"eps", eps}, {"weight_decay", wd}, {"momentum", m}, {"centered", centered}},
                                        rmsprop_reference(lr, alpha, eps, wd, m, centered == 1), seed + 1);
            }
        }
    }
}

TEST_CASE("examples: adagrad.opt is torch.optim.Adagrad") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    Program prog = load_example("adagrad");
    SUBCASE("torch defaults") { check_against_reference(prog, {}, adagrad_reference(1e-2, 0, 0, 0, 1e-10), seed + 1); }
    SUBCASE("random hyper-parameters and initial_accumulator_value") {
        double lr = log_uniform(rng, 1e-3, 1), decay = uniform(rng, 0.01, 1), wd = uniform(rng, 0.01, 0.5);
        double eps = log_uniform(rng, 1e-10, 1e-3), init = uniform(rng, 0.01, 1);
        // initial_accumulator_value is the state's initial value, a constant of the program.
        REQUIRE(prog.state_index("sum") >= 0);
        prog.states[size_t(prog.state_index("sum"))].init = init;
        INFO("initial_accumulator_value = ", init);
        check_against_reference(prog, {{"lr", lr}, {"lr_decay", decay}, {"weight_decay", wd}, {"eps", eps}},
                                adagrad_reference(lr, decay, wd, init, eps), seed + 1);
    }
}

TEST_CASE("examples: adan.opt is Adan (sail-sg/Adan)") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    std::mt19937_64 rng(seed);
    Program prog = load_example("adan");
    SUBCASE("official defaults") { check_against_reference(prog, {}, adan_reference(1e-3, 0.98, 0.92, 0.99, 1e-8, 0, false), seed + 1); }
    for (int no_prox = 0; no_prox <= 1; ++no_prox) {
        SUBCASE(("random hyper-parameters, no_prox = " + std::to_string(no_prox)).c_str()) {
            double lr = log_uniform(rng, 1e-4, 1e-1), b1 = uniform(rng, 0.5, 0.99), b2 = uniform(rng, 0.5, 0.99);
            double b3 = uniform(rng, 0.9, 0.999), eps = log_uniform(rng, 1e-10, 1e-3), wd = uniform(rng, 0.01, 0.5);
            check_against_reference(prog,
                                    {{"lr", lr}, {"beta1", b1}, {"beta2", b2}, {"beta3", b3}, {"eps", eps}, {"weight_decay", wd}, {"no_prox", no_prox}},
                                    adan_reference(lr, b1, b2, b3, eps, wd, no_prox == 1), seed + 1);
        }
    }
}

TEST_CASE("examples: the comparison detects a wrong hyper-parameter") {
    // If these did not mismatch, the tests above could not fail.
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED=", seed, " replays it)");
    Program prog = load_example("adam");
    Hypers h = {{"weight_decay", 0.1}};
    Outcome right = run_against_reference(prog, h, adam_reference(1e-3, 0.9, 0.999, 1e-8, 0.1), seed);
    CHECK(right.mismatches == 0);
    Outcome wrong_beta2 = run_against_reference(prog, h, adam_reference(1e-3, 0.9, 0.998, 1e-8, 0.1), seed);
    CHECK(wrong_beta2.mismatches > wrong_beta2.compared / 2);
    Outcome wrong_decay = run_against_reference(prog, {}, adam_reference(1e-3, 0.9, 0.999, 1e-8, 0.1), seed);
    CHECK(wrong_decay.mismatches > 0);
    // A relative error of 1e-9 in lr is far above the tolerance.
    Outcome tiny = run_against_reference(prog, h, adam_reference(1e-3 * (1 + 1e-9), 0.9, 0.999, 1e-8, 0.1), seed);
    CHECK(tiny.mismatches > 0);
}
