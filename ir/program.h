// An optimizer program: declarations and an ordered list of assignments.
//
//   optimizer NAME
//     hyper NAME = NUMBER     run-time scalar with a default value (until specialized)
//     state NAME = NUMBER     per-element optimizer state with its initial value
//     scalars                 optional; computed once per launch (the hoisting pass fills it)
//       NAME = EXPR
//     update                  per element, in order
//       NAME = EXPR
//
// Implicit names: `p` (parameter, per element, assignable), `g` (gradient, read-only) and
// `step` (the 1-based step counter, read-only scalar). Assigning `p` or a state updates it;
// the last assignment is what gets stored. Any other assigned name is a temporary, bound once.
// Storage formats are not part of the program: see ir/storage.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ir/expr.h"

namespace optjit {

inline constexpr std::string_view kParamName = "p";
inline constexpr std::string_view kGradName = "g";
inline constexpr std::string_view kStepName = "step";

struct HyperDecl {
    std::string name;
    double value = 0;  // default, used when the caller does not give one
    Loc loc;
    friend bool operator==(const HyperDecl& a, const HyperDecl& b);
};

struct StateDecl {
    std::string name;
    double init = 0;  // every element starts at this value
    Loc loc;
    friend bool operator==(const StateDecl& a, const StateDecl& b);
};

struct Assign {
    std::string target;
    Expr value;
    Loc loc;  // of the target name
    friend bool operator==(const Assign& a, const Assign& b) { return a.target == b.target && a.value == b.value; }
};

struct Program {
    std::string name;
    Loc name_loc;
    std::vector<HyperDecl> hypers;
    std::vector<StateDecl> states;
    std::vector<Assign> scalars;  // once per launch: only constants, hypers, step and earlier scalars
    std::vector<Assign> update;   // per element

    int hyper_index(std::string_view name) const;  // -1 if none
    int state_index(std::string_view name) const;   // -1 if none

    // Equality of meaning-carrying content; source locations are ignored.
    friend bool operator==(const Program& a, const Program& b);
};

}  // namespace optjit
