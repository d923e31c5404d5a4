// The pass pipeline: a verified program in, the program code generation sees out.
//
//   specialize            chosen hyper-parameters become constants       passes/specialize.h
//   constant-fold         fold numbers, propagate constant temporaries   passes/constant_fold.h
//   fold-uniform-factors  fast math only: a product's per-launch         passes/fold_uniform_factors.h
//                         factors first, divisions by them as products
//   hoist-scalars         per-launch values out of the element loop      passes/hoist_scalars.h
//   cse                   compute repeated expressions once              passes/cse.h
//   dead-code             drop assignments nobody reads                  passes/dead_code.h
//
// The pipeline verifies the program after every pass (a pass that breaks a rule is a bug in
// optjit, reported as such) and can hand each intermediate program to an observer, which is
// how `optjit print --all-passes` and OPTJIT_DUMP_DIR see them.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ir/program.h"

namespace optjit {

struct PassOptions {
    std::map<std::string, double> specialize;  // hyper-parameter name -> constant value
    // The kernel computes with fast math (compiler/target.h's MathMode::Fast; compiler/compile.h's
    // lower() sets it): fold-uniform-factors may reassociate products.
    bool fast_math = false;
};

struct Pass {
    std::string_view name;
    std::string_view summary;
    std::function<Program(Program, const PassOptions&)> run;
};

const std::vector<Pass>& pipeline_passes();
const Pass* find_pass(std::string_view name);

using PassObserver = std::function<void(const Pass& pass, const Program& after)>;

// Runs every pass in order. Throws std::invalid_argument for bad options (an unknown
// hyper-parameter to specialize) and std::logic_error if a pass produces an invalid program.
Program run_pipeline(Program program, const PassOptions& options, const PassObserver& observer = {});

}  // namespace optjit
