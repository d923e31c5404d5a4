#include "runtime/step_bench.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>

#include "ir/analysis.h"
#include "ir/interpreter.h"
#include "ir/library.h"
#include "ir/numeric.h"
#include "ir/quantization.h"
#include "passes/gradient_policies.h"
#include "passes/pipeline.h"
#include "passes/unused_states.h"
#include "runtime/cuda_driver.h"
#include "runtime/kernel_cache.h"
#include "runtime/optimizer.h"
#include "runtime/random.h"
#include "runtime/thread_pool.h"

namespace optjit {

std::vector<BenchShape> llama_3_2_1b_shapes() {
    const int64_t hidden = 2048, kv = 512, mlp = 8192, vocab = 128256;
    std::vector<BenchShape> shapes{{vocab * hidden, hidden}};
    for (int layer = 0; layer < 16; ++layer)
        for (BenchShape s : {BenchShape{hidden * hidden, hidden}, BenchShape{kv * hidden, hidden}, BenchShape{kv * hidden, hidden},
                             BenchShape{hidden * hidden, hidden}, BenchShape{mlp * hidden, hidden}, BenchShape{mlp * hidden, hidden},
                             BenchShape{hidden * mlp, mlp}, BenchShape{hidden, 0}, BenchShape{hidden, 0}})
            shapes.push_back(s);
    shapes.push_back({hidden, 0});
    return shapes;
}

namespace {

struct Format {
    std::string label;
    std::map<std::string, StateStorage> states;
};

// The states that stay non-negative over a few steps of random gradients, as the interpreter
// runs the program with its defaults: second moments, which take the unsigned quantized formats
// (as bitsandbytes stores AdamW's v).
std::set<std::string> non_negative_states(const Program& program) {
    Interpreter interpreter(program, hyper_values(program, {}));
    std::vector<HostTensor> tensors(1);
    for (uint64_t i = 0; i < 4096; ++i) tensors[0].p.push_back(normal(11, 0, i));
    interpreter.init_states(tensors[0]);
    std::set<std::string> out;
    for (const StateDecl& s : program.states) out.insert(s.name);
    for (int64_t step = 1; step <= 4; ++step) {
        tensors[0].g.clear();
        for (uint64_t i = 0; i < 4096; ++i) tensors[0].g.push_back(normal(11, uint64_t(step), i));
        interpreter.step(step, tensors);
        for (size_t s = 0; s < program.states.size(); ++s)
            if (std::any_of(tensors[0].states[s].begin(), tensors[0].states[s].end(), [](double v) { return !(v >= 0); }))
                out.erase(program.states[s].name);
    }
    return out;
}

// `unsigned_states`: non_negative_states(program).
Format format_named(const std::string& name, const Program& program, const std::set<std::string>& unsigned_states) {
    Format f{name, {}};
    for (const StateDecl& s : program.states) {
        const bool positive = unsigned_states.count(s.name) > 0;
        if (name == "fp32") f.states[s.name] = {StateFormat::F32};
        else if (name == "bf16") f.states[s.name] = {StateFormat::BF16};
        else if (name == "q8") f.states[s.name] = {positive ? StateFormat::Q8U : StateFormat::Q8S, 256};
        else if (name == "q4") f.states[s.name] = {positive ? StateFormat::Q4U : StateFormat::Q4S, 128};
        else if (name == "fp8") f.states[s.name] = {StateFormat::FP8, 256};
        else throw std::invalid_argument(fmt::format("unknown state format '{}' (fp32, bf16, q8, q4, fp8)", name));
    }
    return f;
}

std::vector<BenchShape> workload_shapes(const std::string& name, bool gpu, int64_t tensor_elements) {
    if (name == "tensor") {
        int64_t n = tensor_elements > 0 ? tensor_elements : int64_t(1) << (gpu ? 28 : 24);
        return {{n, 0}};
    }
    if (name == "llama") return llama_3_2_1b_shapes();
    if (name == "small") {
        std::vector<BenchShape> shapes;
        for (uint64_t i = 0; i < 4096; ++i) shapes.push_back({int64_t(std::exp2(16.0 * uniform01(7, 0, i))), 0});
        return shapes;
    }
    throw std::invalid_argument(fmt::format("unknown workload '{}' (tensor, llama, small)", name));
}

// Fills the first `bytes` of `memory` with copies of `pattern`.
void fill_with(DeviceMemory& memory, Device device, size_t bytes, const std::vector<uint8_t>& pattern) {
    for (size_t done = 0; done < bytes; done += pattern.size())
        copy_to_device(device, memory.address() + done, pattern.data(), std::min(pattern.size(), bytes - done));
}

// A repeating block of bf16 values: normal * scale.
std::vector<uint8_t> bf16_pattern(uint64_t seed, double scale) {
    const size_t count = size_t(1) << 20;
    std::vector<uint8_t> out(count * 2);
    for (size_t i = 0; i < count; ++i) store_element(DType::BF16, out.data(), i, normal(seed, 0, i) * scale);
    return out;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// Bytes one state of a tensor keeps.
double state_bytes(const StateStorage& s, const BenchShape& t) {
    if (!is_block_quantized(s.format)) return double(t.n) * dtype_bytes(state_dtype(s.format));
    return double(code_bytes(s, t.n)) + 4.0 * double(scale_count(s, 0, t.n));
}

// Times `body` `steps` times after one untimed run; milliseconds, median.
class Timer {
public:
    explicit Timer(bool gpu) : gpu_(gpu) {
        if (gpu_) start_ = cuda::event_create(), stop_ = cuda::event_create();
    }
    ~Timer() {
        if (gpu_) cuda::event_destroy(start_), cuda::event_destroy(stop_);
    }
    template <typename Body> double median_ms(int steps, Body body) {
        body(0);
        std::vector<double> times;
        for (int i = 1; i <= steps; ++i) {
            if (gpu_) {
                cuda::event_record(start_, nullptr);
                body(i);
                cuda::event_record(stop_, nullptr);
                times.push_back(cuda::event_elapsed_ms(start_, stop_));
            } else {
                auto t0 = std::chrono::steady_clock::now();
                body(i);
                times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            }
        }
        return median(times);
    }

private:
    bool gpu_;
    cuda::Event start_ = nullptr, stop_ = nullptr;
};

void run_workload(const Program& program, const std::string& name, const std::vector<BenchShape>& shapes, const std::vector<Format>& formats,
                  const StepBenchOptions& o) {
    int64_t total = 0;
    for (const BenchShape& t : shapes) total += t.n;
    const std::string where = o.gpu ? fmt::format("GPU: {}, {} SMs", cuda::device_name(), cuda::multiprocessor_count())
                                    : fmt::format("host: {} threads", ThreadPool::global().size());
    std::string policies;
    for (const auto& [hyper, value] : o.hypers) policies += fmt::format(" {}={}", hyper, value);
    if (o.policies.max_grad_norm > 0) policies += fmt::format(", clipped to norm {}", o.policies.max_grad_norm);
    if (o.policies.skip_nonfinite) policies += ", non-finite steps skipped";
    // The states the Optimizer leaves out with these values (passes/unused_states.h), for the title.
    const UnusedStates unused = drop_unused_states(apply_gradient_policies(program, o.policies), {o.hypers});
    if (!unused.dropped.empty())
        policies += fmt::format(" (no {}{})", fmt::join(unused.dropped, ", "), unused.fixed.empty() ? "" : ": " + fixed_text(unused));
    fmt::print("== {}: {} tensors, {:.4g} parameters; {}{}, bf16 p and g; {}{}\n", name, shapes.size(), double(total), program.name, policies,
               where, o.capturable ? "; each step a CUDA graph replay" : "");
    fmt::print("  {:<6} {:>9} {:>9} {:>8} {:>10} {:>7} {:>11} {:>9} {:>8} {:>9}\n", "states", "step ms", "GB moved", "GB/s", "copy GB/s", "% copy",
               "state B/par", "first ms", "compiled", "recompile");

    // Parameters and gradients, 256-byte aligned pieces of one allocation each.
    std::vector<size_t> offsets;
    size_t bytes = 0;
    for (const BenchShape& t : shapes) {
        offsets.push_back(bytes);
        bytes += (size_t(t.n) * 2 + 255) / 256 * 256;
    }
    const Device device = o.gpu ? Device::Cuda : Device::Host;
    DeviceMemory p(device, bytes), g(device, bytes);
    const std::vector<uint8_t> p_values = bf16_pattern(1, 1.0), g_values = bf16_pattern(2, 1e-2);
    fill_with(g, device, bytes, g_values);

    OptimizerOptions options;
    options.hypers = o.hypers;
    options.capturable = o.capturable;
    options.max_grad_norm = o.policies.max_grad_norm;
    options.skip_nonfinite = o.policies.skip_nonfinite;
    options.maximize = o.policies.maximize;
    options.math = o.math;

    for (const Format& f : formats) {
        fill_with(p, device, bytes, p_values);
        ParamGroup group;
        group.states = f.states;
        for (size_t i = 0; i < shapes.size(); ++i) {
            const BenchShape& t = shapes[i];
            Parameter param;
            param.name = fmt::format("{}.{}", name, i);
            param.data = p.address() + offsets[i];
            param.grad = g.address() + offsets[i];
            param.dtype = param.grad_dtype = DType::BF16;
            param.shape = t.columns > 0 ? std::vector<int64_t>{t.n / t.columns, t.columns} : std::vector<int64_t>{t.n};
            param.device = device;
            group.params.push_back(param);
        }

        KernelCache& cache = KernelCache::global();
        const int compiles_before = cache.stats().compiles;
        auto t0 = std::chrono::steady_clock::now();
        Optimizer optimizer(program, {group}, options);
        optimizer.set_hyper("lr", 1e-4);
        optimizer.step();
        if (o.gpu) cuda::synchronize();
        const double first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const int compiled = cache.stats().compiles - compiles_before;

        // Bytes a step must move: of the program as the Optimizer runs it (the gradient
        // policies applied, unused states dropped), each reduction pass reading what its
        // reductions' arguments read, once a pass.
        const Program lowered = run_pipeline(optimizer.program(), {});
        const std::vector<std::set<std::string>> inputs = reduction_inputs(lowered);
        const std::vector<int> levels = reduction_levels(lowered);
        std::vector<std::set<std::string>> pass_reads(size_t(reduction_level_count(lowered)));
        for (size_t k = 0; k < inputs.size(); ++k) pass_reads[size_t(levels[k] - 1)].insert(inputs[k].begin(), inputs[k].end());
        double moved = 0, state_memory = 0;
        for (const BenchShape& t : shapes) {
            StorageSignature st = storage_for_tensor(StorageSignature{DType::BF16, DType::BF16, group.states}, t.n, t.columns);
            double states = 0, reduction_bytes = 0;
            for (const StateDecl& s : optimizer.program().states) {
                const double b = state_bytes(st.state(s.name), t);
                states += b;
                for (const std::set<std::string>& reads : pass_reads) reduction_bytes += reads.count(s.name) ? b : 0;
            }
            for (const std::set<std::string>& reads : pass_reads)
                for (std::string_view input : {kParamName, kGradName}) reduction_bytes += reads.count(std::string(input)) ? double(t.n) * 2 : 0;
            moved += double(t.n) * 6 + 2 * states + reduction_bytes;
            state_memory += states;
        }

        Timer timer(o.gpu);
        const int compiles_timed = cache.stats().compiles;
        double step_ms;
        if (o.capturable) {
            cuda::Stream stream = cuda::stream_create();
            cuda::GraphExec graph = cuda::capture_graph(stream, [&] { optimizer.step(stream); });
            std::vector<double> lrs(size_t(o.steps) + 1);
            step_ms = timer.median_ms(o.steps, [&](int i) {
                lrs[size_t(i)] = 1e-4 * (1 + 0.01 * i);  // a schedule, through the device block
                cuda::memcpy_htod_async(optimizer.hyper_address(0, "lr"), &lrs[size_t(i)], 8, stream);
                cuda::graph_launch(graph, stream);
            });
            cuda::synchronize();
            cuda::graph_destroy(graph);
            cuda::stream_destroy(stream);
        } else {
            step_ms = timer.median_ms(o.steps, [&](int i) {
                optimizer.set_hyper("lr", 1e-4 * (1 + 0.01 * i));  // a schedule: a new value every step
                optimizer.step();
            });
        }
        const int recompiles = cache.stats().compiles - compiles_timed;

        // A copy of the same bytes: half read, half written.
        const size_t half = size_t(moved / 2);
        double copy_ms;
        {
            DeviceMemory a(device, half), b(device, half);
            a.fill(0x3c, half);
            if (o.gpu) {
                copy_ms = timer.median_ms(o.steps, [&](int) { cuda::memcpy_dtod_async(b.address(), a.address(), half, nullptr); });
            } else {
                // One contiguous piece a thread, as the kernels split their chunks.
                const int64_t pieces = ThreadPool::global().size();
                copy_ms = timer.median_ms(o.steps, [&](int) {
                    ThreadPool::global().parallel_for(pieces, [&](int64_t begin, int64_t end) {
                        size_t from = half * size_t(begin) / size_t(pieces), to = half * size_t(end) / size_t(pieces);
                        std::memcpy(reinterpret_cast<void*>(b.address() + from), reinterpret_cast<const void*>(a.address() + from), to - from);
                    });
                });
            }
        }
        const double gbs = moved / step_ms / 1e6, copy_gbs = 2.0 * double(half) / copy_ms / 1e6;
        fmt::print("  {:<6} {:>9.3f} {:>9.3f} {:>8.0f} {:>10.0f} {:>6.1f}% {:>11.3f} {:>9.1f} {:>8} {:>9}\n", f.label, step_ms, moved / 1e9, gbs,
                   copy_gbs, 100 * gbs / copy_gbs, state_memory / double(total), first_ms, compiled, recompiles);
    }
}

}  // namespace

void run_step_bench(const StepBenchOptions& o) {
    std::vector<std::string> workloads = o.workloads;
    if (workloads.empty()) workloads = o.gpu ? std::vector<std::string>{"tensor", "llama", "small"} : std::vector<std::string>{"tensor", "small"};
    const Program program = library(o.optimizer);  // built in: the tool needs no file
    const std::set<std::string> unsigned_states = non_negative_states(program);
    std::vector<Format> formats;
    for (const std::string& name : o.formats.empty() ? std::vector<std::string>{"fp32", "bf16", "q8", "q4", "fp8"} : o.formats)
        formats.push_back(format_named(name, program, unsigned_states));
    std::vector<std::vector<BenchShape>> shapes;
    for (const std::string& w : workloads) shapes.push_back(workload_shapes(w, o.gpu, o.tensor_elements));  // every name checked first
    if (o.capturable && !o.gpu) throw std::invalid_argument("--capturable steps are CUDA graphs: they need --target cuda");
    if (o.gpu) cuda::init();
    for (size_t i = 0; i < workloads.size(); ++i) run_workload(program, workloads[i], shapes[i], formats, o);
}

}  // namespace optjit
