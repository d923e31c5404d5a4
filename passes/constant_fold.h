// Constant folding and propagation.
//
// Contract: an operation whose operands are all numbers becomes its value, computed by
// evaluate() (ir/semantics.h) exactly as the reference interpreter computes it, unless the
// value is not finite (1 / 0 stays as written, so the kernel makes the same inf or NaN).
// A temporary bound to a number is substituted into its later uses; `select` with a constant
// condition becomes its chosen branch; x * 1, 1 * x, x / 1 and x ^ 1 become x. Nothing else
// changes (no reassociation: kernels round as the program is written).
#pragma once

#include "ir/program.h"

namespace optjit {

Program constant_fold(Program program);

}  // namespace optjit
