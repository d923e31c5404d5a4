#include "passes/pipeline.h"

#include <fmt/format.h>

#include <stdexcept>

#include "ir/diagnostic.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/constant_fold.h"
#include "passes/cse.h"
#include "passes/dead_code.h"
#include "passes/fold_uniform_factors.h"
#include "passes/hoist_scalars.h"
#include "passes/specialize.h"

namespace optjit {

const std::vector<Pass>& pipeline_passes() {
    static const std::vector<Pass> passes = {
        {"specialize", "chosen hyper-parameters become constants",
         [](Program p, const PassOptions& o) { return specialize(std::move(p), o.specialize); }},
        {"constant-fold", "fold numbers and propagate constant temporaries",
         [](Program p, const PassOptions&) { return constant_fold(std::move(p)); }},
        {"fold-uniform-factors", "fast math: a product's launch-uniform factors first, divisions by them as products",
         [](Program p, const PassOptions& o) { return fold_uniform_factors(std::move(p), o.fast_math); }},
        {"hoist-scalars", "move per-launch values out of the element loop",
         [](Program p, const PassOptions&) { return hoist_scalars(std::move(p)); }},
        {"cse", "compute repeated expressions once",
         [](Program p, const PassOptions&) { return eliminate_common_subexpressions(std::move(p)); }},
        {"dead-code", "drop assignments nobody reads",
         [](Program p, const PassOptions&) { return eliminate_dead_code(std::move(p)); }},
    };
    return passes;
}

const Pass* find_pass(std::string_view name) {
    for (const Pass& p : pipeline_passes())
        if (p.name == name) return &p;
    return nullptr;
}

Program run_pipeline(Program program, const PassOptions& options, const PassObserver& observer) {
    for (const Pass& pass : pipeline_passes()) {
        program = pass.run(std::move(program), options);
        std::vector<Diagnostic> errors = verify(program);
        if (!errors.empty())
            throw std::logic_error(fmt::format("internal error: pass '{}' produced an invalid program:\n{}{}", pass.name,
                                               format_diagnostics(errors, nullptr), print(program)));
        if (observer) observer(pass, program);
    }
    return program;
}

}  // namespace optjit
