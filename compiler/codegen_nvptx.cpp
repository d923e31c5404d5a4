// The GPU kernel: blocks walk the launch's chunks (compiler/kernel_abi.h); in a chunk, each
// thread updates gpu_elements_per_thread(spec) elements. Full chunks of 16-byte-aligned
// tensors take the fast path: every array moves in vector loads and stores (16 bytes for the
// widest array), all loads issued before any math. The last, short chunk of a tensor and
// unaligned tensors take a scalar path with the same element math.
//
// Kernels with block-quantized states (pipelined_chunk_loop) give each thread 8 consecutive
// elements instead, so a block of B elements belongs to B / 8 neighbouring threads: they
// decode, update, find the block's absmax by a warp reduction (through shared memory when a
// block spans warps), and encode and store, in one pass. The codecs' lookup tables are copied
// into shared memory when the kernel starts. These kernels are bound by the instructions they issue
// (benchmarks/NOTES.md): every instruction an element counts. Their blocks walk interleaved
// runs of chunks with per-thread addresses stepped by constants (pipelined_chunk_loop), and
// compute with fast math unless asked for IEEE arithmetic (compiler/target.h's MathMode). A rank-1 state instead scales
// each element by its row's and column's statistics (compiler/rank1_statistics.h), found by a
// second kernel in the module that runs before this one. Kernels without quantized states
// take the same loop where asked (CodegenOptions::gpu_pipelined), each thread then owning
// gpu_elements_per_thread consecutive elements.
#include <fmt/format.h>
#include <llvm/IR/InlineAsm.h>
#include <llvm/IR/IntrinsicsNVPTX.h>
#include <llvm/IR/MDBuilder.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>

#include "compiler/code_lookup.h"
#include "compiler/codegen.h"
#include "compiler/device_scalars.h"
#include "compiler/element_math.h"
#include "compiler/kernel_abi.h"
#include "compiler/rank1_statistics.h"
#include "compiler/reductions.h"
#include "compiler/state_codec.h"
#include "ir/analysis.h"
#include "ir/numeric.h"

namespace optjit {

namespace {

constexpr unsigned kShared = 3;  // NVPTX address space of a thread block's shared memory

// One array the kernel reads or writes, with its place in the table row.
struct Array {
    DType type;
    int column;      // word of the table row holding the pointer
    bool written;    // p and states are written; g is only read
    int state = -1;  // index into the program's states, or -1
    llvm::Value* base = nullptr;
};

// A block-quantized state: its codes and scales.
struct QuantizedArray {
    int state;
    std::unique_ptr<StateCodec> codec;
    llvm::Value* codes = nullptr;   // i8 pointer
    llvm::Value* scales = nullptr;  // float pointer (rank-1 states: the statistics buffer)
    bool rank1() const { return codec->storage().rank1; }
};

class NvptxKernel {
public:
    NvptxKernel(llvm::Module& module, const KernelSpec& spec)
        : module_(module), spec_(spec), ctx_(module.getContext()), b_(ctx_), layout_(table_layout(spec)) {}

    void generate() {
        const Program& prog = spec_.lowered;
        std::vector<llvm::Value*> scalars;
        fn_ = kernel_function(kernel_symbol(spec_), scalars);
        math_ = std::make_unique<ElementMath>(module_, prog, spec_.target, spec_.options, scalars);

        arrays_.push_back({spec_.storage.param, layout_.p(), true});
        arrays_.push_back({spec_.storage.grad, layout_.g(), false});
        for (int s = 0; s < layout_.num_states; ++s) {
            const StateStorage& st = spec_.storage.state(prog.states[s].name);
            if (is_block_quantized(st.format))
                quantized_.push_back({s, std::make_unique<StateCodec>(module_, spec_.target, st, spec_.options.math)});
            else
                arrays_.push_back({state_dtype(st.format), layout_.state(s), true, s});
        }
        vector_ = gpu_vector_elements(spec_);
        elements_per_thread_ = gpu_elements_per_thread(spec_);
        unroll_ = elements_per_thread_ / vector_;

        body();
        if (has_statistics_pass(spec_)) statistics_kernel();
        for (int level = 1, levels = reduction_level_count(prog); level <= levels; ++level) reduction_kernel(level);
        if (spec_.options.capturable) emit_scalars_kernel(module_, spec_);
    }

private:
    // A kernel of compiler/kernel_abi.h's GPU signature; `scalars` receives its scalars: the
    // arguments, or in a capturable kernel their loads from the scalar block. The builder is
    // left in the function's entry block.
    llvm::Function* kernel_function(const std::string& name, std::vector<llvm::Value*>& scalars) {
        std::vector<std::string> scalar_names = kernel_scalars(spec_.lowered);
        llvm::Type* global_ptr = llvm::PointerType::get(ctx_, kNvptxGlobal);
        const bool capturable = spec_.options.capturable;
        std::vector<llvm::Type*> params{global_ptr, b_.getInt32Ty(), b_.getInt64Ty(), b_.getInt64Ty()};
        const unsigned first_scalar = has_reductions(spec_) ? 6 : 4;
        if (has_reductions(spec_)) params.insert(params.end(), 2, global_ptr);
        if (capturable)
            params.push_back(global_ptr);
        else
            params.insert(params.end(), scalar_names.size(), b_.getFloatTy());
        auto* fn = llvm::Function::Create(llvm::FunctionType::get(b_.getVoidTy(), params, false), llvm::GlobalValue::ExternalLinkage, name,
                                          module_);
        fn->setCallingConv(llvm::CallingConv::PTX_Kernel);
        fn->addFnAttr(llvm::Attribute::NoUnwind);
        fn->getArg(0)->setName("table");
        fn->getArg(1)->setName("num_tensors");
        fn->getArg(2)->setName("num_chunks");
        fn->getArg(3)->setName("seed");
        if (has_reductions(spec_)) {
            fn->getArg(4)->setName("global_slots");
            fn->getArg(5)->setName("tensor_slots");
        }
        b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", fn));
        if (capturable) fn->getArg(first_scalar)->setName("scalar_block");
        scalars.clear();
        for (size_t i = 0; i < scalar_names.size(); ++i) {
            if (!capturable) {
                fn->getArg(first_scalar + i)->setName(scalar_names[i]);
                scalars.push_back(fn->getArg(first_scalar + i));
                continue;
            }
            llvm::Value* at = b_.CreateConstInBoundsGEP1_64(b_.getInt8Ty(), fn->getArg(first_scalar), scalar_block_scalar(spec_.lowered, i));
            auto* load = b_.CreateAlignedLoad(b_.getFloatTy(), at, llvm::Align(4), scalar_names[i]);
            load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(ctx_, {}));  // NAME_scalars wrote it before the launch
            scalars.push_back(load);
        }
        // Launched with this many threads: lets ptxas budget registers for it.
        llvm::NamedMDNode* annotations = module_.getOrInsertNamedMetadata("nvvm.annotations");
        auto annotate = [&](const char* key, int value) {
            annotations->addOperand(llvm::MDNode::get(ctx_, {llvm::ValueAsMetadata::get(fn), llvm::MDString::get(ctx_, key),
                                                             llvm::ValueAsMetadata::get(b_.getInt32(value))}));
        };
        annotate("maxntidx", gpu_threads_per_block(spec_));
        if (spec_.options.gpu_min_blocks_per_sm > 0) annotate("minctasm", spec_.options.gpu_min_blocks_per_sm);
        return fn;
    }

    // The rank-1 statistics pass (compiler/kernel_abi.h): a thread walks the same 8 elements
    // it updates.
    void statistics_kernel() {
        std::vector<llvm::Value*> scalars;
        llvm::Function* fn = kernel_function(statistics_symbol(spec_), scalars);
        StatisticsWalk walk{fn->getArg(0),
                            fn->getArg(1),
                            sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_ctaid_x),
                            sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_nctaid_x),
                            fn->getArg(2),
                            sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_tid_x),
                            elements_per_thread_,
                            scalars,
                            kNvptxGlobal,
                            [this, fn](const ChunkContext& c) { return reduction_values(fn, c.tensor); }};
        emit_statistics_pass(b_, module_, spec_, walk);
        b_.CreateRetVoid();
    }

    // The reduction pass (compiler/reductions.h): a thread takes runs tid, tid + threads, ... of
    // each chunk, a run being the update's vector (8 elements with block-quantized states), so
    // that its loads are as wide; a warp's totals meet by shuffles, and its lane 0 adds them to
    // the slots.
    void reduction_kernel(int level) {
        std::vector<llvm::Value*> scalars;
        llvm::Function* fn = kernel_function(reductions_symbol(spec_, level), scalars);
        llvm::Value* tid = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_tid_x);
        // Block b takes a contiguous range of chunks, so that it meets one or two tensors and
        // adds its tensor totals once for each (with the update's strided chunks every block met
        // every tensor of the Llama list: millions of atomics).
        llvm::Value* blocks = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_nctaid_x);
        llvm::Value* per_block = b_.CreateUDiv(b_.CreateAdd(fn->getArg(2), b_.CreateSub(blocks, b_.getInt64(1))), blocks);
        llvm::Value* first = b_.CreateMul(sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_ctaid_x), per_block);
        llvm::Value* limit = b_.CreateBinaryIntrinsic(llvm::Intrinsic::umin, b_.CreateAdd(first, per_block), fn->getArg(2));
        ReductionWalk walk{{fn->getArg(0), fn->getArg(1), first, b_.getInt64(1), limit, tid, elements_per_thread_, scalars, kNvptxGlobal},
                           gpu_threads_per_block(spec_),
                           quantized_.empty() ? vector_ : elements_per_thread_,
                           fn->getArg(4),
                           fn->getArg(5),
                           [this](llvm::IRBuilder<>& b, llvm::Value* v, bool maximum) { return across_warp(b, v, maximum); },
                           b_.CreateICmpEQ(b_.CreateAnd(tid, b_.getInt64(31)), b_.getInt64(0))};
        emit_reduction_pass(b_, module_, spec_, walk, level);
        b_.CreateRetVoid();
    }

    // The sum (float64) or unsigned maximum (i32) of `v` over the warp, in every lane.
    llvm::Value* across_warp(llvm::IRBuilder<>& b, llvm::Value* v, bool maximum) {
        auto shuffle = [&](llvm::Value* word, int offset) {
            return b.CreateIntrinsic(llvm::Intrinsic::nvvm_shfl_sync_bfly_i32, {}, {b.getInt32(0xffffffffu), word, b.getInt32(offset), b.getInt32(31)});
        };
        for (int offset = 16; offset > 0; offset /= 2) {
            if (maximum) {
                v = b.CreateBinaryIntrinsic(llvm::Intrinsic::umax, v, shuffle(v, offset));
                continue;
            }
            llvm::Value* halves = b.CreateBitCast(v, llvm::FixedVectorType::get(b.getInt32Ty(), 2));
            llvm::Value* other = llvm::PoisonValue::get(halves->getType());
            for (int h = 0; h < 2; ++h) other = b.CreateInsertElement(other, shuffle(b.CreateExtractElement(halves, h), offset), h);
            v = b.CreateFAdd(v, b.CreateBitCast(other, b.getDoubleTy()));
        }
        return v;
    }

    // The program's reduction values for tensor `tensor` of a kernel function of this module.
    std::vector<llvm::Value*> reduction_values(llvm::Function* fn, llvm::Value* tensor) {
        if (!has_reductions(spec_)) return {};
        return emit_reduction_values(b_, spec_, fn->getArg(4), fn->getArg(5), tensor);
    }

    llvm::Value* sreg(llvm::Intrinsic::ID id) { return b_.CreateZExt(b_.CreateIntrinsic(id, {}, {}), b_.getInt64Ty()); }

    llvm::BasicBlock* block(const char* name) { return llvm::BasicBlock::Create(ctx_, name, fn_); }
    // Where two paths meet: `a` from block `from_a`, `b` from `from_b` (one value if they are one).
    llvm::Value* join(llvm::Value* a, llvm::BasicBlock* from_a, llvm::Value* b, llvm::BasicBlock* from_b) {
        if (a == b) return a;
        llvm::PHINode* phi = b_.CreatePHI(a->getType(), 2);
        phi->addIncoming(a, from_a);
        phi->addIncoming(b, from_b);
        return phi;
    }

    void body() {  // the builder is in fn_'s entry block
        tid_ = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_tid_x);
        if (gpu_pipelined_loop(spec_)) {
            copy_tables_to_shared();
            pipelined_chunk_loop(fn_->getArg(2));
            b_.CreateRetVoid();
            return;
        }
        // Block b takes chunks b, b + gridDim.x, ...
        llvm::Value* first = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_ctaid_x);
        llvm::Value* stride = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_nctaid_x);
        emit_chunk_loop(b_, spec_, fn_->getArg(0), fn_->getArg(1), first, stride, fn_->getArg(2), [&](const ChunkContext& c) {
            reductions_ = reduction_values(fn_, c.tensor);
            llvm::Value* any_bits = b_.getInt64(0);
            for (Array& a : arrays_) {
                llvm::Value* word = c.word(a.column);
                any_bits = b_.CreateOr(any_bits, word);
                a.base = b_.CreateIntToPtr(word, llvm::PointerType::get(ctx_, kNvptxGlobal));
            }
            n_ = c.word(layout_.n());
            offset_ = c.word(layout_.offset());
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

    // `value` as array `a` stores it (p with stochastic rounding when asked; `element` is its
    // index in the tensor).
    llvm::Value* stored(const Array& a, llvm::Value* value, llvm::Value* element) {
        if (a.column != layout_.p()) return math_->from_f32(b_, a.type, value);
        return math_->param_from_f32(b_, a.type, value, b_.CreateAdd(offset_, element), fn_->getArg(3));
    }

    // values[k] into element index + k of `base` (array a's base, or a thread's cursor), which
    // is the tensor's element first_element + k (stochastic rounding's key).
    void store_vector(const Array& a, llvm::Value* base, llvm::Value* index, llvm::Value* first_element, const std::vector<llvm::Value*>& values) {
        int per_store = std::min(int(values.size()), 16 / dtype_bytes(a.type));
        llvm::Type* elem = math_->storage_type(a.type);
        auto* vec_ty = llvm::FixedVectorType::get(elem, per_store);
        // bf16 in pairs by cvt.rn.bf16x2.f32, one instruction for two (ptxas pairs single
        // conversions only most of the time); stochastically rounded parameters go one by one.
        const bool pairs = a.type == DType::BF16 && per_store % 2 == 0 && !(a.column == layout_.p() && spec_.options.stochastic_rounding);
        for (size_t k = 0; k < values.size(); k += per_store) {
            llvm::Value* v = llvm::PoisonValue::get(vec_ty);
            if (pairs) {
                llvm::Value* words = llvm::PoisonValue::get(llvm::FixedVectorType::get(b_.getInt32Ty(), per_store / 2));
                for (int j = 0; j < per_store; j += 2)
                    words = b_.CreateInsertElement(words, math_->bf16_pair_from_f32(b_, values[k + j], values[k + j + 1]), j / 2);
                v = b_.CreateBitCast(words, vec_ty);
            } else {
                for (int j = 0; j < per_store; ++j) {
                    llvm::Value* element = b_.CreateAdd(first_element, b_.getInt64(int64_t(k) + j));
                    v = b_.CreateInsertElement(v, stored(a, values[k + j], element), j);
                }
            }
            llvm::Value* addr = b_.CreateGEP(elem, b_.CreateGEP(elem, base, index), b_.getInt64(k));
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
                in.reductions = reductions_;
                ElementValues out = math_->update(b_, in);
                results[0].push_back(out.p);
                for (int s = 0; s < layout_.num_states; ++s) results[2 + s].push_back(out.states[s]);
            }
            for (size_t k = 0; k < arrays_.size(); ++k)
                if (arrays_[k].written) store_vector(arrays_[k], arrays_[k].base, index[u], index[u], results[k]);
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
        in.reductions = reductions_;
        ElementValues out = math_->update(b_, in);
        for (size_t k = 0; k < arrays_.size(); ++k) {
            const Array& a = arrays_[k];
            if (!a.written) continue;
            llvm::Value* v = a.state < 0 ? out.p : out.states[a.state];
            b_.CreateAlignedStore(stored(a, v, i), addrs[k], llvm::Align(dtype_bytes(a.type)));
        }
        b_.CreateBr(next);
        b_.SetInsertPoint(next);
        llvm::Value* j_next = b_.CreateAdd(j, b_.getInt64(1));
        j->addIncoming(j_next, next);
        b_.CreateCondBr(b_.CreateICmpULT(j_next, b_.getInt64(elements_per_thread_)), head, done);
    }


    // ---- kernels with block-quantized states ----

    llvm::Value* barrier() { return b_.CreateIntrinsic(llvm::Intrinsic::nvvm_barrier0, {}, {}); }

    // Every thread of the block copies a share of each lookup table into shared memory.
    void copy_tables_to_shared() {
        std::map<llvm::GlobalVariable*, llvm::GlobalVariable*> copies;
        for (QuantizedArray& q : quantized_)
            for (llvm::GlobalVariable* t : q.codec->tables()) {
                if (!copies.count(t)) {
                    auto* copy = new llvm::GlobalVariable(module_, t->getValueType(), false, llvm::GlobalValue::InternalLinkage,
                                                          llvm::UndefValue::get(t->getValueType()), t->getName() + ".shared", nullptr,
                                                          llvm::GlobalValue::NotThreadLocal, kShared);
                    copy->setAlignment(llvm::Align(16));
                    copies[t] = copy;
                    copy_loop(t, copy);
                }
                q.codec->relocate(t, copies[t]);
            }
        if (!copies.empty()) barrier();
    }

    void copy_loop(llvm::GlobalVariable* from, llvm::GlobalVariable* to) {
        uint64_t count = from->getValueType()->getArrayNumElements();
        llvm::Type* elem = from->getValueType()->getArrayElementType();
        llvm::BasicBlock* before = b_.GetInsertBlock();
        llvm::BasicBlock* loop = block("copy.table");
        llvm::BasicBlock* after = block("copy.done");
        b_.CreateCondBr(b_.CreateICmpULT(tid_, b_.getInt64(count)), loop, after);
        b_.SetInsertPoint(loop);
        llvm::PHINode* i = b_.CreatePHI(b_.getInt64Ty(), 2);
        i->addIncoming(tid_, before);
        llvm::Value* v = b_.CreateAlignedLoad(elem, b_.CreateGEP(elem, from, i), llvm::Align(4));
        b_.CreateAlignedStore(v, b_.CreateGEP(elem, to, i), llvm::Align(4));
        llvm::Value* next = b_.CreateAdd(i, b_.getInt64(gpu_threads_per_block(spec_)));
        i->addIncoming(next, b_.GetInsertBlock());
        b_.CreateCondBr(b_.CreateICmpULT(next, b_.getInt64(count)), loop, after);
        b_.SetInsertPoint(after);
    }

    // The largest of each warp's `warp_max` (already reduced across its 32 threads) over
    // `group` neighbouring threads, a multiple of 32, in every one of them. Called by every
    // thread of the block: it synchronizes them.
    llvm::Value* max_across_warps(llvm::Value* warp_max, int group) {
        // Each warp's maximum through shared memory.
        int warps = gpu_threads_per_block(spec_) / 32;
        if (!reduce_buffer_) {
            auto* type = llvm::ArrayType::get(b_.getInt32Ty(), warps);
            reduce_buffer_ = new llvm::GlobalVariable(module_, type, false, llvm::GlobalValue::InternalLinkage, llvm::UndefValue::get(type),
                                                      "optjit.block.max", nullptr, llvm::GlobalValue::NotThreadLocal, kShared);
            // The load-store vectorizer reads it in 16-byte pieces; PTX must declare that alignment.
            reduce_buffer_->setAlignment(llvm::Align(16));
        }
        llvm::Value* warp = b_.CreateLShr(tid_, 5);
        llvm::BasicBlock* write = block("reduce.write");
        llvm::BasicBlock* written = block("reduce.written");
        b_.CreateCondBr(b_.CreateICmpEQ(b_.CreateAnd(tid_, b_.getInt64(31)), b_.getInt64(0)), write, written);
        b_.SetInsertPoint(write);
        b_.CreateAlignedStore(warp_max, b_.CreateGEP(b_.getInt32Ty(), reduce_buffer_, warp), llvm::Align(4));
        b_.CreateBr(written);
        b_.SetInsertPoint(written);
        barrier();
        int per_group = group / 32;
        llvm::Value* first = b_.CreateMul(b_.CreateUDiv(warp, b_.getInt64(per_group)), b_.getInt64(per_group));
        llvm::Value* result = b_.getInt32(0);
        for (int k = 0; k < per_group; ++k) {
            llvm::Value* v = b_.CreateAlignedLoad(b_.getInt32Ty(), b_.CreateGEP(b_.getInt32Ty(), reduce_buffer_, b_.CreateAdd(first, b_.getInt64(k))), llvm::Align(4));
            result = b_.CreateBinaryIntrinsic(llvm::Intrinsic::umax, result, v);
        }
        barrier();  // before the buffer is written again
        return result;
    }

    // One thread's 8 elements as loaded, still in storage form: per dense array its 16-byte
    // (or smaller) vectors, per quantized state one word of codes (8 bytes, or 4 for q4). The
    // fast and slow paths produce the same shapes and meet in phis of whole vectors: merged
    // element by element, LLVM would sink the loads below the branch and lose the vectors.
    struct Raw {
        std::vector<std::vector<llvm::Value*>> dense;  // [array][piece]
        std::vector<llvm::Value*> codes;               // [quantized state]
    };

    llvm::FixedVectorType* piece_type(const Array& a) const {
        int per_load = std::min(elements_per_thread_, 16 / dtype_bytes(a.type));
        return llvm::FixedVectorType::get(math_->storage_type(a.type), per_load);
    }
    // A thread's codes as 32-bit words (8 bytes for q8 and fp8, 4 for q4): 32-bit shifts are
    // one instruction where 64-bit ones are several.
    llvm::FixedVectorType* code_word_type(const QuantizedArray& q) {
        return llvm::FixedVectorType::get(b_.getInt32Ty(), q.codec->four_bit() ? elements_per_thread_ / 8 : elements_per_thread_ / 4);
    }
    // Where element j's code sits: word, bit offset, mask (q4: the even element is the high nibble).
    struct CodeSlot {
        int word, shift;
        uint32_t mask;
    };
    CodeSlot code_slot(const QuantizedArray& q, int j) const {
        if (q.codec->four_bit()) return {j / 8, 8 * (j / 2 % 4) + (j % 2 == 0 ? 4 : 0), 15};
        return {j / 4, 8 * (j % 4), 255};
    }

    // The thread's elements of a whole, aligned chunk, at cursor_.
    Raw load_fast() {
        Raw out;
        for (const Array& a : arrays_) {
            llvm::FixedVectorType* type = piece_type(a);
            int per_load = int(type->getNumElements());
            std::vector<llvm::Value*> pieces;
            for (int k = 0; k < elements_per_thread_; k += per_load) {
                llvm::Value* addr = b_.CreateConstGEP1_32(type->getElementType(), cursor_.arrays[&a - arrays_.data()], k);
                auto* load = b_.CreateAlignedLoad(type, addr, llvm::Align(per_load * dtype_bytes(a.type)));
                if (!a.written) load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(ctx_, {}));
                pieces.push_back(load);
            }
            out.dense.push_back(pieces);
        }
        for (const QuantizedArray& q : quantized_) {
            llvm::FixedVectorType* type = code_word_type(q);
            out.codes.push_back(b_.CreateAlignedLoad(type, cursor_.codes[&q - quantized_.data()], llvm::Align(4 * type->getNumElements())));
        }
        return out;
    }

    // The offset from the thread's first element (cursor_) of its element j, or of the tensor's
    // last element where that is past its end (loaded, never stored); i64.
    llvm::Value* clamped_offset(int j) {
        return b_.CreateSExt(b_.CreateBinaryIntrinsic(llvm::Intrinsic::smin, b_.getInt32(j), tail_), b_.getInt64Ty());
    }

    // The thread's elements j, clamped (clamped_offset), assembled into the fast path's shapes.
    Raw load_slow() {
        Raw out;
        for (const Array& a : arrays_) {
            llvm::FixedVectorType* type = piece_type(a);
            int per_load = int(type->getNumElements());
            std::vector<llvm::Value*> pieces;
            for (int k = 0; k < elements_per_thread_; k += per_load) {
                llvm::Value* v = llvm::PoisonValue::get(type);
                for (int j = 0; j < per_load; ++j) {
                    llvm::Value* addr = b_.CreateGEP(type->getElementType(), cursor_.arrays[&a - arrays_.data()], clamped_offset(k + j));
                    v = b_.CreateInsertElement(v, b_.CreateAlignedLoad(type->getElementType(), addr, llvm::Align(dtype_bytes(a.type))), j);
                }
                pieces.push_back(v);
            }
            out.dense.push_back(pieces);
        }
        for (const QuantizedArray& q : quantized_) {
            // Each element's own code, from its (clamped) index: past the end, a copy of the last
            // element's code, never a q4 byte's padding nibble (a thread's first element is even).
            std::vector<llvm::Value*> codes;
            for (int j = 0; j < elements_per_thread_; ++j) codes.push_back(q.codec->load_code(b_, cursor_.codes[&q - quantized_.data()], clamped_offset(j)));
            out.codes.push_back(code_vector(q, pack_codes(q, codes)));
        }
        return out;
    }

    // The fp32 values of a dense array and the i32 codes of a quantized state, per element.
    std::vector<llvm::Value*> unpack_dense(const Array& a, const std::vector<llvm::Value*>& pieces) {
        std::vector<llvm::Value*> out;
        for (llvm::Value* piece : pieces) {
            unsigned count = llvm::cast<llvm::FixedVectorType>(piece->getType())->getNumElements();
            if (a.type == DType::BF16 && count % 2 == 0) {
                // By 32-bit words (element by element, LLVM extracts each half first).
                llvm::Value* words = b_.CreateBitCast(piece, llvm::FixedVectorType::get(b_.getInt32Ty(), count / 2));
                for (unsigned w = 0; w < count / 2; ++w) {
                    auto [low, high] = math_->bf16_pair_to_f32(b_, b_.CreateExtractElement(words, w));
                    out.push_back(low);
                    out.push_back(high);
                }
                continue;
            }
            for (unsigned j = 0; j < count; ++j) out.push_back(math_->to_f32(b_, a.type, b_.CreateExtractElement(piece, j)));
        }
        return out;
    }
    std::vector<llvm::Value*> unpack_codes(const QuantizedArray& q, llvm::Value* words) {
        std::vector<llvm::Value*> out;
        for (int j = 0; j < elements_per_thread_; ++j) {
            CodeSlot slot = code_slot(q, j);
            llvm::Value* word = b_.CreateExtractElement(words, slot.word);
            out.push_back(b_.CreateAnd(b_.CreateLShr(word, slot.shift), b_.getInt32(slot.mask)));
        }
        return out;
    }

    // Points the arrays at the tensor of `row`, sets aligned_ (whether every array's address
    // allows its vector accesses) and returns the tensor's element count.
    llvm::Value* point_at_row(llvm::Value* row) {
        auto pointer = [&](llvm::Value* word) { return b_.CreateIntToPtr(word, llvm::PointerType::get(ctx_, kNvptxGlobal)); };
        llvm::Value* misaligned = b_.getInt64(0);
        for (Array& a : arrays_) {
            llvm::Value* word = emit_row_word(b_, row, a.column);
            misaligned = b_.CreateOr(misaligned, b_.CreateAnd(word, b_.getInt64(15)));
            a.base = pointer(word);
        }
        for (QuantizedArray& q : quantized_) {
            llvm::Value* word = emit_row_word(b_, row, layout_.state(q.state));
            misaligned = b_.CreateOr(misaligned, b_.CreateAnd(word, b_.getInt64(q.codec->four_bit() ? 3 : 7)));
            q.codes = pointer(word);
            q.scales = pointer(emit_row_word(b_, row, layout_.scales(q.state)));
        }
        llvm::Value* n = emit_row_word(b_, row, layout_.n());
        aligned_ = b_.CreateICmpEQ(misaligned, b_.getInt64(0));
        return n;
    }

    // A thread's addresses in a chunk: its first element of each dense array, its first code of
    // each quantized state, and its block's scale (nullptr for rank-1 states). Within a run of
    // chunks of one tensor the next chunk's are these plus constants: two instructions an
    // address a chunk, where a tensor's 64-bit element index, the chunk's row and its tensor
    // search took ~100 instructions a chunk (13 an element).
    struct Cursors {
        std::vector<llvm::Value*> arrays, codes, scales;
        std::vector<llvm::Value*> flatten() const {
            std::vector<llvm::Value*> out(arrays);
            out.insert(out.end(), codes.begin(), codes.end());
            for (llvm::Value* v : scales)
                if (v) out.push_back(v);
            return out;
        }
        Cursors with(const std::vector<llvm::Value*>& values, size_t& i) const {
            Cursors c = *this;
            for (llvm::Value*& v : c.arrays) v = values[i++];
            for (llvm::Value*& v : c.codes) v = values[i++];
            for (llvm::Value*& v : c.scales)
                if (v) v = values[i++];
            return c;
        }
    };
    // Every address `chunks` chunks on (negative: back). `kept`: the new addresses go through a
    // move LLVM cannot see through, so that a step back from them is a constant offset in the
    // instructions that use it, not the old addresses kept alive in registers.
    Cursors moved(const Cursors& from, int chunks, bool kept = false) {
        std::vector<llvm::Value*> at = from.flatten();
        const std::vector<int64_t> strides = chunk_strides(from);
        for (size_t k = 0; k < at.size(); ++k) {
            at[k] = b_.CreateConstGEP1_64(b_.getInt8Ty(), at[k], strides[k] * chunks);
            if (!kept) continue;
            auto* type = llvm::FunctionType::get(at[k]->getType(), {at[k]->getType()}, false);
            at[k] = b_.CreateCall(llvm::InlineAsm::get(type, "mov.b64 $0, $1;", "=l,l", false), {at[k]});
        }
        size_t i = 0;
        return from.with(at, i);
    }
    // The bytes each address of `at` (in Cursors::flatten's order) moves a chunk on.
    std::vector<int64_t> chunk_strides(const Cursors& at) const {
        const int64_t chunk = chunk_elements(spec_);
        std::vector<int64_t> out;
        for (const Array& a : arrays_) out.push_back(chunk * dtype_bytes(a.type));
        for (const QuantizedArray& q : quantized_) out.push_back(q.codec->four_bit() ? chunk / 2 : chunk);
        for (size_t k = 0; k < quantized_.size(); ++k)
            if (at.scales[k]) out.push_back(chunk / int64_t(quantized_[k].codec->storage().block) * 4);
        return out;
    }

    // Where a block's walk stands: chunk c (i32: a launch has fewer than 2^31 chunks) of tensor
    // t, the end of its run and of its segment (the run's chunks of tensor t), the segment's
    // chunks below fast_end whole and aligned (vector accesses), and the thread's addresses in
    // chunk c.
    struct Walk {
        llvm::Value *c = nullptr, *t = nullptr, *run_end = nullptr, *segment_end = nullptr, *fast_end = nullptr;
        Cursors at;
        std::vector<llvm::Value*> flatten() const {
            std::vector<llvm::Value*> out{c, t, run_end, segment_end, fast_end};
            for (llvm::Value* v : at.flatten()) out.push_back(v);
            return out;
        }
        Walk with(const std::vector<llvm::Value*>& values, size_t& i) const {
            Walk w = *this;
            for (llvm::Value** v : {&w.c, &w.t, &w.run_end, &w.segment_end, &w.fast_end}) *v = values[i++];
            w.at = at.with(values, i);
            return w;
        }
        llvm::Value* fast(llvm::IRBuilder<>& b) const { return b.CreateICmpULT(c, fast_end, "fast"); }
    };

    // Whether the chunk the walk is at takes the vector path (i1): always in a whole-chunk kernel
    // (CodegenOptions::whole_chunks), which then has no element-by-element path at all.
    llvm::Value* chunk_is_fast(const Walk& place) { return gpu_whole_chunks(spec_) ? b_.getTrue() : place.fast(b_); }

    llvm::Value* i32(llvm::Value* v) { return b_.CreateTrunc(v, b_.getInt32Ty()); }
    llvm::Value* i64(llvm::Value* v) { return b_.CreateZExt(v, b_.getInt64Ty()); }

    // The walk at chunk c (i32) of the run ending at run_end, searching its tensor from t_hint.
    Walk enter(llvm::Value* c, llvm::Value* t_hint, llvm::Value* run_end) {
        auto [t, row] = emit_find_tensor(b_, spec_, fn_->getArg(0), fn_->getArg(1), i64(c), i64(t_hint));
        llvm::Value* n = point_at_row(row);
        const int64_t chunk = chunk_elements(spec_);
        llvm::Value* begin = i32(emit_row_word(b_, row, layout_.chunk_begin()));
        llvm::Value* element = b_.CreateAdd(b_.CreateMul(i64(b_.CreateSub(c, begin)), b_.getInt64(chunk)), i64(lane_));  // the thread's first
        Walk w;
        w.c = c;
        w.t = i32(t);
        w.run_end = run_end;
        w.segment_end = b_.CreateBinaryIntrinsic(llvm::Intrinsic::umin, i32(emit_row_word(b_, row, layout_.chunk_end())), run_end, nullptr, "segment.end");
        w.fast_end = b_.CreateSelect(aligned_, b_.CreateAdd(begin, i32(b_.CreateUDiv(n, b_.getInt64(chunk)))), begin, "fast.end");
        for (Array& a : arrays_) w.at.arrays.push_back(b_.CreateGEP(math_->storage_type(a.type), a.base, element));
        for (QuantizedArray& q : quantized_) {
            w.at.codes.push_back(b_.CreateGEP(b_.getInt8Ty(), q.codes, q.codec->four_bit() ? b_.CreateLShr(element, 1) : element));
            w.at.scales.push_back(q.rank1() ? nullptr
                                            : b_.CreateGEP(b_.getFloatTy(), q.scales, b_.CreateLShr(element, llvm::Log2_32(q.codec->storage().block))));
        }
        return w;
    }

    // The other blocks' chunks from one of a block's runs to its next: (G - 1) R (i64).
    llvm::Value* between_runs() { return b_.CreateMul(b_.CreateSub(blocks_, b_.getInt64(1)), run_chunks_); }

    // The walk at the chunk after w's, and whether there is one: the next chunk of the segment
    // (addresses plus constants, `ahead`: the cursors moved on, computed by the caller for
    // every chunk), else the next tensor's chunk in the run, else the block's next run.
    std::pair<Walk, llvm::Value*> advance(const Walk& w, const Cursors& ahead) {
        llvm::Value* next = b_.CreateAdd(w.c, b_.getInt32(1), "next");
        llvm::BasicBlock* from = b_.GetInsertBlock();
        llvm::BasicBlock* elsewhere = block("walk.elsewhere");
        llvm::BasicBlock* entered = block("walk.entered");
        llvm::BasicBlock* done = block("walk.done");
        llvm::BasicBlock* joined = block("walk.joined");
        b_.CreateCondBr(b_.CreateICmpULT(next, w.segment_end), joined, elsewhere, llvm::MDBuilder(ctx_).createBranchWeights(1000, 1));
        b_.SetInsertPoint(elsewhere);
        // A run [r R, r R + R) ends: the block's next is r + G, R G chunks on (within 64 bits).
        llvm::Value* run_over = b_.CreateICmpUGE(next, w.run_end);
        llvm::Value* jump = b_.CreateAdd(i64(w.run_end), between_runs());
        llvm::Value* c = b_.CreateSelect(run_over, i32(b_.CreateBinaryIntrinsic(llvm::Intrinsic::umin, jump, num_chunks_)), next);
        llvm::Value* run_end = b_.CreateSelect(run_over, i32(b_.CreateBinaryIntrinsic(llvm::Intrinsic::umin, b_.CreateAdd(i64(c), run_chunks_), num_chunks_)), w.run_end);
        b_.CreateCondBr(b_.CreateICmpULT(c, i32(num_chunks_)), entered, done);
        b_.SetInsertPoint(entered);
        Walk there = enter(c, w.t, run_end);
        llvm::BasicBlock* entered_end = b_.GetInsertBlock();
        b_.CreateBr(joined);
        b_.SetInsertPoint(done);
        b_.CreateBr(joined);
        b_.SetInsertPoint(joined);
        Walk here = w;
        here.c = next;
        here.at = ahead;
        std::vector<llvm::Value*> same = here.flatten(), moved_on = there.flatten(), out;
        for (size_t k = 0; k < same.size(); ++k) {
            llvm::PHINode* phi = b_.CreatePHI(same[k]->getType(), 3);
            phi->addIncoming(same[k], from);
            phi->addIncoming(moved_on[k], entered_end);
            phi->addIncoming(llvm::PoisonValue::get(same[k]->getType()), done);
            out.push_back(phi);
        }
        llvm::PHINode* more = b_.CreatePHI(b_.getInt1Ty(), 3, "more");
        more->addIncoming(b_.getTrue(), from);
        more->addIncoming(b_.getTrue(), entered_end);
        more->addIncoming(b_.getFalse(), done);
        size_t i = 0;
        return {w.with(out, i), more};
    }

    // What a rare path needs of the chunk `place` (the walk at it): its tensor's row, the thread's
    // first element in the tensor (i64), and the offset from that of the tensor's last element
    // (i32, negative where the thread is past the end; clamped to 31 bits).
    struct ChunkInTensor {
        llvm::Value *row, *i0, *tail;
    };
    ChunkInTensor in_tensor(const Walk& place) {
        llvm::Value* row = emit_row(b_, spec_, fn_->getArg(0), i64(place.t));
        llvm::Value* begin = i32(emit_row_word(b_, row, layout_.chunk_begin()));
        llvm::Value* i0 = b_.CreateAdd(b_.CreateMul(i64(b_.CreateSub(place.c, begin)), b_.getInt64(chunk_elements(spec_))), i64(lane_), "i0");
        llvm::Value* tail = b_.CreateSub(b_.CreateSub(emit_row_word(b_, row, layout_.n()), b_.getInt64(1)), i0);
        tail = b_.CreateBinaryIntrinsic(llvm::Intrinsic::smin, tail, b_.getInt64(INT32_MAX));
        return {row, i0, i32(tail)};
    }

    // What a chunk's processing reads from memory, loaded one chunk ahead.
    struct Prefetched {
        Walk place;  // the walk at this chunk
        Raw raw;
        std::vector<llvm::Value*> old_scales;  // per quantized state, of this thread's block
        std::vector<llvm::Value*> flatten() const {
            std::vector<llvm::Value*> out = place.flatten();
            for (const auto& pieces : raw.dense) out.insert(out.end(), pieces.begin(), pieces.end());
            out.insert(out.end(), raw.codes.begin(), raw.codes.end());
            out.insert(out.end(), old_scales.begin(), old_scales.end());
            return out;
        }
        Prefetched with(const std::vector<llvm::Value*>& values) const {  // same shape, other values
            Prefetched p = *this;
            size_t i = 0;
            p.place = place.with(values, i);
            for (auto& pieces : p.raw.dense)
                for (llvm::Value*& v : pieces) v = values[i++];
            for (llvm::Value*& v : p.raw.codes) v = values[i++];
            for (llvm::Value*& v : p.old_scales) v = values[i++];
            return p;
        }
    };

    // Loads the chunk the walk is at: vector accesses for whole, aligned chunks, element by
    // element otherwise, and the old scale of each quantized state's block (the tensor's last
    // block where the thread's elements are past its end).
    Prefetched prefetch(const Walk& place) {
        Prefetched out;
        out.place = place;
        cursor_ = place.at;
        // The old scales first: an address computed after the data loads are issued can wait
        // for them (ptxas tracks loads by a few shared scoreboards), which stalls the warp for
        // a whole memory latency each chunk.
        auto old_scales = [&](bool fast) {
            std::vector<llvm::Value*> scales;
            for (const QuantizedArray& q : quantized_) {
                if (q.rank1()) {  // scales per element, in process()
                    scales.push_back(llvm::ConstantFP::get(b_.getFloatTy(), 0.0));
                    continue;
                }
                llvm::Value* at = cursor_.scales[&q - quantized_.data()];
                if (!fast) {  // the clamped element's block, from this thread's (chunks begin blocks)
                    const uint32_t block = q.codec->storage().block;
                    llvm::Value* in_block = b_.CreateAnd(lane_, b_.getInt32(int32_t(block - 1)));
                    llvm::Value* clamped = b_.CreateAdd(in_block, b_.CreateBinaryIntrinsic(llvm::Intrinsic::smin, tail_, b_.getInt32(0)));
                    at = b_.CreateGEP(b_.getFloatTy(), at, b_.CreateSExt(b_.CreateAShr(clamped, llvm::Log2_32(block)), b_.getInt64Ty()));
                }
                scales.push_back(b_.CreateAlignedLoad(b_.getFloatTy(), at, llvm::Align(4)));
            }
            return scales;
        };
        llvm::BasicBlock* fast_load = block("load.fast");
        llvm::BasicBlock* slow_load = block("load.slow");
        llvm::BasicBlock* loaded_block = block("loaded");
        b_.CreateCondBr(chunk_is_fast(place), fast_load, slow_load);
        b_.SetInsertPoint(fast_load);
        std::vector<llvm::Value*> fast_scales = old_scales(true);
        Raw f = load_fast();
        llvm::BasicBlock* fast_end = b_.GetInsertBlock();
        b_.CreateBr(loaded_block);
        b_.SetInsertPoint(slow_load);
        tail_ = in_tensor(place).tail;
        std::vector<llvm::Value*> slow_scales = old_scales(false);
        Raw s = load_slow();
        llvm::BasicBlock* slow_end = b_.GetInsertBlock();
        b_.CreateBr(loaded_block);
        b_.SetInsertPoint(loaded_block);
        auto merge = [&](llvm::Value* x, llvm::Value* y) { return join(x, fast_end, y, slow_end); };
        for (size_t k = 0; k < arrays_.size(); ++k) {
            out.raw.dense.emplace_back();
            for (size_t piece = 0; piece < f.dense[k].size(); ++piece) out.raw.dense[k].push_back(merge(f.dense[k][piece], s.dense[k][piece]));
        }
        for (size_t k = 0; k < quantized_.size(); ++k) out.raw.codes.push_back(merge(f.codes[k], s.codes[k]));
        for (size_t k = 0; k < quantized_.size(); ++k) out.old_scales.push_back(merge(fast_scales[k], slow_scales[k]));
        return out;
    }

    // Asks L2 for the lines of the chunk `distance` chunks after w's in the block's own walk
    // (in one of its later runs where w's run ends first), if that chunk is whole, aligned and
    // of w's tensor (below w.fast_end): every thread its own elements' lines and its block's
    // scale, one request a line once the warp's addresses coalesce. Registers hold one chunk
    // ahead; this keeps a block's next several chunks in flight at no register cost. The
    // scales too: a chunk's loads share a scoreboard, so its first read waited for its scales'
    // DRAM latency (ncu, H100: 57 % of q8's stall samples on that one read; asking L2 for the
    // scales took q8 from 89.9 to 91.8 % of copy, q4 86.7 to 90.0, fp8 91.2 to 92.5). Within
    // the run the addresses are immediate offsets; a later run's are a multiply-add an array.
    void prefetch_to_l2(const Walk& w, int distance) {
        if (distance <= 0) return;
        auto request = [&](llvm::Value* address, int64_t offset) {
            auto* type = llvm::FunctionType::get(b_.getVoidTy(), {address->getType()}, false);
            b_.CreateCall(llvm::InlineAsm::get(type, fmt::format("prefetch.global.L2 [$0+{}];", offset), "l", true), {address});
        };
        const std::vector<llvm::Value*> at = w.at.flatten();
        const std::vector<int64_t> strides = chunk_strides(w.at);
        llvm::BasicBlock* issued = block("l2.prefetched");
        llvm::BasicBlock* near = block("l2.in.run");
        const int run = gpu_run_chunks(spec_);
        // Runs begin at multiples of run (pipelined_chunk_loop); with one run a block (run 0)
        // there is no later run.
        if (run > 0) {
            llvm::Value* target_position = b_.CreateAdd(b_.CreateURem(w.c, b_.getInt32(run)), b_.getInt32(distance));  // from w's run's start
            llvm::BasicBlock* far = block("l2.later.run");
            b_.CreateCondBr(b_.CreateICmpULT(target_position, b_.getInt32(run)), near, far);
            b_.SetInsertPoint(far);
            // The block's run after k more runs is k G runs on: between_runs() skipped a run.
            llvm::Value* runs_on = i64(b_.CreateUDiv(target_position, b_.getInt32(run)));
            llvm::Value* delta = b_.CreateAdd(b_.CreateMul(runs_on, between_runs()), b_.getInt64(distance));
            llvm::BasicBlock* issue = block("l2.prefetch.far");
            b_.CreateCondBr(b_.CreateICmpULT(b_.CreateAdd(i64(w.c), delta), i64(w.fast_end)), issue, issued);
            b_.SetInsertPoint(issue);
            // Below fast_end, so fewer than 2^31 chunks on: the offsets are 32-bit products.
            llvm::Value* chunks_on = i64(i32(delta));
            for (size_t k = 0; k < at.size(); ++k) request(b_.CreateGEP(b_.getInt8Ty(), at[k], b_.CreateMul(chunks_on, b_.getInt64(strides[k]))), 0);
            b_.CreateBr(issued);
        } else {
            b_.CreateBr(near);
        }
        b_.SetInsertPoint(near);
        llvm::BasicBlock* issue = block("l2.prefetch");
        llvm::Value* ahead = b_.CreateAdd(w.c, b_.getInt32(distance));
        b_.CreateCondBr(b_.CreateICmpULT(ahead, b_.CreateBinaryIntrinsic(llvm::Intrinsic::umin, w.segment_end, w.fast_end)), issue, issued);
        b_.SetInsertPoint(issue);
        for (size_t k = 0; k < at.size(); ++k) request(at[k], strides[k] * distance);
        b_.CreateBr(issued);
        b_.SetInsertPoint(issued);
    }

    // The blocks walk runs of gpu_run_chunks consecutive chunks, block b runs b, b + G, ... (G
    // blocks), so that the whole grid moves through memory together as a grid-stride loop does
    // (a contiguous range a block, each block streaming from its own part of memory, ran at
    // 69-75 % of copy where the grid-stride loop ran at 82-87 %, H100), while a chunk's
    // addresses are mostly the last chunk's plus constants. gpu_run_chunks = 0: one run a
    // block, its contiguous share. The loads of a block's next chunk are issued while the
    // current chunk is processed, across tensors and runs, so memory stays busy through its
    // math, shuffles and stores, and L2 is asked for the chunks after it (prefetch_to_l2).
    // They are issued once the current chunk's loaded values have been read: ptxas tracks
    // loads by a few scoreboards that each instruction of the loop reuses, so a first read
    // after the next chunk's loads waited for those too, a whole memory latency each chunk.
    void pipelined_chunk_loop(llvm::Value* num_chunks) {
        num_chunks_ = num_chunks;
        blocks_ = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_nctaid_x);
        lane_ = b_.CreateMul(i32(tid_), b_.getInt32(elements_per_thread_), "lane");
        const int run = gpu_run_chunks(spec_);
        run_chunks_ = run > 0 ? b_.getInt64(run) : b_.CreateUDiv(b_.CreateAdd(num_chunks, b_.CreateSub(blocks_, b_.getInt64(1))), blocks_);
        llvm::Value* first = b_.CreateMul(sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_ctaid_x), run_chunks_);
        llvm::BasicBlock* prologue = block("pipeline.prologue");
        llvm::BasicBlock* loop = block("pipeline.loop");
        llvm::BasicBlock* exit = block("pipeline.exit");
        b_.CreateCondBr(b_.CreateICmpULT(first, num_chunks), prologue, exit);
        b_.SetInsertPoint(prologue);
        llvm::Value* run_end = i32(b_.CreateBinaryIntrinsic(llvm::Intrinsic::umin, b_.CreateAdd(first, run_chunks_), num_chunks));
        Prefetched start = prefetch(enter(i32(first), b_.getInt32(0), run_end));
        llvm::BasicBlock* prologue_end = b_.GetInsertBlock();
        b_.CreateBr(loop);

        b_.SetInsertPoint(loop);
        std::vector<llvm::PHINode*> carried;
        for (llvm::Value* v : start.flatten()) {
            carried.push_back(b_.CreatePHI(v->getType(), 2));
            carried.back()->addIncoming(v, prologue_end);
        }
        // Unrolled, each copy's loads of the next chunk land in the next copy's registers, where
        // one body moved every loaded register back to the loop's at its back edge.
        std::vector<llvm::Value*> values(carried.begin(), carried.end());
        const int unroll = gpu_unroll_chunks(spec_);
        llvm::Value* more = nullptr;
        for (int copy = 0; copy < unroll; ++copy) {
            std::tie(values, more) = process_and_load_next(start.with(values));
            if (copy + 1 == unroll) break;
            llvm::BasicBlock* again = block("pipeline.unrolled");
            b_.CreateCondBr(more, again, exit);
            b_.SetInsertPoint(again);
        }
        llvm::BasicBlock* latch = b_.GetInsertBlock();
        for (size_t k = 0; k < carried.size(); ++k) carried[k]->addIncoming(values[k], latch);
        b_.CreateCondBr(more, loop, exit);
        b_.SetInsertPoint(exit);
    }

    // One chunk of the loop: processes `current` and, once its loaded values are read, issues
    // the loads of the block's next chunk. Returns what those loads give (flattened, poison
    // where there is no next chunk) and whether there is one.
    std::pair<std::vector<llvm::Value*>, llvm::Value*> process_and_load_next(const Prefetched& current) {
        std::vector<llvm::Value*> upcoming_values;
        llvm::Value* more = nullptr;
        process(current, [&] {
            // The chunk after this one in its segment, whether or not the walk goes there: the
            // stores reach back from it.
            Cursors ahead = moved(current.place.at, 1, true);
            auto [next, has_next] = advance(current.place, ahead);
            more = has_next;
            llvm::BasicBlock* load = block("pipeline.ahead");
            llvm::BasicBlock* joined = block("pipeline.joined");
            llvm::BasicBlock* from = b_.GetInsertBlock();
            b_.CreateCondBr(more, load, joined);
            b_.SetInsertPoint(load);
            Prefetched upcoming = prefetch(next);
            prefetch_to_l2(next, gpu_prefetch_chunks(spec_) - 1);
            llvm::BasicBlock* load_end = b_.GetInsertBlock();
            b_.CreateBr(joined);
            b_.SetInsertPoint(joined);
            for (llvm::Value* v : upcoming.flatten()) upcoming_values.push_back(join(v, load_end, llvm::PoisonValue::get(v->getType()), from));
            return moved(ahead, -1);
        });
        return {upcoming_values, more};
    }

    // Processes a chunk; `issue_next_loads` runs once its loaded values have been read, and
    // returns the chunk's addresses to store to.
    void process(const Prefetched& chunk, const std::function<Cursors()>& issue_next_loads) {
        const int E = elements_per_thread_;
        cursor_ = chunk.place.at;
        llvm::Value* fast = chunk_is_fast(chunk.place);
        // Its tensor's row, where rank-1 states or stochastic rounding need it (the arrays'
        // bases belong to the latest chunk the walk entered).
        ChunkInTensor tensor{};
        if (layout_.rank1 || spec_.options.stochastic_rounding) tensor = in_tensor(chunk.place);
        reductions_ = reduction_values(fn_, i64(chunk.place.t));
        struct {
            std::vector<std::vector<llvm::Value*>> dense;  // [array][element], fp32
            std::vector<std::vector<llvm::Value*>> codes;  // [quantized state][element], i32
        } in;
        for (size_t k = 0; k < arrays_.size(); ++k) in.dense.push_back(unpack_dense(arrays_[k], chunk.raw.dense[k]));
        for (size_t k = 0; k < quantized_.size(); ++k) in.codes.push_back(unpack_codes(quantized_[k], chunk.raw.codes[k]));

        // Decode with the blocks' old scales.
        std::vector<std::vector<llvm::Value*>> state_in(layout_.num_states);
        for (size_t k = 0; k < arrays_.size(); ++k)
            if (arrays_[k].state >= 0) state_in[arrays_[k].state] = in.dense[k];
        // Rank-1 states: each element's row and column, and its statistics.
        std::vector<std::unique_ptr<Rank1Statistics>> statistics(quantized_.size());
        std::vector<Rank1Cursor> cursors;
        for (size_t k = 0; k < quantized_.size(); ++k) {
            if (!quantized_[k].rank1()) continue;
            llvm::Value* scales = emit_row_word(b_, tensor.row, layout_.scales(quantized_[k].state));
            statistics[k] = std::make_unique<Rank1Statistics>(b_, b_.CreateIntToPtr(scales, llvm::PointerType::get(ctx_, kNvptxGlobal)),
                                                              emit_row_word(b_, tensor.row, layout_.n()), emit_row_word(b_, tensor.row, layout_.columns()));
            if (cursors.empty()) {
                cursors.push_back(statistics[k]->cursor(b_, tensor.i0));
                for (int j = 1; j < E; ++j) cursors.push_back(statistics[k]->next(b_, cursors.back()));
            }
        }
        for (size_t k = 0; k < quantized_.size(); ++k) {
            const QuantizedArray& q = quantized_[k];
            if (statistics[k]) {
                for (int j = 0; j < E; ++j) state_in[q.state].push_back(q.codec->decode(b_, in.codes[k][j], statistics[k]->stored_scale(b_, cursors[j])));
                continue;
            }
            llvm::Value* old_scale = chunk.old_scales[k];
            // 4-bit codes a byte (two elements) at a time, straight from the loaded words.
            if (q.codec->has_lookup() && q.codec->four_bit()) {
                for (int j = 0; j < E; j += 2) {
                    llvm::Value* word = b_.CreateExtractElement(chunk.raw.codes[k], uint64_t(j / 8));
                    auto [even, odd] = q.codec->decode_byte(b_, word, unsigned(j / 2 % 4), old_scale);
                    state_in[q.state].push_back(even);
                    state_in[q.state].push_back(odd);
                }
                continue;
            }
            for (int j = 0; j < E; j += 2) {
                auto [v0, v1] = q.codec->decode_pair(b_, in.codes[k][j], in.codes[k][j + 1], old_scale);
                state_in[q.state].push_back(v0);
                state_in[q.state].push_back(v1);
            }
        }

        cursor_ = issue_next_loads();
        const bool rounds_stochastically = spec_.options.stochastic_rounding;
        offset_ = rounds_stochastically ? emit_row_word(b_, tensor.row, layout_.offset()) : b_.getInt64(0);  // stored()'s key

        // Update: every element's divisions and square roots by their branch-free fast paths,
        // and the whole update again with the IEEE instructions where an operand fell outside
        // the fast paths' range (rarely: NaN, infinity, magnitudes beyond 2^60 or below 2^-60).
        std::vector<ElementValues> element_in(E), out(E);
        for (int j = 0; j < E; ++j) {
            element_in[j].p = in.dense[0][j];
            element_in[j].g = in.dense[1][j];
            for (int st = 0; st < layout_.num_states; ++st) element_in[j].states.push_back(state_in[st][j]);
            element_in[j].reductions = reductions_;
        }
        SpeculationGuard guard;
        for (int j = 0; j < E; ++j) out[j] = math_->update(b_, element_in[j], &guard);
        if (llvm::Value* in_range = guard.holds(b_)) {
            llvm::BasicBlock* speculated = b_.GetInsertBlock();
            llvm::BasicBlock* exact = block("update.exact");
            llvm::BasicBlock* updated = block("update.done");
            b_.CreateCondBr(in_range, updated, exact, llvm::MDBuilder(ctx_).createBranchWeights(1000, 1));
            b_.SetInsertPoint(exact);
            std::vector<ElementValues> exact_out(E);
            for (int j = 0; j < E; ++j) exact_out[j] = math_->update(b_, element_in[j]);
            llvm::BasicBlock* exact_end = b_.GetInsertBlock();
            b_.CreateBr(updated);
            b_.SetInsertPoint(updated);
            for (int j = 0; j < E; ++j) {
                out[j].p = join(out[j].p, speculated, exact_out[j].p, exact_end);
                for (size_t st = 0; st < out[j].states.size(); ++st)
                    out[j].states[st] = join(out[j].states[st], speculated, exact_out[j].states[st], exact_end);
            }
        }

        // An array whose new values are the ones it was loaded with (the program assigns it to
        // itself, or not at all) is not stored: the dequantize entry point reads a state this way.
        auto unchanged = [&](int state) {
            for (int j = 0; j < E; ++j)
                if ((state < 0 ? out[j].p : out[j].states[state]) != (state < 0 ? in.dense[0][j] : state_in[state][j])) return false;
            return true;
        };
        std::vector<bool> store_array(arrays_.size()), store_quantized(quantized_.size());
        for (size_t k = 0; k < arrays_.size(); ++k) store_array[k] = arrays_[k].written && !unchanged(arrays_[k].state);
        for (size_t k = 0; k < quantized_.size(); ++k) store_quantized[k] = !unchanged(quantized_[k].state);

        // New scales and codes. A thread's elements past the tensor's end hold copies of its
        // last element (load_slow), so they leave the last block's maximum as it is and need
        // no masking until they are stored (never, but for a q4 byte's odd half).
        // Every state's block maximum first, their shuffle rounds interleaved: one state's
        // chain of dependent shuffles hides behind the other's (one after the other, with a
        // branch between, two quantized states ran at half the speed of one). A block that
        // spans warps then combines its warps' maxima through shared memory.
        std::vector<llvm::Value*> scales(quantized_.size()), maxima(quantized_.size());
        std::vector<int> groups(quantized_.size());
        // Rank-1 states have their new statistics from the statistics pass.
        std::vector<bool> block_scaled(quantized_.size());
        for (size_t k = 0; k < quantized_.size(); ++k) block_scaled[k] = store_quantized[k] && !quantized_[k].rank1();
        for (size_t k = 0; k < quantized_.size(); ++k) {
            if (!block_scaled[k]) continue;
            const QuantizedArray& q = quantized_[k];
            // The thread's share by a tree of NaN-propagating maxima of magnitudes (max.NaN with
            // absolute operands: two values an instruction); as bits, the same order as
            // StateCodec::magnitude_bits' (NaN above infinity) for the shuffles.
            std::vector<llvm::Value*> level;
            for (int j = 0; j < E; ++j) level.push_back(b_.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, out[j].states[q.state]));
            while (level.size() > 1) {
                std::vector<llvm::Value*> next;
                for (size_t i = 0; i + 1 < level.size(); i += 2) next.push_back(b_.CreateBinaryIntrinsic(llvm::Intrinsic::maximum, level[i], level[i + 1]));
                if (level.size() % 2) next.push_back(level.back());
                level = next;
            }
            maxima[k] = b_.CreateBitCast(level[0], b_.getInt32Ty());
            groups[k] = int(q.codec->storage().block) / E;
        }
        // A block of a whole warp or more: one warp-wide reduction instruction (redux.sync,
        // sm_80+) in place of five shuffle rounds; smaller blocks shuffle within their lanes.
        for (size_t k = 0; k < quantized_.size(); ++k)
            if (block_scaled[k] && groups[k] >= 32)
                maxima[k] = b_.CreateIntrinsic(llvm::Intrinsic::nvvm_redux_sync_umax, {}, {maxima[k], b_.getInt32(-1)});
        for (int lanes = 1; lanes < 32; lanes <<= 1)
            for (size_t k = 0; k < quantized_.size(); ++k) {
                if (!block_scaled[k] || lanes >= groups[k] || groups[k] >= 32) continue;
                llvm::Value* other = b_.CreateIntrinsic(llvm::Intrinsic::nvvm_shfl_sync_bfly_i32, {},
                                                        {b_.getInt32(-1), maxima[k], b_.getInt32(lanes), b_.getInt32(0x1f)});
                maxima[k] = b_.CreateBinaryIntrinsic(llvm::Intrinsic::umax, maxima[k], other);
            }
        for (size_t k = 0; k < quantized_.size(); ++k)
            if (block_scaled[k] && groups[k] > 32) maxima[k] = max_across_warps(maxima[k], groups[k]);
        std::vector<std::vector<llvm::Value*>> normalized(quantized_.size());
        std::vector<std::vector<llvm::Value*>> words(quantized_.size());  // the thread's codes, as stored
        for (size_t k = 0; k < quantized_.size(); ++k) {
            if (!store_quantized[k]) continue;
            const QuantizedArray& q = quantized_[k];
            if (statistics[k]) {  // each element by its own new scale; a NaN one gives code 0
                std::vector<llvm::Value*> codes;
                for (int j = 0; j < E; ++j) {
                    llvm::Value* inverse = b_.CreateFDiv(llvm::ConstantFP::get(b_.getFloatTy(), 1.0), statistics[k]->new_scale(b_, cursors[j]));
                    codes.push_back(q.codec->encode(b_, b_.CreateFMul(out[j].states[q.state], inverse)));
                }
                words[k] = pack_codes(q, codes);
                continue;
            }
            scales[k] = q.codec->scale_from_absmax(b_, maxima[k]);
            // Fast math: the hardware's reciprocal (within an ulp: a code may differ from the
            // reference's only for a value within an ulp of a midpoint), not the IEEE division
            // with its range check and Newton step.
            llvm::Value* inverse = spec_.options.math == MathMode::Fast
                                       ? b_.CreateIntrinsic(llvm::Intrinsic::nvvm_rcp_approx_ftz_f, {}, {scales[k]})
                                       : b_.CreateFDiv(llvm::ConstantFP::get(b_.getFloatTy(), 1.0), scales[k]);
            // Unsigned tables: the multiplication saturates to [0, 1] (free on the FMA pipe), which
            // takes the upper clamp off each lookup; a NaN becomes 0 and negative values 0,
            // which take code 0 as they would have (the tables' code of 0 is their first).
            const bool saturate = q.codec->unsigned_lookup();
            for (int j = 0; j < E; ++j)
                normalized[k].push_back(saturate ? multiply_saturated(out[j].states[q.state], inverse) : b_.CreateFMul(out[j].states[q.state], inverse));
            if (q.codec->grid_steps() && spec_.options.math == MathMode::Fast) {
                // Evenly spaced codes (q4u): no lookup (the normalized values serve the
                // non-finite path below only).
                llvm::Value* scaled = b_.CreateFMul(inverse, llvm::ConstantFP::get(b_.getFloatTy(), double(q.codec->grid_steps())));
                std::vector<llvm::Value*> biased;
                for (int j = 0; j < E; ++j) biased.push_back(q.codec->encode_on_grid(b_, out[j].states[q.state], scaled));
                words[k] = pack_biased_codes(q, biased);
                continue;
            }
            words[k] = pack_codes_fast(q, normalized[k], saturate);
        }
        // A NaN value takes code 0, and one only occurs in a block whose maximum is not finite
        // (NaN, or infinity times a reciprocal of 0): the table lookups leave NaN out, and such
        // blocks take a branch of their own that encodes every value with the NaN check.
        {
            llvm::Value* non_finite = b_.getFalse();
            for (size_t k = 0; k < quantized_.size(); ++k)
                if (block_scaled[k] && quantized_[k].codec->has_lookup())
                    non_finite = b_.CreateOr(non_finite, b_.CreateICmpUGE(maxima[k], b_.getInt32(0x7f800000)));
            if (non_finite != b_.getFalse()) {
                llvm::BasicBlock* before = b_.GetInsertBlock();
                llvm::BasicBlock* slow = block("encode.non_finite");
                llvm::BasicBlock* joined = block("encode.joined");
                b_.CreateCondBr(non_finite, slow, joined);
                b_.SetInsertPoint(slow);
                std::vector<std::vector<llvm::Value*>> exact(quantized_.size());
                for (size_t k = 0; k < quantized_.size(); ++k) {
                    if (!block_scaled[k] || !quantized_[k].codec->has_lookup()) continue;
                    std::vector<llvm::Value*> codes;
                    for (llvm::Value* v : normalized[k]) codes.push_back(quantized_[k].codec->encode(b_, v));
                    exact[k] = pack_codes(quantized_[k], codes);
                }
                b_.CreateBr(joined);
                b_.SetInsertPoint(joined);
                for (size_t k = 0; k < quantized_.size(); ++k)
                    for (size_t w = 0; w < exact[k].size(); ++w) words[k][w] = join(words[k][w], before, exact[k][w], slow);
            }
        }
        // Every thread of a block writes its scale (one coalesced store of one value), in the
        // store paths below: no branch of its own in a full chunk.
        auto store_scales = [&]() {
            for (size_t k = 0; k < quantized_.size(); ++k)
                if (block_scaled[k]) b_.CreateAlignedStore(scales[k], cursor_.scales[k], llvm::Align(4));
        };

        // Store.
        llvm::BasicBlock* fast_store = block("store.fast");
        llvm::BasicBlock* slow_store = block("store.slow");
        llvm::BasicBlock* done = block("chunk.done");
        b_.CreateCondBr(fast, fast_store, slow_store);
        b_.SetInsertPoint(fast_store);
        store_scales();
        for (size_t k = 0; k < arrays_.size(); ++k) {
            if (!store_array[k]) continue;
            std::vector<llvm::Value*> values;
            for (int j = 0; j < E; ++j) values.push_back(arrays_[k].state < 0 ? out[j].p : out[j].states[arrays_[k].state]);
            store_vector(arrays_[k], cursor_.arrays[k], b_.getInt64(0), rounds_stochastically ? tensor.i0 : b_.getInt64(0), values);
        }
        for (size_t k = 0; k < quantized_.size(); ++k) {
            const QuantizedArray& q = quantized_[k];
            if (!store_quantized[k]) continue;
            b_.CreateAlignedStore(code_vector(q, words[k]), cursor_.codes[k], llvm::Align(4 * words[k].size()));
        }
        b_.CreateBr(done);
        b_.SetInsertPoint(slow_store);
        std::vector<llvm::Value*> valid(E);
        llvm::Value* tail = (tensor.row ? tensor : in_tensor(chunk.place)).tail;  // the row is loaded already where rank-1 or SR read it
        for (int j = 0; j < E; ++j) valid[j] = b_.CreateICmpSLE(b_.getInt32(j), tail);
        {
            llvm::BasicBlock* write = block("scale.write");
            llvm::BasicBlock* written = block("scale.written");
            b_.CreateCondBr(valid[0], write, written);  // threads wholly past the tensor's end have no block
            b_.SetInsertPoint(write);
            store_scales();
            b_.CreateBr(written);
            b_.SetInsertPoint(written);
        }
        for (int j = 0; j < E; ++j) {
            llvm::BasicBlock* store = block("store.element");
            llvm::BasicBlock* next = block("store.next");
            b_.CreateCondBr(valid[j], store, next);
            b_.SetInsertPoint(store);
            for (size_t k = 0; k < arrays_.size(); ++k) {
                const Array& a = arrays_[k];
                if (!store_array[k]) continue;
                llvm::Value* v = a.state < 0 ? out[j].p : out[j].states[a.state];
                llvm::Value* element = rounds_stochastically ? b_.CreateAdd(tensor.i0, b_.getInt64(j)) : b_.getInt64(0);  // in the tensor
                b_.CreateAlignedStore(stored(a, v, element), b_.CreateConstGEP1_32(math_->storage_type(a.type), cursor_.arrays[k], j), llvm::Align(dtype_bytes(a.type)));
            }
            for (size_t k = 0; k < quantized_.size(); ++k) {
                const QuantizedArray& q = quantized_[k];
                if (!store_quantized[k] || (q.codec->four_bit() && j % 2 == 1)) continue;  // odd: stored with its even neighbour
                // Byte j (q8) or j / 2 (q4, two elements) of the thread's codes; a q4 byte's odd
                // element past the end takes code 0.
                int byte_number = q.codec->four_bit() ? j / 2 : j;
                llvm::Value* byte = b_.CreateLShr(words[k][byte_number / 4], 8 * (byte_number % 4));
                if (q.codec->four_bit()) byte = b_.CreateAnd(byte, b_.CreateSelect(valid[j + 1], b_.getInt32(0xff), b_.getInt32(0xf0)));
                b_.CreateStore(b_.CreateTrunc(byte, b_.getInt8Ty()), b_.CreateConstGEP1_32(b_.getInt8Ty(), cursor_.codes[k], byte_number));
            }
            b_.CreateBr(next);
            b_.SetInsertPoint(next);
        }
        b_.CreateBr(done);
        b_.SetInsertPoint(done);
    }

    // A thread's codes (i32, one per element) packed as they are stored: code_word_type words,
    // element j in code_slot(j). The shifted codes are added: their bits are disjoint, so the
    // sum is their OR (LLVM makes it one), and codes that carry a bias sum to the packed codes
    // plus the packed biases (pack_biased_codes).
    std::vector<llvm::Value*> pack_codes(const QuantizedArray& q, const std::vector<llvm::Value*>& codes) {
        std::vector<llvm::Value*> word(code_word_type(q)->getNumElements(), b_.getInt32(0));
        for (int j = 0; j < elements_per_thread_; ++j) {
            CodeSlot slot = code_slot(q, j);
            word[slot.word] = b_.CreateAdd(word[slot.word], b_.CreateShl(codes[j], slot.shift));
        }
        return word;
    }

    // pack_codes for codes that each carry kGridBias (StateCodec::encode_on_grid): the packed
    // biases (a constant) come off once a word, so that each code costs one shift-and-add.
    std::vector<llvm::Value*> pack_biased_codes(const QuantizedArray& q, const std::vector<llvm::Value*>& biased) {
        std::vector<llvm::Value*> words = pack_codes(q, biased);
        const std::vector<llvm::Value*> biases = pack_codes(q, std::vector<llvm::Value*>(biased.size(), b_.getInt32(kGridBias)));
        for (size_t w = 0; w < words.size(); ++w) words[w] = b_.CreateSub(words[w], biases[w]);
        return words;
    }

    // The words as one code_word_type vector (the shape loads and stores move).
    llvm::Value* code_vector(const QuantizedArray& q, const std::vector<llvm::Value*>& words) {
        llvm::Value* vector = llvm::PoisonValue::get(code_word_type(q));
        for (size_t w = 0; w < words.size(); ++w) vector = b_.CreateInsertElement(vector, words[w], w);
        return vector;
    }

    // x * y rounded to nearest, clamped to [0, 1] (NaN to 0): PTX's mul.rn.sat.f32, which LLVM
    // has no intrinsic for.
    llvm::Value* multiply_saturated(llvm::Value* x, llvm::Value* y) {
        auto* type = llvm::FunctionType::get(b_.getFloatTy(), {b_.getFloatTy(), b_.getFloatTy()}, false);
        return b_.CreateCall(llvm::InlineAsm::get(type, "mul.rn.sat.f32 $0, $1, $2;", "=f,f,f", false), {x, y});
    }

    // The same words from normalized values that are not NaN, in the fewest instructions: table
    // codes come in the top byte of a word (StateCodec::encode_in_top_byte) and four of them
    // are gathered by byte permutes; sm_89+ fp8 codes come in pairs. `saturated`: see
    // encode_in_top_byte.
    std::vector<llvm::Value*> pack_codes_fast(const QuantizedArray& q, const std::vector<llvm::Value*>& normalized, bool saturated) {
        auto permute = [&](llvm::Value* x, llvm::Value* y, uint32_t selector) {
            return b_.CreateIntrinsic(llvm::Intrinsic::nvvm_prmt, {}, {x, y, b_.getInt32(selector)});
        };
        const int E = elements_per_thread_;
        if (!q.codec->has_lookup()) {
            std::vector<llvm::Value*> codes;
            for (int j = 0; j < E; j += 2) {
                auto [c0, c1] = q.codec->encode_pair(b_, normalized[j], normalized[j + 1]);
                codes.push_back(c0);
                codes.push_back(c1);
            }
            return pack_codes(q, codes);
        }
        std::vector<llvm::Value*> top;
        for (llvm::Value* v : normalized) top.push_back(q.codec->encode_in_top_byte(b_, v, saturated));
        // Bytes 3 of four words, in order: byte 3 of x and of y (selector 0x73), twice, then the
        // two low halves (0x5410).
        auto gather = [&](llvm::Value* a, llvm::Value* b, llvm::Value* c, llvm::Value* d) {
            return permute(permute(a, b, 0x0073), permute(c, d, 0x0073), 0x5410);
        };
        std::vector<llvm::Value*> words;
        if (!q.codec->four_bit()) {
            for (int j = 0; j < E; j += 4) words.push_back(gather(top[j], top[j + 1], top[j + 2], top[j + 3]));
            return words;
        }
        // q4: codes below 16; the even element is the high nibble.
        for (int j = 0; j < E; j += 8) {
            llvm::Value* even = gather(top[j], top[j + 2], top[j + 4], top[j + 6]);
            llvm::Value* odd = gather(top[j + 1], top[j + 3], top[j + 5], top[j + 7]);
            words.push_back(b_.CreateOr(b_.CreateShl(even, 4), odd));
        }
        return words;
    }

    llvm::Module& module_;
    const KernelSpec& spec_;
    llvm::LLVMContext& ctx_;
    llvm::IRBuilder<> b_;
    TableLayout layout_;
    llvm::Function* fn_ = nullptr;
    std::unique_ptr<ElementMath> math_;
    std::vector<Array> arrays_;  // p, g, then states that are not block-quantized
    std::vector<QuantizedArray> quantized_;
    llvm::GlobalVariable* reduce_buffer_ = nullptr;
    int vector_ = 4, unroll_ = 4, elements_per_thread_ = 16;
    llvm::Value* tid_ = nullptr;
    llvm::Value* base_ = nullptr;
    llvm::Value* n_ = nullptr;
    llvm::Value* offset_ = nullptr;  // the tensor's global first element (stochastic rounding's key)
    std::vector<llvm::Value*> reductions_;  // the chunk's reduction values (ElementValues::reductions)
    // Quantized kernels (pipelined_chunk_loop).
    llvm::Value* num_chunks_ = nullptr;   // the launch's (i64)
    llvm::Value* blocks_ = nullptr;       // the grid's (i64)
    llvm::Value* run_chunks_ = nullptr;   // chunks a run (i64)
    llvm::Value* lane_ = nullptr;         // the thread's first element in a chunk (i32)
    llvm::Value* aligned_ = nullptr;      // point_at_row's: every array allows its vector accesses
    Cursors cursor_;                      // the thread's addresses in the chunk being loaded or stored
    llvm::Value* tail_ = nullptr;         // a short chunk's: its tensor's last element from the thread's first (i32)
};

}  // namespace

void generate_nvptx_kernel(llvm::Module& module, const KernelSpec& spec) { NvptxKernel(module, spec).generate(); }

}  // namespace optjit
