// The C++ builder: the same IR as the text form, written with operators.
//
//   optjit::Builder b("sgd");
//   auto lr = b.hyper("lr", 1e-2), mu = b.hyper("momentum", 0.9);
//   auto buf = b.state("buf", 0);
//   b.assign(buf, mu * buf + b.g());
//   b.assign(b.p(), b.p() - lr * buf);
//   optjit::Program prog = b.build();   // verified; throws ProgramError otherwise
//
// A Value names what it was made from; after b.assign(buf, ...) the same `buf` reads the new
// value, exactly as a later line of the text form would. Use pow(a, b) for `a ^ b` (C++'s ^
// has the wrong precedence).
#pragma once

#include <string>

#include "ir/program.h"

namespace optjit {

class Value {
public:
    Value(double v) : expr_(Expr::num(v)) {}  // NOLINT: numbers mix freely with values
    explicit Value(Expr e) : expr_(std::move(e)) {}
    const Expr& expr() const { return expr_; }

private:
    Expr expr_;
};

Value operator-(const Value& a);
Value operator+(const Value& a, const Value& b);
Value operator-(const Value& a, const Value& b);
Value operator*(const Value& a, const Value& b);
Value operator/(const Value& a, const Value& b);
Value operator<(const Value& a, const Value& b);
Value operator<=(const Value& a, const Value& b);
Value operator>(const Value& a, const Value& b);
Value operator>=(const Value& a, const Value& b);
Value operator==(const Value& a, const Value& b);
Value operator!=(const Value& a, const Value& b);

namespace dsl {
Value pow(const Value& a, const Value& b);
Value select(const Value& cond, const Value& a, const Value& b);
Value sqrt(const Value& a);
Value rsqrt(const Value& a);
Value abs(const Value& a);
Value sign(const Value& a);
Value min(const Value& a, const Value& b);
Value max(const Value& a, const Value& b);
Value lerp(const Value& a, const Value& b, const Value& t);
Value exp(const Value& a);
Value log(const Value& a);
Value tensor_sum(const Value& a);
Value tensor_max(const Value& a);
Value global_sum(const Value& a);
Value global_max(const Value& a);
}  // namespace dsl

class Builder {
public:
    explicit Builder(std::string name);

    Value p() const;
    Value g() const;
    Value step() const;
    Value hyper(const std::string& name, double default_value);
    Value state(const std::string& name, double init);

    // Appends `target = value` to the update section and returns a Value reading `target`.
    Value assign(const Value& target, const Value& value);
    // Appends `name = value` for a new temporary.
    Value let(const std::string& name, const Value& value);

    // The program, verified (throws ProgramError on a misuse).
    Program build() const;
    // The program as built, unverified (for tests of the verifier).
    const Program& program() const { return program_; }

private:
    Program program_;
};

}  // namespace optjit
