// Verifier tests: one per rule of ir/verifier.h, each checking the message and its position.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ir/analysis.h"
#include "ir/builder.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"

using namespace optjit;

namespace {

std::vector<Diagnostic> verify_text(const std::string& text) {
    ParseResult r = parse(text);
    INFO("text:\n", text);
    if (!r.ok()) FAIL("parse error: ", r.errors[0].message);
    return verify(r.program);
}

// `text` must give exactly one diagnostic, at line:col, containing `contains`.
void check_one(const std::string& text, uint32_t line, uint32_t col, const std::string& contains) {
    std::vector<Diagnostic> ds = verify_text(text);
    INFO("text:\n", text, "diagnostics:\n", format_diagnostics(ds, nullptr));
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].loc.line == line);
    CHECK(ds[0].loc.col == col);
    CHECK(ds[0].message.find(contains) != std::string::npos);
}

// A valid program with hyper lr, states m and v; `body` goes after the update keyword (line 6).
std::string prog(const std::string& body, const std::string& scalars = "") {
    return "optimizer t\n"
           "  hyper lr = 0.1\n"
           "  state m = 0\n"
           "  state v = 0\n" +
           (scalars.empty() ? std::string() : "  scalars\n" + scalars) +
           "  update\n" + body;
}
const std::string kUpdates = "    m = g\n    v = g\n    p = p - lr * m\n";  // 3 lines

Program minimal() {
    Program p;
    p.name = "t";
    p.update.push_back({"p", Expr::ref("g"), {}});
    return p;
}

}  // namespace

TEST_CASE("verifier: a valid program has no diagnostics") {
    CHECK(verify_text(prog(kUpdates)).empty());
    CHECK(verify_text(prog("    t = tensor_sum(g * g)\n    u = global_max(abs(g))\n" + kUpdates + "    p = p / sqrt(t + u)\n",
                           "    bc = 1 - lr ^ step\n"))
              .empty());
}

TEST_CASE("verifier: undefined name") {
    check_one(prog("    x = lr * nope\n" + kUpdates), 6, 14, "undefined name 'nope'");
    check_one(prog(kUpdates, "    s = q\n"), 6, 9, "undefined name 'q'");
}

TEST_CASE("verifier: use before assignment") {
    check_one(prog("    x = y + 1\n    y = g\n" + kUpdates), 6, 9, "'y' is used before it is assigned (at line 7)");
}

TEST_CASE("verifier: assignment to g, step or a hyper-parameter") {
    check_one(prog("    g = g * 2\n" + kUpdates), 6, 5, "cannot assign to the gradient 'g'");
    check_one(prog("    step = 1\n" + kUpdates), 6, 5, "cannot assign to 'step'");
    check_one(prog(kUpdates + "    lr = 2\n"), 9, 5, "cannot assign to hyper-parameter 'lr'");
    check_one(prog(kUpdates, "    lr = 2\n"), 6, 5, "cannot assign to hyper-parameter 'lr'");
}

TEST_CASE("verifier: a state never updated") {
    check_one(prog("    m = g\n    p = p - lr * m\n"), 4, 9, "state 'v' is never updated");
}

TEST_CASE("verifier: p never updated") {
    check_one(prog("    m = g\n    v = g\n"), 1, 11, "optimizer 't' never updates the parameter 'p'");
    Program empty;
    empty.name = "e";
    std::vector<Diagnostic> ds = verify(empty);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].message.find("never updates the parameter 'p'") != std::string::npos);
}

TEST_CASE("verifier: a temporary defined twice") {
    check_one(prog("    x = g\n    x = 2 * g\n" + kUpdates), 7, 5, "'x' is defined twice (first at line 6)");
    // Across sections too.
    check_one(prog("    x = g\n" + kUpdates, "    x = lr\n"), 8, 5, "'x' is defined twice (first at line 6)");
    // p and states may be reassigned.
    CHECK(verify_text(prog(kUpdates + "    p = p * 2\n    m = m + 1\n")).empty());
}

TEST_CASE("verifier: a hyper-parameter or state declared twice") {
    check_one("optimizer t\n  hyper a = 1\n  hyper a = 2\n  update\n    p = a\n", 3, 9, "'a' is defined twice (first at line 2)");
    check_one("optimizer t\n  state s = 1\n  state s = 2\n  update\n    s = g\n    p = s\n", 3, 9, "'s' is defined twice (first at line 2)");
    {
        // A hyper and a state of one name: the first diagnostic is the clash (the others
        // follow from the name reading as the hyper-parameter).
        std::vector<Diagnostic> ds = verify_text("optimizer t\n  hyper s = 1\n  state s = 2\n  update\n    s = g\n    p = s\n");
        REQUIRE(!ds.empty());
        CHECK(ds[0].loc.line == 3);
        CHECK(ds[0].message == "'s' is defined twice (first at line 2)");
    }
    // The built-in names cannot be declared.
    check_one("optimizer t\n  hyper g = 1\n  update\n    p = g\n", 2, 9, "'g' is built in");
    check_one("optimizer t\n  state p = 1\n  update\n    p = g\n", 2, 9, "'p' is built in");
    check_one("optimizer t\n  hyper step = 1\n  update\n    p = g\n", 2, 9, "'step' is built in");
}

TEST_CASE("verifier: wrong number of arguments") {
    check_one(prog("    x = sqrt(g, m)\n" + kUpdates), 6, 9, "'sqrt' takes 1 argument, got 2");
    check_one(prog("    x = lerp(g, m)\n" + kUpdates), 6, 9, "'lerp' takes 3 arguments, got 2");
    check_one(prog("    x = max()\n" + kUpdates), 6, 9, "'max' takes 2 arguments, got 0");
    check_one(prog("    x = select(g, 1, 2, 3)\n" + kUpdates), 6, 9, "'select' takes 3 arguments, got 4");
    check_one(prog("    x = 1 + tensor_sum(g, g)\n" + kUpdates), 6, 13, "'tensor_sum' takes 1 argument, got 2");
    // A misuse inside a wrong call is still found.
    std::vector<Diagnostic> ds = verify_text(prog("    x = exp(nope, g)\n" + kUpdates));
    REQUIRE(ds.size() == 2);
    CHECK(ds[0].message.find("'exp' takes 1 argument") != std::string::npos);
    CHECK(ds[1].message.find("undefined name 'nope'") != std::string::npos);
    CHECK(ds[1].loc.col == 13);
}

// A reduction may read another reduction's value, directly or through names: it runs in a
// later reduction pass (its level), and reductions are numbered in statement order, an
// enclosing one before those in its argument.
TEST_CASE("verifier: a reduction that reads a reduction is valid, one level later") {
    auto levels = [](const std::string& text) {
        std::vector<Diagnostic> ds = verify_text(text);
        INFO(format_diagnostics(ds, nullptr));
        REQUIRE(ds.empty());
        Program program = parse(text).program;
        std::vector<std::string> out;
        const std::vector<int> level = reduction_levels(program);
        const std::vector<Reduction> list = reductions(program);
        for (size_t k = 0; k < list.size(); ++k) out.push_back(std::string(op_info(list[k].op).spelling) + ":" + std::to_string(level[k]));
        return out;
    };
    using V = std::vector<std::string>;
    CHECK(levels(prog("    x = tensor_sum(g * global_max(g))\n" + kUpdates)) == V{"tensor_sum:2", "global_max:1"});
    // Through a temporary, through two, and through a state updated with a reduction's value.
    CHECK(levels(prog("    n = tensor_max(abs(g))\n    x = global_sum(g / n)\n" + kUpdates)) == V{"tensor_max:1", "global_sum:2"});
    CHECK(levels(prog("    n = tensor_sum(g)\n    k = n * 2\n    x = tensor_max(k * g)\n    y = global_sum(x * g)\n" + kUpdates)) ==
          V{"tensor_sum:1", "tensor_max:2", "global_sum:3"});
    CHECK(levels(prog("    m = g / tensor_sum(g)\n    v = g\n    p = p - lr * tensor_max(m)\n")) == V{"tensor_sum:1", "tensor_max:2"});
    // A reduction goes to the latest pass its readers allow that already loads its argument's
    // inputs: tensor_sum(c * c) could be level 2 but joins tensor_max's pass, which reads g.
    CHECK(levels(prog("    n = global_sum(g * g)\n    c = g / n\n    t = tensor_max(abs(m) * global_max(abs(c)))\n"
                      "    q = tensor_sum(m * t + tensor_sum(c * c))\n" + kUpdates)) ==
          V{"global_sum:1", "tensor_max:3", "global_max:2", "tensor_sum:4", "tensor_sum:3"});
    // Side by side: one level.
    CHECK(levels(prog("    x = tensor_sum(g) / tensor_max(g * g)\n" + kUpdates)) == V{"tensor_sum:1", "tensor_max:1"});
    CHECK(reduction_level_count(parse(prog(kUpdates)).program) == 0);
}

TEST_CASE("verifier: a reduction in the scalars section") {
    check_one(prog(kUpdates, "    s = global_sum(lr)\n"), 6, 9, "'global_sum' cannot be used in the scalars section");
}

TEST_CASE("verifier: a per-element value in the scalars section") {
    check_one(prog(kUpdates, "    s = lr * g\n"), 6, 14, "'g' varies per element and cannot be used in the scalars section");
    check_one(prog(kUpdates, "    s = p\n"), 6, 9, "'p' varies per element");
    check_one(prog(kUpdates, "    s = 1 + m\n"), 6, 13, "'m' varies per element");
    // Scalars may use numbers, hyper-parameters, step and earlier scalars.
    CHECK(verify_text(prog(kUpdates, "    a = 2\n    b = lr * step ^ a\n")).empty());
    // The statement-level rule, for a hand-made program whose scalar reads a local bound per
    // element (it cannot be spelled in text: the local would not be visible yet).
    Program p = minimal();
    p.scalars.push_back({"s", Expr::make(Op::Neg, {Expr::ref("p")}), {5, 3, 1}});
    std::vector<Diagnostic> ds = verify(p);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].message.find("'p' varies per element") != std::string::npos);
}

TEST_CASE("verifier: assignment to p or a state in the scalars section") {
    check_one(prog(kUpdates, "    p = lr\n"), 6, 5, "'p' is per element and can only be assigned in 'update'");
    check_one(prog(kUpdates, "    m = lr\n"), 6, 5, "'m' is per element and can only be assigned in 'update'");
}

TEST_CASE("verifier: non-finite numbers") {
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    {
        Builder b("t");
        Value lr = b.hyper("lr", inf);
        b.assign(b.p(), b.p() - lr * b.g());
        std::vector<Diagnostic> ds = verify(b.program());
        REQUIRE(ds.size() == 1);
        CHECK(ds[0].message == "hyper-parameter 'lr' has a non-finite default");
        CHECK_FALSE(ds[0].loc.known());
        CHECK_THROWS_AS(b.build(), ProgramError);
    }
    {
        Builder b("t");
        Value m = b.state("m", nan);
        b.assign(m, b.g());
        b.assign(b.p(), b.p() - m);
        std::vector<Diagnostic> ds = verify(b.program());
        REQUIRE(ds.size() == 1);
        CHECK(ds[0].message == "state 'm' has a non-finite initial value");
    }
    {
        Builder b("t");
        b.assign(b.p(), b.p() * Value(Expr::num(-inf)));
        std::vector<Diagnostic> ds = verify(b.program());
        REQUIRE(ds.size() == 1);
        CHECK(ds[0].message == "a number in the program is not finite");
        try {
            b.build();
            FAIL("no exception");
        } catch (const ProgramError& e) {
            CHECK(std::string(e.what()) == "<builder>: error: a number in the program is not finite\n");
            CHECK(e.diagnostics().size() == 1);
        }
    }
    {
        // A hand-made program keeps its locations.
        Program p = minimal();
        p.update[0].value = Expr::make(Op::Add, {Expr::ref("g"), Expr::num(nan, {4, 9, 3})});
        std::vector<Diagnostic> ds = verify(p);
        REQUIRE(ds.size() == 1);
        CHECK(ds[0].loc.line == 4);
        CHECK(ds[0].loc.col == 9);
    }
}

TEST_CASE("verifier: invalid names") {
    auto one = [](const Program& p, const std::string& contains) {
        std::vector<Diagnostic> ds = verify(p);
        INFO(format_diagnostics(ds, nullptr));
        REQUIRE(ds.size() == 1);
        CHECK(ds[0].message.find(contains) != std::string::npos);
    };
    Program p = minimal();
    p.name = "has space";
    one(p, "'has space' is not a valid optimizer name");
    p.name = "update";
    one(p, "'update' is not a valid optimizer name");
    p.name = "";
    one(p, "'' is not a valid optimizer name");
    p = minimal();
    p.hypers.push_back({"1x", 1, {}});
    one(p, "'1x' is not a valid hyper-parameter name");
    p = minimal();
    p.hypers.push_back({"state", 1, {}});
    one(p, "'state' is not a valid hyper-parameter name");
    p = minimal();
    p.states.push_back({"a-b", 0, {}});
    p.update.push_back({"a-b", Expr::ref("g"), {}});
    CHECK(verify(p).size() >= 1);
    CHECK(verify(p)[0].message.find("'a-b' is not a valid state name") != std::string::npos);
    p = minimal();
    p.update.insert(p.update.begin(), {"x y", Expr::ref("g"), {}});
    one(p, "'x y' is not a valid name");
    p = minimal();
    p.update.insert(p.update.begin(), {"scalars", Expr::ref("g"), {}});
    one(p, "'scalars' is not a valid name");
    // Through the text form, the parser already rejects keywords as names.
    CHECK_FALSE(parse("optimizer t\n  hyper update = 1\n  update\n    p = g\n").ok());
}

TEST_CASE("verifier: diagnostics come in source order, one per misuse") {
    std::vector<Diagnostic> ds = verify_text(
        "optimizer t\n"
        "  hyper lr = 1\n"
        "  state m = 0\n"
        "  update\n"
        "    x = nope\n"
        "    lr = 2\n"
        "    x = sqrt(g, g)\n");
    REQUIRE(ds.size() == 6);
    CHECK(ds[0].loc.line == 1);  // p never updated
    CHECK(ds[1].loc.line == 3);  // m never updated
    CHECK(ds[2].loc.line == 5);  // undefined name
    CHECK(ds[3].loc.line == 6);  // assignment to a hyper-parameter
    CHECK(ds[4].loc.line == 7);  // x defined twice (column 5), then sqrt's arity (column 9)
    CHECK(ds[5].message.find("'sqrt' takes 1 argument") != std::string::npos);
    CHECK(ds[4].message.find("'x' is defined twice") != std::string::npos);
}

TEST_CASE("verifier: parse_and_verify renders against the file name") {
    try {
        parse_and_verify("optimizer t\nupdate\n  p = q\n", "x.opt");
        FAIL("no exception");
    } catch (const ProgramError& e) {
        CHECK(std::string(e.what()) == "x.opt:3:7: error: undefined name 'q'\n    p = q\n        ^\n");
    }
    CHECK_THROWS_AS(parse_and_verify("optimizer\n", "x.opt"), ProgramError);
    CHECK(parse_and_verify("optimizer t\nupdate\n  p = g\n", "x.opt").update.size() == 1);
}

TEST_CASE("verifier: a huge name is shortened in messages") {
    std::string name(1'000'000, 'x');
    std::vector<Diagnostic> ds = verify_text("optimizer t\nupdate\n  p = " + name + "\n");
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].message == "undefined name '" + std::string(40, 'x') + "...'");
    CHECK(ds[0].loc.len == 1'000'000);
}

TEST_CASE("verifier: many misuses take linear time") {
    // 10^5 statements reading an undefined name: one diagnostic each, quickly.
    std::string text = "optimizer t\nupdate\n";
    for (int i = 0; i < 100000; ++i) text += "t" + std::to_string(i) + " = nope + later\n";
    text += "later = g\np = g\n";
    std::vector<Diagnostic> ds = verify_text(text);
    REQUIRE(ds.size() == 200000);
    CHECK(ds[0].message == "undefined name 'nope'");
    CHECK(ds[1].message == "'later' is used before it is assigned (at line 100003)");
}
