// The verifier: every rule a program must keep before it is optimized, interpreted or compiled.
//
// One diagnostic per misuse, in source order:
//   - a name that is not an identifier, is a keyword, or is declared twice;
//   - a number that is not finite;
//   - an undefined name, or a name used before its assignment;
//   - an assignment to `g`, `step` or a hyper-parameter;
//   - a temporary assigned twice (only `p` and states are reassigned);
//   - a call with the wrong number of arguments;
//   - a reduction inside the scalars section, or whose argument depends on another reduction
//     (that would need a second statistics pass over memory);
//   - a scalars-section value that varies per element, or an assignment there to `p` or a state;
//   - a state never updated, or a program that never updates `p`.
#pragma once

#include <vector>

#include "ir/diagnostic.h"
#include "ir/program.h"

namespace optjit {

std::vector<Diagnostic> verify(const Program& program);

// Parses and verifies `text`; throws ProgramError (diagnostics rendered against `filename`).
Program parse_and_verify(std::string_view text, const std::string& filename);
// Verifies a program built in C++; throws ProgramError.
void verify_or_throw(const Program& program);

}  // namespace optjit
