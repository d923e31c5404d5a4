// Dead-code elimination.
//
// Contract: removes every assignment whose value is never read before being overwritten or
// the step ends: temporaries nobody uses, and updates of p or a state that a later assignment
// replaces unread. The final values of p and of every state are always kept. Declarations
// are never removed (hyper-parameters are the kernel's interface even when unused).
#pragma once

#include "ir/program.h"

namespace optjit {

Program eliminate_dead_code(Program program);

}  // namespace optjit
