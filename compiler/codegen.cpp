#include "compiler/codegen.h"

#include <llvm/IR/MDBuilder.h>

#include <stdexcept>

namespace optjit {

void emit_chunk_loop(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* table, llvm::Value* num_tensors, llvm::Value* first,
                     llvm::Value* stride, llvm::Value* limit, const std::function<void(const ChunkContext&)>& body) {
    llvm::LLVMContext& ctx = b.getContext();
    llvm::Function* fn = b.GetInsertBlock()->getParent();
    llvm::BasicBlock* entry = b.GetInsertBlock();
    llvm::BasicBlock* head = llvm::BasicBlock::Create(ctx, "chunk.head", fn);
    llvm::BasicBlock* chunk_block = llvm::BasicBlock::Create(ctx, "chunk.body", fn);
    llvm::BasicBlock* exit = llvm::BasicBlock::Create(ctx, "exit", fn);
    b.CreateBr(head);

    b.SetInsertPoint(head);
    llvm::PHINode* chunk = b.CreatePHI(b.getInt64Ty(), 2, "chunk");
    llvm::PHINode* tensor = b.CreatePHI(b.getInt64Ty(), 2, "tensor");
    chunk->addIncoming(first, entry);
    tensor->addIncoming(b.getInt64(0), entry);
    b.CreateCondBr(b.CreateICmpULT(chunk, limit), chunk_block, exit);

    b.SetInsertPoint(chunk_block);
    auto [t, row] = emit_find_tensor(b, spec, table, num_tensors, chunk, tensor);
    auto word = [&b, row](int column) { return emit_row_word(b, row, column); };
    body(ChunkContext{chunk, t, emit_chunk_first_element(b, spec, row, chunk), word});
    llvm::BasicBlock* latch = b.GetInsertBlock();
    chunk->addIncoming(b.CreateAdd(chunk, stride), latch);
    tensor->addIncoming(t, latch);
    b.CreateBr(head);
    b.SetInsertPoint(exit);
}

llvm::Value* emit_row(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* table, llvm::Value* t) {
    return b.CreateGEP(b.getInt64Ty(), table, b.CreateMul(t, b.getInt64(table_layout(spec).row_words())), "row");
}

llvm::Value* emit_row_word(llvm::IRBuilder<>& b, llvm::Value* row, int column) {
    auto* load = b.CreateAlignedLoad(b.getInt64Ty(), b.CreateGEP(b.getInt64Ty(), row, b.getInt64(column)), llvm::Align(8));
    load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(b.getContext(), {}));  // the table does not change during a launch
    return load;
}

std::pair<llvm::Value*, llvm::Value*> emit_find_tensor(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* table,
                                                       llvm::Value* num_tensors, llvm::Value* chunk, llvm::Value* t_start) {
    // A block's chunks stay in one tensor for a while, then usually move to the next; past
    // that, a binary search over the rows, so that a launch of thousands of small tensors costs
    // each block a logarithm of their count, not a walk through every row (a chain of dependent
    // loads: 1.3 ms for 4096 tensors on an H200).
    TableLayout layout = table_layout(spec);
    llvm::Function* fn = b.GetInsertBlock()->getParent();
    llvm::LLVMContext& ctx = b.getContext();
    auto row_of = [&](llvm::Value* t) { return emit_row(b, spec, table, t); };
    auto past_end = [&](llvm::Value* t) { return b.CreateICmpUGE(chunk, emit_row_word(b, row_of(t), layout.chunk_end())); };
    llvm::BasicBlock* next = llvm::BasicBlock::Create(ctx, "find.next", fn);
    llvm::BasicBlock* search = llvm::BasicBlock::Create(ctx, "find.search", fn);
    llvm::BasicBlock* halve = llvm::BasicBlock::Create(ctx, "find.halve", fn);
    llvm::BasicBlock* found = llvm::BasicBlock::Create(ctx, "found.tensor", fn);

    // Weights keep the common case, the same tensor, on the fall-through path.
    llvm::MDNode* rarely = llvm::MDBuilder(ctx).createBranchWeights(1, 1000);
    llvm::BasicBlock* here = b.GetInsertBlock();
    b.CreateCondBr(past_end(t_start), next, found, rarely);
    b.SetInsertPoint(next);
    llvm::Value* t_next = b.CreateAdd(t_start, b.getInt64(1));
    llvm::Value* last = b.CreateSub(b.CreateZExt(num_tensors, b.getInt64Ty()), b.getInt64(1));
    b.CreateCondBr(past_end(t_next), search, found, rarely);

    // Rows [lo, hi]: chunk is at or past lo's end and before hi's (the last row ends at the
    // launch's chunk count, which every chunk is below).
    b.SetInsertPoint(search);
    llvm::PHINode* lo = b.CreatePHI(b.getInt64Ty(), 2, "lo");
    llvm::PHINode* hi = b.CreatePHI(b.getInt64Ty(), 2, "hi");
    lo->addIncoming(t_next, next);
    hi->addIncoming(last, next);
    b.CreateCondBr(b.CreateICmpUGT(b.CreateSub(hi, lo), b.getInt64(1)), halve, found);
    b.SetInsertPoint(halve);
    llvm::Value* mid = b.CreateLShr(b.CreateAdd(lo, hi), b.getInt64(1));
    llvm::Value* past = past_end(mid);
    lo->addIncoming(b.CreateSelect(past, mid, lo), halve);
    hi->addIncoming(b.CreateSelect(past, hi, mid), halve);
    b.CreateBr(search);

    b.SetInsertPoint(found);
    llvm::PHINode* t = b.CreatePHI(b.getInt64Ty(), 3, "t");
    t->addIncoming(t_start, here);
    t->addIncoming(t_next, next);
    t->addIncoming(hi, search);
    return {t, row_of(t)};
}

llvm::Value* emit_chunk_first_element(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* row, llvm::Value* chunk) {
    TableLayout layout = table_layout(spec);
    return b.CreateMul(b.CreateSub(chunk, emit_row_word(b, row, layout.chunk_begin())), b.getInt64(chunk_elements(spec)), "base");
}

std::string kernel_symbol(const KernelSpec& spec) { return "optjit_" + spec.lowered.name; }
std::string statistics_symbol(const KernelSpec& spec) { return kernel_symbol(spec) + "_statistics"; }
std::string scalars_symbol(const KernelSpec& spec) { return kernel_symbol(spec) + "_scalars"; }
std::string reductions_symbol(const KernelSpec& spec, int level) {
    return kernel_symbol(spec) + "_reductions" + (level > 1 ? "_" + std::to_string(level) : "");
}

std::unique_ptr<llvm::Module> generate_kernel(llvm::LLVMContext& context, const KernelSpec& spec) {
    std::string unsupported = check_storage(spec.storage, spec.lowered);
    if (!unsupported.empty()) throw std::invalid_argument(unsupported);
    auto module = std::make_unique<llvm::Module>(kernel_symbol(spec), context);
    module->setTargetTriple(spec.target.triple());
    if (spec.target.is_gpu()) generate_nvptx_kernel(*module, spec);
    else generate_host_kernel(*module, spec);
    return module;
}

}  // namespace optjit
