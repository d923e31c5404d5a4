// Builds AdamW in C++ (examples/adamw_builder.h) and prints it in the text form, which reads
// the same as examples/adamw.opt.
#include <cstdio>

#include "examples/adamw_builder.h"
#include "ir/printer.h"

int main() {
    std::fputs(optjit::print(optjit::build_adamw()).c_str(), stdout);
    return 0;
}
