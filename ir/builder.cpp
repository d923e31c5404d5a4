#include "ir/builder.h"

#include <stdexcept>

#include "ir/verifier.h"

namespace optjit {

namespace {
Value make(Op op, std::initializer_list<const Value*> args) {
    std::vector<Expr> exprs;
    for (const Value* a : args) exprs.push_back(a->expr());
    return Value(Expr::make(op, std::move(exprs)));
}
}  // namespace

// A minus applied to a literal is the negative literal, as in the text form.
Value operator-(const Value& a) {
    if (a.expr().op == Op::Number) return Value(-a.expr().number);
    return make(Op::Neg, {&a});
}
Value operator+(const Value& a, const Value& b) { return make(Op::Add, {&a, &b}); }
Value operator-(const Value& a, const Value& b) { return make(Op::Sub, {&a, &b}); }
Value operator*(const Value& a, const Value& b) { return make(Op::Mul, {&a, &b}); }
Value operator/(const Value& a, const Value& b) { return make(Op::Div, {&a, &b}); }
Value operator<(const Value& a, const Value& b) { return make(Op::Lt, {&a, &b}); }
Value operator<=(const Value& a, const Value& b) { return make(Op::Le, {&a, &b}); }
Value operator>(const Value& a, const Value& b) { return make(Op::Gt, {&a, &b}); }
Value operator>=(const Value& a, const Value& b) { return make(Op::Ge, {&a, &b}); }
Value operator==(const Value& a, const Value& b) { return make(Op::Eq, {&a, &b}); }
Value operator!=(const Value& a, const Value& b) { return make(Op::Ne, {&a, &b}); }

namespace dsl {
Value pow(const Value& a, const Value& b) { return make(Op::Pow, {&a, &b}); }
Value select(const Value& c, const Value& a, const Value& b) { return make(Op::Select, {&c, &a, &b}); }
Value sqrt(const Value& a) { return make(Op::Sqrt, {&a}); }
Value rsqrt(const Value& a) { return make(Op::Rsqrt, {&a}); }
Value abs(const Value& a) { return make(Op::Abs, {&a}); }
Value sign(const Value& a) { return make(Op::Sign, {&a}); }
Value min(const Value& a, const Value& b) { return make(Op::Min, {&a, &b}); }
Value max(const Value& a, const Value& b) { return make(Op::Max, {&a, &b}); }
Value lerp(const Value& a, const Value& b, const Value& t) { return make(Op::Lerp, {&a, &b, &t}); }
Value exp(const Value& a) { return make(Op::Exp, {&a}); }
Value log(const Value& a) { return make(Op::Log, {&a}); }
Value tensor_sum(const Value& a) { return make(Op::TensorSum, {&a}); }
Value tensor_max(const Value& a) { return make(Op::TensorMax, {&a}); }
Value global_sum(const Value& a) { return make(Op::GlobalSum, {&a}); }
Value global_max(const Value& a) { return make(Op::GlobalMax, {&a}); }
}  // namespace dsl

Builder::Builder(std::string name) { program_.name = std::move(name); }

Value Builder::p() const { return Value(Expr::ref(std::string(kParamName))); }
Value Builder::g() const { return Value(Expr::ref(std::string(kGradName))); }
Value Builder::step() const { return Value(Expr::ref(std::string(kStepName))); }

Value Builder::hyper(const std::string& name, double default_value) {
    program_.hypers.push_back({name, default_value, {}});
    return Value(Expr::ref(name));
}

Value Builder::state(const std::string& name, double init) {
    program_.states.push_back({name, init, {}});
    return Value(Expr::ref(name));
}

Value Builder::assign(const Value& target, const Value& value) {
    if (target.expr().op != Op::Ref)
        throw std::invalid_argument("Builder::assign: the target must be p, a state or a named value");
    program_.update.push_back({target.expr().name, value.expr(), {}});
    return target;
}

Value Builder::let(const std::string& name, const Value& value) {
    program_.update.push_back({name, value.expr(), {}});
    return Value(Expr::ref(name));
}

Program Builder::build() const {
    verify_or_throw(program_);
    return program_;
}

}  // namespace optjit
