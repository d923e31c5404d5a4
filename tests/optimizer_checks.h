// What the host (test_optimizer.cpp) and GPU (test_gpu.cpp) tests of optjit::Optimizer share:
// parameters in a device's memory with fresh random values, and the checks themselves, each
// run on a device:
//   - one launch over many tensors equals one optimizer per tensor, bit for bit, for tensors
//     of 1 element to several blocks and odd sizes, in every state format;
//   - groups keep their own hyper-parameters and formats (each equals an optimizer of its own);
//   - shards with offsets step exactly as the whole tensor does;
//   - steps match the float64 interpreter while `lr` changes every step, and compile nothing,
//     also for small fp32-state tensors in a group of 8-bit ones;
//   - checkpoints: round trips (and between devices), every refusal, format conversions.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/interpreter.h"
#include "ir/library.h"
#include "ir/numeric.h"
#include "ir/quantization.h"
#include "runtime/checked_run.h"
#include "runtime/cuda_driver.h"
#include "runtime/fnv1a.h"
#include "runtime/kernel_cache.h"
#include "runtime/optimizer.h"
#include "runtime/random.h"
#include "test_support.h"

namespace optjit_test {

using namespace optjit;

// Bytes on a device: a host copy, mirrored in device memory for Device::Cuda.
struct DeviceBytes {
    Device device;
    std::vector<uint8_t> host;
    cuda::DeviceAlloc gpu;
    DeviceBytes(Device d, size_t bytes) : device(d), host(std::max<size_t>(bytes, 16)) {
        if (d == Device::Cuda) gpu = cuda::DeviceAlloc(host.size());
    }
    uint64_t address() { return device == Device::Cuda ? gpu.get() : reinterpret_cast<uint64_t>(host.data()); }
    void upload() {
        if (device == Device::Cuda) cuda::memcpy_htod(gpu.get(), host.data(), host.size());
    }
};

// Reads `bytes` at `address` on `device` (after the work queued there is done).
inline std::vector<uint8_t> read_bytes(Device device, uint64_t address, size_t bytes) {
    if (device == Device::Cuda && bytes > 0) cuda::synchronize();
    return copy_to_host(device, address, bytes);
}

// A parameter and its gradient with values drawn from `seed`; `stream` tells tensors apart.
struct TestParam {
    std::vector<int64_t> shape;
    DType dtype, grad_dtype;
    int64_t n;
    std::unique_ptr<DeviceBytes> data, grad;
    uint64_t seed, stream;

    TestParam(Device device, std::vector<int64_t> shape_, DType dtype_, DType grad_dtype_, uint64_t seed_, uint64_t stream_)
        : shape(std::move(shape_)), dtype(dtype_), grad_dtype(grad_dtype_), seed(seed_), stream(stream_) {
        n = 1;
        for (int64_t d : shape) n *= d;
        data = std::make_unique<DeviceBytes>(device, size_t(n) * size_t(dtype_bytes(dtype)));
        grad = std::make_unique<DeviceBytes>(device, size_t(n) * size_t(dtype_bytes(grad_dtype)));
        for (int64_t i = 0; i < n; ++i) store_element(dtype, data->host.data(), size_t(i), normal(seed, stream, uint64_t(i)));
        data->upload();
    }
    // The gradient of `step` (fresh values each step). Elements [first, first + count) of the
    // stream: a shard draws the values of its place in the whole tensor.
    void set_gradient(int64_t step, int64_t first = 0) {
        for (int64_t i = 0; i < n; ++i)
            store_element(grad_dtype, grad->host.data(), size_t(i), normal(seed, stream + 1000 * uint64_t(step), uint64_t(first + i)));
        grad->upload();
    }
    Parameter parameter(const std::string& name) {
        Parameter p;
        p.name = name;
        p.data = data->address();
        p.grad = grad->address();
        p.dtype = dtype;
        p.grad_dtype = grad_dtype;
        p.shape = shape;
        p.device = data->device;
        return p;
    }
    std::vector<uint8_t> values() { return read_bytes(data->device, data->address(), size_t(n) * size_t(dtype_bytes(dtype))); }
};

inline std::vector<uint8_t> state_bytes(const Optimizer& o, Device device, size_t group, size_t param, const std::string& name) {
    StateBuffer s = o.state(group, param, name);
    std::vector<uint8_t> out = read_bytes(device, s.values, s.value_bytes);
    std::vector<uint8_t> scales = read_bytes(device, s.scales, s.scale_bytes);
    out.insert(out.end(), scales.begin(), scales.end());
    return out;
}

inline Program adamw_program() { return load_example("adamw"); }

// Shapes from one element to several blocks, odd sizes, rows and columns (rank-1 states).
inline const std::vector<std::vector<int64_t>>& test_shapes() {
    static const std::vector<std::vector<int64_t>> shapes = {{1}, {3}, {127}, {129}, {257}, {4095}, {4096},
                                                             {64, 65}, {5000}, {33, 257}, {3, 7, 401}, {65537}};
    return shapes;
}

inline std::vector<std::map<std::string, StateStorage>> test_formats() {
    auto storage = [](const char* text) {
        std::string error;
        return *parse_state_storage(text, &error);
    };
    return {{},
            {{"m", storage("bf16")}, {"v", storage("bf16")}},
            {{"m", storage("q8s")}, {"v", storage("q8u")}},
            {{"m", storage("q4s")}, {"v", storage("q4u")}},
            {{"m", storage("fp8")}, {"v", storage("fp8")}},
            {{"m", storage("q8s:64")}, {"v", storage("q4u:128:rank1")}}};
}

inline std::string formats_text(const std::map<std::string, StateStorage>& states) {
    std::string out;
    for (const auto& [name, s] : states) out += name + "=" + to_string(s) + " ";
    return out.empty() ? "fp32" : out;
}

// One optimizer over every test shape equals one optimizer per shape, bit for bit.
inline void check_multi_tensor_equals_per_tensor(Device device) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED replays it), device ", device_name(device));
    Program program = adamw_program();
    for (DType dtype : {DType::F32, DType::BF16}) {
        for (const auto& formats : test_formats()) {
            INFO("p and g ", dtype_name(dtype), ", states ", formats_text(formats));
            std::vector<std::unique_ptr<TestParam>> together, alone;
            ParamGroup all;
            all.states = formats;
            std::vector<Optimizer> singles;
            for (size_t t = 0; t < test_shapes().size(); ++t) {
                together.push_back(std::make_unique<TestParam>(device, test_shapes()[t], dtype, dtype, seed, t));
                alone.push_back(std::make_unique<TestParam>(device, test_shapes()[t], dtype, dtype, seed, t));
                all.params.push_back(together.back()->parameter("t" + std::to_string(t)));
                ParamGroup one;
                one.states = formats;
                one.params.push_back(alone.back()->parameter("t" + std::to_string(t)));
                singles.emplace_back(program, std::vector<ParamGroup>{one});
            }
            Optimizer multi(program, {all});
            CHECK(multi.num_launches() < test_shapes().size());
            for (int64_t step = 1; step <= 3; ++step) {
                for (size_t t = 0; t < together.size(); ++t) {
                    together[t]->set_gradient(step);
                    alone[t]->set_gradient(step);
                }
                multi.step();
                for (Optimizer& o : singles) o.step();
            }
            for (size_t t = 0; t < together.size(); ++t) {
                INFO("tensor ", t, " of ", together[t]->n, " elements");
                CHECK(together[t]->values() == alone[t]->values());
                for (const StateDecl& s : program.states)
                    CHECK_MESSAGE(state_bytes(multi, device, 0, t, s.name) == state_bytes(singles[t], device, 0, 0, s.name), "state ", s.name);
            }
        }
    }
}

// A group whose quantized tensors are all whole numbers of chunks, aligned, gets a kernel of
// its own without the short-chunk path (CodegenOptions::whole_chunks: one more compile than the
// same formats with a short tensor beside them, in formats no other check uses), and its
// tensors step bit for bit as they do beside a short tensor, in the kernel with that path.
inline void check_whole_chunks_step_as_beside_a_short_tensor(Device device) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, " (OPTJIT_TEST_SEED replays it), device ", device_name(device));
    Program program = adamw_program();
    std::string error;
    const std::map<std::string, StateStorage> formats = {{"m", *parse_state_storage("q8s:512", &error)}, {"v", *parse_state_storage("q4u:512", &error)}};
    const std::vector<std::vector<int64_t>> whole = {{1024}, {4096}, {64, 1024}, {7168}};
    std::vector<std::unique_ptr<TestParam>> beside, alone;
    ParamGroup with_short, without;
    with_short.states = without.states = formats;
    for (size_t t = 0; t < whole.size(); ++t) {
        beside.push_back(std::make_unique<TestParam>(device, whole[t], DType::BF16, DType::BF16, seed, t));
        alone.push_back(std::make_unique<TestParam>(device, whole[t], DType::BF16, DType::BF16, seed, t));
        with_short.params.push_back(beside.back()->parameter("t" + std::to_string(t)));
        without.params.push_back(alone.back()->parameter("t" + std::to_string(t)));
    }
    TestParam short_tensor(device, {5000}, DType::BF16, DType::BF16, seed, 99);
    with_short.params.push_back(short_tensor.parameter("short"));
    Optimizer general(program, {with_short});
    for (auto& p : beside) p->set_gradient(1);
    short_tensor.set_gradient(1);
    general.step();
    const int compiles = KernelCache::global().stats().compiles;
    Optimizer whole_chunks(program, {without});
    for (int64_t step = 1; step <= 3; ++step) {
        for (auto& p : alone) p->set_gradient(step);
        whole_chunks.step();
        if (step == 1 && device == Device::Cuda) CHECK(KernelCache::global().stats().compiles == compiles + 1);
        if (step == 1) continue;  // the general optimizer took its first step above
        for (auto& p : beside) p->set_gradient(step);
        short_tensor.set_gradient(step);
        general.step();
    }
    for (size_t t = 0; t < whole.size(); ++t) {
        INFO("tensor ", t, " of ", alone[t]->n, " elements");
        CHECK(alone[t]->values() == beside[t]->values());
        for (const StateDecl& s : program.states)
            CHECK_MESSAGE(state_bytes(whole_chunks, device, 0, t, s.name) == state_bytes(general, device, 0, t, s.name), "state ", s.name);
    }
}

// Two groups with their own hyper-parameters and formats equal two optimizers of one group each.
inline void check_groups_are_independent(Device device) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, ", device ", device_name(device));
    Program program = adamw_program();
    std::string error;
    auto make_groups = [&](std::vector<std::unique_ptr<TestParam>>& params) {
        for (size_t t = 0; t < 4; ++t)
            params.push_back(std::make_unique<TestParam>(device, std::vector<int64_t>{int64_t(5000 + 300 * t)}, DType::BF16, DType::BF16, seed, t));
        ParamGroup embeddings, rest;
        embeddings.params = {params[0]->parameter("embed")};
        embeddings.hypers = {{"lr", 3e-3}, {"weight_decay", 0.0}};
        rest.params = {params[1]->parameter("a"), params[2]->parameter("b"), params[3]->parameter("c")};
        rest.states = {{"m", *parse_state_storage("q8s", &error)}, {"v", *parse_state_storage("q8u", &error)}};
        return std::vector<ParamGroup>{embeddings, rest};
    };
    std::vector<std::unique_ptr<TestParam>> both_params, first_params, second_params;
    std::vector<ParamGroup> both = make_groups(both_params), first = make_groups(first_params), second = make_groups(second_params);
    OptimizerOptions options;
    options.hypers = {{"lr", 1e-2}};
    Optimizer together(program, both, options);
    Optimizer only_first(program, {first[0]}, options), only_second(program, {second[1]}, options);
    CHECK(together.num_groups() == 2);
    CHECK(together.num_launches() == 2);
    CHECK(together.hyper(0, "lr") == 3e-3);
    CHECK(together.hyper(1, "lr") == 1e-2);
    CHECK(together.hyper(1, "beta1") == 0.9);
    CHECK(together.state(0, 0, "m").storage.format == StateFormat::F32);
    CHECK(together.state(1, 2, "v").storage.format == StateFormat::Q8U);
    for (int64_t step = 1; step <= 3; ++step) {
        for (auto* params : {&both_params, &first_params, &second_params})
            for (auto& p : *params) p->set_gradient(step);
        together.step();
        only_first.step();
        only_second.step();
    }
    CHECK(together.step_count() == 3);
    CHECK(both_params[0]->values() == first_params[0]->values());
    CHECK(state_bytes(together, device, 0, 0, "m") == state_bytes(only_first, device, 0, 0, "m"));
    for (size_t t = 1; t < 4; ++t) {
        CHECK(both_params[t]->values() == second_params[t]->values());
        CHECK(state_bytes(together, device, 1, t - 1, "v") == state_bytes(only_second, device, 0, t - 1, "v"));
    }
    // The groups' values really differ: the first group with the second's lr would not match.
    CHECK(both_params[0]->values() != second_params[0]->values());
}

// A tensor given as shards with global offsets steps exactly as the whole tensor (with
// stochastic rounding too, whose random stream is keyed by the global element index).
inline void check_shards_step_as_the_whole_tensor(Device device) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, ", device ", device_name(device));
    Program program = adamw_program();
    const int64_t n = 5000, cut = 1024;  // the second shard is under 4096 elements: the whole tensor decides
    OptimizerOptions options;
    options.seed = seed;
    for (const auto& formats : test_formats())
    for (bool rounding : {false, true}) {
        if (formats.count("v") && formats.at("v").rank1) continue;  // rank-1 statistics need the whole tensor
        INFO("states ", formats_text(formats), rounding ? ", stochastic rounding" : "");
        TestParam whole(device, {n}, DType::BF16, DType::BF16, seed, 7);
        TestParam first(device, {cut}, DType::BF16, DType::BF16, seed, 0), second(device, {n - cut}, DType::BF16, DType::BF16, seed, 0);
        // The shards hold the whole tensor's values.
        std::memcpy(first.data->host.data(), whole.data->host.data(), size_t(cut) * 2);
        std::memcpy(second.data->host.data(), whole.data->host.data() + cut * 2, size_t(n - cut) * 2);
        first.data->upload();
        second.data->upload();
        first.stream = second.stream = whole.stream;
        ParamGroup whole_group, shard_group;
        whole_group.states = shard_group.states = formats;
        whole_group.params = {whole.parameter("w")};
        Parameter a = first.parameter("w[0:1024]"), b = second.parameter("w[1024:]");
        a.tensor_numel = b.tensor_numel = n;
        b.offset = cut;
        shard_group.params = {a, b};
        whole_group.stochastic_rounding = shard_group.stochastic_rounding = rounding;
        Optimizer one(program, {whole_group}, options), sharded(program, {shard_group}, options);
        for (int64_t step = 1; step <= 3; ++step) {
            whole.set_gradient(step);
            first.set_gradient(step, 0);
            second.set_gradient(step, cut);
            one.step();
            sharded.step();
        }
        std::vector<uint8_t> joined = first.values(), rest = second.values();
        joined.insert(joined.end(), rest.begin(), rest.end());
        CHECK(joined == whole.values());
        for (const StateDecl& s : program.states) {
            StateBuffer w = one.state(0, 0, s.name), sa = sharded.state(0, 0, s.name), sb = sharded.state(0, 1, s.name);
            CHECK(sa.storage == w.storage);
            std::vector<uint8_t> values = read_bytes(device, sa.values, sa.value_bytes), more = read_bytes(device, sb.values, sb.value_bytes);
            values.insert(values.end(), more.begin(), more.end());
            CHECK_MESSAGE(values == read_bytes(device, w.values, w.value_bytes), "state ", s.name);
            std::vector<uint8_t> scales = read_bytes(device, sa.scales, sa.scale_bytes), more_scales = read_bytes(device, sb.scales, sb.scale_bytes);
            scales.insert(scales.end(), more_scales.begin(), more_scales.end());
            CHECK_MESSAGE(scales == read_bytes(device, w.scales, w.scale_bytes), "scales of ", s.name);
        }
    }
}

// Steps against the float64 interpreter with a new learning rate every step: values within
// fp32 rounding, and no compile after the first step. With block-quantized `formats`, the
// group's tensors below kMinQuantizedElements keep fp32 states in a kernel of their own beside
// the quantized tensors' (under fast math another program, with other launch scalars): those
// small tensors are checked against the interpreter, and the quantized ones against an
// optimizer of their own, bit for bit (a tensor's results must not depend on its group mates).
inline void check_matches_interpreter_with_a_schedule(Device device, const std::map<std::string, StateStorage>& formats = {}) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, ", device ", device_name(device), ", states ", formats_text(formats));
    Program program = adamw_program();
    std::vector<std::unique_ptr<TestParam>> params, alone_params;
    ParamGroup group, alone_group;
    group.states = alone_group.states = formats;
    std::vector<size_t> quantized;  // indices into params of alone_params' tensors
    std::vector<HostTensor> reference;
    for (size_t t = 0; t < test_shapes().size(); ++t) {
        params.push_back(std::make_unique<TestParam>(device, test_shapes()[t], DType::F32, DType::F32, seed, t));
        group.params.push_back(params.back()->parameter("t" + std::to_string(t)));
        HostTensor h;
        for (int64_t i = 0; i < params.back()->n; ++i) h.p.push_back(load_element(DType::F32, params.back()->data->host.data(), size_t(i)));
        h.g.resize(h.p.size());
        reference.push_back(h);
        if (formats.empty() || params.back()->n < kMinQuantizedElements) continue;
        quantized.push_back(t);
        alone_params.push_back(std::make_unique<TestParam>(device, test_shapes()[t], DType::F32, DType::F32, seed, t));  // the same values
        alone_group.params.push_back(alone_params.back()->parameter("t" + std::to_string(t)));
    }
    Optimizer optimizer(program, {group});
    std::unique_ptr<Optimizer> alone = quantized.empty() ? nullptr : std::make_unique<Optimizer>(program, std::vector<ParamGroup>{alone_group});
    Interpreter interpreter(program, hyper_values(program, {}), StorageSignature{});
    for (HostTensor& h : reference) interpreter.init_states(h);
    int compiles = 0;
    for (int64_t step = 1; step <= 10; ++step) {
        const double lr = 1e-3 * (1.0 + 0.37 * double(step));
        optimizer.set_hyper("lr", lr);
        interpreter.set_hyper("lr", lr);
        for (size_t t = 0; t < params.size(); ++t) {
            params[t]->set_gradient(step);
            for (int64_t i = 0; i < params[t]->n; ++i) reference[t].g[size_t(i)] = load_element(DType::F32, params[t]->grad->host.data(), size_t(i));
        }
        optimizer.step();
        if (alone) {
            alone->set_hyper("lr", lr);
            for (auto& p : alone_params) p->set_gradient(step);
            alone->step();
        }
        interpreter.step(step, reference);
        if (step == 1) compiles = KernelCache::global().stats().compiles;
    }
    CHECK(KernelCache::global().stats().compiles == compiles);
    CHECK(optimizer.hyper(0, "lr") == doctest::Approx(1e-3 * 4.7));
    size_t checked = 0;
    for (size_t t = 0; t < params.size(); ++t) {
        if (!formats.empty() && params[t]->n >= kMinQuantizedElements) continue;  // quantized states
        ++checked;
        std::vector<uint8_t> p = params[t]->values();
        std::vector<uint8_t> m = read_bytes(device, optimizer.state(0, t, "m").values, size_t(params[t]->n) * 4);
        std::vector<double> kernel_p, kernel_m;
        for (int64_t i = 0; i < params[t]->n; ++i) {
            kernel_p.push_back(load_element(DType::F32, p.data(), size_t(i)));
            kernel_m.push_back(load_element(DType::F32, m.data(), size_t(i)));
        }
        INFO("tensor ", t, " of ", params[t]->n, " elements");
        CHECK(max_relative_difference(kernel_p, reference[t].p) < tolerance_for(DType::F32));
        CHECK(max_relative_difference(kernel_m, reference[t].states[0]) < tolerance_for(DType::F32));
    }
    CHECK(checked > 0);
    if (!formats.empty()) CHECK(!quantized.empty());
    for (size_t k = 0; k < quantized.size(); ++k) {
        INFO("quantized tensor ", quantized[k], " of ", params[quantized[k]]->n, " elements, in the group and alone");
        CHECK(params[quantized[k]]->values() == alone_params[k]->values());
    }
}

// Parameters of every kind a checkpoint carries (a small tensor with fp32 states, 2-D tensors
// for rank-1 states, a shard), in two groups; one optimizer per call on `device`.
struct CheckpointFixture {
    std::vector<std::unique_ptr<TestParam>> params;
    std::vector<ParamGroup> groups;
    CheckpointFixture(Device device, uint64_t seed, const std::map<std::string, StateStorage>& second_formats) {
        const std::vector<std::vector<int64_t>> shapes = {{100}, {5000}, {40, 130}, {7000}};
        for (size_t t = 0; t < shapes.size(); ++t)
            params.push_back(std::make_unique<TestParam>(device, shapes[t], DType::BF16, DType::BF16, seed, t));
        ParamGroup first, second;
        first.params = {params[0]->parameter("bias"), params[1]->parameter("embed")};
        first.hypers = {{"lr", 2e-3}};
        second.params = {params[2]->parameter("wq"), params[3]->parameter("wo[2048:]")};
        second.params[1].offset = 2048;
        second.params[1].tensor_numel = 9048;
        second.states = second_formats;
        groups = {first, second};
    }
    void set_gradients(int64_t step) {
        for (auto& p : params) p->set_gradient(step);
    }
    // Every state's bytes, in order.
    static std::vector<std::vector<uint8_t>> states(const Optimizer& o, Device device) {
        std::vector<std::vector<uint8_t>> out;
        for (size_t g = 0; g < o.num_groups(); ++g)
            for (size_t i = 0; i < o.num_params(g); ++i)
                for (const StateDecl& d : o.program().states) out.push_back(state_bytes(o, device, g, i, d.name));
        return out;
    }
};

// bf16 values that differ by at most one unit in the last place: reductions add with atomics,
// so two runs' norms (and the clipped gradients) may round apart.
inline void check_bf16_close(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    REQUIRE(a.size() == b.size());
    size_t apart = 0;
    for (size_t i = 0; i + 1 < a.size(); i += 2) {
        const int x = int(a[i]) | int(a[i + 1]) << 8, y = int(b[i]) | int(b[i + 1]) << 8;
        if (x != y) ++apart;
        CHECK_MESSAGE(std::abs(x - y) <= 1, "element ", i / 2, ": bf16 bits ", x, " and ", y);
    }
    CHECK(apart * 100 <= a.size() / 2);  // a few, not most
}

inline std::map<std::string, StateStorage> q8_with_rank1() {
    std::string error;
    return {{"m", *parse_state_storage("q8s", &error)}, {"v", *parse_state_storage("q4u:128:rank1", &error)}};
}

// Steps on `save_on`, saves, loads into a fresh optimizer on `load_on`: every state's bytes, the
// step and the hyper-parameters come back, and the next step of both is the same.
inline void check_checkpoint_round_trip(Device save_on, Device load_on) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed, ", saved on ", device_name(save_on), ", loaded on ", device_name(load_on));
    Program program = adamw_program();
    CheckpointFixture a(save_on, seed, q8_with_rank1()), b(load_on, seed, q8_with_rank1());
    Optimizer saved(program, a.groups), loaded(program, b.groups);
    for (int64_t step = 1; step <= 3; ++step) {
        a.set_gradients(step);
        saved.step();
    }
    saved.set_hyper(1, "weight_decay", 0.25);
    std::vector<uint8_t> checkpoint = saved.state_dict();
    loaded.load_state_dict(checkpoint);
    CHECK(loaded.step_count() == 3);
    CHECK(loaded.hyper(0, "lr") == 2e-3);
    CHECK(loaded.hyper(1, "weight_decay") == 0.25);
    CHECK(CheckpointFixture::states(loaded, load_on) == CheckpointFixture::states(saved, save_on));
    CHECK(loaded.state_dict() == checkpoint);
    if (save_on != load_on) return;  // host and GPU kernels need not round alike
    for (size_t t = 0; t < a.params.size(); ++t) {
        std::vector<uint8_t> values = a.params[t]->values();
        std::memcpy(b.params[t]->data->host.data(), values.data(), values.size());
        b.params[t]->data->upload();
    }
    a.set_gradients(4);
    b.set_gradients(4);
    saved.step();
    loaded.step();
    for (size_t t = 0; t < a.params.size(); ++t) CHECK(a.params[t]->values() == b.params[t]->values());
    CHECK(CheckpointFixture::states(loaded, load_on) == CheckpointFixture::states(saved, save_on));
}

// The message of what `build` throws (std::invalid_argument, or ProgramError for a program),
// or "(accepted)".
inline std::string refusal(const std::function<void()>& build) {
    try {
        build();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(accepted)";
}

inline StateStorage storage(const char* text) {
    std::string error;
    return *parse_state_storage(text, &error);
}

// Every rejected checkpoint is refused with one sentence before any state is written.
inline void check_checkpoint_refusals(Device device) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed);
    Program program = adamw_program();
    CheckpointFixture a(device, seed, q8_with_rank1()), b(device, seed + 1, q8_with_rank1());
    Optimizer saved(program, a.groups), target(program, b.groups);
    a.set_gradients(1);
    saved.step();
    b.set_gradients(1);
    target.step();
    const std::vector<uint8_t> good = saved.state_dict();
    const auto before = CheckpointFixture::states(target, device);
    auto load = [&](std::vector<uint8_t> bytes) {
        std::string message = refusal([&] { target.load_state_dict(bytes); });
        CHECK(CheckpointFixture::states(target, device) == before);
        CHECK(target.step_count() == 1);
        return message;
    };
    auto with_checksum = [](std::vector<uint8_t> bytes) {  // a consistent file with a changed field
        const uint64_t h = fnv1a({bytes.data(), bytes.size() - 8});
        std::memcpy(bytes.data() + bytes.size() - 8, &h, 8);
        return bytes;
    };

    CHECK(load({}) == "not an optjit checkpoint: it does not begin with OPTJITCK");
    std::vector<uint8_t> bad = good;
    bad[0] = 'X';
    CHECK(load(bad) == "not an optjit checkpoint: it does not begin with OPTJITCK");
    bad = good;
    bad[8] = 2;
    CHECK(load(bad) == "the checkpoint has format version 2; this optjit reads version 1");
    for (size_t cut : {size_t(23), size_t(24), good.size() / 2, good.size() - 1}) {
        bad.assign(good.begin(), good.begin() + long(cut));
        std::string message = load(bad);
        CHECK_MESSAGE((message.find("truncated") != std::string::npos || message.find("not an optjit") == 0), message);
    }
    bad = good;
    bad[good.size() / 2] ^= 0x10;
    CHECK(load(bad) == "the checkpoint is corrupt: its checksum does not match its bytes");

    // Another program: lion's states and hyper-parameters are not adamw's.
    CheckpointFixture l(device, seed, {});
    Optimizer lion(load_example("lion"), l.groups);
    CHECK(load(lion.state_dict()) == "the checkpoint is of another program ('optimizer lion'); this optimizer runs 'optimizer adamw'");

    // Other groups, parameters, sizes, formats.
    CheckpointFixture one_group(device, seed, q8_with_rank1());
    one_group.groups.pop_back();
    CHECK(load(Optimizer(program, one_group.groups).state_dict()) == "the checkpoint has 1 parameter groups; this optimizer has 2");
    CheckpointFixture fewer(device, seed, q8_with_rank1());
    fewer.groups[1].params.pop_back();
    CHECK(load(Optimizer(program, fewer.groups).state_dict()) == "group 1: the checkpoint has 1 parameters; this optimizer has 2");
    CheckpointFixture renamed(device, seed, q8_with_rank1());
    renamed.groups[0].params[1].name = "tok_embeddings";
    CHECK(load(Optimizer(program, renamed.groups).state_dict()) ==
          "group 0, parameter 1 ('embed'): the checkpoint names this parameter 'tok_embeddings'");
    CheckpointFixture reshaped(device, seed, q8_with_rank1());
    reshaped.groups[1].params[0].shape = {130, 40};
    CHECK(load(Optimizer(program, reshaped.groups).state_dict()) ==
          "group 1, parameter 0 ('wq'): the checkpoint holds 5200 elements at offset 0 in rows of 40; this parameter has 5200 at offset 0 in rows of 130");
    CheckpointFixture q4(device, seed, {{"m", storage("q4s")}, {"v", storage("q4u:128:rank1")}});
    CHECK(load(Optimizer(program, q4.groups).state_dict()) ==
          "group 1, parameter 0 ('wq'), state 'm': the checkpoint stores it as q4s:128, this optimizer as q8s:256 (load with convert_formats to "
          "dequantize and requantize it)");

    // A field changed under a valid checksum: the step count's bytes are fine, a size is not.
    bad = good;
    const std::string needle = "q8s:256";
    auto at = std::search(bad.begin(), bad.end(), needle.begin(), needle.end());
    REQUIRE(at != bad.end());
    *(at + needle.size() + 1) ^= 0x01;  // the low byte of its value_bytes
    CHECK(load(with_checksum(bad)).find("group 1, parameter 0 ('wq'), state 'm': the checkpoint holds ") == 0);

    // And the good one loads.
    target.load_state_dict(good);
    CHECK(CheckpointFixture::states(target, device) == CheckpointFixture::states(saved, device));
}

// A change of format or block size converts through dequantize and requantize, when asked:
// each converted state equals the reference quantizer applied to the saved one read back.
inline void check_checkpoint_conversions(Device device) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed);
    Program program = adamw_program();
    struct Change {
        const char *from_m, *from_v, *to_m, *to_v;
    };
    for (Change c : {Change{"q8s", "q8u", "q4s", "q4u"}, Change{"q8s", "q8u", "q8s:64", "q8u:1024"}, Change{"fp32", "fp32", "q8s", "fp8"},
                     Change{"q4s", "q4u:128:rank1", "bf16", "fp32"}}) {
        INFO(c.from_m, " ", c.from_v, " -> ", c.to_m, " ", c.to_v);
        CheckpointFixture a(device, seed, {{"m", storage(c.from_m)}, {"v", storage(c.from_v)}});
        CheckpointFixture b(device, seed, {{"m", storage(c.to_m)}, {"v", storage(c.to_v)}});
        Optimizer saved(program, a.groups), loaded(program, b.groups);
        for (int64_t step = 1; step <= 2; ++step) {
            a.set_gradients(step);
            saved.step();
        }
        std::vector<uint8_t> checkpoint = saved.state_dict();
        CHECK(refusal([&] { loaded.load_state_dict(checkpoint); }).find("load with convert_formats") != std::string::npos);
        loaded.load_state_dict(checkpoint, {.convert_formats = true});
        // The reference: each state of the second group read back as fp32 and stored anew.
        for (size_t i = 0; i < 2; ++i) {
            const Parameter& p = loaded.param(1, i);
            const int64_t n = a.params[2 + i]->n, columns = last_dimension(p);
            for (const char* name : {"m", "v"}) {
                StateBuffer from = saved.state(1, i, name), to = loaded.state(1, i, name);
                const std::vector<uint8_t> saved_bytes = state_bytes(saved, device, 1, i, name);  // values, then scales
                std::vector<float> values(static_cast<size_t>(n));
                if (is_block_quantized(from.storage.format)) {
                    QuantizedTensor q;
                    q.codes.assign(saved_bytes.begin(), saved_bytes.begin() + long(from.value_bytes));
                    const bool rank1 = from.storage.rank1 && columns > 0;
                    q.scales.resize(size_t(rank1 ? rank1_statistic_count(n, columns) : scale_count(from.storage, p.offset, n)));
                    std::memcpy(q.scales.data(), saved_bytes.data() + from.value_bytes, q.scales.size() * 4);
                    values = dequantize(from.storage, q, n, p.offset, rank1 ? columns : 0);
                } else {
                    for (int64_t k = 0; k < n; ++k) values[size_t(k)] = float(load_element(state_dtype(from.storage.format), saved_bytes.data(), size_t(k)));
                }
                std::vector<uint8_t> got = state_bytes(loaded, device, 1, i, name);
                if (is_block_quantized(to.storage.format)) {
                    QuantizedTensor expect = quantize(to.storage, values, p.offset, to.storage.rank1 ? columns : 0);
                    CHECK(std::equal(expect.codes.begin(), expect.codes.end(), got.begin()));
                    CHECK(std::memcmp(expect.scales.data(), got.data() + to.value_bytes, expect.scales.size() * 4) == 0);
                } else {
                    for (int64_t k = 0; k < n; ++k)
                        CHECK(load_element(state_dtype(to.storage.format), got.data(), size_t(k)) == round_to(state_dtype(to.storage.format), values[size_t(k)]));
                }
            }
        }
        // The first group's states were not converted: bytes as saved.
        CHECK(state_bytes(loaded, device, 0, 1, "m") == state_bytes(saved, device, 0, 1, "m"));
        CHECK(loaded.step_count() == 2);
    }
}


// Parameters and gradients that start 2 bytes past a 16-byte boundary (views into a flat
// buffer) take the reduction passes' element-by-element path on the GPU (no vector loads):
// LAMB, clipped (two reduction passes) and with 8-bit states, over them steps as over aligned
// copies of the same values, within what the order of a reduction's additions changes (one bf16
// unit), with the same gradient norm to 1e-5.
inline void check_unaligned_tensors_reduce_as_aligned(Device device) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed);
    const std::vector<int64_t> sizes = {5000, 70001, 4099};
    std::vector<std::unique_ptr<TestParam>> aligned, shifted;
    ParamGroup aligned_group, shifted_group;
    aligned_group.states = shifted_group.states = {{"m", storage("q8s")}, {"v", storage("q8u")}};
    // The shifted copy of tensor t's data and gradient: the aligned one's bytes, 2 bytes in.
    auto copy_shifted = [&](size_t t, bool gradient) {
        DeviceBytes& from = gradient ? *aligned[t]->grad : *aligned[t]->data;
        DeviceBytes& to = gradient ? *shifted[t]->grad : *shifted[t]->data;
        std::memcpy(to.host.data() + 2, from.host.data(), size_t(sizes[t]) * 2);
        to.upload();
    };
    for (size_t t = 0; t < sizes.size(); ++t) {
        aligned.push_back(std::make_unique<TestParam>(device, std::vector<int64_t>{sizes[t]}, DType::BF16, DType::BF16, seed, t));
        shifted.push_back(std::make_unique<TestParam>(device, std::vector<int64_t>{sizes[t] + 1}, DType::BF16, DType::BF16, seed, t));
        copy_shifted(t, false);
        aligned_group.params.push_back(aligned[t]->parameter("w" + std::to_string(t)));
        Parameter p = shifted[t]->parameter("w" + std::to_string(t));
        p.data += 2;
        p.grad += 2;
        p.shape = {sizes[t]};
        shifted_group.params.push_back(p);
    }
    OptimizerOptions options;
    options.max_grad_norm = 1;
    Optimizer a(load_example("lamb"), {aligned_group}, options), b(load_example("lamb"), {shifted_group}, options);
    for (int64_t step = 1; step <= 3; ++step) {
        INFO("step ", step);
        for (size_t t = 0; t < sizes.size(); ++t) {
            aligned[t]->set_gradient(step);
            copy_shifted(t, true);
        }
        a.step();
        b.step();
        CHECK(std::abs(a.grad_norm() - b.grad_norm()) <= 1e-5 * a.grad_norm());
        for (size_t t = 0; t < sizes.size(); ++t) {
            std::vector<uint8_t> got = read_bytes(device, shifted[t]->data->address() + 2, size_t(sizes[t]) * 2);
            check_bf16_close(aligned[t]->values(), got);
        }
    }
}

// SGD without momentum keeps no buffer, as torch.optim.SGD (passes/unused_states.h), with
// momentum compiled in at 0; with keep_unused_states it keeps both. The parameters step alike,
// bit for bit (both kernels dense, IEEE: an 8-bit format asked for the dropped buffer is of no
// use); a checkpoint of one loads into its like and not into the other.
inline void check_unused_states_are_not_kept(Device device) {
    const uint64_t seed = test_seed();
    INFO("seed ", seed);
    const Program sgd = optjit::library("sgd");
    TestParam a(device, {5000}, DType::BF16, DType::BF16, seed, 0), b(device, {5000}, DType::BF16, DType::BF16, seed, 0);
    ParamGroup lean_group, full_group;
    lean_group.params = {a.parameter("w")};
    full_group.params = {b.parameter("w")};
    lean_group.states = {{"buf", storage("q8s")}};
    OptimizerOptions lean;
    lean.hypers = {{"lr", 0.1}, {"weight_decay", 0.01}};
    OptimizerOptions full = lean;
    full.keep_unused_states = true;
    Optimizer o(sgd, {lean_group}, lean), k(sgd, {full_group}, full);
    CHECK(o.dropped_states() == std::vector<std::string>{"buf"});
    CHECK(o.fixed_hypers() == std::map<std::string, double>{{"momentum", 0}});
    CHECK(o.program().states.empty());
    CHECK(k.dropped_states().empty());
    CHECK(k.program().states.size() == 1);
    CHECK(k.state(0, 0, "buf").value_bytes == 5000 * 4);
    CHECK(refusal([&] { o.state(0, 0, "buf"); }) ==
          "optimizer 'sgd' keeps no state 'buf': with momentum = 0 its step does not use it (OptimizerOptions::keep_unused_states keeps it)");
    CHECK(refusal([&] { o.set_hyper("momentum", 0.9); }) ==
          "optimizer 'sgd': momentum is compiled in at 0, its value when the optimizer was built (with momentum = 0 it keeps no state buf); "
          "build it with momentum = 0.9, or with OptimizerOptions::keep_unused_states");
    CHECK(refusal([&] { o.hyper_address(0, "momentum"); }) ==
          "optimizer 'sgd': momentum is compiled in (momentum = 0), not a run-time value; build the optimizer with "
          "OptimizerOptions::keep_unused_states to schedule it");
    // A format for a state the program does not declare is refused, dropped states or not.
    ParamGroup misspelled = lean_group;
    misspelled.states = {{"bufx", storage("q8s")}};
    CHECK(refusal([&] { Optimizer(sgd, {misspelled}, lean); }) == "group 0: optimizer 'sgd' has no state 'bufx' (its states: buf)");
    CHECK(refusal([&] { o.set_hyper("momentun", 0.9); }).find("has no hyper-parameter 'momentun'") != std::string::npos);
    o.set_hyper("momentum", 0);  // its own value
    CHECK(o.hyper(0, "momentum") == 0);
    CHECK(refusal([&] { Optimizer(sgd, {lean_group}, [&] { auto x = lean; x.hypers["momentum"] = 0.5; return x; }()).set_hyper("momentum", 0.9); }) ==
          "(accepted)");  // momentum 0.5 keeps the buffer, and momentum a run-time value
    for (int64_t step = 1; step <= 3; ++step) {
        a.set_gradient(step);
        b.set_gradient(step);
        o.step();
        k.step();
        CHECK(a.values() == b.values());
    }
    if (device == Device::Cuda) {
        // Capturable: the device block holds the run-time hyper-parameters only, so momentum's
        // going moves weight_decay's word; a captured step that a schedule feeds through
        // hyper_address equals eager steps.
        TestParam c(device, {5000}, DType::BF16, DType::BF16, seed, 7), e(device, {5000}, DType::BF16, DType::BF16, seed, 7);
        ParamGroup captured_group, eager_group;
        captured_group.params = {c.parameter("w")};
        eager_group.params = {e.parameter("w")};
        OptimizerOptions capturable = lean;
        capturable.capturable = true;
        Optimizer captured(sgd, {captured_group}, capturable), eager(sgd, {eager_group}, lean);
        CHECK(captured.dropped_states() == std::vector<std::string>{"buf"});
        cuda::Stream stream = cuda::stream_create();
        cuda::GraphExec graph = cuda::capture_graph(stream, [&] { captured.step(stream); });
        for (int64_t step = 1; step <= 3; ++step) {
            const double weight_decay = 0.01 * double(step);
            cuda::memcpy_htod(captured.hyper_address(0, "weight_decay"), &weight_decay, 8);
            eager.set_hyper("weight_decay", weight_decay);
            c.set_gradient(step);
            e.set_gradient(step);
            cuda::graph_launch(graph, stream);
            cuda::stream_synchronize(stream);
            eager.step();
            CHECK(c.values() == e.values());
        }
        CHECK(captured.hyper(0, "weight_decay") == 0.03);
        CHECK(captured.hyper(0, "momentum") == 0);
        cuda::graph_destroy(graph);
        cuda::stream_destroy(stream);
    }
    Optimizer like(sgd, {lean_group}, lean);
    like.load_state_dict(o.state_dict());
    CHECK(like.step_count() == 3);
    CHECK(refusal([&] { k.load_state_dict(o.state_dict()); }) ==
          "the checkpoint's 'sgd' keeps no state, this optimizer's keeps the state buf; the saved one compiled in momentum: build this "
          "optimizer as the saved one was built");
    CHECK(refusal([&] { like.load_state_dict(k.state_dict()); }) ==
          "the checkpoint's 'sgd' keeps the state buf, this optimizer's keeps no state; this optimizer compiles in momentum "
          "(keep_unused_states keeps it run-time): build this optimizer as the saved one was built");
}

}  // namespace optjit_test
