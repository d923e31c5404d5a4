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
        b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", fn));
        std::vector<std::string> names = kernel_scalars(spec_.lowered);
        std::vector<llvm::Value*> scalars;
        for (size_t i = 0; i < names.size(); ++i)
            scalars.push_back(b_.CreateAlignedLoad(b_.getFloatTy(), b_.CreateGEP(b_.getFloatTy(), scalar_array, b_.getInt64(i)),
                                                   llvm::Align(4), names[i]));
        emit_chunk_loop(b_, spec_, table, chunk_first, b_.getInt64(1), chunk_last, [&](const ChunkContext& c) {
            std::vector<llvm::Value*> args;
            args.push_back(b_.CreateIntToPtr(c.word(layout_.p()), ptr));
            args.push_back(b_.CreateIntToPtr(c.word(layout_.g()), ptr));
            for (int s = 0; s < layout_.num_states; ++s) args.push_back(b_.CreateIntToPtr(c.word(layout_.state(s)), ptr));
            llvm::Value* end = b_.CreateBinaryIntrinsic(llvm::Intrinsic::smin,
                                                        b_.CreateAdd(c.first_element, b_.getInt64(chunk_elements(spec_))), c.word(layout_.n()));
            args.push_back(c.first_element);
            args.push_back(end);
            args.insert(args.end(), scalars.begin(), scalars.end());
            b_.CreateCall(chunk, args);
        });
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
