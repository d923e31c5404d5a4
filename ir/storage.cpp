#include "ir/storage.h"

#include <fmt/format.h>

#include <charconv>

namespace optjit {

std::string_view dtype_name(DType t) {
    switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    }
    return "?";
}

std::optional<DType> parse_dtype(std::string_view s) {
    if (s == "f32" || s == "fp32" || s == "float32") return DType::F32;
    if (s == "bf16" || s == "bfloat16") return DType::BF16;
    if (s == "f16" || s == "fp16" || s == "float16") return DType::F16;
    return std::nullopt;
}

int dtype_bytes(DType t) { return t == DType::F32 ? 4 : 2; }

std::string_view format_name(StateFormat f) {
    switch (f) {
    case StateFormat::F32: return "fp32";
    case StateFormat::BF16: return "bf16";
    case StateFormat::Q8S: return "q8s";
    case StateFormat::Q8U: return "q8u";
    case StateFormat::Q4S: return "q4s";
    case StateFormat::Q4U: return "q4u";
    case StateFormat::FP8: return "fp8";
    }
    return "?";
}

std::optional<StateFormat> parse_format_name(std::string_view s) {
    for (StateFormat f : {StateFormat::F32, StateFormat::BF16, StateFormat::Q8S, StateFormat::Q8U, StateFormat::Q4S,
                          StateFormat::Q4U, StateFormat::FP8})
        if (s == format_name(f)) return f;
    if (s == "f32" || s == "float32") return StateFormat::F32;
    return std::nullopt;
}

bool is_block_quantized(StateFormat f) { return f != StateFormat::F32 && f != StateFormat::BF16; }

uint32_t default_block_size(StateFormat f) {
    switch (f) {
    case StateFormat::Q8S:
    case StateFormat::Q8U:
    case StateFormat::FP8: return 256;
    case StateFormat::Q4S:
    case StateFormat::Q4U: return 128;
    default: return 0;
    }
}

std::optional<StateStorage> parse_state_storage(std::string_view s, std::string* error) {
    auto colon = s.find(':');
    std::string_view name = s.substr(0, colon);
    std::optional<StateFormat> f = parse_format_name(name);
    if (!f) {
        *error = fmt::format("unknown state format '{}' (expected fp32, bf16, q8s, q8u, q4s, q4u or fp8)", name);
        return std::nullopt;
    }
    StateStorage out{*f, default_block_size(*f), false};
    std::string_view rest = colon == std::string_view::npos ? std::string_view() : s.substr(colon + 1);
    while (!rest.empty()) {
        auto next = rest.find(':');
        std::string_view part = rest.substr(0, next);
        rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
        if (part == "rank1") {
            if (*f != StateFormat::Q4U) {
                *error = "rank1 normalization applies to q4u states only";
                return std::nullopt;
            }
            out.rank1 = true;
            continue;
        }
        uint32_t block = 0;
        auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), block);
        if (ec != std::errc() || end != part.data() + part.size()) {
            *error = fmt::format("bad state format option '{}' (expected a block size or 'rank1')", part);
            return std::nullopt;
        }
        if (!is_block_quantized(*f)) {
            *error = fmt::format("{} states have no block size", format_name(*f));
            return std::nullopt;
        }
        if (block < 32 || block > 4096 || (block & (block - 1)) != 0) {
            *error = fmt::format("block size {} is not a power of two from 32 to 4096", block);
            return std::nullopt;
        }
        out.block = block;
    }
    return out;
}

std::string to_string(const StateStorage& s) {
    std::string out(format_name(s.format));
    if (is_block_quantized(s.format)) out += fmt::format(":{}", s.block);
    if (s.rank1) out += ":rank1";
    return out;
}

const StateStorage& StorageSignature::state(const std::string& name) const {
    static const StateStorage fp32{};
    auto it = states.find(name);
    return it == states.end() ? fp32 : it->second;
}

StorageSignature storage_for_tensor(const StorageSignature& s, int64_t tensor_elements, int64_t columns) {
    StorageSignature out = s;
    for (auto& [name, storage] : out.states) {
        if (!is_block_quantized(storage.format)) continue;
        if (tensor_elements < kMinQuantizedElements) storage = StateStorage{};
        else if (columns <= 0) storage.rank1 = false;
    }
    return out;
}

bool has_quantized_state(const StorageSignature& s) {
    for (const auto& [name, storage] : s.states)
        if (is_block_quantized(storage.format)) return true;
    return false;
}

bool has_rank1_state(const StorageSignature& s) {
    for (const auto& [name, storage] : s.states)
        if (storage.rank1) return true;
    return false;
}

std::string to_string(const StorageSignature& s, const Program& program) {
    std::string out = fmt::format("p={} g={}", dtype_name(s.param), dtype_name(s.grad));
    for (const StateDecl& d : program.states) out += fmt::format(" {}={}", d.name, to_string(s.state(d.name)));
    return out;
}

std::string check_storage(const StorageSignature& s, const Program& program) {
    for (const auto& [name, storage] : s.states) {
        if (program.state_index(name) < 0) {
            std::string known;
            for (const StateDecl& d : program.states) known += (known.empty() ? "" : ", ") + d.name;
            return fmt::format("optimizer '{}' has no state '{}' (its states: {})", program.name, name,
                               known.empty() ? "none" : known);
        }
        if (is_block_quantized(storage.format) && (storage.block < 32 || storage.block > 4096 || (storage.block & (storage.block - 1))))
            return fmt::format("state '{}': block size {} is not a power of two from 32 to 4096", name, storage.block);
    }
    return {};
}

}  // namespace optjit
