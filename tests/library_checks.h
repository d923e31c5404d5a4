// Every built-in optimizer (ir/library.h) against its definition, written out here a second
// time, independently of its program text: float64 loops that follow the source each program
// cites (torch.optim, timm, the official code), with the torch.nn.utils.clip_grad_norm_ and
// skipped-step semantics of the gradient policies applied around them. A case is a
// configuration of an optimizer's own options plus the step's policies; each runs several
// steps over fresh random tensors on
//   - the interpreter (the program as text, with the policies' rewrites): to 1e-12;
//   - optjit::Optimizer on a device (host here, GPU in test_gpu.cpp): fp32 math, to the fp32
//     tolerance of checked runs (runtime/checked_run.h).
// The parameters, every state, and the reported gradient norm are compared.
#pragma once

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ir/library.h"
#include "passes/gradient_policies.h"
#include "optimizer_checks.h"

namespace optjit_test {

using Tensors = std::vector<std::vector<double>>;  // one vector per tensor

struct DefinitionState {
    std::map<std::string, Tensors> states;  // by the program's state names
    int64_t steps = 0;                      // steps counted (skipped ones too: the Optimizer counts them)
};

using Hypers = std::map<std::string, double>;

// The definitions. Each reads its hyper-parameters with their library defaults filled in.
namespace definitions {

inline double norm(const std::vector<double>& x) {
    double s = 0;
    for (double v : x) s += v * v;
    return std::sqrt(s);
}

// torch.optim.SGD (_single_tensor_sgd): the buffer is the gradient itself on the first step.
inline void sgd(const Hypers& h, int64_t step, Tensors& p, const Tensors& g, DefinitionState& s) {
    for (size_t t = 0; t < p.size(); ++t)
        for (size_t i = 0; i < p[t].size(); ++i) {
            double d = g[t][i] + h.at("weight_decay") * p[t][i];
            double& buf = s.states["buf"][t][i];
            if (h.at("momentum") != 0) {
                buf = step == 1 ? d : h.at("momentum") * buf + (1 - h.at("dampening")) * d;
                d = h.at("nesterov") != 0 ? d + h.at("momentum") * buf : buf;
            } else {
                buf = step == 1 ? d : (1 - h.at("dampening")) * d;  // the program's buffer (never read)
            }
            p[t][i] -= h.at("lr") * d;
        }
}

// torch.optim.Adam / AdamW (_single_tensor_adam), with or without amsgrad.
inline void adam_like(bool decoupled, bool amsgrad, const Hypers& h, int64_t step, Tensors& p, const Tensors& g, DefinitionState& s) {
    const double b1 = h.at("beta1"), b2 = h.at("beta2"), lr = h.at("lr"), wd = h.at("weight_decay");
    const double bc1 = 1 - std::pow(b1, double(step)), bc2 = 1 - std::pow(b2, double(step));
    for (size_t t = 0; t < p.size(); ++t)
        for (size_t i = 0; i < p[t].size(); ++i) {
            double grad = g[t][i];
            if (decoupled) p[t][i] *= 1 - lr * wd;
            else grad += wd * p[t][i];
            double& m = s.states["m"][t][i];
            double& v = s.states["v"][t][i];
            m += (grad - m) * (1 - b1);
            v = b2 * v + (1 - b2) * grad * grad;
            double denominator = v;
            if (amsgrad) {
                double& v_max = s.states["v_max"][t][i];
                v_max = std::max(v_max, v);
                denominator = v_max;
            }
            p[t][i] -= lr / bc1 * m / (std::sqrt(denominator) / std::sqrt(bc2) + h.at("eps"));
        }
}

// torch.optim.Adagrad.
inline void adagrad(const Hypers& h, int64_t step, Tensors& p, const Tensors& g, DefinitionState& s) {
    const double clr = h.at("lr") / (1 + double(step - 1) * h.at("lr_decay"));
    for (size_t t = 0; t < p.size(); ++t)
        for (size_t i = 0; i < p[t].size(); ++i) {
            double grad = g[t][i] + h.at("weight_decay") * p[t][i];
            double& sum = s.states["sum"][t][i];
            sum += grad * grad;
            p[t][i] -= clr * grad / (std::sqrt(sum) + h.at("eps"));
        }
}

// torch.optim.RMSprop.
inline void rmsprop(const Hypers& h, int64_t, Tensors& p, const Tensors& g, DefinitionState& s) {
    const double alpha = h.at("alpha");
    for (size_t t = 0; t < p.size(); ++t)
        for (size_t i = 0; i < p[t].size(); ++i) {
            double grad = g[t][i] + h.at("weight_decay") * p[t][i];
            double& sq = s.states["square_avg"][t][i];
            double& ga = s.states["grad_avg"][t][i];
            double& buf = s.states["buf"][t][i];
            sq = alpha * sq + (1 - alpha) * grad * grad;
            ga += (grad - ga) * (1 - alpha);  // torch keeps it only when centered; the program always does
            double avg = std::sqrt(h.at("centered") != 0 ? sq - ga * ga : sq) + h.at("eps");
            if (h.at("momentum") > 0) {
                buf = h.at("momentum") * buf + grad / avg;
                p[t][i] -= h.at("lr") * buf;
            } else {
                buf = grad / avg;  // the program's buffer with momentum 0
                p[t][i] -= h.at("lr") * grad / avg;
            }
        }
}

// lion-pytorch's Lion.
inline void lion(const Hypers& h, int64_t, Tensors& p, const Tensors& g, DefinitionState& s) {
    for (size_t t = 0; t < p.size(); ++t)
        for (size_t i = 0; i < p[t].size(); ++i) {
            double& m = s.states["m"][t][i];
            p[t][i] *= 1 - h.at("lr") * h.at("weight_decay");
            double c = h.at("beta1") * m + (1 - h.at("beta1")) * g[t][i];
            p[t][i] -= h.at("lr") * double((c > 0) - (c < 0));
            m = h.at("beta2") * m + (1 - h.at("beta2")) * g[t][i];
        }
}

// apple/ml-ademamix's AdEMAMix, one warmup length T for alpha and beta3.
inline void ademamix(const Hypers& h, int64_t step, Tensors& p, const Tensors& g, DefinitionState& s) {
    const double b1 = h.at("beta1"), b2 = h.at("beta2"), b3 = h.at("beta3"), T = h.at("T_alpha_beta3");
    double alpha = h.at("alpha"), beta3 = b3;
    if (double(step) < T) {
        alpha = double(step) * h.at("alpha") / T;
        auto f = [](double b) { return std::log(0.5) / std::log(b + 1e-8) - 1; };
        const double a = double(step) / T;
        beta3 = std::pow(0.5, 1 / ((1 - a) * f(b1) + a * f(b3) + 1));
    }
    const double bc1 = 1 - std::pow(b1, double(step)), bc2 = 1 - std::pow(b2, double(step));
    for (size_t t = 0; t < p.size(); ++t)
        for (size_t i = 0; i < p[t].size(); ++i) {
            double &m1 = s.states["m1"][t][i], &m2 = s.states["m2"][t][i], &nu = s.states["nu"][t][i];
            m1 = b1 * m1 + (1 - b1) * g[t][i];
            m2 = beta3 * m2 + (1 - beta3) * g[t][i];
            nu = b2 * nu + (1 - b2) * g[t][i] * g[t][i];
            double update = (m1 / bc1 + alpha * m2) / (std::sqrt(nu) / std::sqrt(bc2) + h.at("eps"));
            p[t][i] -= h.at("lr") * (update + h.at("weight_decay") * p[t][i]);
        }
}

// timm's Lamb (without its built-in clipping).
inline void lamb(const Hypers& h, int64_t step, Tensors& p, const Tensors& g, DefinitionState& s) {
    const double b1 = h.at("beta1"), b2 = h.at("beta2"), wd = h.at("weight_decay");
    const double bc1 = 1 - std::pow(b1, double(step)), bc2 = 1 - std::pow(b2, double(step));
    for (size_t t = 0; t < p.size(); ++t) {
        std::vector<double> update(p[t].size());
        for (size_t i = 0; i < p[t].size(); ++i) {
            double &m = s.states["m"][t][i], &v = s.states["v"][t][i];
            m = b1 * m + (1 - b1) * g[t][i];
            v = b2 * v + (1 - b2) * g[t][i] * g[t][i];
            update[i] = m / bc1 / (std::sqrt(v) / std::sqrt(bc2) + h.at("eps")) + wd * p[t][i];
        }
        double trust = 1;
        if (wd != 0 || h.at("always_adapt") != 0) {
            const double w_norm = norm(p[t]), u_norm = norm(update);
            trust = w_norm > 0 && u_norm > 0 ? w_norm / u_norm : 1;
            if (h.at("trust_clip") != 0) trust = std::min(trust, 1.0);
        }
        for (size_t i = 0; i < p[t].size(); ++i) p[t][i] -= h.at("lr") * trust * update[i];
    }
}

// timm's Lars.
inline void lars(const Hypers& h, int64_t step, Tensors& p, const Tensors& g, DefinitionState& s) {
    const double wd = h.at("weight_decay"), lr = h.at("lr");
    for (size_t t = 0; t < p.size(); ++t) {
        std::vector<double> grad = g[t];
        if (wd != 0 || h.at("always_adapt") != 0) {
            const double w_norm = norm(p[t]), g_norm = norm(g[t]);
            double trust = h.at("trust_coeff") * w_norm / (g_norm + w_norm * wd + h.at("eps"));
            trust = w_norm > 0 && g_norm > 0 ? trust : 1;
            if (h.at("trust_clip") != 0) trust = std::min(trust / lr, 1.0);
            for (size_t i = 0; i < grad.size(); ++i) grad[i] = (grad[i] + wd * p[t][i]) * trust;
        }
        for (size_t i = 0; i < grad.size(); ++i) {
            double& buf = s.states["buf"][t][i];
            buf = step == 1 ? grad[i] : h.at("momentum") * buf + (1 - h.at("dampening")) * grad[i];
            double d = h.at("momentum") == 0 ? grad[i] : h.at("nesterov") != 0 ? grad[i] + h.at("momentum") * buf : buf;
            p[t][i] -= lr * d;
        }
    }
}

// sail-sg/Adan's _single_tensor_adan.
inline void adan(const Hypers& h, int64_t step, Tensors& p, const Tensors& g, DefinitionState& s) {
    const double b1 = h.at("beta1"), b2 = h.at("beta2"), b3 = h.at("beta3"), lr = h.at("lr"), wd = h.at("weight_decay");
    const double bc1 = 1 - std::pow(b1, double(step)), bc2 = 1 - std::pow(b2, double(step)), bc3 = 1 - std::pow(b3, double(step));
    for (size_t t = 0; t < p.size(); ++t)
        for (size_t i = 0; i < p[t].size(); ++i) {
            double &m = s.states["m"][t][i], &diff = s.states["diff"][t][i], &n = s.states["n"][t][i], &prev = s.states["prev_g"][t][i];
            const double neg_pre_grad = step == 1 ? -g[t][i] : -prev;
            const double d = neg_pre_grad + g[t][i];
            m = m * b1 + (1 - b1) * g[t][i];
            diff = diff * b2 + (1 - b2) * d;
            const double c = d * b2 + g[t][i];
            n = n * b3 + (1 - b3) * c * c;
            const double denom = std::sqrt(n) / std::sqrt(bc3) + h.at("eps");
            if (h.at("no_prox") != 0) {
                p[t][i] *= 1 - lr * wd;
                p[t][i] -= lr / bc1 * m / denom + lr * b2 / bc2 * diff / denom;
            } else {
                p[t][i] -= lr / bc1 * m / denom + lr * b2 / bc2 * diff / denom;
                p[t][i] /= 1 + lr * wd;
            }
            prev = g[t][i];
        }
}

using Step = std::function<void(const Hypers&, int64_t, Tensors&, const Tensors&, DefinitionState&)>;

inline Step of(const std::string& name) {
    if (name == "sgd") return sgd;
    for (bool decoupled : {false, true})
        for (bool amsgrad : {false, true})
            if (name == std::string(decoupled ? "adamw" : "adam") + (amsgrad ? "_amsgrad" : ""))
                return [=](const Hypers& h, int64_t k, Tensors& p, const Tensors& g, DefinitionState& s) { adam_like(decoupled, amsgrad, h, k, p, g, s); };
    if (name == "adagrad") return adagrad;
    if (name == "rmsprop") return rmsprop;
    if (name == "lion") return lion;
    if (name == "ademamix") return ademamix;
    if (name == "lamb") return lamb;
    if (name == "lars") return lars;
    if (name == "adan") return adan;
    FAIL("no definition of ", name);
    return {};
}

}  // namespace definitions

struct LibraryCase {
    std::string optimizer;
    Hypers hypers;             // over the library defaults
    double max_grad_norm = 0;  // the policies (OptimizerOptions)
    bool skip_nonfinite = false;
    bool maximize = false;
};

inline std::string describe(const LibraryCase& c) {
    std::string out = c.optimizer;
    for (const auto& [name, value] : c.hypers) out += " " + name + "=" + fmt::format("{}", value);
    if (c.max_grad_norm > 0) out += fmt::format(" max_grad_norm={}", c.max_grad_norm);
    if (c.skip_nonfinite) out += " skip_nonfinite";
    if (c.maximize) out += " maximize";
    return out;
}

// OPTJIT_LIBRARY_CASE=TEXT runs only the cases whose description contains TEXT (with
// OPTJIT_TEST_SEED, a failure's replay).
inline bool selected(const LibraryCase& c) {
    const char* only = std::getenv("OPTJIT_LIBRARY_CASE");
    return !only || describe(c).find(only) != std::string::npos;
}

// Each optimizer's own options, then every policy. The total norm of these gradients is ~95, so
// a max_grad_norm of 10 clips every step (LAMB's and LARS's norms then read the clipped
// gradients: a second reduction level).
inline std::vector<LibraryCase> library_cases() {
    std::map<std::string, std::vector<Hypers>> own = {
        {"sgd", {{}, {{"momentum", 0.9}}, {{"momentum", 0.9}, {"nesterov", 1}}, {{"momentum", 0.9}, {"dampening", 0.1}, {"weight_decay", 1e-2}}}},
        {"adam", {{}, {{"weight_decay", 1e-2}}}},
        {"adam_amsgrad", {{}, {{"weight_decay", 1e-2}}}},
        {"adamw", {{}, {{"weight_decay", 0.1}}}},
        {"adamw_amsgrad", {{}, {{"weight_decay", 0.1}}}},
        {"adagrad", {{}, {{"lr_decay", 1e-2}, {"weight_decay", 1e-2}}}},
        // Centered with eps 1e-8: where a first step's gradient is within ~eps of 0 (weight decay
        // cancelling a clipped gradient), g / (sqrt(0.01 g^2) + eps) turns ulps into 1e-11.
        // (Centered only and momentum only: the Optimizer keeps one state more than the default.)
        {"rmsprop", {{}, {{"centered", 1}, {"eps", 1e-3}}, {{"momentum", 0.9}}, {{"centered", 1}, {"momentum", 0.9}, {"weight_decay", 1e-2}, {"eps", 1e-3}}}},
        {"lion", {{}, {{"weight_decay", 0.1}}}},
        {"ademamix", {{}, {{"T_alpha_beta3", 3}, {"weight_decay", 1e-2}}}},
        {"lamb", {{}, {{"weight_decay", 0}}, {{"weight_decay", 0}, {"always_adapt", 1}, {"trust_clip", 1}}}},
        {"lars", {{}, {{"weight_decay", 1e-2}, {"momentum", 0.9}}, {{"always_adapt", 1}, {"trust_clip", 1}, {"momentum", 0.9}, {"nesterov", 1}}}},
        {"adan", {{}, {{"weight_decay", 1e-2}}, {{"weight_decay", 1e-2}, {"no_prox", 1}}}},
    };
    std::vector<LibraryCase> out;
    for (const std::string& name : optjit::library_names()) {
        REQUIRE_MESSAGE(own.count(name), "no cases for library optimizer ", name);
        for (const Hypers& h : own[name]) out.push_back({name, h});
        out.push_back({name, {}, 10.0});
        out.push_back({name, {}, 0, true});
        out.push_back({name, own[name].back(), 10.0, true});
        out.push_back({name, own[name].back(), 0, false, true});
    }
    return out;
}

// The reference's gradients of a step, with the policies applied as a training loop would:
// nullopt where the step is skipped; the total norm (before clipping) in `norm`.
inline std::optional<Tensors> apply_policies(const LibraryCase& c, Tensors g, double& norm) {
    if (c.maximize)
        for (auto& t : g)
            for (double& v : t) v = -v;
    norm = 0;
    bool finite = true;
    for (const auto& t : g)
        for (double v : t) {
            norm += v * v;
            finite &= std::isfinite(v);
        }
    norm = std::sqrt(norm);
    if (c.skip_nonfinite && !finite) return std::nullopt;
    if (c.max_grad_norm > 0) {
        const double coefficient = std::min(1.0, c.max_grad_norm / (norm + 1e-6));
        for (auto& t : g)
            for (double& v : t) v *= coefficient;
    }
    return g;
}

// Runs one case: `steps` steps over tensors of `sizes`, on the interpreter and on `device`,
// against the definition. With skip_nonfinite, one element of step 3's gradient is a NaN.
inline void check_library_case(const LibraryCase& c, Device device, uint64_t seed) {
    INFO(describe(c), " on ", device_name(device), ", seed ", seed);
    const std::vector<int64_t> sizes{5000, 1000, 4099};
    const int64_t steps = 5;
    Program program = optjit::library(c.optimizer);
    Hypers own = c.hypers;
    // Lion steps by lr * sign(c): where c is within rounding of 0, fp32 and float64 may take
    // opposite signs; keep 2 lr below the tolerance (as example_checks.h does).
    if (c.optimizer == "lion") own["lr"] = tolerance_for(DType::F32) / 8;
    Hypers hypers = own;
    if (c.max_grad_norm > 0) hypers[kMaxGradNorm] = c.max_grad_norm;
    Hypers all;  // every value the definition reads
    for (const HyperDecl& h : program.hypers) all[h.name] = h.value;
    for (const auto& [name, value] : own) all[name] = value;

    // The definition, the interpreter (the program with the policies' rewrites) and the Optimizer.
    Tensors p_def;
    DefinitionState def;
    std::vector<std::unique_ptr<TestParam>> params;
    ParamGroup group;
    for (size_t t = 0; t < sizes.size(); ++t) {
        params.push_back(std::make_unique<TestParam>(device, std::vector<int64_t>{sizes[t]}, DType::F32, DType::F32, seed, t));
        group.params.push_back(params.back()->parameter("t" + std::to_string(t)));
        p_def.emplace_back();
        for (int64_t i = 0; i < sizes[t]; ++i) p_def.back().push_back(load_element(DType::F32, params[t]->data->host.data(), size_t(i)));
    }
    for (const StateDecl& s : program.states)
        for (size_t t = 0; t < sizes.size(); ++t) def.states[s.name].emplace_back(size_t(sizes[t]), s.init);
    Program rewritten = apply_gradient_policies(program, {c.maximize, c.max_grad_norm, c.skip_nonfinite});
    Interpreter interpreter(rewritten, hyper_values(rewritten, hypers));
    std::vector<HostTensor> interp(sizes.size());
    for (size_t t = 0; t < sizes.size(); ++t) {
        interp[t].p = p_def[t];
        interp[t].g.resize(p_def[t].size());
        interpreter.init_states(interp[t]);
    }
    OptimizerOptions options;
    options.hypers = own;
    options.max_grad_norm = c.max_grad_norm;
    options.skip_nonfinite = c.skip_nonfinite;
    options.maximize = c.maximize;
    Optimizer optimizer(program, {group}, options);
    // What torch.optim keeps no state for: SGD's and LARS's buffer without momentum, RMSprop's
    // grad_avg unless centered and buf without momentum (passes/unused_states.h).
    std::vector<std::string> unused;
    if ((c.optimizer == "sgd" || c.optimizer == "lars") && all.at("momentum") == 0) unused.push_back("buf");
    if (c.optimizer == "rmsprop" && all.at("centered") == 0) unused.push_back("grad_avg");
    if (c.optimizer == "rmsprop" && all.at("momentum") == 0) unused.push_back("buf");
    CHECK(optimizer.dropped_states() == unused);

    int64_t applied = 0;  // a skipped step does not count: the next has its step number
    for (int64_t step = 1; step <= steps; ++step) {
        Tensors g;
        for (size_t t = 0; t < sizes.size(); ++t) {
            params[t]->set_gradient(step);
            if (c.skip_nonfinite && step == 3 && t == 1) {
                store_element(DType::F32, params[t]->grad->host.data(), 17, std::numeric_limits<double>::quiet_NaN());
                params[t]->grad->upload();
            }
            g.emplace_back();
            for (int64_t i = 0; i < sizes[t]; ++i) g.back().push_back(load_element(DType::F32, params[t]->grad->host.data(), size_t(i)));
            interp[t].g = g.back();
        }
        double norm = 0;
        std::optional<Tensors> used = apply_policies(c, g, norm);
        if (used) definitions::of(c.optimizer)(all, applied + 1, p_def, *used, def);
        interpreter.step(applied + 1, interp);
        optimizer.step();
        applied += used ? 1 : 0;
        CHECK(optimizer.step_count() == applied);
        if (c.max_grad_norm > 0 && !(c.skip_nonfinite && step == 3)) CHECK(optimizer.grad_norm() == doctest::Approx(norm).epsilon(1e-6));
        if (c.skip_nonfinite) CHECK(optimizer.nonfinite_count() == (step == 3 ? 1.0 : 0.0));
    }

    for (size_t t = 0; t < sizes.size(); ++t) {
        INFO("tensor ", t, " of ", sizes[t], " elements");
        CHECK(max_relative_difference(interp[t].p, p_def[t]) < 1e-12);
        std::vector<uint8_t> bytes = params[t]->values();
        std::vector<double> kernel_p;
        for (int64_t i = 0; i < sizes[t]; ++i) kernel_p.push_back(load_element(DType::F32, bytes.data(), size_t(i)));
        CHECK(max_relative_difference(kernel_p, p_def[t]) < tolerance_for(DType::F32));
        for (size_t s = 0; s < program.states.size(); ++s) {
            const std::string& name = program.states[s].name;
            INFO("state ", name);
            CHECK(max_relative_difference(interp[t].states[s], def.states[name][t]) < 1e-12);
            if (optimizer.program().state_index(name) < 0) continue;  // not kept (Optimizer::dropped_states)
            std::vector<uint8_t> state = read_bytes(device, optimizer.state(0, t, name).values, size_t(sizes[t]) * 4);
            std::vector<double> kernel_state;
            for (int64_t i = 0; i < sizes[t]; ++i) kernel_state.push_back(load_element(DType::F32, state.data(), size_t(i)));
            CHECK(max_relative_difference(kernel_state, def.states[name][t]) < tolerance_for(DType::F32));
        }
    }
}

}  // namespace optjit_test
