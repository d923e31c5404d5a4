// The meaning of each elementwise operation, in float64. The reference interpreter and
// constant folding both call this, so a folded constant is exactly what the oracle computes.
//   comparisons give 1 or 0 (false with a NaN operand, except !=);
//   select(c, a, b) is a when c != 0;  sign keeps 0, -0 and NaN;  lerp(a, b, t) = a + t (b - a);
//   min and max propagate NaN (as torch.minimum / maximum do) and order -0 below +0.
#pragma once

#include "ir/expr.h"

namespace optjit {

// `op` must not be Number, Ref or a reduction.
double evaluate(Op op, double a, double b = 0, double c = 0);

double nan_min(double a, double b);
double nan_max(double a, double b);

}  // namespace optjit
