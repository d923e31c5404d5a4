#include "compiler/device_scalars.h"

#include <llvm/IR/IRBuilder.h>

#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/codegen.h"
#include "compiler/element_math.h"
#include "ir/program.h"

namespace optjit {

namespace {

// One float64 scalar expression, with ir/semantics.h's definitions of every operation.
class Float64Scalars {
public:
    Float64Scalars(llvm::IRBuilder<>& b, llvm::Module& module) : b_(b), module_(module) {}
    std::map<std::string, llvm::Value*> env;

    llvm::Value* emit(const Expr& e) {
        namespace I = llvm::Intrinsic;
        if (e.op == Op::Number) return constant(e.number);
        if (e.op == Op::Ref) return env.at(e.name);
        std::vector<llvm::Value*> a;
        for (const Expr& arg : e.args) a.push_back(emit(arg));
        if (llvm::Value* v = emit_width_independent(b_, e.op, a)) return v;
        auto call = [&](I::ID id, llvm::Value* x) { return b_.CreateIntrinsic(id, {b_.getDoubleTy()}, {x}); };
        auto any_nan = [&]() { return b_.CreateFCmpUNO(a[0], a[1]); };
        auto negative = [&](llvm::Value* x) { return b_.CreateICmpSLT(b_.CreateBitCast(x, b_.getInt64Ty()), b_.getInt64(0)); };
        const double nan = std::numeric_limits<double>::quiet_NaN();
        switch (e.op) {
        case Op::Div: return b_.CreateFDiv(a[0], a[1]);
        case Op::Pow: return b_.CreateCall(pow_f64(module_), {a[0], a[1]});
        case Op::Sqrt: return call(I::sqrt, a[0]);
        case Op::Rsqrt: return b_.CreateFDiv(constant(1), call(I::sqrt, a[0]));
        case Op::Min: {  // the smaller, -0 below +0, NaN if either is (ir/semantics.cpp's nan_min)
            llvm::Value* first = b_.CreateOr(b_.CreateFCmpOLT(a[0], a[1]), b_.CreateAnd(b_.CreateFCmpOEQ(a[0], a[1]), negative(a[0])));
            return b_.CreateSelect(any_nan(), constant(nan), b_.CreateSelect(first, a[0], a[1]));
        }
        case Op::Max: {
            llvm::Value* first = b_.CreateOr(b_.CreateFCmpOGT(a[0], a[1]),
                                             b_.CreateAnd(b_.CreateFCmpOEQ(a[0], a[1]), b_.CreateNot(negative(a[0]))));
            return b_.CreateSelect(any_nan(), constant(nan), b_.CreateSelect(first, a[0], a[1]));
        }
        case Op::Exp: return b_.CreateCall(exp_f64(module_), {a[0]});
        case Op::Log: return b_.CreateCall(log_f64(module_), {a[0]});
        default: throw std::logic_error("a scalars section holds a reduction; the passes keep those out of it");
        }
    }

private:
    llvm::Value* constant(double v) { return llvm::ConstantFP::get(b_.getDoubleTy(), v); }
    llvm::IRBuilder<>& b_;
    llvm::Module& module_;
};

}  // namespace

void emit_scalars_kernel(llvm::Module& module, const KernelSpec& spec) {
    llvm::LLVMContext& ctx = module.getContext();
    llvm::IRBuilder<> b(ctx);
    const Program& prog = spec.lowered;
    llvm::Type* global_ptr = llvm::PointerType::get(ctx, kNvptxGlobal);
    const bool skips = spec.options.count_applied_steps;
    const bool by_value = spec.options.hypers_by_value;
    std::vector<llvm::Type*> params{global_ptr};
    if (skips) params.push_back(global_ptr);
    if (by_value) params.insert(params.end(), prog.hypers.size(), b.getDoubleTy());
    auto* fn = llvm::Function::Create(llvm::FunctionType::get(b.getVoidTy(), params, false), llvm::GlobalValue::ExternalLinkage,
                                      scalars_symbol(spec), module);
    fn->setCallingConv(llvm::CallingConv::PTX_Kernel);
    fn->addFnAttr(llvm::Attribute::NoUnwind);
    llvm::Value* block = fn->getArg(0);
    block->setName("block");
    b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", fn));
    auto at = [&](size_t byte) { return b.CreateConstInBoundsGEP1_64(b.getInt8Ty(), block, byte); };

    Float64Scalars scalars(b, module);
    llvm::Value* one = llvm::ConstantFP::get(b.getDoubleTy(), 1);
    llvm::Value* taken = b.CreateAlignedLoad(b.getDoubleTy(), at(kScalarBlockStep), llvm::Align(8));
    llvm::Value* step = b.CreateFAdd(taken, one);
    if (skips) {
        // The block counts the steps applied. The previous step is committed here, where its
        // count of non-finite gradients is known and before this step clears it: 0 counts it,
        // more than 0 (skipped) or -1 (no step since the count was set) does not. This step
        // runs as step + 1 and is committed by the next.
        llvm::Value* count = fn->getArg(1);
        count->setName("nonfinite_count");
        llvm::Value* previous = b.CreateAlignedLoad(b.getDoubleTy(), count, llvm::Align(8));
        llvm::Value* applied = b.CreateFCmpOEQ(previous, llvm::ConstantFP::get(b.getDoubleTy(), 0));
        taken = b.CreateSelect(applied, step, taken);
        b.CreateAlignedStore(taken, at(kScalarBlockStep), llvm::Align(8));
        step = b.CreateFAdd(taken, one);
    } else {
        b.CreateAlignedStore(step, at(kScalarBlockStep), llvm::Align(8));
    }
    scalars.env[std::string(kStepName)] = step;
    for (size_t i = 0; i < prog.hypers.size(); ++i) {
        if (by_value) {
            scalars.env[prog.hypers[i].name] = fn->getArg(unsigned(params.size() - prog.hypers.size() + i));
            scalars.env[prog.hypers[i].name]->setName(prog.hypers[i].name);
        } else {
            scalars.env[prog.hypers[i].name] = b.CreateAlignedLoad(b.getDoubleTy(), at(scalar_block_hyper(i)), llvm::Align(8), prog.hypers[i].name);
        }
    }
    for (const Assign& a : prog.scalars) scalars.env[a.target] = scalars.emit(a.value);
    const std::vector<std::string> names = kernel_scalars(prog);
    for (size_t i = 0; i < names.size(); ++i)
        b.CreateAlignedStore(b.CreateFPTrunc(scalars.env.at(names[i]), b.getFloatTy()), at(scalar_block_scalar(prog, i)), llvm::Align(4));
    b.CreateRetVoid();
}

}  // namespace optjit
