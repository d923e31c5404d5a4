#include "passes/cse.h"

#include <fmt/format.h>

#include <map>
#include <unordered_map>

#include "ir/printer.h"
#include "passes/rewrite.h"

namespace optjit {

namespace {

// The identity of an expression: its text with every name tagged by which assignment of that
// name it reads ("m@0" is the state as loaded, "m@1" after the first `m = ...`).
class Keys {
public:
    std::string key(const Expr& e) const {
        if (e.op == Op::Number) return print_number(e.number);
        if (e.op == Op::Ref) {
            auto it = versions_.find(e.name);
            return fmt::format("{}@{}", e.name, it == versions_.end() ? 0 : it->second);
        }
        std::string out = fmt::format("{}(", op_info(e.op).spelling);
        for (const Expr& a : e.args) out += key(a) + ",";
        return out + ")";
    }
    void assigned(const std::string& name) { ++versions_[name]; }

private:
    std::unordered_map<std::string, int> versions_;
};

struct Candidate {
    int count = 0;
    int size = 0;
    int section = 0;    // 0: scalars, 1: update (of the first occurrence)
    size_t index = 0;   // statement of the first occurrence
    Expr expr;
};

int size_of(const Expr& e) {
    int n = 1;
    for (const Expr& a : e.args) n += size_of(a);
    return n;
}

// Finds the largest expression that occurs twice or more; false if there is none.
bool largest_repeated(const Program& program, std::string& best_key, Candidate& best) {
    std::map<std::string, Candidate> seen;
    Keys keys;
    const std::vector<Assign>* sections[2] = {&program.scalars, &program.update};
    for (int s = 0; s < 2; ++s) {
        for (size_t i = 0; i < sections[s]->size(); ++i) {
            const Assign& a = (*sections[s])[i];
            for_each_node(a.value, [&](const Expr& e) {
                if (e.op == Op::Number || e.op == Op::Ref) return;
                auto [it, inserted] = seen.try_emplace(keys.key(e));
                if (inserted) it->second = {0, size_of(e), s, i, e};
                ++it->second.count;
            });
            keys.assigned(a.target);
        }
    }
    bool found = false;
    for (auto& [k, c] : seen) {
        if (c.count < 2) continue;
        bool earlier = std::pair(c.section, c.index) < std::pair(best.section, best.index);
        if (!found || c.size > best.size || (c.size == best.size && earlier)) {
            best_key = k;
            best = c;
            found = true;
        }
    }
    return found;
}

void replace(Expr& e, const Keys& keys, const std::string& key, const std::string& name) {
    if (e.op == Op::Number || e.op == Op::Ref) return;
    if (keys.key(e) == key) {
        e = Expr::ref(name, e.loc);
        return;
    }
    for (Expr& a : e.args) replace(a, keys, key, name);
}

}  // namespace

Program eliminate_common_subexpressions(Program program) {
    FreshNames names(program, "_c");
    std::string key;
    Candidate c;
    while (largest_repeated(program, key, c)) {
        std::string name = names.next();
        Keys keys;
        std::vector<Assign>* sections[2] = {&program.scalars, &program.update};
        for (auto* section : sections)
            for (Assign& a : *section) {
                replace(a.value, keys, key, name);
                keys.assigned(a.target);
            }
        auto& section = *sections[c.section];
        Loc loc = c.expr.loc;
        section.insert(section.begin() + c.index, Assign{name, std::move(c.expr), loc});
        c = {};
    }
    return program;
}

}  // namespace optjit
