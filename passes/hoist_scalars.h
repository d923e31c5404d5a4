// Hoisting of per-launch values out of the element loop.
//
// Contract: every expression that depends only on numbers, hyper-parameters and `step` is
// computed once per launch in the scalars section instead of once per element. A temporary
// whose whole value is such an expression moves there; inside per-element expressions, each
// largest such subexpression (an operation, not a bare name or number) becomes a new
// temporary `_sN` in the scalars section. Values that depend on reductions stay in `update`.
// Evaluation order and rounding are unchanged: only where a value is computed moves.
#pragma once

#include "ir/program.h"

namespace optjit {

Program hoist_scalars(Program program);

}  // namespace optjit
