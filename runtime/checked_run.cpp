#include "runtime/checked_run.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "ir/interpreter.h"
#include "ir/numeric.h"
#include "runtime/cuda_driver.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/random.h"

namespace optjit {

namespace {

constexpr int64_t kGuardElements = 64;
constexpr uint8_t kGuardByte = 0xa5;

// A tensor's values as stored (`type`), followed by a guard region.
struct Buffer {
    DType type;
    int64_t n;
    std::vector<uint8_t> bytes;

    Buffer(DType t, int64_t count) : type(t), n(count), bytes(size_t(count + kGuardElements) * dtype_bytes(t), kGuardByte) {}
    void* data() { return bytes.data(); }
    double get(int64_t i) const { return load_element(type, bytes.data(), size_t(i)); }
    void set(int64_t i, double v) { store_element(type, bytes.data(), size_t(i), v); }
    size_t total_bytes() const { return bytes.size(); }
    bool guard_intact() const {
        for (size_t i = size_t(n) * dtype_bytes(type); i < bytes.size(); ++i)
            if (bytes[i] != kGuardByte) return false;
        return true;
    }
};

struct DeviceBuffer {
    cuda::DevicePtr ptr = 0;
    explicit DeviceBuffer(size_t bytes) : ptr(cuda::malloc(bytes)) {}
    ~DeviceBuffer() {
        try {
            cuda::free(ptr);
        } catch (...) {
        }
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

uint64_t checksum(const std::vector<double>& values) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (double v : values) {
        float f = float(v);
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        for (int i = 0; i < 4; ++i) h = (h ^ ((bits >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    }
    return h;
}

double norm(const std::vector<double>& values) {
    double s = 0;
    for (double v : values) s += v * v;
    return std::sqrt(s);
}

}  // namespace

double max_relative_difference(const std::vector<double>& a, const std::vector<double>& b, int64_t* where) {
    // Errors of fp32 math scale with the magnitude of the terms, not of a result that
    // cancels to near zero: small values are measured against the tensor's RMS.
    double squares = 0;
    for (double v : b) squares += v * v;
    double floor = std::max(std::sqrt(squares / std::max<size_t>(b.size(), 1)), 1e-30), worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        double d = std::fabs(a[i] - b[i]) / std::max(std::fabs(b[i]), floor);
        if (std::isnan(a[i]) != std::isnan(b[i])) d = INFINITY;
        if (d > worst || (std::isinf(d) && !std::isinf(worst))) {
            worst = d;
            if (where) *where = int64_t(i);
        }
    }
    return worst;
}

double tolerance_for(DType t) {
    // fp32 math against float64 math differs by rounding; a 16-bit stored value may land an
    // ulp apart, and a state carries such flips from step to step (seen: 2.3 bf16 ulps after
    // 10 AdEMAMix steps on an H200), so 16-bit types get four ulps.
    switch (t) {
    case DType::F32: return 2e-5;
    case DType::BF16: return 0x1p-5;
    case DType::F16: return 0x1p-8;
    }
    return 0;
}

RunSummary run_steps(const RunOptions& o) {
    using Clock = std::chrono::steady_clock;
    const Program& prog = o.request.program;
    const StorageSignature& st = o.request.storage;
    for (const auto& [name, v] : o.hypers)
        if (o.request.passes.specialize.count(name))
            throw std::invalid_argument(fmt::format("hyper-parameter '{}' is specialized to a constant; it cannot also be set at run time", name));
    std::string storage_error = check_storage(st, prog);
    if (!storage_error.empty()) throw std::invalid_argument(storage_error);
    const int num_states = int(prog.states.size());
    std::vector<DType> state_types;
    for (const StateDecl& s : prog.states) state_types.push_back(state_dtype(st.state(s.name).format));

    // Host copies of every tensor, in storage format.
    std::vector<Buffer> p, g;
    std::vector<std::vector<Buffer>> states(num_states);
    std::vector<int64_t> offsets;
    int64_t total = 0;
    for (int64_t n : o.sizes) {
        offsets.push_back(total);
        p.emplace_back(st.param, n);
        g.emplace_back(st.grad, n);
        for (int s = 0; s < num_states; ++s) states[s].emplace_back(state_types[s], n);
        for (int64_t i = 0; i < n; ++i) p.back().set(i, normal(o.seed, 0, uint64_t(total + i)));
        for (int s = 0; s < num_states; ++s)
            for (int64_t i = 0; i < n; ++i) states[s].back().set(i, prog.states[s].init);
        total += n;
    }
    const size_t count = o.sizes.size();

    bool run_interp = o.interp || o.check;
    std::unique_ptr<Interpreter> interp;
    std::vector<HostTensor> reference(count);
    if (run_interp) {
        // The reference runs the program as written, with the specialized values as its hypers.
        std::map<std::string, double> values = o.hypers;
        values.insert(o.request.passes.specialize.begin(), o.request.passes.specialize.end());
        interp = std::make_unique<Interpreter>(prog, hyper_values(prog, values), st);
        for (size_t t = 0; t < count; ++t) {
            for (int64_t i = 0; i < p[t].n; ++i) reference[t].p.push_back(p[t].get(i));
            reference[t].g.resize(p[t].n);
            interp->init_states(reference[t]);
        }
    }

    RunSummary summary;
    std::shared_ptr<const Kernel> kernel;
    TensorTable table;
    std::vector<std::unique_ptr<DeviceBuffer>> device;  // p, g, states per tensor, then the table
    cuda::DevicePtr device_table = 0;
    const bool gpu = !o.interp && o.request.target.is_gpu();
    auto buffers_of = [&](size_t t) {
        std::vector<Buffer*> out{&p[t], &g[t]};
        for (int s = 0; s < num_states; ++s) out.push_back(&states[s][t]);
        return out;
    };

    KernelCache& cache = KernelCache::global();
    int compiles_before = cache.stats().compiles;
    for (int64_t step = 1; step <= o.steps; ++step) {
        auto t0 = Clock::now();
        for (size_t t = 0; t < count; ++t)
            for (int64_t i = 0; i < g[t].n; ++i) g[t].set(i, normal(o.seed, uint64_t(step), uint64_t(offsets[t] + i)));
        if (run_interp) {
            for (size_t t = 0; t < count; ++t)
                for (int64_t i = 0; i < g[t].n; ++i) reference[t].g[i] = g[t].get(i);
            interp->step(step, reference);
        }
        if (!o.interp) {
            if (!kernel) {
                kernel = cache.get(o.request);
                std::vector<TensorArgs> args(count);
                for (size_t t = 0; t < count; ++t) {
                    std::vector<Buffer*> bufs = buffers_of(t);
                    std::vector<uint64_t> addr;
                    for (Buffer* b : bufs) {
                        if (gpu) {
                            device.push_back(std::make_unique<DeviceBuffer>(b->total_bytes()));
                            cuda::memcpy_htod(device.back()->ptr, b->data(), b->total_bytes());
                            addr.push_back(device.back()->ptr);
                        } else {
                            addr.push_back(uint64_t(b->data()));
                        }
                    }
                    args[t] = {addr[0], addr[1], std::vector<uint64_t>(addr.begin() + 2, addr.end()), p[t].n};
                }
                table = build_table(*kernel, args);
                if (gpu) {
                    device.push_back(std::make_unique<DeviceBuffer>(table.words.size() * 8));
                    device_table = device.back()->ptr;
                    cuda::memcpy_htod(device_table, table.words.data(), table.words.size() * 8);
                }
            }
            std::vector<float> scalars = launch_scalars(*kernel, o.hypers, step);
            if (gpu) {
                for (size_t t = 0; t < count; ++t)
                    cuda::memcpy_htod(device[t * (2 + num_states) + 1]->ptr, g[t].data(), g[t].total_bytes());
                launch_cuda(*kernel, device_table, table, scalars, nullptr);
            } else {
                launch_host(*kernel, table, scalars, ThreadPool::global());
            }
        }
        if (step == 1) {
            if (gpu) cuda::synchronize();
            summary.first_step_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        }
    }
    if (gpu) {
        cuda::synchronize();
        for (size_t t = 0; t < count; ++t) {
            std::vector<Buffer*> bufs = buffers_of(t);
            for (size_t k = 0; k < bufs.size(); ++k) {
                if (k == 1) continue;
                cuda::memcpy_dtoh(bufs[k]->data(), device[t * bufs.size() + k]->ptr, bufs[k]->total_bytes());
            }
        }
    }
    summary.compiles = cache.stats().compiles - compiles_before;

    for (size_t t = 0; t < count; ++t)
        for (Buffer* b : buffers_of(t))
            if (!b->guard_intact())
                throw std::runtime_error(fmt::format("kernel {} wrote past the end of tensor {} ({} elements)",
                                                     kernel ? kernel->key() : "?", t, p[t].n));

    // A 16-bit value one ulp apart feeds every tensor computed from it (weight decay puts p's
    // rounding into m), so each tensor is held to the loosest tolerance of what a step reads.
    double tolerance = tolerance_for(st.grad);
    tolerance = std::max(tolerance, tolerance_for(st.param));
    for (DType t : state_types) tolerance = std::max(tolerance, tolerance_for(t));
    auto gather = [&](int which) {  // -1: p, else a state
        std::vector<double> kernel_values, reference_values;
        for (size_t t = 0; t < count; ++t) {
            const Buffer& b = which < 0 ? p[t] : states[which][t];
            for (int64_t i = 0; i < b.n; ++i) kernel_values.push_back(b.get(i));
            if (run_interp) {
                const std::vector<double>& r = which < 0 ? reference[t].p : reference[t].states[which];
                reference_values.insert(reference_values.end(), r.begin(), r.end());
            }
        }
        if (o.interp) kernel_values = reference_values;
        TensorSummary s{which < 0 ? std::string(kParamName) : prog.states[which].name, norm(kernel_values), checksum(kernel_values)};
        if (o.check) {
            s.max_rel_diff = max_relative_difference(kernel_values, reference_values, &s.worst_element);
            s.tolerance = tolerance;
            summary.passed &= s.max_rel_diff <= s.tolerance;
        }
        return s;
    };
    summary.tensors.push_back(gather(-1));
    for (int s = 0; s < num_states; ++s) summary.tensors.push_back(gather(s));
    return summary;
}

}  // namespace optjit
