#include "passes/dead_code.h"

#include <unordered_set>

namespace optjit {

namespace {

// Walks `assigns` backwards, keeping those whose target is live, and updates `live`.
void sweep(std::vector<Assign>& assigns, std::unordered_set<std::string>& live) {
    std::vector<Assign> kept;
    for (auto it = assigns.rbegin(); it != assigns.rend(); ++it) {
        if (!live.erase(it->target)) continue;
        for_each_node(it->value, [&](const Expr& e) {
            if (e.op == Op::Ref) live.insert(e.name);
        });
        kept.push_back(std::move(*it));
    }
    assigns.assign(std::make_move_iterator(kept.rbegin()), std::make_move_iterator(kept.rend()));
}

}  // namespace

Program eliminate_dead_code(Program program) {
    std::unordered_set<std::string> live{std::string(kParamName)};
    for (const StateDecl& s : program.states) live.insert(s.name);
    sweep(program.update, live);
    sweep(program.scalars, live);
    return program;
}

}  // namespace optjit
