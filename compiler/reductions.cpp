#include "compiler/reductions.h"

#include <llvm/IR/Intrinsics.h>

#include <limits>
#include <memory>

#include "compiler/codegen.h"
#include "compiler/element_loader.h"
#include "compiler/element_math.h"
#include "ir/analysis.h"

namespace optjit {

namespace {

// A maximum's slot holds the order key of an fp32 (kernel_abi.h's reduction_max_key), so that
// an unsigned atomic maximum of keys is the maximum of the values, NaN above all.
llvm::Value* max_key(llvm::IRBuilder<>& b, llvm::Value* f) {
    llvm::Value* bits = b.CreateBitCast(f, b.getInt32Ty());
    bits = b.CreateSelect(b.CreateFCmpUNO(f, f), b.getInt32(kReductionNaNBits), bits);
    llvm::Value* negative = b.CreateICmpSLT(bits, b.getInt32(0));
    return b.CreateSelect(negative, b.CreateNot(bits), b.CreateOr(bits, b.getInt32(0x80000000u)));
}

llvm::Value* from_max_key(llvm::IRBuilder<>& b, llvm::Value* key) {
    llvm::Value* positive = b.CreateICmpSLT(key, b.getInt32(0));  // the key's top bit
    llvm::Value* bits = b.CreateSelect(positive, b.CreateAnd(key, b.getInt32(0x7fffffff)), b.CreateNot(key));
    bits = b.CreateSelect(b.CreateICmpEQ(key, b.getInt32(0)), b.getInt32(0xff800000u), bits);  // no element: -inf
    return b.CreateBitCast(bits, b.getFloatTy());
}

llvm::Value* slot_address(llvm::IRBuilder<>& b, const Program& prog, const Reduction& r, llvm::Value* global_slots, llvm::Value* tensor_slots,
                          llvm::Value* tensor) {
    if (is_global_reduction(r.op)) return b.CreateConstInBoundsGEP1_64(b.getInt64Ty(), global_slots, uint64_t(r.slot));
    llvm::Value* index = b.CreateAdd(b.CreateMul(tensor, b.getInt64(tensor_reduction_count(prog))), b.getInt64(r.slot));
    return b.CreateInBoundsGEP(b.getInt64Ty(), tensor_slots, index);
}

bool is_max(Op op) { return op == Op::TensorMax || op == Op::GlobalMax; }

}  // namespace

void emit_reduction_pass(llvm::IRBuilder<>& b, llvm::Module& module, const KernelSpec& spec, const ReductionWalk& walk) {
    llvm::LLVMContext& ctx = b.getContext();
    llvm::Function* fn = b.GetInsertBlock()->getParent();
    const Program& prog = spec.lowered;
    const TableLayout layout = table_layout(spec);
    const StatisticsWalk& lanes = walk.lanes;
    const std::vector<Reduction> list = reductions(prog);
    ElementMath math(module, prog, spec.target, spec.options, lanes.scalars);
    ElementLoader loader(module, spec, math);

    emit_chunk_loop(b, spec, lanes.table, lanes.num_tensors, lanes.first, lanes.stride, lanes.limit, [&](const ChunkContext& chunk) {
        loader.point_at(b, chunk, lanes.address_space);
        llvm::Value* n = chunk.word(layout.n());
        llvm::Value* lo = b.CreateAdd(chunk.first_element, b.CreateMul(lanes.lane, b.getInt64(lanes.elements_per_lane)));
        llvm::Value* hi = b.CreateBinaryIntrinsic(llvm::Intrinsic::smin, b.CreateAdd(lo, b.getInt64(lanes.elements_per_lane)), n);
        // Rank-1 states decode with their stored statistics.
        std::vector<std::unique_ptr<Rank1Statistics>> rank1(prog.states.size());
        for (size_t s = 0; s < prog.states.size(); ++s)
            if (loader.codec(int(s)) && loader.codec(int(s))->storage().rank1)
                rank1[s] = std::make_unique<Rank1Statistics>(b, loader.scales(int(s)), n, chunk.word(layout.columns()));

        llvm::BasicBlock* before = b.GetInsertBlock();
        llvm::BasicBlock* loop = llvm::BasicBlock::Create(ctx, "reduce.element", fn);
        llvm::BasicBlock* done = llvm::BasicBlock::Create(ctx, "reduce.done", fn);
        b.CreateCondBr(b.CreateICmpSLT(lo, hi), loop, done);

        // Per lane: sums in float64, maxima in fp32 (exact), NaN winning.
        auto initial = [&](const Reduction& r) -> llvm::Value* {
            if (is_max(r.op)) return llvm::ConstantFP::getInfinity(b.getFloatTy(), true);
            return llvm::ConstantFP::get(b.getDoubleTy(), 0.0);
        };
        b.SetInsertPoint(loop);
        llvm::PHINode* i = b.CreatePHI(b.getInt64Ty(), 2, "i");
        i->addIncoming(lo, before);
        std::vector<llvm::PHINode*> acc;
        for (const Reduction& r : list) {
            acc.push_back(b.CreatePHI(initial(r)->getType(), 2));
            acc.back()->addIncoming(initial(r), before);
        }
        ElementValues in = loader.load(b, i, [&](int s) { return rank1[size_t(s)]->stored_scale(b, rank1[size_t(s)]->cursor(b, i)); });
        ElementValues out = math.update(b, in);
        std::vector<llvm::Value*> next(list.size());
        for (size_t k = 0; k < list.size(); ++k) {
            llvm::Value* arg = out.reductions[k];
            next[k] = is_max(list[k].op) ? b.CreateBinaryIntrinsic(llvm::Intrinsic::maximum, acc[k], arg)
                                         : b.CreateFAdd(acc[k], b.CreateFPExt(arg, b.getDoubleTy()));
        }
        llvm::BasicBlock* loop_end = b.GetInsertBlock();
        for (size_t k = 0; k < list.size(); ++k) acc[k]->addIncoming(next[k], loop_end);
        llvm::Value* i_next = b.CreateAdd(i, b.getInt64(1));
        i->addIncoming(i_next, loop_end);
        b.CreateCondBr(b.CreateICmpSLT(i_next, hi), loop, done);

        b.SetInsertPoint(done);
        std::vector<llvm::Value*> partial(list.size());
        for (size_t k = 0; k < list.size(); ++k) {
            llvm::PHINode* phi = b.CreatePHI(acc[k]->getType(), 2);
            phi->addIncoming(initial(list[k]), before);
            phi->addIncoming(next[k], loop_end);
            partial[k] = phi;
        }
        for (size_t k = 0; k < list.size(); ++k) {
            if (is_max(list[k].op)) partial[k] = max_key(b, partial[k]);
            if (walk.across_lanes) partial[k] = walk.across_lanes(b, partial[k], is_max(list[k].op));
        }
        llvm::BasicBlock* add = llvm::BasicBlock::Create(ctx, "reduce.add", fn);
        llvm::BasicBlock* added = llvm::BasicBlock::Create(ctx, "reduce.added", fn);
        b.CreateCondBr(walk.leader ? walk.leader : b.getTrue(), add, added);
        b.SetInsertPoint(add);
        for (size_t k = 0; k < list.size(); ++k) {
            llvm::Value* at = slot_address(b, prog, list[k], walk.global_slots, walk.tensor_slots, chunk.tensor);
            if (is_max(list[k].op))
                b.CreateAtomicRMW(llvm::AtomicRMWInst::UMax, at, partial[k], llvm::Align(8), llvm::AtomicOrdering::Monotonic);
            else
                b.CreateAtomicRMW(llvm::AtomicRMWInst::FAdd, at, partial[k], llvm::Align(8), llvm::AtomicOrdering::Monotonic);
        }
        b.CreateBr(added);
        b.SetInsertPoint(added);
    });
}

std::vector<llvm::Value*> emit_reduction_values(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* global_slots,
                                                llvm::Value* tensor_slots, llvm::Value* tensor) {
    std::vector<llvm::Value*> out;
    for (const Reduction& r : reductions(spec.lowered)) {
        llvm::Value* at = slot_address(b, spec.lowered, r, global_slots, tensor_slots, tensor);
        llvm::Type* type = is_max(r.op) ? b.getInt32Ty() : b.getDoubleTy();  // a key in the slot's low half (little-endian)
        auto* load = b.CreateAlignedLoad(type, at, llvm::Align(is_max(r.op) ? 4 : 8));
        load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(b.getContext(), {}));  // the reduction pass wrote it
        out.push_back(is_max(r.op) ? from_max_key(b, load) : b.CreateFPTrunc(load, b.getFloatTy()));
    }
    return out;
}

}  // namespace optjit
