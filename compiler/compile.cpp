#include "compiler/compile.h"

#include <fmt/format.h>
#include <llvm/Support/SHA256.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "compiler/llvm_backend.h"
#include "build_id.inc"  // kBuildId: a hash of the kernel sources (CMakeLists.txt)
#include "ir/printer.h"

namespace optjit {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// The program after each pass, kept until the cache key (and so the dump folder) is known;
// recorded only for OPTJIT_DUMP_DIR.
thread_local std::vector<std::pair<std::string, std::string>> pending_stages;

}  // namespace

bool debug_enabled() {
    const char* v = std::getenv("OPTJIT_DEBUG");
    return v && *v && std::string(v) != "0";
}

void debug_log(const std::string& line) {
    if (debug_enabled()) fmt::print(stderr, "optjit: {}\n", line);
}

bool dump_enabled() {
    const char* dir = std::getenv("OPTJIT_DUMP_DIR");
    return dir && *dir;
}

void dump_stage(const std::string& key, const std::string& name, const std::function<std::string()>& text) {
    if (!dump_enabled()) return;
    const char* dir = std::getenv("OPTJIT_DUMP_DIR");
    std::filesystem::path folder = std::filesystem::path(dir) / key;
    std::error_code ec;
    std::filesystem::create_directories(folder, ec);
    std::ofstream out(folder / name, std::ios::binary);
    out << text();
    if (!out) fmt::print(stderr, "optjit: warning: cannot write {} (OPTJIT_DUMP_DIR)\n", (folder / name).string());
}

CodegenOptions resolved_options(const KernelRequest& request) {
    CodegenOptions options = request.options;
    if (request.target.is_gpu()) apply_gpu_tune_environment(options);
    options.math = resolved_math(options.math, request.target, has_quantized_state(request.storage));
    return options;
}

KernelSpec lower(const KernelRequest& request) {
    pending_stages.clear();
    const bool dumping = dump_enabled();
    if (dumping) pending_stages.emplace_back("00-input.opt", print(request.program));
    const CodegenOptions options = resolved_options(request);
    PassOptions passes = request.passes;
    // Not for capturable kernels: a group's launches read one scalar block, which one kernel's
    // NAME_scalars fills, so they must lower alike, and a group mixes fast-math kernels (its
    // block-quantized states) with IEEE ones (its small tensors' fp32 states).
    passes.fast_math = options.math == MathMode::Fast && !options.capturable;
    int index = 1;
    Program lowered = run_pipeline(request.program, passes, [&](const Pass& pass, const Program& after) {
        if (dumping) pending_stages.emplace_back(fmt::format("{:02}-after-{}.opt", index++, pass.name), print(after));
    });
    std::string error = check_storage(request.storage, request.program);
    if (!error.empty()) throw std::invalid_argument(error);
    if (request.options.capturable && !request.target.is_gpu())
        throw std::invalid_argument("capturable kernels are for GPU targets: host launches take their scalars by value");
    if ((request.options.hypers_by_value || request.options.count_applied_steps) && !request.options.capturable)
        throw std::invalid_argument("hyper-parameters by value and counting applied steps are options of capturable kernels' NAME_scalars");
    if (request.options.stochastic_rounding && request.storage.param != DType::BF16)
        throw std::invalid_argument(fmt::format("stochastic rounding applies to bf16 parameters; these are {}", dtype_name(request.storage.param)));
    return KernelSpec{std::move(lowered), request.storage, request.target, options};
}

std::string cache_key(const KernelSpec& spec) {
    const CodegenOptions& o = spec.options;
    std::string text = fmt::format("optjit {} {}\ntarget {} {} {}\nstorage {}\noptions math={} gpu_ept={} gpu_min_blocks={} gpu_tpb={} gpu_vec={} gpu_prefetch={} gpu_run={} gpu_unroll={} gpu_pipelined={} gpu_max_blocks={} whole_chunks={} relocatable={} stochastic={} capturable={} hypers_by_value={} count_applied_steps={}\n{}",
                                   OPTJIT_VERSION, kBuildId, spec.target.name(), spec.target.is_gpu() ? "" : spec.target.cpu(),
                                   spec.target.is_gpu() ? "" : spec.target.features(), to_string(spec.storage, spec.lowered),
                                   math_mode_name(o.math), o.gpu_elements_per_thread, o.gpu_min_blocks_per_sm, o.gpu_threads_per_block,
                                   o.gpu_vector_bytes, o.gpu_prefetch_chunks, o.gpu_run_chunks, o.gpu_unroll_chunks, o.gpu_pipelined, o.gpu_max_blocks_per_sm, o.whole_chunks, o.gpu_relocatable, o.stochastic_rounding, o.capturable, o.hypers_by_value, o.count_applied_steps, print(spec.lowered));
    llvm::SHA256 sha;
    sha.update(text);
    std::array<uint8_t, 32> digest = sha.final();
    std::string hex;
    for (int i = 0; i < 16; ++i) hex += fmt::format("{:02x}", digest[i]);
    return fmt::format("{}-{}-{}", spec.lowered.name, spec.target.name(), hex);
}

CompiledModule compile_module(const KernelRequest& request, bool optimized) {
    CompiledModule out;
    auto t0 = Clock::now();
    out.spec = lower(request);
    out.key = cache_key(out.spec);
    out.times.passes_ms = ms_since(t0);
    for (const auto& [name, text] : pending_stages) dump_stage(out.key, name, [&] { return text; });
    pending_stages.clear();

    auto t1 = Clock::now();
    out.context = std::make_unique<llvm::LLVMContext>();
    out.module = generate_kernel(*out.context, out.spec);
    out.times.codegen_ms = ms_since(t1);
    dump_stage(out.key, "10-llvm.ll", [&] { return module_text(*out.module); });
    if (!optimized) return out;

    auto t2 = Clock::now();
    std::unique_ptr<llvm::TargetMachine> machine = make_target_machine(out.spec.target);
    optimize_module(*out.module, *machine);
    if (out.spec.target.is_gpu()) check_nvptx_legality(*out.module);
    out.times.optimize_ms = ms_since(t2);
    dump_stage(out.key, "11-llvm-optimized.ll", [&] { return module_text(*out.module); });
    return out;
}

std::string emit_text(const KernelRequest& request, Emit what, CompileTimes* times, std::string* key) {
    CompiledModule m = compile_module(request);
    std::string text;
    if (what == Emit::LLVM) {
        text = module_text(*m.module);
    } else {
        auto t = Clock::now();
        std::unique_ptr<llvm::TargetMachine> machine = make_target_machine(m.spec.target);
        text = emit_assembly(*m.module, *machine);
        m.times.emit_ms = ms_since(t);
        dump_stage(m.key, m.spec.target.is_gpu() ? "12-kernel.ptx" : "12-kernel.s", [&] { return text; });
    }
    if (times) *times = m.times;
    if (key) *key = m.key;
    return text;
}

}  // namespace optjit
