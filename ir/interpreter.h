// The reference interpreter: runs a verified program in float64 over host arrays. It is the
// oracle every kernel is tested against.
//
// Semantics of one step, for every tensor of the step:
//   1. every reduction's argument is evaluated over the elements (of the tensor for tensor_*,
//      of every tensor for global_*), in float64;
//   2. every element runs the scalars and update sections in order, with the reductions'
//      values known;
//   3. the final values of `p` and of each state are stored.
// Without a storage signature, stored values stay float64 (the exact math of the program).
// With one, each stored value is rounded to its format as a kernel stores it (p to its dtype,
// fp32 and bf16 states by round to nearest even, block-quantized states through their codes
// and block scales, ir/quantization.h; tensors under kMinQuantizedElements keep fp32 states),
// so a kernel can be compared element by element.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ir/program.h"
#include "ir/quantization.h"
#include "ir/storage.h"

namespace optjit {

struct HostTensor {
    int64_t first_element = 0;    // of a shard in its global tensor: quantization blocks count from 0
    int64_t tensor_elements = 0;  // of the global tensor (0: p.size()); small ones keep fp32 states
    // The tensor's last dimension, for states stored with rank-1 normalization (q4u:rank1),
    // which view it as rows x columns; 0 for a one-dimensional tensor, which stores such states
    // block-wise like plain q4u.
    int64_t columns = 0;
    std::vector<double> p;
    std::vector<double> g;
    std::vector<std::vector<double>> states;  // in the program's declaration order
    // Block-quantized states only (else empty), as the last step stored them: the fp32 values
    // before quantization, and their codes and scales (rank-1 states: the rows' maxima, then
    // the columns'). Kernels are checked against these.
    std::vector<std::vector<float>> unquantized;
    std::vector<QuantizedTensor> quantized;
};

// The run-time value of every hyper-parameter, in declaration order: the program's defaults
// with `overrides` applied. Throws std::invalid_argument naming an unknown hyper-parameter.
std::vector<double> hyper_values(const Program& program, const std::map<std::string, double>& overrides);

class Interpreter {
public:
    // `program` must be verified. `hypers` as hyper_values() returns them.
    Interpreter(const Program& program, std::vector<double> hypers, std::optional<StorageSignature> storage = std::nullopt);
    ~Interpreter();
    Interpreter(const Interpreter&) = delete;
    Interpreter& operator=(const Interpreter&) = delete;

    // Sizes the states like `t.p` and sets them to their initial values.
    void init_states(HostTensor& t) const;
    // One optimizer step (`step` is 1-based) over every tensor, in place. Each tensor's `g`
    // must be as large as its `p`.
    void step(int64_t step, std::span<HostTensor> tensors);
    void set_hyper(const std::string& name, double value);
    // bf16 parameters round stochastically from now on (ir/numeric.h), keyed by `seed`, the
    // step and each element's global index (HostTensor::first_element + i), as kernels do.
    void set_stochastic_rounding(uint64_t seed);

    // Values of the reductions computed by the last step, in order of appearance in the
    // program; tensor reductions give one value per tensor, global ones a single value.
    const std::vector<std::vector<double>>& last_reductions() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace optjit
