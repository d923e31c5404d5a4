// Printer tests: parse(print(x)) == x and print idempotence, on the examples and on random
// programs; and the rendering of diagnostics.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "ir/diagnostic.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "random_program.h"

using namespace optjit;

namespace {

std::vector<std::filesystem::path> example_programs() {
    std::vector<std::filesystem::path> out;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(OPTJIT_SOURCE_DIR) / "examples"))
        if (e.path().extension() == ".opt") out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

std::string slurp(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// parse(print(x)) == x, print(parse(print(x))) == print(x), and the reprinted text verifies
// exactly as the original does.
void check_round_trip(const Program& x) {
    std::string text = print(x);
    INFO("printed:\n", text);
    ParseResult back = parse(text);
    if (!back.ok()) FAIL("reprinted text rejected at ", back.errors[0].loc.line, ":", back.errors[0].loc.col, ": ", back.errors[0].message);
    CHECK(back.program == x);
    CHECK(print(back.program) == text);
    CHECK(verify(back.program).size() == verify(x).size());
}

}  // namespace

TEST_CASE("printer: every example round-trips") {
    auto files = example_programs();
    REQUIRE(!files.empty());
    for (const auto& f : files) {
        INFO("example: ", f.string());
        ParseResult r = parse(slurp(f));
        REQUIRE(r.ok());
        CHECK(verify(r.program).empty());
        check_round_trip(r.program);
    }
}

TEST_CASE("printer: canonical form of adamw") {
    ParseResult r = parse(slurp(std::filesystem::path(OPTJIT_SOURCE_DIR) / "examples" / "adamw.opt"));
    REQUIRE(r.ok());
    CHECK(print(r.program) ==
          "optimizer adamw\n"
          "  hyper lr = 0.001\n"
          "  hyper beta1 = 0.9\n"
          "  hyper beta2 = 0.999\n"
          "  hyper eps = 1e-08\n"
          "  hyper weight_decay = 0.01\n"
          "  state m = 0\n"
          "  state v = 0\n"
          "  update\n"
          "    p = p * (1 - lr * weight_decay)\n"
          "    m = lerp(m, g, 1 - beta1)\n"
          "    v = lerp(v, g * g, 1 - beta2)\n"
          "    p = p - lr / (1 - beta1 ^ step) * (m / (sqrt(v) / sqrt(1 - beta2 ^ step) + eps))\n");
}

TEST_CASE("printer: parentheses exactly where the grammar needs them") {
    auto n = [](double v) { return Expr::num(v); };
    auto r = [](const char* s) { return Expr::ref(s); };
    auto op2 = [](Op o, Expr a, Expr b) { return Expr::make(o, {std::move(a), std::move(b)}); };
    auto op1 = [](Op o, Expr a) { return Expr::make(o, {std::move(a)}); };
    CHECK(print(op1(Op::Neg, n(2))) == "-(2)");
    CHECK(print(n(-2)) == "-2");
    CHECK(print(op1(Op::Neg, n(-2))) == "- -2");
    CHECK(print(op1(Op::Neg, op1(Op::Neg, r("x")))) == "- -x");
    CHECK(print(op1(Op::Neg, op2(Op::Pow, n(2), n(2)))) == "-2 ^ 2");
    CHECK(print(op2(Op::Pow, n(-2), n(2))) == "(-2) ^ 2");
    CHECK(print(op2(Op::Pow, r("a"), n(-2))) == "a ^ -2");
    CHECK(print(op2(Op::Pow, op2(Op::Pow, r("a"), r("b")), r("c"))) == "(a ^ b) ^ c");
    CHECK(print(op2(Op::Pow, r("a"), op2(Op::Pow, r("b"), r("c")))) == "a ^ b ^ c");
    CHECK(print(op2(Op::Sub, r("a"), op2(Op::Sub, r("b"), r("c")))) == "a - (b - c)");
    CHECK(print(op2(Op::Sub, op2(Op::Sub, r("a"), r("b")), r("c"))) == "a - b - c");
    CHECK(print(op2(Op::Div, r("a"), op2(Op::Mul, r("b"), r("c")))) == "a / (b * c)");
    CHECK(print(op2(Op::Lt, op2(Op::Lt, r("a"), r("b")), r("c"))) == "(a < b) < c");
    CHECK(print(op2(Op::Eq, r("a"), op2(Op::Ne, r("b"), r("c")))) == "a == (b != c)");
    CHECK(print(op2(Op::Mul, op1(Op::Neg, r("a")), n(-0.0))) == "-a * -0");
    CHECK(print(op1(Op::Neg, op2(Op::Mul, r("a"), r("b")))) == "-(a * b)");
    CHECK(print(op2(Op::Pow, op1(Op::Neg, r("a")), r("b"))) == "(-a) ^ b");
    CHECK(print(Expr::make(Op::Lerp, {r("a"), op2(Op::Lt, r("b"), r("c")), n(1e-300)})) == "lerp(a, b < c, 1e-300)");
}

TEST_CASE("printer: numbers print shortest and read back bit-exact") {
    const double values[] = {0.0, -0.0, 1.0, -1.0, 0.1, 1e-3, 1e-8, 0.999, 1.0 / 3, 123456789012345678.0,
                             1e21, 1e22, 1e-7, std::numeric_limits<double>::max(), std::numeric_limits<double>::lowest(),
                             std::numeric_limits<double>::min(), std::numeric_limits<double>::denorm_min(),
                             -std::numeric_limits<double>::denorm_min(), 2.2250738585072009e-308, 9007199254740993.0};
    for (double v : values) {
        std::string s = print_number(v);
        INFO("value ", v, " printed ", s);
        Program prog;
        prog.name = "t";
        prog.hypers.push_back({"h", v, {}});
        prog.update.push_back({"p", Expr::num(v), {}});
        check_round_trip(prog);
    }
    CHECK(print_number(0.001) == "0.001");
    CHECK(print_number(-0.0) == "-0");
    CHECK(print_number(1e-8) == "1e-08");
}

TEST_CASE("printer: thousands of random programs round-trip") {
    uint64_t seed = testing::fresh_seed();
    INFO("seed: ", seed);
    testing::ProgramGenerator gen(seed, {});
    for (int i = 0; i < 3000; ++i) {
        Program prog = gen.program();
        INFO("program ", i);
        // The generator only makes programs the verifier accepts.
        std::vector<Diagnostic> errors = verify(prog);
        if (!errors.empty()) FAIL("generator made an invalid program: ", format_diagnostics(errors, nullptr), print(prog));
        check_round_trip(prog);
    }
}

TEST_CASE("printer: random expressions of every shape round-trip") {
    // Raw trees (not verified): any op under any op, deeper than the program generator goes.
    uint64_t seed = testing::fresh_seed();
    INFO("seed: ", seed);
    testing::ProgramGenerator numbers(seed, {});
    std::mt19937_64 rng(seed);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    std::function<Expr(int)> gen = [&](int depth) -> Expr {
        if (depth <= 1 || pick(0, 6) == 0) {
            static const char* const names[] = {"a", "b", "sqrt", "e1", "_x"};
            return pick(0, 1) ? Expr::num(numbers.number()) : Expr::ref(names[pick(0, 4)]);
        }
        Op op = Op(pick(int(Op::Neg), kOpCount - 1));
        std::vector<Expr> args;
        for (int i = 0; i < op_info(op).arity; ++i) args.push_back(gen(depth - 1));
        return Expr::make(op, std::move(args));
    };
    for (int i = 0; i < 3000; ++i) {
        Program prog;
        prog.name = "t";
        prog.update.push_back({"p", gen(pick(1, 12)), {}});
        INFO("expression ", i);
        check_round_trip(prog);
    }
}

TEST_CASE("diagnostics: caret under the token") {
    SourceText src{"f.opt", "optimizer t\n\tp = g + $x\n"};
    CHECK(format_diagnostic({{2, 10, 2}, "bad"}, &src) == "f.opt:2:10: error: bad\n   p = g + $x\n           ^~\n");
    CHECK(format_diagnostic({{1, 1, 9}, "first"}, &src) == "f.opt:1:1: error: first\n  optimizer t\n  ^" + std::string(8, '~') + "\n");
    // Unknown location or no source: the message line only (with the position when known).
    CHECK(format_diagnostic({{}, "built"}, &src) == "f.opt: error: built\n");
    CHECK(format_diagnostic({{3, 4, 1}, "m"}, nullptr) == "<builder>:3:4: error: m\n");
    // CRLF and control characters do not reach the terminal.
    SourceText crlf{"c.opt", "a\x01\x7f b\r\nx"};
    CHECK(format_diagnostic({{1, 5, 1}, "m"}, &crlf) == "c.opt:1:5: error: m\n  a?? b\n      ^\n");
    // End of file: the caret just after the last character.
    SourceText eof{"e.opt", "p = (g"};
    CHECK(format_diagnostic({{1, 7, 1}, "m"}, &eof) == "e.opt:1:7: error: m\n  p = (g\n        ^\n");
    CHECK(format_diagnostics({{{1, 1, 1}, "one"}, {{1, 2, 1}, "two"}}, &eof) ==
          "e.opt:1:1: error: one\n  p = (g\n  ^\ne.opt:1:2: error: two\n  p = (g\n   ^\n");
}

TEST_CASE("diagnostics: at most 50 are rendered, then a count") {
    SourceText src{"m.opt", "x\n"};
    std::vector<Diagnostic> ds(100000, Diagnostic{{1, 1, 1}, "m"});
    std::string out = format_diagnostics(ds, &src);
    CHECK(out.size() < 10000);
    CHECK(out.ends_with("\n99950 more errors not shown\n"));
    ds.resize(51);
    CHECK(format_diagnostics(ds, &src).ends_with("  ^\n1 more error not shown\n"));
    ds.resize(50);
    CHECK(format_diagnostics(ds, &src).ends_with("  ^\n"));
}

TEST_CASE("diagnostics: a very long line is shown as a window") {
    std::string line = std::string(5000, 'a') + "$" + std::string(5000, 'b');
    SourceText src{"long.opt", "optimizer t\n" + line + "\n"};
    std::string out = format_diagnostic({{2, 5001, 1}, "here"}, &src);
    INFO(out);
    std::string expect_line = "  ..." + std::string(50, 'a') + "$" + std::string(49, 'b') + "...\n";
    std::string expect_caret = "  " + std::string(53, ' ') + "^\n";
    CHECK(out == "long.opt:2:5001: error: here\n" + expect_line + expect_caret);
    // At the start of the line: no leading ellipsis; a long token's underline stays in the window.
    out = format_diagnostic({{2, 1, 10001}, "all"}, &src);
    CHECK(out == "long.opt:2:1: error: all\n  " + std::string(100, 'a') + "...\n  ^" + std::string(99, '~') + "\n");
    // At the end: no trailing ellipsis.
    out = format_diagnostic({{2, 10001, 1}, "end"}, &src);
    CHECK(out == "long.opt:2:10001: error: end\n  ..." + std::string(51, 'b') + "\n  " + std::string(53, ' ') + "^\n");
    // A 10 MB line still gives a short message.
    SourceText huge{"huge.opt", std::string(10'000'000, 'x')};
    CHECK(format_diagnostic({{1, 5'000'000, 10'000'000}, "m"}, &huge).size() < 400);
    // A location beyond its line (a hand-made program) does not blow up the underline.
    CHECK(format_diagnostic({{1, 20'000'000, 1'000'000'000}, "m"}, &huge).size() < 400);
    CHECK(format_diagnostic({{7, 3, 1'000'000}, "no such line"}, &src).size() < 400);
}

TEST_CASE("printer: a chain of minuses within the depth limit prints as text within it") {
    // Regression (found by the fuzzer): "-(-(-(...)))" counted two nesting levels per minus
    // when parsed again, so a valid tree printed as text the parser rejected.
    Expr e = Expr::ref("g");
    for (int i = 0; i < 200; ++i) e = Expr::make(Op::Neg, {e});
    Program p;
    p.name = "t";
    p.update.push_back({"p", e, {}});
    ParseResult back = parse(print(p));
    REQUIRE(back.ok());
    CHECK(back.program == p);
}
