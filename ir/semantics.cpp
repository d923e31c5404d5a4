#include "ir/semantics.h"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace optjit {

double nan_min(double a, double b) {
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::quiet_NaN();
    return (a < b || (a == b && std::signbit(a))) ? a : b;
}

double nan_max(double a, double b) {
    if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::quiet_NaN();
    return (a > b || (a == b && !std::signbit(a))) ? a : b;
}

double evaluate(Op op, double a, double b, double c) {
    switch (op) {
    case Op::Neg: return -a;
    case Op::Add: return a + b;
    case Op::Sub: return a - b;
    case Op::Mul: return a * b;
    case Op::Div: return a / b;
    case Op::Pow: return std::pow(a, b);
    case Op::Lt: return a < b;
    case Op::Le: return a <= b;
    case Op::Gt: return a > b;
    case Op::Ge: return a >= b;
    case Op::Eq: return a == b;
    case Op::Ne: return a != b;
    case Op::Select: return a != 0 ? b : c;
    case Op::Sqrt: return std::sqrt(a);
    case Op::Rsqrt: return 1 / std::sqrt(a);
    case Op::Abs: return std::fabs(a);
    case Op::Sign: return a > 0 ? 1.0 : a < 0 ? -1.0 : a;
    case Op::Min: return nan_min(a, b);
    case Op::Max: return nan_max(a, b);
    case Op::Lerp: return a + c * (b - a);
    case Op::Exp: return std::exp(a);
    case Op::Log: return std::log(a);
    default: throw std::logic_error("evaluate: not an elementwise operation");
    }
}

}  // namespace optjit
