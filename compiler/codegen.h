// LLVM IR generation for a kernel: a lowered program (after passes/pipeline.h) and a storage
// signature in, an LLVM module holding one kernel out, following compiler/kernel_abi.h.
#pragma once

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <functional>
#include <memory>
#include <string>

#include "compiler/kernel_abi.h"
#include "compiler/target.h"
#include "ir/program.h"
#include "ir/storage.h"

namespace optjit {

// The kernel's symbol name in its module: "optjit_" + the program's name.
std::string kernel_symbol(const KernelSpec& spec);
// The symbol of its statistics pass, in the same module (kernels with rank-1 states only).
std::string statistics_symbol(const KernelSpec& spec);
std::string scalars_symbol(const KernelSpec& spec);  // capturable kernels' NAME_scalars
// The reduction pass of `level` (1, 2, ...; programs with reductions): NAME_reductions, then
// NAME_reductions_2, ...
std::string reductions_symbol(const KernelSpec& spec, int level);

// Throws std::invalid_argument, with a sentence naming the program, for a storage signature
// the program cannot use.
std::unique_ptr<llvm::Module> generate_kernel(llvm::LLVMContext& context, const KernelSpec& spec);

// What both back ends share: the walk over a launch's chunks (compiler/kernel_abi.h).
// Emits: for chunk = first; chunk < limit; chunk += stride, finding the tensor row that holds
// each chunk (the tensor index only moves forward), then calls `body` with the builder in the
// chunk's block. `body` may add blocks; it must leave the builder in one that falls through
// to the next chunk. On return the builder is in the block after the loop.
struct ChunkContext {
    llvm::Value* chunk;                     // i64
    llvm::Value* tensor;                    // i64: the index of the chunk's tensor in the table
    llvm::Value* first_element;             // i64: the chunk's first element in its tensor
    std::function<llvm::Value*(int)> word;  // loads a word of the tensor's table row
};
// `table` and `num_tensors` (i32) are the kernel's first two arguments (compiler/kernel_abi.h).
void emit_chunk_loop(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* table, llvm::Value* num_tensors, llvm::Value* first,
                     llvm::Value* stride, llvm::Value* limit, const std::function<void(const ChunkContext&)>& body);

// The row of the tensor holding `chunk`, searching forward from tensor `t_start` (both i64):
// that tensor, the next, or a binary search over the rest of the table. The builder ends in
// the block after the search. Returns {tensor index, row pointer}.
std::pair<llvm::Value*, llvm::Value*> emit_find_tensor(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* table,
                                                       llvm::Value* num_tensors, llvm::Value* chunk, llvm::Value* t_start);
// The row of tensor `t` (i64) of the table.
llvm::Value* emit_row(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* table, llvm::Value* t);
// Loads word `column` of a table row (invariant for the launch).
llvm::Value* emit_row_word(llvm::IRBuilder<>& b, llvm::Value* row, int column);
// The first element, in its tensor, of `chunk` in the tensor of `row`.
llvm::Value* emit_chunk_first_element(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* row, llvm::Value* chunk);

// Per-target halves of generate_kernel (compiler/codegen_nvptx.cpp, compiler/codegen_host.cpp).
void generate_nvptx_kernel(llvm::Module& module, const KernelSpec& spec);
void generate_host_kernel(llvm::Module& module, const KernelSpec& spec);

}  // namespace optjit
