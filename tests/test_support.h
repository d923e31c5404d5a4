// What every test file that reads the examples shares.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
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

// A fresh directory under the system's temporary directory, removed with everything in it.
struct TempDir {
    std::filesystem::path path;
    explicit TempDir(const std::string& what = "cache") {
        std::random_device rd;
        path = std::filesystem::temp_directory_path() /
               ("optjit-test-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

// Sets an environment variable for one scope (nullptr: unsets it) and restores its previous value.
struct ScopedEnv {
    std::string name;
    std::optional<std::string> old;
    ScopedEnv(std::string n, const char* value) : name(std::move(n)) {
        if (const char* v = std::getenv(name.c_str())) old = v;
        if (value) ::setenv(name.c_str(), value, 1);
        else ::unsetenv(name.c_str());
    }
    ~ScopedEnv() {
        if (old) ::setenv(name.c_str(), old->c_str(), 1);
        else ::unsetenv(name.c_str());
    }
    ScopedEnv(const ScopedEnv&) = delete;
    ScopedEnv& operator=(const ScopedEnv&) = delete;
};

}  // namespace optjit_test
