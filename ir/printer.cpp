#include "ir/printer.h"

#include <fmt/format.h>

#include <cmath>

namespace optjit {

namespace {

// A negative literal reads back as one token only when written bare ("-2"), so it binds like
// unary minus; everything else has its operation's precedence.
int precedence(const Expr& e) {
    if (e.op == Op::Number && std::signbit(e.number)) return op_info(Op::Neg).precedence;
    return op_info(e.op).precedence;
}

void print_expr(const Expr& e, std::string& out);

void print_operand(const Expr& e, bool parens, std::string& out) {
    if (parens) out += '(';
    print_expr(e, out);
    if (parens) out += ')';
}

void print_expr(const Expr& e, std::string& out) {
    const OpInfo& info = op_info(e.op);
    switch (info.syntax) {
    case OpSyntax::Leaf:
        out += e.op == Op::Number ? print_number(e.number) : e.name;
        return;
    case OpSyntax::Prefix: {
        // "-(2)" keeps Neg(2) distinct from the literal -2. A minus before a minus is written
        // "- -x", not "-(-x)": parentheses would count as one more nesting level when the text
        // is parsed again, and a tree within the parser's depth limit must print as text
        // within it.
        const Expr& a = e.args.at(0);
        if (a.op == Op::Neg || (a.op == Op::Number && std::signbit(a.number))) {
            out += info.spelling;
            out += ' ';
            print_expr(a, out);
            return;
        }
        bool parens = a.op == Op::Number || precedence(a) < info.precedence;
        out += info.spelling;
        print_operand(a, parens, out);
        return;
    }
    case OpSyntax::Infix: {
        const Expr& l = e.args.at(0);
        const Expr& r = e.args.at(1);
        int p = info.precedence;
        bool right_assoc = e.op == Op::Pow;
        bool chains = !is_comparison(e.op);
        // The base of a power is an atom in the grammar; its exponent may start with a minus.
        bool lparens = e.op == Op::Pow ? precedence(l) <= p : precedence(l) < p || (precedence(l) == p && (right_assoc || !chains));
        bool rparens = e.op == Op::Pow ? precedence(r) < op_info(Op::Neg).precedence
                                       : precedence(r) < p || (precedence(r) == p && (!right_assoc || !chains));
        print_operand(l, lparens, out);
        out += ' ';
        out += info.spelling;
        out += ' ';
        print_operand(r, rparens, out);
        return;
    }
    case OpSyntax::Call:
        out += info.spelling;
        out += '(';
        for (size_t i = 0; i < e.args.size(); ++i) {
            if (i) out += ", ";
            print_expr(e.args[i], out);
        }
        out += ')';
        return;
    }
}

void print_assigns(const char* section, const std::vector<Assign>& assigns, std::string& out) {
    out += fmt::format("  {}\n", section);
    for (const Assign& a : assigns) out += fmt::format("    {} = {}\n", a.target, print(a.value));
}

}  // namespace

std::string print_number(double v) {
    // fmt's default for double is the shortest representation that round-trips.
    return fmt::format("{}", v);
}

std::string print(const Expr& expr) {
    std::string out;
    print_expr(expr, out);
    return out;
}

std::string print(const Program& program) {
    std::string out = fmt::format("optimizer {}\n", program.name);
    for (const HyperDecl& h : program.hypers) out += fmt::format("  hyper {} = {}\n", h.name, print_number(h.value));
    for (const StateDecl& s : program.states) out += fmt::format("  state {} = {}\n", s.name, print_number(s.init));
    if (!program.scalars.empty()) print_assigns("scalars", program.scalars, out);
    print_assigns("update", program.update, out);
    return out;
}

}  // namespace optjit
