// The C++ builder makes the same programs as the text form, and verify() catches its misuses.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "examples/adamw_builder.h"
#include "ir/builder.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"

using namespace optjit;

namespace {

std::string read_source_file(const std::string& relative) {
    std::ifstream in(std::string(OPTJIT_SOURCE_DIR) + "/" + relative);
    REQUIRE_MESSAGE(in.good(), "cannot open ", relative);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

bool mentions(const std::vector<Diagnostic>& ds, const std::string& fragment) {
    for (const Diagnostic& d : ds)
        if (d.message.find(fragment) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_CASE("builder: AdamW built in C++ equals examples/adamw.opt") {
    ParseResult parsed = parse(read_source_file("examples/adamw.opt"));
    REQUIRE(parsed.ok());
    CHECK(verify(parsed.program).empty());
    Program built = build_adamw();
    CHECK(built == parsed.program);
    CHECK(print(built) == print(parsed.program));
}

TEST_CASE("builder: programs differing in one constant or name are not equal") {
    // Guards the test above against an operator== that always says yes.
    Program built = build_adamw();
    Program other = build_adamw();
    other.hypers[0].value = 2e-3;
    CHECK_FALSE(built == other);
    other = build_adamw();
    other.update[1].target = "v";
    CHECK_FALSE(built == other);
}

TEST_CASE("builder: a minus applied to a literal is the negative literal as in the text form") {
    Builder b("neg");
    Value lr = b.hyper("lr", 0.1);
    b.assign(b.p(), b.p() + -Value(2) * lr * b.g());  // unary minus on a Value
    ParseResult parsed = parse("optimizer neg\n hyper lr = 0.1\n update\n p = p + -2 * lr * g\n");
    REQUIRE(parsed.ok());
    CHECK(b.build() == parsed.program);
}

TEST_CASE("builder: misuses are rejected by verify()") {
    SUBCASE("assigning to g") {
        Builder b("bad");
        Value lr = b.hyper("lr", 0.1);
        b.assign(b.g(), b.g() * 2);
        b.assign(b.p(), b.p() - lr * b.g());
        std::vector<Diagnostic> ds = verify(b.program());
        CHECK(ds.size() == 1);
        CHECK(mentions(ds, "cannot assign to the gradient 'g'"));
        CHECK_THROWS_AS(b.build(), ProgramError);
    }
    SUBCASE("an undefined name") {
        Builder b("bad");
        Value lr = b.hyper("lr", 0.1);
        Value momentum(Expr::ref("momentum"));  // never declared with b.hyper
        b.assign(b.p(), b.p() - lr * momentum * b.g());
        std::vector<Diagnostic> ds = verify(b.program());
        CHECK(ds.size() == 1);
        CHECK(mentions(ds, "undefined name 'momentum'"));
        CHECK_THROWS_AS(b.build(), ProgramError);
    }
    SUBCASE("a state never updated, a hyper-parameter assigned") {
        Builder b("bad");
        Value lr = b.hyper("lr", 0.1);
        b.state("m", 0);
        b.assign(lr, lr * 2);
        b.assign(b.p(), b.p() - lr * b.g());
        std::vector<Diagnostic> ds = verify(b.program());
        CHECK(ds.size() == 2);
        CHECK(mentions(ds, "cannot assign to hyper-parameter 'lr'"));
        CHECK(mentions(ds, "state 'm' is never updated"));
    }
    SUBCASE("a temporary bound twice") {
        Builder b("bad");
        Value t = b.let("t", b.g() * 2);
        b.let("t", t * 2);
        b.assign(b.p(), b.p() - t);
        CHECK(mentions(verify(b.program()), "'t' is defined twice"));
    }
}
