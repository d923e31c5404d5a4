// Specialization: chosen hyper-parameters become constants.
//
// Contract: every use of a hyper-parameter named in `values` is replaced by its number and its
// declaration is removed, so later passes can fold it and the kernel no longer takes it as an
// argument. The result's text (and so the kernel cache key) carries the values. Throws
// std::invalid_argument for a name that is not a hyper-parameter of the program.
#pragma once

#include <map>
#include <string>

#include "ir/program.h"

namespace optjit {

Program specialize(Program program, const std::map<std::string, double>& values);

}  // namespace optjit
