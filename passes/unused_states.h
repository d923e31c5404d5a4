// States a step does not need, and the hyper-parameters that decide it.
//
// torch.optim keeps a state only where the options use it: SGD has no momentum buffer when
// momentum is 0, RMSprop no grad_avg unless centered. A program writes such a choice as a
// `select` on a hyper-parameter, so every state is declared and, with run-time values, stored
// and moved every step: RMSprop's defaults would keep three states where torch keeps one. The
// Optimizer (runtime/optimizer.h) applies this rewrite at construction, where it knows the
// values, unless asked to keep every state.
//
// Contract: a state is needed when its value before the step is read by what the step's new p,
// or a needed state's new value, depends on (a fixed point over the steps). `drop_unused_states`
// compiles in, one at a time in declaration order, each hyper-parameter whose value (the same
// in every group, the program's default where a group gives none) leaves fewer states needed
// once specialized and folded (passes/specialize.h, passes/constant_fold.h). If no state goes
// the program is returned unchanged; else it is the program with those hyper-parameters
// specialized, folded, the unneeded states' declarations removed and the assignments nothing
// reads any more dropped (passes/dead_code.h). An unneeded state that the step still assigns
// once and reads after (its value before the step unread) becomes a temporary; one assigned
// more often stays a state. The parameters' updates are the same as the input's (`0 * x` is
// never folded, so a state read only through it is kept).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ir/program.h"

namespace optjit {

struct UnusedStates {
    Program program;                      // the rewritten program (the input where nothing goes)
    std::map<std::string, double> fixed;  // hyper-parameters compiled in, and their values
    std::vector<std::string> dropped;     // states no longer declared, in declaration order
};

// `group_values`: each group's hyper-parameter values (at least one map; absent names take the
// program's defaults). Throws std::invalid_argument for a name the program lacks.
UnusedStates drop_unused_states(const Program& program, const std::vector<std::map<std::string, double>>& group_values);

}  // namespace optjit
