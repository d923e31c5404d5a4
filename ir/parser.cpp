#include "ir/parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <optional>

namespace optjit {

namespace {

enum class Tok { Name, Number, Punct, Newline, End };

struct Token {
    Tok kind;
    std::string_view text;
    Loc loc;
};

// Thrown inside the parser only; parse() turns it into the result's diagnostic.
struct Failure {
    Diagnostic diagnostic;
};

[[noreturn]] void fail(Loc loc, std::string message) { throw Failure{{loc, std::move(message)}}; }

std::string describe(const Token& t) {
    switch (t.kind) {
    case Tok::Newline: return "end of line";
    case Tok::End: return "end of file";
    default: {
        std::string_view s = t.text.substr(0, 40);
        return fmt::format("'{}'{}", s, t.text.size() > 40 ? "..." : "");
    }
    }
}

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

class Lexer {
public:
    explicit Lexer(std::string_view text) : text_(text) {}

    Token next() {
        for (;;) {
            if (pos_ >= text_.size()) return {Tok::End, {}, here(1)};
            char c = text_[pos_];
            if (c == ' ' || c == '\t' || (c == '\r' && !crlf())) { advance(1); continue; }
            if (c == '#') {
                while (pos_ < text_.size() && text_[pos_] != '\n' && !crlf()) advance(1);
                continue;
            }
            break;
        }
        char c = text_[pos_];
        Loc loc = here(1);
        size_t start = pos_;
        if (c == '\n' || crlf()) {  // a CRLF line's end is where its \r is, as an LF line's is at its \n
            const size_t bytes = c == '\n' ? 1 : 2;
            Token t{Tok::Newline, text_.substr(pos_, bytes), loc};
            pos_ += bytes;
            ++line_;
            line_start_ = pos_;
            return t;
        }
        if (is_name_start(c)) {
            while (pos_ < text_.size() && is_name_char(text_[pos_])) advance(1);
            return finish(Tok::Name, start, loc);
        }
        if (is_digit(c) || (c == '.' && pos_ + 1 < text_.size() && is_digit(text_[pos_ + 1]))) {
            while (pos_ < text_.size() && is_digit(text_[pos_])) advance(1);
            if (pos_ < text_.size() && text_[pos_] == '.') {
                advance(1);
                while (pos_ < text_.size() && is_digit(text_[pos_])) advance(1);
            }
            if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
                size_t save = pos_;
                advance(1);
                if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) advance(1);
                if (pos_ < text_.size() && is_digit(text_[pos_])) {
                    while (pos_ < text_.size() && is_digit(text_[pos_])) advance(1);
                } else {
                    pos_ = save;
                }
            }
            if (pos_ < text_.size() && (is_name_char(text_[pos_]) || text_[pos_] == '.')) {
                while (pos_ < text_.size() && (is_name_char(text_[pos_]) || text_[pos_] == '.')) advance(1);
                Token t = finish(Tok::Number, start, loc);
                fail(t.loc, fmt::format("malformed number {}", describe(t)));
            }
            return finish(Tok::Number, start, loc);
        }
        static constexpr std::string_view two[] = {"<=", ">=", "==", "!="};
        for (std::string_view op : two)
            if (text_.substr(pos_, 2) == op) {
                advance(2);
                return finish(Tok::Punct, start, loc);
            }
        if (std::string_view("+-*/^()<>=,").find(c) != std::string_view::npos) {
            advance(1);
            return finish(Tok::Punct, start, loc);
        }
        unsigned char u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f) fail(loc, fmt::format("unexpected character '{}'", c));
        fail(loc, fmt::format("unexpected byte 0x{:02x} (programs are ASCII text)", u));
    }

private:
    bool crlf() const { return text_[pos_] == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n'; }
    Loc here(uint32_t len) const { return {line_, uint32_t(pos_ - line_start_ + 1), len}; }
    void advance(size_t n) { pos_ += n; }
    Token finish(Tok kind, size_t start, Loc loc) {
        loc.len = uint32_t(std::min<size_t>(pos_ - start, UINT32_MAX));
        return {kind, text_.substr(start, pos_ - start), loc};
    }

    std::string_view text_;
    size_t pos_ = 0;
    uint32_t line_ = 1;
    size_t line_start_ = 0;
};

bool is_keyword(std::string_view s) {
    return s == "optimizer" || s == "hyper" || s == "state" || s == "scalars" || s == "update";
}

// An expression with the depth of its tree, so depth checks never walk the tree again.
struct Parsed {
    Expr expr;
    int depth;
};

class Parser {
public:
    explicit Parser(std::string_view text) : lexer_(text) {}

    Program program() {
        Program prog;
        skip_newlines();
        expect_keyword("optimizer", "a program starts with 'optimizer NAME'");
        Token name = expect_name("the optimizer's name");
        prog.name = std::string(name.text);
        prog.name_loc = name.loc;
        end_of_statement();
        for (;;) {
            skip_newlines();
            const Token& t = peek();
            if (t.kind == Tok::Name && (t.text == "hyper" || t.text == "state")) {
                declaration(prog);
                continue;
            }
            break;
        }
        if (peek_keyword("scalars")) {
            take();
            end_of_statement();
            assignments(prog.scalars, /*stop_at_update=*/true);
        }
        if (!peek_keyword("update")) {
            const Token& t = peek();
            fail(t.loc, fmt::format("expected 'hyper', 'state', 'scalars' or 'update', found {}", describe(t)));
        }
        take();
        end_of_statement();
        assignments(prog.update, /*stop_at_update=*/false);
        return prog;
    }

private:
    const Token& peek(size_t k = 0) {
        while (ahead_.size() <= k) ahead_.push_back(lexer_.next());
        return ahead_[k];
    }
    Token take() {
        Token t = peek();
        ahead_.pop_front();
        return t;
    }
    bool peek_punct(std::string_view p, size_t k = 0) { return peek(k).kind == Tok::Punct && peek(k).text == p; }
    bool peek_keyword(std::string_view kw) { return peek().kind == Tok::Name && peek().text == kw; }

    void skip_newlines() {
        while (peek().kind == Tok::Newline) take();
    }
    void end_of_statement() {
        const Token& t = peek();
        if (t.kind == Tok::Newline) { take(); return; }
        if (t.kind == Tok::End) return;
        fail(t.loc, fmt::format("expected end of line, found {}", describe(t)));
    }
    void expect_keyword(std::string_view kw, std::string_view hint) {
        const Token& t = peek();
        if (t.kind != Tok::Name || t.text != kw) fail(t.loc, fmt::format("expected '{}', found {}: {}", kw, describe(t), hint));
        take();
    }
    Token expect_name(std::string_view what) {
        const Token& t = peek();
        if (t.kind != Tok::Name) fail(t.loc, fmt::format("expected {}, found {}", what, describe(t)));
        if (is_keyword(t.text)) fail(t.loc, fmt::format("'{}' is a keyword and cannot be {}", t.text, what));
        return take();
    }
    void expect_punct(std::string_view p, std::string_view context) {
        const Token& t = peek();
        if (t.kind != Tok::Punct || t.text != p) fail(t.loc, fmt::format("expected '{}' {}, found {}", p, context, describe(t)));
        take();
    }

    double number_value(const Token& t, bool negative) {
        double v = 0;
        auto [end, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
        if (ec == std::errc::result_out_of_range)
            fail(t.loc, fmt::format("number {} is out of the range of a double", describe(t)));
        if (ec != std::errc() || end != t.text.data() + t.text.size())
            fail(t.loc, fmt::format("malformed number {}", describe(t)));
        return negative ? -v : v;
    }

    void declaration(Program& prog) {
        Token kw = take();
        Token name = expect_name(kw.text == "hyper" ? "a hyper-parameter name" : "a state name");
        expect_punct("=", fmt::format("after the {} name", kw.text));
        bool negative = false;
        Loc value_loc = peek().loc;
        if (peek_punct("-")) { take(); negative = true; }
        const Token& t = peek();
        if (t.kind != Tok::Number)
            fail(t.kind == Tok::End ? value_loc : t.loc,
                 fmt::format("expected a number (the {}), found {}", kw.text == "hyper" ? "default value" : "initial value", describe(t)));
        double v = number_value(take(), negative);
        if (kw.text == "hyper") prog.hypers.push_back({std::string(name.text), v, name.loc});
        else prog.states.push_back({std::string(name.text), v, name.loc});
        end_of_statement();
    }

    void assignments(std::vector<Assign>& out, bool stop_at_update) {
        for (;;) {
            skip_newlines();
            const Token& t = peek();
            if (t.kind == Tok::End) return;
            if (stop_at_update && t.kind == Tok::Name && t.text == "update") return;
            if (t.kind == Tok::Name && (t.text == "hyper" || t.text == "state"))
                fail(t.loc, fmt::format("'{}' declarations must come before 'scalars' and 'update'", t.text));
            Token target = expect_name("an assignment target");
            expect_punct("=", fmt::format("after '{}' (an assignment is NAME = EXPRESSION)", target.text));
            Parsed value = expression(0);
            out.push_back({std::string(target.text), std::move(value.expr), target.loc});
            end_of_statement();
        }
    }

    static Parsed combine(Op op, Parsed a, Parsed b, Loc loc) {
        int d = std::max(a.depth, b.depth) + 1;
        std::vector<Expr> args;
        args.push_back(std::move(a.expr));
        args.push_back(std::move(b.expr));
        return {Expr::make(op, std::move(args), loc), d};
    }

    void check_depth(int depth, Loc loc) {
        if (depth > kMaxExprDepth)
            fail(loc, fmt::format("expression nested too deeply (more than {} levels); split it into several assignments",
                                  kMaxExprDepth));
    }

    // `nesting` counts parentheses, calls and unary minuses around this point, which bounds
    // the parser's own recursion; the built tree's depth is checked separately.
    Parsed expression(int nesting) {
        check_depth(nesting, peek().loc);
        Parsed lhs = sum(nesting);
        static constexpr std::pair<std::string_view, Op> compares[] = {
            {"<", Op::Lt}, {"<=", Op::Le}, {">", Op::Gt}, {">=", Op::Ge}, {"==", Op::Eq}, {"!=", Op::Ne}};
        for (auto [text, op] : compares) {
            if (!peek_punct(text)) continue;
            Token t = take();
            Parsed rhs = sum(nesting);
            Parsed r = combine(op, std::move(lhs), std::move(rhs), t.loc);
            check_depth(r.depth, t.loc);
            for (auto [text2, op2] : compares)
                if (peek_punct(text2)) fail(peek().loc, "comparisons do not chain; use parentheses, e.g. (a < b) == c");
            return r;
        }
        return lhs;
    }

    Parsed sum(int nesting) {
        Parsed lhs = term(nesting);
        while (peek_punct("+") || peek_punct("-")) {
            Token t = take();
            Parsed rhs = term(nesting);
            lhs = combine(t.text == "+" ? Op::Add : Op::Sub, std::move(lhs), std::move(rhs), t.loc);
            check_depth(lhs.depth, t.loc);
        }
        return lhs;
    }

    Parsed term(int nesting) {
        Parsed lhs = unary(nesting);
        while (peek_punct("*") || peek_punct("/")) {
            Token t = take();
            Parsed rhs = unary(nesting);
            lhs = combine(t.text == "*" ? Op::Mul : Op::Div, std::move(lhs), std::move(rhs), t.loc);
            check_depth(lhs.depth, t.loc);
        }
        return lhs;
    }

    Parsed unary(int nesting) {
        if (!peek_punct("-")) return power(nesting);
        Token minus = take();
        // "-2" is one literal, unless a power follows: "-2 ^ 2" is -(2 ^ 2).
        if (peek().kind == Tok::Number && !peek_punct("^", 1)) {
            Token t = take();
            Loc loc = minus.loc;
            loc.len = t.loc.col + t.loc.len - minus.loc.col;
            return {Expr::num(number_value(t, true), loc), 1};
        }
        check_depth(nesting + 1, minus.loc);
        Parsed operand = unary(nesting + 1);
        check_depth(operand.depth + 1, minus.loc);
        std::vector<Expr> args;
        args.push_back(std::move(operand.expr));
        return {Expr::make(Op::Neg, std::move(args), minus.loc), operand.depth + 1};
    }

    Parsed power(int nesting) {
        Parsed base = atom(nesting);
        if (!peek_punct("^")) return base;
        Token t = take();
        check_depth(nesting + 1, t.loc);
        Parsed exponent = unary(nesting + 1);
        Parsed r = combine(Op::Pow, std::move(base), std::move(exponent), t.loc);
        check_depth(r.depth, t.loc);
        return r;
    }

    Parsed atom(int nesting) {
        const Token& t = peek();
        if (t.kind == Tok::Number) {
            Token n = take();
            return {Expr::num(number_value(n, false), n.loc), 1};
        }
        if (peek_punct("(")) {
            Token open = take();
            Parsed inner = expression(nesting + 1);
            if (!peek_punct(")"))
                fail(peek().loc, fmt::format("expected ')' to close the '(' at column {}, found {}", open.loc.col, describe(peek())));
            take();
            return inner;
        }
        if (t.kind == Tok::Name) {
            Token name = take();
            if (is_keyword(name.text)) fail(name.loc, fmt::format("'{}' is a keyword, not a value", name.text));
            if (!peek_punct("(")) return {Expr::ref(std::string(name.text), name.loc), 1};
            std::optional<Op> op = call_op_named(name.text);
            if (!op) fail(name.loc, fmt::format("unknown function '{}'", name.text));
            take();
            std::vector<Expr> args;
            int d = 0;
            if (!peek_punct(")")) {
                for (;;) {
                    Parsed a = expression(nesting + 1);
                    d = std::max(d, a.depth);
                    args.push_back(std::move(a.expr));
                    if (peek_punct(",")) { take(); continue; }
                    break;
                }
            }
            if (!peek_punct(")"))
                fail(peek().loc, fmt::format("expected ',' or ')' in the arguments of '{}', found {}", name.text, describe(peek())));
            take();
            check_depth(d + 1, name.loc);
            return {Expr::make(*op, std::move(args), name.loc), d + 1};
        }
        fail(t.loc, fmt::format("expected an expression, found {}", describe(t)));
    }

    Lexer lexer_;
    std::deque<Token> ahead_;
};

}  // namespace

ParseResult parse(std::string_view text) {
    ParseResult result;
    try {
        result.program = Parser(text).program();
    } catch (const Failure& f) {
        result.errors.push_back(f.diagnostic);
        result.program = {};
    }
    return result;
}

}  // namespace optjit
