// The reduction slots of a step on one device (compiler/kernel_abi.h): the global slots, which
// every launch of the step shares, then each launch's tensor slots, in one allocation. A step
// with reductions is: clear(), every launch's LaunchPass::Reductions, then every launch's
// LaunchPass::Update (runtime/launch.h).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ir/program.h"
#include "runtime/device_memory.h"
#include "runtime/launch.h"

namespace optjit {

class StepReductions {
public:
    // `lowered`: the program every launch runs; `tensors_per_launch`: each launch's table size.
    StepReductions(Device device, const Program& lowered, std::vector<int32_t> tensors_per_launch);

    bool empty() const { return reductions_.empty(); }  // the program has no reductions
    ReductionSlots slots(size_t launch) const;
    void clear(cuda::Stream stream);  // zeroes every slot (on the GPU, queued on `stream`)

    // The reductions' values as the last step found them, in ir/analysis.h's order: a global
    // reduction's one value, a tensor reduction's value for every tensor of every launch (in
    // launch, then table order). Waits for the GPU's queued work.
    std::vector<std::vector<double>> values() const;
    // Where global reduction slot `slot` lives, for a caller that reads it without waiting (a
    // float64 for a sum; a maximum's key, compiler/kernel_abi.h).
    uint64_t global_slot_address(int slot) const;

private:
    Device device_;
    std::vector<Op> reductions_;  // kinds, in order
    int globals_ = 0, per_tensor_ = 0;
    std::vector<int32_t> tensors_;
    std::vector<size_t> tensor_offsets_;  // bytes, per launch
    size_t bytes_ = 0;
    std::unique_ptr<DeviceMemory> memory_;
};

}  // namespace optjit
