// The lowering driver: program -> passes -> LLVM IR -> optimized IR -> PTX or host code.
//
// A linear sequence of stages with timings. With OPTJIT_DUMP_DIR set, every stage is written
// to $OPTJIT_DUMP_DIR/<cache key>/ (the program after each pass, LLVM IR before and after
// optimization, the PTX or host assembly). With OPTJIT_DEBUG=1 each compile is logged to
// stderr with its reason and the time of each phase.
#pragma once

#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <functional>
#include <memory>
#include <string>

#include "compiler/codegen.h"
#include "compiler/target.h"
#include "passes/pipeline.h"

namespace optjit {

struct KernelRequest {
    Program program;  // verified, before passes
    PassOptions passes;
    StorageSignature storage;
    Target target;
    CodegenOptions options;
};

// Runs the pass pipeline (recording each stage for the dump directory) and checks the storage
// signature against the program. Throws std::invalid_argument for bad options.
KernelSpec lower(const KernelRequest& request);
// The options lower() gives the request's kernel: OPTJIT_GPU_TUNE applied to GPU kernels, the
// math mode resolved. Throws std::invalid_argument for a malformed OPTJIT_GPU_TUNE.
CodegenOptions resolved_options(const KernelRequest& request);

// A hex digest of everything that selects generated code: the lowered program's text, the
// storage signature, the target (and for the host, the CPU and its features), the optjit
// version, a hash of the sources that generate code (so another build never reuses this one's
// disk cache) and the codegen options. Never a hyper-parameter's run-time value.
std::string cache_key(const KernelSpec& spec);

struct CompileTimes {
    double passes_ms = 0, codegen_ms = 0, optimize_ms = 0, emit_ms = 0;
    double total() const { return passes_ms + codegen_ms + optimize_ms + emit_ms; }
};

// An optimized LLVM module for the kernel, in its own context.
struct CompiledModule {
    KernelSpec spec;
    std::string key;
    std::unique_ptr<llvm::LLVMContext> context;
    std::unique_ptr<llvm::Module> module;
    CompileTimes times;
};

// Lowers and generates; `optimized` runs the O3 pipeline (and, for NVPTX, the legality check).
CompiledModule compile_module(const KernelRequest& request, bool optimized = true);

enum class Emit { LLVM, Assembly };  // Assembly: PTX for NVPTX targets, host assembly otherwise

// The kernel as optimized LLVM IR or as PTX / host assembly; fills `times` and `key` if given.
std::string emit_text(const KernelRequest& request, Emit what, CompileTimes* times = nullptr, std::string* key = nullptr);

// Environment knobs.
bool debug_enabled();                     // OPTJIT_DEBUG=1 (or any non-zero value)
void debug_log(const std::string& line);  // "optjit: <line>" on stderr when debug_enabled()
bool dump_enabled();  // OPTJIT_DUMP_DIR is set
// Writes `text()` as `name` into the dump folder of `key`, when OPTJIT_DUMP_DIR is set; `text`
// runs only then (printing a kernel's module costs ~10 ms of its compile).
void dump_stage(const std::string& key, const std::string& name, const std::function<std::string()>& text);

}  // namespace optjit
