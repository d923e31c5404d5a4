#include "passes/constant_fold.h"

#include <cmath>
#include <unordered_map>

#include "ir/analysis.h"
#include "ir/semantics.h"
#include "passes/rewrite.h"

namespace optjit {

namespace {

bool is_number(const Expr& e, double v) { return e.op == Op::Number && e.number == v && !std::signbit(e.number); }

// Folds one node whose children are already folded.
void fold(Expr& e, const std::unordered_map<std::string, double>& constants) {
    if (e.op == Op::Ref) {
        auto it = constants.find(e.name);
        if (it != constants.end()) e = Expr::num(it->second, e.loc);
        return;
    }
    if (e.op == Op::Number || is_reduction(e.op)) return;
    bool all_numbers = true;
    for (const Expr& a : e.args) all_numbers &= a.op == Op::Number;
    if (all_numbers) {
        double v[3] = {0, 0, 0};
        for (size_t i = 0; i < e.args.size(); ++i) v[i] = e.args[i].number;
        double r = evaluate(e.op, v[0], v[1], v[2]);
        if (std::isfinite(r)) e = Expr::num(r, e.loc);
        return;
    }
    Expr keep;
    if (e.op == Op::Select && e.args[0].op == Op::Number) keep = e.args[0].number != 0 ? e.args[1] : e.args[2];
    else if (e.op == Op::Mul && is_number(e.args[1], 1)) keep = e.args[0];
    else if (e.op == Op::Mul && is_number(e.args[0], 1)) keep = e.args[1];
    else if ((e.op == Op::Div || e.op == Op::Pow) && is_number(e.args[1], 1)) keep = e.args[0];
    else return;
    Expr moved = std::move(keep);
    e = std::move(moved);
}

}  // namespace

Program constant_fold(Program program) {
    // Names currently bound to a number; a reassignment to a non-number forgets the name.
    std::unordered_map<std::string, double> constants;
    for_each_assign(program, [&](Assign& a) {
        rewrite_bottom_up(a.value, [&](Expr& e) { fold(e, constants); });
        if (a.value.op == Op::Number) constants[a.target] = a.value.number;
        else constants.erase(a.target);
    });
    return program;
}

}  // namespace optjit
