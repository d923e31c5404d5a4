// The kernel cache without a GPU: memory caching and its statistics on the host target, the
// default disk directory, and OPTJIT_DUMP_DIR (every stage of a compile written to
// DIR/<cache key>/). The disk format (PTX entries) needs a GPU: tests/test_gpu.cpp.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "compiler/compile.h"
#include "compiler/kernel_abi.h"
#include "ir/verifier.h"
#include "passes/pipeline.h"
#include "runtime/fnv1a.h"
#include "runtime/kernel_cache.h"
#include "runtime/launch.h"
#include "runtime/thread_pool.h"
#include "test_support.h"

using namespace optjit;
using namespace optjit_test;
namespace fs = std::filesystem;

namespace {


std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}


std::vector<std::string> files_in(const fs::path& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    if (!fs::exists(dir, ec)) return names;
    for (const auto& e : fs::recursive_directory_iterator(dir)) names.push_back(fs::relative(e.path(), dir).string());
    std::sort(names.begin(), names.end());
    return names;
}

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const std::string& s : v) out += s + " ";
    return out;
}

}  // namespace

TEST_CASE("cache: memory caching on the host target and its statistics") {
    KernelCache cache("");
    CHECK(cache.disk_dir().empty());
    CacheStats zero = cache.stats();
    CHECK(zero.compiles == 0);
    CHECK(zero.memory_hits == 0);
    CHECK(zero.disk_hits == 0);
    CHECK(zero.disk_rejected == 0);

    KernelRequest adamw{load_example("adamw"), {}, {}, Target{}, {}};
    std::shared_ptr<const Kernel> a = cache.get(adamw);
    REQUIRE(a);
    CHECK(reinterpret_cast<const void*>(a->host_entry) != nullptr);
    CHECK(a->cuda_function == nullptr);
    CHECK(a->key() == cache_key(lower(adamw)));
    CHECK(a->spec().target == Target{});
    CHECK(a->chunk_elements() == chunk_elements(a->spec()));
    CHECK(cache.stats().compiles == 1);
    CHECK(cache.stats().memory_hits == 0);

    std::shared_ptr<const Kernel> b = cache.get(adamw);
    CHECK(a == b);
    CHECK(cache.stats().compiles == 1);
    CHECK(cache.stats().memory_hits == 1);

    // Another storage signature, another program, fast math: new kernels.
    KernelRequest bf16 = adamw;
    bf16.storage.param = DType::BF16;
    KernelRequest fast = adamw;
    fast.options.math = MathMode::Fast;
    KernelRequest lion{load_example("lion"), {}, {}, Target{}, {}};
    std::set<const Kernel*> distinct{a.get()};
    for (const KernelRequest* r : {&bf16, &fast, &lion}) distinct.insert(cache.get(*r).get());
    CHECK(distinct.size() == 4);
    CHECK(cache.stats().compiles == 4);
    for (const KernelRequest* r : {&bf16, &fast, &lion, &adamw}) cache.get(*r);
    CHECK(cache.stats().compiles == 4);
    CHECK(cache.stats().memory_hits == 5);
    CHECK(cache.stats().disk_hits == 0);

    // Two caches do not share memory entries (each counts its own compile).
    KernelCache other("");
    other.get(adamw);
    CHECK(other.stats().compiles == 1);
    CHECK(cache.stats().compiles == 4);
}

TEST_CASE("cache: a request that cannot be compiled is not cached and counts nothing") {
    KernelCache cache("");
    KernelRequest r{load_example("adamw"), {}, {}, Target{}, {}};
    r.storage.states["w"] = StateStorage{StateFormat::BF16};  // adamw has no state w
    CHECK_THROWS_AS(cache.get(r), std::invalid_argument);
    CHECK_THROWS_AS(cache.get(r), std::invalid_argument);
    KernelRequest bad_specialize{load_example("adamw"), {}, {}, Target{}, {}};
    bad_specialize.passes.specialize = {{"no_such_hyper", 1}};
    CHECK_THROWS_AS(cache.get(bad_specialize), std::invalid_argument);
    CacheStats s = cache.stats();
    CHECK(s.compiles == 0);
    CHECK(s.memory_hits == 0);
}

TEST_CASE("cache: host kernels stay in memory even with a disk directory") {
    TempDir dir;
    fs::path disk = dir.path / "cache";
    KernelRequest r{load_example("sgd"), {}, {}, Target{}, {}};
    {
        KernelCache cache(disk.string());
        CHECK(cache.disk_dir() == disk.string());
        cache.get(r);
        CHECK(cache.stats().compiles == 1);
    }
    INFO("files: ", join(files_in(disk)));
    CHECK(files_in(disk).empty());
    KernelCache again(disk.string());
    again.get(r);
    CHECK(again.stats().compiles == 1);
    CHECK(again.stats().disk_hits == 0);
    CHECK(again.stats().disk_rejected == 0);
}

TEST_CASE("cache: concurrent requests for one kernel get one kernel") {
    KernelCache cache("");
    KernelRequest r{load_example("adam"), {}, {}, Target{}, {}};
    r.storage.param = DType::F16;
    constexpr int kThreads = 4;
    std::vector<std::shared_ptr<const Kernel>> got(kThreads);
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
            try {
                got[i] = cache.get(r);
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
        INFO("thread ", i, ": ", errors[i]);
        CHECK(errors[i].empty());
        REQUIRE(got[i]);
        CHECK(got[i] == got[0]);
    }
    CacheStats s = cache.stats();
    CHECK(s.compiles >= 1);
    CHECK(s.compiles + s.memory_hits == kThreads);
    // Every later request is a memory hit on the kernel that was kept.
    CHECK(cache.get(r) == got[0]);
}

// The disk entries' layout, which GPU kernels are written in and the GPU tests forge entries
// with: a 24-byte header (magic, size, FNV-1a 64 of the payload, little-endian) and the payload.
TEST_CASE("cache: a disk entry is its header and its payload") {
    const std::string payload = std::string("PTX or cubin \x7f") + '\0' + "bytes";
    const std::string entry = encode_cache_entry(payload);
    REQUIRE(entry.size() == 24 + payload.size());
    CHECK(entry.substr(0, 8) == "OPTJITC1");
    uint64_t size = 0, sum = 0;
    std::memcpy(&size, entry.data() + 8, 8);
    std::memcpy(&sum, entry.data() + 16, 8);
    CHECK(size == payload.size());
    CHECK(sum == fnv1a({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}));
    CHECK(entry.substr(24) == payload);
    CHECK(encode_cache_entry("").size() == 24);
}

TEST_CASE("cache: the default disk directory follows the environment") {
    {
        ScopedEnv c("OPTJIT_CACHE_DIR", "/tmp/optjit-cache-test-dir");
        CHECK(KernelCache::default_disk_dir() == "/tmp/optjit-cache-test-dir");
    }
    {
        ScopedEnv c("OPTJIT_CACHE_DIR", nullptr);
        ScopedEnv x("XDG_CACHE_HOME", "/tmp/xdg-cache");
        CHECK(KernelCache::default_disk_dir() == "/tmp/xdg-cache/optjit");
    }
    {
        ScopedEnv c("OPTJIT_CACHE_DIR", "");
        ScopedEnv x("XDG_CACHE_HOME", nullptr);
        ScopedEnv h("HOME", "/tmp/some-home");
        CHECK(KernelCache::default_disk_dir() == "/tmp/some-home/.cache/optjit");
    }
}

TEST_CASE("cache: OPTJIT_DUMP_DIR receives every stage of a compile") {
    TempDir dir;
    ScopedEnv dump("OPTJIT_DUMP_DIR", dir.path.string().c_str());
    Program adamw = load_example("adamw");

    std::vector<std::string> pass_files;
    int index = 1;
    for (const Pass& p : pipeline_passes()) {
        char name[64];
        std::snprintf(name, sizeof name, "%02d-after-%s.opt", index++, std::string(p.name).c_str());
        pass_files.push_back(name);
    }
    REQUIRE(pass_files.size() >= 5);
    auto check_stages = [&](const std::string& key, const std::vector<std::string>& last) {
        fs::path folder = dir.path / key;
        INFO("dump folder ", folder.string(), ": ", join(files_in(folder)));
        REQUIRE(fs::is_directory(folder));
        std::vector<std::string> expected{"00-input.opt", "10-llvm.ll", "11-llvm-optimized.ll"};
        expected.insert(expected.end(), pass_files.begin(), pass_files.end());
        expected.insert(expected.end(), last.begin(), last.end());
        for (const std::string& f : expected) {
            INFO(f);
            CHECK(fs::is_regular_file(folder / f));
            CHECK(fs::file_size(folder / f) > 0);
        }
        CHECK(read_file(folder / "00-input.opt").find("optimizer adamw") != std::string::npos);
        CHECK(read_file(folder / "00-input.opt").find("hyper lr") != std::string::npos);
        CHECK(read_file(folder / "10-llvm.ll").find("define") != std::string::npos);
        CHECK(read_file(folder / "11-llvm-optimized.ll").find("optjit_adamw") != std::string::npos);
    };

    SUBCASE("PTX for sm_90 through emit_text") {
        KernelRequest r{adamw, {}, {}, Target{Target::Kind::NVPTX, 90}, {}};
        std::string key;
        std::string ptx = emit_text(r, Emit::Assembly, nullptr, &key);
        CHECK(key == cache_key(lower(r)));
        check_stages(key, {"12-kernel.ptx"});
        std::string dumped = read_file(dir.path / key / "12-kernel.ptx");
        CHECK(dumped == ptx);
        CHECK(dumped.find(".target sm_90") != std::string::npos);
        CHECK(dumped.find(".entry optjit_adamw") != std::string::npos);
        CHECK_FALSE(fs::exists(dir.path / key / "12-kernel.s"));
    }
    SUBCASE("host assembly through emit_text") {
        KernelRequest r{adamw, {}, {}, Target{}, {}};
        std::string key;
        std::string asm_text = emit_text(r, Emit::Assembly, nullptr, &key);
        check_stages(key, {"12-kernel.s"});
        CHECK(read_file(dir.path / key / "12-kernel.s") == asm_text);
        CHECK(asm_text.find("optjit_adamw") != std::string::npos);
    }
    SUBCASE("a host kernel compiled through the cache") {
        KernelCache cache("");
        KernelRequest r{adamw, {}, {}, Target{}, {}};
        r.storage.param = DType::BF16;
        std::shared_ptr<const Kernel> k = cache.get(r);
        check_stages(k->key(), {});
        CHECK(read_file(dir.path / k->key() / "10-llvm.ll").find("optjit_adamw") != std::string::npos);
        // Only the kernel's own folder: one compile, one folder.
        CHECK(files_in(dir.path).size() == files_in(dir.path / k->key()).size() + 1);
    }
    SUBCASE("a specialized hyper-parameter shows in the stage after specialize") {
        KernelRequest r{adamw, {}, {}, Target{Target::Kind::NVPTX, 80}, {}};
        r.passes.specialize = {{"lr", 0.25}};
        std::string key;
        emit_text(r, Emit::LLVM, nullptr, &key);
        check_stages(key, {});
        CHECK(read_file(dir.path / key / "00-input.opt").find("hyper lr") != std::string::npos);
        CHECK(read_file(dir.path / key / pass_files[0]).find("hyper lr") == std::string::npos);
        CHECK(read_file(dir.path / key / pass_files[0]).find("0.25") != std::string::npos);
        CHECK_FALSE(fs::exists(dir.path / key / "12-kernel.ptx"));  // LLVM IR only was asked for
    }
}

TEST_CASE("cache: without OPTJIT_DUMP_DIR nothing is dumped") {
    TempDir dir;
    ScopedEnv dump("OPTJIT_DUMP_DIR", nullptr);
    ScopedEnv cwd_guard("OPTJIT_DUMP_DIR", "");  // empty counts as unset
    fs::path old = fs::current_path();
    fs::current_path(dir.path);
    KernelRequest r{load_example("lion"), {}, {}, Target{Target::Kind::NVPTX, 86}, {}};
    std::string key;
    emit_text(r, Emit::Assembly, nullptr, &key);
    fs::current_path(old);
    INFO(join(files_in(dir.path)));
    CHECK(files_in(dir.path).empty());
}
