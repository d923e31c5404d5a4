#include "ir/interpreter.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <unordered_map>

#include "ir/analysis.h"
#include "ir/numeric.h"
#include "ir/quantization.h"
#include "ir/semantics.h"

namespace optjit {

std::vector<double> hyper_values(const Program& program, const std::map<std::string, double>& overrides) {
    std::vector<double> values;
    for (const HyperDecl& h : program.hypers) values.push_back(h.value);
    for (const auto& [name, v] : overrides) {
        int i = program.hyper_index(name);
        if (i < 0) {
            std::string known;
            for (const HyperDecl& h : program.hypers) known += (known.empty() ? "" : ", ") + h.name;
            throw std::invalid_argument(fmt::format("optimizer '{}' has no hyper-parameter '{}' (its hyper-parameters: {})",
                                                    program.name, name, known.empty() ? "none" : known));
        }
        values[i] = v;
    }
    return values;
}

namespace {

// One instruction of the flattened program: regs[dst] = op(regs[a], regs[b], regs[c]).
struct Instr {
    Op op;
    int dst, a = -1, b = -1, c = -1;
    double number = 0;
    int reduction = -1;  // reductions: index into the reduction list
};

}  // namespace

struct Interpreter::Impl {
    const Program program;
    std::vector<double> hypers;
    std::optional<StorageSignature> storage;
    std::optional<uint64_t> stochastic_seed;

    // Register layout: p, g, step, hypers..., states..., then one register per node.
    int reg_p = 0, reg_g = 1, reg_step = 2, reg_hyper0 = 3, reg_state0 = 0;
    int nregs = 0;
    std::vector<Instr> code;
    int final_p = 0;
    std::vector<int> final_states;
    std::vector<Op> reductions;  // kind of each reduction, by index
    std::vector<int> levels;     // level of each reduction (ir/analysis.h)
    std::vector<std::vector<double>> reduction_values;

    Impl(const Program& prog, std::vector<double> h, std::optional<StorageSignature> s)
        : program(prog), hypers(std::move(h)), storage(std::move(s)) {
        if (hypers.size() != program.hypers.size())
            throw std::invalid_argument(fmt::format("optimizer '{}' has {} hyper-parameters, {} values given", program.name,
                                                    program.hypers.size(), hypers.size()));
        reg_state0 = reg_hyper0 + int(program.hypers.size());
        nregs = reg_state0 + int(program.states.size());
        std::unordered_map<std::string, int> names;
        names[std::string(kParamName)] = reg_p;
        names[std::string(kGradName)] = reg_g;
        names[std::string(kStepName)] = reg_step;
        for (size_t i = 0; i < program.hypers.size(); ++i) names[program.hypers[i].name] = reg_hyper0 + int(i);
        for (size_t i = 0; i < program.states.size(); ++i) names[program.states[i].name] = reg_state0 + int(i);
        for (const auto* section : {&program.scalars, &program.update})
            for (const Assign& a : *section) names[a.target] = compile(a.value, names);
        levels = reduction_levels(program);
        if (levels.size() != reductions.size()) throw std::logic_error("Interpreter: reductions numbered unlike ir/analysis.h");
        final_p = names.at(std::string(kParamName));
        for (const StateDecl& s : program.states) final_states.push_back(names.at(s.name));
    }

    int compile(const Expr& e, const std::unordered_map<std::string, int>& names) {
        if (e.op == Op::Ref) return names.at(e.name);
        Instr in{e.op, 0};
        if (e.op == Op::Number) in.number = e.number;
        if (is_reduction(e.op)) {  // numbered before the reductions in its argument, as ir/analysis.h's reductions()
            in.reduction = int(reductions.size());
            reductions.push_back(e.op);
        }
        if (e.args.size() > 0) in.a = compile(e.args[0], names);
        if (e.args.size() > 1) in.b = compile(e.args[1], names);
        if (e.args.size() > 2) in.c = compile(e.args[2], names);
        in.dst = nregs++;
        code.push_back(in);
        return in.dst;
    }

    // Runs the instructions for one element; reductions read `values`. In the statistics phase
    // of `level` (`accumulate` set), the reductions of that level add their argument into it
    // instead (and read as 0).
    void run(double* r, const double* values, double* accumulate = nullptr, int level = 0) const {
        for (const Instr& in : code) {
            double a = in.a >= 0 ? r[in.a] : 0, b = in.b >= 0 ? r[in.b] : 0, c = in.c >= 0 ? r[in.c] : 0;
            double v = 0;
            switch (in.op) {
            case Op::Number: v = in.number; break;
            case Op::Ref: break;  // never compiled to an instruction
            default: v = evaluate(in.op, a, b, c); break;
            case Op::TensorSum:
            case Op::GlobalSum:
                if (accumulate && levels[size_t(in.reduction)] == level) accumulate[in.reduction] += a;
                else v = values[in.reduction];
                break;
            case Op::TensorMax:
            case Op::GlobalMax:
                if (accumulate && levels[size_t(in.reduction)] == level) accumulate[in.reduction] = nan_max(accumulate[in.reduction], a);
                else v = values[in.reduction];
                break;
            }
            r[in.dst] = v;
        }
    }

    void load(double* r, int64_t step, const HostTensor& t, size_t i) const {
        r[reg_p] = t.p[i];
        r[reg_g] = t.g[i];
        r[reg_step] = double(step);
        for (size_t h = 0; h < hypers.size(); ++h) r[reg_hyper0 + h] = hypers[h];
        for (size_t s = 0; s < t.states.size(); ++s) r[reg_state0 + s] = t.states[s][i];
    }

    // The storage `t` really uses (small tensors keep fp32 states).
    std::optional<StorageSignature> storage_of(const HostTensor& t) const {
        if (!storage) return std::nullopt;
        return storage_for_tensor(*storage, t.tensor_elements > 0 ? t.tensor_elements : int64_t(t.p.size()), t.columns);
    }

    void store(const double* r, const std::optional<StorageSignature>& st, HostTensor& t, size_t i, int64_t step) const {
        double p = r[final_p];
        if (st && stochastic_seed && st->param == DType::BF16)
            p = bf16_bits_to_float(float_to_bf16_stochastic(float(p), stochastic_bits(*stochastic_seed, uint64_t(step), uint64_t(t.first_element) + i)));
        else if (st)
            p = round_to(st->param, p);
        t.p[i] = p;
        for (size_t s = 0; s < final_states.size(); ++s) {
            double v = r[final_states[s]];
            if (st) v = round_to(state_dtype(st->state(program.states[s].name).format), v);
            t.states[s][i] = v;
        }
    }

    // Quantizes `values` of tensor `t` as `format` into `stored`; returns what they read back as.
    static std::vector<float> store_as(const StateStorage& format, const HostTensor& t, const std::vector<float>& values,
                                       QuantizedTensor& stored) {
        // storage_of() made a rank-1 format block-wise where the tensor has no columns.
        const int64_t n = int64_t(values.size());
        if (format.rank1) {
            if (t.first_element != 0 || (t.tensor_elements > 0 && t.tensor_elements != n))
                throw std::invalid_argument("rank-1 normalization needs the whole tensor: a shard cannot see its rows' and columns' maxima");
            if (n % t.columns != 0)
                throw std::invalid_argument(fmt::format("a tensor of {} elements is not rows of {} columns", n, t.columns));
        }
        stored = quantize(format, values, t.first_element, t.columns);
        return dequantize(format, stored, n, t.first_element, t.columns);
    }

    // Block-quantized states: what the tensor's new values read back as (the update of p in
    // the same step used them unrounded).
    void store_quantized(const std::optional<StorageSignature>& st, HostTensor& t) const {
        if (!st) return;
        t.unquantized.resize(program.states.size());
        t.quantized.resize(program.states.size());
        for (size_t s = 0; s < program.states.size(); ++s) {
            const StateStorage& format = st->state(program.states[s].name);
            if (!is_block_quantized(format.format)) continue;
            t.unquantized[s].assign(t.states[s].begin(), t.states[s].end());  // already rounded to fp32
            std::vector<float> back = store_as(format, t, t.unquantized[s], t.quantized[s]);
            std::copy(back.begin(), back.end(), t.states[s].begin());
        }
    }

    void step(int64_t step, std::span<HostTensor> tensors) {
        for (const HostTensor& t : tensors) {
            if (t.g.size() != t.p.size())
                throw std::invalid_argument(fmt::format("gradient has {} elements, parameter {}", t.g.size(), t.p.size()));
            if (t.states.size() != program.states.size())
                throw std::invalid_argument("tensor states not initialized (call init_states)");
        }
        std::vector<double> r(nregs);
        const size_t nred = reductions.size();
        // Per tensor: the value of every reduction as that tensor sees it, found level by level
        // (a level's arguments read the values of the levels before it).
        std::vector<std::vector<double>> values(tensors.size(), std::vector<double>(nred));
        reduction_values.assign(nred, {});
        auto is_max = [&](size_t k) { return reductions[k] == Op::TensorMax || reductions[k] == Op::GlobalMax; };
        const int level_count = levels.empty() ? 0 : *std::max_element(levels.begin(), levels.end());
        for (int level = 1; level <= level_count; ++level) {
            std::vector<double> global(nred);
            for (size_t k = 0; k < nred; ++k) global[k] = is_max(k) ? -std::numeric_limits<double>::infinity() : 0.0;
            for (size_t ti = 0; ti < tensors.size(); ++ti) {
                std::vector<double> acc(nred);
                for (size_t k = 0; k < nred; ++k) acc[k] = is_max(k) ? -std::numeric_limits<double>::infinity() : 0.0;
                for (size_t i = 0; i < tensors[ti].p.size(); ++i) {
                    load(r.data(), step, tensors[ti], i);
                    run(r.data(), values[ti].data(), acc.data(), level);
                }
                for (size_t k = 0; k < nred; ++k) {
                    if (levels[k] != level) continue;
                    if (reductions[k] == Op::GlobalSum) global[k] += acc[k];
                    else if (reductions[k] == Op::GlobalMax) global[k] = nan_max(global[k], acc[k]);
                    else {
                        values[ti][k] = acc[k];
                        reduction_values[k].push_back(acc[k]);
                    }
                }
            }
            for (size_t k = 0; k < nred; ++k)
                if (levels[k] == level && is_global_reduction(reductions[k])) {
                    for (auto& v : values) v[k] = global[k];
                    reduction_values[k] = {global[k]};
                }
        }
        for (size_t ti = 0; ti < tensors.size(); ++ti) {
            HostTensor& t = tensors[ti];
            std::optional<StorageSignature> st = storage_of(t);
            for (size_t i = 0; i < t.p.size(); ++i) {
                load(r.data(), step, t, i);
                run(r.data(), values[ti].data());
                store(r.data(), st, t, i, step);
            }
            store_quantized(st, t);
        }
    }
};

Interpreter::Interpreter(const Program& program, std::vector<double> hypers, std::optional<StorageSignature> storage)
    : impl_(std::make_unique<Impl>(program, std::move(hypers), std::move(storage))) {}

Interpreter::~Interpreter() = default;

void Interpreter::init_states(HostTensor& t) const {
    t.states.clear();
    for (const StateDecl& s : impl_->program.states) t.states.emplace_back(t.p.size(), s.init);
    // A quantized state initialized to 0 starts with scale 0 and reads back as exactly 0; any
    // other initial value reads back as its quantized self.
    std::optional<StorageSignature> storage = impl_->storage_of(t);
    if (!storage) return;
    for (size_t s = 0; s < impl_->program.states.size(); ++s) {
        const StateStorage& st = storage->state(impl_->program.states[s].name);
        if (is_block_quantized(st.format) && impl_->program.states[s].init != 0) {
            std::vector<float> values(t.states[s].begin(), t.states[s].end());
            QuantizedTensor stored;
            std::vector<float> back = Impl::store_as(st, t, values, stored);
            std::copy(back.begin(), back.end(), t.states[s].begin());
        }
    }
}

void Interpreter::step(int64_t step, std::span<HostTensor> tensors) { impl_->step(step, tensors); }

void Interpreter::set_hyper(const std::string& name, double value) {
    int i = impl_->program.hyper_index(name);
    if (i < 0) hyper_values(impl_->program, {{name, value}});  // throws the standard message
    impl_->hypers[i] = value;
}

void Interpreter::set_stochastic_rounding(uint64_t seed) { impl_->stochastic_seed = seed; }

const std::vector<std::vector<double>>& Interpreter::last_reductions() const { return impl_->reduction_values; }

}  // namespace optjit
