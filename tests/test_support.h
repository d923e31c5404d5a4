// What every test file that reads the examples shares.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "ir/verifier.h"

namespace optjit_test {

// OPTJIT_SOURCE_DIR in the environment names the source folder when the tests run from a copy
// (the GPU tests on a GPU machine); otherwise the folder they were built from.
inline std::string examples_dir() {
    const char* dir = std::getenv("OPTJIT_SOURCE_DIR");
    return std::string(dir && *dir ? dir : OPTJIT_SOURCE_DIR) + "/examples";
}

inline std::string read_text(const std::string& path) {
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot open ", path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

inline optjit::Program load_example(const std::string& name) {
    std::string path = examples_dir() + "/" + name + ".opt";
    return optjit::parse_and_verify(read_text(path), path);
}

// A fresh seed for every run (shown with INFO by the tests); OPTJIT_TEST_SEED replays one.
inline uint64_t test_seed() {
    if (const char* s = std::getenv("OPTJIT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
    std::random_device rd;
    return ((uint64_t(rd()) << 32) ^ rd()) & ((uint64_t(1) << 62) - 1);
}

}  // namespace optjit_test
