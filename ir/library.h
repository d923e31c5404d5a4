// The built-in optimizers, by name: `optjit::library("adamw")`, `optjit compile adamw ...`.
//
// They are the programs of examples/ (each documents its source and defaults), compiled into
// optjit so that a name works wherever it runs, and installed as files
// (share/optjit/examples/NAME.opt) to read and copy. Directories listed in OPTJIT_LIBRARY_PATH
// (colon-separated) are searched first for NAME.opt: a user's own optimizers by name, or a
// built-in one overridden.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ir/program.h"

namespace optjit {

// The built-in names, sorted.
std::vector<std::string> library_names();
// Whether `name` is found (OPTJIT_LIBRARY_PATH or built in).
bool in_library(std::string_view name);
// The program's text and the file name its diagnostics cite; throws std::invalid_argument
// listing the built-in names for an unknown one.
struct LibrarySource {
    std::string text;
    std::string file_name;  // "DIR/NAME.opt", or "<library>/NAME.opt" for a built-in one
};
LibrarySource library_source(std::string_view name);
// Parsed and verified (a program from OPTJIT_LIBRARY_PATH may not verify: ProgramError).
Program library(std::string_view name);

}  // namespace optjit
