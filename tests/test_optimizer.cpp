// optjit::Optimizer on the host target: the checks of optimizer_checks.h (the GPU runs the same
// ones in test_gpu.cpp), the states it allocates, and every configuration it refuses.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "optimizer_checks.h"
#include "runtime/launch.h"

using namespace optjit;
using namespace optjit_test;


TEST_CASE("optimizer: one launch over many tensors equals a launch per tensor, bit for bit") {
    check_multi_tensor_equals_per_tensor(Device::Host);
}

TEST_CASE("optimizer: unaligned tensors reduce as aligned ones (LAMB, clipped, 8-bit states)") {
    check_unaligned_tensors_reduce_as_aligned(Device::Host);
}

TEST_CASE("optimizer: tensors of whole chunks step as beside a short tensor (the GPU's kernel choice; one kernel on the host)") {
    check_whole_chunks_step_as_beside_a_short_tensor(Device::Host);
}

// The Optimizer's choice of whole-chunk kernels (no GPU needed: it reads the request and the
// tensors' sizes and addresses). A wrong yes would send a short chunk through a kernel without
// its path: reads and writes past the tensor.
TEST_CASE("optimizer: whole-chunk kernels only where every tensor is whole chunks of the kernel's size, aligned") {
    KernelRequest request{load_example("adamw"), {}, {}, Target{Target::Kind::NVPTX, 90}, {}};
    request.storage.states = test_formats()[2];  // q8s, q8u: blocks of 256, chunks of 1024
    auto tensor = [](int64_t n, uint64_t p = 1 << 20) {
        TensorArgs t;
        t.p = p;
        t.g = 2 << 20;
        t.states = {3 << 20, 4 << 20};
        t.n = n;
        return t;
    };
    std::vector<TensorArgs> tensors = {tensor(1024), tensor(3072), tensor(1 << 20)};
    CHECK(whole_chunks_hold(request, tensors));
    tensors.push_back(tensor(3000));
    CHECK_FALSE(whole_chunks_hold(request, tensors));
    CHECK_FALSE(whole_chunks_hold(request, std::vector<TensorArgs>{tensor(4096, (1 << 20) + 8)}));  // p not 16-byte aligned
    KernelRequest host = request;
    host.target = Target{};
    CHECK_FALSE(whole_chunks_hold(host, std::vector<TensorArgs>{tensor(4096)}));
    KernelRequest dense = request;
    dense.storage.states.clear();
    CHECK_FALSE(whole_chunks_hold(dense, std::vector<TensorArgs>{tensor(4096)}));
    // Larger blocks make larger chunks; so do the environment's 256-thread blocks (2048 elements).
    KernelRequest big = request;
    std::string error;
    big.storage.states["m"] = *parse_state_storage("q8s:4096", &error);
    CHECK_FALSE(whole_chunks_hold(big, std::vector<TensorArgs>{tensor(3072)}));
    CHECK(whole_chunks_hold(big, std::vector<TensorArgs>{tensor(8192)}));
    ::setenv("OPTJIT_GPU_TUNE", "threads_per_block=256", 1);
    const bool tuned_3072 = whole_chunks_hold(request, std::vector<TensorArgs>{tensor(3072)});
    const bool tuned_4096 = whole_chunks_hold(request, std::vector<TensorArgs>{tensor(4096)});
    ::unsetenv("OPTJIT_GPU_TUNE");
    CHECK_FALSE(tuned_3072);
    CHECK(tuned_4096);
}

// The Optimizer compiles dense GPU kernels as relocatable code only beside a quantized GPU
// kernel (where it saves the first step a whole compile); elsewhere they keep whole-program code.
TEST_CASE("optimizer: dense GPU kernels compile relocatable only beside quantized ones") {
    const Target gpu{Target::Kind::NVPTX, 90};
    KernelRequest quantized{load_example("adamw"), {}, {}, gpu, {}};
    quantized.storage.states = test_formats()[2];  // q8s, q8u
    KernelRequest dense{load_example("adamw"), {}, {}, gpu, {}};
    KernelRequest host{load_example("adamw"), {}, {}, Target{}, {}};
    KernelRequest host_quantized = quantized;
    host_quantized.target = Target{};
    auto relocated = [](std::vector<KernelRequest> requests) {
        relocate_dense_beside_quantized(requests);
        std::vector<bool> out;
        for (const KernelRequest& r : requests) out.push_back(r.options.gpu_relocatable);
        return out;
    };
    CHECK(relocated({quantized, dense, host}) == std::vector<bool>{false, true, false});
    CHECK(relocated({dense, dense}) == std::vector<bool>{false, false});
    CHECK(relocated({dense, host_quantized}) == std::vector<bool>{false, false});
    CHECK(relocated({dense}) == std::vector<bool>{false});
    // The choice changes the machine code: it is part of the cache key.
    KernelRequest relocatable = dense;
    relocatable.options.gpu_relocatable = true;
    CHECK(cache_key(lower(relocatable)) != cache_key(lower(dense)));
}

TEST_CASE("optimizer: groups keep their own hyper-parameters and state formats") { check_groups_are_independent(Device::Host); }

TEST_CASE("optimizer: states the options leave unused are not kept, unless asked") { check_unused_states_are_not_kept(Device::Host); }

TEST_CASE("optimizer: shards with global offsets step exactly as the whole tensor") { check_shards_step_as_the_whole_tensor(Device::Host); }

TEST_CASE("optimizer: a new learning rate every step matches the interpreter and compiles nothing") {
    check_matches_interpreter_with_a_schedule(Device::Host);
}

TEST_CASE("optimizer: small tensors beside 8-bit ones match the interpreter with their own kernel's scalars") {
    check_matches_interpreter_with_a_schedule(Device::Host, test_formats()[2]);
}

TEST_CASE("optimizer: states take the memory their format implies and start at the program's values") {
    Program program = parse_and_verify("optimizer ones\n  hyper lr = 0.1\n  state m = 0\n  state v = 1\n  update\n    m = m + g\n    v = v * 2\n    p = p - lr * m / v\n",
                                       "<test>");
    TestParam big(Device::Host, {1000, 17}, DType::BF16, DType::BF16, 1, 0), small(Device::Host, {4095}, DType::BF16, DType::BF16, 1, 1);
    ParamGroup group;
    group.params = {big.parameter("big"), small.parameter("small")};
    group.states = {{"m", storage("q4s")}, {"v", storage("q8u:512")}};
    Optimizer o(program, {group});
    CHECK(o.num_launches() == 2);  // the small tensor keeps fp32 states, in a launch of its own
    StateBuffer m = o.state(0, 0, "m"), v = o.state(0, 0, "v");
    CHECK(m.value_bytes == 8500);
    CHECK(m.scale_bytes == 4 * 133);  // 17000 / 128, rounded up
    CHECK(v.value_bytes == 17000);
    CHECK(v.scale_bytes == 4 * 34);
    CHECK(o.state(0, 1, "m").storage.format == StateFormat::F32);
    CHECK(o.state(0, 1, "m").value_bytes == 4095 * 4);
    CHECK(o.state(0, 1, "m").scale_bytes == 0);
    // m starts at 0: scale 0, every code the zero code. v starts at 1: read back as exactly 1.
    const float* m_scales = reinterpret_cast<const float*>(m.scales);
    CHECK(m_scales[0] == 0.0f);
    CHECK(reinterpret_cast<const uint8_t*>(m.values)[4249] == zero_code_byte(StateFormat::Q4S));
    QuantizedTensor q;
    q.codes.assign(reinterpret_cast<const uint8_t*>(v.values), reinterpret_cast<const uint8_t*>(v.values) + v.value_bytes);
    q.scales.assign(reinterpret_cast<const float*>(v.scales), reinterpret_cast<const float*>(v.scales) + 34);
    std::vector<float> values = dequantize(v.storage, q, 17000);
    CHECK(values.front() == 1.0f);
    CHECK(values.back() == 1.0f);
    const float* small_v = reinterpret_cast<const float*>(o.state(0, 1, "v").values);
    CHECK(small_v[0] == 1.0f);
    CHECK(small_v[4094] == 1.0f);
    // A step uses those values: with v = 2 after it, p moves by lr * g / 2.
    big.set_gradient(1);
    small.set_gradient(1);
    double p0 = load_element(DType::BF16, small.data->host.data(), 9), g0 = load_element(DType::BF16, small.grad->host.data(), 9);
    o.step();
    CHECK(load_element(DType::BF16, small.data->host.data(), 9) == doctest::Approx(round_to(DType::BF16, p0 - 0.1 * g0 / 2)).epsilon(1e-2));
    CHECK(o.step_count() == 1);
}

TEST_CASE("optimizer: what it refuses, with a sentence naming the parameter") {
    Program program = adamw_program();
    TestParam a(Device::Host, {8192}, DType::F32, DType::F32, 3, 0);
    auto build = [&](ParamGroup group, OptimizerOptions options = {}) { return [=] { Optimizer(program, {group}, options); }; };
    ParamGroup good;
    good.params = {a.parameter("layers.0.wq")};

    ParamGroup bad_hyper = good;
    bad_hyper.hypers = {{"learning_rate", 1e-3}};
    CHECK(refusal(build(bad_hyper)) == "group 0: optimizer 'adamw' has no hyper-parameter 'learning_rate' (its hyper-parameters: lr, beta1, beta2, eps, weight_decay)");
    OptimizerOptions bad_options;
    bad_options.hypers = {{"momentum", 0.9}};
    CHECK(refusal(build(good, bad_options)) == "optimizer 'adamw' has no hyper-parameter 'momentum' (its hyper-parameters: lr, beta1, beta2, eps, weight_decay)");

    ParamGroup bad_state = good;
    bad_state.states = {{"w", storage("q8s")}};
    CHECK(refusal(build(bad_state)).find("group 0: ") == 0);
    CHECK(refusal(build(bad_state)).find("'w'") != std::string::npos);

    ParamGroup misplaced = good;
    misplaced.states = {{"m", storage("q8s")}};
    misplaced.params[0].offset = 100;
    misplaced.params[0].tensor_numel = 100000;
    CHECK(refusal(build(misplaced)) ==
          "group 0, parameter 'layers.0.wq': a shard must start on a block boundary of state 'm' (offset 100, block 256)");

    ParamGroup outside = good;
    outside.params[0].offset = 4096;
    outside.params[0].tensor_numel = 10000;
    CHECK(refusal(build(outside)) == "group 0, parameter 'layers.0.wq': a shard of 8192 elements at offset 4096 does not fit in a tensor of 10000");

    ParamGroup null_grad = good;
    null_grad.params[0].grad = 0;
    CHECK(refusal(build(null_grad)) == "group 0, parameter 'layers.0.wq': the gradient address is null");

    ParamGroup rounding = good;
    rounding.stochastic_rounding = true;
    CHECK(refusal(build(rounding)) == "group 0, parameter 'layers.0.wq': stochastic rounding applies to bf16 parameters; this one is f32");

    ParamGroup rank1_shard = good;
    rank1_shard.states = {{"v", storage("q4u:128:rank1")}};
    rank1_shard.params[0].shape = {64, 128};
    rank1_shard.params[0].offset = 8192;
    rank1_shard.params[0].tensor_numel = 16384;
    CHECK(refusal(build(rank1_shard)).find("group 0, parameter 'layers.0.wq': state 'v' is q4u:128:rank1, which needs the whole tensor") == 0);

    if (!cuda::available()) {
        ParamGroup on_gpu = good;
        on_gpu.params[0].device = Device::Cuda;
        CHECK(refusal(build(on_gpu)) == "group 0, parameter 'layers.0.wq' is on the GPU, but " + cuda::unavailable_reason());
    }

    Optimizer o(program, {good});
    CHECK(refusal([&] { o.set_hyper("lr_max", 1.0); }) == "optimizer 'adamw' has no hyper-parameter 'lr_max' (its hyper-parameters: lr, beta1, beta2, eps, weight_decay)");
    CHECK(refusal([&] { o.set_hyper(1, "lr", 1.0); }) == "there is no group 1: the optimizer has 1");
    CHECK(refusal([&] { o.state(0, 0, "w"); }) == "optimizer 'adamw' has no state 'w'");
    CHECK(refusal([&] { o.hyper_address(0, "lr"); }) ==
          "group 0 keeps no hyper-parameters on the device: the optimizer is not capturable or the group has no GPU parameter");
    CHECK(refusal([&] { Optimizer::from_text("optimizer x\n  update\n    p = p - q\n", {good}, {}, "x.opt"); }).find("x.opt:3:") == 0);
}

TEST_CASE("optimizer: empty tensors and empty groups step without launching") {
    Program program = adamw_program();
    TestParam empty(Device::Host, {0, 5}, DType::F32, DType::F32, 1, 0);
    ParamGroup group;
    group.params = {empty.parameter("empty")};
    group.params[0].data = group.params[0].grad = 0;  // an empty tensor may have no memory
    Optimizer o(program, {group, ParamGroup{}});
    CHECK(o.num_launches() == 0);
    o.step();
    CHECK(o.step_count() == 1);
    CHECK(o.state(0, 0, "m").value_bytes == 0);
}

TEST_CASE("checkpoint: states, step and hyper-parameters round-trip bit for bit, and the next step agrees") {
    check_checkpoint_round_trip(Device::Host, Device::Host);
}

TEST_CASE("checkpoint: every rejected checkpoint is refused with a sentence before any state is written") {
    check_checkpoint_refusals(Device::Host);
}

TEST_CASE("checkpoint: a change of format or block size converts through dequantize and requantize, when asked") {
    check_checkpoint_conversions(Device::Host);
}

// Construction compiles every group's kernels together, each distinct kernel once: two groups
// with the same formats share one compile, a third with other formats adds one.
TEST_CASE("optimizer: groups that need the same kernel compile it once") {
    const uint64_t seed = test_seed();
    // A program of its own, so that no earlier test has compiled its kernels.
    Program program = Optimizer::from_text("optimizer compile_once_" + std::to_string(seed % 1000000) +
                                               "\n  hyper lr = 0.1\n  state m = 0\n  update\n    m = lerp(m, g, 0.1)\n    p = p - lr * m\n",
                                           {})
                          .program();
    std::vector<std::unique_ptr<TestParam>> params;
    std::vector<ParamGroup> groups(3);
    for (size_t t = 0; t < 3; ++t) {
        params.push_back(std::make_unique<TestParam>(Device::Host, std::vector<int64_t>{5000}, DType::F32, DType::F32, seed, t));
        groups[t].params = {params[t]->parameter("w" + std::to_string(t))};
    }
    groups[2].states = {{"m", StateStorage{StateFormat::BF16}}};
    const int before = KernelCache::global().stats().compiles;
    Optimizer optimizer(program, groups);
    CHECK(KernelCache::global().stats().compiles - before == 2);
    optimizer.step();
}
