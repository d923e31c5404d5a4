// optjit::Optimizer on the host target: the checks of optimizer_checks.h (the GPU runs the same
// ones in test_gpu.cpp), the states it allocates, and every configuration it refuses.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "optimizer_checks.h"

using namespace optjit;
using namespace optjit_test;

namespace {

std::string refusal(const std::function<void()>& build) {
    try {
        build();
    } catch (const std::exception& e) {  // std::invalid_argument, or ProgramError for a program
        return e.what();
    }
    return "(accepted)";
}

StateStorage storage(const char* text) {
    std::string error;
    return *parse_state_storage(text, &error);
}

}  // namespace

TEST_CASE("optimizer: one launch over many tensors equals a launch per tensor, bit for bit") {
    check_multi_tensor_equals_per_tensor(Device::Host);
}

TEST_CASE("optimizer: groups keep their own hyper-parameters and state formats") { check_groups_are_independent(Device::Host); }

TEST_CASE("optimizer: shards with global offsets step exactly as the whole tensor") { check_shards_step_as_the_whole_tensor(Device::Host); }

TEST_CASE("optimizer: a new learning rate every step matches the interpreter and compiles nothing") {
    check_matches_interpreter_with_a_schedule(Device::Host);
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
    CHECK(refusal(build(bad_hyper)) == "optimizer 'adamw' has no hyper-parameter 'learning_rate' (its hyper-parameters: lr, beta1, beta2, eps, weight_decay)");
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
    const uint64_t seed = test_seed();
    INFO("seed ", seed);
    Program program = adamw_program();
    CheckpointFixture a(Device::Host, seed, q8_with_rank1()), b(Device::Host, seed + 1, q8_with_rank1());
    Optimizer saved(program, a.groups), target(program, b.groups);
    a.set_gradients(1);
    saved.step();
    b.set_gradients(1);
    target.step();
    const std::vector<uint8_t> good = saved.state_dict();
    const auto before = CheckpointFixture::states(target, Device::Host);
    auto load = [&](std::vector<uint8_t> bytes) {
        std::string message = refusal([&] { target.load_state_dict(bytes); });
        CHECK(CheckpointFixture::states(target, Device::Host) == before);
        CHECK(target.step_count() == 1);
        return message;
    };
    auto with_checksum = [](std::vector<uint8_t> bytes) {  // a consistent file with a changed field
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i + 8 < bytes.size(); ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
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
    CheckpointFixture l(Device::Host, seed, {});
    Optimizer lion(load_example("lion"), l.groups);
    CHECK(load(lion.state_dict()) == "the checkpoint is of another program ('optimizer lion'); this optimizer runs 'optimizer adamw'");

    // Other groups, parameters, sizes, formats.
    CheckpointFixture one_group(Device::Host, seed, q8_with_rank1());
    one_group.groups.pop_back();
    CHECK(load(Optimizer(program, one_group.groups).state_dict()) == "the checkpoint has 1 parameter groups; this optimizer has 2");
    CheckpointFixture fewer(Device::Host, seed, q8_with_rank1());
    fewer.groups[1].params.pop_back();
    CHECK(load(Optimizer(program, fewer.groups).state_dict()) == "group 1: the checkpoint has 1 parameters; this optimizer has 2");
    CheckpointFixture renamed(Device::Host, seed, q8_with_rank1());
    renamed.groups[0].params[1].name = "tok_embeddings";
    CHECK(load(Optimizer(program, renamed.groups).state_dict()) ==
          "group 0, parameter 1 ('embed'): the checkpoint names this parameter 'tok_embeddings'");
    CheckpointFixture reshaped(Device::Host, seed, q8_with_rank1());
    reshaped.groups[1].params[0].shape = {130, 40};
    CHECK(load(Optimizer(program, reshaped.groups).state_dict()) ==
          "group 1, parameter 0 ('wq'): the checkpoint holds 5200 elements at offset 0 in rows of 40; this parameter has 5200 at offset 0 in rows of 130");
    CheckpointFixture q4(Device::Host, seed, {{"m", storage("q4s")}, {"v", storage("q4u:128:rank1")}});
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
    CHECK(CheckpointFixture::states(target, Device::Host) == CheckpointFixture::states(saved, Device::Host));
}

TEST_CASE("checkpoint: a change of format or block size converts through dequantize and requantize, when asked") {
    const uint64_t seed = test_seed();
    INFO("seed ", seed);
    Program program = adamw_program();
    struct Change {
        const char *from_m, *from_v, *to_m, *to_v;
    };
    for (Change c : {Change{"q8s", "q8u", "q4s", "q4u"}, Change{"q8s", "q8u", "q8s:64", "q8u:1024"}, Change{"fp32", "fp32", "q8s", "fp8"},
                     Change{"q4s", "q4u:128:rank1", "bf16", "fp32"}}) {
        INFO(c.from_m, " ", c.from_v, " -> ", c.to_m, " ", c.to_v);
        CheckpointFixture a(Device::Host, seed, {{"m", storage(c.from_m)}, {"v", storage(c.from_v)}});
        CheckpointFixture b(Device::Host, seed, {{"m", storage(c.to_m)}, {"v", storage(c.to_v)}});
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
            const int64_t n = a.params[2 + i]->n, columns = p.shape.size() >= 2 ? p.shape.back() : 0;
            for (const char* name : {"m", "v"}) {
                StateBuffer from = saved.state(1, i, name), to = loaded.state(1, i, name);
                std::vector<float> values(static_cast<size_t>(n));
                if (is_block_quantized(from.storage.format)) {
                    QuantizedTensor q;
                    q.codes.assign(reinterpret_cast<const uint8_t*>(from.values), reinterpret_cast<const uint8_t*>(from.values) + from.value_bytes);
                    const bool rank1 = from.storage.rank1 && columns > 0;
                    size_t count = size_t(rank1 ? rank1_statistic_count(n, columns) : scale_count(from.storage, p.offset, n));
                    q.scales.assign(reinterpret_cast<const float*>(from.scales), reinterpret_cast<const float*>(from.scales) + count);
                    values = dequantize(from.storage, q, n, p.offset, rank1 ? columns : 0);
                } else {
                    for (int64_t k = 0; k < n; ++k) values[size_t(k)] = float(load_element(state_dtype(from.storage.format), reinterpret_cast<const void*>(from.values), size_t(k)));
                }
                std::vector<uint8_t> got = state_bytes(loaded, Device::Host, 1, i, name);
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
        CHECK(state_bytes(loaded, Device::Host, 0, 1, "m") == state_bytes(saved, Device::Host, 0, 1, "m"));
        CHECK(loaded.step_count() == 2);
    }
}
