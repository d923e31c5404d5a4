#include "passes/rewrite.h"


namespace optjit {

bool is_per_launch(const Program& program, const Scope& scope, const Expr& e) {
    if (scope.info(e).varies > Varies::Launch) return false;
    return !any_node(e, [&](const Expr& n) { return n.op == Op::Ref && is_updatable(program, n.name); });
}

FreshNames::FreshNames(const Program& program, std::string_view prefix) : prefix_(prefix) {
    for (const HyperDecl& h : program.hypers) used_.insert(h.name);
    for (const StateDecl& s : program.states) used_.insert(s.name);
    for (const auto* section : {&program.scalars, &program.update})
        for (const Assign& a : *section) used_.insert(a.target);
}

std::string FreshNames::next() {
    for (;;) {
        std::string name = prefix_ + std::to_string(counter_++);
        if (used_.insert(name).second) return name;
    }
}

}  // namespace optjit
