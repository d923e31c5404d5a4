// How parameters, gradients and states are stored in memory. Separate from the program: the
// same AdamW runs with fp32, bf16, 8-bit, 4-bit or fp8 states. Math is always fp32 in kernels
// (float64 in the reference interpreter); a format only says how a value is read and written.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "ir/program.h"

namespace optjit {

// Element types of parameters and gradients.
enum class DType : uint8_t { F32, BF16, F16 };

std::string_view dtype_name(DType t);  // "f32", "bf16", "f16"
std::optional<DType> parse_dtype(std::string_view s);
int dtype_bytes(DType t);

// Storage formats of optimizer states. The block-quantized ones keep one fp32 scale per block
// of consecutive elements (see DESIGN.md's table); their code generation is issue 4's.
enum class StateFormat : uint8_t { F32, BF16, Q8S, Q8U, Q4S, Q4U, FP8 };

std::string_view format_name(StateFormat f);  // "fp32", "bf16", "q8s", "q8u", "q4s", "q4u", "fp8"
std::optional<StateFormat> parse_format_name(std::string_view s);
bool is_block_quantized(StateFormat f);
uint32_t default_block_size(StateFormat f);  // 256 for 8-bit and fp8, 128 for 4-bit, 0 otherwise

struct StateStorage {
    StateFormat format = StateFormat::F32;
    uint32_t block = 0;          // elements per scale; 0 for unquantized formats
    bool rank1 = false;          // q4u only: rank-1 normalization of a second moment
    friend bool operator==(const StateStorage&, const StateStorage&) = default;
};

// Parses "q8s", "q8s:128", "q4u:128:rank1"; nullopt with `error` set on bad input.
std::optional<StateStorage> parse_state_storage(std::string_view s, std::string* error);
std::string to_string(const StateStorage& s);

// Everything about memory layout that selects a kernel, besides the program and the target.
struct StorageSignature {
    DType param = DType::F32;
    DType grad = DType::F32;
    std::map<std::string, StateStorage> states;  // by state name; absent means fp32

    const StateStorage& state(const std::string& name) const;
    friend bool operator==(const StorageSignature&, const StorageSignature&) = default;
};

// Tensors smaller than this keep full-precision (fp32) states whatever their signature says:
// a block scale per few elements saves nothing, and biases and norms are where quantization
// error hurts most.
constexpr int64_t kMinQuantizedElements = 4096;

// The storage a tensor of `tensor_elements` elements (of the whole tensor, not of a shard)
// really uses: `s`, with block-quantized states made fp32 below kMinQuantizedElements, and
// rank-1 states (q4u:rank1) made plain block-wise q4u where the tensor has no `columns` (one
// dimension: there are no rows and columns to normalize by, as in the 4-bit paper).
StorageSignature storage_for_tensor(const StorageSignature& s, int64_t tensor_elements, int64_t columns = 0);
// Whether any state of `s` is block-quantized, and whether any is rank-1 normalized.
bool has_quantized_state(const StorageSignature& s);
bool has_rank1_state(const StorageSignature& s);

// Canonical text, e.g. "p=bf16 g=f32 m=q8s:256 v=fp32", listing every state of `program`
// in declaration order (so two signatures that mean the same print the same).
std::string to_string(const StorageSignature& s, const Program& program);

// Checks that every named state exists in `program` and every block size is valid; returns an
// error sentence or an empty string.
std::string check_storage(const StorageSignature& s, const Program& program);

}  // namespace optjit
