// The host back end's JIT: ORC LLJIT for the CPU as detected at run time. One per process;
// each kernel lives in a JITDylib of its own (named by its cache key), so kernels of the same
// program for different storage signatures never clash.
#pragma once

#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace optjit {

// Adds an optimized module and returns the addresses of `symbols` in it. Thread-safe.
std::vector<uint64_t> jit_host_module(std::unique_ptr<llvm::LLVMContext> context, std::unique_ptr<llvm::Module> module,
                                      const std::string& dylib_name, const std::vector<std::string>& symbols);

}  // namespace optjit
