// libFuzzer target: the parser, the verifier, the printer and the pass pipeline on any bytes.
//
// Properties checked (abort on violation, so libFuzzer keeps the input):
//   - a rejected input has exactly one diagnostic with a known line:col, which renders;
//   - whatever the parser accepts prints and parses back to the same program, and printing
//     is a fixed point;
//   - every verifier diagnostic of a parsed program has a known position;
//   - a verified program goes through the pipeline (with and without a specialized
//     hyper-parameter) without an internal error, the result round-trips through text, and
//     it computes what the original computes on a few elements.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ir/diagnostic.h"
#include "ir/interpreter.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/pipeline.h"

using namespace optjit;

namespace {

[[noreturn]] void die(const char* what, const std::string& detail) {
    std::fprintf(stderr, "fuzz_parser: %s\n%s\n", what, detail.c_str());
    std::abort();
}

bool same_value(double a, double b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return a == b || std::fabs(a - b) <= 1e-12 * std::max(std::fabs(a), std::fabs(b));
}

// Runs both programs two steps over a few elements and compares p and the states.
void check_same_results(const Program& a, const Program& b, const std::string& text) {
    Interpreter ia(a, hyper_values(a, {}));
    std::map<std::string, double> hb;
    for (const HyperDecl& h : a.hypers)
        if (b.hyper_index(h.name) >= 0) hb[h.name] = h.value;
    Interpreter ib(b, hyper_values(b, hb));
    std::vector<HostTensor> ta(1), tb(1);
    ta[0].p = {0.5, -1.25, 3.0, 0.0};
    ta[0].g = {0.1, 2.0, -0.75, 1e-3};
    ia.init_states(ta[0]);
    tb = ta;
    for (int step = 1; step <= 2; ++step) {
        ia.step(step, ta);
        ib.step(step, tb);
        for (size_t i = 0; i < ta[0].p.size(); ++i) {
            bool same = same_value(ta[0].p[i], tb[0].p[i]);
            for (size_t s = 0; s < ta[0].states.size(); ++s) same = same && same_value(ta[0].states[s][i], tb[0].states[s][i]);
            if (!same) die("the pipeline changed the results", text + "\n--- lowered:\n" + print(b));
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    SourceText source{"fuzz.opt", text};
    ParseResult parsed = parse(text);
    if (!parsed.ok()) {
        if (parsed.errors.size() != 1 || !parsed.errors[0].loc.known()) die("a rejection without exactly one located diagnostic", text);
        (void)format_diagnostics(parsed.errors, &source);
        return 0;
    }
    const Program& program = parsed.program;
    std::string printed = print(program);
    ParseResult back = parse(printed);
    if (!back.ok()) die("printed text does not parse", printed + "\n" + format_diagnostics(back.errors, nullptr));
    if (!(back.program == program)) die("parse(print(x)) != x", printed);
    if (print(back.program) != printed) die("printing is not a fixed point", printed);

    std::vector<Diagnostic> errors = verify(program);
    for (const Diagnostic& d : errors)
        if (!d.loc.known()) die("a verifier diagnostic without a position", format_diagnostic(d, &source));
    (void)format_diagnostics(errors, &source);
    if (!errors.empty()) return 0;

    PassOptions options[3];
    if (!program.hypers.empty()) options[1].specialize[program.hypers[0].name] = program.hypers[0].value;
    options[2].fast_math = true;
    for (const PassOptions& o : options) {
        Program lowered = run_pipeline(program, o);  // an internal error throws: a crash here
        std::string lowered_text = print(lowered);
        ParseResult again = parse(lowered_text);
        if (!again.ok() || !(again.program == lowered)) die("the lowered program does not round-trip", lowered_text);
        // Fast math regroups products, which changes rounding (and can overflow a reciprocal):
        // its results are checked against the interpreter on the examples (test_passes).
        if (!o.fast_math) check_same_results(program, lowered, text);
    }
    return 0;
}
