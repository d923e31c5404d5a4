// The host kernel: a worker thread calls it with its range of chunks (compiler/kernel_abi.h).
// Each chunk runs a plain element loop in a separate function whose array arguments are
// `noalias`, so LLVM's loop vectorizer turns it into the host's widest vectors.
#include "compiler/codegen.h"
#include "compiler/element_math.h"
#include "compiler/kernel_abi.h"
#include "ir/numeric.h"

namespace optjit {

namespace {

class HostKernel {
public:
    HostKernel(llvm::Module& module, const KernelSpec& spec)
        : module_(module), spec_(spec), ctx_(module.getContext()), b_(ctx_), layout_{int(spec.lowered.states.size())} {
        types_.push_back(spec.storage.param);
        types_.push_back(spec.storage.grad);
        for (const StateDecl& s : spec.lowered.states) types_.push_back(state_dtype(spec.storage.state(s.name).format));
    }

    void generate() {
        llvm::Function* chunk = chunk_function();
        llvm::Type* ptr = b_.getPtrTy();
        auto* fn = llvm::Function::Create(
            llvm::FunctionType::get(b_.getVoidTy(), {ptr, b_.getInt32Ty(), b_.getInt64Ty(), b_.getInt64Ty(), ptr}, false),
            llvm::GlobalValue::ExternalLinkage, kernel_symbol(spec_), module_);
        fn->addFnAttr(llvm::Attribute::NoUnwind);
        llvm::Value* table = fn->getArg(0);
        llvm::Value* chunk_first = fn->getArg(2);
        llvm::Value* chunk_last = fn->getArg(3);
        llvm::Value* scalar_array = fn->getArg(4);
        table->setName("table");
        scalar_array->setName("scalars");
        auto block = [&](const char* name) { return llvm::BasicBlock::Create(ctx_, name, fn); };
        llvm::BasicBlock* entry = block("entry");
        llvm::BasicBlock* head = block("chunk.head");
        llvm::BasicBlock* find = block("find.tensor");
        llvm::BasicBlock* next_tensor = block("next.tensor");
        llvm::BasicBlock* body = block("chunk.body");
        llvm::BasicBlock* exit = block("exit");

        b_.SetInsertPoint(entry);
        std::vector<std::string> names = kernel_scalars(spec_.lowered);
        std::vector<llvm::Value*> scalars;
        for (size_t i = 0; i < names.size(); ++i)
            scalars.push_back(b_.CreateAlignedLoad(b_.getFloatTy(), b_.CreateGEP(b_.getFloatTy(), scalar_array, b_.getInt64(i)),
                                                   llvm::Align(4), names[i]));
        b_.CreateBr(head);

        b_.SetInsertPoint(head);
        llvm::PHINode* c = b_.CreatePHI(b_.getInt64Ty(), 2, "chunk");
        llvm::PHINode* tensor = b_.CreatePHI(b_.getInt64Ty(), 2, "tensor");
        c->addIncoming(chunk_first, entry);
        tensor->addIncoming(b_.getInt64(0), entry);
        b_.CreateCondBr(b_.CreateICmpULT(c, chunk_last), find, exit);

        b_.SetInsertPoint(find);
        llvm::PHINode* t = b_.CreatePHI(b_.getInt64Ty(), 2, "t");
        t->addIncoming(tensor, head);
        llvm::Value* row = b_.CreateGEP(b_.getInt64Ty(), table, b_.CreateMul(t, b_.getInt64(layout_.row_words())), "row");
        auto word = [&](int column) {
            return b_.CreateAlignedLoad(b_.getInt64Ty(), b_.CreateGEP(b_.getInt64Ty(), row, b_.getInt64(column)), llvm::Align(8));
        };
        b_.CreateCondBr(b_.CreateICmpUGE(c, word(layout_.chunk_end())), next_tensor, body);

        b_.SetInsertPoint(next_tensor);
        t->addIncoming(b_.CreateAdd(t, b_.getInt64(1)), next_tensor);
        b_.CreateBr(find);

        b_.SetInsertPoint(body);
        std::vector<llvm::Value*> args;
        args.push_back(b_.CreateIntToPtr(word(layout_.p()), ptr));
        args.push_back(b_.CreateIntToPtr(word(layout_.g()), ptr));
        for (int s = 0; s < layout_.num_states; ++s) args.push_back(b_.CreateIntToPtr(word(layout_.state(s)), ptr));
        llvm::Value* n = word(layout_.n());
        int64_t chunk_size = chunk_elements(spec_);
        llvm::Value* begin = b_.CreateMul(b_.CreateSub(c, word(layout_.chunk_begin())), b_.getInt64(chunk_size));
        llvm::Value* end = b_.CreateBinaryIntrinsic(llvm::Intrinsic::smin, b_.CreateAdd(begin, b_.getInt64(chunk_size)), n);
        args.push_back(begin);
        args.push_back(end);
        args.insert(args.end(), scalars.begin(), scalars.end());
        b_.CreateCall(chunk, args);
        c->addIncoming(b_.CreateAdd(c, b_.getInt64(1)), body);
        tensor->addIncoming(t, body);
        b_.CreateBr(head);

        b_.SetInsertPoint(exit);
        b_.CreateRetVoid();
    }

private:
    // void chunk(noalias p, noalias g, noalias states..., i64 begin, i64 end, float scalars...)
    llvm::Function* chunk_function() {
        std::vector<std::string> names = kernel_scalars(spec_.lowered);
        std::vector<llvm::Type*> params(types_.size(), b_.getPtrTy());
        params.push_back(b_.getInt64Ty());
        params.push_back(b_.getInt64Ty());
        params.insert(params.end(), names.size(), b_.getFloatTy());
        auto* fn = llvm::Function::Create(llvm::FunctionType::get(b_.getVoidTy(), params, false), llvm::GlobalValue::InternalLinkage,
                                          kernel_symbol(spec_) + ".chunk", module_);
        fn->addFnAttr(llvm::Attribute::NoUnwind);
        fn->addFnAttr(llvm::Attribute::NoInline);  // keeps `noalias` meaningful for the vectorizer
        for (size_t k = 0; k < types_.size(); ++k) fn->addParamAttr(k, llvm::Attribute::NoAlias);
        std::vector<llvm::Value*> scalars;
        for (size_t i = 0; i < names.size(); ++i) {
            fn->getArg(types_.size() + 2 + i)->setName(names[i]);
            scalars.push_back(fn->getArg(types_.size() + 2 + i));
        }
        ElementMath math(module_, spec_.lowered, spec_.target, spec_.options, scalars);
        llvm::Value* begin = fn->getArg(types_.size());
        llvm::Value* end = fn->getArg(types_.size() + 1);

        auto* entry = llvm::BasicBlock::Create(ctx_, "entry", fn);
        auto* loop = llvm::BasicBlock::Create(ctx_, "element", fn);
        auto* exit = llvm::BasicBlock::Create(ctx_, "exit", fn);
        b_.SetInsertPoint(entry);
        b_.CreateCondBr(b_.CreateICmpSLT(begin, end), loop, exit);
        b_.SetInsertPoint(loop);
        llvm::PHINode* i = b_.CreatePHI(b_.getInt64Ty(), 2, "i");
        i->addIncoming(begin, entry);
        std::vector<llvm::Value*> addrs;
        std::vector<llvm::Value*> values;
        for (size_t k = 0; k < types_.size(); ++k) {
            llvm::Type* elem = math.storage_type(types_[k]);
            addrs.push_back(b_.CreateGEP(elem, fn->getArg(k), i));
            values.push_back(math.to_f32(b_, types_[k], b_.CreateAlignedLoad(elem, addrs.back(), llvm::Align(dtype_bytes(types_[k])))));
        }
        ElementValues in{values[0], values[1], std::vector<llvm::Value*>(values.begin() + 2, values.end())};
        ElementValues out = math.update(b_, in);
        std::vector<llvm::Value*> results{out.p, nullptr};
        results.insert(results.end(), out.states.begin(), out.states.end());
        for (size_t k = 0; k < types_.size(); ++k) {
            if (k == 1) continue;  // the gradient is only read
            b_.CreateAlignedStore(math.from_f32(b_, types_[k], results[k]), addrs[k], llvm::Align(dtype_bytes(types_[k])));
        }
        llvm::Value* next = b_.CreateAdd(i, b_.getInt64(1));
        i->addIncoming(next, loop);
        b_.CreateCondBr(b_.CreateICmpSLT(next, end), loop, exit);
        b_.SetInsertPoint(exit);
        b_.CreateRetVoid();
        return fn;
    }

    llvm::Module& module_;
    const KernelSpec& spec_;
    llvm::LLVMContext& ctx_;
    llvm::IRBuilder<> b_;
    TableLayout layout_;
    std::vector<DType> types_;  // p, g, states
};

}  // namespace

void generate_host_kernel(llvm::Module& module, const KernelSpec& spec) { HostKernel(module, spec).generate(); }

}  // namespace optjit
