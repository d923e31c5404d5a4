// Expressions of the optimizer IR.
//
// An expression is a tree of operations over numbers and names. A name refers to the latest
// binding of that name at the point of use (an input, a hyper-parameter, a state or an earlier
// assignment), which makes each assignment a new SSA value while the text stays readable.
// Every value is a real number: comparisons give 1 or 0, and `select` takes any non-zero as true.
// Reductions are ordinary nodes whose argument is evaluated over every element of a tensor
// (tensor_*) or of every tensor of the step (global_*); their result is a scalar.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace optjit {

// A position in program text: 1-based line and column, and the length of the token or
// construct it points at. line == 0 means "not from text" (built with the C++ builder).
struct Loc {
    uint32_t line = 0;
    uint32_t col = 0;
    uint32_t len = 1;
    bool known() const { return line != 0; }
};

enum class Op : uint8_t {
    Number, Ref,
    Neg,
    Add, Sub, Mul, Div, Pow,
    Lt, Le, Gt, Ge, Eq, Ne,
    Select, Sqrt, Rsqrt, Abs, Sign, Min, Max, Lerp, Exp, Log,
    TensorSum, TensorMax, GlobalSum, GlobalMax,
};
inline constexpr int kOpCount = int(Op::GlobalMax) + 1;

enum class OpSyntax : uint8_t { Leaf, Prefix, Infix, Call };

struct OpInfo {
    std::string_view spelling;  // the operator or function name in the text form
    OpSyntax syntax;
    int arity;
    int precedence;  // binding strength in the text form; higher binds tighter (leaves and calls: 6)
};

const OpInfo& op_info(Op op);
// The call-syntax operation named `name` (sqrt, max, tensor_sum, ...), if there is one.
std::optional<Op> call_op_named(std::string_view name);
bool is_reduction(Op op);
bool is_global_reduction(Op op);
bool is_comparison(Op op);

struct Expr {
    Op op = Op::Number;
    double number = 0;       // Op::Number
    std::string name;        // Op::Ref
    std::vector<Expr> args;  // operands, op_info(op).arity of them in a well-formed tree
    Loc loc;                 // where it came from; not part of equality

    static Expr num(double v, Loc loc = {});
    static Expr ref(std::string name, Loc loc = {});
    static Expr make(Op op, std::vector<Expr> args, Loc loc = {});

    // Structural equality: same operations, names and bit-identical numbers; locations ignored.
    friend bool operator==(const Expr& a, const Expr& b);
};

// Number of nodes on the longest path from `e` to a leaf (a leaf has depth 1).
int depth(const Expr& e);

// Calls fn(node) for every node of `e`, parents before children.
template <class Fn>
void for_each_node(const Expr& e, Fn&& fn) {
    fn(e);
    for (const Expr& a : e.args) for_each_node(a, fn);
}

// True if any node of `e` satisfies pred.
template <class Pred>
bool any_node(const Expr& e, Pred&& pred) {
    if (pred(e)) return true;
    for (const Expr& a : e.args)
        if (any_node(a, pred)) return true;
    return false;
}

}  // namespace optjit
