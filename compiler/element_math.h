// LLVM IR for one element's update: what the NVPTX and host back ends share.
//
// Both back ends differ only in how they walk elements (threads and 16-byte vectors on the
// GPU; vectorizable loops on the host). Given an element's stored values, this emits the
// conversions to fp32, the program's update math in fp32, and the conversions back.
//
// Math follows ir/semantics.h. exp, log and non-trivial powers are computed by our own
// float64 routines (emitted into the module once, as internal functions) and rounded to fp32:
// LLVM's NVPTX back end cannot lower llvm.exp/log/pow, and one implementation on both targets
// keeps their results the same.
#pragma once

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>

#include <vector>

#include "compiler/target.h"
#include "ir/program.h"
#include "ir/storage.h"

namespace optjit {

struct ElementValues {
    llvm::Value* p = nullptr;
    llvm::Value* g = nullptr;
    std::vector<llvm::Value*> states;  // declaration order
};

class ElementMath {
public:
    // `scalars`: fp32 values of kernel_scalars(lowered), in that order.
    ElementMath(llvm::Module& module, const Program& lowered, const Target& target, const CodegenOptions& options,
                std::vector<llvm::Value*> scalars);

    // The update of one element: fp32 values in, final fp32 values of p and states out.
    //
    // With `in_range` (GPU kernels without fast math), divisions and square roots take the
    // branch-free fast paths of their IEEE sequences and AND into *in_range (an i1) whether
    // their operands are in the range where those paths round correctly; where it ends false,
    // the caller must redo the update without `in_range`. The IEEE instructions are each a
    // branch to a slow path that ptxas cannot schedule across, and take it for a zero dividend
    // or a zero square root, which real optimizer states hold.
    ElementValues update(llvm::IRBuilder<>& b, const ElementValues& in, llvm::Value** in_range = nullptr) const;

    // The LLVM type a value of `t` is stored as (float, i16 for bf16, half).
    llvm::Type* storage_type(DType t) const;
    // Stored bits -> fp32, and fp32 -> stored bits (round to nearest even).
    llvm::Value* to_f32(llvm::IRBuilder<>& b, DType t, llvm::Value* stored) const;
    llvm::Value* from_f32(llvm::IRBuilder<>& b, DType t, llvm::Value* f) const;
    // The parameter as stored: from_f32 of its dtype, or with CodegenOptions::stochastic_rounding
    // ir/numeric.h's stochastic rounding keyed by `seed` (i64), the launch's step and the
    // element's `global_index` (i64).
    llvm::Value* param_from_f32(llvm::IRBuilder<>& b, DType t, llvm::Value* f, llvm::Value* global_index, llvm::Value* seed) const;

private:
    llvm::Value* emit(llvm::IRBuilder<>& b, const Expr& e, const std::vector<std::pair<std::string, llvm::Value*>>& env) const;
    // A constant or one of the launch's scalars: the same for every element.
    bool is_launch_invariant(llvm::Value* v) const;
    llvm::Value* call_f64(llvm::IRBuilder<>& b, llvm::Function* fn, std::initializer_list<llvm::Value*> args) const;
    llvm::Function* exp_f64() const;
    llvm::Function* log_f64() const;
    llvm::Function* pow_f64() const;

    llvm::Module& module_;
    const Program& program_;
    Target target_;
    CodegenOptions options_;
    std::vector<std::pair<std::string, llvm::Value*>> scalars_;
    mutable llvm::Value** in_range_ = nullptr;  // during update(b, in, in_range)
};

}  // namespace optjit
