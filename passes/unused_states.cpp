#include "passes/unused_states.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "ir/interpreter.h"
#include "ir/verifier.h"
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

// The states a folded program keeps: the needed ones, and those the step still assigns more
// than once once the rest is dropped (they cannot be temporaries; keeping one keeps what its
// value reads, which may keep another assigned twice: a fixed point too).
std::set<std::string> kept_states(const Program& folded) {
    std::set<std::string> kept = needed_states(folded);
    for (;;) {
        const Program swept = eliminate_dead_code_keeping(folded, kept);
        std::set<std::string> more = kept;
        for (const StateDecl& s : folded.states)
            if (std::count_if(swept.update.begin(), swept.update.end(), [&](const Assign& a) { return a.target == s.name; }) > 1)
                more.insert(s.name);
        if (more == kept) return kept;
        kept = needed_states(folded, std::move(more));
    }
}

}  // namespace

std::string fixed_text(const UnusedStates& unused) {
    std::string out;
    for (const auto& [name, value] : unused.fixed) out += fmt::format("{}{} = {}", out.empty() ? "" : ", ", name, value);
    return out;
}

UnusedStates drop_unused_states(const Program& program, const std::vector<std::map<std::string, double>>& group_values) {
    if (group_values.empty()) throw std::invalid_argument("drop_unused_states needs the values of at least one group");
    for (const auto& values : group_values) hyper_values(program, values);  // names the program lacks
    const UnusedStates unchanged{program, {}, {}};
    UnusedStates out = unchanged;
    std::set<std::string> kept = kept_states(constant_fold(program));
    for (const HyperDecl& h : program.hypers) {
        const auto value_in = [&](const std::map<std::string, double>& values) {
            auto it = values.find(h.name);
            return it == values.end() ? h.value : it->second;
        };
        const double value = value_in(group_values.front());
        // A program's numbers are finite (the verifier's rule): an infinite value stays run-time.
        if (!std::isfinite(value) ||
            !std::all_of(group_values.begin(), group_values.end(), [&](const auto& values) { return value_in(values) == value; }))
            continue;
        std::map<std::string, double> fixed = out.fixed;
        fixed[h.name] = value;
        std::set<std::string> fewer = kept_states(constant_fold(specialize(program, fixed)));
        if (fewer.size() < kept.size()) {
            out.fixed = std::move(fixed);
            kept = std::move(fewer);
        }
    }
    if (kept.size() == program.states.size()) return unchanged;

    out.program = eliminate_dead_code_keeping(constant_fold(specialize(program, out.fixed)), kept);
    for (const StateDecl& s : program.states)
        if (!kept.count(s.name)) out.dropped.push_back(s.name);  // gone, or a temporary bound once
    std::erase_if(out.program.states, [&](const StateDecl& s) { return !kept.count(s.name); });
    if (std::vector<Diagnostic> errors = verify(out.program); !errors.empty())
        throw std::logic_error(fmt::format("internal error: dropping the unused states of '{}' made an invalid program: {}", program.name,
                                           errors.front().message));
    return out;
}

}  // namespace optjit
