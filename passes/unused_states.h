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
// or a needed state's new value, depends on (a fixed point over the steps); a state the step
// would still assign more than once without the rest is kept too (a temporary is bound once).
// `drop_unused_states` compiles in, one at a time in declaration order, each hyper-parameter
// whose value (the same finite value in every group, the program's default where a group gives
// none) leaves fewer states kept once specialized and folded (passes/specialize.h,
// passes/constant_fold.h); a choice two hyper-parameters make together is not found. If no
// state goes the program is returned unchanged; else it is the program with those
// hyper-parameters specialized, folded, the other states' declarations removed and the
// assignments nothing reads any more dropped (passes/dead_code.h): a dropped state the step
// still assigns (once) and reads after is a temporary. The parameters' updates are the same as
// the input's (`0 * x` is never folded, so a state read only through it is kept).
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

// "centered = 0, momentum = 0": the compiled-in hyper-parameters, for sentences ("" for none).
std::string fixed_text(const UnusedStates& unused);

// `group_values`: each group's hyper-parameter values (absent names take the program's
// defaults). Throws std::invalid_argument for a name the program lacks or no group at all.
UnusedStates drop_unused_states(const Program& program, const std::vector<std::map<std::string, double>>& group_values);

}  // namespace optjit
