// A generator of random, verifier-clean optimizer programs for the printer and pass tests.
// Everything the text form has shows up: hyper-parameters, states, a scalars section, locals,
// reassigned p and states, every operation (reductions only where the verifier allows them),
// negative numbers, -0, tiny and huge doubles, and the occasional long chain.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ir/expr.h"
#include "ir/program.h"

namespace optjit::testing {

struct GenOptions {
    // Numbers of moderate size, so values mostly stay finite over a few steps; otherwise any
    // finite double, with a bias to the awkward ones.
    bool tame = false;
    int max_depth = 7;
};

class ProgramGenerator {
public:
    ProgramGenerator(uint64_t seed, GenOptions options) : rng_(seed), o_(options) {}

    Program program() {
        Program prog;
        used_ = {"p", "g", "step", "optimizer", "hyper", "state", "scalars", "update"};
        visible_.clear();
        prog.name = fresh_name();
        used_.erase(prog.name);  // the optimizer's name does not clash with values
        int nh = uniform(0, 4), ns = uniform(0, 3);
        for (int i = 0; i < nh; ++i) {
            std::string n = fresh_name();
            prog.hypers.push_back({n, number(), {}});
            launch_.push_back(n);
        }
        for (int i = 0; i < ns; ++i) prog.states.push_back({fresh_name(), number(), {}});
        // Scalars section: launch values only, no reductions.
        if (chance(0.4)) {
            int k = uniform(1, 3);
            for (int i = 0; i < k; ++i) {
                std::string n = fresh_name();
                prog.scalars.push_back({n, expr(uniform(1, o_.max_depth), Ctx{true, false}), {}});
                launch_.push_back(n);
            }
        }
        for (const std::string& n : launch_) visible_.push_back({n, false});
        visible_.push_back({"p", false});
        visible_.push_back({"g", false});
        visible_.push_back({"step", false});
        for (const StateDecl& s : prog.states) visible_.push_back({s.name, false});

        std::set<std::string> pending{"p"};
        for (const StateDecl& s : prog.states) pending.insert(s.name);
        int k = uniform(1, 8);
        for (int i = 0; i < k || !pending.empty(); ++i) {
            std::string target;
            if (i < k && chance(0.5)) {
                target = fresh_name();
            } else if (!pending.empty() && (i >= k || chance(0.7))) {
                target = *pending.begin();
                pending.erase(pending.begin());
            } else {
                target = chance(0.5) || prog.states.empty() ? "p" : prog.states[uniform(0, int(prog.states.size()) - 1)].name;
                pending.erase(target);
            }
            Expr e = chance(0.05) ? chain(uniform(20, 150)) : expr(uniform(1, o_.max_depth), Ctx{false, false});
            bool red = uses_reduction(e);
            prog.update.push_back({target, std::move(e), {}});
            bool found = false;
            for (Visible& v : visible_)
                if (v.name == target) { v.red = red; found = true; }
            if (!found) visible_.push_back({target, red});
        }
        launch_.clear();
        return prog;
    }

    double number() {
        if (o_.tame) {
            switch (uniform(0, 5)) {
            case 0: return uniform(-3, 3);
            case 1: return chance(0.5) ? 0.0 : -0.0;
            case 2: return std::ldexp(real(-1, 1), uniform(-30, 3));
            default: return real(-3, 3);
            }
        }
        switch (uniform(0, 11)) {
        case 0: return uniform(-10, 10);
        case 1: return -0.0;
        case 2: return std::numeric_limits<double>::denorm_min() * (chance(0.5) ? 1 : -1);
        case 3: return std::numeric_limits<double>::max() * (chance(0.5) ? 1 : -1);
        case 4: return std::numeric_limits<double>::min() * (chance(0.5) ? 1 : -1);
        case 5: return std::ldexp(real(-1, 1), uniform(-1074, 1023));  // tiny or huge, subnormals included
        case 6: {
            // Any finite bit pattern.
            for (;;) {
                uint64_t bits = std::uniform_int_distribution<uint64_t>()(rng_);
                double d;
                static_assert(sizeof d == sizeof bits);
                __builtin_memcpy(&d, &bits, sizeof d);
                if (std::isfinite(d)) return d;
            }
        }
        case 7: return 0.1 * uniform(-100, 100);
        default: return real(-10, 10);
        }
    }

    int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
    double real(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
    bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }

private:
    struct Ctx {
        bool scalars;       // launch values only, no reductions
        bool in_reduction;  // no reductions, no names that depend on one
    };
    struct Visible {
        std::string name;
        bool red;  // its value depends on a reduction
    };

    std::string fresh_name() {
        // Names that look like the passes' temporaries, like functions, or like exponents.
        static const char* const pool[] = {"_c0", "_c1", "_s0", "_s1", "sqrt", "max", "tensor_sum", "e", "E1", "e5",
                                           "x", "lr", "beta1", "_", "inf", "nan", "Update", "stepx", "pp", "g1"};
        for (;;) {
            std::string n;
            if (chance(0.3)) {
                n = pool[uniform(0, int(std::size(pool)) - 1)];
            } else {
                static const std::string first = "abcdefghijklmnoqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_";
                static const std::string rest = first + "p0123456789";
                n += first[uniform(0, int(first.size()) - 1)];
                int len = uniform(0, 6);
                for (int i = 0; i < len; ++i) n += rest[uniform(0, int(rest.size()) - 1)];
            }
            if (used_.insert(n).second) return n;
        }
    }

    Expr leaf(Ctx ctx) {
        if (chance(0.35)) return Expr::num(number());
        std::vector<const std::string*> names;
        if (ctx.scalars) {
            static const std::string step = "step";
            names.push_back(&step);
            for (const std::string& n : launch_) names.push_back(&n);
        } else {
            for (const Visible& v : visible_)
                if (!(ctx.in_reduction && v.red)) names.push_back(&v.name);
        }
        return Expr::ref(*names[uniform(0, int(names.size()) - 1)]);
    }

    Expr expr(int depth, Ctx ctx) {
        if (depth <= 1 || chance(0.15)) return leaf(ctx);
        Op op;
        for (;;) {
            op = Op(uniform(int(Op::Neg), kOpCount - 1));
            if (!is_reduction(op)) break;
            if (!ctx.scalars && !ctx.in_reduction && chance(0.5)) break;
        }
        Ctx inner = ctx;
        if (is_reduction(op)) inner.in_reduction = true;
        std::vector<Expr> args;
        for (int i = 0; i < op_info(op).arity; ++i) args.push_back(expr(depth - 1 - (chance(0.3) ? 1 : 0), inner));
        return Expr::make(op, std::move(args));
    }

    // A long left-leaning chain of + - * /, as optimizer code written in one line is.
    Expr chain(int length) {
        static const Op ops[] = {Op::Add, Op::Sub, Op::Mul, Op::Div};
        Expr e = leaf(Ctx{false, false});
        for (int i = 0; i < length; ++i) e = Expr::make(ops[uniform(0, 3)], {std::move(e), leaf(Ctx{false, false})});
        return e;
    }

    bool uses_reduction(const Expr& e) const {
        return any_node(e, [&](const Expr& n) {
            if (is_reduction(n.op)) return true;
            if (n.op != Op::Ref) return false;
            for (const Visible& v : visible_)
                if (v.name == n.name) return v.red;
            return false;
        });
    }

    std::mt19937_64 rng_;
    GenOptions o_;
    std::set<std::string> used_;
    std::vector<std::string> launch_;
    std::vector<Visible> visible_;
};

// A fresh seed per run, so repeated runs explore more; tests print it with INFO.
// OPTJIT_TEST_SEED replays a failing run.
inline uint64_t fresh_seed() {
    if (const char* s = std::getenv("OPTJIT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
    std::random_device rd;
    return (uint64_t(rd()) << 32) ^ rd();
}

}  // namespace optjit::testing
