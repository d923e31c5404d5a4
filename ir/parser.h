// The text form's parser. Syntax only: names, arities and the rules of ir/verifier.h are
// checked by verify(). Whatever the input (empty, binary, deeply nested, huge), the parser
// returns a program or a diagnostic with a line and column; it never crashes or recurses
// without bound.
//
// Grammar (statements end at a newline; indentation is free; `#` starts a comment):
//   program := 'optimizer' NAME NL decl* ['scalars' NL assign*] 'update' NL assign*
//   decl    := ('hyper' | 'state') NAME '=' ['-'] NUMBER NL
//   assign  := NAME '=' expr NL
//   expr    := sum [('<' | '<=' | '>' | '>=' | '==' | '!=') sum]    comparisons do not chain
//   sum     := term (('+' | '-') term)*
//   term    := unary (('*' | '/') unary)*
//   unary   := '-' unary | power          ("-2" is the literal -2; "-x ^ 2" is -(x ^ 2))
//   power   := atom ['^' unary]           right-associative
//   atom    := NUMBER | NAME | NAME '(' [expr (',' expr)*] ')' | '(' expr ')'
#pragma once

#include <string_view>
#include <variant>
#include <vector>

#include "ir/diagnostic.h"
#include "ir/program.h"

namespace optjit {

// Deepest expression tree the parser accepts; deeper input gets a diagnostic rather than a
// recursion that could overflow the stack of every later pass.
inline constexpr int kMaxExprDepth = 256;

struct ParseResult {
    Program program;
    std::vector<Diagnostic> errors;  // empty on success
    bool ok() const { return errors.empty(); }
};

ParseResult parse(std::string_view text);

}  // namespace optjit
