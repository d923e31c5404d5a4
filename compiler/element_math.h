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

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "compiler/target.h"
#include "ir/program.h"
#include "ir/storage.h"

namespace optjit {

// The operand ranges that the branch-free fast paths of division and square root need, gathered
// over a chunk's elements into a few running minima and maxima of integer keys and tested once
// (an i1 per check and their ANDs cost ~15 ALU-pipe instructions an element, and the ALU pipe
// is what the quantized kernels run out of first).
class SpeculationGuard {
public:
    // Requires key_min >= lo and key_max <= hi (unsigned) of every pair added with (lo, hi).
    void require(llvm::IRBuilder<>& b, uint32_t lo, uint32_t hi, llvm::Value* key_min, llvm::Value* key_max);
    // Requires an i1 that is the same for every element (LLVM hoists it out of the loops).
    void require_uniform(llvm::IRBuilder<>& b, llvm::Value* ok);
    // Requires `x` to be finite: an FMA x * 0 + probe, NaN once any x was not.
    void require_finite(llvm::IRBuilder<>& b, llvm::Value* x);
    // Whether everything required holds (an i1), or nullptr where nothing was required.
    llvm::Value* holds(llvm::IRBuilder<>& b) const;

private:
    struct Window {
        uint32_t lo, hi;
        llvm::Value* min;
        llvm::Value* max;
    };
    std::vector<Window> windows_;
    llvm::Value* uniform_ = nullptr;
    llvm::Value* probe_ = nullptr;
};

// The operations whose IR is the same at every float width and needs no special path, as
// ir/semantics.h defines them: negation, +, -, *, the comparisons (1 or 0 in the operands'
// type), select, abs, sign and lerp. nullptr for any other operation. ElementMath's fp32 update
// and the float64 scalars of capturable kernels (compiler/device_scalars.cpp) both use it.
llvm::Value* emit_width_independent(llvm::IRBuilder<>& b, Op op, const std::vector<llvm::Value*>& a);

// The float64 routines, internal functions of `module` emitted once: exp, log and pow as C's,
// within an ulp or so of a double. ElementMath computes exp, log and non-trivial powers with
// them (rounding to fp32); capturable kernels compute their scalars with them
// (compiler/device_scalars.h).
llvm::Function* exp_f64(llvm::Module& module);
llvm::Function* log_f64(llvm::Module& module);
llvm::Function* pow_f64(llvm::Module& module);

struct ElementValues {
    llvm::Value* p = nullptr;
    llvm::Value* g = nullptr;
    std::vector<llvm::Value*> states;  // declaration order
    // The program's reductions (ir/analysis.h's order), fp32. Into update(): their values for
    // this element's tensor; in a reduction pass, nullptr (or all of them absent) for those it
    // has not found yet, which read as 0 (the arguments of its own level never depend on them).
    // Out of it: the arguments of those at this element, in a reduction pass only.
    std::vector<llvm::Value*> reductions;
};

class ElementMath {
public:
    // `scalars`: fp32 values of kernel_scalars(lowered), in that order.
    ElementMath(llvm::Module& module, const Program& lowered, const Target& target, const CodegenOptions& options,
                std::vector<llvm::Value*> scalars);

    // The update of one element: fp32 values in, final fp32 values of p and states out.
    //
    // With a `guard` (GPU kernels without fast math), divisions and square roots take the
    // branch-free fast paths of their IEEE sequences and require of the guard that their
    // operands be in the range where those paths round correctly; where the guard does not
    // hold, the caller must redo the update without one. The IEEE instructions are each a
    // branch to a slow path that ptxas cannot schedule across, and take it for a zero dividend
    // or a zero square root, which real optimizer states hold.
    ElementValues update(llvm::IRBuilder<>& b, const ElementValues& in, SpeculationGuard* guard = nullptr) const;

    // The LLVM type a value of `t` is stored as (float, i16 for bf16, half).
    llvm::Type* storage_type(DType t) const;
    // Stored bits -> fp32, and fp32 -> stored bits (round to nearest even).
    llvm::Value* to_f32(llvm::IRBuilder<>& b, DType t, llvm::Value* stored) const;
    llvm::Value* from_f32(llvm::IRBuilder<>& b, DType t, llvm::Value* f) const;
    // Two bf16 values in an i32 (the first element in the low half) -> fp32, one instruction
    // each; and, in GPU kernels, two fp32 values -> such a word (cvt.rn.bf16x2.f32, one
    // instruction for both, rounding as from_f32).
    std::pair<llvm::Value*, llvm::Value*> bf16_pair_to_f32(llvm::IRBuilder<>& b, llvm::Value* word) const;
    llvm::Value* bf16_pair_from_f32(llvm::IRBuilder<>& b, llvm::Value* low, llvm::Value* high) const;
    // The parameter as stored: from_f32 of its dtype, or with CodegenOptions::stochastic_rounding
    // ir/numeric.h's stochastic rounding keyed by `seed` (i64), the launch's step and the
    // element's `global_index` (i64).
    llvm::Value* param_from_f32(llvm::IRBuilder<>& b, DType t, llvm::Value* f, llvm::Value* global_index, llvm::Value* seed) const;

private:
    struct Frame;  // the names bound so far and the reductions of one update()
    llvm::Value* emit(llvm::IRBuilder<>& b, const Expr& e, Frame& frame) const;
    // Guarded updates: records whether `result` may carry an unchecked NaN quotient.
    void note_unprobed(llvm::IRBuilder<>& b, const Expr& e, const std::vector<llvm::Value*>& a, llvm::Value* result,
                       bool fresh_quotient) const;
    // A constant or one of the launch's scalars: the same for every element.
    bool is_launch_invariant(llvm::Value* v) const;
    llvm::Value* call_f64(llvm::IRBuilder<>& b, llvm::Function* fn, std::initializer_list<llvm::Value*> args) const;

    llvm::Module& module_;
    const Program& program_;
    Target target_;
    CodegenOptions options_;
    std::vector<std::pair<std::string, llvm::Value*>> scalars_;
    std::map<const Expr*, int> reduction_index_;  // of program_'s reduction nodes
    mutable SpeculationGuard* guard_ = nullptr;  // during update(b, in, guard)
    mutable std::set<llvm::Value*> unprobed_;     // values that may carry an unchecked NaN quotient
};

}  // namespace optjit
