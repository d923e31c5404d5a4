// LLVM plumbing shared by the targets: target machines, the optimization pipeline, the
// legality check NVPTX needs, and text emission (LLVM IR, PTX, host assembly).
#pragma once

#include <llvm/IR/Module.h>
#include <llvm/Target/TargetMachine.h>

#include <memory>
#include <string>

#include "compiler/target.h"

namespace optjit {

// Registers the NVPTX and native targets with LLVM (once per process; thread-safe).
void initialize_llvm();

std::unique_ptr<llvm::TargetMachine> make_target_machine(const Target& target);

// Verifies the module and runs LLVM's O3 pipeline for the target machine.
void optimize_module(llvm::Module& module, llvm::TargetMachine& machine);

// Throws std::invalid_argument naming the first call the NVPTX back end cannot lower (LLVM 19
// aborts the process on some, such as llvm.pow.f32, instead of reporting an error).
void check_nvptx_legality(const llvm::Module& module);

// Fast math: lets LLVM's Reassociate regroup a floating-point product (an instruction) with the
// reassociable products around it (reassoc, and nsz, which the pass asks for too; contract
// kept). Returns it.
llvm::Value* reassociable(llvm::Value* product);

std::string module_text(const llvm::Module& module);
// PTX for NVPTX machines, assembly for the host.
std::string emit_assembly(llvm::Module& module, llvm::TargetMachine& machine);

}  // namespace optjit
