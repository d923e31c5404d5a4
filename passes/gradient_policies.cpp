#include "passes/gradient_policies.h"

#include <fmt/format.h>

#include <limits>
#include <set>
#include <stdexcept>

#include "ir/analysis.h"
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

}  // namespace

Program maximize(Program program) {
    refuse_taken(program, "negated_g", "maximize");
    for (Assign& a : program.update)
        rewrite_bottom_up(a.value, [](Expr& e) {
            if (e.op == Op::Ref && e.name == kGradName) e.name = "negated_g";
        });
    program.update.insert(program.update.begin(), Assign{"negated_g", op(Op::Neg, {name_ref(kGradName)}), {}});
    return program;
}

Program clip_gradients(Program program, double max_norm) {
    const std::string what = "gradient clipping";
    for (std::string_view name : {kMaxGradNorm, kGradNormSquared, "clip_coefficient", "clipped_g"}) refuse_taken(program, name, what);
    // Names whose value depends on the gradient, statement by statement.
    std::set<std::string> from_g{std::string(kGradName)};
    auto reads_g = [&](const Expr& e) { return any_node(e, [&](const Expr& n) { return n.op == Op::Ref && from_g.count(n.name); }); };
    for (const Assign& a : program.update) {
        for_each_node(a.value, [&](const Expr& e) {
            if (is_reduction(e.op) && reads_g(e))
                throw std::invalid_argument(fmt::format(
                    "optimizer '{}' reduces over its gradient ({}); clipping the gradient first would reduce a reduction, which needs a "
                    "second statistics pass that optjit does not generate yet: clip outside the step",
                    program.name, op_info(e.op).spelling));
        });
        if (reads_g(a.value)) from_g.insert(a.target);
        else from_g.erase(a.target);
    }
    for (Assign& a : program.update)
        rewrite_bottom_up(a.value, [](Expr& e) {
            if (e.op == Op::Ref && e.name == kGradName) e.name = "clipped_g";
        });
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

}  // namespace optjit
