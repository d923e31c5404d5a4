#include "runtime/launch.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <stdexcept>

#include "compiler/kernel_abi.h"
#include "ir/interpreter.h"
#include "ir/quantization.h"
#include "ir/semantics.h"

namespace optjit {

TableError::TableError(size_t tensor_index, std::string sentence)
    : std::invalid_argument(fmt::format("tensor {}: {}", tensor_index, sentence)), tensor(tensor_index), reason(std::move(sentence)) {}

bool whole_chunks_hold(const KernelRequest& request, std::span<const TensorArgs> tensors) {
    if (!request.target.is_gpu() || !has_quantized_state(request.storage)) return false;
    // A chunk's size depends on the options lower() resolves and on the largest block of the
    // program's quantized states. Passes do not add states, so the lowered kernel's chunk is at
    // most this one, and divides it (powers of two).
    const int64_t chunk = chunk_elements(KernelSpec{request.program, request.storage, request.target, resolved_options(request)});
    return std::all_of(tensors.begin(), tensors.end(), [&](const TensorArgs& t) {
        uint64_t any = t.p | t.g;
        for (uint64_t s : t.states) any |= s;
        return t.n % chunk == 0 && any % 16 == 0;
    });
}

void relocate_dense_beside_quantized(std::vector<KernelRequest>& requests) {
    auto quantized_gpu = [](const KernelRequest& r) { return r.target.is_gpu() && has_quantized_state(r.storage); };
    if (std::none_of(requests.begin(), requests.end(), quantized_gpu)) return;
    for (KernelRequest& r : requests)
        if (r.target.is_gpu() && !has_quantized_state(r.storage)) r.options.gpu_relocatable = true;
}

TensorTable build_table(const Kernel& kernel, std::span<const TensorArgs> tensors) {
    const Program& prog = kernel.spec().lowered;
    TableLayout layout = table_layout(kernel.spec());
    int64_t chunk = kernel.chunk_elements();
    TensorTable t;
    t.num_tensors = int32_t(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
        const TensorArgs& a = tensors[i];
        if (int(a.states.size()) != layout.num_states)
            throw TableError(i, fmt::format("optimizer '{}' needs {} state buffers, {} given", prog.name,
                                                    layout.num_states, a.states.size()));
        if (a.n < 0) throw TableError(i, fmt::format("negative size {}", a.n));
        std::vector<int64_t> row(layout.row_words());
        row[layout.p()] = int64_t(a.p);
        row[layout.g()] = int64_t(a.g);
        for (int s = 0; s < layout.num_states; ++s) {
            row[layout.state(s)] = int64_t(a.states[s]);
            const StateStorage& st = kernel.spec().storage.state(prog.states[s].name);
            if (!is_block_quantized(st.format)) continue;
            if (size_t(s) >= a.scales.size() || a.scales[s] == 0)
                throw TableError(i, fmt::format("state '{}' is {} and needs a buffer of block scales",
                                                        prog.states[s].name, to_string(st)));
            if (a.offset % st.block != 0)
                throw TableError(i, fmt::format("a shard must start on a block boundary of state '{}' "
                                                        "(offset {}, block {})", prog.states[s].name, a.offset, st.block));
            row[layout.scales(s)] = int64_t(a.scales[s]);
            if (!st.rank1) continue;
            if (a.offset != 0)
                throw TableError(i, fmt::format("state '{}' is {}, which needs the whole tensor (a shard cannot see its "
                                                        "rows' and columns' maxima)", prog.states[s].name, to_string(st)));
            if (a.columns <= 0 || a.n % a.columns != 0)
                throw TableError(i, fmt::format("state '{}' is {} and needs the tensor as rows of columns; {} elements "
                                                        "are not rows of {}", prog.states[s].name, to_string(st), a.n, a.columns));
            if (rank1_state_is_stored(kernel.spec(), prog.states[s].name))
                t.rank1_statistics.push_back({a.scales[s], rank1_statistic_count(a.n, a.columns)});
        }
        if (layout.rank1) row[layout.columns()] = a.columns;
        row[layout.n()] = a.n;
        row[layout.offset()] = a.offset;
        row[layout.chunk_begin()] = t.num_chunks;
        t.num_chunks += (a.n + chunk - 1) / chunk;
        row[layout.chunk_end()] = t.num_chunks;
        t.words.insert(t.words.end(), row.begin(), row.end());
    }
    return t;
}

namespace {

double evaluate_scalar(const Expr& e, const std::map<std::string, double>& env) {
    if (e.op == Op::Number) return e.number;
    if (e.op == Op::Ref) return env.at(e.name);
    double a[3] = {0, 0, 0};
    for (size_t i = 0; i < e.args.size(); ++i) a[i] = evaluate_scalar(e.args[i], env);
    return evaluate(e.op, a[0], a[1], a[2]);
}

}  // namespace

std::vector<float> launch_scalars(const Kernel& kernel, const std::map<std::string, double>& hypers, int64_t step) {
    const Program& prog = kernel.spec().lowered;
    std::vector<double> values = hyper_values(prog, hypers);
    std::map<std::string, double> env{{std::string(kStepName), double(step)}};
    for (size_t i = 0; i < prog.hypers.size(); ++i) env[prog.hypers[i].name] = values[i];
    for (const Assign& a : prog.scalars) env[a.target] = evaluate_scalar(a.value, env);
    std::vector<float> out;
    for (const std::string& name : kernel_scalars(prog)) out.push_back(float(env.at(name)));
    return out;
}

namespace {

// Whether the kernel has reduction passes: their entries were found when it was loaded (walking
// the program for reductions every launch would be work on the step's path).
bool reduces(const Kernel& kernel) { return kernel.reduction_levels() > 0; }

void check_slots(const Kernel& kernel, ReductionSlots slots, LaunchPass pass) {
    if (!has_pass(kernel, pass))
        throw std::invalid_argument(fmt::format("kernel {} has {} reduction pass(es): there is no pass of level {} to run", kernel.key(),
                                                kernel.reduction_levels(), pass.level));
    if (!reduces(kernel)) return;
    if (slots.global == 0 || slots.tensor == 0)
        throw std::invalid_argument(fmt::format("optimizer '{}' has reductions: its launches need reduction slots (runtime/step_reductions.h)",
                                                kernel.spec().lowered.name));
}

}  // namespace

std::vector<LaunchPass> step_passes(const std::vector<const Kernel*>& kernels) {
    int levels = 0;
    for (const Kernel* k : kernels) levels = std::max(levels, k->reduction_levels());
    std::vector<LaunchPass> out;
    for (int level = 1; level <= levels; ++level) out.push_back(LaunchPass::reductions(level));
    out.push_back(LaunchPass::update());
    return out;
}

bool has_pass(const Kernel& kernel, LaunchPass pass) { return pass.level >= 0 && pass.level <= kernel.reduction_levels(); }

void launch_host(const Kernel& kernel, const TensorTable& table, const std::vector<float>& scalars, ThreadPool& pool, uint64_t seed,
                 ReductionSlots slots, LaunchPass pass) {
    if (!kernel.host_entry) throw std::invalid_argument(fmt::format("kernel {} is not a host kernel", kernel.key()));
    check_slots(kernel, slots, pass);
    auto run = [&](Kernel::HostEntry entry) {
        pool.parallel_for(table.num_chunks, [&](int64_t begin, int64_t end) {
            entry(table.words.data(), table.num_tensors, begin, end, scalars.data(), int64_t(seed), reinterpret_cast<void*>(slots.global),
                  reinterpret_cast<void*>(slots.tensor));
        });
    };
    if (!pass.is_update()) return run(kernel.host_reductions_entries[size_t(pass.level - 1)]);
    if (!kernel.host_statistics_entry) return run(kernel.host_entry);
    for (auto [buffer, count] : table.rank1_statistics) std::fill_n(reinterpret_cast<float*>(buffer) + count, count, kScaleFloor);
    run(kernel.host_statistics_entry);
    run(kernel.host_entry);
    for (auto [buffer, count] : table.rank1_statistics)
        std::copy_n(reinterpret_cast<const float*>(buffer) + count, count, reinterpret_cast<float*>(buffer));
}

namespace {

// `scalars`: pointers to the kernel's arguments after the table, the counts, the seed and the
// reduction slots.
void launch_cuda_with(const Kernel& kernel, cuda::DevicePtr table, const TensorTable& shape, const std::vector<void*>& scalars,
                      cuda::Stream stream, uint64_t seed, ReductionSlots slots, LaunchPass pass) {
    if (!kernel.cuda_function) throw std::invalid_argument(fmt::format("kernel {} is not a GPU kernel", kernel.key()));
    check_slots(kernel, slots, pass);
    if (shape.num_chunks == 0) return;
    int32_t num_tensors = shape.num_tensors;
    int64_t num_chunks = shape.num_chunks;
    int64_t seed_word = int64_t(seed);
    std::vector<void*> params{&table, &num_tensors, &num_chunks, &seed_word};
    if (reduces(kernel)) {
        params.push_back(&slots.global);
        params.push_back(&slots.tensor);
    }
    params.insert(params.end(), scalars.begin(), scalars.end());
    const unsigned threads = unsigned(gpu_threads_per_block(kernel.spec()));
    // Each function gets a grid of its own occupancy: the passes before the update hold far
    // fewer registers.
    auto grid = [&](int blocks_per_sm) { return unsigned(std::min<int64_t>(shape.num_chunks, int64_t(cuda::multiprocessor_count()) * blocks_per_sm)); };
    if (!pass.is_update()) {
        const size_t k = size_t(pass.level - 1);
        return cuda::launch(kernel.cuda_reductions_functions[k], grid(kernel.gpu_reductions_blocks_per_sm[k]), threads, params.data(), stream);
    }
    if (!kernel.cuda_statistics_function) return cuda::launch(kernel.cuda_function, grid(kernel.gpu_blocks_per_sm), threads, params.data(), stream);
    for (auto [buffer, count] : shape.rank1_statistics)
        cuda::memset_d32_async(buffer + 4 * uint64_t(count), std::bit_cast<uint32_t>(kScaleFloor), size_t(count), stream);
    cuda::launch(kernel.cuda_statistics_function, grid(kernel.gpu_statistics_blocks_per_sm), threads, params.data(), stream);
    cuda::launch(kernel.cuda_function, grid(kernel.gpu_blocks_per_sm), threads, params.data(), stream);
    for (auto [buffer, count] : shape.rank1_statistics) cuda::memcpy_dtod_async(buffer, buffer + 4 * uint64_t(count), 4 * size_t(count), stream);
}

}  // namespace

void launch_cuda(const Kernel& kernel, cuda::DevicePtr table, const TensorTable& shape, const std::vector<float>& scalars,
                 cuda::Stream stream, uint64_t seed, ReductionSlots slots, LaunchPass pass) {
    if (kernel.spec().options.capturable)
        throw std::invalid_argument(fmt::format("kernel {} is capturable: it takes a scalar block, not scalars", kernel.key()));
    std::vector<float> copy = scalars;
    std::vector<void*> pointers;
    for (float& s : copy) pointers.push_back(&s);
    launch_cuda_with(kernel, table, shape, pointers, stream, seed, slots, pass);
}

void launch_cuda(const Kernel& kernel, cuda::DevicePtr table, const TensorTable& shape, cuda::DevicePtr scalar_block, cuda::Stream stream,
                 uint64_t seed, ReductionSlots slots, LaunchPass pass) {
    if (!kernel.spec().options.capturable)
        throw std::invalid_argument(fmt::format("kernel {} takes its scalars by value, not in a scalar block", kernel.key()));
    launch_cuda_with(kernel, table, shape, {&scalar_block}, stream, seed, slots, pass);
}

void launch_cuda_scalars(const Kernel& kernel, cuda::DevicePtr scalar_block, cuda::Stream stream, cuda::DevicePtr nonfinite_count,
                         const std::vector<double>& hypers) {
    if (!kernel.cuda_scalars_function) throw std::invalid_argument(fmt::format("kernel {} is not a capturable GPU kernel", kernel.key()));
    const KernelSpec& spec = kernel.spec();
    std::vector<void*> params{&scalar_block};
    if (spec.options.count_applied_steps) {
        if (!nonfinite_count) throw std::invalid_argument(fmt::format("kernel {} skips non-finite steps: it needs the count's slot", kernel.key()));
        params.push_back(&nonfinite_count);
    }
    if (spec.options.hypers_by_value) {
        if (hypers.size() != spec.lowered.hypers.size())
            throw std::invalid_argument(fmt::format("kernel {} takes {} hyper-parameters, not {}", kernel.key(), spec.lowered.hypers.size(), hypers.size()));
        for (const double& h : hypers) params.push_back(const_cast<double*>(&h));
    }
    cuda::launch(kernel.cuda_scalars_function, 1, 1, params.data(), stream);
}

}  // namespace optjit
