#include "compiler/codegen.h"

#include <stdexcept>

namespace optjit {

void emit_chunk_loop(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* table, llvm::Value* first, llvm::Value* stride,
                     llvm::Value* limit, const std::function<void(const ChunkContext&)>& body) {
    llvm::LLVMContext& ctx = b.getContext();
    llvm::Function* fn = b.GetInsertBlock()->getParent();
    TableLayout layout{int(spec.lowered.states.size())};
    auto block = [&](const char* name) { return llvm::BasicBlock::Create(ctx, name, fn); };
    llvm::BasicBlock* entry = b.GetInsertBlock();
    llvm::BasicBlock* head = block("chunk.head");
    llvm::BasicBlock* find = block("find.tensor");
    llvm::BasicBlock* next_tensor = block("next.tensor");
    llvm::BasicBlock* chunk_block = block("chunk.body");
    llvm::BasicBlock* exit = block("exit");
    b.CreateBr(head);

    b.SetInsertPoint(head);
    llvm::PHINode* chunk = b.CreatePHI(b.getInt64Ty(), 2, "chunk");
    llvm::PHINode* tensor = b.CreatePHI(b.getInt64Ty(), 2, "tensor");
    chunk->addIncoming(first, entry);
    tensor->addIncoming(b.getInt64(0), entry);
    b.CreateCondBr(b.CreateICmpULT(chunk, limit), find, exit);

    b.SetInsertPoint(find);
    llvm::PHINode* t = b.CreatePHI(b.getInt64Ty(), 2, "t");
    t->addIncoming(tensor, head);
    llvm::Value* row = b.CreateGEP(b.getInt64Ty(), table, b.CreateMul(t, b.getInt64(layout.row_words())), "row");
    // The table does not change during a launch.
    auto word = [&b, &ctx, row](int column) -> llvm::Value* {
        auto* load = b.CreateAlignedLoad(b.getInt64Ty(), b.CreateGEP(b.getInt64Ty(), row, b.getInt64(column)), llvm::Align(8));
        load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(ctx, {}));
        return load;
    };
    b.CreateCondBr(b.CreateICmpUGE(chunk, word(layout.chunk_end())), next_tensor, chunk_block);

    b.SetInsertPoint(next_tensor);
    t->addIncoming(b.CreateAdd(t, b.getInt64(1)), next_tensor);
    b.CreateBr(find);

    b.SetInsertPoint(chunk_block);
    llvm::Value* first_element = b.CreateMul(b.CreateSub(chunk, word(layout.chunk_begin())), b.getInt64(chunk_elements(spec)), "base");
    body(ChunkContext{chunk, first_element, word});
    llvm::BasicBlock* latch = b.GetInsertBlock();
    chunk->addIncoming(b.CreateAdd(chunk, stride), latch);
    tensor->addIncoming(t, latch);
    b.CreateBr(head);
    b.SetInsertPoint(exit);
}

std::string kernel_symbol(const KernelSpec& spec) { return "optjit_" + spec.lowered.name; }

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
