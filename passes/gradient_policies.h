// What a training loop asks of every optimizer, written into its program: maximizing instead of
// minimizing, clipping gradients by their global norm, and skipping a step whose gradients are
// not all finite. Each is a rewrite
// of a verified program into a verified program; the Optimizer applies them
// (OptimizerOptions), and `optjit print/compile/run --clip-grad-norm/--skip-nonfinite` show them.
//
// Clipping and skipping add global reductions over the gradient: the step's first reduction
// pass reads the gradients once more (compiler/reductions.h), and a step spans every tensor it
// launches on a device. Maximizing costs nothing.
#pragma once

#include "ir/program.h"

namespace optjit {

// The names the rewrites add (a program that already uses one is refused).
inline constexpr const char* kMaxGradNorm = "max_grad_norm";        // hyper-parameter
inline constexpr const char* kGradNormSquared = "grad_norm_squared";  // global_sum(g * g)
inline constexpr const char* kNonfiniteGrads = "nonfinite_grads";    // global_sum(g not finite)

// torch.optim's `maximize`: every use of `g` reads -g (the optimizer ascends the objective).
Program maximize(Program program);

// Clipping as torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm) before the step: with
// total = sqrt(global_sum(g * g)) over every gradient of the step, every use of `g` reads
// g * min(1, max_grad_norm / (total + 1e-6)). `max_grad_norm` becomes a run-time
// hyper-parameter with default `max_norm`. Its argument is the first of the program's global
// reductions. A program's own reductions over `g` (LAMB's and LARS's norms) then read the
// clipped gradient: they move to the second reduction level, a pass of their own after the
// norm's (ir/analysis.h's reduction_levels).
Program clip_gradients(Program program, double max_norm);

// A step whose gradients hold an infinity or a NaN changes nothing: with n = the count of such
// elements over every gradient of the step (a global reduction), p and every state keep their
// values where n > 0 (a block-quantized state is re-encoded from its own decoded values, which
// gives back its codes and scales). The count is what a mixed-precision loop reads, from the
// device, to lower its loss scale.
Program skip_nonfinite_steps(Program program);

// The policies a step asks for, applied in the one order that composes them: maximize, clip,
// skip (the non-finite count then covers the gradients as given). What optjit::Optimizer,
// the `optjit` tool and the benchmarks use.
struct GradientPolicies {
    bool maximize = false;
    double max_grad_norm = 0;  // > 0: clip_gradients
    bool skip_nonfinite = false;
};
Program apply_gradient_policies(Program program, const GradientPolicies& policies);

}  // namespace optjit
