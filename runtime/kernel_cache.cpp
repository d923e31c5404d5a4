#include "runtime/kernel_cache.h"

#include <fmt/format.h>
#include <llvm/Transforms/Utils/Cloning.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "compiler/host_jit.h"
#include "compiler/kernel_abi.h"
#include "compiler/llvm_backend.h"
#include "ir/analysis.h"
#include "runtime/fnv1a.h"

namespace optjit {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Entry header: magic, payload size and FNV-1a 64 checksum of the payload, little-endian.
constexpr char kMagic[8] = {'O', 'P', 'T', 'J', 'I', 'T', 'C', '1'};
constexpr size_t kHeaderBytes = 24;

uint64_t fnv1a(const std::string& s) { return optjit::fnv1a({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }

}  // namespace

std::string encode_cache_entry(const std::string& payload) {
    const uint64_t size = payload.size(), sum = fnv1a(payload);
    std::string out;
    out.reserve(24 + payload.size());
    out.append(kMagic, 8);
    out.append(reinterpret_cast<const char*>(&size), 8);
    out.append(reinterpret_cast<const char*>(&sum), 8);
    out += payload;
    return out;
}

Kernel::Kernel(KernelSpec spec, std::string key) : spec_(std::move(spec)), key_(std::move(key)) {}

Kernel::~Kernel() {
    if (cuda_module) {
        try {
            cuda::unload_module(cuda_module);
        } catch (...) {  // the context may be gone at process exit
        }
    }
}

int64_t Kernel::chunk_elements() const { return optjit::chunk_elements(spec_); }

KernelCache::KernelCache(std::string disk_dir) : disk_dir_(std::move(disk_dir)) {}

std::string KernelCache::default_disk_dir() {
    if (const char* d = std::getenv("OPTJIT_CACHE_DIR"); d && *d) return d;
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/optjit";
    if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/optjit";
    return "";
}

KernelCache& KernelCache::global() {
    static KernelCache cache(default_disk_dir());
    return cache;
}

CacheStats KernelCache::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

bool KernelCache::read_entry(const std::string& path, std::string& payload) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string data = ss.str();
    uint64_t size = 0, sum = 0;
    bool ok = data.size() >= kHeaderBytes && std::memcmp(data.data(), kMagic, 8) == 0;
    if (ok) {
        std::memcpy(&size, data.data() + 8, 8);
        std::memcpy(&sum, data.data() + 16, 8);
        ok = data.size() - kHeaderBytes == size;
    }
    if (ok) {
        payload = data.substr(kHeaderBytes);
        ok = fnv1a(payload) == sum;
    }
    if (!ok) discard_entry(path, "corrupt");
    return ok;
}

void KernelCache::discard_entry(const std::string& path, const std::string& why) {
    debug_log(fmt::format("cache: discarding entry {}: {}", path, why));
    std::error_code ec;
    fs::remove(path, ec);
    std::lock_guard lock(mutex_);
    ++stats_.disk_rejected;
}

void KernelCache::write_entry(const std::string& path, const std::string& payload) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    std::string tmp = fmt::format("{}.tmp.{}.{}", path, ::getpid(), std::random_device{}());
    {
        std::ofstream out(tmp, std::ios::binary);
        out << encode_cache_entry(payload);
        if (!out) {
            debug_log(fmt::format("cache: cannot write {} (caching in memory only)", tmp));
            fs::remove(tmp, ec);
            return;
        }
    }
    fs::rename(tmp, path, ec);  // atomic: readers see the old entry, none, or the whole new one
    if (ec) fs::remove(tmp, ec);
}

std::shared_ptr<const Kernel> KernelCache::get(const KernelRequest& request) {
    auto t0 = Clock::now();
    KernelSpec spec = lower(request);
    std::string key = cache_key(spec);
    std::promise<std::shared_ptr<const Kernel>> built;
    std::shared_future<std::shared_ptr<const Kernel>> other;  // another thread's compile of this key
    {
        std::lock_guard lock(mutex_);
        auto it = memory_.find(key);
        if (it != memory_.end()) {
            ++stats_.memory_hits;
            return it->second;
        }
        auto [in_progress, first] = building_.try_emplace(key, built.get_future().share());
        if (!first) {
            other = in_progress->second;
            ++stats_.memory_hits;
        }
    }
    if (other.valid()) return other.get();  // waited for without the lock (its exception, if it failed)
    std::shared_ptr<const Kernel> kernel;
    try {
        kernel = build(request, std::move(spec), key);
    } catch (...) {
        std::lock_guard lock(mutex_);
        building_.erase(key);
        built.set_exception(std::current_exception());
        throw;
    }
    std::lock_guard lock(mutex_);
    memory_.emplace(key, kernel);
    building_.erase(key);
    built.set_value(kernel);
    debug_log(fmt::format("kernel {} ready in {:.2f} ms", key, ms_since(t0)));
    return kernel;
}

std::shared_ptr<Kernel> KernelCache::build(const KernelRequest& request, KernelSpec spec, const std::string& key) {
    auto kernel = std::make_shared<Kernel>(std::move(spec), key);
    const Target& target = kernel->spec().target;
    if (target.is_gpu()) {
        int cc = cuda::init();
        if (cc != target.sm)
            throw std::invalid_argument(fmt::format("kernel requested for {} but the GPU ({}) is sm_{}", target.name(), cuda::device_name(), cc));
        // The disk holds the PTX; the driver compiles it as a whole program and keeps the
        // machine code in its own JIT cache, so a warm start costs about a millisecond.
        // Relocatable kernels (CodegenOptions::gpu_relocatable) compile through cuLink, outside
        // that cache: the disk holds their cubin.
        const bool relocatable = kernel->spec().options.gpu_relocatable;
        const std::string entry = disk_dir_.empty() ? "" : (fs::path(disk_dir_) / key).string() + (relocatable ? ".cubin" : ".ptx");
        std::string image;
        if (!entry.empty() && read_entry(entry, image)) {
            auto t = Clock::now();
            try {
                kernel->cuda_module = cuda::load_module(image, key);
                debug_log(fmt::format("compile {}: disk cache hit, {} loaded in {:.2f} ms", key, relocatable ? "cubin" : "PTX", ms_since(t)));
                std::lock_guard lock(mutex_);
                ++stats_.disk_hits;
            } catch (const cuda::CudaError& e) {  // a checksum that holds over what the driver refuses (another GPU's cubin)
                discard_entry(entry, fmt::format("the driver refused it: {}", e.what()));
            }
        }
        if (!kernel->cuda_module) {
            CompileTimes times;
            debug_log(fmt::format("compile {}: cache miss ({})", key, to_string(kernel->spec().storage, kernel->spec().lowered)));
            std::string ptx = emit_text(request, Emit::Assembly, &times);
            auto t = Clock::now();
            float driver_ms = 0;
            image = relocatable ? cuda::compile_relocatable(ptx, key, &driver_ms) : ptx;
            kernel->cuda_module = cuda::load_module(image, key, relocatable ? nullptr : &driver_ms);
            debug_log(fmt::format("compile {}: passes {:.2f} ms, codegen {:.2f} ms, optimize {:.2f} ms, ptx {:.2f} ms, ptx->loaded module {:.2f} ms "
                                  "(the driver's compile {:.2f} ms{}, the rest waiting for its other compiles)",
                                  key, times.passes_ms, times.codegen_ms, times.optimize_ms, times.emit_ms, ms_since(t), driver_ms,
                                  relocatable ? " through cuLink" : ""));
            if (!entry.empty()) write_entry(entry, image);
            std::lock_guard lock(mutex_);
            ++stats_.compiles;
        }
        kernel->cuda_function = cuda::get_function(kernel->cuda_module, kernel_symbol(kernel->spec()));
        if (has_statistics_pass(kernel->spec())) {
            kernel->cuda_statistics_function = cuda::get_function(kernel->cuda_module, statistics_symbol(kernel->spec()));
            kernel->gpu_statistics_blocks_per_sm =
                std::max(1, cuda::occupancy(kernel->cuda_statistics_function, gpu_threads_per_block(kernel->spec())));
        }
        for (int level = 1, levels = reduction_level_count(kernel->spec().lowered); level <= levels; ++level) {
            kernel->cuda_reductions_functions.push_back(cuda::get_function(kernel->cuda_module, reductions_symbol(kernel->spec(), level)));
            kernel->gpu_reductions_blocks_per_sm.push_back(
                std::max(1, cuda::occupancy(kernel->cuda_reductions_functions.back(), gpu_threads_per_block(kernel->spec()))));
        }
        if (kernel->spec().options.capturable)
            kernel->cuda_scalars_function = cuda::get_function(kernel->cuda_module, scalars_symbol(kernel->spec()));
        kernel->gpu_blocks_per_sm = std::max(1, cuda::occupancy(kernel->cuda_function, gpu_threads_per_block(kernel->spec())));
        if (const int cap = gpu_max_blocks_per_sm(kernel->spec()); cap > 0) kernel->gpu_blocks_per_sm = std::min(kernel->gpu_blocks_per_sm, cap);
        if (debug_enabled())
            debug_log(fmt::format("kernel {}: {} registers, {} blocks an SM{}", key, cuda::registers(kernel->cuda_function),
                                  kernel->gpu_blocks_per_sm, relocatable ? " (relocatable)" : ""));
        return kernel;
    }
    debug_log(fmt::format("compile {}: cache miss ({})", key, to_string(kernel->spec().storage, kernel->spec().lowered)));
    CompiledModule m = compile_module(request);
    dump_stage(key, "12-kernel.s", [&] {  // ORC makes machine code, not text: assemble a copy for the dump
        std::unique_ptr<llvm::Module> copy = llvm::CloneModule(*m.module);
        std::unique_ptr<llvm::TargetMachine> machine = make_target_machine(target);
        return emit_assembly(*copy, *machine);
    });
    auto t = Clock::now();
    std::vector<std::string> symbols{kernel_symbol(kernel->spec())};
    const bool statistics = has_statistics_pass(kernel->spec());
    const int levels = reduction_level_count(kernel->spec().lowered);
    if (statistics) symbols.push_back(statistics_symbol(kernel->spec()));
    for (int level = 1; level <= levels; ++level) symbols.push_back(reductions_symbol(kernel->spec(), level));
    std::vector<uint64_t> addresses = jit_host_module(std::move(m.context), std::move(m.module), key, symbols);
    kernel->host_entry = reinterpret_cast<Kernel::HostEntry>(addresses[0]);
    if (statistics) kernel->host_statistics_entry = reinterpret_cast<Kernel::HostEntry>(addresses[1]);
    for (size_t k = addresses.size() - size_t(levels); k < addresses.size(); ++k)
        kernel->host_reductions_entries.push_back(reinterpret_cast<Kernel::HostEntry>(addresses[k]));
    debug_log(fmt::format("compile {}: passes {:.2f} ms, codegen {:.2f} ms, optimize {:.2f} ms, machine code {:.2f} ms", key,
                          m.times.passes_ms, m.times.codegen_ms, m.times.optimize_ms, ms_since(t)));
    std::lock_guard lock(mutex_);
    ++stats_.compiles;
    return kernel;
}

}  // namespace optjit
