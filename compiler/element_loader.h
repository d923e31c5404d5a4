// Elements of a tensor as the passes that run before an update read it: p, g and every state
// as fp32 (block-quantized states decoded), one element by scalar loads or a run of
// consecutive elements by vector loads. The update kernels have their own paths (stores,
// software pipelining); these passes (reductions, rank-1 statistics) only read. Nothing here is
// written while they run: every load is invariant (the GPU's non-coherent path).
#pragma once

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>

#include <functional>
#include <memory>
#include <vector>

#include "compiler/codegen.h"
#include "compiler/element_math.h"
#include "compiler/kernel_abi.h"
#include "compiler/state_codec.h"

namespace optjit {

class ElementLoader {
public:
    ElementLoader(llvm::Module& module, const KernelSpec& spec, const ElementMath& math);
    // Points at the tensor of a chunk (its row's words); `address_space` is the tensors' memory.
    void point_at(llvm::IRBuilder<>& b, const ChunkContext& chunk, unsigned address_space);
    // Element `i` (i64) of that tensor. A block-quantized state decodes with its block's scale,
    // or with `rank1_scale(state index)` for a rank-1 state (which the caller must then give).
    ElementValues load(llvm::IRBuilder<>& b, llvm::Value* i, const std::function<llvm::Value*(int)>& rank1_scale = {}) const;
    // Elements i .. i + count - 1 in loads of up to 16 bytes. `count` is a power of two of at
    // most 8 that divides every block size, `i` a multiple of it, and every array's address a
    // multiple of 16 (aligned()). A rank-1 state's scale is `rank1_scale(state, element)`.
    std::vector<ElementValues> load_run(llvm::IRBuilder<>& b, llvm::Value* i, int count,
                                        const std::function<llvm::Value*(int, llvm::Value*)>& rank1_scale = {}) const;
    // i1: every array of the tensor (p, g, states' values) starts at a multiple of 16 bytes.
    llvm::Value* aligned(llvm::IRBuilder<>& b) const;

    const StateCodec* codec(int state) const { return codecs_[size_t(state)].get(); }  // nullptr if not block-quantized
    llvm::Value* scales(int state) const { return scales_[size_t(state)]; }         // the state's scales word as a pointer

private:
    const KernelSpec& spec_;
    const ElementMath& math_;
    std::vector<std::unique_ptr<StateCodec>> codecs_;
    llvm::Value* p_ = nullptr;
    llvm::Value* g_ = nullptr;
    std::vector<llvm::Value*> states_, scales_;
};

}  // namespace optjit
