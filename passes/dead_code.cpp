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

Program eliminate_dead_code_keeping(Program program, const std::set<std::string>& kept_states) {
    std::unordered_set<std::string> live{std::string(kParamName)};
    live.insert(kept_states.begin(), kept_states.end());
    sweep(program.update, live);
    sweep(program.scalars, live);
    return program;
}

Program eliminate_dead_code(Program program) {
    std::set<std::string> states;
    for (const StateDecl& s : program.states) states.insert(s.name);
    return eliminate_dead_code_keeping(std::move(program), states);
}

}  // namespace optjit
