// LLVM IR generation for a kernel: a lowered program (after passes/pipeline.h) and a storage
// signature in, an LLVM module holding one kernel out, following compiler/kernel_abi.h.
#pragma once

#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <memory>
#include <string>

#include "compiler/kernel_abi.h"
#include "compiler/target.h"
#include "ir/program.h"
#include "ir/storage.h"

namespace optjit {

// The kernel's symbol name in its module: "optjit_" + the program's name.
std::string kernel_symbol(const KernelSpec& spec);

// Throws std::invalid_argument, with a sentence naming the program, for what code generation
// cannot do yet (reductions, block-quantized formats).
std::unique_ptr<llvm::Module> generate_kernel(llvm::LLVMContext& context, const KernelSpec& spec);

// Per-target halves of generate_kernel (compiler/codegen_nvptx.cpp, compiler/codegen_host.cpp).
void generate_nvptx_kernel(llvm::Module& module, const KernelSpec& spec);
void generate_host_kernel(llvm::Module& module, const KernelSpec& spec);

}  // namespace optjit
