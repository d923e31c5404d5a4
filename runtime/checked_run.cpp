#include "runtime/checked_run.h"

#include <fmt/format.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "ir/analysis.h"
#include "ir/interpreter.h"
#include "ir/numeric.h"
#include "ir/quantization.h"
#include "runtime/cuda_driver.h"
#include "runtime/fnv1a.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/random.h"
#include "runtime/step_reductions.h"

namespace optjit {

namespace {

constexpr size_t kGuardBytes = 256;
constexpr uint8_t kGuardByte = 0xa5;

// Bytes as a kernel stores them, followed by a guard region, and their copy on the GPU.
struct Region {
    size_t used;
    std::vector<uint8_t> bytes;
    cuda::DeviceAlloc device;  // empty until the first upload

    explicit Region(size_t used_bytes) : used(used_bytes), bytes(used_bytes + kGuardBytes, kGuardByte) {}
    bool guard_intact() const {
        for (size_t i = used; i < bytes.size(); ++i)
            if (bytes[i] != kGuardByte) return false;
        return true;
    }
    uint64_t address() const { return device.get() ? device.get() : uint64_t(bytes.data()); }
    void upload() {
        if (!device.get()) device = cuda::DeviceAlloc(bytes.size());
        cuda::memcpy_htod(device.get(), bytes.data(), bytes.size());
    }
    void download() { cuda::memcpy_dtoh(bytes.data(), device.get(), bytes.size()); }
};

// A tensor's values stored as `type`.
struct Typed : Region {
    DType type;
    int64_t n;
    Typed(DType t, int64_t count) : Region(size_t(count) * dtype_bytes(t)), type(t), n(count) {}
    double get(int64_t i) const { return load_element(type, bytes.data(), size_t(i)); }
    void set(int64_t i, double v) { store_element(type, bytes.data(), size_t(i), v); }
};

// A block-quantized state: codes and scales (rank-1 states: statistics, and room for the new
// ones a step computes, compiler/kernel_abi.h).
struct Quantized {
    StateStorage storage;
    int64_t n, columns;  // columns > 0 for a rank-1 state
    size_t stored_scales;
    Region codes, scales;
    Quantized(const StateStorage& s, int64_t count, int64_t tensor_columns)
        : Quantized(s, count, s.rank1 ? tensor_columns : 0, state_layout(s, count, 0, tensor_columns)) {}
    Quantized(const StateStorage& s, int64_t count, int64_t rank1_columns, const StateLayout& layout)
        : storage(s), n(count), columns(rank1_columns), stored_scales(layout.stored_scales), codes(layout.value_bytes),
          scales(layout.scale_bytes) {}
    QuantizedTensor read() const {
        QuantizedTensor q;
        q.codes.assign(codes.bytes.begin(), codes.bytes.begin() + long(codes.used));
        q.scales.resize(stored_scales);
        std::memcpy(q.scales.data(), scales.bytes.data(), stored_scales * 4);
        return q;
    }
    void write(const QuantizedTensor& q) {
        std::memcpy(codes.bytes.data(), q.codes.data(), codes.used);
        std::memcpy(scales.bytes.data(), q.scales.data(), stored_scales * 4);
    }
    std::vector<float> values() const { return dequantize(storage, read(), n, 0, columns); }
    // The scale element i of `q` (stored as this state is) was normalized by.
    float scale_of(const QuantizedTensor& q, int64_t i) const { return element_scale(storage, q, i, n, columns); }
};

uint8_t code_at(const StateStorage& s, const std::vector<uint8_t>& codes, int64_t i) {
    if (s.format != StateFormat::Q4S && s.format != StateFormat::Q4U) return codes[size_t(i)];
    uint8_t byte = codes[size_t(i / 2)];
    return i % 2 == 0 ? uint8_t(byte >> 4) : uint8_t(byte & 15);
}

float code_value(StateFormat f, uint8_t code) { return f == StateFormat::FP8 ? e4m3_to_float(code) : code_table(f)[code]; }

// A code's rank among the format's values in ascending order (fp8's +0 and -0 share rank 0),
// so codes "one apart" are neighbouring values.
int code_rank(StateFormat f, uint8_t code) {
    if (f != StateFormat::FP8) return code;
    return (code & 0x80) ? -int(code & 0x7f) : int(code);
}

// One tensor of the run: its storage (fp32 states if it is small) and its buffers.
struct TensorData {
    StorageSignature storage;
    std::unique_ptr<Typed> p, g;
    std::vector<std::unique_ptr<Typed>> dense;          // per state; null where block-quantized
    std::vector<std::unique_ptr<Quantized>> quantized;  // per state; null where not

    std::vector<Region*> regions() {
        std::vector<Region*> out{p.get(), g.get()};
        for (size_t s = 0; s < dense.size(); ++s) {
            if (dense[s]) {
                out.push_back(dense[s].get());
            } else {
                out.push_back(&quantized[s]->codes);
                out.push_back(&quantized[s]->scales);
            }
        }
        return out;
    }
    // The values of state `s` as a kernel reads them.
    std::vector<double> state_values(size_t s) const {
        std::vector<double> out;
        if (dense[s]) {
            for (int64_t i = 0; i < dense[s]->n; ++i) out.push_back(dense[s]->get(i));
        } else {
            std::vector<float> v = quantized[s]->values();
            out.assign(v.begin(), v.end());
        }
        return out;
    }
};

uint64_t checksum(const std::vector<double>& values) {  // of the values' fp32 bits, little-endian
    uint64_t h = kFnv1aBasis;
    for (double v : values) {
        const uint32_t bits = std::bit_cast<uint32_t>(float(v));
        const uint8_t bytes[4] = {uint8_t(bits), uint8_t(bits >> 8), uint8_t(bits >> 16), uint8_t(bits >> 24)};
        h = fnv1a(bytes, h);
    }
    return h;
}

double norm(const std::vector<double>& values) {
    double s = 0;
    for (double v : values) s += v * v;
    return std::sqrt(s);
}

}  // namespace

double max_relative_difference(const std::vector<double>& a, const std::vector<double>& b, int64_t* where, double scale) {
    // Errors of fp32 math scale with the magnitude of the terms, not of a result that
    // cancels to near zero: small values are measured against the tensor's RMS.
    double squares = 0;
    for (double v : b) squares += v * v;
    double floor = std::max({std::sqrt(squares / std::max<size_t>(b.size(), 1)), scale, 1e-30}), worst = 0;
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

    // Host copies of every tensor, in storage format; states start at their initial values.
    const size_t count = o.sizes.size();
    std::vector<TensorData> tensors(count);
    std::vector<int64_t> offsets;
    int64_t total = 0;
    for (size_t t = 0; t < count; ++t) {
        int64_t n = o.sizes[t];
        TensorData& d = tensors[t];
        d.storage = storage_for_tensor(st, n, o.columns);
        d.p = std::make_unique<Typed>(st.param, n);
        d.g = std::make_unique<Typed>(st.grad, n);
        for (int64_t i = 0; i < n; ++i) d.p->set(i, normal(o.seed, 0, uint64_t(total + i)));
        for (int s = 0; s < num_states; ++s) {
            const StateStorage& format = d.storage.state(prog.states[s].name);
            double init = prog.states[s].init;
            if (is_block_quantized(format.format)) {
                d.dense.emplace_back();
                d.quantized.push_back(std::make_unique<Quantized>(format, n, o.columns));
                if (init == 0) {
                    std::fill(d.quantized.back()->codes.bytes.begin(), d.quantized.back()->codes.bytes.begin() + long(d.quantized.back()->codes.used),
                              zero_code_byte(format.format));
                    std::fill(d.quantized.back()->scales.bytes.begin(), d.quantized.back()->scales.bytes.begin() + long(d.quantized.back()->scales.used), 0);
                } else {
                    d.quantized.back()->write(quantize(format, std::vector<float>(size_t(n), float(init)), 0, o.columns));
                }
            } else {
                d.dense.push_back(std::make_unique<Typed>(state_dtype(format.format), n));
                d.quantized.emplace_back();
                for (int64_t i = 0; i < n; ++i) d.dense.back()->set(i, init);
            }
        }
        offsets.push_back(total);
        total += n;
    }
    const bool lockstep = o.check && has_quantized_state(st);

    bool run_interp = o.interp || o.check;
    std::unique_ptr<Interpreter> interp;
    std::vector<HostTensor> reference(count);
    if (run_interp) {
        // The reference runs the program as written, with the specialized values as its hypers.
        std::map<std::string, double> values = o.hypers;
        values.insert(o.request.passes.specialize.begin(), o.request.passes.specialize.end());
        interp = std::make_unique<Interpreter>(prog, hyper_values(prog, values), st);
        if (o.request.options.stochastic_rounding) interp->set_stochastic_rounding(o.seed);
        for (size_t t = 0; t < count; ++t) {
            for (int64_t i = 0; i < tensors[t].p->n; ++i) reference[t].p.push_back(tensors[t].p->get(i));
            reference[t].g.resize(reference[t].p.size());
            reference[t].columns = o.columns;
            interp->init_states(reference[t]);
        }
    }

    // One launch per storage: tensors under kMinQuantizedElements keep fp32 states.
    struct Launch {
        KernelRequest request;
        std::vector<size_t> tensors;
        std::shared_ptr<const Kernel> kernel;
        TensorTable table;
        std::unique_ptr<Region> device_table;
    };
    std::map<std::string, Launch> launches;
    for (size_t t = 0; t < count; ++t) {
        Launch& l = launches[to_string(tensors[t].storage, prog)];
        l.request = o.request;
        l.request.storage = tensors[t].storage;
        l.tensors.push_back(t);
    }

    RunSummary summary;
    const bool gpu = !o.interp && o.request.target.is_gpu();
    std::vector<TensorSummary> results(1 + num_states);
    results[0].name = std::string(kParamName);
    for (int s = 0; s < num_states; ++s) results[1 + s].name = prog.states[s].name;
    // A 16-bit value one ulp apart feeds every tensor computed from it (weight decay puts p's
    // rounding into m), so each tensor is held to the loosest tolerance of what a step reads.
    double tolerance = std::max(tolerance_for(st.grad), tolerance_for(st.param));
    for (const StateDecl& d : prog.states) tolerance = std::max(tolerance, tolerance_for(state_dtype(st.state(d.name).format)));
    for (TensorSummary& r : results) r.tolerance = tolerance;

    // Compares the kernel's values with the reference's (p and dense states by value; quantized
    // states by code and scale), keeping the worst of each tensor over the run.
    auto compare = [&]() {
        auto worst = [](TensorSummary& r, const std::vector<double>& a, const std::vector<double>& b, double scale = 0) {
            int64_t where = -1;
            double d = max_relative_difference(a, b, &where, scale);
            if (d > r.max_rel_diff || r.worst_element < 0) {
                r.max_rel_diff = std::max(r.max_rel_diff, d);
                r.worst_element = where;
            }
        };
        std::vector<double> kernel_p, reference_p;
        for (size_t t = 0; t < count; ++t)
            for (int64_t i = 0; i < tensors[t].p->n; ++i) {
                kernel_p.push_back(tensors[t].p->get(i));
                reference_p.push_back(reference[t].p[size_t(i)]);
            }
        worst(results[0], kernel_p, reference_p);
        for (int s = 0; s < num_states; ++s) {
            TensorSummary& r = results[1 + s];
            std::vector<double> kernel_values, reference_values;
            for (size_t t = 0; t < count; ++t) {
                TensorData& d = tensors[t];
                if (d.dense[s]) {
                    std::vector<double> k = d.state_values(size_t(s));
                    kernel_values.insert(kernel_values.end(), k.begin(), k.end());
                    reference_values.insert(reference_values.end(), reference[t].states[s].begin(), reference[t].states[s].end());
                    continue;
                }
                const Quantized& q = *d.quantized[s];
                QuantizedTensor mine = q.read();
                const QuantizedTensor& theirs = reference[t].quantized[s];
                // Relative to the larger of the block's scale and the tensor's RMS scale, as values
                // are (max_relative_difference): a short last block of one element whose value is a
                // near-cancellation (m + c (g - m) close to 0) differs by several of its own ulps.
                double sum_squares = 0;
                int64_t finite = 0;
                for (float f : theirs.scales)
                    if (std::isfinite(f)) sum_squares += double(f) * f, ++finite;
                const double rms = finite ? std::sqrt(sum_squares / double(finite)) : 0;
                const double rms_absmax = rms * (q.storage.format == StateFormat::FP8 ? 448.0 : 1.0);
                for (size_t b = 0; b < mine.scales.size(); ++b) {
                    double rel = std::fabs(double(mine.scales[b]) - theirs.scales[b]) / std::max({std::fabs(double(theirs.scales[b])), rms, 1e-30});
                    if (std::isnan(mine.scales[b]) != std::isnan(theirs.scales[b])) rel = INFINITY;
                    r.max_scale_rel_diff = std::max(r.max_scale_rel_diff, rel);
                }
                for (int64_t i = 0; i < q.n; ++i) {
                    ++r.codes_compared;
                    uint8_t a = code_at(q.storage, mine.codes, i), b = code_at(q.storage, theirs.codes, i);
                    if (a == b) continue;
                    float scale = q.scale_of(theirs, i);
                    double normalized = double(reference[t].unquantized[s][size_t(i)] * (1.0f / scale));
                    double midpoint = (double(code_value(q.storage.format, a)) + code_value(q.storage.format, b)) / 2;
                    // In units of the block's absmax (fp8 normalizes to +-448).
                    double distance = std::fabs(normalized - midpoint) / (q.storage.format == StateFormat::FP8 ? 448.0 : 1.0);
                    const double value_difference =
                        std::fabs(double(code_value(q.storage.format, a)) * q.scale_of(mine, i) - double(code_value(q.storage.format, b)) * scale);
                    if ((std::abs(code_rank(q.storage.format, a) - code_rank(q.storage.format, b)) <= 1 && distance <= kStraddle) ||
                        value_difference <= kStraddle * rms_absmax)
                        ++r.codes_straddling;
                    else ++r.codes_wrong;
                }
            }
            // The state's fp32 part (tensors too small to quantize) against the RMS of the whole
            // state: a one-element tensor alone is its own RMS, and a value that cancels to near
            // 0 there (m = 0.9 m + 0.1 g) would be measured against itself.
            double squares = 0, elements = 0;
            for (size_t t = 0; t < count; ++t)
                for (double v : reference[t].states[s]) squares += v * v, elements += 1;
            if (!kernel_values.empty()) worst(r, kernel_values, reference_values, elements > 0 ? std::sqrt(squares / elements) : 0);
        }
    };

    // The kernels' reductions against the reference's, for the step just taken (kernel values in
    // launch order, reference values in tensor order).
    std::unique_ptr<StepReductions> step_reductions;
    std::vector<LaunchPass> passes;  // a step's, in order (with step_reductions)
    const std::vector<Reduction> program_reductions = reductions(prog);
    std::vector<TensorSummary> reduction_results(program_reductions.size());
    for (size_t k = 0; k < program_reductions.size(); ++k) {
        reduction_results[k].name = fmt::format("{} #{}", op_info(program_reductions[k].op).spelling, k);
        reduction_results[k].tolerance = tolerance;
    }
    auto compare_reductions = [&]() {
        // Lowering keeps every reduction unless dead code drops an unused one: then there is no
        // one-to-one order to compare by.
        if (!step_reductions || reductions(launches.begin()->second.kernel->spec().lowered).size() != program_reductions.size()) return;
        std::vector<std::vector<double>> mine = step_reductions->values();
        const std::vector<std::vector<double>>& theirs = interp->last_reductions();
        std::vector<size_t> order;  // tensor index of each of the kernels' tensor values
        for (auto& [signature, l] : launches) order.insert(order.end(), l.tensors.begin(), l.tensors.end());
        for (size_t k = 0; k < mine.size(); ++k) {
            std::vector<double> reference_values;
            if (is_global_reduction(program_reductions[k].op)) reference_values = theirs[k];
            else
                for (size_t t : order) reference_values.push_back(theirs[k][t]);
            TensorSummary& r = reduction_results[k];
            r.max_rel_diff = std::max(r.max_rel_diff, max_relative_difference(mine[k], reference_values));
            r.norm = norm(mine[k]);
        }
    };

    KernelCache& cache = KernelCache::global();
    int compiles_before = cache.stats().compiles;
    for (int64_t step = 1; step <= o.steps; ++step) {
        auto t0 = Clock::now();
        for (size_t t = 0; t < count; ++t)
            for (int64_t i = 0; i < tensors[t].g->n; ++i) tensors[t].g->set(i, normal(o.seed, uint64_t(step), uint64_t(offsets[t] + i)));
        if (run_interp) {
            for (size_t t = 0; t < count; ++t) {
                HostTensor& r = reference[t];
                for (int64_t i = 0; i < tensors[t].g->n; ++i) r.g[size_t(i)] = tensors[t].g->get(i);
                if (lockstep && step > 1) {  // from the kernel's state
                    for (int64_t i = 0; i < tensors[t].p->n; ++i) r.p[size_t(i)] = tensors[t].p->get(i);
                    for (int s = 0; s < num_states; ++s) r.states[s] = tensors[t].state_values(size_t(s));
                }
            }
            interp->step(step, reference);
        }
        if (!o.interp) {
            for (auto& [signature, l] : launches) {
                if (!l.kernel) {
                    l.kernel = cache.get(l.request);
                    std::vector<TensorArgs> args;
                    for (size_t t : l.tensors) {
                        TensorData& d = tensors[t];
                        if (gpu)
                            for (Region* r : d.regions()) r->upload();
                        TensorArgs a{d.p->address(), d.g->address(), {}, {}, d.p->n, 0, o.columns};
                        for (int s = 0; s < num_states; ++s) {
                            a.states.push_back(d.dense[s] ? d.dense[s]->address() : d.quantized[s]->codes.address());
                            a.scales.push_back(d.dense[s] ? 0 : d.quantized[s]->scales.address());
                        }
                        args.push_back(a);
                    }
                    l.table = build_table(*l.kernel, args);
                    if (gpu) {
                        l.device_table = std::make_unique<Region>(l.table.words.size() * 8);
                        std::memcpy(l.device_table->bytes.data(), l.table.words.data(), l.table.words.size() * 8);
                        l.device_table->upload();
                    }
                }
                if (gpu)
                    for (size_t t : l.tensors) tensors[t].g->upload();
            }
            // Every launch's reduction passes, level by level, then every launch's update
            // (runtime/step_reductions.h): the passes and slots are set once, the kernels known.
            if (!step_reductions) {
                std::vector<int32_t> sizes;
                std::vector<const Kernel*> kernels;
                for (auto& [signature, l] : launches) {
                    sizes.push_back(l.table.num_tensors);
                    kernels.push_back(l.kernel.get());
                }
                step_reductions = std::make_unique<StepReductions>(gpu ? Device::Cuda : Device::Host, launches.begin()->second.kernel->spec().lowered, sizes);
                passes = step_passes(kernels);
            }
            std::vector<std::vector<float>> scalars;
            for (auto& [signature, l] : launches) scalars.push_back(launch_scalars(*l.kernel, o.hypers, step));
            step_reductions->clear(nullptr);
            for (LaunchPass pass : passes) {
                size_t index = 0;
                for (auto& [signature, l] : launches) {
                    const ReductionSlots slots = step_reductions->slots(index);
                    const std::vector<float>& launch = scalars[index++];
                    if (!has_pass(*l.kernel, pass)) continue;
                    if (gpu)
                        launch_cuda(*l.kernel, l.device_table->device.get(), l.table, launch, nullptr, o.seed, slots, pass);
                    else
                        launch_host(*l.kernel, l.table, launch, ThreadPool::global(), o.seed, slots, pass);
                }
            }
        }
        if (step == 1) {
            if (gpu) cuda::synchronize();
            summary.first_step_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        }
        if (gpu && (lockstep || step == o.steps)) {
            cuda::synchronize();
            for (TensorData& d : tensors)
                for (Region* r : d.regions())
                    if (r != d.g.get()) r->download();
        }
        if (lockstep && !o.interp) {
            compare();
            compare_reductions();
        }
    }
    summary.compiles = cache.stats().compiles - compiles_before;

    for (size_t t = 0; t < count; ++t)
        for (Region* r : tensors[t].regions())
            if (!r->guard_intact())
                throw std::runtime_error(fmt::format("a kernel of optimizer '{}' wrote past the end of tensor {} ({} elements)", prog.name, t,
                                                     tensors[t].p->n));

    if (o.interp) {  // the reference's values are the result
        for (size_t t = 0; t < count; ++t) {
            for (int64_t i = 0; i < tensors[t].p->n; ++i) tensors[t].p->set(i, reference[t].p[size_t(i)]);
            for (int s = 0; s < num_states; ++s)
                if (tensors[t].dense[s])
                    for (int64_t i = 0; i < tensors[t].p->n; ++i) tensors[t].dense[s]->set(i, reference[t].states[s][size_t(i)]);
                else
                    tensors[t].quantized[s]->write(reference[t].quantized[s]);
        }
    } else if (o.check && !lockstep) {
        compare();
        compare_reductions();
    }
    for (int k = 0; k <= num_states; ++k) {
        std::vector<double> values;
        for (TensorData& d : tensors) {
            if (k == 0)
                for (int64_t i = 0; i < d.p->n; ++i) values.push_back(d.p->get(i));
            else {
                std::vector<double> v = d.state_values(size_t(k - 1));
                values.insert(values.end(), v.begin(), v.end());
            }
        }
        TensorSummary& r = results[size_t(k)];
        r.norm = norm(values);
        r.checksum = checksum(values);
        if (o.check) {
            if (k > 0 && r.codes_compared > 0) r.max_rel_diff = std::max(r.max_rel_diff, r.max_scale_rel_diff);
            summary.passed &= r.max_rel_diff <= r.tolerance && r.codes_wrong == 0;
        }
    }
    summary.tensors = results;
    if (o.check) {
        for (const TensorSummary& r : reduction_results) summary.passed &= r.max_rel_diff <= r.tolerance;
        summary.reductions = reduction_results;
    }
    return summary;
}

}  // namespace optjit
