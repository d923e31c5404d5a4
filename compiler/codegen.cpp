#include "compiler/codegen.h"

#include <stdexcept>

namespace optjit {

void emit_chunk_loop(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* table, llvm::Value* first, llvm::Value* stride,
                     llvm::Value* limit, const std::function<void(const ChunkContext&)>& body) {
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
    auto [t, row] = emit_find_tensor(b, spec, table, chunk, tensor);
    auto word = [&b, row](int column) { return emit_row_word(b, row, column); };
    body(ChunkContext{chunk, emit_chunk_first_element(b, spec, row, chunk), word});
    llvm::BasicBlock* latch = b.GetInsertBlock();
    chunk->addIncoming(b.CreateAdd(chunk, stride), latch);
    tensor->addIncoming(t, latch);
    b.CreateBr(head);
    b.SetInsertPoint(exit);
}

llvm::Value* emit_row_word(llvm::IRBuilder<>& b, llvm::Value* row, int column) {
    auto* load = b.CreateAlignedLoad(b.getInt64Ty(), b.CreateGEP(b.getInt64Ty(), row, b.getInt64(column)), llvm::Align(8));
    load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(b.getContext(), {}));  // the table does not change during a launch
    return load;
}

std::pair<llvm::Value*, llvm::Value*> emit_find_tensor(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* table, llvm::Value* chunk,
                                                       llvm::Value* t_start) {
    TableLayout layout = table_layout(spec);
    llvm::Function* fn = b.GetInsertBlock()->getParent();
    llvm::BasicBlock* before = b.GetInsertBlock();
    llvm::BasicBlock* find = llvm::BasicBlock::Create(b.getContext(), "find.tensor", fn);
    llvm::BasicBlock* found = llvm::BasicBlock::Create(b.getContext(), "found.tensor", fn);
    b.CreateBr(find);
    b.SetInsertPoint(find);
    llvm::PHINode* t = b.CreatePHI(b.getInt64Ty(), 2, "t");
    t->addIncoming(t_start, before);
    llvm::Value* row = b.CreateGEP(b.getInt64Ty(), table, b.CreateMul(t, b.getInt64(layout.row_words())), "row");
    llvm::Value* past = b.CreateICmpUGE(chunk, emit_row_word(b, row, layout.chunk_end()));
    t->addIncoming(b.CreateAdd(t, b.getInt64(1)), find);
    b.CreateCondBr(past, find, found);
    b.SetInsertPoint(found);
    return {t, row};
}

llvm::Value* emit_chunk_first_element(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* row, llvm::Value* chunk) {
    TableLayout layout = table_layout(spec);
    return b.CreateMul(b.CreateSub(chunk, emit_row_word(b, row, layout.chunk_begin())), b.getInt64(chunk_elements(spec)), "base");
}

std::string kernel_symbol(const KernelSpec& spec) { return "optjit_" + spec.lowered.name; }
std::string statistics_symbol(const KernelSpec& spec) { return kernel_symbol(spec) + "_statistics"; }

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
