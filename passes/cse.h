// Common-subexpression elimination.
//
// Contract: an operation that appears more than once with the same operands, reading the
// same assignments of every name it uses, is computed once into a new temporary `_cN`
// placed just before its first use; the largest repeated expression is taken first. Values
// and rounding are unchanged.
#pragma once

#include "ir/program.h"

namespace optjit {

Program eliminate_common_subexpressions(Program program);

}  // namespace optjit
