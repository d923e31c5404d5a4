// The object a training loop uses: an optimizer program, its hyper-parameters, and groups of
// parameters whose states it allocates, owns and steps.
//
// A parameter is what any framework can hand over: data and gradient addresses, dtypes, shape,
// device, and for a shard its global element offset. Each group has its own hyper-parameter
// values and state formats (embeddings in fp32, the rest in q8). At construction the
// parameters of each group are sorted into launches, one per (device, dtypes, storage) they
// share: tensors under kMinQuantizedElements keep fp32 states (ir/storage.h) and go in a launch
// of their own, as do one-dimensional tensors whose rank-1 states are stored block-wise. Each
// launch gets its kernel from the cache and its tensor table, built once and, on the GPU, kept
// in device memory (compiler/kernel_abi.h). A step is those launches and nothing else: no
// compile, no allocation, no host synchronization; setting a hyper-parameter between steps
// changes the launch's scalars only.
//
// States the values leave unused are not kept (passes/unused_states.h): SGD with momentum 0 has
// no buffer, RMSprop's defaults keep square_avg alone, as torch.optim allocates them. The
// hyper-parameters that decide it (where every group has the same value) are compiled in at
// their construction values: setting one to another value throws, where torch.optim.SGD would
// create its buffer then (OptimizerOptions::keep_unused_states keeps every state, and those
// hyper-parameters run-time values).
//
// States start at the program's initial values: a block-quantized state that starts at 0 has
// scale 0 (it reads back as exactly 0), one that starts elsewhere holds that value quantized.
//
// The interface is plain structs, names and numbers, so that a Python binding can wrap it one
// to one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compiler/target.h"
#include "ir/program.h"
#include "ir/storage.h"
#include "runtime/cuda_driver.h"
#include "runtime/device_memory.h"

namespace optjit {

struct Parameter {
    std::string name;             // in error messages ("layers.0.wq")
    uint64_t data = 0;            // address of the values on `device`
    uint64_t grad = 0;            // address of the gradient, same shape, on `device`
    DType dtype = DType::F32;     // of the values
    DType grad_dtype = DType::F32;
    std::vector<int64_t> shape;   // of this tensor (or shard); elements: the product, 1 for {}
    Device device = Device::Host;
    // A shard of a larger tensor: the global index of its first element (a multiple of every
    // quantized state's block size), and the whole tensor's element count (which decides
    // whether states are quantized at all). 0 and 0 for a whole tensor.
    int64_t offset = 0;
    int64_t tensor_numel = 0;
};

// Elements of a parameter (the product of its shape, 1 for a scalar), and its last dimension
// where it has rows and columns (two or more dimensions; rank-1 states), else 0.
int64_t element_count(const Parameter& p);
int64_t last_dimension(const Parameter& p);

struct ParamGroup {
    std::vector<Parameter> params;
    std::map<std::string, double> hypers;         // this group's values (over the optimizer's)
    std::map<std::string, StateStorage> states;   // formats by state name; absent: fp32
    bool stochastic_rounding = false;             // round bf16 parameters stochastically
};

struct OptimizerOptions {
    std::map<std::string, double> hypers;  // every group's values, unless the group sets its own
    MathMode math = MathMode::Auto;        // compiler/target.h: fast for GPU groups with quantized states
    uint64_t seed = 0;                     // keys stochastic rounding's random stream
    // GPU groups keep their step and hyper-parameters in a device block (compiler/kernel_abi.h)
    // that each step updates on the device before its launches, so step() can be captured in
    // a CUDA graph (cuda::capture_graph) and replayed; a schedule writes new values into the
    // block (hyper_address) between replays. Host launches stay eager.
    bool capturable = false;
    // Gradient policies (passes/gradient_policies.h), applied to every group. Clipping and the
    // non-finite policy are global reductions: they span every parameter of the step (all
    // groups), which must then be on one device, and cost the step one more read of the
    // gradients. Maximizing costs nothing.
    // Ascend instead of descend, as torch.optim's `maximize`: every use of g reads -g.
    bool maximize = false;
    // > 0: clip the gradients by their global L2 norm to this value before the update, as
    // torch.nn.utils.clip_grad_norm_(all parameters, max_grad_norm); a run-time
    // hyper-parameter `max_grad_norm` from then on (set_hyper changes it).
    double max_grad_norm = 0;
    // A step whose gradients hold an infinity or a NaN changes no parameter and no state (of any
    // group); nonfinite_count() says how many such elements it saw. A skipped step does not
    // count (as when a GradScaler does not call step()): the next step has the same step
    // number. GPU groups then keep their step number on the device, where the count is: their
    // kernels read their scalars from a device block, filled each step by a one-thread kernel
    // that takes the hyper-parameters as launch arguments (no copy, no synchronization).
    bool skip_nonfinite = false;
    // Keep every state the program declares, even where the hyper-parameter values leave it
    // unused, so that the hyper-parameters deciding it stay run-time values (a momentum
    // scheduled up from 0).
    bool keep_unused_states = false;
};

// A state of one parameter as stored, on the parameter's device.
struct StateBuffer {
    uint64_t values = 0;   // the values, or a block-quantized state's codes
    uint64_t scales = 0;   // its block scales (rank-1: statistics), 0 for fp32 and bf16
    size_t value_bytes = 0, scale_bytes = 0;
    StateStorage storage;  // as stored: the group's format, or fp32 for a small tensor
};

class Optimizer {
public:
    // Throws ProgramError (ir/diagnostic.h) for a program that does not verify,
    // std::invalid_argument naming the group and parameter for anything it cannot step (an
    // unknown hyper-parameter or state, a shard off a block boundary, a missing address, a GPU
    // parameter without a GPU), and cuda::CudaError for GPU failures.
    Optimizer(const Program& program, std::vector<ParamGroup> groups, OptimizerOptions options = {});
    // The text form (`file_name` in diagnostics); throws ProgramError (ir/diagnostic.h),
    // file:line:col: error: ..., for a program that does not verify.
    static Optimizer from_text(std::string_view text, std::vector<ParamGroup> groups, OptimizerOptions options = {},
                               const std::string& file_name = "<optimizer>");
    ~Optimizer();
    Optimizer(Optimizer&&) noexcept;
    Optimizer& operator=(Optimizer&&) noexcept;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    // Steps every tensor of every group once: host launches run before it returns, GPU
    // launches are queued on `stream` (nullptr: the legacy default stream).
    void step(cuda::Stream stream = nullptr);
    // Steps taken (capturable, or GPU with skip_nonfinite: as counted on the device, replays
    // too, skipped steps not; waits for the GPU there).
    int64_t step_count() const;
    void set_step_count(int64_t steps);  // resume a schedule (load_state_dict does)

    // Run-time hyper-parameters: every group's, or one group's. Compiles nothing. (Capturable:
    // both go through the device block, synchronously.) A fixed hyper-parameter
    // (fixed_hypers()) takes only its value.
    void set_hyper(const std::string& name, double value);
    void set_hyper(size_t group, const std::string& name, double value);
    double hyper(size_t group, const std::string& name) const;
    // Capturable optimizers: the device address of a GPU group's hyper-parameter, a float64
    // that replays of a captured step read (write it with any copy or kernel on the stream).
    uint64_t hyper_address(size_t group, const std::string& name) const;

    // Reductions (compiler/reductions.h) as the last step found them. grad_norm(): the total
    // norm of the gradients before clipping (max_grad_norm > 0), as clip_grad_norm_ returns it;
    // nonfinite_count(): the count of non-finite gradient elements (skip_nonfinite). Both wait
    // for the GPU. The *_address forms give the float64 in device memory that holds, after the
    // step's reduction pass, the squared norm and the count: a mixed-precision loop reads it
    // later, or from a kernel of its own, without a synchronization (on the GPU the count is
    // -1 until the first step, and after set_step_count). Throw std::invalid_argument where
    // the option is off.
    double grad_norm() const;
    uint64_t grad_norm_squared_address() const;
    double nonfinite_count() const;
    uint64_t nonfinite_count_address() const;
    // Every reduction of the program (ir/analysis.h's order): a global one's value, a tensor
    // one's for each tensor in launch order. For tests and inspection; waits for the GPU.
    std::vector<std::vector<double>> reduction_values() const;

    const Program& program() const;  // with the gradient policies applied, unused states dropped
    // The states not kept and the hyper-parameters compiled in for it, with their values
    // (passes/unused_states.h); empty with keep_unused_states.
    const std::vector<std::string>& dropped_states() const;
    const std::map<std::string, double>& fixed_hypers() const;
    size_t num_groups() const;
    size_t num_params(size_t group) const;
    size_t num_launches() const;  // kernel launches a step makes (statistics and reduction passes not counted)
    const Parameter& param(size_t group, size_t index) const;
    StateBuffer state(size_t group, size_t param, const std::string& name) const;

    // Checkpoints (runtime/checkpoint.cpp documents the format). state_dict() waits for the
    // GPU's queued work, then copies every state as stored (codes and scales), the step, every
    // group's hyper-parameter values and the program's text. load_state_dict() checks all of it
    // against this optimizer (format, version, checksum, program, groups, parameters, sizes,
    // state formats) and throws std::invalid_argument with one sentence before writing any
    // state. A state stored in another format or block size is converted (dequantized and
    // requantized, ir/quantization.h) only with `convert_formats`.
    std::vector<uint8_t> state_dict() const;
    struct LoadOptions {
        bool convert_formats = false;
    };
    void load_state_dict(const std::vector<uint8_t>& checkpoint, LoadOptions options);
    void load_state_dict(const std::vector<uint8_t>& checkpoint) { load_state_dict(checkpoint, LoadOptions{}); }

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace optjit
