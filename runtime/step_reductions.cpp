#include "runtime/step_reductions.h"

#include <cstring>

#include "compiler/kernel_abi.h"
#include "ir/analysis.h"

namespace optjit {

StepReductions::StepReductions(Device device, const Program& lowered, std::vector<int32_t> tensors_per_launch)
    : device_(device), globals_(global_reduction_count(lowered)), per_tensor_(tensor_reduction_count(lowered)),
      tensors_(std::move(tensors_per_launch)) {
    for (const Reduction& r : reductions(lowered)) reductions_.push_back(r.op);
    if (reductions_.empty()) return;
    bytes_ = 8 * size_t(globals_);
    for (int32_t n : tensors_) {
        tensor_offsets_.push_back(bytes_);
        bytes_ += 8 * size_t(n) * size_t(per_tensor_);
    }
    memory_ = std::make_unique<DeviceMemory>(device_, bytes_);
}

ReductionSlots StepReductions::slots(size_t launch) const {
    if (!memory_) return {};
    // A kernel needs non-zero addresses even where a scope has no slots.
    return {memory_->address(), memory_->address() + tensor_offsets_.at(launch)};
}

void StepReductions::clear(cuda::Stream stream) {
    if (!memory_) return;
    if (device_ == Device::Cuda)
        cuda::memset_d32_async(memory_->address(), 0, bytes_ / 4, stream);
    else
        std::memset(reinterpret_cast<void*>(memory_->address()), 0, bytes_);
}

std::vector<std::vector<double>> StepReductions::values() const {
    std::vector<std::vector<double>> out(reductions_.size());
    if (!memory_) return out;
    std::vector<uint64_t> words(bytes_ / 8);
    copy_to_host(device_, memory_->address(), words.data(), bytes_);
    int global = 0, tensor = 0;
    for (size_t k = 0; k < reductions_.size(); ++k) {
        Op op = reductions_[k];
        if (is_global_reduction(op)) {
            out[k].push_back(reduction_slot_value(op, words[size_t(global++)]));
            continue;
        }
        for (size_t l = 0; l < tensors_.size(); ++l)
            for (int32_t t = 0; t < tensors_[l]; ++t)
                out[k].push_back(reduction_slot_value(op, words[tensor_offsets_[l] / 8 + size_t(t) * size_t(per_tensor_) + size_t(tensor)]));
        ++tensor;
    }
    return out;
}

uint64_t StepReductions::global_slot_address(int slot) const { return memory_ ? memory_->address() + 8 * uint64_t(slot) : 0; }

}  // namespace optjit
