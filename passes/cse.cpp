#include "passes/cse.h"

#include <bit>
#include <fmt/format.h>

#include <unordered_map>
#include <unordered_set>

#include "passes/rewrite.h"

namespace optjit {

namespace {

// Value numbering: equal numbers mean the same operation on the same operands, reading the
// same assignment of every name ("m" before and after `m = ...` are different values).
class ValueNumbers {
public:
    // Numbers every node of `e` (children first) into `ids`.
    int number(const Expr& e, std::unordered_map<const Expr*, int>& ids) {
        std::string key = fmt::format("{}", int(e.op));
        if (e.op == Op::Number) key += fmt::format(":{}", std::bit_cast<uint64_t>(e.number));
        if (e.op == Op::Ref) {
            auto it = versions_.find(e.name);
            key += fmt::format(":{}@{}", e.name, it == versions_.end() ? 0 : it->second);
        }
        for (const Expr& a : e.args) key += fmt::format(",{}", number(a, ids));
        auto [it, inserted] = table_.try_emplace(std::move(key), int(table_.size()));
        ids[&e] = it->second;
        return it->second;
    }
    void assigned(const std::string& name) { ++versions_[name]; }

private:
    std::unordered_map<std::string, int> table_;
    std::unordered_map<std::string, int> versions_;
};

bool is_leaf(const Expr& e) { return e.op == Op::Number || e.op == Op::Ref; }

// Counts how often each value is computed once repeated ones are computed once: a repeat
// occurrence is not descended into, so what only repeats inside it counts once.
void count(const Expr& e, const std::unordered_map<const Expr*, int>& ids, std::unordered_map<int, int>& counts) {
    if (is_leaf(e)) return;
    if (!is_reduction(e.op) && ++counts[ids.at(&e)] > 1) return;
    for (const Expr& a : e.args) count(a, ids, counts);
}

class Rewriter {
public:
    Rewriter(const Program& program, std::unordered_set<int> repeated) : names_(program, "_c"), repeated_(std::move(repeated)) {}

    // Replaces repeated values in `e` by temporaries, appending new definitions to `defs`.
    void rewrite(Expr& e, const std::unordered_map<const Expr*, int>& ids, std::vector<Assign>& defs) {
        if (is_leaf(e)) return;
        int id = ids.at(&e);
        if (!repeated_.count(id)) {
            for (Expr& a : e.args) rewrite(a, ids, defs);
            return;
        }
        auto named = name_of_.find(id);
        if (named == name_of_.end()) {
            for (Expr& a : e.args) rewrite(a, ids, defs);  // inner repeats are defined first
            std::string name = names_.next();
            named = name_of_.emplace(id, name).first;
            defs.push_back({name, std::move(e), e.loc});
        }
        Loc loc = e.loc;
        e = Expr::ref(named->second, loc);
    }

private:
    FreshNames names_;
    std::unordered_set<int> repeated_;
    std::unordered_map<int, std::string> name_of_;
};

}  // namespace

Program eliminate_common_subexpressions(Program program) {
    std::vector<Assign>* sections[2] = {&program.scalars, &program.update};
    std::unordered_map<int, int> counts;
    {
        ValueNumbers numbers;
        for (auto* section : sections)
            for (const Assign& a : *section) {
                std::unordered_map<const Expr*, int> ids;
                numbers.number(a.value, ids);
                count(a.value, ids, counts);
                numbers.assigned(a.target);
            }
    }
    std::unordered_set<int> repeated;
    for (auto [id, n] : counts)
        if (n > 1) repeated.insert(id);
    if (repeated.empty()) return program;

    Rewriter rewriter(program, std::move(repeated));
    ValueNumbers numbers;  // numbered again in the same order, so ids match the first walk
    for (auto* section : sections) {
        std::vector<Assign> out;
        for (Assign& a : *section) {
            std::unordered_map<const Expr*, int> ids;
            numbers.number(a.value, ids);
            numbers.assigned(a.target);
            std::vector<Assign> defs;
            rewriter.rewrite(a.value, ids, defs);
            for (Assign& d : defs) out.push_back(std::move(d));
            out.push_back(std::move(a));
        }
        *section = std::move(out);
    }
    return program;
}

}  // namespace optjit
