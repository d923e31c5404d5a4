#include "compiler/rank1_statistics.h"

#include <memory>

#include "compiler/codegen.h"
#include "compiler/element_loader.h"
#include "compiler/element_math.h"
#include "compiler/state_codec.h"
#include "ir/numeric.h"

namespace optjit {

Rank1Statistics::Rank1Statistics(llvm::IRBuilder<>& b, llvm::Value* buffer, llvm::Value* n, llvm::Value* columns)
    : buffer_(buffer), n_(n), columns_(columns), rows_(b.CreateUDiv(n, columns, "rows")) {}

Rank1Cursor Rank1Statistics::cursor(llvm::IRBuilder<>& b, llvm::Value* element) const {
    llvm::Value* e = b.CreateBinaryIntrinsic(llvm::Intrinsic::smin, element, b.CreateSub(n_, b.getInt64(1)));
    llvm::Value* row = b.CreateUDiv(e, columns_);
    return {row, b.CreateSub(e, b.CreateMul(row, columns_))};
}

llvm::Value* Rank1Statistics::ends_row(llvm::IRBuilder<>& b, const Rank1Cursor& c) const {
    return b.CreateICmpEQ(b.CreateAdd(c.column, b.getInt64(1)), columns_);
}

Rank1Cursor Rank1Statistics::next(llvm::IRBuilder<>& b, const Rank1Cursor& c) const {
    llvm::Value* wrap = ends_row(b, c);
    // Past the tensor's end the row stays the last one (those elements are never stored).
    llvm::Value* row = b.CreateBinaryIntrinsic(llvm::Intrinsic::umin, b.CreateAdd(c.row, b.CreateZExt(wrap, b.getInt64Ty())),
                                               b.CreateSub(rows_, b.getInt64(1)));
    return {row, b.CreateSelect(wrap, b.getInt64(0), b.CreateAdd(c.column, b.getInt64(1)))};
}

llvm::Value* Rank1Statistics::statistic(llvm::IRBuilder<>& b, llvm::Value* index) const {
    return b.CreateAlignedLoad(b.getInt32Ty(), b.CreateGEP(b.getInt32Ty(), buffer_, index), llvm::Align(4));
}

llvm::Value* Rank1Statistics::scale(llvm::IRBuilder<>& b, const Rank1Cursor& c, bool fresh) const {
    llvm::Value* first = fresh ? b.CreateAdd(rows_, columns_) : b.getInt64(0);  // of the rows' statistics
    llvm::Value* row = statistic(b, b.CreateAdd(first, c.row));
    llvm::Value* column = statistic(b, b.CreateAdd(b.CreateAdd(first, rows_), c.column));
    // Statistics are magnitudes (sign clear): as integers they order as floats, NaN above all.
    llvm::Value* smaller = b.CreateBinaryIntrinsic(llvm::Intrinsic::umin, row, column);
    llvm::Value* larger = b.CreateBinaryIntrinsic(llvm::Intrinsic::umax, row, column);
    llvm::Value* bits = b.CreateSelect(b.CreateICmpUGT(larger, b.getInt32(0x7f800000)), larger, smaller);
    return b.CreateBitCast(bits, b.getFloatTy());
}

// Statistics only grow during the pass, so a value read at any time is a lower bound: where the
// magnitude does not exceed it, the atomic is skipped. After the first rows almost every
// element is below its column's maximum, and the atomics (one an element, contended by every
// row of a column) become rare.
void Rank1Statistics::raise(llvm::IRBuilder<>& b, llvm::Value* index, llvm::Value* magnitude) const {
    llvm::Function* fn = b.GetInsertBlock()->getParent();
    llvm::Value* address = b.CreateGEP(b.getInt32Ty(), buffer_, index);
    auto* current = b.CreateAlignedLoad(b.getInt32Ty(), address, llvm::Align(4));
    current->setAtomic(llvm::AtomicOrdering::Monotonic);
    llvm::BasicBlock* raise = llvm::BasicBlock::Create(b.getContext(), "statistic.raise", fn);
    llvm::BasicBlock* done = llvm::BasicBlock::Create(b.getContext(), "statistic.done", fn);
    b.CreateCondBr(b.CreateICmpUGT(magnitude, current), raise, done);
    b.SetInsertPoint(raise);
    b.CreateAtomicRMW(llvm::AtomicRMWInst::UMax, address, magnitude, llvm::Align(4), llvm::AtomicOrdering::Monotonic);
    b.CreateBr(done);
    b.SetInsertPoint(done);
}

void Rank1Statistics::raise_row(llvm::IRBuilder<>& b, llvm::Value* row, llvm::Value* magnitude) const {
    raise(b, b.CreateAdd(b.CreateAdd(rows_, columns_), row), magnitude);
}

void Rank1Statistics::raise_column(llvm::IRBuilder<>& b, llvm::Value* column, llvm::Value* magnitude) const {
    raise(b, b.CreateAdd(b.CreateAdd(b.CreateAdd(rows_, columns_), rows_), column), magnitude);
}

// Per lane: its elements in order, decoded and updated as the update kernel does (the same
// ElementMath, so the same fp32 values); each rank-1 state's new magnitudes raise their
// columns' statistics one by one and their row's once per run of the row.
void emit_statistics_pass(llvm::IRBuilder<>& b, llvm::Module& module, const KernelSpec& spec, const StatisticsWalk& walk) {
    llvm::LLVMContext& ctx = b.getContext();
    llvm::Function* fn = b.GetInsertBlock()->getParent();
    const Program& prog = spec.lowered;
    const TableLayout layout = table_layout(spec);
    const int S = layout.num_states;
    ElementMath math(module, prog, spec.target, spec.options, walk.scalars);
    ElementLoader loader(module, spec, math);

    emit_chunk_loop(b, spec, walk.table, walk.num_tensors, walk.first, walk.stride, walk.limit, [&](const ChunkContext& chunk) {
        llvm::Value* n = chunk.word(layout.n());
        llvm::Value* lo = b.CreateAdd(chunk.first_element, b.CreateMul(walk.lane, b.getInt64(walk.elements_per_lane)));
        llvm::Value* hi = b.CreateBinaryIntrinsic(llvm::Intrinsic::smin, b.CreateAdd(lo, b.getInt64(walk.elements_per_lane)), n);
        loader.point_at(b, chunk, walk.address_space);
        std::vector<llvm::Value*> reduction_values = walk.reduction_values ? walk.reduction_values(chunk) : std::vector<llvm::Value*>{};
        std::vector<std::unique_ptr<Rank1Statistics>> statistics(S);  // of the rank-1 states the program stores
        std::vector<std::unique_ptr<Rank1Statistics>> read_only(S);   // of the rank-1 states it only reads
        int any_rank1 = -1;
        for (int s = 0; s < S; ++s) {
            if (!loader.codec(s) || !loader.codec(s)->storage().rank1) continue;
            auto r = std::make_unique<Rank1Statistics>(b, loader.scales(s), n, chunk.word(layout.columns()));
            if (rank1_state_is_stored(spec, prog.states[s].name)) statistics[s] = std::move(r), any_rank1 = s;
            else read_only[s] = std::move(r);
        }
        llvm::BasicBlock* before = b.GetInsertBlock();
        llvm::BasicBlock* loop = llvm::BasicBlock::Create(ctx, "statistics.element", fn);
        llvm::BasicBlock* flush = llvm::BasicBlock::Create(ctx, "statistics.row", fn);
        llvm::BasicBlock* next = llvm::BasicBlock::Create(ctx, "statistics.next", fn);
        llvm::BasicBlock* done = llvm::BasicBlock::Create(ctx, "statistics.done", fn);
        Rank1Cursor start = statistics[any_rank1]->cursor(b, lo);
        b.CreateCondBr(b.CreateICmpSLT(lo, hi), loop, done);

        b.SetInsertPoint(loop);
        llvm::PHINode* i = b.CreatePHI(b.getInt64Ty(), 2, "i");
        llvm::PHINode* row = b.CreatePHI(b.getInt64Ty(), 2, "row");
        llvm::PHINode* column = b.CreatePHI(b.getInt64Ty(), 2, "column");
        i->addIncoming(lo, before);
        row->addIncoming(start.row, before);
        column->addIncoming(start.column, before);
        std::vector<llvm::PHINode*> row_max(S, nullptr);  // the run's largest magnitude so far
        for (int s = 0; s < S; ++s)
            if (statistics[s]) {
                row_max[s] = b.CreatePHI(b.getInt32Ty(), 2);
                row_max[s]->addIncoming(b.getInt32(0), before);
            }
        Rank1Cursor here{row, column};

        ElementValues in = loader.load(b, i, [&](int s) {
            const Rank1Statistics* rank1 = statistics[s] ? statistics[s].get() : read_only[s].get();
            return rank1->stored_scale(b, here);
        });
        in.reductions = reduction_values;
        ElementValues out = math.update(b, in);

        llvm::Value* i_next = b.CreateAdd(i, b.getInt64(1));
        llvm::Value* row_ends = b.CreateOr(statistics[any_rank1]->ends_row(b, here), b.CreateICmpEQ(i_next, hi));
        std::vector<llvm::Value*> run_max(S, nullptr);
        for (int s = 0; s < S; ++s) {
            if (!statistics[s]) continue;
            llvm::Value* magnitude = StateCodec::magnitude_bits(b, out.states[s]);
            statistics[s]->raise_column(b, column, magnitude);
            run_max[s] = b.CreateBinaryIntrinsic(llvm::Intrinsic::umax, row_max[s], magnitude);
        }
        llvm::BasicBlock* body_end = b.GetInsertBlock();
        b.CreateCondBr(row_ends, flush, next);
        b.SetInsertPoint(flush);
        for (int s = 0; s < S; ++s)
            if (statistics[s]) statistics[s]->raise_row(b, row, run_max[s]);
        llvm::BasicBlock* flush_end = b.GetInsertBlock();
        b.CreateBr(next);

        b.SetInsertPoint(next);
        for (int s = 0; s < S; ++s) {
            if (!statistics[s]) continue;
            llvm::PHINode* carried = b.CreatePHI(b.getInt32Ty(), 2);
            carried->addIncoming(run_max[s], body_end);
            carried->addIncoming(b.getInt32(0), flush_end);
            row_max[s]->addIncoming(carried, next);
        }
        Rank1Cursor after = statistics[any_rank1]->next(b, here);
        i->addIncoming(i_next, next);
        row->addIncoming(after.row, next);
        column->addIncoming(after.column, next);
        b.CreateCondBr(b.CreateICmpSLT(i_next, hi), loop, done);
        b.SetInsertPoint(done);
    });
}

}  // namespace optjit
