// The scalars kernel of a capturable GPU module (compiler/kernel_abi.h): NAME_scalars, one
// thread, which adds 1 to the scalar block's step (programs that skip non-finite steps: commits
// the previous step if it was applied) and computes every launch scalar from the step and the
// hyper-parameters in float64, as the runtime's launch_scalars does on the host
// (ir/semantics.h; exp, log and pow by ElementMath's float64 routines), each rounded to fp32.
#pragma once

#include <llvm/IR/Module.h>

#include "compiler/kernel_abi.h"

namespace optjit {

// Adds NAME_scalars (its arguments: compiler/kernel_abi.h), a GPU kernel, to `module`.
void emit_scalars_kernel(llvm::Module& module, const KernelSpec& spec);

}  // namespace optjit
