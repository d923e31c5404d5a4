// One element of a tensor as the passes that run before an update read it: p, g and every
// state as fp32 (block-quantized states decoded), one scalar load each. The update kernels
// have their own vector paths; these passes (reductions, rank-1 statistics) only need the
// same values.
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
