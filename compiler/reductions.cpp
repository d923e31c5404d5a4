#include "compiler/reductions.h"

#include <llvm/IR/Intrinsics.h>

#include <algorithm>
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

// A lane's total before any element: 0 (float64) for a sum, -inf (fp32) for a maximum.
llvm::Value* initial_total(llvm::IRBuilder<>& b, const Reduction& r) {
    if (is_max(r.op)) return llvm::ConstantFP::getInfinity(b.getFloatTy(), true);
    return llvm::ConstantFP::get(b.getDoubleTy(), 0.0);
}

}  // namespace

void emit_reduction_pass(llvm::IRBuilder<>& b, llvm::Module& module, const KernelSpec& spec, const ReductionWalk& walk, int level) {
    llvm::LLVMContext& ctx = b.getContext();
    llvm::Function* fn = b.GetInsertBlock()->getParent();
    const Program& prog = spec.lowered;
    const TableLayout layout = table_layout(spec);
    const StatisticsWalk& lanes = walk.lanes;
    // The reductions of this level, and the index of each among all of the program's.
    std::vector<Reduction> list;
    std::vector<size_t> index;
    const std::vector<Reduction> all = reductions(prog);
    const std::vector<int> levels = reduction_levels(prog);
    for (size_t k = 0; k < all.size(); ++k)
        if (levels[k] == level) list.push_back(all[k]), index.push_back(k);
    // The pass's divisions and square roots are the approximate ones (within 2 ulp, no exact
    // redo): a reduction adds a whole tensor or step in the order its atomics meet, which no run
    // reproduces bit for bit anyway, and in LAMB's pass the exact arithmetic of the update
    // direction took longer than the reads (4.9 ms for 9.9 GB on an H200).
    CodegenOptions approximate = spec.options;
    approximate.math = MathMode::Fast;
    ElementMath math(module, prog, spec.target, approximate, lanes.scalars);
    ElementLoader loader(module, spec, math);
    // A lane of a few elements (GPU) sums them in fp32, straight-line where the chunk is full,
    // then adds that to float64; a lane that is a whole chunk (host) adds every element in
    // float64. Maxima are exact in fp32.
    const bool unrolled = lanes.elements_per_lane <= 32;

    // A lane's totals live across chunks (allocas, promoted to registers): the global ones until
    // the kernel ends, the tensor ones until the block's chunks move to another tensor. Each
    // total reaches its slot once: one atomic a warp and tensor, not one a chunk (hundreds of
    // thousands of atomics on one address took longer than the pass's reads).
    std::vector<llvm::AllocaInst*> total(list.size());
    for (size_t k = 0; k < list.size(); ++k) {
        total[k] = b.CreateAlloca(is_max(list[k].op) ? b.getFloatTy() : b.getDoubleTy());
        b.CreateStore(initial_total(b, list[k]), total[k]);
    }
    llvm::AllocaInst* totals_tensor = b.CreateAlloca(b.getInt64Ty());  // whose tensor totals they are; -1: none yet
    b.CreateStore(b.getInt64(-1), totals_tensor);
    // Adds the totals of one scope (global or tensor) to their slots and starts them again.
    auto flush = [&](bool global, llvm::Value* tensor) {
        std::vector<llvm::Value*> combined(list.size());
        for (size_t k = 0; k < list.size(); ++k) {
            if (is_global_reduction(list[k].op) != global) continue;
            llvm::Value* v = b.CreateLoad(total[k]->getAllocatedType(), total[k]);
            if (is_max(list[k].op)) v = max_key(b, v);
            combined[k] = walk.across_lanes ? walk.across_lanes(b, v, is_max(list[k].op)) : v;
            b.CreateStore(initial_total(b, list[k]), total[k]);
        }
        llvm::BasicBlock* add = llvm::BasicBlock::Create(ctx, "reduce.add", fn);
        llvm::BasicBlock* added = llvm::BasicBlock::Create(ctx, "reduce.added", fn);
        b.CreateCondBr(walk.leader ? walk.leader : b.getTrue(), add, added);
        b.SetInsertPoint(add);
        for (size_t k = 0; k < list.size(); ++k) {
            if (!combined[k]) continue;
            llvm::Value* at = slot_address(b, prog, list[k], walk.global_slots, walk.tensor_slots, tensor);
            b.CreateAtomicRMW(is_max(list[k].op) ? llvm::AtomicRMWInst::UMax : llvm::AtomicRMWInst::FAdd, at, combined[k], llvm::Align(8),
                              llvm::AtomicOrdering::Monotonic);
        }
        b.CreateBr(added);
        b.SetInsertPoint(added);
    };
    const bool any_tensor = std::any_of(list.begin(), list.end(), [](const Reduction& r) { return !is_global_reduction(r.op); });
    const bool any_global = std::any_of(list.begin(), list.end(), [](const Reduction& r) { return is_global_reduction(r.op); });
    // The tensor totals, if they belong to a tensor (the same branch in every lane of a block).
    auto flush_tensor_totals = [&](llvm::Value* unless_tensor) {
        llvm::Value* owner = b.CreateLoad(b.getInt64Ty(), totals_tensor);
        llvm::Value* due = b.CreateICmpSGE(owner, b.getInt64(0));
        if (unless_tensor) due = b.CreateAnd(due, b.CreateICmpNE(owner, unless_tensor));
        llvm::BasicBlock* now = llvm::BasicBlock::Create(ctx, "reduce.tensor_done", fn);
        llvm::BasicBlock* after = llvm::BasicBlock::Create(ctx, "reduce.same_tensor", fn);
        b.CreateCondBr(due, now, after);
        b.SetInsertPoint(now);
        flush(false, owner);
        b.CreateBr(after);
        b.SetInsertPoint(after);
    };

    emit_chunk_loop(b, spec, lanes.table, lanes.num_tensors, lanes.first, lanes.stride, lanes.limit, [&](const ChunkContext& chunk) {
        if (any_tensor) {
            flush_tensor_totals(chunk.tensor);
            b.CreateStore(chunk.tensor, totals_tensor);
        }
        loader.point_at(b, chunk, lanes.address_space);
        // The values of the earlier levels' reductions for this tensor (none in level 1's pass).
        const std::vector<llvm::Value*> earlier =
            level > 1 ? emit_reduction_values(b, spec, walk.global_slots, walk.tensor_slots, chunk.tensor, level) : std::vector<llvm::Value*>{};
        llvm::Value* n = chunk.word(layout.n());
        llvm::Value* lo = b.CreateAdd(chunk.first_element, b.CreateMul(lanes.lane, b.getInt64(walk.run)));  // the lane's first element
        // Element j (i64) of the lane: run j / run, place j % run in it (constants fold).
        auto element_at = [&](llvm::Value* j) {
            llvm::Value* runs = b.CreateUDiv(j, b.getInt64(walk.run));
            return b.CreateAdd(lo, b.CreateAdd(b.CreateMul(runs, b.getInt64(walk.lane_count * walk.run)), b.CreateURem(j, b.getInt64(walk.run))));
        };
        auto element = [&](int64_t j) { return element_at(b.getInt64(j)); };
        // Rank-1 states decode with their stored statistics.
        std::vector<std::unique_ptr<Rank1Statistics>> rank1(prog.states.size());
        for (size_t s = 0; s < prog.states.size(); ++s)
            if (loader.codec(int(s)) && loader.codec(int(s))->storage().rank1)
                rank1[s] = std::make_unique<Rank1Statistics>(b, loader.scales(int(s)), n, chunk.word(layout.columns()));
        auto rank1_scale = [&](int s, llvm::Value* i) { return rank1[size_t(s)]->stored_scale(b, rank1[size_t(s)]->cursor(b, i)); };
        // Accumulates an element's arguments into `acc` (sums in acc's type).
        auto accumulate_values = [&](ElementValues in, std::vector<llvm::Value*> acc) {
            in.reductions = earlier;
            ElementValues out = math.update(b, in);
            for (size_t k = 0; k < list.size(); ++k) {
                llvm::Value* arg = out.reductions[index[k]];
                if (is_max(list[k].op)) acc[k] = b.CreateBinaryIntrinsic(llvm::Intrinsic::maximum, acc[k], arg);
                else acc[k] = b.CreateFAdd(acc[k], acc[k]->getType()->isDoubleTy() ? b.CreateFPExt(arg, b.getDoubleTy()) : arg);
            }
            return acc;
        };
        auto accumulate = [&](llvm::Value* i, std::vector<llvm::Value*> acc) {
            return accumulate_values(loader.load(b, i, [&](int s) { return rank1_scale(s, i); }), std::move(acc));
        };
        // The lane's elements j, j + 1, ... j + run - 1 (j a multiple of run), from vector loads.
        auto accumulate_run = [&](int64_t j, std::vector<llvm::Value*> acc) {
            if (walk.run == 1) return accumulate(element(j), std::move(acc));
            for (const ElementValues& in : loader.load_run(b, element(j), int(walk.run), rank1_scale)) acc = accumulate_values(in, std::move(acc));
            return acc;
        };
        auto initial = [&](bool wide) {  // a lane's partials before any element: fp32 sums unless `wide`
            std::vector<llvm::Value*> out;
            for (const Reduction& r : list)
                out.push_back(is_max(r.op) || wide ? initial_total(b, r) : llvm::ConstantFP::get(b.getFloatTy(), 0.0));
            return out;
        };
        auto phis = [&](const std::vector<std::pair<std::vector<llvm::Value*>, llvm::BasicBlock*>>& incoming) {
            std::vector<llvm::Value*> out;
            for (size_t k = 0; k < list.size(); ++k) {
                llvm::PHINode* phi = b.CreatePHI(incoming[0].first[k]->getType(), unsigned(incoming.size()));
                for (const auto& [values, from] : incoming) phi->addIncoming(values[k], from);
                out.push_back(phi);
            }
            return out;
        };

        llvm::BasicBlock* full = llvm::BasicBlock::Create(ctx, "reduce.full", fn);
        llvm::BasicBlock* partial = llvm::BasicBlock::Create(ctx, "reduce.partial", fn);
        llvm::BasicBlock* loop = llvm::BasicBlock::Create(ctx, "reduce.element", fn);
        llvm::BasicBlock* done = llvm::BasicBlock::Create(ctx, "reduce.done", fn);
        llvm::Value* last = element(lanes.elements_per_lane - 1);
        llvm::Value* straight = b.CreateAnd(b.getInt1(unrolled), b.CreateICmpSLT(last, n));
        if (walk.run > 1) straight = b.CreateAnd(straight, loader.aligned(b));
        b.CreateCondBr(straight, full, partial);

        // Every element of the lane in range (and, for runs, every array aligned to vectors):
        // straight-line, fp32 partials, then float64.
        b.SetInsertPoint(full);
        std::vector<llvm::Value*> sums = initial(false);
        for (int64_t j = 0; unrolled && j < lanes.elements_per_lane; j += walk.run) sums = accumulate_run(j, sums);
        for (size_t k = 0; k < list.size(); ++k)
            if (!is_max(list[k].op)) sums[k] = b.CreateFPExt(sums[k], b.getDoubleTy());
        llvm::BasicBlock* full_end = b.GetInsertBlock();
        b.CreateBr(done);

        // Otherwise element by element while in range, in float64.
        b.SetInsertPoint(partial);
        std::vector<llvm::Value*> start = initial(true);
        b.CreateCondBr(b.CreateICmpSLT(lo, n), loop, done);
        b.SetInsertPoint(loop);
        llvm::PHINode* j = b.CreatePHI(b.getInt64Ty(), 2, "j");
        j->addIncoming(b.getInt64(0), partial);
        std::vector<llvm::Value*> acc = phis({{start, partial}});
        llvm::Value* i = element_at(j);
        std::vector<llvm::Value*> next = accumulate(i, acc);
        llvm::BasicBlock* loop_end = b.GetInsertBlock();
        for (size_t k = 0; k < list.size(); ++k) llvm::cast<llvm::PHINode>(acc[k])->addIncoming(next[k], loop_end);
        llvm::Value* j_next = b.CreateAdd(j, b.getInt64(1));
        j->addIncoming(j_next, loop_end);
        llvm::Value* more = b.CreateAnd(b.CreateICmpSLT(j_next, b.getInt64(lanes.elements_per_lane)), b.CreateICmpSLT(element_at(j_next), n));
        b.CreateCondBr(more, loop, done);

        b.SetInsertPoint(done);
        std::vector<llvm::Value*> partials = phis({{sums, full_end}, {start, partial}, {next, loop_end}});
        for (size_t k = 0; k < list.size(); ++k) {
            llvm::Value* t = b.CreateLoad(total[k]->getAllocatedType(), total[k]);
            b.CreateStore(is_max(list[k].op) ? b.CreateBinaryIntrinsic(llvm::Intrinsic::maximum, t, partials[k]) : b.CreateFAdd(t, partials[k]),
                          total[k]);
        }
    });
    if (any_tensor) flush_tensor_totals(nullptr);
    if (any_global) flush(true, nullptr);
}

std::vector<llvm::Value*> emit_reduction_values(llvm::IRBuilder<>& b, const KernelSpec& spec, llvm::Value* global_slots,
                                                llvm::Value* tensor_slots, llvm::Value* tensor, int below_level) {
    std::vector<llvm::Value*> out;
    const std::vector<int> levels = below_level > 0 ? reduction_levels(spec.lowered) : std::vector<int>{};
    for (const Reduction& r : reductions(spec.lowered)) {
        if (below_level > 0 && levels[out.size()] >= below_level) {
            out.push_back(nullptr);
            continue;
        }
        llvm::Value* at = slot_address(b, spec.lowered, r, global_slots, tensor_slots, tensor);
        llvm::Type* type = is_max(r.op) ? b.getInt32Ty() : b.getDoubleTy();  // a key in the slot's low half (little-endian)
        auto* load = b.CreateAlignedLoad(type, at, llvm::Align(is_max(r.op) ? 4 : 8));
        load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(b.getContext(), {}));  // the reduction pass wrote it
        out.push_back(is_max(r.op) ? from_max_key(b, load) : b.CreateFPTrunc(load, b.getFloatTy()));
    }
    return out;
}

}  // namespace optjit
