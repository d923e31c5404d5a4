// Parser tests: what the grammar of ir/parser.h accepts (checked through the tree it builds)
// and what it rejects (checked through the exact message position).
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "ir/parser.h"
#include "ir/printer.h"

using namespace optjit;

namespace {

// Parses `update` lines inside a fixed header and returns the value of the first assignment.
Expr parse_expr(const std::string& expr) {
    ParseResult r = parse("optimizer t\n  hyper a = 1\n  hyper b = 2\n  hyper c = 3\n  update\n    p = " + expr + "\n");
    INFO("expression: ", expr);
    if (!r.ok()) FAIL("rejected: ", r.errors[0].message);
    REQUIRE(r.program.update.size() == 1);
    return r.program.update[0].value;
}

Expr n(double v) { return Expr::num(v); }
Expr r(const char* s) { return Expr::ref(s); }
Expr op(Op o, Expr x) { return Expr::make(o, {std::move(x)}); }
Expr op(Op o, Expr x, Expr y) { return Expr::make(o, {std::move(x), std::move(y)}); }
Expr op(Op o, Expr x, Expr y, Expr z) { return Expr::make(o, {std::move(x), std::move(y), std::move(z)}); }

// The single diagnostic for `text`, which must be rejected.
Diagnostic parse_error(const std::string& text) {
    ParseResult res = parse(text);
    INFO("text: ", text);
    REQUIRE(res.errors.size() == 1);
    return res.errors[0];
}

void check_error(const std::string& text, uint32_t line, uint32_t col, const std::string& contains) {
    Diagnostic d = parse_error(text);
    INFO("text: ", text, "\nmessage: ", d.message);
    CHECK(d.loc.line == line);
    CHECK(d.loc.col == col);
    CHECK(d.message.find(contains) != std::string::npos);
}

const std::string kHead = "optimizer t\nupdate\n";  // update statements start on line 3

}  // namespace

TEST_CASE("parser: a minimal program round-trips") {
    ParseResult r = parse("optimizer sgd\n hyper lr = 0.1\n update\n p = p - lr * g\n");
    REQUIRE(r.ok());
    CHECK(print(r.program) == "optimizer sgd\n  hyper lr = 0.1\n  update\n    p = p - lr * g\n");
}

TEST_CASE("parser: declarations, sections and locations") {
    ParseResult res = parse(
        "optimizer adam_2\n"
        "  hyper lr = 1e-3\n"
        "  hyper neg = -2.5\n"
        "  hyper z = -0\n"
        "  state m = 0\n"
        "  scalars\n"
        "    bc = 1 - a ^ step\n"
        "  update\n"
        "    m = m + g\n"
        "    p = p - lr * m / bc\n");
    REQUIRE(res.ok());
    const Program& p = res.program;
    CHECK(p.name == "adam_2");
    CHECK(p.name_loc.line == 1);
    CHECK(p.name_loc.col == 11);
    CHECK(p.name_loc.len == 6);
    REQUIRE(p.hypers.size() == 3);
    CHECK(p.hypers[0].value == 1e-3);
    CHECK(p.hypers[1].value == -2.5);
    CHECK(std::signbit(p.hypers[2].value));
    CHECK(p.hypers[1].loc.line == 3);
    CHECK(p.hypers[1].loc.col == 9);
    REQUIRE(p.states.size() == 1);
    CHECK(p.states[0].name == "m");
    REQUIRE(p.scalars.size() == 1);
    CHECK(p.scalars[0].target == "bc");
    CHECK(p.scalars[0].value == op(Op::Sub, n(1), op(Op::Pow, r("a"), r("step"))));
    REQUIRE(p.update.size() == 2);
    CHECK(p.update[1].loc.line == 10);
    CHECK(p.update[1].loc.col == 5);
    // An operator's location is its token.
    CHECK(p.update[1].value.op == Op::Sub);
    CHECK(p.update[1].value.loc.col == 11);
}

TEST_CASE("parser: precedence and associativity") {
    CHECK(parse_expr("a + b * c") == op(Op::Add, r("a"), op(Op::Mul, r("b"), r("c"))));
    CHECK(parse_expr("a * b + c") == op(Op::Add, op(Op::Mul, r("a"), r("b")), r("c")));
    CHECK(parse_expr("a - b - c") == op(Op::Sub, op(Op::Sub, r("a"), r("b")), r("c")));
    CHECK(parse_expr("a / b / c") == op(Op::Div, op(Op::Div, r("a"), r("b")), r("c")));
    CHECK(parse_expr("a / b * c") == op(Op::Mul, op(Op::Div, r("a"), r("b")), r("c")));
    CHECK(parse_expr("a ^ b ^ c") == op(Op::Pow, r("a"), op(Op::Pow, r("b"), r("c"))));
    CHECK(parse_expr("a * b ^ c") == op(Op::Mul, r("a"), op(Op::Pow, r("b"), r("c"))));
    CHECK(parse_expr("a + b < c * a") == op(Op::Lt, op(Op::Add, r("a"), r("b")), op(Op::Mul, r("c"), r("a"))));
    CHECK(parse_expr("(a + b) * c") == op(Op::Mul, op(Op::Add, r("a"), r("b")), r("c")));
    CHECK(parse_expr("(a < b) == c") == op(Op::Eq, op(Op::Lt, r("a"), r("b")), r("c")));
    CHECK(parse_expr("a <= b") == op(Op::Le, r("a"), r("b")));
    CHECK(parse_expr("a >= b") == op(Op::Ge, r("a"), r("b")));
    CHECK(parse_expr("a > b") == op(Op::Gt, r("a"), r("b")));
    CHECK(parse_expr("a != b") == op(Op::Ne, r("a"), r("b")));
    // Unary minus binds tighter than * but looser than ^.
    CHECK(parse_expr("-a * b") == op(Op::Mul, op(Op::Neg, r("a")), r("b")));
    CHECK(parse_expr("-a ^ b") == op(Op::Neg, op(Op::Pow, r("a"), r("b"))));
    CHECK(parse_expr("a ^ -b") == op(Op::Pow, r("a"), op(Op::Neg, r("b"))));
    CHECK(parse_expr("a ^ -b ^ c") == op(Op::Pow, r("a"), op(Op::Neg, op(Op::Pow, r("b"), r("c")))));
    CHECK(parse_expr("a - -b") == op(Op::Sub, r("a"), op(Op::Neg, r("b"))));
    CHECK(parse_expr("--a") == op(Op::Neg, op(Op::Neg, r("a"))));
    CHECK(parse_expr("(-a) ^ b") == op(Op::Pow, op(Op::Neg, r("a")), r("b")));
}

TEST_CASE("parser: negative literals versus unary minus") {
    CHECK(parse_expr("-2") == n(-2));
    CHECK(parse_expr("-(2)") == op(Op::Neg, n(2)));
    CHECK(parse_expr("-2 ^ 2") == op(Op::Neg, op(Op::Pow, n(2), n(2))));
    CHECK(parse_expr("(-2) ^ 2") == op(Op::Pow, n(-2), n(2)));
    CHECK(parse_expr("a ^ -2") == op(Op::Pow, r("a"), n(-2)));
    CHECK(parse_expr("a ^ -2 * b") == op(Op::Mul, op(Op::Pow, r("a"), n(-2)), r("b")));
    CHECK(parse_expr("-2 * a") == op(Op::Mul, n(-2), r("a")));
    CHECK(parse_expr("a - -2") == op(Op::Sub, r("a"), n(-2)));
    CHECK(parse_expr("- 2") == n(-2));  // the space does not matter
    CHECK(parse_expr("--2") == op(Op::Neg, n(-2)));
    Expr z = parse_expr("-0");
    REQUIRE(z.op == Op::Number);
    CHECK(std::signbit(z.number));
    CHECK(parse_expr("-(-2)") == op(Op::Neg, n(-2)));
}

TEST_CASE("parser: numbers") {
    CHECK(parse_expr("1.5") == n(1.5));
    CHECK(parse_expr(".5") == n(0.5));
    CHECK(parse_expr("5.") == n(5));
    CHECK(parse_expr("1e3") == n(1000));
    CHECK(parse_expr("1E+3") == n(1000));
    CHECK(parse_expr("2.5e-3") == n(2.5e-3));
    CHECK(parse_expr("1.7976931348623157e308") == n(1.7976931348623157e308));
    CHECK(parse_expr("5e-324") == n(5e-324));
    CHECK(parse_expr("0.1") == n(0.1));
    CHECK(parse_expr("000123") == n(123));
}

TEST_CASE("parser: calls") {
    CHECK(parse_expr("sqrt(a)") == op(Op::Sqrt, r("a")));
    CHECK(parse_expr("lerp(a, b, c)") == op(Op::Lerp, r("a"), r("b"), r("c")));
    CHECK(parse_expr("select(a < b, a, -b)") == op(Op::Select, op(Op::Lt, r("a"), r("b")), r("a"), op(Op::Neg, r("b"))));
    CHECK(parse_expr("max(min(a, b), c)") == op(Op::Max, op(Op::Min, r("a"), r("b")), r("c")));
    CHECK(parse_expr("tensor_sum(g * g)") == op(Op::TensorSum, op(Op::Mul, r("g"), r("g"))));
    CHECK(parse_expr("-sqrt(a) ^ 2") == op(Op::Neg, op(Op::Pow, op(Op::Sqrt, r("a")), n(2))));
    // Arity is the verifier's business: the parser keeps what it read.
    CHECK(parse_expr("sqrt(a, b)") == op(Op::Sqrt, r("a"), r("b")));
    CHECK(parse_expr("sqrt()").args.empty());
    // A known function name without '(' is an ordinary name.
    CHECK(parse_expr("sqrt") == r("sqrt"));
}

TEST_CASE("parser: comments, blank lines, CRLF and free indentation") {
    const char* canonical = "optimizer t\n  hyper lr = 0.5\n  state m = 1\n  update\n    m = m + g\n    p = p - lr * m\n";
    ParseResult a = parse(canonical);
    REQUIRE(a.ok());
    ParseResult b = parse(
        "# leading comment\n\n"
        "   optimizer t   # trailing comment\n"
        "\n"
        "hyper lr=0.5\n"
        "\t\t\tstate   m =1#no space before the comment\n"
        "   # a comment line inside\n"
        "\n\n"
        "update\n"
        "m=m+g\n"
        "                      p = p - lr * m");  // no final newline
    REQUIRE(b.ok());
    CHECK(a.program == b.program);
    std::string crlf;
    for (char c : std::string(canonical)) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    ParseResult c = parse(crlf);
    REQUIRE(c.ok());
    CHECK(a.program == c.program);
    // A comment ending the file without a newline.
    CHECK(parse("optimizer t\nupdate\np = g # end").ok());
    // Columns count bytes from 1 after CRLF line ends.
    CHECK(c.program.update[1].loc.line == 6);
    CHECK(c.program.update[1].loc.col == 5);
}

TEST_CASE("parser: an empty update section and no declarations parse") {
    ParseResult r = parse("optimizer t\nupdate\n");
    REQUIRE(r.ok());
    CHECK(r.program.update.empty());
    CHECK(parse("optimizer t\nupdate").ok());
}

TEST_CASE("parser: rejected syntax has the exact line and column") {
    check_error("", 1, 1, "expected 'optimizer'");
    check_error("\n\n  \n", 4, 1, "expected 'optimizer'");
    check_error("optimiser t\n", 1, 1, "expected 'optimizer'");
    check_error("optimizer\n", 1, 10, "expected the optimizer's name");
    check_error("optimizer update\n", 1, 11, "keyword");
    check_error("optimizer t u\n", 1, 13, "expected end of line");
    check_error("optimizer t\n", 2, 1, "expected 'hyper', 'state', 'scalars' or 'update'");
    check_error("optimizer t\nhyper\n", 2, 6, "hyper-parameter name");
    check_error("optimizer t\nhyper lr 1\n", 2, 10, "expected '='");
    check_error("optimizer t\nhyper lr =\n", 2, 11, "expected a number");
    check_error("optimizer t\nhyper lr = x\n", 2, 12, "expected a number");
    check_error("optimizer t\nhyper lr = 1 + 2\n", 2, 14, "expected end of line");
    check_error("optimizer t\nhyper lr = --1\n", 2, 13, "expected a number");
    check_error("optimizer t\nstate m = 1e999\n", 2, 11, "out of the range");
    check_error("optimizer t\nfoo\n", 2, 1, "expected 'hyper', 'state', 'scalars' or 'update'");
    check_error(kHead + "hyper x = 1\n", 3, 1, "must come before");
    check_error(kHead + "p = \n", 3, 5, "expected an expression, found end of line");
    check_error(kHead + "p = ", 3, 5, "expected an expression, found end of file");
    check_error(kHead + "p g\n", 3, 3, "expected '='");
    check_error(kHead + "= g\n", 3, 1, "expected an assignment target");
    check_error(kHead + "  p = (g + 1\n", 3, 13, "expected ')' to close the '(' at column 7");
    check_error(kHead + "p = (g + 1", 3, 11, "found end of file");
    check_error(kHead + "p = g +\n", 3, 8, "expected an expression");
    check_error(kHead + "p = g g\n", 3, 7, "expected end of line");
    check_error(kHead + "p = g)\n", 3, 6, "expected end of line");
    check_error(kHead + "p = a < b < c\n", 3, 11, "do not chain");
    check_error(kHead + "p = a == b != c\n", 3, 12, "do not chain");
    check_error(kHead + "p = foo(g)\n", 3, 5, "unknown function 'foo'");
    check_error(kHead + "p = sqrt(g,)\n", 3, 12, "expected an expression");
    check_error(kHead + "p = sqrt(g\n", 3, 11, "expected ',' or ')' in the arguments of 'sqrt'");
    check_error(kHead + "p = max(g p)\n", 3, 11, "expected ',' or ')'");
    check_error(kHead + "p = update\n", 3, 5, "keyword");
    check_error(kHead + "update = g\n", 3, 1, "keyword");
    check_error(kHead + "p = 1.2.3\n", 3, 5, "malformed number");
    check_error(kHead + "p = 12abc\n", 3, 5, "malformed number");
    check_error(kHead + "p = 1e\n", 3, 5, "malformed number");
    check_error(kHead + "p = 0x10\n", 3, 5, "malformed number");
    check_error(kHead + "p = 1e999\n", 3, 5, "out of the range");
    check_error(kHead + "p = -1e999\n", 3, 6, "out of the range");
    check_error(kHead + "p = 1e-999\n", 3, 5, "out of the range");
    check_error(kHead + "p = g $ 2\n", 3, 7, "unexpected character '$'");
    check_error(kHead + "p = g; p = g\n", 3, 6, "unexpected character ';'");
    check_error(kHead + "p = g\x01\n", 3, 6, "unexpected byte 0x01");
    check_error(kHead + std::string("p = g\0", 6) + "\n", 3, 6, "unexpected byte 0x00");
    check_error(kHead + "p = \xc3\xa9\n", 3, 5, "unexpected byte 0xc3");
    check_error(kHead + "p = g\x0c\n", 3, 6, "unexpected byte 0x0c");
    check_error(kHead + "p = .\n", 3, 5, "unexpected character '.'");
    check_error(kHead + "p = !g\n", 3, 5, "unexpected character '!'");
    check_error(kHead + "p = a =< b\n", 3, 7, "expected end of line");
    check_error("optimizer t\r\nupdate\r\np = (g\r\n", 3, 7, "expected ')'");  // at the line's end, as with LF
    check_error("optimizer t\nupdate\np = (g\n", 3, 7, "expected ')'");
    check_error("optimizer t\nupdate\n\tp = $\n", 3, 6, "unexpected character");
    check_error("optimizer t\nscalars\nx = 1\nscalars\n", 4, 1, "keyword");
    check_error("optimizer t\nupdate\np = g\nupdate\n", 4, 1, "keyword");
    check_error("optimizer t\nupdate\np = g\nscalars\n", 4, 1, "keyword");
}

TEST_CASE("parser: a long token is described briefly") {
    std::string name(1000, 'x');
    Diagnostic d = parse_error(kHead + "p = g " + name + "\n");
    CHECK(d.loc.col == 7);
    CHECK(d.loc.len == 1000);
    CHECK(d.message.size() < 120);
}

TEST_CASE("parser: nesting depth is bounded, not the stack") {
    auto nested = [](int k, const std::string& open, const std::string& inner, const std::string& close) {
        std::string s;
        for (int i = 0; i < k; ++i) s += open;
        s += inner;
        for (int i = 0; i < k; ++i) s += close;
        return s;
    };
    // Depth kMaxExprDepth is accepted, one more is not.
    CHECK(parse(kHead + "p = " + nested(kMaxExprDepth - 1, "-", "g", "") + "\n").ok());
    CHECK_FALSE(parse(kHead + "p = " + nested(kMaxExprDepth, "-", "g", "") + "\n").ok());
    CHECK(parse(kHead + "p = " + nested(kMaxExprDepth - 1, "sqrt(", "g", ")") + "\n").ok());
    CHECK_FALSE(parse(kHead + "p = " + nested(kMaxExprDepth, "sqrt(", "g", ")") + "\n").ok());
    // Deep input: each gets one diagnostic near where the limit is crossed, quickly.
    for (const std::string& deep : {nested(100000, "(", "g", ")"), nested(100000, "-", "g", ""),
                                    nested(100000, "-(", "g", ")"), nested(100000, "sqrt(", "g", ")"),
                                    nested(100000, "g ^ ", "g", ""), nested(100000, "g + ", "g", ""),
                                    nested(100000, "g * ", "g", ""), nested(100000, "(g < ", "g", ")"),
                                    nested(100000, "(", "", "")}) {
        Diagnostic d = parse_error(kHead + "p = " + deep + "\n");
        INFO(deep.substr(0, 20), ": ", d.message);
        CHECK(d.loc.line == 3);
        CHECK(d.message.find("nested too deeply") != std::string::npos);
    }
}

TEST_CASE("parser: lines and columns on long and many lines") {
    std::string text = kHead;
    for (int i = 0; i < 10000; ++i) text += "\n";
    text += std::string(100000, ' ') + "p = $\n";
    Diagnostic d = parse_error(text);
    CHECK(d.loc.line == 10003);
    CHECK(d.loc.col == 100005);
}
