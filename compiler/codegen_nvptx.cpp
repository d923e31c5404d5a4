// The GPU kernel: blocks walk the launch's chunks (compiler/kernel_abi.h); in a chunk, each
// thread updates gpu_elements_per_thread(spec) elements. Full chunks of 16-byte-aligned
// tensors take the fast path: every array moves in vector loads and stores (16 bytes for the
// widest array), all loads issued before any math. The last, short chunk of a tensor and
// unaligned tensors take a scalar path with the same element math.
#include <llvm/IR/IntrinsicsNVPTX.h>

#include <algorithm>

#include "compiler/codegen.h"
#include "compiler/element_math.h"
#include "compiler/kernel_abi.h"
#include "ir/numeric.h"

namespace optjit {

namespace {

constexpr unsigned kGlobal = 1;  // NVPTX address space of device memory

// One array the kernel reads or writes, with its place in the table row.
struct Array {
    DType type;
    int column;      // word of the table row holding the pointer
    bool written;    // p and states are written; g is only read
    int state = -1;  // index into the program's states, or -1
    llvm::Value* base = nullptr;
};

class NvptxKernel {
public:
    NvptxKernel(llvm::Module& module, const KernelSpec& spec)
        : module_(module), spec_(spec), ctx_(module.getContext()), b_(ctx_), layout_{int(spec.lowered.states.size())} {}

    void generate() {
        const Program& prog = spec_.lowered;
        std::vector<std::string> scalar_names = kernel_scalars(prog);
        llvm::Type* global_ptr = llvm::PointerType::get(ctx_, kGlobal);
        std::vector<llvm::Type*> params{global_ptr, b_.getInt32Ty(), b_.getInt64Ty()};
        params.insert(params.end(), scalar_names.size(), b_.getFloatTy());
        fn_ = llvm::Function::Create(llvm::FunctionType::get(b_.getVoidTy(), params, false), llvm::GlobalValue::ExternalLinkage,
                                     kernel_symbol(spec_), module_);
        fn_->setCallingConv(llvm::CallingConv::PTX_Kernel);
        fn_->addFnAttr(llvm::Attribute::NoUnwind);
        fn_->getArg(0)->setName("table");
        fn_->getArg(1)->setName("num_tensors");
        fn_->getArg(2)->setName("num_chunks");
        std::vector<llvm::Value*> scalars;
        for (size_t i = 0; i < scalar_names.size(); ++i) {
            fn_->getArg(3 + i)->setName(scalar_names[i]);
            scalars.push_back(fn_->getArg(3 + i));
        }
        // Launched with this many threads: lets ptxas budget registers for it.
        llvm::NamedMDNode* annotations = module_.getOrInsertNamedMetadata("nvvm.annotations");
        annotations->addOperand(llvm::MDNode::get(ctx_, {llvm::ValueAsMetadata::get(fn_), llvm::MDString::get(ctx_, "maxntidx"),
                                                         llvm::ValueAsMetadata::get(b_.getInt32(gpu_threads_per_block(spec_)))}));
        math_ = std::make_unique<ElementMath>(module_, prog, spec_.target, spec_.options, scalars);

        arrays_.push_back({spec_.storage.param, layout_.p(), true});
        arrays_.push_back({spec_.storage.grad, layout_.g(), false});
        for (int s = 0; s < layout_.num_states; ++s)
            arrays_.push_back({state_dtype(spec_.storage.state(prog.states[s].name).format), layout_.state(s), true, s});
        vector_ = gpu_vector_elements(spec_);
        elements_per_thread_ = gpu_elements_per_thread(spec_);
        unroll_ = elements_per_thread_ / vector_;
        if (spec_.options.gpu_min_blocks_per_sm > 0)
            annotations->addOperand(llvm::MDNode::get(ctx_, {llvm::ValueAsMetadata::get(fn_), llvm::MDString::get(ctx_, "minctasm"),
                                                             llvm::ValueAsMetadata::get(b_.getInt32(spec_.options.gpu_min_blocks_per_sm))}));

        body();
    }

private:
    llvm::Value* sreg(llvm::Intrinsic::ID id) { return b_.CreateZExt(b_.CreateIntrinsic(id, {}, {}), b_.getInt64Ty()); }

    llvm::BasicBlock* block(const char* name) { return llvm::BasicBlock::Create(ctx_, name, fn_); }

    void body() {
        b_.SetInsertPoint(block("entry"));
        tid_ = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_tid_x);
        // Block b takes chunks b, b + gridDim.x, ...
        llvm::Value* first = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_ctaid_x);
        llvm::Value* stride = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_nctaid_x);
        emit_chunk_loop(b_, spec_, fn_->getArg(0), first, stride, fn_->getArg(2), [&](const ChunkContext& c) {
            llvm::Value* any_bits = b_.getInt64(0);
            for (Array& a : arrays_) {
                llvm::Value* word = c.word(a.column);
                any_bits = b_.CreateOr(any_bits, word);
                a.base = b_.CreateIntToPtr(word, llvm::PointerType::get(ctx_, kGlobal));
            }
            n_ = c.word(layout_.n());
            base_ = c.first_element;
            llvm::Value* full = b_.CreateICmpSLE(b_.CreateAdd(base_, b_.getInt64(chunk_elements(spec_))), n_);
            llvm::Value* aligned = b_.CreateICmpEQ(b_.CreateAnd(any_bits, b_.getInt64(15)), b_.getInt64(0));
            llvm::BasicBlock* fast = block("fast");
            llvm::BasicBlock* slow = block("slow");
            llvm::BasicBlock* done = block("chunk.done");
            b_.CreateCondBr(b_.CreateAnd(full, aligned), fast, slow);
            b_.SetInsertPoint(fast);
            fast_path();
            b_.CreateBr(done);
            b_.SetInsertPoint(slow);
            slow_path(done);
            b_.SetInsertPoint(done);
        });
        b_.CreateRetVoid();
    }

    // Loads `count` elements of `a` starting at element `index` as fp32, in accesses of up to
    // 16 bytes (`index` is a multiple of the vector, so each access is aligned to its size).
    std::vector<llvm::Value*> load_vector(const Array& a, llvm::Value* index, int count) {
        int bytes = dtype_bytes(a.type);
        int per_load = std::min(count, 16 / bytes);
        llvm::Type* elem = math_->storage_type(a.type);
        auto* vec_ty = llvm::FixedVectorType::get(elem, per_load);
        std::vector<llvm::Value*> out;
        for (int k = 0; k < count; k += per_load) {
            llvm::Value* addr = b_.CreateGEP(elem, a.base, b_.CreateAdd(index, b_.getInt64(k)));
            auto* load = b_.CreateAlignedLoad(vec_ty, addr, llvm::Align(per_load * bytes));
            // The gradient is read-only for the whole kernel: the non-coherent cache path.
            if (!a.written) load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(ctx_, {}));
            for (int j = 0; j < per_load; ++j) out.push_back(math_->to_f32(b_, a.type, b_.CreateExtractElement(load, j)));
        }
        return out;
    }

    void store_vector(const Array& a, llvm::Value* index, const std::vector<llvm::Value*>& values) {
        int per_store = std::min(int(values.size()), 16 / dtype_bytes(a.type));
        llvm::Type* elem = math_->storage_type(a.type);
        auto* vec_ty = llvm::FixedVectorType::get(elem, per_store);
        for (size_t k = 0; k < values.size(); k += per_store) {
            llvm::Value* v = llvm::PoisonValue::get(vec_ty);
            for (int j = 0; j < per_store; ++j) v = b_.CreateInsertElement(v, math_->from_f32(b_, a.type, values[k + j]), j);
            llvm::Value* addr = b_.CreateGEP(elem, a.base, b_.CreateAdd(index, b_.getInt64(k)));
            b_.CreateAlignedStore(v, addr, llvm::Align(per_store * dtype_bytes(a.type)));
        }
    }

    void fast_path() {
        // Thread tid handles vectors (u * threads + tid) of the chunk, u < unroll: coalesced.
        std::vector<llvm::Value*> index(unroll_);
        std::vector<std::vector<std::vector<llvm::Value*>>> loaded(unroll_);  // [u][array][element]
        for (int u = 0; u < unroll_; ++u) {
            llvm::Value* vec = b_.CreateAdd(b_.getInt64(int64_t(u) * gpu_threads_per_block(spec_)), tid_);
            index[u] = b_.CreateAdd(base_, b_.CreateMul(vec, b_.getInt64(vector_)));
            for (const Array& a : arrays_) loaded[u].push_back(load_vector(a, index[u], vector_));
        }
        for (int u = 0; u < unroll_; ++u) {
            std::vector<std::vector<llvm::Value*>> results(arrays_.size());
            for (int e = 0; e < vector_; ++e) {
                ElementValues in;
                in.p = loaded[u][0][e];
                in.g = loaded[u][1][e];
                for (int s = 0; s < layout_.num_states; ++s) in.states.push_back(loaded[u][2 + s][e]);
                ElementValues out = math_->update(b_, in);
                results[0].push_back(out.p);
                for (int s = 0; s < layout_.num_states; ++s) results[2 + s].push_back(out.states[s]);
            }
            for (size_t k = 0; k < arrays_.size(); ++k)
                if (arrays_[k].written) store_vector(arrays_[k], index[u], results[k]);
        }
    }

    // Element base + j * threads + tid for j < elements per thread, bounds-checked.
    void slow_path(llvm::BasicBlock* done) {
        llvm::BasicBlock* head = block("slow.head");
        llvm::BasicBlock* element = block("slow.element");
        llvm::BasicBlock* next = block("slow.next");
        llvm::BasicBlock* from = b_.GetInsertBlock();
        b_.CreateBr(head);
        b_.SetInsertPoint(head);
        llvm::PHINode* j = b_.CreatePHI(b_.getInt64Ty(), 2, "j");
        j->addIncoming(b_.getInt64(0), from);
        llvm::Value* i = b_.CreateAdd(base_, b_.CreateAdd(b_.CreateMul(j, b_.getInt64(gpu_threads_per_block(spec_))), tid_));
        b_.CreateCondBr(b_.CreateICmpSLT(i, n_), element, done);
        b_.SetInsertPoint(element);
        ElementValues in;
        std::vector<llvm::Value*> addrs;
        for (const Array& a : arrays_) {
            llvm::Type* elem = math_->storage_type(a.type);
            llvm::Value* addr = b_.CreateGEP(elem, a.base, i);
            addrs.push_back(addr);
            llvm::Value* v = math_->to_f32(b_, a.type, b_.CreateAlignedLoad(elem, addr, llvm::Align(dtype_bytes(a.type))));
            if (a.column == layout_.p()) in.p = v;
            else if (a.column == layout_.g()) in.g = v;
            else in.states.push_back(v);
        }
        ElementValues out = math_->update(b_, in);
        for (size_t k = 0; k < arrays_.size(); ++k) {
            const Array& a = arrays_[k];
            if (!a.written) continue;
            llvm::Value* v = a.state < 0 ? out.p : out.states[a.state];
            b_.CreateAlignedStore(math_->from_f32(b_, a.type, v), addrs[k], llvm::Align(dtype_bytes(a.type)));
        }
        b_.CreateBr(next);
        b_.SetInsertPoint(next);
        llvm::Value* j_next = b_.CreateAdd(j, b_.getInt64(1));
        j->addIncoming(j_next, next);
        b_.CreateCondBr(b_.CreateICmpULT(j_next, b_.getInt64(elements_per_thread_)), head, done);
    }

    llvm::Module& module_;
    const KernelSpec& spec_;
    llvm::LLVMContext& ctx_;
    llvm::IRBuilder<> b_;
    TableLayout layout_;
    llvm::Function* fn_ = nullptr;
    std::unique_ptr<ElementMath> math_;
    std::vector<Array> arrays_;
    int vector_ = 4, unroll_ = 4, elements_per_thread_ = 16;
    llvm::Value* tid_ = nullptr;
    llvm::Value* base_ = nullptr;
    llvm::Value* n_ = nullptr;
};

}  // namespace

void generate_nvptx_kernel(llvm::Module& module, const KernelSpec& spec) { NvptxKernel(module, spec).generate(); }

}  // namespace optjit
