#include "compiler/codegen.h"

#include <stdexcept>

namespace optjit {

std::string kernel_symbol(const KernelSpec& spec) { return "optjit_" + spec.lowered.name; }

std::unique_ptr<llvm::Module> generate_kernel(llvm::LLVMContext& context, const KernelSpec& spec) {
    std::string unsupported = check_storage(spec.storage, spec.lowered);
    if (!unsupported.empty()) throw std::invalid_argument(unsupported);
    auto module = std::make_unique<llvm::Module>(kernel_symbol(spec), context);
    module->setTargetTriple(spec.target.triple());
    if (spec.target.is_gpu()) generate_nvptx_kernel(*module, spec);
    else generate_host_kernel(*module, spec);
    return module;
}

}  // namespace optjit
