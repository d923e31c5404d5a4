// Diagnostics for programs: `file:line:col: error: message`, the source line and a caret.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ir/expr.h"

namespace optjit {

struct Diagnostic {
    Loc loc;
    std::string message;
};

// The text a program came from, for rendering diagnostics against it.
struct SourceText {
    std::string filename;  // shown as given; "<builder>" for programs built in C++
    std::string text;
};

// Renders one diagnostic. With a known location and source: the `file:line:col: error:` line,
// the source line (a window around the column if the line is very long) and a caret underline.
std::string format_diagnostic(const Diagnostic& d, const SourceText* source);
std::string format_diagnostics(const std::vector<Diagnostic>& ds, const SourceText* source);

// Thrown by the library's convenience entry points when a program is rejected; what() holds
// the rendered diagnostics.
class ProgramError : public std::runtime_error {
public:
    ProgramError(std::vector<Diagnostic> diagnostics, const SourceText* source);
    const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

private:
    std::vector<Diagnostic> diagnostics_;
};

}  // namespace optjit
