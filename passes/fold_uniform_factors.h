// Gathering of a product's launch-uniform factors, for fast math only.
//
// Contract: with `fast_math` (PassOptions::fast_math, set by compiler/compile.h's lower() where
// the kernel's MathMode resolves to Fast), a division of a per-element value by a launch-uniform
// one (numbers, hyper-parameters, step, and what depends only on them) becomes a
// multiplication by its reciprocal, and a product's launch-uniform factors are multiplied
// together first, after its per-element ones, so that hoist-scalars computes them once a launch
// in float64:
//   lr * (m / (1 - beta1 ^ step))   ->   m * (lr * (1 / (1 - beta1 ^ step)))
// A product with fewer than two uniform factors keeps its order. This changes
// rounding (a product's association), which fast math allows; without `fast_math` the program
// is returned unchanged. Runs before hoist-scalars.
#pragma once

#include "ir/program.h"

namespace optjit {

Program fold_uniform_factors(Program program, bool fast_math);

}  // namespace optjit
