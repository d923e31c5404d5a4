// The canonical text form. parse(print(x)) == x for every program x (see ir/parser.h):
// numbers print as the shortest decimal that reads back to the same double, and parentheses
// appear exactly where the grammar needs them.
#pragma once

#include <string>

#include "ir/program.h"

namespace optjit {

std::string print(const Program& program);
std::string print(const Expr& expr);
// The shortest text that parses back to exactly `v` (finite values only).
std::string print_number(double v);

}  // namespace optjit
