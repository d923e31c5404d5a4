#include "compiler/host_jit.h"

#include <fmt/format.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/Support/Error.h>

#include <mutex>
#include <stdexcept>

#include "compiler/llvm_backend.h"

// libgcc's half-precision conversions: a host without F16C lowers f16 loads and stores to
// these, and an executable does not export them for the JIT to find on its own.
extern "C" _Float16 __truncsfhf2(float);
extern "C" float __extendhfsf2(_Float16);

namespace optjit {

namespace {

template <class T>
T unwrap(llvm::Expected<T> value, const char* what) {
    if (!value) throw std::runtime_error(fmt::format("host JIT: {}: {}", what, llvm::toString(value.takeError())));
    return std::move(*value);
}

void check(llvm::Error error, const char* what) {
    if (error) throw std::runtime_error(fmt::format("host JIT: {}: {}", what, llvm::toString(std::move(error))));
}

class HostJit {
public:
    HostJit() {
        initialize_llvm();
        auto builder = unwrap(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host");
        builder.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
        jit_ = unwrap(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(std::move(builder)).create(), "creating LLJIT");
    }

    std::vector<uint64_t> add(std::unique_ptr<llvm::LLVMContext> context, std::unique_ptr<llvm::Module> module, const std::string& dylib_name,
                              const std::vector<std::string>& symbols) {
        std::lock_guard lock(mutex_);
        auto lookup = [&](llvm::orc::JITDylib& dylib, const char* what) {
            std::vector<uint64_t> addresses;
            for (const std::string& symbol : symbols) addresses.push_back(unwrap(jit_->lookup(dylib, symbol), what).getValue());
            return addresses;
        };
        if (llvm::orc::JITDylib* existing = jit_->getExecutionSession().getJITDylibByName(dylib_name))
            return lookup(*existing, "looking up a kernel");
        llvm::Expected<llvm::orc::JITDylib&> created = jit_->createJITDylib(dylib_name);
        if (!created) throw std::runtime_error("host JIT: creating a JITDylib: " + llvm::toString(created.takeError()));
        llvm::orc::JITDylib& dylib = *created;
        llvm::orc::SymbolMap runtime;
        auto& es = jit_->getExecutionSession();
        runtime[es.intern("__truncsfhf2")] = {llvm::orc::ExecutorAddr::fromPtr(&__truncsfhf2), llvm::JITSymbolFlags::Exported};
        runtime[es.intern("__extendhfsf2")] = {llvm::orc::ExecutorAddr::fromPtr(&__extendhfsf2), llvm::JITSymbolFlags::Exported};
        check(dylib.define(llvm::orc::absoluteSymbols(std::move(runtime))), "defining runtime symbols");
        module->setDataLayout(jit_->getDataLayout());
        check(jit_->addIRModule(dylib, llvm::orc::ThreadSafeModule(std::move(module), std::move(context))), "adding a module");
        return lookup(dylib, "compiling a kernel");
    }

private:
    std::mutex mutex_;
    std::unique_ptr<llvm::orc::LLJIT> jit_;
};

}  // namespace

std::vector<uint64_t> jit_host_module(std::unique_ptr<llvm::LLVMContext> context, std::unique_ptr<llvm::Module> module,
                                      const std::string& dylib_name, const std::vector<std::string>& symbols) {
    static HostJit jit;
    return jit.add(std::move(context), std::move(module), dylib_name, symbols);
}

}  // namespace optjit
