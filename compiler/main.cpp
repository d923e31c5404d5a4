// The optjit command-line tool. Exit codes: 0 success, 1 bad input (a program, a file, a
// value out of tolerance), 2 bad usage (unknown option, missing argument).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <llvm/Config/llvm-config.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "ir/analysis.h"
#include "ir/interpreter.h"
#include "ir/library.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "compiler/compile.h"
#include "passes/gradient_policies.h"
#include "passes/pipeline.h"
#include "passes/unused_states.h"
#include "runtime/checked_run.h"
#include "runtime/cuda_driver.h"
#include "runtime/step_bench.h"

namespace optjit {
namespace {

// A usage error: reported with the subcommand's name, exit code 2.
struct UsageError {
    std::string message;
};
// Bad input: reported as is, exit code 1.
struct InputError {
    std::string message;
};

constexpr const char* kMainHelp = R"(optjit: a just-in-time compiler for optimizer steps

usage: optjit <command> [options]

commands:
  check FILE...      verify optimizer programs and summarize each
  print FILE         print a program in canonical form, optionally after passes
  run FILE           run steps on random data and summarize the result
  compile FILE       generate a kernel: LLVM IR, PTX or host assembly
  bench              time AdamW steps over model-shaped workloads, against a copy

options:
  --help             this text (and 'optjit <command> --help' for each command)
  --version          the version of optjit and of its LLVM

exit codes: 0 success, 1 bad input, 2 bad usage
)";

constexpr const char* kCheckHelp = R"(usage: optjit check FILE...

Parses and verifies each program ('-' reads standard input) and prints a one-line summary of
each. Errors are printed as FILE:LINE:COL: error: MESSAGE with the line and a caret.
Exit code 1 if any program is rejected.
)";

constexpr const char* kPrintHelp = R"(usage: optjit print FILE [--after PASS | --all-passes] [--specialize NAME=VALUE]... [--fast-math]

Prints the program in canonical form: as parsed, after the pass PASS, or after every pass.
FILE is a path, - for standard input, or the name of a built-in optimizer (adamw, lamb, ...).
  --after PASS             run the pipeline up to PASS and print the result
  --all-passes             print the program after each pass, each under a '# after PASS' line
  --specialize NAME=VALUE  make hyper-parameter NAME the constant VALUE (the specialize pass)
  --clip-grad-norm X, --skip-nonfinite, --maximize
                           with a gradient policy's rewrite (see 'optjit compile --help')
  --drop-unused-states     as optjit::Optimizer runs it with the --specialize values (see
                           'optjit compile --help')
  --fast-math              the passes as for a fast-math kernel (GPU kernels with quantized
                           states by default): fold-uniform-factors reassociates products
passes, in order: specialize, constant-fold, fold-uniform-factors, hoist-scalars, cse, dead-code
)";

constexpr const char* kRunHelp = R"(usage: optjit run FILE --target interp|host|cuda [--size N] [--steps K] [--seed S] [--hyper NAME=VALUE]... [--check] [kernel options]

Runs K optimizer steps over one tensor of N elements: the parameter starts as standard normal
values, each step's gradient is standard normal, all drawn deterministically from the seed.
Prints, for the parameter and each state, its L2 norm and a checksum of its fp32 values.
  --target interp        the float64 reference interpreter (values rounded to their storage)
  --target host          a kernel JIT-compiled for this CPU, run on all its cores
  --target cuda          a kernel for the GPU (device 0), through the CUDA driver
  --check                also run the interpreter and report the largest relative difference
                         per tensor (for block-quantized states: of the block scales, and how
                         many codes differ, each step from the kernel's own state); exit code
                         1 past tolerance
  kernel options: --param-dtype, --grad-dtype, --state, --specialize, --fast-math,
                         --ieee-math, --stochastic-rounding, --clip-grad-norm, --skip-nonfinite,
                         --maximize, --drop-unused-states (see 'optjit compile --help')
  --size N[,N...]        elements of each tensor, all in one launch (default 4096)
  --columns C            the tensor is rows of C columns (default: one dimension); states stored
                         as q4u:rank1 are normalized by rows and columns only in two dimensions,
                         and block-wise in one
  --steps K              steps (default 10)
  --seed S               seed of the random data (default 0)
  --hyper NAME=VALUE     a hyper-parameter's value (default: the program's)
)";

constexpr const char* kCompileHelp = R"(usage: optjit compile FILE --target host|sm_80|sm_90 --emit llvm|ptx|asm [kernel options] [-o FILE]

Generates the kernel for a target and prints it (or writes it to FILE). The program FILE is a
path, - for standard input, or the name of a built-in optimizer (sgd adam adamw adagrad rmsprop
lion ademamix lamb lars adan adam_amsgrad adamw_amsgrad; OPTJIT_LIBRARY_PATH adds directories
of NAME.opt files).
  --target T               host (this CPU), or sm_NN (an NVIDIA GPU of compute capability N.N)
  --emit llvm              optimized LLVM IR
  --emit ptx | asm         PTX for sm_NN targets, assembly for the host
  -o FILE                  write to FILE instead of standard output
kernel options (also taken by 'optjit run'):
  --param-dtype D          parameter storage: f32, bf16 or f16 (default f32)
  --grad-dtype D           gradient storage: f32, bf16 or f16 (default f32)
  --state NAME=FORMAT      a state's storage (default fp32): fp32, bf16, or block-quantized
                           q8s, q8u, q4s, q4u, fp8, with an optional block size (q8s:128)
  --specialize NAME=VALUE  compile hyper-parameter NAME as the constant VALUE
  --fast-math              approximate division and square roots (within 2 ulp, subnormals
                           flushed to zero on the GPU), fused multiply-adds, and on the GPU
                           products by per-launch factors regrouped; the default of GPU
                           kernels with a block-quantized state
  --ieee-math              correctly rounded division and square roots, as the interpreter;
                           the default of every other kernel
  --stochastic-rounding    bf16 parameters round stochastically (keyed by the seed, the step
                           and the element's index; reproducible)
  --clip-grad-norm X       clip gradients by their global L2 norm to X before the update, as
                           torch.nn.utils.clip_grad_norm_ (X becomes hyper max_grad_norm)
  --skip-nonfinite         a step whose gradients hold an inf or NaN changes nothing (the count
                           of such elements is a global reduction the caller can read)
  --maximize               ascend: every use of g reads -g (torch.optim's maximize)
  --drop-unused-states     as optjit::Optimizer: the states the hyper-parameter values leave
                           unused go, and the hyper-parameters deciding it are compiled in (the
                           values: --specialize's, run's --hyper, else the defaults; RMSprop's
                           keep square_avg alone)
  --capturable             GPU: scalars read from a device block that NAME_scalars fills
                           (for CUDA graphs; optjit compile only)
  --whole-chunks           GPU, block-quantized states: every tensor a whole number of chunks,
                           its arrays 16-byte aligned, so no path for short chunks (optjit::
                           Optimizer chooses it where that holds; optjit compile only)
  --gpu-tune KNOB=N        override a GPU kernel shape (benchmarking): elements_per_thread,
                           threads_per_block, vector_bytes, min_blocks_per_sm (kernels with
                           block-quantized states keep 8 elements a thread), prefetch_chunks
                           (quantized: the chunk ahead a block asks L2 for, 0 for none),
                           run_chunks (quantized: consecutive chunks a block takes at a time,
                           0 for one contiguous range a block), unroll_chunks (quantized:
                           chunks a pass of the loop body processes, 1 to 4),
                           max_blocks_per_sm (the update's grid takes at most N blocks an SM,
                           0 for as many as fit; quantized: 4 unless asked), pipelined (1:
                           kernels without quantized states take the quantized kernels'
                           loop, whose prefetch, run and unroll knobs then apply)
environment: OPTJIT_DUMP_DIR=DIR writes every stage of every compile to DIR/<cache key>/;
             OPTJIT_DEBUG=1 logs each compile and the time of each phase;
             OPTJIT_GPU_TUNE=KNOB=N,... sets --gpu-tune knobs of every GPU kernel (also those
             optjit bench and optjit::Optimizer compile).
)";

std::string read_file(const std::string& path) {
    if (path == "-") {
        std::ostringstream ss;
        ss << std::cin.rdbuf();
        return ss.str();
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError{fmt::format("optjit: cannot read '{}': {}", path, std::strerror(errno))};
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A file, standard input ("-"), or a library name (ir/library.h) where no such file exists.
// Parses and verifies; on failure prints the diagnostics and throws InputError.
Program load_program(const std::string& path) {
    std::string text, name = path == "-" ? "<stdin>" : path;
    if (path != "-" && !std::filesystem::exists(path) && in_library(path)) {
        LibrarySource source = library_source(path);
        text = source.text;
        name = source.file_name;
    } else {
        text = read_file(path);
    }
    try {
        return parse_and_verify(text, name);
    } catch (const ProgramError& e) {
        throw InputError{e.what()};
    }
}

// The command line after the subcommand, taken one option at a time.
class Args {
public:
    Args(int argc, char** argv, int first, std::string command) : command_(std::move(command)) {
        for (int i = first; i < argc; ++i) args_.emplace_back(argv[i]);
    }
    bool done() const { return i_ >= args_.size(); }
    const std::string& peek() const { return args_[i_]; }
    std::string take() { return args_[i_++]; }
    std::string value(const std::string& option) {
        if (done()) throw UsageError{fmt::format("{} needs a value", option)};
        return take();
    }
    const std::string& command() const { return command_; }

private:
    std::vector<std::string> args_;
    size_t i_ = 0;
    std::string command_;
};

double parse_double(const std::string& s, const std::string& what) {
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
        throw UsageError{fmt::format("{}: '{}' is not a finite number", what, s)};
    return v;
}

long long parse_integer(const std::string& s, const std::string& what, long long min, long long max) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE || v < min || v > max)
        throw UsageError{fmt::format("{}: '{}' is not an integer from {} to {}", what, s, min, max)};
    return v;
}

std::pair<std::string, double> parse_assignment(const std::string& s, const std::string& option) {
    auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0) throw UsageError{fmt::format("{} wants NAME=VALUE, got '{}'", option, s)};
    return {s.substr(0, eq), parse_double(s.substr(eq + 1), option + " " + s.substr(0, eq))};
}

// Options that select a kernel, shared by compile and run.
struct KernelOptions {
    PassOptions passes;
    StorageSignature storage;
    CodegenOptions codegen;
    GradientPolicies policies;
    bool drop_unused_states = false;
};

// The program with the gradient policies the options ask for and, with --drop-unused-states, as
// optjit::Optimizer runs it with the values of --specialize and `run_hypers` (run's --hyper):
// the hyper-parameters it compiles in leave both (their values are in the program), and a
// --state of a dropped state is of no use. Says what went on stderr.
Program as_optimizer_runs(Program program, KernelOptions& k, std::map<std::string, double>* run_hypers = nullptr) {
    try {
        program = apply_gradient_policies(std::move(program), k.policies);
        if (!k.drop_unused_states) return program;
        std::map<std::string, double> values = k.passes.specialize;
        if (run_hypers) values.insert(run_hypers->begin(), run_hypers->end());
        UnusedStates unused = drop_unused_states(program, {values});
        for (const auto& [name, value] : unused.fixed) {
            k.passes.specialize.erase(name);
            if (run_hypers) run_hypers->erase(name);
        }
        for (const std::string& name : unused.dropped) k.storage.states.erase(name);
        if (unused.dropped.empty()) fmt::print(stderr, "optjit: every state of '{}' is used\n", program.name);
        else
            fmt::print(stderr, "optjit: '{}' keeps no {}{}\n", program.name, fmt::join(unused.dropped, ", "),
                       unused.fixed.empty() ? "" : " (compiled in: " + fixed_text(unused) + ")");
        return unused.program;
    } catch (const std::invalid_argument& e) {
        throw InputError{fmt::format("optjit: {}\n", e.what())};
    }
}

// Takes `option` (already read) and its value if it is a kernel option; false otherwise.
bool take_kernel_option(Args& args, const std::string& option, KernelOptions& k) {
    if (option == "--param-dtype" || option == "--grad-dtype") {
        std::string v = args.value(option);
        std::optional<DType> t = parse_dtype(v);
        if (!t) throw UsageError{fmt::format("{}: unknown dtype '{}' (expected f32, bf16 or f16)", option, v)};
        (option == "--param-dtype" ? k.storage.param : k.storage.grad) = *t;
        return true;
    }
    if (option == "--state") {
        std::string v = args.value(option);
        auto eq = v.find('=');
        if (eq == std::string::npos || eq == 0) throw UsageError{fmt::format("--state wants NAME=FORMAT, got '{}'", v)};
        std::string error;
        std::optional<StateStorage> st = parse_state_storage(v.substr(eq + 1), &error);
        if (!st) throw UsageError{fmt::format("--state {}: {}", v.substr(0, eq), error)};
        k.storage.states[v.substr(0, eq)] = *st;
        return true;
    }
    if (option == "--specialize") {
        k.passes.specialize.insert(parse_assignment(args.value(option), option));
        return true;
    }
    if (option == "--stochastic-rounding") {
        k.codegen.stochastic_rounding = true;
        return true;
    }
    if (option == "--fast-math" || option == "--ieee-math") {
        k.codegen.math = option == "--fast-math" ? MathMode::Fast : MathMode::Ieee;
        return true;
    }
    if (option == "--clip-grad-norm") {
        std::string v = args.value(option);
        char* end = nullptr;
        double max_norm = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || !(max_norm > 0) || !std::isfinite(max_norm))
            throw UsageError{fmt::format("--clip-grad-norm wants a positive number, got '{}'", v)};
        k.policies.max_grad_norm = max_norm;
        return true;
    }
    if (option == "--skip-nonfinite") {
        k.policies.skip_nonfinite = true;
        return true;
    }
    if (option == "--maximize") {
        k.policies.maximize = true;
        return true;
    }
    if (option == "--capturable") {
        k.codegen.capturable = true;
        return true;
    }
    if (option == "--drop-unused-states") {
        k.drop_unused_states = true;
        return true;
    }
    if (option == "--whole-chunks") {
        k.codegen.whole_chunks = true;
        return true;
    }
    if (option == "--gpu-tune") {
        auto [knob, value] = parse_assignment(args.value(option), option);
        if (!set_gpu_tune(k.codegen, knob, int(value)))
            throw UsageError{fmt::format("--gpu-tune: unknown knob '{}' (expected one of {})", knob, gpu_tune_knob_names())};
        return true;
    }
    return false;
}

Target parse_target_option(const std::string& value) {
    std::string error;
    std::optional<Target> t = parse_target(value, &error);
    if (!t) throw UsageError{error};
    return *t;
}

void write_output(const std::string& path, const std::string& text) {
    if (path.empty() || path == "-") {
        fmt::print("{}", text);
        return;
    }
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out) throw InputError{fmt::format("optjit: cannot write '{}': {}\n", path, std::strerror(errno))};
}

int cmd_compile(Args& args) {
    std::string file, target_name, emit, output;
    KernelOptions k;
    while (!args.done()) {
        std::string a = args.take();
        if (a == "--help") { fmt::print("{}", kCompileHelp); return 0; }
        if (take_kernel_option(args, a, k)) continue;
        if (a == "--target") target_name = args.value(a);
        else if (a == "--emit") emit = args.value(a);
        else if (a == "-o") output = args.value(a);
        else if (a.size() > 1 && a[0] == '-') throw UsageError{fmt::format("unknown option '{}'", a)};
        else if (file.empty()) file = a;
        else throw UsageError{fmt::format("one program at a time (got '{}' and '{}')", file, a)};
    }
    if (file.empty()) throw UsageError{"no program file given"};
    if (target_name.empty()) throw UsageError{"--target is required (host, sm_80, sm_90, ...)"};
    Target target = parse_target_option(target_name);
    if (emit.empty()) throw UsageError{"--emit is required (llvm, ptx or asm)"};
    if (emit != "llvm" && emit != "ptx" && emit != "asm") throw UsageError{fmt::format("unknown --emit '{}' (llvm, ptx or asm)", emit)};
    if (emit == "ptx" && !target.is_gpu()) throw UsageError{"--emit ptx needs a GPU target (sm_NN); use --emit asm for the host"};
    // As optjit::Optimizer compiles it: a captured step that skips non-finite steps does not count them.
    k.codegen.count_applied_steps = k.codegen.capturable && k.policies.skip_nonfinite;
    Program program = as_optimizer_runs(load_program(file), k);
    KernelRequest request{program, k.passes, k.storage, target, k.codegen};
    try {
        write_output(output, emit_text(request, emit == "llvm" ? Emit::LLVM : Emit::Assembly));
    } catch (const std::invalid_argument& e) {
        throw InputError{fmt::format("optjit: {}\n", e.what())};
    }
    return 0;
}

std::string summary(const Program& program) {
    std::string hypers, states;
    for (const HyperDecl& h : program.hypers) hypers += " " + h.name;
    for (const StateDecl& s : program.states) states += " " + s.name;
    Program lowered = run_pipeline(program, {});
    int per_element = 0;
    for (const Assign& a : lowered.update)
        for_each_node(a.value, [&](const Expr& e) { per_element += e.op != Op::Number && e.op != Op::Ref; });
    return fmt::format("optimizer {}: hyper-parameters{}; states{}; {} assignments; lowered: {} per-launch scalars, {} operations per element",
                       program.name, hypers.empty() ? " none" : hypers, states.empty() ? " none" : states,
                       program.scalars.size() + program.update.size(), lowered.scalars.size(), per_element);
}

int cmd_check(Args& args) {
    std::vector<std::string> files;
    while (!args.done()) {
        std::string a = args.take();
        if (a == "--help") { fmt::print("{}", kCheckHelp); return 0; }
        if (a.size() > 1 && a[0] == '-') throw UsageError{fmt::format("unknown option '{}'", a)};
        files.push_back(a);
    }
    if (files.empty()) throw UsageError{"no program file given"};
    int status = 0;
    for (const std::string& f : files) {
        try {
            Program p = load_program(f);
            fmt::print("{}: ok: {}\n", f, summary(p));
        } catch (const InputError& e) {
            std::cerr << e.message;
            status = 1;
        }
    }
    return status;
}

int cmd_print(Args& args) {
    std::string file, after;
    bool all = false;
    PassOptions options;
    KernelOptions policies;  // only the gradient policies are read
    while (!args.done()) {
        std::string a = args.take();
        if (a == "--help") { fmt::print("{}", kPrintHelp); return 0; }
        if ((a == "--clip-grad-norm" || a == "--skip-nonfinite" || a == "--maximize" || a == "--drop-unused-states") &&
            take_kernel_option(args, a, policies))
            continue;
        if (a == "--after") after = args.value(a);
        else if (a == "--all-passes") all = true;
        else if (a == "--fast-math") options.fast_math = true;
        else if (a == "--specialize") options.specialize.insert(parse_assignment(args.value(a), a));
        else if (a.size() > 1 && a[0] == '-') throw UsageError{fmt::format("unknown option '{}'", a)};
        else if (file.empty()) file = a;
        else throw UsageError{fmt::format("one program at a time (got '{}' and '{}')", file, a)};
    }
    if (file.empty()) throw UsageError{"no program file given"};
    if (all && !after.empty()) throw UsageError{"--after and --all-passes exclude each other"};
    if (!after.empty() && !find_pass(after)) {
        std::string names;
        for (const Pass& p : pipeline_passes()) names += (names.empty() ? "" : ", ") + std::string(p.name);
        throw UsageError{fmt::format("unknown pass '{}' (passes: {})", after, names)};
    }
    policies.passes.specialize = options.specialize;
    Program program = as_optimizer_runs(load_program(file), policies);
    options.specialize = policies.passes.specialize;  // less what --drop-unused-states compiled in
    if (!all && after.empty()) {
        if (!options.specialize.empty()) throw UsageError{"--specialize needs --after or --all-passes"};
        if (options.fast_math) throw UsageError{"--fast-math needs --after or --all-passes"};
        fmt::print("{}", print(program));
        return 0;
    }
    // Stops the pipeline once the requested pass has run.
    struct Stop {};
    try {
        run_pipeline(program, options, [&](const Pass& pass, const Program& p) {
            if (all) fmt::print("# after {}\n{}", pass.name, print(p));
            else if (pass.name == after) {
                fmt::print("{}", print(p));
                throw Stop{};
            }
        });
    } catch (const Stop&) {
    } catch (const std::invalid_argument& e) {
        throw InputError{fmt::format("optjit: {}\n", e.what())};
    }
    return 0;
}

constexpr const char* kBenchHelp = R"(usage: optjit bench [--target host|cuda] [--optimizer NAME] [--hyper NAME=VALUE]... [--workload NAME]... [--states FORMAT]... [--size N] [--steps K] [--capturable] [--clip-grad-norm X] [--skip-nonfinite] [--ieee-math | --fast-math]

Steps a library optimizer (AdamW by default; bf16 parameters and gradients) through
optjit::Optimizer over a workload, one row per state format: median step time over K timed
steps with a new learning rate every step, the bytes a step must move (with the reduction
pass's reads, for LAMB, LARS and the gradient policies), GB/s, a copy of the same bytes timed in
the same run, state bytes per parameter, the first step's time (with its compiles) and the
compiles of the timed steps.
  --target host|cuda   where to step (default: the GPU if there is one, else the host)
  --optimizer NAME     a library optimizer: sgd adam adamw adagrad rmsprop lion ademamix lamb lars
                       adan adam_amsgrad adamw_amsgrad (default adamw)
  --hyper NAME=VALUE   a hyper-parameter's value (sgd --hyper momentum=0.9: SGD with momentum)
  --workload NAME      tensor (one tensor: 2^28 elements on the GPU, 2^24 on the host),
                       llama (Llama-3.2-1B's 146 tensors, 1.24 B parameters),
                       small (4096 tensors of 1 to 65536 elements); default: all three on the
                       GPU, tensor and small on the host
  --states FORMAT      fp32, bf16, q8, q4, fp8 for every state (quantized: unsigned for a state
                       that stays non-negative, like AdamW's v); default: all
  --size N             elements of the tensor workload
  --steps K            timed steps (default 30)
  --capturable         GPU: a capturable optimizer, each timed step a CUDA graph replay with
                       its lr written into the device block
  --clip-grad-norm X, --skip-nonfinite
                       the gradient policies (OptimizerOptions)
  --ieee-math, --fast-math
                       every kernel's math (default: fast for GPU kernels with quantized states)
)";

int cmd_bench(Args& args) {
    StepBenchOptions bench;
    std::string target_name;
    KernelOptions kernel;  // only the gradient policies and the math are read
    while (!args.done()) {
        std::string a = args.take();
        if (a == "--help") { fmt::print("{}", kBenchHelp); return 0; }
        if (a == "--target") target_name = args.value(a);
        else if (a == "--workload") bench.workloads.push_back(args.value(a));
        else if (a == "--states") bench.formats.push_back(args.value(a));
        else if (a == "--size") bench.tensor_elements = parse_integer(args.value(a), a, 1, 1ll << 34);
        else if (a == "--steps") bench.steps = int(parse_integer(args.value(a), a, 1, 100000));
        else if (a == "--capturable") bench.capturable = true;
        else if (a == "--optimizer") bench.optimizer = args.value(a);
        else if (a == "--hyper") bench.hypers.insert(parse_assignment(args.value(a), a));
        else if (a == "--clip-grad-norm" || a == "--skip-nonfinite" || a == "--ieee-math" || a == "--fast-math") take_kernel_option(args, a, kernel);
        else throw UsageError{fmt::format("unknown option '{}'", a)};
    }
    bench.policies = kernel.policies;
    bench.math = kernel.codegen.math;
    if (target_name.empty()) target_name = cuda::available() ? "cuda" : "host";
    if (target_name == "cuda") {
        if (!cuda::available()) throw InputError{fmt::format("optjit: --target cuda: {}\n", cuda::unavailable_reason())};
        bench.gpu = true;
    } else if (target_name == "host") {
        bench.gpu = false;
    } else {
        throw UsageError{fmt::format("unknown target '{}' (targets: host, cuda)", target_name)};
    }
    try {
        run_step_bench(bench);
    } catch (const std::invalid_argument& e) {
        throw UsageError{e.what()};
    }
    return 0;
}

int cmd_run(Args& args) {
    std::string file, target_name;
    RunOptions run;
    KernelOptions k;
    std::vector<int64_t> sizes{4096};
    while (!args.done()) {
        std::string a = args.take();
        if (a == "--help") { fmt::print("{}", kRunHelp); return 0; }
        if (take_kernel_option(args, a, k)) continue;
        if (a == "--target") target_name = args.value(a);
        else if (a == "--size") {
            sizes.clear();
            std::string list = args.value(a);
            for (size_t at = 0; at <= list.size();) {
                size_t comma = std::min(list.find(',', at), list.size());
                sizes.push_back(parse_integer(list.substr(at, comma - at), a, 1, 1ll << 34));
                at = comma + 1;
            }
        }
        else if (a == "--columns") run.columns = parse_integer(args.value(a), a, 1, 1ll << 34);
        else if (a == "--steps") run.steps = parse_integer(args.value(a), a, 0, 1ll << 31);
        else if (a == "--seed") run.seed = parse_integer(args.value(a), a, 0, 1ll << 62);
        else if (a == "--hyper") run.hypers.insert(parse_assignment(args.value(a), a));
        else if (a == "--check") run.check = true;
        else if (a.size() > 1 && a[0] == '-') throw UsageError{fmt::format("unknown option '{}'", a)};
        else if (file.empty()) file = a;
        else throw UsageError{fmt::format("one program at a time (got '{}' and '{}')", file, a)};
    }
    if (file.empty()) throw UsageError{"no program file given"};
    if (k.codegen.capturable) throw UsageError{"--capturable kernels are stepped by optjit::Optimizer; 'optjit run' launches eagerly"};
    if (k.codegen.whole_chunks) throw UsageError{"--whole-chunks is optjit::Optimizer's choice; 'optjit run' takes tensors of any size"};
    if (target_name.empty()) throw UsageError{"--target is required (interp, host or cuda)"};
    if (target_name == "interp") {
        run.interp = true;
        if (run.check) throw UsageError{"--check compares a kernel with the interpreter; use --target host or cuda"};
    } else if (target_name == "cuda") {
        if (!cuda::available()) throw InputError{fmt::format("optjit: --target cuda: {}\n", cuda::unavailable_reason())};
        run.request.target = Target{Target::Kind::NVPTX, cuda::init()};
    } else if (target_name == "host") {
        run.request.target = Target{};
    } else {
        throw UsageError{fmt::format("unknown target '{}' (targets: interp, host, cuda)", target_name)};
    }
    run.request.program = as_optimizer_runs(load_program(file), k, &run.hypers);
    run.request.passes = k.passes;
    run.request.storage = k.storage;
    run.request.options = k.codegen;
    run.sizes = sizes;
    for (int64_t size : sizes)
        if (run.columns > 0 && size % run.columns != 0)
            throw UsageError{fmt::format("--columns {}: {} elements are not whole rows of {}", run.columns, size, run.columns)};
    RunSummary result;
    try {
        result = run_steps(run);
    } catch (const std::invalid_argument& e) {
        throw InputError{fmt::format("optjit: {}\n", e.what())};
    }
    std::string where = run.request.target.is_gpu() ? fmt::format(" ({})", run.request.target.name()) : "";
    fmt::print("optimizer {}, target {}{}: {} of {} elements, {} steps, seed {}\n", run.request.program.name, target_name, where,
               sizes.size() == 1 ? "1 tensor" : fmt::format("{} tensors", sizes.size()), fmt::join(sizes, ", "), run.steps, run.seed);
    fmt::print("  storage: {}\n", to_string(run.request.storage, run.request.program));
    if (!run.interp) fmt::print("  first step {:.1f} ms, {} kernel compile(s)\n", result.first_step_ms, result.compiles);
    fmt::print("  {:<12} {:>22} {:>18}{}\n", "tensor", "L2 norm", "fp32 checksum", run.check ? "   max rel diff vs interp (tolerance)" : "");
    for (const TensorSummary& t : result.tensors) {
        bool ok = t.max_rel_diff <= t.tolerance && t.codes_wrong == 0;
        std::string check = run.check ? fmt::format("   {:.3g} ({:.3g}){}", t.max_rel_diff, t.tolerance, ok ? "" : "  FAIL") : "";
        if (run.check && t.codes_compared > 0)
            check += fmt::format("   codes: {} compared, {} apart by rounding, {} wrong", t.codes_compared, t.codes_straddling,
                                 t.codes_wrong);
        fmt::print("  {:<12} {:>22.15g} {:>18x}{}\n", t.name, t.norm, t.checksum, check);
    }
    for (const TensorSummary& r : result.reductions)  // the last step's, or the worst step's difference
        fmt::print("  {:<12} {:>22.15g} {:>18}   {:.3g} ({:.3g}){}\n", r.name, r.norm, "", r.max_rel_diff, r.tolerance,
                   r.max_rel_diff <= r.tolerance ? "" : "  FAIL");
    if (run.check) fmt::print("check: {}\n", result.passed ? "passed" : "FAILED");
    return result.passed ? 0 : 1;
}

int main_impl(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << kMainHelp;
        return 2;
    }
    std::string command = argv[1];
    if (command == "--help" || command == "-h") { fmt::print("{}", kMainHelp); return 0; }
    if (command == "--version") {
        fmt::print("optjit {} (LLVM {})\n", OPTJIT_VERSION, LLVM_VERSION_STRING);
        return 0;
    }
    Args args(argc, argv, 2, command);
    try {
        if (command == "check") return cmd_check(args);
        if (command == "print") return cmd_print(args);
        if (command == "run") return cmd_run(args);
        if (command == "compile") return cmd_compile(args);
        if (command == "bench") return cmd_bench(args);
        std::cerr << fmt::format("optjit: unknown command '{}'\n\n{}", command, kMainHelp);
        return 2;
    } catch (const UsageError& e) {
        std::cerr << fmt::format("optjit {}: {}\n(see 'optjit {} --help')\n", command, e.message, command);
        return 2;
    } catch (const InputError& e) {
        std::cerr << e.message;
        return 1;
    }
}

}  // namespace
}  // namespace optjit

int main(int argc, char** argv) {
    try {
        return optjit::main_impl(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "optjit: " << e.what() << "\n";
        return 1;
    }
}
