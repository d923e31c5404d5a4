#include "compiler/element_math.h"

#include <fmt/format.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/IntrinsicsNVPTX.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "compiler/kernel_abi.h"
#include "compiler/llvm_backend.h"
#include "ir/analysis.h"

namespace optjit {

using llvm::IRBuilder;
using llvm::Value;

namespace {

llvm::Value* f32(IRBuilder<>& b, double v) { return llvm::ConstantFP::get(b.getFloatTy(), float(v)); }
llvm::Value* f64(IRBuilder<>& b, double v) { return llvm::ConstantFP::get(b.getDoubleTy(), v); }

llvm::Value* intrinsic(IRBuilder<>& b, llvm::Intrinsic::ID id, std::initializer_list<llvm::Value*> args) {
    return b.CreateIntrinsic(id, {(*args.begin())->getType()}, args);
}

// Horner's rule: c[0] + x * (c[1] + x * (c[2] + ...)).
llvm::Value* polynomial(IRBuilder<>& b, llvm::Value* x, const std::vector<double>& c) {
    llvm::Value* acc = f64(b, c.back());
    for (size_t i = c.size() - 1; i-- > 0;) acc = intrinsic(b, llvm::Intrinsic::fma, {acc, x, f64(b, c[i])});
    return acc;
}

// 2^k for an integral double k in [-1022, 1023], built from its exponent bits.
llvm::Value* exp2_integer(IRBuilder<>& b, llvm::Value* k) {
    llvm::Value* ki = b.CreateFPToSI(k, b.getInt64Ty());
    llvm::Value* bits = b.CreateShl(b.CreateAdd(ki, b.getInt64(1023)), 52);
    return b.CreateBitCast(bits, b.getDoubleTy());
}

// x / y, correctly rounded, for a y that is the same for every element (a launch scalar or a
// constant): the reciprocal is computed once (LLVM hoists it out of the loops) and each element
// pays a multiplication and two FMAs instead of a division. With r = RN(1/y), q = RN(x r) and
// the FMA's exact remainder x - q y, RN(q + (x - q y) r) is RN(x / y) (Markstein) while y is in
// [2^-125, 2^125] and x is 0 or at least 2^-100 in magnitude; a y outside that range is first
// scaled into it by s = 2^64 or 2^-64 and the quotient scaled back, exactly but where it is
// subnormal. Infinite or NaN operands make the remainder NaN: the product q is then the answer.
// {q, RN(q + (x - q y) r)} for q = RN(x r), r = RN(1/y): Markstein's correction.
std::pair<llvm::Value*, llvm::Value*> markstein_quotient(IRBuilder<>& b, llvm::Value* x, llvm::Value* y) {
    namespace I = llvm::Intrinsic;
    llvm::Value* r = b.CreateFDiv(f32(b, 1), y);
    llvm::Value* q = b.CreateFMul(x, r);
    llvm::Value* remainder = intrinsic(b, I::fma, {b.CreateFNeg(q), y, x});
    return {q, intrinsic(b, I::fma, {remainder, r, q})};
}

llvm::Value* divide_by_invariant(IRBuilder<>& b, llvm::Value* x, llvm::Value* y) {
    namespace I = llvm::Intrinsic;
    llvm::Value* magnitude = intrinsic(b, I::fabs, {y});
    llvm::Value* s = b.CreateSelect(b.CreateFCmpOLT(magnitude, f32(b, 0x1p-125)), f32(b, 0x1p64),
                                    b.CreateSelect(b.CreateFCmpOGT(magnitude, f32(b, 0x1p125)), f32(b, 0x1p-64), f32(b, 1)));
    auto [q, corrected] = markstein_quotient(b, x, b.CreateFMul(y, s));
    llvm::Value* quotient = b.CreateSelect(b.CreateFCmpUNO(corrected, corrected), q, corrected);
    return b.CreateFMul(quotient, s);
}

// divide_by_invariant for a guarded update: the same quotient where y needs no scaling (the
// guard requires that once) and the quotient is finite, without the per-element select and
// scaling. An infinite or NaN dividend, or an overflow, leaves NaN: the caller makes the guard
// see it (ElementMath::note_unprobed).
llvm::Value* divide_by_invariant_speculatively(IRBuilder<>& b, llvm::Value* x, llvm::Value* y, SpeculationGuard& guard) {
    namespace I = llvm::Intrinsic;
    llvm::Value* magnitude = intrinsic(b, I::fabs, {y});
    guard.require_uniform(b, b.CreateAnd(b.CreateFCmpOGE(magnitude, f32(b, 0x1p-125)), b.CreateFCmpOLE(magnitude, f32(b, 0x1p125))));
    return markstein_quotient(b, x, y).second;
}

// Division's window: magnitudes in [2^-60, 2^60], as keys of the magnitude bits doubled (the
// sign bit shifted out), for which the tests below are unsigned comparisons.
constexpr uint32_t kDivisionKeyLo = 0x42ffffffu;  // 2 * bits(2^-60) - 1
constexpr uint32_t kDivisionKeyHi = 0xbb000000u;  // 2 * bits(2^60)

// PTX's div.rn.f32 without its branch: ptxas's fast path (reciprocal approximation, one Newton
// step, quotient, remainder by FMA, corrected quotient), which rounds correctly when both
// operands are within [2^-60, 2^60] in magnitude (the quotient and remainder are then normal),
// and a +0 dividend (its quotient is the product's +0; a -0 one would come out +0, so it takes
// the IEEE path). The divisor's key is its doubled magnitude bits; the dividend's is its bits
// rotated left by one (the sign lands in bit 0), less one for the minimum, so that +0 wraps to
// the top, -0 to the bottom, and other values stay within one of their doubled magnitude.
llvm::Value* divide_speculatively(IRBuilder<>& b, llvm::Value* x, llvm::Value* y, SpeculationGuard& guard) {
    namespace I = llvm::Intrinsic;
    llvm::Value* y_key = b.CreateShl(b.CreateBitCast(y, b.getInt32Ty()), 1);
    guard.require(b, kDivisionKeyLo, kDivisionKeyHi, y_key, y_key);
    llvm::Value* x_bits = b.CreateBitCast(x, b.getInt32Ty());
    llvm::Value* x_key = intrinsic(b, I::fshl, {x_bits, x_bits, b.getInt32(1)});
    guard.require(b, kDivisionKeyLo, kDivisionKeyHi, b.CreateSub(x_key, b.getInt32(1)), x_key);
    llvm::Value* y0 = b.CreateIntrinsic(I::nvvm_rcp_approx_ftz_f, {}, {y});
    llvm::Value* e = intrinsic(b, I::fma, {b.CreateFNeg(y), y0, f32(b, 1)});
    llvm::Value* y1 = intrinsic(b, I::fma, {y0, e, y0});
    llvm::Value* q0 = b.CreateFMul(x, y1);
    llvm::Value* r = intrinsic(b, I::fma, {b.CreateFNeg(y), q0, x});
    return intrinsic(b, I::fma, {y1, r, q0});
}

// PTX's sqrt.rn.f32 without its branch: ptxas's fast path (reciprocal square root
// approximation, then one correction by FMA), right for x in [2^-101, 2^128), and for +0 once
// the approximation's infinity is capped. The key is x's bits (negative values are above the
// window), less one for the minimum (+0 wraps to the top).
llvm::Value* square_root_speculatively(IRBuilder<>& b, llvm::Value* x, SpeculationGuard& guard) {
    namespace I = llvm::Intrinsic;
    llvm::Value* bits = b.CreateBitCast(x, b.getInt32Ty());
    guard.require(b, 0x0cffffffu, 0x7f7fffffu, b.CreateSub(bits, b.getInt32(1)), bits);
    llvm::Value* rs = intrinsic(b, I::minnum, {b.CreateIntrinsic(I::nvvm_rsqrt_approx_ftz_f, {}, {x}), f32(b, 0x1p64)});
    llvm::Value* s = b.CreateFMul(x, rs);
    llvm::Value* h = b.CreateFMul(rs, f32(b, 0.5));
    llvm::Value* e = intrinsic(b, I::fma, {b.CreateFNeg(s), s, x});
    return intrinsic(b, I::fma, {e, h, s});
}

llvm::Function* new_math_function(llvm::Module& m, const char* name, int arity) {
    llvm::Type* d = llvm::Type::getDoubleTy(m.getContext());
    std::vector<llvm::Type*> params(arity, d);
    auto* fn = llvm::Function::Create(llvm::FunctionType::get(d, params, false), llvm::GlobalValue::InternalLinkage, name, m);
    // Straight-line code with selects: inlined, it vectorizes on the host.
    fn->addFnAttr(llvm::Attribute::AlwaysInline);
    fn->addFnAttr(llvm::Attribute::NoUnwind);
    fn->setDoesNotAccessMemory();
    llvm::BasicBlock::Create(m.getContext(), "entry", fn);
    return fn;
}

}  // namespace

ElementMath::ElementMath(llvm::Module& module, const Program& lowered, const Target& target, const CodegenOptions& options,
                         std::vector<llvm::Value*> scalars)
    : module_(module), program_(lowered), target_(target), options_(options) {
    std::vector<std::string> names = kernel_scalars(lowered);
    if (names.size() != scalars.size()) throw std::logic_error("ElementMath: wrong number of scalars");
    for (size_t i = 0; i < names.size(); ++i) scalars_.emplace_back(names[i], scalars[i]);
    int k = 0;
    for (const Reduction& r : reductions(lowered)) reduction_index_[r.node] = k++;
}

llvm::Type* ElementMath::storage_type(DType t) const {
    llvm::LLVMContext& c = module_.getContext();
    switch (t) {
    case DType::F32: return llvm::Type::getFloatTy(c);
    case DType::BF16: return llvm::Type::getInt16Ty(c);
    case DType::F16: return llvm::Type::getHalfTy(c);
    }
    return nullptr;
}

llvm::Value* ElementMath::to_f32(IRBuilder<>& b, DType t, llvm::Value* stored) const {
    switch (t) {
    case DType::F32: return stored;
    case DType::BF16: return b.CreateBitCast(b.CreateShl(b.CreateZExt(stored, b.getInt32Ty()), 16), b.getFloatTy());
    case DType::F16: return b.CreateFPExt(stored, b.getFloatTy());
    }
    return nullptr;
}

llvm::Value* ElementMath::from_f32(IRBuilder<>& b, DType t, llvm::Value* f) const {
    switch (t) {
    case DType::F32: return f;
    case DType::F16: return b.CreateFPTrunc(f, b.getHalfTy());
    case DType::BF16: {
        // sm_80 and later convert in one instruction; the host rounds to nearest even with
        // integer arithmetic (bit-exact with ir/numeric.h), which vectorizes everywhere.
        if (target_.is_gpu()) return b.CreateBitCast(b.CreateFPTrunc(f, b.getBFloatTy()), b.getInt16Ty());
        llvm::Value* u = b.CreateBitCast(f, b.getInt32Ty());
        llvm::Value* lsb = b.CreateAnd(b.CreateLShr(u, 16), 1);
        llvm::Value* rounded = b.CreateTrunc(b.CreateLShr(b.CreateAdd(u, b.CreateAdd(lsb, b.getInt32(0x7fff))), 16), b.getInt16Ty());
        llvm::Value* quiet_nan = b.CreateOr(b.CreateTrunc(b.CreateLShr(u, 16), b.getInt16Ty()), b.getInt16(0x40));
        return b.CreateSelect(b.CreateFCmpUNO(f, f), quiet_nan, rounded);
    }
    }
    return nullptr;
}

std::pair<llvm::Value*, llvm::Value*> ElementMath::bf16_pair_to_f32(IRBuilder<>& b, llvm::Value* word) const {
    return {b.CreateBitCast(b.CreateShl(word, 16), b.getFloatTy()), b.CreateBitCast(b.CreateAnd(word, b.getInt32(0xffff0000u)), b.getFloatTy())};
}

llvm::Value* ElementMath::bf16_pair_from_f32(IRBuilder<>& b, llvm::Value* low, llvm::Value* high) const {
    if (!target_.is_gpu()) throw std::logic_error("ElementMath::bf16_pair_from_f32: GPU kernels only");
    // cvt.rn.bf16x2.f32 puts its first operand in the upper half.
    return b.CreateBitCast(b.CreateIntrinsic(llvm::Intrinsic::nvvm_ff2bf16x2_rn, {}, {high, low}), b.getInt32Ty());
}

llvm::Value* ElementMath::param_from_f32(IRBuilder<>& b, DType t, llvm::Value* f, llvm::Value* global_index, llvm::Value* seed) const {
    if (!options_.stochastic_rounding || t != DType::BF16) return from_f32(b, t, f);
    // ir/numeric.h's stochastic_bits and float_to_bf16_stochastic, operation for operation.
    llvm::Value* step = b.CreateFPToUI(scalars_.at(0).second, b.getInt64Ty());
    llvm::Value* x = b.CreateXor(b.CreateXor(b.CreateMul(global_index, b.getInt64(0x9e3779b97f4a7c15ull)),
                                             b.CreateMul(step, b.getInt64(0xd1b54a32d192ed03ull))), seed);
    x = b.CreateXor(x, b.CreateLShr(x, 33));
    x = b.CreateMul(x, b.getInt64(0xff51afd7ed558ccdull));
    x = b.CreateXor(x, b.CreateLShr(x, 33));
    x = b.CreateMul(x, b.getInt64(0xc4ceb93fe53a8ce5ull));
    x = b.CreateXor(x, b.CreateLShr(x, 33));
    llvm::Value* random16 = b.CreateAnd(b.CreateTrunc(x, b.getInt32Ty()), b.getInt32(0xffff));
    llvm::Value* u = b.CreateBitCast(f, b.getInt32Ty());
    llvm::Value* rounded = b.CreateTrunc(b.CreateLShr(b.CreateAdd(u, random16), 16), b.getInt16Ty());
    llvm::Value* quiet_nan = b.CreateOr(b.CreateTrunc(b.CreateLShr(u, 16), b.getInt16Ty()), b.getInt16(0x40));
    return b.CreateSelect(b.CreateFCmpUNO(f, f), quiet_nan, rounded);
}

void SpeculationGuard::require(IRBuilder<>& b, uint32_t lo, uint32_t hi, llvm::Value* key_min, llvm::Value* key_max) {
    for (Window& w : windows_) {
        if (w.lo != lo || w.hi != hi) continue;
        w.min = b.CreateBinaryIntrinsic(llvm::Intrinsic::umin, w.min, key_min);
        w.max = b.CreateBinaryIntrinsic(llvm::Intrinsic::umax, w.max, key_max);
        return;
    }
    windows_.push_back({lo, hi, key_min, key_max});
}

void SpeculationGuard::require_uniform(IRBuilder<>& b, llvm::Value* ok) { uniform_ = uniform_ ? b.CreateAnd(uniform_, ok) : ok; }

void SpeculationGuard::require_finite(IRBuilder<>& b, llvm::Value* x) {
    probe_ = intrinsic(b, llvm::Intrinsic::fma, {x, f32(b, 0), probe_ ? probe_ : f32(b, 0)});
}

llvm::Value* SpeculationGuard::holds(IRBuilder<>& b) const {
    llvm::Value* ok = uniform_;
    auto require = [&](llvm::Value* v) { ok = ok ? b.CreateAnd(ok, v) : v; };
    for (const Window& w : windows_) {
        require(b.CreateICmpUGE(w.min, b.getInt32(w.lo)));
        require(b.CreateICmpULE(w.max, b.getInt32(w.hi)));
    }
    if (probe_) require(b.CreateFCmpORD(probe_, probe_));
    return ok;
}

struct ElementMath::Frame {
    std::vector<std::pair<std::string, llvm::Value*>> names;
    const std::vector<llvm::Value*>& reduction_values;
    std::vector<llvm::Value*> reduction_arguments;
};

ElementValues ElementMath::update(IRBuilder<>& b, const ElementValues& in, SpeculationGuard* guard) const {
    guard_ = target_.is_gpu() && options_.math != MathMode::Fast ? guard : nullptr;
    // Fast GPU math fuses multiplies into adds (ptxas would too, were they not mul.rn).
    llvm::IRBuilderBase::FastMathFlagGuard keep_flags(b);
    if (target_.is_gpu() && options_.math == MathMode::Fast) {
        llvm::FastMathFlags contract;
        contract.setAllowContract();
        b.setFastMathFlags(contract);
    }
    struct Reset {
        SpeculationGuard*& p;
        ~Reset() { p = nullptr; }
    } reset{guard_};
    if (!in.reductions.empty() && in.reductions.size() != reduction_index_.size())
        throw std::logic_error("ElementMath: wrong number of reduction values");
    Frame frame{scalars_, in.reductions, {}};
    frame.reduction_arguments.resize(reduction_index_.size());
    std::vector<std::pair<std::string, llvm::Value*>>& env = frame.names;
    env.emplace_back(std::string(kParamName), in.p);
    env.emplace_back(std::string(kGradName), in.g);
    for (size_t s = 0; s < program_.states.size(); ++s) env.emplace_back(program_.states[s].name, in.states.at(s));
    for (const Assign& a : program_.update) {
        llvm::Value* v = emit(b, a.value, frame);
        env.emplace_back(a.target, v);
    }
    auto latest = [&](const std::string& name) {
        for (auto it = env.rbegin(); it != env.rend(); ++it)
            if (it->first == name) return it->second;
        throw std::logic_error("ElementMath: unbound " + name);
    };
    ElementValues out;
    out.p = latest(std::string(kParamName));
    for (const StateDecl& s : program_.states) out.states.push_back(latest(s.name));
    out.reductions = std::move(frame.reduction_arguments);
    if (guard_) {
        for (llvm::Value* v : out.states)
            if (unprobed_.count(v)) guard_->require_finite(b, v);
        if (unprobed_.count(out.p)) guard_->require_finite(b, out.p);
        unprobed_.clear();
    }
    return out;
}

llvm::Value* emit_width_independent(IRBuilder<>& b, Op op, const std::vector<llvm::Value*>& a) {
    namespace I = llvm::Intrinsic;
    llvm::Type* type = a.empty() ? nullptr : a[0]->getType();
    auto number = [&](double v) { return llvm::ConstantFP::get(type, v); };
    auto as_number = [&](llvm::Value* c) { return b.CreateUIToFP(c, type); };
    switch (op) {
    case Op::Neg: return b.CreateFNeg(a[0]);
    case Op::Add: return b.CreateFAdd(a[0], a[1]);
    case Op::Sub: return b.CreateFSub(a[0], a[1]);
    case Op::Mul: return b.CreateFMul(a[0], a[1]);
    case Op::Lt: return as_number(b.CreateFCmpOLT(a[0], a[1]));
    case Op::Le: return as_number(b.CreateFCmpOLE(a[0], a[1]));
    case Op::Gt: return as_number(b.CreateFCmpOGT(a[0], a[1]));
    case Op::Ge: return as_number(b.CreateFCmpOGE(a[0], a[1]));
    case Op::Eq: return as_number(b.CreateFCmpOEQ(a[0], a[1]));
    case Op::Ne: return as_number(b.CreateFCmpUNE(a[0], a[1]));
    case Op::Select: return b.CreateSelect(b.CreateFCmpUNE(a[0], number(0)), a[1], a[2]);
    case Op::Abs: return intrinsic(b, I::fabs, {a[0]});
    case Op::Sign: {
        llvm::Value* neg_or_same = b.CreateSelect(b.CreateFCmpOLT(a[0], number(0)), number(-1), a[0]);
        return b.CreateSelect(b.CreateFCmpOGT(a[0], number(0)), number(1), neg_or_same);
    }
    case Op::Lerp: return b.CreateFAdd(a[0], b.CreateFMul(a[2], b.CreateFSub(a[1], a[0])));
    default: return nullptr;
    }
}

llvm::Value* ElementMath::emit(IRBuilder<>& b, const Expr& e, Frame& frame) const {
    using llvm::Intrinsic::ID;
    namespace I = llvm::Intrinsic;
    if (e.op == Op::Number) return f32(b, e.number);
    if (e.op == Op::Ref) {
        for (auto it = frame.names.rbegin(); it != frame.names.rend(); ++it)
            if (it->first == e.name) return it->second;
        throw std::logic_error("ElementMath: unbound name " + e.name);
    }
    if (is_reduction(e.op)) {  // an update reads its value; a reduction pass records its argument
        int k = reduction_index_.at(&e);
        if (!frame.reduction_values.empty() && frame.reduction_values[size_t(k)]) return frame.reduction_values[size_t(k)];
        frame.reduction_arguments[size_t(k)] = emit(b, e.args[0], frame);
        return f32(b, 0);
    }
    std::vector<llvm::Value*> a;
    for (const Expr& arg : e.args) a.push_back(emit(b, arg, frame));
    const bool fast = options_.math == MathMode::Fast;
    const bool gpu = target_.is_gpu();
    auto fast_flags = [&](llvm::Value* v) {
        if (fast && llvm::isa<llvm::Instruction>(v)) {
            llvm::FastMathFlags f;
            f.setApproxFunc();
            f.setAllowReciprocal();
            llvm::cast<llvm::Instruction>(v)->setFastMathFlags(f);
        }
        return v;
    };
    bool fresh_quotient = false;  // a division by a launch scalar whose quotient is left to probe
    auto divide = [&](llvm::Value* x, llvm::Value* y) -> llvm::Value* {
        if (fast && gpu) return b.CreateIntrinsic(I::nvvm_div_approx_ftz_f, {}, {x, y});
        if (!fast && is_launch_invariant(y)) {
            if (!guard_) return divide_by_invariant(b, x, y);
            fresh_quotient = true;
            return divide_by_invariant_speculatively(b, x, y, *guard_);
        }
        if (guard_) return divide_speculatively(b, x, y, *guard_);
        return fast_flags(b.CreateFDiv(x, y));
    };
    auto square_root = [&](llvm::Value* x) -> llvm::Value* {
        if (fast && gpu) return b.CreateIntrinsic(I::nvvm_sqrt_approx_ftz_f, {}, {x});
        if (guard_) return square_root_speculatively(b, x, *guard_);
        return fast_flags(intrinsic(b, I::sqrt, {x}));
    };
    auto widen = [&](llvm::Value* x) { return b.CreateFPExt(x, b.getDoubleTy()); };
    auto narrow = [&](llvm::Value* x) { return b.CreateFPTrunc(x, b.getFloatTy()); };
    llvm::Value* result = [&]() -> llvm::Value* {
        // Fast GPU math: a product with a launch-uniform factor may reassociate. A decoded state
        // is its code's value times its block's scale (StateCodec's fast math), so beta * m
        // becomes the value times (beta times the scale), one multiplication a block where it
        // was one an element; a lerp with a launch-uniform weight, b t + a (1 - t), folds
        // (1 - t) the same way, where a + t (b - a) took an instruction more.
        if (fast && gpu && e.op == Op::Mul && (is_launch_invariant(a[0]) || is_launch_invariant(a[1])))
            return reassociable(b.CreateFMul(a[0], a[1]));
        if (fast && gpu && e.op == Op::Lerp && is_launch_invariant(a[2]))
            return b.CreateFAdd(b.CreateFMul(a[1], a[2]), reassociable(b.CreateFMul(a[0], b.CreateFSub(f32(b, 1), a[2]))));
        if (llvm::Value* v = emit_width_independent(b, e.op, a)) return v;
        switch (e.op) {
        case Op::Div: return divide(a[0], a[1]);
        case Op::Pow: {
            // Small integral constant exponents are multiplications; anything else goes through
            // float64 exp and log.
            if (e.args[1].op == Op::Number) {
                double y = e.args[1].number;
                if (y == 1) return a[0];
                if (y == 2) return b.CreateFMul(a[0], a[0]);
                if (y == 3) return b.CreateFMul(b.CreateFMul(a[0], a[0]), a[0]);
                if (y == -1) return divide(f32(b, 1), a[0]);
            }
            return narrow(call_f64(b, pow_f64(module_), {widen(a[0]), widen(a[1])}));
        }
        case Op::Sqrt: return square_root(a[0]);
        case Op::Rsqrt:
            if (fast && gpu) return b.CreateIntrinsic(I::nvvm_rsqrt_approx_ftz_f, {}, {a[0]});
            return divide(f32(b, 1), square_root(a[0]));
        case Op::Min: return intrinsic(b, I::minimum, {a[0], a[1]});
        case Op::Max: return intrinsic(b, I::maximum, {a[0], a[1]});
        case Op::Exp: return narrow(call_f64(b, exp_f64(module_), {widen(a[0])}));
        case Op::Log: return narrow(call_f64(b, log_f64(module_), {widen(a[0])}));
        default: break;
        }
        throw std::logic_error(fmt::format("ElementMath: unhandled operation {}", op_info(e.op).spelling));
    }();
    if (guard_) note_unprobed(b, e, a, result, fresh_quotient);
    return result;
}

// NaN passes through arithmetic, so one probe of an update's output covers every quotient that
// reaches it that way (AdamW's reach a division or a square root, whose range checks reject a
// NaN operand, and need no probe at all). An operation that can drop a NaN (a comparison, a
// select, the float64 functions) probes its operands instead.
void ElementMath::note_unprobed(IRBuilder<>& b, const Expr& e, const std::vector<llvm::Value*>& a, llvm::Value* result,
                                bool fresh_quotient) const {
    if (fresh_quotient) {
        unprobed_.insert(result);
        return;
    }
    bool propagates = false;
    switch (e.op) {
    case Op::Div:
    case Op::Sqrt:
    case Op::Rsqrt: return;  // operands range-checked
    case Op::Pow:
        if (e.args[1].op == Op::Number && e.args[1].number == -1) return;  // a division
        propagates = e.args[1].op == Op::Number && (e.args[1].number == 1 || e.args[1].number == 2 || e.args[1].number == 3);
        break;
    case Op::Neg:
    case Op::Add:
    case Op::Sub:
    case Op::Mul:
    case Op::Abs:
    case Op::Min:  // llvm.minimum and llvm.maximum return NaN for a NaN operand
    case Op::Max:
    case Op::Lerp: propagates = true; break;
    default: break;
    }
    for (llvm::Value* v : a) {
        if (!unprobed_.count(v)) continue;
        if (propagates) {
            unprobed_.insert(result);
            return;
        }
        guard_->require_finite(b, v);
        unprobed_.erase(v);
    }
}

bool ElementMath::is_launch_invariant(llvm::Value* v) const {
    if (llvm::isa<llvm::Constant>(v)) return true;
    for (const auto& [name, scalar] : scalars_)
        if (scalar == v) return true;
    return false;
}

llvm::Value* ElementMath::call_f64(IRBuilder<>& b, llvm::Function* fn, std::initializer_list<llvm::Value*> args) const {
    return b.CreateCall(fn, args);
}

// exp(x) = 2^k * exp(r), k = rint(x / ln 2), r = x - k ln 2 (Cody-Waite, two parts), exp(r) by
// its Taylor series to degree 13 (|r| <= 0.35: error below 1 ulp of a double).
llvm::Function* exp_f64(llvm::Module& module) {
    if (llvm::Function* f = module.getFunction("optjit.exp.f64")) return f;
    llvm::Function* fn = new_math_function(module, "optjit.exp.f64", 1);
    IRBuilder<> b(&fn->getEntryBlock());
    namespace I = llvm::Intrinsic;
    llvm::Value* x = fn->getArg(0);
    llvm::Value* xc = intrinsic(b, I::minnum, {intrinsic(b, I::maxnum, {x, f64(b, -746.0)}), f64(b, 710.0)});
    llvm::Value* k = intrinsic(b, I::rint, {b.CreateFMul(xc, f64(b, 1.4426950408889634))});
    llvm::Value* r = intrinsic(b, I::fma, {b.CreateFNeg(k), f64(b, 6.93147180369123816490e-01), xc});
    r = intrinsic(b, I::fma, {b.CreateFNeg(k), f64(b, 1.90821492927058770002e-10), r});
    std::vector<double> taylor(14);
    double fact = 1;
    for (int i = 0; i < 14; ++i) {
        if (i > 0) fact *= i;
        taylor[i] = 1.0 / fact;
    }
    llvm::Value* er = polynomial(b, r, taylor);
    // Two factors keep each 2^k in the normal range down to underflow and up to overflow.
    llvm::Value* k1 = intrinsic(b, I::floor, {b.CreateFMul(k, f64(b, 0.5))});
    llvm::Value* k2 = b.CreateFSub(k, k1);
    llvm::Value* result = b.CreateFMul(b.CreateFMul(er, exp2_integer(b, k1)), exp2_integer(b, k2));
    b.CreateRet(b.CreateSelect(b.CreateFCmpUNO(x, x), x, result));
    return fn;
}

// log(x) = e ln 2 + log(m), x = m 2^e with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(s),
// s = (m - 1) / (m + 1), by its series to s^25 (|s| <= 0.172: error below 1 ulp).
llvm::Function* log_f64(llvm::Module& module) {
    if (llvm::Function* f = module.getFunction("optjit.log.f64")) return f;
    llvm::Function* fn = new_math_function(module, "optjit.log.f64", 1);
    IRBuilder<> b(&fn->getEntryBlock());
    llvm::Value* x = fn->getArg(0);
    llvm::Value* subnormal = b.CreateFCmpOLT(x, f64(b, 2.2250738585072014e-308));
    llvm::Value* xs = b.CreateSelect(subnormal, b.CreateFMul(x, f64(b, 18014398509481984.0)), x);  // * 2^54
    llvm::Value* bits = b.CreateBitCast(xs, b.getInt64Ty());
    llvm::Value* e = b.CreateSub(b.CreateAnd(b.CreateLShr(bits, 52), 0x7ff), b.getInt64(1023));
    e = b.CreateSub(e, b.CreateSelect(subnormal, b.getInt64(54), b.getInt64(0)));
    llvm::Value* m = b.CreateBitCast(b.CreateOr(b.CreateAnd(bits, b.getInt64(0x000fffffffffffffull)), b.getInt64(0x3ff0000000000000ull)), b.getDoubleTy());
    llvm::Value* big = b.CreateFCmpOGT(m, f64(b, 1.4142135623730951));
    m = b.CreateSelect(big, b.CreateFMul(m, f64(b, 0.5)), m);
    e = b.CreateAdd(e, b.CreateZExt(big, b.getInt64Ty()));
    llvm::Value* f = b.CreateFSub(m, f64(b, 1));
    llvm::Value* s = b.CreateFDiv(f, b.CreateFAdd(f, f64(b, 2)));
    llvm::Value* s2 = b.CreateFMul(s, s);
    std::vector<double> series;  // 1/3, 1/5, ..., 1/25
    for (int k = 3; k <= 25; k += 2) series.push_back(1.0 / k);
    llvm::Value* q = b.CreateFMul(s2, polynomial(b, s2, series));
    llvm::Value* two_s = b.CreateFMul(s, f64(b, 2));
    llvm::Value* log_m = intrinsic(b, llvm::Intrinsic::fma, {two_s, q, two_s});
    llvm::Value* ef = b.CreateSIToFP(e, b.getDoubleTy());
    llvm::Value* result = intrinsic(b, llvm::Intrinsic::fma, {ef, f64(b, 6.93147180369123816490e-01),
                                                              intrinsic(b, llvm::Intrinsic::fma, {ef, f64(b, 1.90821492927058770002e-10), log_m})});
    double inf = std::numeric_limits<double>::infinity();
    result = b.CreateSelect(b.CreateFCmpOEQ(x, f64(b, inf)), x, result);
    result = b.CreateSelect(b.CreateFCmpOEQ(x, f64(b, 0)), f64(b, -inf), result);
    result = b.CreateSelect(b.CreateFCmpULT(x, f64(b, 0)), f64(b, std::nan("")), result);  // negative or NaN
    b.CreateRet(result);
    return fn;
}

// pow(x, y) = exp(y log |x|), as C's pow: the sign of x (-0 included) for odd integral y,
// NaN for finite negative x and non-integral y, and pow(x, 0) = pow(1, y) = pow(-1, +-inf) = 1.
llvm::Function* pow_f64(llvm::Module& module) {
    if (llvm::Function* f = module.getFunction("optjit.pow.f64")) return f;
    llvm::Function* exp_fn = exp_f64(module);
    llvm::Function* log_fn = log_f64(module);
    llvm::Function* fn = new_math_function(module, "optjit.pow.f64", 2);
    IRBuilder<> b(&fn->getEntryBlock());
    namespace I = llvm::Intrinsic;
    llvm::Value* x = fn->getArg(0);
    llvm::Value* y = fn->getArg(1);
    llvm::Value* magnitude = b.CreateCall(exp_fn, {b.CreateFMul(y, b.CreateCall(log_fn, {intrinsic(b, I::fabs, {x})}))});
    llvm::Value* integral = b.CreateFCmpOEQ(intrinsic(b, I::rint, {y}), y);
    llvm::Value* half = b.CreateFMul(y, f64(b, 0.5));
    llvm::Value* odd = b.CreateAnd(integral, b.CreateFCmpONE(intrinsic(b, I::rint, {half}), half));
    llvm::Value* sign_bit = b.CreateICmpSLT(b.CreateBitCast(x, b.getInt64Ty()), b.getInt64(0));
    llvm::Value* result = b.CreateSelect(b.CreateAnd(sign_bit, odd), b.CreateFNeg(magnitude), magnitude);
    double inf = std::numeric_limits<double>::infinity();
    llvm::Value* finite_negative = b.CreateAnd(b.CreateFCmpOLT(x, f64(b, 0)), b.CreateFCmpOGT(x, f64(b, -inf)));
    result = b.CreateSelect(b.CreateAnd(finite_negative, b.CreateNot(integral)), f64(b, std::nan("")), result);
    llvm::Value* unit_base_infinite_power =
        b.CreateAnd(b.CreateFCmpOEQ(intrinsic(b, I::fabs, {x}), f64(b, 1)), b.CreateFCmpOEQ(intrinsic(b, I::fabs, {y}), f64(b, inf)));
    llvm::Value* one = b.CreateOr(b.CreateOr(b.CreateFCmpOEQ(y, f64(b, 0)), b.CreateFCmpOEQ(x, f64(b, 1))), unit_base_infinite_power);
    b.CreateRet(b.CreateSelect(one, f64(b, 1), result));
    return fn;
}

}  // namespace optjit
