// Small helpers the passes share for walking and rewriting programs.
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>

#include "ir/analysis.h"
#include "ir/program.h"

namespace optjit {

// Fixed for the launch (numbers, hyper-parameters, step and what depends only on them, as
// `scope` sees it) and not reading p or a state (which may hold a per-launch value after an
// assignment like `p = 0`, but are per-element inputs in the scalars section): what
// hoist-scalars moves out of the element loop.
bool is_per_launch(const Program& program, const Scope& scope, const Expr& e);

// Calls fn(node) on every node of `e`, children before parents; fn may replace the node.
template <class Fn>
void rewrite_bottom_up(Expr& e, Fn&& fn) {
    for (Expr& a : e.args) rewrite_bottom_up(a, fn);
    fn(e);
}

// Calls fn(assign) for every assignment, scalars section first.
template <class Fn>
void for_each_assign(Program& program, Fn&& fn) {
    for (Assign& a : program.scalars) fn(a);
    for (Assign& a : program.update) fn(a);
}

// Names of the form `prefix` + number that the program (as it was when this was made) does
// not use anywhere, one new one per call.
class FreshNames {
public:
    FreshNames(const Program& program, std::string_view prefix);
    std::string next();

private:
    std::unordered_set<std::string> used_;
    std::string prefix_;
    int counter_ = 0;
};

}  // namespace optjit
