// Common-subexpression elimination.
//
// Contract: an operation that appears more than once with the same operands, reading the
// same assignments of every name it uses, is computed once into a new temporary `_cN`
// placed just before the statement of its first use (after the temporaries of repeated
// values inside it). What repeats only inside a repeated expression is not split out.
// Values and rounding are unchanged. Linear in the program's size (value numbering).
// Reductions are never merged: the interpreter, code generation and the runtime all number
// them as the program writes them (ir/analysis.h).
#pragma once

#include "ir/program.h"

namespace optjit {

Program eliminate_common_subexpressions(Program program);

}  // namespace optjit
