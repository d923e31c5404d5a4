#include "compiler/target.h"

#include <fmt/format.h>
#include <llvm/ADT/StringMap.h>
#include <llvm/TargetParser/Host.h>

#include <charconv>
#include <cstdlib>
#include <stdexcept>

namespace optjit {

std::string Target::name() const { return is_gpu() ? fmt::format("sm_{}", sm) : "host"; }

std::string Target::triple() const {
    return is_gpu() ? "nvptx64-nvidia-cuda" : llvm::sys::getProcessTriple();
}

std::string Target::cpu() const { return is_gpu() ? name() : std::string(llvm::sys::getHostCPUName()); }

std::string Target::features() const {
    if (is_gpu()) return fmt::format("+ptx{}", ptx_version());
    std::string out;
    for (const auto& f : llvm::sys::getHostCPUFeatures()) out += fmt::format("{}{}{}", out.empty() ? "" : ",", f.second ? "+" : "-", f.first().str());
    return out;
}

int Target::ptx_version() const {
    if (sm >= 90) return 78;
    if (sm >= 89) return 78;
    if (sm >= 86) return 71;
    if (sm >= 80) return 70;
    return 63;
}

std::optional<Target> parse_target(std::string_view s, std::string* error) {
    if (s == "host") return Target{};
    int sm = 0;
    if (s.starts_with("sm_")) {
        auto [end, ec] = std::from_chars(s.data() + 3, s.data() + s.size(), sm);
        if (ec == std::errc() && end == s.data() + s.size() && sm >= 80 && sm <= 90) return Target{Target::Kind::NVPTX, sm};
    }
    *error = fmt::format("unknown target '{}' (expected host or sm_NN, NN from 80 to 90, e.g. sm_80, sm_90)", s);
    return std::nullopt;
}

std::string_view math_mode_name(MathMode m) {
    switch (m) {
    case MathMode::Auto: return "auto";
    case MathMode::Ieee: return "ieee";
    case MathMode::Fast: return "fast";
    }
    return "?";
}

namespace {

struct GpuTuneKnob {
    std::string_view name;
    int CodegenOptions::*field;
};
constexpr GpuTuneKnob kGpuTuneKnobs[] = {
    {"elements_per_thread", &CodegenOptions::gpu_elements_per_thread}, {"threads_per_block", &CodegenOptions::gpu_threads_per_block},
    {"vector_bytes", &CodegenOptions::gpu_vector_bytes},               {"min_blocks_per_sm", &CodegenOptions::gpu_min_blocks_per_sm},
    {"prefetch_chunks", &CodegenOptions::gpu_prefetch_chunks},         {"run_chunks", &CodegenOptions::gpu_run_chunks},
    {"unroll_chunks", &CodegenOptions::gpu_unroll_chunks},             {"max_blocks_per_sm", &CodegenOptions::gpu_max_blocks_per_sm},
    {"pipelined", &CodegenOptions::gpu_pipelined},
};

}  // namespace

bool set_gpu_tune(CodegenOptions& options, std::string_view knob, int value) {
    for (const GpuTuneKnob& k : kGpuTuneKnobs)
        if (k.name == knob) {
            options.*k.field = value;
            return true;
        }
    return false;
}

std::string gpu_tune_knob_names() {
    std::string out;
    for (const GpuTuneKnob& k : kGpuTuneKnobs) out += fmt::format("{}{}", out.empty() ? "" : ", ", k.name);
    return out;
}

void apply_gpu_tune_environment(CodegenOptions& options) {
    const char* env = std::getenv("OPTJIT_GPU_TUNE");
    if (!env) return;
    std::string_view rest(env);
    while (!rest.empty()) {
        std::string_view item = rest.substr(0, rest.find(','));
        rest.remove_prefix(std::min(rest.size(), item.size() + 1));
        if (item.empty()) continue;
        size_t eq = item.find('=');
        int value = 0;
        std::string_view knob = item.substr(0, eq);
        auto [end, ec] = eq == std::string_view::npos ? std::from_chars(item.data(), item.data(), value)
                                                      : std::from_chars(item.data() + eq + 1, item.data() + item.size(), value);
        if (eq == std::string_view::npos || ec != std::errc() || end != item.data() + item.size() || !set_gpu_tune(options, knob, value))
            throw std::invalid_argument(fmt::format("OPTJIT_GPU_TUNE: '{}' is not KNOB=N with a knob of {}", item, gpu_tune_knob_names()));
    }
}

MathMode resolved_math(MathMode requested, const Target& target, bool has_quantized_state) {
    if (requested != MathMode::Auto) return requested;
    return target.is_gpu() && has_quantized_state ? MathMode::Fast : MathMode::Ieee;
}

}  // namespace optjit
