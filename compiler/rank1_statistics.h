// Rank-1 states (q4u:rank1, ir/quantization.h) in kernels: what the NVPTX and host back ends
// share. An element's scale is the smaller of its row's and its column's statistic; the
// statistics of a step are found by a pass of their own before the update (compiler/kernel_abi.h
// gives the buffer layout and the order of a step).
#pragma once

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>

#include <functional>
#include <vector>

#include "compiler/codegen.h"
#include "compiler/kernel_abi.h"

namespace optjit {

// An element's row and column (i64), stepped forward one element at a time without dividing.
struct Rank1Cursor {
    llvm::Value* row;
    llvm::Value* column;
};

// One rank-1 state's statistics buffer in one tensor: [stored rows | stored columns | new rows
// | new columns], `rows` = n / columns.
class Rank1Statistics {
public:
    // `buffer`: float pointer (the state's scales word); `n`, `columns`: i64 words of the row.
    Rank1Statistics(llvm::IRBuilder<>& b, llvm::Value* buffer, llvm::Value* n, llvm::Value* columns);

    // The cursor of `element` (i64, clamped into the tensor: elements past its end take the
    // last element's row and column), and of the element after it.
    Rank1Cursor cursor(llvm::IRBuilder<>& b, llvm::Value* element) const;
    Rank1Cursor next(llvm::IRBuilder<>& b, const Rank1Cursor& c) const;
    // Whether `next(c)` starts a new row.
    llvm::Value* ends_row(llvm::IRBuilder<>& b, const Rank1Cursor& c) const;

    // min(row statistic, column statistic), NaN if either is, as fp32: the stored statistics
    // (to decode) or the new ones (to encode).
    llvm::Value* stored_scale(llvm::IRBuilder<>& b, const Rank1Cursor& c) const { return scale(b, c, false); }
    llvm::Value* new_scale(llvm::IRBuilder<>& b, const Rank1Cursor& c) const { return scale(b, c, true); }

    // Raises the new statistic of a row or a column to `magnitude` (i32 fp32 bits, as
    // StateCodec::magnitude_bits gives), atomically.
    void raise_row(llvm::IRBuilder<>& b, llvm::Value* row, llvm::Value* magnitude) const;
    void raise_column(llvm::IRBuilder<>& b, llvm::Value* column, llvm::Value* magnitude) const;

private:
    llvm::Value* scale(llvm::IRBuilder<>& b, const Rank1Cursor& c, bool fresh) const;
    llvm::Value* statistic(llvm::IRBuilder<>& b, llvm::Value* index) const;  // i32 bits of buffer[index]
    void raise(llvm::IRBuilder<>& b, llvm::Value* index, llvm::Value* magnitude) const;

    llvm::Value* buffer_;
    llvm::Value* n_;
    llvm::Value* columns_;
    llvm::Value* rows_;
};

// Where the statistics pass runs: a kernel function whose builder is in its entry block.
// Chunks first, first + stride, ... below limit; in each, lane `lane` of the chunk's lanes
// takes `elements_per_lane` consecutive elements (GPU: a thread's 8, as in the update; host:
// the whole chunk).
struct StatisticsWalk {
    llvm::Value* table;        // the tensor table (compiler/kernel_abi.h)
    llvm::Value* num_tensors;  // i32
    llvm::Value* first;  // i64 chunks
    llvm::Value* stride;
    llvm::Value* limit;
    llvm::Value* lane;  // i64
    int64_t elements_per_lane;
    std::vector<llvm::Value*> scalars;  // fp32, kernel_scalars() order
    unsigned address_space;             // of the tensors' memory
    // The program's reduction values for a chunk's tensor (compiler/reductions.h), where it has
    // reductions and the pass needs them (the rank-1 statistics pass; not the reduction pass).
    std::function<std::vector<llvm::Value*>(const ChunkContext&)> reduction_values = {};
};

// Emits the statistics pass (step 2 of compiler/kernel_abi.h's rank-1 step) and returns.
void emit_statistics_pass(llvm::IRBuilder<>& b, llvm::Module& module, const KernelSpec& spec, const StatisticsWalk& walk);

}  // namespace optjit
