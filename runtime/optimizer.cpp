#include "runtime/optimizer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <future>
#include <numeric>
#include <stdexcept>
#include <utility>

#include "compiler/compile.h"
#include "compiler/kernel_abi.h"
#include "ir/analysis.h"
#include "ir/interpreter.h"
#include "ir/numeric.h"
#include "ir/quantization.h"
#include "ir/verifier.h"
#include "passes/gradient_policies.h"
#include "passes/pipeline.h"
#include "passes/unused_states.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/step_reductions.h"
#include "runtime/thread_pool.h"

namespace optjit {

int64_t element_count(const Parameter& p) {
    return std::accumulate(p.shape.begin(), p.shape.end(), int64_t(1), std::multiplies<>());
}

int64_t last_dimension(const Parameter& p) { return p.shape.size() >= 2 ? p.shape.back() : 0; }

namespace {

// The index among the program's reductions of the global sum an option's rewrite assigned to
// `name` (passes/gradient_policies.h).
std::pair<size_t, int> policy_reduction(const Program& lowered, const char* name, const char* option) {
    std::vector<Reduction> list = reductions(lowered);
    for (const Assign& a : lowered.update)
        if (a.target == name)
            for (size_t k = 0; k < list.size(); ++k)
                if (list[k].node == &a.value) return {k, list[k].slot};
    throw std::invalid_argument(fmt::format("the optimizer was not made with {}", option));
}

}  // namespace

struct Optimizer::Impl {
    // One kernel launch of a step: the tensors of a group that share a device, dtypes and storage.
    struct Launch {
        size_t group = 0;
        Device device = Device::Host;
        std::shared_ptr<const Kernel> kernel;
        TensorTable table;
        std::unique_ptr<DeviceMemory> device_table;  // GPU launches: the table's words, uploaded once
        // Eager launches: the launch before it, of the same group, lowered to the same program,
        // so its scalars serve this one too. A group's fast-math kernels (block-quantized
        // states on a GPU) fold uniform factors into scalars of their own
        // (passes/fold_uniform_factors.h) where its IEEE ones (small tensors' fp32 states) do not.
        bool scalars_of_previous = false;
    };

    Program program;
    Program declared;     // `program` before dropping unused states: the names a user may give
    UnusedStates unused;  // what the values left out of `program`, and the hypers that decided it
    OptimizerOptions options;
    std::vector<ParamGroup> groups;
    std::vector<std::map<std::string, double>> hypers;  // per group: every run-time value that is set
    std::vector<std::vector<std::vector<StateBuffer>>> states;  // [group][param][state]
    std::vector<std::unique_ptr<DeviceMemory>> memory;
    std::vector<Launch> launches;
    std::vector<LaunchPass> passes;  // a step's: the reduction levels, then the update
    int64_t steps = 0;
    // The step's reduction slots, of the device every launch is on (programs with reductions).
    std::unique_ptr<StepReductions> reductions;
    // The program as its kernels run it, which numbers the reductions (every launch's numbers
    // them alike: fold-uniform-factors, the one pass that differs between a group's kernels,
    // rewrites products, never reductions).
    Program lowered() const { return launches.empty() ? run_pipeline(program, {}) : launches.front().kernel->spec().lowered; }
    // Capturable optimizers, per group with GPU launches: its scalar block and the kernel whose
    // NAME_scalars fills it (every capturable launch of a group runs the same lowered program:
    // capturable kernels do not fold uniform factors, compiler/compile.cpp's lower()).
    struct ScalarBlock {
        std::unique_ptr<DeviceMemory> memory;
        const Kernel* kernel = nullptr;
    };
    std::vector<ScalarBlock> blocks;

    // Writes the step and the group's hyper-parameters into its block: consecutive f64 words
    // from kScalarBlockStep (compiler/kernel_abi.h).
    void write_block(size_t g) const {
        const ScalarBlock& block = blocks[g];
        if (!block.memory) return;
        static_assert(kScalarBlockStep == 0);
        std::vector<double> words{double(steps)};
        for (double v : hyper_values(block.kernel->spec().lowered, hypers[g])) words.push_back(v);
        copy_to_device(Device::Cuda, block.memory->address(), words.data(), words.size() * 8);
    }
    // A group's scalar block, or nullptr where it has none (not capturable, or no GPU launch).
    const ScalarBlock* block_of(size_t g) const { return g < blocks.size() && blocks[g].memory ? &blocks[g] : nullptr; }
    // Whether a group's hyper-parameters live in its block (capturable), not only on the host.
    bool hypers_on_device(size_t g) const { return options.capturable && block_of(g); }
    // Programs that skip non-finite steps: the global slot of the step's count of non-finite
    // gradients, on `nonfinite_device` (every launch's); 0 where there is none. A skipped step
    // does not count: host launches read the slot after running, GPU ones count their steps on
    // the device, where NAME_scalars commits a step by the count it left here
    // (compiler/kernel_abi.h).
    uint64_t nonfinite_slot = 0;
    Device nonfinite_device = Device::Host;
    bool steps_counted_on_device() const { return nonfinite_slot && nonfinite_device == Device::Cuda; }
    double nonfinite_in_slot() const {
        double count;
        copy_to_host(nonfinite_device, nonfinite_slot, &count, 8);
        return count;
    }
    // -1 in a GPU slot: no step to commit (after construction, and when the count is set).
    void forget_pending_step() const {
        const double none = -1;
        if (steps_counted_on_device()) copy_to_device(Device::Cuda, nonfinite_slot, &none, 8);
    }

    std::string where(size_t g, size_t i) const {
        const std::string& name = groups[g].params[i].name;
        return name.empty() ? fmt::format("group {}, parameter {}", g, i) : fmt::format("group {}, parameter '{}'", g, name);
    }
    const double* fixed_value(const std::string& name) const {
        auto it = unused.fixed.find(name);
        return it == unused.fixed.end() ? nullptr : &it->second;
    }
    void check_hypers(const std::map<std::string, double>& values) const {
        std::map<std::string, double> run_time;
        for (const auto& [name, value] : values) {
            const double* fixed = fixed_value(name);
            if (!fixed) run_time[name] = value;
            else if (value != *fixed)
                throw std::invalid_argument(fmt::format("optimizer '{}': {} is compiled in at {}, its value when the optimizer was built (with {} "
                                                        "it keeps no {} {}); build it with {} = {}, or with "
                                                        "OptimizerOptions::keep_unused_states",
                                                        program.name, name, *fixed, fixed_text(unused), unused.dropped.size() == 1 ? "state" : "states",
                                                        fmt::join(unused.dropped, ", "), name, value));
        }
        hyper_values(program, run_time);  // throws naming an unknown hyper-parameter
    }
    // One state of a parameter, planned before the group's allocation: its buffer's format and
    // sizes, then its addresses.
    struct PlannedState {
        size_t state;
        Device device;
        int64_t n, offset, columns;
        StateBuffer buffer;
    };
    void allocate_states(std::vector<PlannedState>& planned);
    // A group is built in two halves around the compile of every group's kernels (which then
    // compile concurrently): plan() checks its parameters, allocates their states and adds its
    // launches, with the requests for their kernels; finish() builds the launches' tables.
    struct PlannedGroup {
        size_t first_launch = 0;
        std::vector<std::vector<TensorArgs>> tensors_of;  // per launch of the group
        std::vector<std::vector<size_t>> params_of;       // and the parameter of each of its rows
        std::vector<KernelRequest> requests;              // and its kernel
    };
    PlannedGroup plan(size_t g);
    void finish(size_t g, const PlannedGroup& planned);
};

namespace {

// The kernels of `requests` (every launch of every group) from the global cache, compiled
// concurrently: a cold start then waits for the slowest compile (a quantized kernel's, most of
// it the driver's), not for the sum; groups that ask for the same kernel wait for one compile
// (KernelCache::get). Workers load GPU modules in the caller's CUDA context.
// OPTJIT_PARALLEL_COMPILE=0 compiles them one after the other (to measure, or to keep a
// constrained machine to one core).
std::vector<std::shared_ptr<const Kernel>> get_kernels(const std::vector<KernelRequest>& requests) {
    std::vector<std::shared_ptr<const Kernel>> out(requests.size());
    const char* parallel = std::getenv("OPTJIT_PARALLEL_COMPILE");
    if (requests.size() <= 1 || (parallel && std::string(parallel) == "0")) {
        for (size_t k = 0; k < requests.size(); ++k) out[k] = KernelCache::global().get(requests[k]);
        return out;
    }
    const bool gpu = std::any_of(requests.begin(), requests.end(), [](const KernelRequest& r) { return r.target.is_gpu(); });
    const cuda::Context context = gpu ? cuda::current_context() : nullptr;
    std::vector<std::future<std::shared_ptr<const Kernel>>> pending;
    for (size_t k = 1; k < requests.size(); ++k)
        pending.push_back(std::async(std::launch::async, [&requests, k, gpu, context] {
            if (gpu) cuda::set_current_context(context);
            return KernelCache::global().get(requests[k]);
        }));
    std::exception_ptr failure;
    try {
        out[0] = KernelCache::global().get(requests[0]);
    } catch (...) {
        failure = std::current_exception();
    }
    for (size_t k = 1; k < requests.size(); ++k) {  // every worker finishes before any error leaves
        try {
            out[k] = pending[k - 1].get();
        } catch (...) {
            if (!failure) failure = std::current_exception();
        }
    }
    if (failure) std::rethrow_exception(failure);
    return out;
}

}  // namespace

// A group's states on a device live in one allocation, cut into slices aligned to 256 bytes and
// ordered by what they start as: one allocation and a memset per fill byte, where a buffer
// each took two driver calls per state (thousands for many small tensors, part of the first
// step's time).
void Optimizer::Impl::allocate_states(std::vector<PlannedState>& planned) {
    constexpr size_t kAlign = 256;
    auto aligned = [](size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; };
    // A slice: its planned state, whether it is the scales, and the byte it starts as (-1:
    // encoded from the initial value).
    struct Slice {
        size_t planned;
        bool scales;
        int fill;
        size_t bytes, at = 0;
    };
    for (Device device : {Device::Host, Device::Cuda}) {
        std::vector<Slice> slices;
        for (size_t k = 0; k < planned.size(); ++k) {
            const PlannedState& s = planned[k];
            if (s.device != device) continue;
            const bool zero = program.states[s.state].init == 0;  // scale 0: every code reads back as exactly 0
            slices.push_back({k, false, zero ? int(zero_code_byte(s.buffer.storage.format)) : -1, s.buffer.value_bytes});
            if (s.buffer.scale_bytes) slices.push_back({k, true, zero ? 0 : -1, s.buffer.scale_bytes});
        }
        if (slices.empty()) continue;
        std::sort(slices.begin(), slices.end(), [](const Slice& a, const Slice& b) {
            return a.fill != b.fill ? a.fill > b.fill : std::pair(a.planned, a.scales) < std::pair(b.planned, b.scales);
        });
        size_t total = 0;
        for (Slice& s : slices) s.at = total, total += aligned(s.bytes);
        memory.push_back(std::make_unique<DeviceMemory>(device, total));
        const uint64_t base = memory.back()->address();
        for (const Slice& s : slices) {
            StateBuffer& b = planned[s.planned].buffer;
            (s.scales ? b.scales : b.values) = base + s.at;
        }
        // One fill for each run of slices that start as the same byte.
        for (size_t i = 0; i < slices.size() && slices[i].fill >= 0;) {
            size_t j = i;
            while (j < slices.size() && slices[j].fill == slices[i].fill) ++j;
            fill_bytes(device, base + slices[i].at, uint8_t(slices[i].fill), slices[j - 1].at + slices[j - 1].bytes - slices[i].at);
            i = j;
        }
        for (const Slice& s : slices) {
            if (s.fill >= 0 || s.scales) continue;
            const PlannedState& p = planned[s.planned];
            const StateBuffer& b = p.buffer;
            StateBytes bytes = encode_state(b.storage, std::vector<float>(size_t(p.n), float(program.states[p.state].init)), p.offset, p.columns);
            copy_to_device(device, b.values, bytes.values.data(), b.value_bytes);
            if (b.scale_bytes) copy_to_device(device, b.scales, bytes.scales.data(), b.scale_bytes);
        }
    }
}

Optimizer::Impl::PlannedGroup Optimizer::Impl::plan(size_t g) {
    const ParamGroup& group = groups[g];
    std::string storage_error = check_storage(StorageSignature{DType::F32, DType::F32, group.states}, declared);
    if (!storage_error.empty()) throw std::invalid_argument(fmt::format("group {}: {}", g, storage_error));
    std::map<std::string, StateStorage> formats = group.states;  // a dropped state's is of no use
    for (const std::string& name : unused.dropped) formats.erase(name);
    // Launches of this group by device and storage text ("p=bf16 g=bf16 m=q8s:256 v=q8u:256").
    std::map<std::pair<Device, std::string>, size_t> launch_of;
    PlannedGroup out;
    out.first_launch = launches.size();
    // Every parameter checked and its states planned, then allocated together.
    std::vector<StorageSignature> storage_of;
    std::vector<PlannedState> planned;
    for (size_t i = 0; i < group.params.size(); ++i) {
        const Parameter& p = group.params[i];
        for (int64_t d : p.shape)
            if (d < 0) throw std::invalid_argument(fmt::format("{}: negative dimension {} in its shape", where(g, i), d));
        const int64_t n = element_count(p);
        if (n > 0 && (p.data == 0 || p.grad == 0))
            throw std::invalid_argument(fmt::format("{}: {} address is null", where(g, i), p.data == 0 ? "the data" : "the gradient"));
        if (p.offset < 0 || p.tensor_numel < 0 || (p.tensor_numel > 0 && p.offset + n > p.tensor_numel))
            throw std::invalid_argument(fmt::format("{}: a shard of {} elements at offset {} does not fit in a tensor of {}", where(g, i), n,
                                                    p.offset, p.tensor_numel));
        if (p.device == Device::Cuda && !cuda::available())
            throw std::invalid_argument(fmt::format("{} is on the GPU, but {}", where(g, i), cuda::unavailable_reason()));
        if (group.stochastic_rounding && p.dtype != DType::BF16)
            throw std::invalid_argument(fmt::format("{}: stochastic rounding applies to bf16 parameters; this one is {}", where(g, i),
                                                    dtype_name(p.dtype)));
        StorageSignature signature{p.dtype, p.grad_dtype, formats};
        const int64_t whole = p.tensor_numel > 0 ? p.tensor_numel : n;
        storage_of.push_back(storage_for_tensor(signature, whole, last_dimension(p)));
        for (size_t s = 0; s < program.states.size(); ++s) {
            const StateStorage& st = storage_of.back().state(program.states[s].name);
            const StateLayout layout = state_layout(st, n, p.offset, last_dimension(p));
            StateBuffer buffer;
            buffer.storage = st;
            buffer.value_bytes = layout.value_bytes;
            buffer.scale_bytes = layout.scale_bytes;
            planned.push_back({s, p.device, n, p.offset, last_dimension(p), buffer});
        }
    }
    allocate_states(planned);

    states.emplace_back();
    for (size_t i = 0; i < group.params.size(); ++i) {
        const Parameter& p = group.params[i];
        const int64_t n = element_count(p);
        const StorageSignature& storage = storage_of[i];
        states.back().emplace_back();
        TensorArgs args;
        args.p = p.data;
        args.g = p.grad;
        args.n = n;
        args.offset = p.offset;
        args.columns = last_dimension(p);
        for (size_t s = 0; s < program.states.size(); ++s) {
            const StateBuffer& b = planned[i * program.states.size() + s].buffer;
            states.back().back().push_back(b);
            args.states.push_back(b.values);
            args.scales.push_back(b.scales);
        }
        if (n == 0) continue;  // nothing to step

        auto key = std::make_pair(p.device, to_string(storage, program));
        auto [it, added] = launch_of.try_emplace(key, launches.size());
        if (added) {
            Launch l;
            l.group = g;
            l.device = p.device;
            KernelRequest request;
            request.program = program;
            request.storage = storage;
            request.target = p.device == Device::Cuda ? Target{Target::Kind::NVPTX, cuda::init()} : Target{};
            request.options.math = options.math;
            request.options.stochastic_rounding = group.stochastic_rounding;
            // GPU steps that skip non-finite gradients keep their step number on the device too.
            request.options.capturable = (options.capturable || options.skip_nonfinite) && p.device == Device::Cuda;
            request.options.hypers_by_value = request.options.capturable && !options.capturable;
            request.options.count_applied_steps = request.options.capturable && options.skip_nonfinite;
            out.requests.push_back(std::move(request));
            launches.push_back(std::move(l));
            out.tensors_of.emplace_back();
            out.params_of.emplace_back();
        }
        out.tensors_of[it->second - out.first_launch].push_back(args);
        out.params_of[it->second - out.first_launch].push_back(i);
    }
    for (size_t k = 0; k < out.requests.size(); ++k) out.requests[k].options.whole_chunks = whole_chunks_hold(out.requests[k], out.tensors_of[k]);
    return out;
}

void Optimizer::Impl::finish(size_t g, const PlannedGroup& planned) {
    blocks.emplace_back();
    for (size_t k = 0; k < planned.tensors_of.size(); ++k) {
        Launch& l = launches[planned.first_launch + k];
        try {
            l.table = build_table(*l.kernel, planned.tensors_of[k]);
        } catch (const TableError& e) {  // name the parameter, not a row of the table
            throw std::invalid_argument(fmt::format("{}: {}", where(g, planned.params_of[k][e.tensor]), e.reason));
        }
        if (l.device == Device::Cuda) {
            l.device_table = std::make_unique<DeviceMemory>(Device::Cuda, l.table.words.size() * 8);
            copy_to_device(Device::Cuda, l.device_table->address(), l.table.words.data(), l.table.words.size() * 8);
        }
        const Program& lowered = l.kernel->spec().lowered;
        if (k > 0) l.scalars_of_previous = lowered == launches[planned.first_launch + k - 1].kernel->spec().lowered;
        if (l.kernel->spec().options.capturable && !blocks.back().memory) {
            blocks.back().memory = std::make_unique<DeviceMemory>(Device::Cuda, scalar_block_bytes(lowered));
            blocks.back().kernel = l.kernel.get();
            write_block(g);
        } else if (l.kernel->spec().options.capturable && !(lowered == blocks.back().kernel->spec().lowered)) {
            throw std::logic_error(fmt::format("{}: a capturable launch lowered to another program than its group's scalar block's", where(g, planned.params_of[k][0])));
        }
    }
}

Optimizer::Optimizer(const Program& program, std::vector<ParamGroup> groups, OptimizerOptions options) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    verify_or_throw(program);  // a program built in C++ may not have been
    m.options = std::move(options);
    m.program = program;
    if (m.options.max_grad_norm < 0 || !std::isfinite(m.options.max_grad_norm))
        throw std::invalid_argument(fmt::format("max_grad_norm must be a positive number (0 turns clipping off), not {}", m.options.max_grad_norm));
    m.program = apply_gradient_policies(m.program, {m.options.maximize, m.options.max_grad_norm, m.options.skip_nonfinite});
    m.declared = m.program;
    m.groups = std::move(groups);
    m.check_hypers(m.options.hypers);
    for (size_t g = 0; g < m.groups.size(); ++g) {
        std::map<std::string, double> values = m.options.hypers;
        for (const auto& [name, value] : m.groups[g].hypers) values[name] = value;
        try {
            m.check_hypers(values);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(fmt::format("group {}: {}", g, e.what()));
        }
        m.hypers.push_back(values);
    }
    if (!m.options.keep_unused_states && !m.hypers.empty()) {
        m.unused = drop_unused_states(m.program, m.hypers);
        m.program = m.unused.program;
        for (auto& values : m.hypers)
            for (const auto& [name, value] : m.unused.fixed) values.erase(name);
    }
    std::vector<Impl::PlannedGroup> planned;
    std::vector<KernelRequest> requests;  // every launch's, in the order of m.launches
    for (size_t g = 0; g < m.groups.size(); ++g) {
        planned.push_back(m.plan(g));
        requests.insert(requests.end(), planned.back().requests.begin(), planned.back().requests.end());
    }
    relocate_dense_beside_quantized(requests);
    std::vector<std::shared_ptr<const Kernel>> compiled = get_kernels(requests);
    for (size_t k = 0; k < compiled.size(); ++k) m.launches[k].kernel = std::move(compiled[k]);
    for (size_t g = 0; g < m.groups.size(); ++g) m.finish(g, planned[g]);
    std::vector<const Kernel*> kernels;
    for (const Impl::Launch& l : m.launches) kernels.push_back(l.kernel.get());
    m.passes = step_passes(kernels);
    if (reductions(m.program).empty() || m.launches.empty()) return;
    const Device device = m.launches.front().device;
    std::vector<int32_t> tensors;
    for (const Impl::Launch& l : m.launches) {
        if (l.device != device)
            throw std::invalid_argument(fmt::format("optimizer '{}' has reductions over the whole step (gradient clipping, the non-finite "
                                                    "policy, or its own), so its parameters must be on one device; these are on the host "
                                                    "and the GPU", m.program.name));
        tensors.push_back(l.table.num_tensors);
    }
    m.reductions = std::make_unique<StepReductions>(device, m.launches.front().kernel->spec().lowered, tensors);
    if (m.options.skip_nonfinite) {
        m.nonfinite_slot = m.reductions->global_slot_address(policy_reduction(m.lowered(), kNonfiniteGrads, "skip_nonfinite").second);
        m.nonfinite_device = device;
        m.forget_pending_step();
    }
}

Optimizer Optimizer::from_text(std::string_view text, std::vector<ParamGroup> groups, OptimizerOptions options, const std::string& file_name) {
    return Optimizer(parse_and_verify(text, file_name), std::move(groups), std::move(options));
}

Optimizer::~Optimizer() = default;
Optimizer::Optimizer(Optimizer&&) noexcept = default;
Optimizer& Optimizer::operator=(Optimizer&&) noexcept = default;

void Optimizer::step(cuda::Stream stream) {
    Impl& m = *impl_;
    const int64_t step = m.steps + 1;
    // Launches are in group order. A group's capturable launches read the scalars its block's
    // kernel computes on the device, before its first launch; the others take them from the
    // host, computed once for launches that lowered to the same program in a row.
    std::vector<std::vector<float>> scalars(m.launches.size());
    for (size_t k = 0; k < m.launches.size(); ++k) {
        const Impl::Launch& l = m.launches[k];
        const bool group_start = k == 0 || m.launches[k - 1].group != l.group;
        const Impl::ScalarBlock* block = m.block_of(l.group);
        if (group_start && block) {  // the device's step + 1
            const KernelSpec& spec = block->kernel->spec();
            launch_cuda_scalars(*block->kernel, block->memory->address(), stream, m.nonfinite_slot,
                                spec.options.hypers_by_value ? hyper_values(spec.lowered, m.hypers[l.group]) : std::vector<double>{});
        }
        if (l.kernel->spec().options.capturable) continue;  // reads the block
        scalars[k] = l.scalars_of_previous && !scalars[k - 1].empty() ? scalars[k - 1] : launch_scalars(*l.kernel, m.hypers[l.group], step);
    }
    // With reductions, every launch's reduction passes come before any update reads them,
    // level by level.
    auto run = [&](LaunchPass pass) {
        for (size_t k = 0; k < m.launches.size(); ++k) {
            const Impl::Launch& l = m.launches[k];
            if (!has_pass(*l.kernel, pass)) continue;
            const ReductionSlots slots = m.reductions ? m.reductions->slots(k) : ReductionSlots{};
            if (l.kernel->spec().options.capturable)
                launch_cuda(*l.kernel, l.device_table->address(), l.table, m.block_of(l.group)->memory->address(), stream, m.options.seed, slots,
                            pass);
            else if (l.device == Device::Cuda)
                launch_cuda(*l.kernel, l.device_table->address(), l.table, scalars[k], stream, m.options.seed, slots, pass);
            else
                launch_host(*l.kernel, l.table, scalars[k], ThreadPool::global(), m.options.seed, slots, pass);
        }
    };
    if (m.reductions) m.reductions->clear(stream);
    for (LaunchPass pass : m.passes) run(pass);
    // A skipped step does not count. Host launches have run: their count is in host memory.
    // GPU ones count on the device (step_count() reads it), as the next step's scalars need.
    const bool skipped = m.nonfinite_slot && !m.steps_counted_on_device() && m.nonfinite_in_slot() > 0;
    if (!skipped) m.steps = step;
}

double Optimizer::grad_norm() const {
    auto [index, slot] = policy_reduction(impl_->lowered(), kGradNormSquared, "max_grad_norm > 0");
    if (!impl_->reductions) return 0;  // no parameters
    return std::sqrt(impl_->reductions->values()[index][0]);
}

uint64_t Optimizer::grad_norm_squared_address() const {
    auto [index, slot] = policy_reduction(impl_->lowered(), kGradNormSquared, "max_grad_norm > 0");
    return impl_->reductions ? impl_->reductions->global_slot_address(slot) : 0;
}

double Optimizer::nonfinite_count() const {
    auto [index, slot] = policy_reduction(impl_->lowered(), kNonfiniteGrads, "skip_nonfinite");
    if (!impl_->reductions) return 0;
    return std::max(0.0, impl_->reductions->values()[index][0]);  // -1: no step yet
}

uint64_t Optimizer::nonfinite_count_address() const {
    auto [index, slot] = policy_reduction(impl_->lowered(), kNonfiniteGrads, "skip_nonfinite");
    return impl_->reductions ? impl_->reductions->global_slot_address(slot) : 0;
}

std::vector<std::vector<double>> Optimizer::reduction_values() const {
    if (!impl_->reductions) return std::vector<std::vector<double>>(reductions(impl_->program).size());
    return impl_->reductions->values();
}

int64_t Optimizer::step_count() const {
    for (size_t g = 0; g < impl_->groups.size(); ++g)
        if (const Impl::ScalarBlock* block = impl_->block_of(g)) {
            double device_steps;
            copy_to_host(Device::Cuda, block->memory->address() + kScalarBlockStep, &device_steps, 8);
            // Skipping non-finite steps: the last step is committed by the next one's scalars
            // kernel; it counts if its count of non-finite gradients is 0.
            const bool last_applied = impl_->steps_counted_on_device() && impl_->nonfinite_in_slot() == 0;
            return int64_t(device_steps) + (last_applied ? 1 : 0);
        }
    return impl_->steps;
}

void Optimizer::set_step_count(int64_t steps) {
    if (steps < 0) throw std::invalid_argument(fmt::format("a step count cannot be negative ({})", steps));
    impl_->steps = steps;
    const double word = double(steps);  // the step only: a schedule may have written the hypers
    for (size_t g = 0; g < impl_->groups.size(); ++g)
        if (const Impl::ScalarBlock* block = impl_->block_of(g)) copy_to_device(Device::Cuda, block->memory->address() + kScalarBlockStep, &word, 8);
    impl_->forget_pending_step();
}

void Optimizer::set_hyper(const std::string& name, double value) {
    impl_->check_hypers({{name, value}});
    for (size_t g = 0; g < impl_->groups.size(); ++g) set_hyper(g, name, value);
}

namespace {

// The index of hyper-parameter `name` in `program`, or a sentence saying it has none.
size_t hyper_index(const Program& program, const std::string& name) {
    hyper_values(program, {{name, 0.0}});  // throws naming an unknown hyper-parameter
    size_t i = 0;
    while (program.hypers[i].name != name) ++i;
    return i;
}

}  // namespace

void Optimizer::set_hyper(size_t group, const std::string& name, double value) {
    if (group >= impl_->hypers.size())
        throw std::invalid_argument(fmt::format("there is no group {}: the optimizer has {}", group, impl_->hypers.size()));
    impl_->check_hypers({{name, value}});
    if (impl_->fixed_value(name)) return;  // its value, compiled in
    impl_->hypers[group][name] = value;
    if (impl_->hypers_on_device(group)) copy_to_device(Device::Cuda, hyper_address(group, name), &value, 8);
}

double Optimizer::hyper(size_t group, const std::string& name) const {
    if (group >= impl_->hypers.size())
        throw std::invalid_argument(fmt::format("there is no group {}: the optimizer has {}", group, impl_->hypers.size()));
    if (const double* fixed = impl_->fixed_value(name)) return *fixed;
    const size_t i = hyper_index(impl_->program, name);
    if (impl_->hypers_on_device(group)) {
        double value;
        std::vector<uint8_t> bytes = copy_to_host(Device::Cuda, hyper_address(group, name), 8);
        std::memcpy(&value, bytes.data(), 8);
        return value;
    }
    return hyper_values(impl_->program, impl_->hypers[group])[i];
}

uint64_t Optimizer::hyper_address(size_t group, const std::string& name) const {
    if (impl_->fixed_value(name))
        throw std::invalid_argument(fmt::format("optimizer '{}': {} is compiled in ({}), not a run-time value; build the optimizer with "
                                                "OptimizerOptions::keep_unused_states to schedule it",
                                                impl_->program.name, name, fixed_text(impl_->unused)));
    const Impl::ScalarBlock* block = impl_->block_of(group);
    if (!impl_->hypers_on_device(group))
        throw std::invalid_argument(fmt::format("group {} keeps no hyper-parameters on the device: the optimizer is not capturable or "
                                                "the group has no GPU parameter", group));
    return block->memory->address() + scalar_block_hyper(hyper_index(block->kernel->spec().lowered, name));
}

const Program& Optimizer::program() const { return impl_->program; }
const std::vector<std::string>& Optimizer::dropped_states() const { return impl_->unused.dropped; }
const std::map<std::string, double>& Optimizer::fixed_hypers() const { return impl_->unused.fixed; }
size_t Optimizer::num_groups() const { return impl_->groups.size(); }
size_t Optimizer::num_params(size_t group) const { return impl_->groups.at(group).params.size(); }
size_t Optimizer::num_launches() const { return impl_->launches.size(); }

const Parameter& Optimizer::param(size_t group, size_t index) const {
    if (group >= impl_->groups.size() || index >= impl_->groups[group].params.size())
        throw std::invalid_argument(fmt::format("there is no parameter {} in group {}", index, group));
    return impl_->groups[group].params[index];
}

StateBuffer Optimizer::state(size_t group, size_t param, const std::string& name) const {
    const Impl& m = *impl_;
    if (group >= m.states.size() || param >= m.states[group].size())
        throw std::invalid_argument(fmt::format("there is no parameter {} in group {}", param, group));
    for (size_t s = 0; s < m.program.states.size(); ++s)
        if (m.program.states[s].name == name) return m.states[group][param][s];
    if (std::find(m.unused.dropped.begin(), m.unused.dropped.end(), name) != m.unused.dropped.end())
        throw std::invalid_argument(fmt::format("optimizer '{}' keeps no state '{}': {}its step does not use it (OptimizerOptions::keep_unused_states "
                                                "keeps it)",
                                                m.program.name, name, m.unused.fixed.empty() ? "" : "with " + fixed_text(m.unused) + " "));
    throw std::invalid_argument(fmt::format("optimizer '{}' has no state '{}'", m.program.name, name));
}

}  // namespace optjit
