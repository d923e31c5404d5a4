#include "runtime/tensor_codec.h"

#include <fmt/format.h>

#include <stdexcept>

#include "ir/verifier.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/thread_pool.h"

namespace optjit {

namespace {

const Program& quantize_program() {
    static const Program p = parse_and_verify("optimizer quantize\n  state s = 0\n  update\n    s = g\n    p = p\n", "<quantize>");
    return p;
}

const Program& dequantize_program() {
    static const Program p = parse_and_verify("optimizer dequantize\n  state s = 0\n  update\n    p = s\n    s = s\n", "<dequantize>");
    return p;
}

// One launch of `program` over one tensor whose p and g are both `values`.
void run(const Program& program, const Target& target, const StateStorage& storage, DType values_type, uint64_t values,
         QuantizedBuffers state, int64_t n, int64_t offset, cuda::Stream stream) {
    if (!is_block_quantized(storage.format))
        throw std::invalid_argument(fmt::format("{} is not a block-quantized format (expected q8s, q8u, q4s, q4u or fp8)", format_name(storage.format)));
    if (n <= 0) return;
    KernelRequest request{program, {}, {}, target, {}};
    // A conversion equals ir/quantization.h bit for bit: IEEE arithmetic, where an optimizer
    // step with these states would take the GPU's fast math (compiler/target.h's MathMode).
    request.options.math = MathMode::Ieee;
    request.storage.param = request.storage.grad = values_type;
    request.storage.states["s"] = storage;
    request.storage = storage_for_tensor(request.storage, kMinQuantizedElements, state.columns);  // rank-1 needs columns
    std::shared_ptr<const Kernel> kernel = KernelCache::global().get(request);
    TensorArgs args{values, values, {state.codes}, {state.scales}, n, offset, state.columns};
    TensorTable table = build_table(*kernel, std::span<const TensorArgs>(&args, 1));
    std::vector<float> scalars = launch_scalars(*kernel, {}, 1);
    if (!target.is_gpu()) {
        launch_host(*kernel, table, scalars, ThreadPool::global());
        return;
    }
    cuda::DeviceAlloc device_table(table.words.size() * 8);
    cuda::memcpy_htod(device_table.get(), table.words.data(), table.words.size() * 8);
    launch_cuda(*kernel, device_table.get(), table, scalars, stream);
    cuda::stream_synchronize(stream);
}

}  // namespace

void quantize_tensor(const Target& target, const StateStorage& storage, DType values_type, uint64_t values, QuantizedBuffers out,
                     int64_t n, int64_t offset, cuda::Stream stream) {
    run(quantize_program(), target, storage, values_type, values, out, n, offset, stream);
}

void dequantize_tensor(const Target& target, const StateStorage& storage, QuantizedBuffers in, DType values_type, uint64_t values,
                       int64_t n, int64_t offset, cuda::Stream stream) {
    run(dequantize_program(), target, storage, values_type, values, in, n, offset, stream);
}

}  // namespace optjit
