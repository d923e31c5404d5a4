// The built-in optimizers: found by name, and each equal to its definition (library_checks.h)
// on the interpreter and the host target, with and without each of its options and the
// gradient policies. The GPU runs the same cases in test_gpu.cpp.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>

#include "ir/analysis.h"
#include "ir/library.h"
#include "library_checks.h"
#include "passes/gradient_policies.h"

using namespace optjit;
using namespace optjit_test;

TEST_CASE("library: the built-in names, each a verified program of that name") {
    std::vector<std::string> expected{"adagrad", "adam", "adam_amsgrad", "adamw", "adamw_amsgrad", "adan", "ademamix", "lamb", "lars", "lion", "rmsprop", "sgd"};
    CHECK(library_names() == expected);
    for (const std::string& name : library_names()) {
        CHECK(in_library(name));
        CHECK(library(name).name == name);
        CHECK(library_source(name).file_name == "<library>/" + name + ".opt");
    }
}

TEST_CASE("library: an unknown name lists the built-in ones; a path is never a name") {
    CHECK_FALSE(in_library("adamx"));
    CHECK_FALSE(in_library("../adamw"));
    CHECK_FALSE(in_library(""));
    try {
        library("adamx");
        FAIL("no error");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()) ==
              "there is no optimizer 'adamx' in the library (built in: adagrad, adam, adam_amsgrad, adamw, adamw_amsgrad, adan, ademamix, lamb, lars, lion, rmsprop, sgd; "
              "OPTJIT_LIBRARY_PATH adds directories of NAME.opt files)");
    }
}

TEST_CASE("library: OPTJIT_LIBRARY_PATH adds a user's programs by name, and comes first") {
    TempDir dir("library");
    std::ofstream(dir.path / "mine.opt") << "optimizer mine\n  hyper lr = 0.5\n  update\n    p = p - lr * g\n";
    std::ofstream(dir.path / "sgd.opt") << "optimizer sgd\n  hyper lr = 7\n  update\n    p = p - lr * g\n";
    const char* old = std::getenv("OPTJIT_LIBRARY_PATH");
    std::string saved = old ? old : "";
    setenv("OPTJIT_LIBRARY_PATH", ("/nonexistent::" + dir.path.string()).c_str(), 1);
    CHECK(in_library("mine"));
    CHECK(library("mine").hypers.at(0).value == 0.5);
    CHECK(library("sgd").hypers.at(0).value == 7);
    CHECK(library_source("sgd").file_name == (dir.path / "sgd.opt").string());
    if (old) setenv("OPTJIT_LIBRARY_PATH", saved.c_str(), 1);
    else unsetenv("OPTJIT_LIBRARY_PATH");
    CHECK_FALSE(in_library("mine"));
}

TEST_CASE("library: every optimizer equals its definition on the interpreter and the host, with each option and policy") {
    const uint64_t seed = test_seed();
    for (const LibraryCase& c : library_cases())
        if (selected(c)) check_library_case(c, Device::Host, seed);
}

// Clipped, LAMB's norm of its update and LARS's of the gradient read the clipped gradient: they
// wait for the global norm, in a reduction pass of their own. LAMB's norm of p joins them there
// (that pass reads p anyway); LARS's stays in the first (its second pass reads only g). The
// non-finite count, which nothing reduces, joins the last pass that reads g.
TEST_CASE("library: clipping puts LAMB's and LARS's norms over the gradient on the second reduction level") {
    for (const std::string name : {"lamb", "lars"}) {
        INFO(name);
        const Program own = library(name), clipped = clip_gradients(own, 1.0);
        const bool lamb = name == "lamb";
        CHECK(reduction_levels(own) == std::vector<int>{1, 1});
        CHECK(reduction_levels(clipped) == (lamb ? std::vector<int>{1, 2, 2} : std::vector<int>{1, 1, 2}));
        CHECK(reduction_level_count(clipped) == 2);
        CHECK(reduction_levels(skip_nonfinite_steps(clipped)) == (lamb ? std::vector<int>{2, 1, 2, 2} : std::vector<int>{2, 1, 1, 2}));
    }
}

TEST_CASE("library: the options' refusals and reports name what is wrong") {
    OptimizerOptions negative;
    negative.max_grad_norm = -1;
    CHECK_THROWS_WITH_AS(Optimizer(library("adamw"), {}, negative), doctest::Contains("max_grad_norm must be a positive number"),
                         std::invalid_argument);
    Optimizer plain(library("adamw"), {});
    CHECK_THROWS_WITH_AS(plain.grad_norm(), "the optimizer was not made with max_grad_norm > 0", std::invalid_argument);
    CHECK_THROWS_WITH_AS(plain.nonfinite_count_address(), "the optimizer was not made with skip_nonfinite", std::invalid_argument);
    // A program that already uses a name a policy adds.
    Program taken = parse_and_verify("optimizer t\n  hyper max_grad_norm = 1\n  update\n    p = p - max_grad_norm * g\n", "t.opt");
    OptimizerOptions clip;
    clip.max_grad_norm = 1;
    CHECK_THROWS_WITH_AS(Optimizer(taken, {}, clip), "optimizer 't' already uses the name 'max_grad_norm', which gradient clipping adds",
                         std::invalid_argument);
    // With the policies but no parameters: nothing to report yet.
    OptimizerOptions both;
    both.max_grad_norm = 1;
    both.skip_nonfinite = true;
    Optimizer empty(library("sgd"), {}, both);
    CHECK(empty.grad_norm() == 0);
    CHECK(empty.nonfinite_count() == 0);
    CHECK(empty.program().hyper_index("max_grad_norm") >= 0);
}
