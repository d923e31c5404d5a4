// Compiled kernels and their cache.
//
// A kernel is looked up by its cache key (compiler/compile.h): in memory first, then, for GPU
// targets, on disk under $OPTJIT_CACHE_DIR (default ~/.cache/optjit): the PTX (the driver
// caches the machine code it compiles from it, runtime/cuda_driver.h), or for relocatable
// kernels cuLink's cubin, written atomically (a temporary file renamed into place) with a
// header holding its size and checksum (encode_cache_entry). An entry that is truncated,
// corrupt, or refused by the driver is reported (with OPTJIT_DEBUG=1), deleted and rebuilt.
// Host kernels are cached in memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "compiler/compile.h"
#include "runtime/cuda_driver.h"

namespace optjit {

class Kernel {
public:
    using HostEntry = void (*)(const int64_t* table, int32_t num_tensors, int64_t chunk_begin, int64_t chunk_end, const float* scalars,
                               int64_t seed, void* global_slots, void* tensor_slots);

    Kernel(KernelSpec spec, std::string key);
    ~Kernel();
    Kernel(const Kernel&) = delete;
    Kernel& operator=(const Kernel&) = delete;

    const KernelSpec& spec() const { return spec_; }
    const std::string& key() const { return key_; }
    int64_t chunk_elements() const;

    // The update, for kernels with rank-1 states the statistics pass that runs before it, and
    // for programs with reductions the reduction passes that run first, one a level (element
    // L - 1 for level L; compiler/kernel_abi.h; runtime/launch.h runs them).
    HostEntry host_entry = nullptr, host_statistics_entry = nullptr;
    std::vector<HostEntry> host_reductions_entries;
    cuda::Module cuda_module = nullptr;
    cuda::Function cuda_function = nullptr, cuda_statistics_function = nullptr;
    std::vector<cuda::Function> cuda_reductions_functions;
    cuda::Function cuda_scalars_function = nullptr;  // capturable kernels' NAME_scalars
    // Resident blocks an SM of each function, which its grid assumes (the update's at most
    // kernel_abi.h's gpu_max_blocks_per_sm).
    int gpu_blocks_per_sm = 0, gpu_statistics_blocks_per_sm = 0;
    std::vector<int> gpu_reductions_blocks_per_sm;
    // How many reduction passes a step of this kernel runs (0 without reductions).
    int reduction_levels() const { return int(std::max(host_reductions_entries.size(), cuda_reductions_functions.size())); }

private:
    KernelSpec spec_;
    std::string key_;
};

struct CacheStats {
    int compiles = 0;       // kernels generated through LLVM
    int memory_hits = 0;
    int disk_hits = 0;      // GPU modules loaded from a disk entry (PTX or cubin)
    int disk_rejected = 0;  // corrupt, truncated or driver-refused entries discarded
};

// The bytes of a disk entry holding `payload`: a 24-byte header (the magic "OPTJITC1", the
// payload's size and its FNV-1a 64 checksum, little-endian), then the payload.
std::string encode_cache_entry(const std::string& payload);

class KernelCache {
public:
    // `disk_dir` empty: memory only.
    explicit KernelCache(std::string disk_dir);
    // The process-wide cache, on disk under $OPTJIT_CACHE_DIR or ~/.cache/optjit.
    static KernelCache& global();
    static std::string default_disk_dir();

    // The kernel for `request`, compiled if needed. Thread-safe: callers asking for a kernel
    // that another thread is compiling wait for that compile (one compile a key). Throws
    // std::invalid_argument for what the request asks that optjit cannot do, cuda::CudaError for
    // GPU failures.
    std::shared_ptr<const Kernel> get(const KernelRequest& request);
    CacheStats stats() const;
    const std::string& disk_dir() const { return disk_dir_; }

private:
    std::shared_ptr<Kernel> build(const KernelRequest& request, KernelSpec spec, const std::string& key);
    bool read_entry(const std::string& path, std::string& payload);
    void write_entry(const std::string& path, const std::string& payload);
    // Deletes an entry that cannot serve (`why`, with OPTJIT_DEBUG=1) and counts it rejected.
    void discard_entry(const std::string& path, const std::string& why);

    std::string disk_dir_;
    mutable std::mutex mutex_;
    std::map<std::string, std::shared_ptr<const Kernel>> memory_;
    std::map<std::string, std::shared_future<std::shared_ptr<const Kernel>>> building_;  // compiles in progress
    CacheStats stats_;
};

}  // namespace optjit
