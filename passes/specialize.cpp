#include "passes/specialize.h"

#include <algorithm>
#include <stdexcept>

#include "ir/interpreter.h"
#include "passes/rewrite.h"

namespace optjit {

Program specialize(Program program, const std::map<std::string, double>& values) {
    hyper_values(program, values);  // rejects unknown names with the standard message
    auto substitute = [&](Expr& e) {
        if (e.op != Op::Ref) return;
        auto it = values.find(e.name);
        if (it != values.end()) e = Expr::num(it->second, e.loc);
    };
    for_each_assign(program, [&](Assign& a) { rewrite_bottom_up(a.value, substitute); });
    std::erase_if(program.hypers, [&](const HyperDecl& h) { return values.count(h.name) > 0; });
    return program;
}

}  // namespace optjit
