// The optjit command-line tool. Exit codes: 0 success, 1 bad input (a program, a file, a
// value out of tolerance), 2 bad usage (unknown option, missing argument).
#include <fmt/format.h>
#include <llvm/Config/llvm-config.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "ir/analysis.h"
#include "ir/interpreter.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/pipeline.h"
#include "runtime/random.h"

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

constexpr const char* kPrintHelp = R"(usage: optjit print FILE [--after PASS | --all-passes] [--specialize NAME=VALUE]...

Prints the program in canonical form: as parsed, after the pass PASS, or after every pass.
  --after PASS             run the pipeline up to PASS and print the result
  --all-passes             print the program after each pass, each under a '# after PASS' line
  --specialize NAME=VALUE  make hyper-parameter NAME the constant VALUE (the specialize pass)
passes, in order: specialize, constant-fold, hoist-scalars, cse, dead-code
)";

constexpr const char* kRunHelp = R"(usage: optjit run FILE --target interp [--size N] [--steps K] [--seed S] [--hyper NAME=VALUE]...

Runs K optimizer steps over one tensor of N elements: the parameter starts as standard normal
values, each step's gradient is standard normal, all drawn deterministically from the seed.
Prints, for the parameter and each state, its L2 norm and a checksum of its fp32 values.
  --target interp        the float64 reference interpreter (values stored as fp32)
  --size N               elements (default 4096)
  --steps K              steps (default 10)
  --seed S               seed of the random data (default 0)
  --hyper NAME=VALUE     a hyper-parameter's value (default: the program's)
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

// Parses and verifies; on failure prints the diagnostics and throws InputError.
Program load_program(const std::string& path) {
    std::string text = read_file(path);
    try {
        return parse_and_verify(text, path == "-" ? "<stdin>" : path);
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
    while (!args.done()) {
        std::string a = args.take();
        if (a == "--help") { fmt::print("{}", kPrintHelp); return 0; }
        if (a == "--after") after = args.value(a);
        else if (a == "--all-passes") all = true;
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
    Program program = load_program(file);
    if (!all && after.empty()) {
        if (!options.specialize.empty()) throw UsageError{"--specialize needs --after or --all-passes"};
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

// FNV-1a over the fp32 bits of the values: equal checksums mean bit-identical fp32 data.
uint64_t checksum(const std::vector<double>& values) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (double v : values) {
        float f = float(v);
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        for (int i = 0; i < 4; ++i) {
            h ^= (bits >> (8 * i)) & 0xff;
            h *= 0x100000001b3ull;
        }
    }
    return h;
}

double norm(const std::vector<double>& values) {
    double s = 0;
    for (double v : values) s += v * v;
    return std::sqrt(s);
}

int cmd_run(Args& args) {
    std::string file, target;
    long long size = 4096, steps = 10, seed = 0;
    std::map<std::string, double> hypers;
    while (!args.done()) {
        std::string a = args.take();
        if (a == "--help") { fmt::print("{}", kRunHelp); return 0; }
        if (a == "--target") target = args.value(a);
        else if (a == "--size") size = parse_integer(args.value(a), a, 1, 1ll << 31);
        else if (a == "--steps") steps = parse_integer(args.value(a), a, 0, 1ll << 31);
        else if (a == "--seed") seed = parse_integer(args.value(a), a, 0, 1ll << 62);
        else if (a == "--hyper") hypers.insert(parse_assignment(args.value(a), a));
        else if (a.size() > 1 && a[0] == '-') throw UsageError{fmt::format("unknown option '{}'", a)};
        else if (file.empty()) file = a;
        else throw UsageError{fmt::format("one program at a time (got '{}' and '{}')", file, a)};
    }
    if (file.empty()) throw UsageError{"no program file given"};
    if (target.empty()) throw UsageError{"--target is required (interp)"};
    if (target != "interp") throw UsageError{fmt::format("unknown target '{}' (targets: interp)", target)};
    Program program = load_program(file);
    std::vector<double> hyper;
    try {
        hyper = hyper_values(program, hypers);
    } catch (const std::invalid_argument& e) {
        throw InputError{fmt::format("optjit: {}\n", e.what())};
    }
    StorageSignature storage;  // fp32 everywhere
    Interpreter interp(program, hyper, storage);
    std::vector<HostTensor> tensors(1);
    HostTensor& t = tensors[0];
    t.p.resize(size);
    t.g.resize(size);
    for (long long i = 0; i < size; ++i) t.p[i] = float(normal(seed, 0, i));
    interp.init_states(t);
    for (long long k = 1; k <= steps; ++k) {
        for (long long i = 0; i < size; ++i) t.g[i] = float(normal(seed, uint64_t(k), i));
        interp.step(k, tensors);
    }
    fmt::print("optimizer {}, target {}: 1 tensor of {} elements, {} steps, seed {}\n", program.name, target, size, steps, seed);
    fmt::print("  {:<12} {:>22} {:>18}\n", "tensor", "L2 norm", "fp32 checksum");
    fmt::print("  {:<12} {:>22.15g} {:>18x}\n", "p", norm(t.p), checksum(t.p));
    for (size_t s = 0; s < program.states.size(); ++s)
        fmt::print("  {:<12} {:>22.15g} {:>18x}\n", program.states[s].name, norm(t.states[s]), checksum(t.states[s]));
    return 0;
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
