// Pass tests: each pass's contract on small programs (exact text), and the pipeline's key
// property: the lowered program computes what the original computes, in float64.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ir/diagnostic.h"
#include "ir/interpreter.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/constant_fold.h"
#include "passes/cse.h"
#include "passes/dead_code.h"
#include "passes/fold_uniform_factors.h"
#include "passes/hoist_scalars.h"
#include "passes/pipeline.h"
#include "ir/library.h"
#include "passes/specialize.h"
#include "passes/gradient_policies.h"
#include "passes/unused_states.h"
#include "random_program.h"
#include "test_support.h"
#include "runtime/random.h"

using namespace optjit;

namespace {

Program load(const std::string& text) {
    ParseResult r = parse(text);
    INFO(text);
    if (!r.ok()) FAIL("parse: ", r.errors[0].message);
    std::vector<Diagnostic> errors = verify(r.program);
    if (!errors.empty()) FAIL("verify: ", format_diagnostics(errors, nullptr));
    return r.program;
}

// The pass's output must be exactly `expected` and still verify.
template <class PassFn>
void check_pass(PassFn pass, const std::string& in, const std::string& expected) {
    Program out = pass(load(in));
    CHECK(print(out) == expected);
    CHECK(verify(out).empty());
}

std::string slurp(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

bool same_value(double a, double b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    if (a == b) return true;
    return std::fabs(a - b) <= 1e-12 * std::max(std::fabs(a), std::fabs(b));
}

// Runs `original` (with `hypers` overriding its defaults) and `lowered` (with the overrides it
// still has hyper-parameters for) side by side for a few steps over two tensors of fresh random
// data, and checks that p and every state agree after each step.
void check_same_results(const Program& original, const Program& lowered, const std::map<std::string, double>& hypers,
                        uint64_t seed) {
    std::map<std::string, double> lowered_hypers;
    for (const auto& [name, v] : hypers)
        if (lowered.hyper_index(name) >= 0) lowered_hypers[name] = v;
    Interpreter a(original, hyper_values(original, hypers));
    Interpreter b(lowered, hyper_values(lowered, lowered_hypers));
    const size_t sizes[] = {7, 33};
    std::vector<HostTensor> ta(2), tb(2);
    for (size_t t = 0; t < 2; ++t) {
        ta[t].p.resize(sizes[t]);
        ta[t].g.resize(sizes[t]);
        for (size_t i = 0; i < sizes[t]; ++i) ta[t].p[i] = normal(seed, 1000 + t, i);
        a.init_states(ta[t]);
        tb[t] = ta[t];
    }
    for (int step = 1; step <= 3; ++step) {
        for (size_t t = 0; t < 2; ++t) {
            for (size_t i = 0; i < sizes[t]; ++i) ta[t].g[i] = normal(seed, uint64_t(step) * 2 + t, i);
            tb[t].g = ta[t].g;
        }
        a.step(step, ta);
        b.step(step, tb);
        for (size_t t = 0; t < 2; ++t)
            for (size_t i = 0; i < sizes[t]; ++i) {
                INFO("step ", step, " tensor ", t, " element ", i);
                if (!same_value(ta[t].p[i], tb[t].p[i])) FAIL_CHECK("p: ", ta[t].p[i], " != ", tb[t].p[i]);
                for (size_t s = 0; s < original.states.size(); ++s)
                    if (!same_value(ta[t].states[s][i], tb[t].states[s][i]))
                        FAIL_CHECK("state ", original.states[s].name, ": ", ta[t].states[s][i], " != ", tb[t].states[s][i]);
            }
    }
}

}  // namespace

TEST_CASE("passes: specialize") {
    const std::string in =
        "optimizer t\n"
        "  hyper lr = 0.1\n"
        "  hyper beta = 0.9\n"
        "  hyper wd = 0.01\n"
        "  state m = 0\n"
        "  update\n"
        "    m = beta * m + g\n"
        "    p = p * (1 - lr * wd) - lr * m * beta\n";
    check_pass([](Program p) { return specialize(std::move(p), {{"beta", 0.5}, {"wd", -0.0}}); }, in,
               "optimizer t\n"
               "  hyper lr = 0.1\n"
               "  state m = 0\n"
               "  update\n"
               "    m = 0.5 * m + g\n"
               "    p = p * (1 - lr * -0) - lr * m * 0.5\n");
    // Nothing to specialize: unchanged.
    CHECK(specialize(load(in), {}) == load(in));
    // Unknown names are refused, naming the hyper-parameters there are.
    try {
        specialize(load(in), {{"gamma", 1}});
        FAIL("no exception");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()) == "optimizer 't' has no hyper-parameter 'gamma' (its hyper-parameters: lr, beta, wd)");
    }
    // A state is not a hyper-parameter.
    CHECK_THROWS_AS(specialize(load(in), {{"m", 1}}), std::invalid_argument);
}

TEST_CASE("passes: constant-fold") {
    check_pass(constant_fold,
               "optimizer t\n"
               "  hyper lr = 0.1\n"
               "  update\n"
               "    a = 2 * 3\n"
               "    b = a + 1\n"
               "    c = select(b > 5, g, p)\n"
               "    d = select(lr, g, p)\n"
               "    e = g * 1 + 1 * g - g / 1 + g ^ 1\n"
               "    f = 1 / 0 + 0 / 0\n"
               "    z = -(2) - -(-0)\n"
               "    q = g * -1 + g * 1.5 + 0 * g + g ^ 2\n"
               "    w = sqrt(4) + lerp(1, 3, 0.5) + max(-0, 0) + sign(-3) + exp(0) + log(1) + rsqrt(4) + abs(-2)\n"
               "    p = 3\n"
               "    p = p * g + a + b + c + d + e + f + z + q + w\n",
               "optimizer t\n"
               "  hyper lr = 0.1\n"
               "  update\n"
               "    a = 6\n"
               "    b = 7\n"
               "    c = g\n"
               "    d = select(lr, g, p)\n"
               "    e = g + g - g + g\n"
               "    f = 1 / 0 + 0 / 0\n"
               "    z = -2\n"
               "    q = g * -1 + g * 1.5 + 0 * g + g ^ 2\n"
               "    w = 6.5\n"
               "    p = 3\n"
               "    p = 3 * g + 6 + 7 + c + d + e + f + -2 + q + 6.5\n");
    // A name reassigned to a non-number is no longer a constant.
    check_pass(constant_fold,
               "optimizer t\n"
               "  state m = 0\n"
               "  update\n"
               "    m = 2\n"
               "    m = m * g\n"
               "    p = p - m\n",
               "optimizer t\n"
               "  state m = 0\n"
               "  update\n"
               "    m = 2\n"
               "    m = 2 * g\n"
               "    p = p - m\n");
}

TEST_CASE("passes: hoist-scalars") {
    check_pass(hoist_scalars,
               "optimizer t\n"
               "  hyper lr = 0.1\n"
               "  hyper beta = 0.9\n"
               "  state m = 0\n"
               "  scalars\n"
               "    two = 2\n"
               "  update\n"
               "    bc = 1 - beta ^ step\n"
               "    m = lerp(m, g, 1 - beta)\n"
               "    n = tensor_sum(g * (lr * two))\n"
               "    s = n * (lr * 2)\n"
               "    p = p - lr * m / bc - s * p\n"
               "    p = lr * two\n",
               "optimizer t\n"
               "  hyper lr = 0.1\n"
               "  hyper beta = 0.9\n"
               "  state m = 0\n"
               "  scalars\n"
               "    two = 2\n"
               "    bc = 1 - beta ^ step\n"
               "    _s0 = 1 - beta\n"
               "    _s1 = lr * two\n"
               "    _s2 = lr * 2\n"
               "    _s3 = lr * two\n"
               "  update\n"
               "    m = lerp(m, g, _s0)\n"
               "    n = tensor_sum(g * _s1)\n"
               "    s = n * _s2\n"
               "    p = p - lr * m / bc - s * p\n"
               "    p = _s3\n");
    // A local that reads p (even p holding a per-launch value) stays per element.
    check_pass(hoist_scalars,
               "optimizer t\n"
               "  hyper lr = 0.1\n"
               "  update\n"
               "    p = lr\n"
               "    x = p * 2\n"
               "    p = x * lr\n",
               "optimizer t\n"
               "  hyper lr = 0.1\n"
               "  update\n"
               "    p = lr\n"
               "    x = p * 2\n"
               "    p = x * lr\n");
}

TEST_CASE("passes: cse") {
    check_pass(eliminate_common_subexpressions,
               "optimizer t\n"
               "  state m = 0\n"
               "  update\n"
               "    x = m * 2\n"
               "    m = m * 0.9 + g * g\n"
               "    y = m * 2\n"
               "    a = sqrt(g * g + 1)\n"
               "    p = p - (g * g + 1) / m - sqrt(g * g + 1) + x * y\n",
               "optimizer t\n"
               "  state m = 0\n"
               "  update\n"
               "    x = m * 2\n"
               "    _c0 = g * g\n"
               "    m = m * 0.9 + _c0\n"
               "    y = m * 2\n"
               "    _c1 = _c0 + 1\n"
               "    _c2 = sqrt(_c1)\n"
               "    a = _c2\n"
               "    p = p - _c1 / m - _c2 + x * y\n");
    // Existing names of the form _cN are not reused.
    check_pass(eliminate_common_subexpressions,
               "optimizer t\n"
               "  update\n"
               "    _c0 = g\n"
               "    p = p - abs(_c0) * abs(_c0)\n",
               "optimizer t\n"
               "  update\n"
               "    _c0 = g\n"
               "    _c1 = abs(_c0)\n"
               "    p = p - _c1 * _c1\n");
}

TEST_CASE("passes: dead-code") {
    check_pass(eliminate_dead_code,
               "optimizer t\n"
               "  hyper unused = 1\n"
               "  state m = 0\n"
               "  scalars\n"
               "    unused_s = step * 2\n"
               "    used_s = step + 1\n"
               "  update\n"
               "    t = g * 2\n"
               "    dead = g * 3\n"
               "    dead2 = dead + tensor_sum(g)\n"
               "    m = g\n"
               "    m = t * used_s\n"
               "    p = p + 1\n"
               "    p = p * m\n"
               "    after = p\n"
               "    m = m + 1\n",
               "optimizer t\n"
               "  hyper unused = 1\n"
               "  state m = 0\n"
               "  scalars\n"
               "    used_s = step + 1\n"
               "  update\n"
               "    t = g * 2\n"
               "    m = t * used_s\n"
               "    p = p + 1\n"
               "    p = p * m\n"
               "    m = m + 1\n");
    // p's final value is kept even when it reads nothing.
    check_pass(eliminate_dead_code, "optimizer t\n  update\n    p = g\n    p = 2\n", "optimizer t\n  update\n    p = 2\n");
}

TEST_CASE("passes: fold-uniform-factors regroups products only for fast math") {
    const std::string in =
        "optimizer t\n"
        "  hyper lr = 0.5\n"
        "  state m = 0\n"
        "  update\n"
        "    half = lr / 2\n"
        "    m = m / (1 - lr ^ step)\n"
        "    p = p - lr * (m * half) / sqrt(m * m + 1)\n"
        "    p = p * tensor_sum(g) * lr\n";
    auto fast = [](Program p) { return fold_uniform_factors(std::move(p), true); };
    check_pass(fast, in,
               "optimizer t\n"
               "  hyper lr = 0.5\n"
               "  state m = 0\n"
               "  update\n"
               "    half = lr / 2\n"
               "    m = m * (1 / (1 - lr ^ step))\n"
               "    p = p - m * (lr * half) / sqrt(m * m + 1)\n"
               "    p = p * tensor_sum(g) * lr\n");
    check_pass([](Program p) { return fold_uniform_factors(std::move(p), false); }, in, print(load(in)));
}

TEST_CASE("passes: the pipeline in order, with an observer") {
    Program in = load(slurp(std::filesystem::path(OPTJIT_SOURCE_DIR) / "examples" / "adamw.opt"));
    std::vector<std::string> seen;
    Program out = run_pipeline(in, {{{"weight_decay", 0.0}}}, [&](const Pass& pass, const Program& p) {
        seen.emplace_back(pass.name);
        CHECK(verify(p).empty());
    });
    CHECK(seen == std::vector<std::string>{"specialize", "constant-fold", "fold-uniform-factors", "hoist-scalars", "cse", "dead-code"});
    CHECK(out.hyper_index("weight_decay") < 0);
    for (const Pass& p : pipeline_passes()) CHECK(find_pass(p.name) == &p);
    CHECK(find_pass("nope") == nullptr);
    CHECK_THROWS_AS(run_pipeline(in, {{{"nope", 1.0}}}), std::invalid_argument);
}

TEST_CASE("passes: the pipeline keeps the results of every example") {
    uint64_t seed = testing::fresh_seed();
    INFO("seed: ", seed);
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(OPTJIT_SOURCE_DIR) / "examples")) {
        if (e.path().extension() != ".opt") continue;
        ++n;
        INFO("example: ", e.path().string());
        Program original = load(slurp(e.path()));
        Program lowered = run_pipeline(original, {});
        check_same_results(original, lowered, {}, seed);
        // Specialize every other hyper-parameter to a value that is not its default.
        PassOptions options;
        std::map<std::string, double> hypers;
        for (size_t i = 0; i < original.hypers.size(); ++i) {
            double v = original.hypers[i].value * 0.5 + 0.001;
            hypers[original.hypers[i].name] = v;
            if (i % 2 == 0) options.specialize[original.hypers[i].name] = v;
        }
        check_same_results(original, run_pipeline(original, options), hypers, seed);
        // Fast math's regrouped products: the same results to float64 rounding.
        options.fast_math = true;
        check_same_results(original, run_pipeline(original, options), hypers, seed);
    }
    CHECK(n > 0);
}

TEST_CASE("passes: the pipeline keeps the results of random programs") {
    uint64_t seed = testing::fresh_seed();
    INFO("seed: ", seed);
    testing::ProgramGenerator gen(seed, {.tame = true, .max_depth = 6});
    for (int i = 0; i < 1500; ++i) {
        Program original = gen.program();
        INFO("program ", i, ":\n", print(original));
        REQUIRE(verify(original).empty());
        PassOptions options;
        std::map<std::string, double> hypers;
        for (const HyperDecl& h : original.hypers) {
            double v = gen.number();
            if (gen.chance(0.5)) hypers[h.name] = v;
            if (gen.chance(0.4)) options.specialize[h.name] = hypers.count(h.name) ? v : h.value;
        }
        Program lowered;
        try {
            lowered = run_pipeline(original, options);
        } catch (const std::exception& e) {
            FAIL("pipeline failed: ", std::string(e.what()));
        }
        INFO("lowered:\n", print(lowered));
        // The lowered program is itself a fixed point of printing.
        CHECK(parse(print(lowered)).program == lowered);
        check_same_results(original, lowered, hypers, seed + uint64_t(i));
    }
}

TEST_CASE("passes: unused states go, with the hyper-parameters that decide it") {
    using Groups = std::vector<std::map<std::string, double>>;
    // A state nothing reads goes without fixing anything; one written before it is read becomes
    // a temporary.
    {
        Program in = load(
            "optimizer t\n  hyper lr = 0.1\n  state trace = 0\n  state last = 0\n  state m = 0\n  update\n"
            "    trace = trace + g\n    last = g * 2\n    m = 0.9 * m + last\n    p = p - lr * m\n");
        UnusedStates out = drop_unused_states(in, {{}});
        CHECK(out.fixed.empty());
        CHECK(out.dropped == std::vector<std::string>{"trace", "last"});
        CHECK(print(out.program) ==
              "optimizer t\n  hyper lr = 0.1\n  state m = 0\n  update\n    last = g * 2\n    m = 0.9 * m + last\n    p = p - lr * m\n");
        CHECK(verify(out.program).empty());
    }
    // SGD: momentum 0 selects the gradient, so the buffer goes and momentum is compiled in.
    const Program sgd = library("sgd");
    {
        UnusedStates out = drop_unused_states(sgd, {{{"lr", 0.1}}});
        CHECK(out.fixed == std::map<std::string, double>{{"momentum", 0}});
        CHECK(out.dropped == std::vector<std::string>{"buf"});
        CHECK(out.program.states.empty());
        CHECK(out.program.hyper_index("momentum") < 0);
        CHECK(out.program.hyper_index("dampening") >= 0);  // still declared: the kernel's interface
        CHECK(verify(out.program).empty());
    }
    // Groups that disagree on momentum keep it run-time, and the buffer with it; so does a
    // momentum that uses the buffer.
    for (const Groups& groups : {Groups{{{"momentum", 0.0}}, {{"momentum", 0.9}}}, Groups{{{"momentum", 0.9}}}}) {
        UnusedStates out = drop_unused_states(sgd, groups);
        CHECK(out.fixed.empty());
        CHECK(out.dropped.empty());
        CHECK(out.program == sgd);
    }
    // RMSprop: torch keeps square_avg alone unless centered (grad_avg) or with momentum (buf).
    const Program rmsprop = library("rmsprop");
    auto dropped = [&](std::map<std::string, double> values) { return drop_unused_states(rmsprop, {values}).dropped; };
    CHECK(dropped({}) == std::vector<std::string>{"grad_avg", "buf"});
    CHECK(drop_unused_states(rmsprop, {{}}).fixed == std::map<std::string, double>{{"momentum", 0}, {"centered", 0}});
    CHECK(dropped({{"centered", 1}}) == std::vector<std::string>{"buf"});
    CHECK(dropped({{"momentum", 0.9}}) == std::vector<std::string>{"grad_avg"});
    CHECK(dropped({{"momentum", 0.9}, {"centered", 1}}).empty());
    // `0 * b` is not folded (NaN and infinities): a state read through it stays, and nothing is
    // fixed for it.
    {
        Program in = load("optimizer t\n  hyper mu = 0\n  state b = 0\n  update\n    b = mu * b + g\n    p = p - b\n");
        UnusedStates out = drop_unused_states(in, {{}});
        CHECK(out.dropped.empty());
        CHECK(out.fixed.empty());
    }
    // An unneeded state the step still assigns twice cannot be a temporary: it stays, stored as
    // written; one whose second value nothing reads is a temporary.
    {
        Program in = load("optimizer t\n  state s = 0\n  state u = 0\n  update\n    s = g\n    p = p - s\n    s = s * 2\n    p = p + s\n    u = u + g\n");
        UnusedStates out = drop_unused_states(in, {{}});
        CHECK(out.dropped == std::vector<std::string>{"u"});
        CHECK(print(out.program) == "optimizer t\n  state s = 0\n  update\n    s = g\n    p = p - s\n    s = s * 2\n    p = p + s\n");
        in = load("optimizer t\n  state s = 0\n  update\n    s = g\n    p = p - s\n    s = s * 2\n");
        out = drop_unused_states(in, {{}});
        CHECK(out.dropped == std::vector<std::string>{"s"});
        CHECK(print(out.program) == "optimizer t\n  update\n    s = g\n    p = p - s\n");
    }
    // Keeping a state assigned twice can keep another one assigned twice (a fixed point): here
    // both stay, where dropping y would bind the temporary y twice.
    {
        Program in = load("optimizer t\n  state x = 0\n  state y = 0\n  update\n    y = g\n    x = y\n    x = x * 2\n    p = p - x\n"
                          "    y = y * 3\n    x = x + y\n");
        UnusedStates out = drop_unused_states(in, {{}});
        CHECK(out.dropped.empty());
        CHECK(out.program == in);
    }
    // A hyper-parameter is compiled in only where a state goes with it: here x stays (assigned
    // twice) whatever m is.
    {
        Program in = load("optimizer t\n  hyper m = 0\n  state x = 0\n  update\n    x = select(m > 0, x, g)\n    p = p - x\n"
                          "    x = x * 2\n    p = p - x\n");
        UnusedStates out = drop_unused_states(in, {{}});
        CHECK(out.fixed.empty());
        CHECK(out.dropped.empty());
    }
    // A group that leaves a hyper-parameter at its default agrees with one that sets the default;
    // an infinite value stays run-time (a program's numbers are finite).
    CHECK(drop_unused_states(sgd, {{}, {{"momentum", 0.0}}}).fixed == std::map<std::string, double>{{"momentum", 0}});
    {
        Program in = load("optimizer t\n  hyper h = 1\n  state b = 0\n  update\n    b = 0.9 * b + g\n    p = p - select(h > 1e30, g, b) / h\n");
        CHECK(drop_unused_states(in, {{{"h", 2e30}}}).dropped == std::vector<std::string>{"b"});
        UnusedStates out = drop_unused_states(in, {{{"h", std::numeric_limits<double>::infinity()}}});
        CHECK(out.dropped.empty());
        CHECK(out.fixed.empty());
    }
    CHECK_THROWS_WITH_AS(drop_unused_states(sgd, {{{"momentun", 0.9}}}), doctest::Contains("momentun"), std::invalid_argument);
    CHECK_THROWS_AS(drop_unused_states(sgd, {}), std::invalid_argument);
    for (const char* name : {"adamw", "lamb", "ademamix", "adan"}) CHECK(drop_unused_states(library(name), {{}}).program == library(name));
}

TEST_CASE("passes: dropping unused states leaves every parameter update as it was (float64)") {
    uint64_t seed = optjit_test::test_seed();
    INFO("seed ", seed);
    const GradientPolicies clipped_and_skipping{false, 1.0, true}, maximizing{true, 0, false};
    for (const char* name : {"sgd", "rmsprop", "lars"})
        for (GradientPolicies policies : {GradientPolicies{}, clipped_and_skipping, maximizing}) {
            INFO(name, " maximize ", policies.maximize, " clip ", policies.max_grad_norm, " skip ", policies.skip_nonfinite);
            const Program full = apply_gradient_policies(library(name), policies);
            std::map<std::string, double> values = {{"lr", 0.01}};
            if (std::string(name) == "rmsprop") values["alpha"] = 0.9;
            UnusedStates trimmed = drop_unused_states(full, {values});
            CHECK(!trimmed.dropped.empty());
            std::map<std::string, double> run_time = values;
            for (const auto& [h, v] : trimmed.fixed) run_time.erase(h);
            Interpreter a(full, hyper_values(full, values)), b(trimmed.program, hyper_values(trimmed.program, run_time));
            std::vector<HostTensor> ta(1), tb(1);
            for (uint64_t i = 0; i < 257; ++i) ta[0].p.push_back(normal(seed, 0, i));
            ta[0].g.resize(ta[0].p.size());
            tb[0] = ta[0];
            a.init_states(ta[0]);
            b.init_states(tb[0]);
            for (int64_t step = 1; step <= 4; ++step) {
                for (size_t i = 0; i < ta[0].g.size(); ++i) ta[0].g[i] = normal(seed, uint64_t(step), i);
                if (policies.skip_nonfinite && step == 3) ta[0].g[17] = std::numeric_limits<double>::quiet_NaN();  // a skipped step
                tb[0].g = ta[0].g;
                a.step(step, ta);
                b.step(step, tb);
                CHECK(ta[0].p == tb[0].p);  // bit for bit
            }
        }
}
