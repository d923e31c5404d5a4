// What a value varies with, and which names are visible at a point of a program.
//
// The verifier, the passes, the interpreter and the code generators all walk a program the
// same way: statement by statement, binding each target to the kind of value it now holds.
// Scope is that walk's state.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ir/program.h"

namespace optjit {

// Ordered: combining values takes the largest.
enum class Varies : uint8_t {
    Constant,  // numbers only
    Launch,    // hyper-parameters and step: fixed for a launch, known before any element
    Global,    // depends on a global reduction: one value per step
    Tensor,    // depends on a tensor reduction: one value per tensor
    Element,   // per element (p, g, states)
};

struct ValueInfo {
    Varies varies = Varies::Constant;
};

enum class NameKind { Param, Grad, Step, Hyper, State, Local };

class Scope {
public:
    explicit Scope(const Program& program);

    struct Entry {
        NameKind kind;
        ValueInfo info;
    };
    const Entry* find(std::string_view name) const;
    // Records an assignment; a new name becomes a Local.
    void bind(const std::string& name, ValueInfo info);
    // What `e` varies with in this scope; unknown names count as per-element values.
    ValueInfo info(const Expr& e) const;

private:
    std::unordered_map<std::string, Entry> names_;
};

// True for the names a program can assign as updates (p and states), as opposed to locals.
bool is_updatable(const Program& program, std::string_view name);

// A reduction of a program's update section, and its slot: its index among the program's
// reductions of the same scope (global_*: one value per step; tensor_*: one per tensor).
struct Reduction {
    const Expr* node;  // points into the program
    Op op;
    int slot;
};
// Every reduction of `program`'s update, in statement order (a reduction before those nested
// in its argument). Code generation, the runtime and the interpreter's report all number them
// this way.
std::vector<Reduction> reductions(const Program& program);
int global_reduction_count(const Program& program);
int tensor_reduction_count(const Program& program);
// For each reduction (reductions()' order), the inputs (p, g and states, by name, as the step
// starts) its argument reads, directly or through earlier assignments: what a reduction pass
// must load, and whether a reduction depends on the gradient.
std::vector<std::set<std::string>> reduction_inputs(const Program& program);
// For each reduction (reductions()' order), its level: a step runs one reduction pass per
// level, in order, each reading the slots of the passes before it. A reduction comes after
// every reduction its argument reads (directly or through names): clipping's global norm is
// level 1, LAMB's norm of the clipped update level 2. Within that, it goes to the latest pass
// that the reductions reading it allow and that already loads all its argument reads (LAMB's
// norm of p joins level 2, which reads p, rather than add a read of p to level 1).
std::vector<int> reduction_levels(const Program& program);
int reduction_level_count(const Program& program);  // the highest level; 0 without reductions

}  // namespace optjit
