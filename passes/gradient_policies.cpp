#include "passes/gradient_policies.h"

#include <fmt/format.h>

#include <limits>
#include <stdexcept>

#include "passes/rewrite.h"

namespace optjit {

namespace {

Expr name_ref(std::string_view name) { return Expr::ref(std::string(name)); }
Expr num(double v) { return Expr::num(v); }
Expr op(Op o, std::vector<Expr> args) { return Expr::make(o, std::move(args)); }

void refuse_taken(const Program& program, std::string_view name, std::string_view what) {
    bool taken = program.hyper_index(name) >= 0 || program.state_index(name) >= 0;
    for (const Assign& a : program.update) taken |= a.target == name;
    if (taken)
        throw std::invalid_argument(
            fmt::format("optimizer '{}' already uses the name '{}', which {} adds", program.name, name, what));
}

// Every use of `g` in the update reads `name` instead.
void read_gradient_as(Program& program, const std::string& name) {
    for (Assign& a : program.update)
        rewrite_bottom_up(a.value, [&](Expr& e) {
            if (e.op == Op::Ref && e.name == kGradName) e.name = name;
        });
}

}  // namespace

Program maximize(Program program) {
    refuse_taken(program, "negated_g", "maximize");
    read_gradient_as(program, "negated_g");
    program.update.insert(program.update.begin(), Assign{"negated_g", op(Op::Neg, {name_ref(kGradName)}), {}});
    return program;
}

Program clip_gradients(Program program, double max_norm) {
    const std::string what = "gradient clipping";
    for (std::string_view name : {kMaxGradNorm, kGradNormSquared, "clip_coefficient", "clipped_g"}) refuse_taken(program, name, what);
    read_gradient_as(program, "clipped_g");
    Expr total = op(Op::Sqrt, {name_ref(kGradNormSquared)});
    std::vector<Assign> prologue{
        {kGradNormSquared, op(Op::GlobalSum, {op(Op::Mul, {name_ref(kGradName), name_ref(kGradName)})}), {}},
        {"clip_coefficient", op(Op::Min, {num(1), op(Op::Div, {name_ref(kMaxGradNorm), op(Op::Add, {total, num(1e-6)})})}), {}},
        {"clipped_g", op(Op::Mul, {name_ref(kGradName), name_ref("clip_coefficient")}), {}},
    };
    program.update.insert(program.update.begin(), prologue.begin(), prologue.end());
    program.hypers.push_back({kMaxGradNorm, max_norm, {}});
    return program;
}

Program skip_nonfinite_steps(Program program) {
    const std::string what = "the non-finite step policy";
    refuse_taken(program, kNonfiniteGrads, what);
    std::vector<std::string> kept{std::string(kParamName)};
    for (const StateDecl& s : program.states) kept.push_back(s.name);
    for (const std::string& name : kept) refuse_taken(program, name + "_before_step", what);
    // |g| <= the largest float is false exactly for infinities and NaN (a comparison with NaN is 0).
    Expr finite = op(Op::Le, {op(Op::Abs, {name_ref(kGradName)}), num(double(std::numeric_limits<float>::max()))});
    std::vector<Assign> prologue{{kNonfiniteGrads, op(Op::GlobalSum, {op(Op::Select, {finite, num(0), num(1)})}), {}}};
    for (const std::string& name : kept) prologue.push_back({name + "_before_step", name_ref(name), {}});
    program.update.insert(program.update.begin(), prologue.begin(), prologue.end());
    Expr skip = op(Op::Gt, {name_ref(kNonfiniteGrads), num(0)});
    for (const std::string& name : kept) program.update.push_back({name, op(Op::Select, {skip, name_ref(name + "_before_step"), name_ref(name)}), {}});
    return program;
}

Program apply_gradient_policies(Program program, const GradientPolicies& policies) {
    // Clipping after negating (the norm is the same), before the non-finite count, which is then
    // over the gradients as given.
    if (policies.maximize) program = maximize(std::move(program));
    if (policies.max_grad_norm > 0) program = clip_gradients(std::move(program), policies.max_grad_norm);
    if (policies.skip_nonfinite) program = skip_nonfinite_steps(std::move(program));
    return program;
}

}  // namespace optjit
