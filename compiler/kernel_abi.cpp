#include "compiler/kernel_abi.h"

namespace optjit {

std::vector<std::string> kernel_scalars(const Program& lowered) {
    std::vector<std::string> names{std::string(kStepName)};
    for (const HyperDecl& h : lowered.hypers) names.push_back(h.name);
    for (const Assign& a : lowered.scalars) names.push_back(a.target);
    return names;
}

int64_t chunk_elements(const Target& target) {
    // Host: large enough that a call per chunk costs nothing, small enough to stay in L2.
    return target.is_gpu() ? int64_t(kGpuThreadsPerBlock) * kGpuElementsPerThread : 16384;
}

}  // namespace optjit
