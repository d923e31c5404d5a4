// Dead-code elimination.
//
// Contract: removes every assignment whose value is never read before being overwritten or
// the step ends: temporaries nobody uses, and updates of p or a state that a later assignment
// replaces unread. The final values of p and of every state are always kept. Declarations
// are never removed (hyper-parameters are the kernel's interface even when unused).
#pragma once

#include <set>
#include <string>

#include "ir/program.h"

namespace optjit {

Program eliminate_dead_code(Program program);

// As above, but of the states only `kept_states` are read after the step: the others' updates
// go too where nothing else in the step reads them (passes/unused_states.h).
Program eliminate_dead_code_keeping(Program program, const std::set<std::string>& kept_states);

}  // namespace optjit
