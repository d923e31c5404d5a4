#include "ir/expr.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>

namespace optjit {

namespace {

// Precedence levels of the text form (see ir/parser.cpp): comparisons bind loosest, then
// additive, multiplicative, unary minus, power; leaves and calls are atoms.
constexpr int kCompare = 1, kAdditive = 2, kMultiplicative = 3, kUnary = 4, kPower = 5, kAtom = 6;

constexpr std::array<OpInfo, kOpCount> kOps = {{
    {"<number>", OpSyntax::Leaf, 0, kAtom},
    {"<name>", OpSyntax::Leaf, 0, kAtom},
    {"-", OpSyntax::Prefix, 1, kUnary},
    {"+", OpSyntax::Infix, 2, kAdditive},
    {"-", OpSyntax::Infix, 2, kAdditive},
    {"*", OpSyntax::Infix, 2, kMultiplicative},
    {"/", OpSyntax::Infix, 2, kMultiplicative},
    {"^", OpSyntax::Infix, 2, kPower},
    {"<", OpSyntax::Infix, 2, kCompare},
    {"<=", OpSyntax::Infix, 2, kCompare},
    {">", OpSyntax::Infix, 2, kCompare},
    {">=", OpSyntax::Infix, 2, kCompare},
    {"==", OpSyntax::Infix, 2, kCompare},
    {"!=", OpSyntax::Infix, 2, kCompare},
    {"select", OpSyntax::Call, 3, kAtom},
    {"sqrt", OpSyntax::Call, 1, kAtom},
    {"rsqrt", OpSyntax::Call, 1, kAtom},
    {"abs", OpSyntax::Call, 1, kAtom},
    {"sign", OpSyntax::Call, 1, kAtom},
    {"min", OpSyntax::Call, 2, kAtom},
    {"max", OpSyntax::Call, 2, kAtom},
    {"lerp", OpSyntax::Call, 3, kAtom},
    {"exp", OpSyntax::Call, 1, kAtom},
    {"log", OpSyntax::Call, 1, kAtom},
    {"tensor_sum", OpSyntax::Call, 1, kAtom},
    {"tensor_max", OpSyntax::Call, 1, kAtom},
    {"global_sum", OpSyntax::Call, 1, kAtom},
    {"global_max", OpSyntax::Call, 1, kAtom},
}};

}  // namespace

const OpInfo& op_info(Op op) { return kOps[size_t(op)]; }

std::optional<Op> call_op_named(std::string_view name) {
    for (int i = 0; i < kOpCount; ++i)
        if (kOps[i].syntax == OpSyntax::Call && kOps[i].spelling == name) return Op(i);
    return std::nullopt;
}

bool is_reduction(Op op) { return op >= Op::TensorSum && op <= Op::GlobalMax; }
bool is_global_reduction(Op op) { return op == Op::GlobalSum || op == Op::GlobalMax; }
bool is_comparison(Op op) { return op >= Op::Lt && op <= Op::Ne; }

Expr Expr::num(double v, Loc loc) {
    Expr e;
    e.op = Op::Number;
    e.number = v;
    e.loc = loc;
    return e;
}

Expr Expr::ref(std::string name, Loc loc) {
    Expr e;
    e.op = Op::Ref;
    e.name = std::move(name);
    e.loc = loc;
    return e;
}

Expr Expr::make(Op op, std::vector<Expr> args, Loc loc) {
    Expr e;
    e.op = op;
    e.args = std::move(args);
    e.loc = loc;
    return e;
}

bool operator==(const Expr& a, const Expr& b) {
    if (a.op != b.op) return false;
    if (a.op == Op::Number) return std::bit_cast<uint64_t>(a.number) == std::bit_cast<uint64_t>(b.number);
    if (a.op == Op::Ref) return a.name == b.name;
    return a.args == b.args;
}

int depth(const Expr& e) {
    int d = 0;
    for (const Expr& a : e.args) d = std::max(d, depth(a));
    return d + 1;
}

}  // namespace optjit
