#include "compiler/llvm_backend.h"

#include <fmt/format.h>
#include <llvm/Analysis/TargetTransformInfo.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Verifier.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>

#include <mutex>
#include <stdexcept>

namespace optjit {

void initialize_llvm() {
    static std::once_flag once;
    std::call_once(once, [] {
        llvm::InitializeNativeTarget();
        llvm::InitializeNativeTargetAsmPrinter();
        LLVMInitializeNVPTXTargetInfo();
        LLVMInitializeNVPTXTarget();
        LLVMInitializeNVPTXTargetMC();
        LLVMInitializeNVPTXAsmPrinter();
    });
}

std::unique_ptr<llvm::TargetMachine> make_target_machine(const Target& target) {
    initialize_llvm();
    std::string error;
    std::string triple = target.triple();
    const llvm::Target* t = llvm::TargetRegistry::lookupTarget(triple, error);
    if (!t) throw std::runtime_error(fmt::format("LLVM has no target for {}: {}", triple, error));
    llvm::TargetOptions options;
    auto reloc = target.is_gpu() ? std::optional<llvm::Reloc::Model>() : std::optional(llvm::Reloc::PIC_);
    // PTX at the default level is the same text as at the aggressive one (145 kernels of the
    // library compared: every optimizer, state format and option) and is emitted in about half
    // the time (H200 host, q8 AdamW: 28 against 47-54 ms, on the cold first step's path).
    const auto level = target.is_gpu() ? llvm::CodeGenOptLevel::Default : llvm::CodeGenOptLevel::Aggressive;
    std::unique_ptr<llvm::TargetMachine> machine(t->createTargetMachine(triple, target.cpu(), target.features(), options, reloc, std::nullopt, level));
    if (!machine) throw std::runtime_error(fmt::format("LLVM could not create a target machine for {}", target.name()));
    return machine;
}

void optimize_module(llvm::Module& module, llvm::TargetMachine& machine) {
    module.setDataLayout(machine.createDataLayout());
    std::string errors;
    llvm::raw_string_ostream es(errors);
    if (llvm::verifyModule(module, &es)) throw std::logic_error("internal error: invalid LLVM IR generated:\n" + errors);
    llvm::LoopAnalysisManager lam;
    llvm::FunctionAnalysisManager fam;
    llvm::CGSCCAnalysisManager cgam;
    llvm::ModuleAnalysisManager mam;
    // The GPU kernel is vectorized by construction (16-byte accesses, one lane per element);
    // LLVM's vectorizers only cost compile time there. The host loop relies on them.
    bool host = !machine.getTargetTriple().isNVPTX();
    llvm::PipelineTuningOptions tuning;
    tuning.LoopVectorization = host;
    tuning.SLPVectorization = host;
    llvm::PassBuilder pb(&machine, tuning);
    pb.registerModuleAnalyses(mam);
    pb.registerCGSCCAnalyses(cgam);
    pb.registerFunctionAnalyses(fam);
    pb.registerLoopAnalyses(lam);
    pb.crossRegisterProxies(lam, fam, cgam, mam);
    llvm::ModulePassManager mpm = pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
    mpm.run(module, mam);
}

void check_nvptx_legality(const llvm::Module& module) {
    for (const llvm::Function& f : module) {
        if (!f.isDeclaration()) continue;
        llvm::StringRef name = f.getName();
        if (f.isIntrinsic()) {
            // What the NVPTX back end selects natively; anything else may abort in LLVM 19.
            static const char* const legal[] = {"llvm.nvvm.", "llvm.sqrt.", "llvm.fabs.", "llvm.fma.", "llvm.fmuladd.",
                                                "llvm.minnum.", "llvm.maxnum.", "llvm.minimum.", "llvm.maximum.",
                                                "llvm.floor.", "llvm.ceil.", "llvm.rint.", "llvm.trunc.", "llvm.smin.",
                                                "llvm.smax.", "llvm.umin.", "llvm.umax.", "llvm.copysign.", "llvm.lifetime.",
                                                "llvm.assume", "llvm.experimental.noalias.scope.decl", "llvm.abs.",
                                                "llvm.nearbyint.", "llvm.roundeven.", "llvm.is.fpclass.", "llvm.fshl.", "llvm.fshr."};
            bool ok = false;
            for (const char* prefix : legal) ok |= name.starts_with(prefix);
            if (ok) continue;
        }
        if (f.use_empty()) continue;
        throw std::invalid_argument(fmt::format("the NVPTX back end cannot lower a call to '{}' in kernel module '{}'",
                                                name.str(), module.getName().str()));
    }
}

llvm::Value* reassociable(llvm::Value* product) {
    if (auto* i = llvm::dyn_cast<llvm::Instruction>(product)) {
        llvm::FastMathFlags flags = i->getFastMathFlags();
        flags.setAllowReassoc();
        flags.setNoSignedZeros();
        flags.setAllowContract();
        i->setFastMathFlags(flags);
    }
    return product;
}

std::string module_text(const llvm::Module& module) {
    std::string out;
    llvm::raw_string_ostream os(out);
    module.print(os, nullptr);
    return out;
}

std::string emit_assembly(llvm::Module& module, llvm::TargetMachine& machine) {
    module.setDataLayout(machine.createDataLayout());
    llvm::SmallString<0> buffer;
    llvm::raw_svector_ostream os(buffer);
    llvm::legacy::PassManager pm;
    if (machine.addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::AssemblyFile))
        throw std::runtime_error("LLVM cannot emit assembly for " + machine.getTargetTriple().str());
    pm.run(module);
    return std::string(buffer.str());
}

}  // namespace optjit
