#include "passes/unused_states.h"

#include <algorithm>
#include <set>
#include <stdexcept>

#include "ir/interpreter.h"
#include "passes/constant_fold.h"
#include "passes/dead_code.h"
#include "passes/specialize.h"

namespace optjit {

namespace {

// States whose value before the step `program` reads: a reference to a state before the
// update assigns it.
std::set<std::string> states_read_before_assigned(const Program& program) {
    std::set<std::string> assigned, read;
    for (const Assign& a : program.update) {
        for_each_node(a.value, [&](const Expr& e) {
            if (e.op == Op::Ref && program.state_index(e.name) >= 0 && !assigned.count(e.name)) read.insert(e.name);
        });
        assigned.insert(a.target);
    }
    return read;
}

// The needed states of a folded program (the header's fixed point), from `kept` up: keeping a
// state's new value may make more old values read, never fewer.
std::set<std::string> needed_states(const Program& folded, std::set<std::string> kept = {}) {
    for (;;) {
        std::set<std::string> read = states_read_before_assigned(eliminate_dead_code_keeping(folded, kept));
        read.insert(kept.begin(), kept.end());
        if (read == kept) return kept;
        kept = std::move(read);
    }
}

}  // namespace

UnusedStates drop_unused_states(const Program& program, const std::vector<std::map<std::string, double>>& group_values) {
    for (const auto& values : group_values) hyper_values(program, values);  // names the program lacks
    UnusedStates out{program, {}, {}};
    std::set<std::string> needed = needed_states(constant_fold(program));
    for (const HyperDecl& h : program.hypers) {
        double value = h.value;
        bool same = true;
        for (size_t g = 0; g < group_values.size(); ++g) {
            auto it = group_values[g].find(h.name);
            const double v = it == group_values[g].end() ? h.value : it->second;
            if (g == 0) value = v;
            same &= v == value;
        }
        if (!same) continue;
        std::map<std::string, double> fixed = out.fixed;
        fixed[h.name] = value;
        std::set<std::string> fewer = needed_states(constant_fold(specialize(program, fixed)));
        if (fewer.size() < needed.size()) {
            out.fixed = std::move(fixed);
            needed = std::move(fewer);
        }
    }
    if (needed.size() == program.states.size()) return UnusedStates{program, {}, {}};

    // An unneeded state the step assigns more than once cannot be a temporary: it stays, with
    // its stored value as the program writes it (and what that reads).
    const Program specialized = constant_fold(specialize(program, out.fixed));
    Program folded = eliminate_dead_code_keeping(specialized, needed);
    std::set<std::string> stays = needed;
    for (const StateDecl& s : program.states)
        if (std::count_if(folded.update.begin(), folded.update.end(), [&](const Assign& a) { return a.target == s.name; }) > 1)
            stays.insert(s.name);
    if (stays != needed) {
        needed = needed_states(specialized, stays);
        folded = eliminate_dead_code_keeping(specialized, needed);
    }
    for (const StateDecl& s : program.states)
        if (!needed.count(s.name)) out.dropped.push_back(s.name);  // gone, or a temporary bound once
    if (out.dropped.empty()) return UnusedStates{program, {}, {}};
    std::erase_if(folded.states, [&](const StateDecl& s) { return std::find(out.dropped.begin(), out.dropped.end(), s.name) != out.dropped.end(); });
    out.program = std::move(folded);
    return out;
}

}  // namespace optjit
