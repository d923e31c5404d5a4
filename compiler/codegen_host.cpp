// The host kernel: a worker thread calls it with its range of chunks (compiler/kernel_abi.h).
// Each chunk runs a plain element loop in a separate function whose array arguments are
// `noalias`, so LLVM's loop vectorizer turns it into the host's widest vectors.
//
// With block-quantized states the chunk is walked in tiles of the largest block: an element
// loop decodes, updates, stores p and the other states, and keeps each quantized state's new
// values in a tile buffer on the stack; then, per block, a loop finds the absmax (an integer
// maximum over magnitude bits, which vectorizes) and a loop encodes. A rank-1 state's elements
// are scaled by their rows' and columns' statistics instead (compiler/rank1_statistics.h), which
// a second function of the module finds before the update runs.
#include <algorithm>
#include <memory>

#include "compiler/codegen.h"
#include "compiler/element_math.h"
#include "compiler/kernel_abi.h"
#include "compiler/rank1_statistics.h"
#include "compiler/reductions.h"
#include "compiler/state_codec.h"
#include "ir/analysis.h"
#include "ir/numeric.h"

namespace optjit {

namespace {

class HostKernel {
public:
    HostKernel(llvm::Module& module, const KernelSpec& spec)
        : module_(module), spec_(spec), ctx_(module.getContext()), b_(ctx_), layout_(table_layout(spec)), num_reductions_(reductions(spec.lowered).size()) {
        types_.push_back(spec.storage.param);
        types_.push_back(spec.storage.grad);
        for (const StateDecl& s : spec.lowered.states) {
            const StateStorage& st = spec.storage.state(s.name);
            types_.push_back(state_dtype(st.format));
            quantized_.push_back(is_block_quantized(st.format));
        }
    }

    void generate() {
        bool any_quantized = std::count(quantized_.begin(), quantized_.end(), true) > 0;
        llvm::Function* chunk = any_quantized ? quantized_chunk_function() : chunk_function();
        std::vector<llvm::Value*> scalars;
        llvm::Function* fn = kernel_function(kernel_symbol(spec_), scalars);
        llvm::Type* ptr = b_.getPtrTy();
        llvm::Value* table = fn->getArg(0);
        llvm::Value* chunk_first = fn->getArg(2);
        llvm::Value* chunk_last = fn->getArg(3);
        emit_chunk_loop(b_, spec_, table, fn->getArg(1), chunk_first, b_.getInt64(1), chunk_last, [&](const ChunkContext& c) {
            std::vector<llvm::Value*> args;
            args.push_back(b_.CreateIntToPtr(c.word(layout_.p()), ptr));
            args.push_back(b_.CreateIntToPtr(c.word(layout_.g()), ptr));
            for (int s = 0; s < layout_.num_states; ++s) args.push_back(b_.CreateIntToPtr(c.word(layout_.state(s)), ptr));
            for (int s = 0; s < layout_.num_states; ++s)
                if (quantized_[s]) args.push_back(b_.CreateIntToPtr(c.word(layout_.scales(s)), ptr));
            llvm::Value* end = b_.CreateBinaryIntrinsic(llvm::Intrinsic::smin,
                                                        b_.CreateAdd(c.first_element, b_.getInt64(chunk_elements(spec_))), c.word(layout_.n()));
            args.push_back(c.first_element);
            args.push_back(end);
            args.insert(args.end(), scalars.begin(), scalars.end());
            std::vector<llvm::Value*> values = reduction_values(fn, c.tensor);
            args.insert(args.end(), values.begin(), values.end());
            args.push_back(c.word(layout_.offset()));
            args.push_back(fn->getArg(5));  // seed
            if (layout_.rank1) {
                args.push_back(c.word(layout_.n()));
                args.push_back(c.word(layout_.columns()));
            }
            b_.CreateCall(chunk, args);
        });
        b_.CreateRetVoid();
        if (has_statistics_pass(spec_)) statistics_kernel();
        for (int level = 1, levels = reduction_level_count(spec_.lowered); level <= levels; ++level) reduction_kernel(level);
    }

private:
    // A kernel of compiler/kernel_abi.h's host signature, the builder in its entry block;
    // `scalars` receives the scalars loaded from their array.
    llvm::Function* kernel_function(const std::string& name, std::vector<llvm::Value*>& scalars) {
        llvm::Type* ptr = b_.getPtrTy();
        auto* fn = llvm::Function::Create(
            llvm::FunctionType::get(b_.getVoidTy(), {ptr, b_.getInt32Ty(), b_.getInt64Ty(), b_.getInt64Ty(), ptr, b_.getInt64Ty(), ptr, ptr}, false),
            llvm::GlobalValue::ExternalLinkage, name, module_);
        fn->addFnAttr(llvm::Attribute::NoUnwind);
        fn->getArg(0)->setName("table");
        fn->getArg(4)->setName("scalars");
        fn->getArg(6)->setName("global_slots");
        fn->getArg(7)->setName("tensor_slots");
        b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", fn));
        std::vector<std::string> names = kernel_scalars(spec_.lowered);
        scalars.clear();
        for (size_t i = 0; i < names.size(); ++i)
            scalars.push_back(b_.CreateAlignedLoad(b_.getFloatTy(), b_.CreateGEP(b_.getFloatTy(), fn->getArg(4), b_.getInt64(i)), llvm::Align(4),
                                                   names[i]));
        return fn;
    }

    // The rank-1 statistics pass (compiler/kernel_abi.h), a chunk at a time.
    void statistics_kernel() {
        std::vector<llvm::Value*> scalars;
        llvm::Function* fn = kernel_function(statistics_symbol(spec_), scalars);
        StatisticsWalk walk{fn->getArg(0), fn->getArg(1), fn->getArg(2), b_.getInt64(1), fn->getArg(3), b_.getInt64(0), chunk_elements(spec_), scalars, 0,
                            [this, fn](const ChunkContext& c) { return reduction_values(fn, c.tensor); }};
        emit_statistics_pass(b_, module_, spec_, walk);
        b_.CreateRetVoid();
    }

    // The reduction pass (compiler/reductions.h): one lane a chunk, whose totals reach the slots
    // once a tensor (tensor reductions) and once a call (global ones).
    void reduction_kernel(int level) {
        std::vector<llvm::Value*> scalars;
        llvm::Function* fn = kernel_function(reductions_symbol(spec_, level), scalars);
        ReductionWalk walk{{fn->getArg(0), fn->getArg(1), fn->getArg(2), b_.getInt64(1), fn->getArg(3), b_.getInt64(0), chunk_elements(spec_), scalars, 0},
                           1,
                           1,
                           fn->getArg(6),
                           fn->getArg(7),
                           {},
                           nullptr};
        emit_reduction_pass(b_, module_, spec_, walk, level);
        b_.CreateRetVoid();
    }

    // The program's reduction values for tensor `tensor` of a kernel function of this module.
    std::vector<llvm::Value*> reduction_values(llvm::Function* fn, llvm::Value* tensor) {
        return emit_reduction_values(b_, spec_, fn->getArg(6), fn->getArg(7), tensor);
    }

    // The chunk functions take the reduction values after the scalars: ElementMath's scalars and
    // its reduction values, from the function's arguments starting at `first`.
    std::pair<std::vector<llvm::Value*>, std::vector<llvm::Value*>> scalar_arguments(llvm::Function* fn, unsigned first) {
        std::vector<std::string> names = kernel_scalars(spec_.lowered);
        std::vector<llvm::Value*> scalars, reductions;
        for (size_t i = 0; i < names.size(); ++i) {
            fn->getArg(first + i)->setName(names[i]);
            scalars.push_back(fn->getArg(first + i));
        }
        for (size_t k = 0; k < num_reductions_; ++k) reductions.push_back(fn->getArg(first + names.size() + k));
        return {scalars, reductions};
    }

    // void chunk(noalias p, noalias g, noalias states..., i64 begin, i64 end, float scalars...,
    //            i64 offset, i64 seed)
    llvm::Function* chunk_function() {
        std::vector<std::string> names = kernel_scalars(spec_.lowered);
        std::vector<llvm::Type*> params(types_.size(), b_.getPtrTy());
        params.push_back(b_.getInt64Ty());
        params.push_back(b_.getInt64Ty());
        params.insert(params.end(), names.size() + num_reductions_, b_.getFloatTy());
        params.push_back(b_.getInt64Ty());
        params.push_back(b_.getInt64Ty());
        auto* fn = llvm::Function::Create(llvm::FunctionType::get(b_.getVoidTy(), params, false), llvm::GlobalValue::InternalLinkage,
                                          kernel_symbol(spec_) + ".chunk", module_);
        fn->addFnAttr(llvm::Attribute::NoUnwind);
        fn->addFnAttr(llvm::Attribute::NoInline);  // keeps `noalias` meaningful for the vectorizer
        for (size_t k = 0; k < types_.size(); ++k) fn->addParamAttr(k, llvm::Attribute::NoAlias);
        auto [scalars, reductions] = scalar_arguments(fn, unsigned(types_.size() + 2));
        ElementMath math(module_, spec_.lowered, spec_.target, spec_.options, scalars);
        llvm::Value* begin = fn->getArg(types_.size());
        llvm::Value* end = fn->getArg(types_.size() + 1);

        auto* entry = llvm::BasicBlock::Create(ctx_, "entry", fn);
        auto* loop = llvm::BasicBlock::Create(ctx_, "element", fn);
        auto* exit = llvm::BasicBlock::Create(ctx_, "exit", fn);
        b_.SetInsertPoint(entry);
        b_.CreateCondBr(b_.CreateICmpSLT(begin, end), loop, exit);
        b_.SetInsertPoint(loop);
        llvm::PHINode* i = b_.CreatePHI(b_.getInt64Ty(), 2, "i");
        i->addIncoming(begin, entry);
        std::vector<llvm::Value*> addrs;
        std::vector<llvm::Value*> values;
        for (size_t k = 0; k < types_.size(); ++k) {
            llvm::Type* elem = math.storage_type(types_[k]);
            addrs.push_back(b_.CreateGEP(elem, fn->getArg(k), i));
            values.push_back(math.to_f32(b_, types_[k], b_.CreateAlignedLoad(elem, addrs.back(), llvm::Align(dtype_bytes(types_[k])))));
        }
        ElementValues in{values[0], values[1], std::vector<llvm::Value*>(values.begin() + 2, values.end()), reductions};
        ElementValues out = math.update(b_, in);
        std::vector<llvm::Value*> results{out.p, nullptr};
        results.insert(results.end(), out.states.begin(), out.states.end());
        llvm::Value* offset = fn->getArg(fn->arg_size() - 2);
        llvm::Value* seed = fn->getArg(fn->arg_size() - 1);
        for (size_t k = 0; k < types_.size(); ++k) {
            if (k == 1) continue;  // the gradient is only read
            llvm::Value* v = k == 0 ? math.param_from_f32(b_, types_[0], results[0], b_.CreateAdd(offset, i), seed)
                                    : math.from_f32(b_, types_[k], results[k]);
            b_.CreateAlignedStore(v, addrs[k], llvm::Align(dtype_bytes(types_[k])));
        }
        llvm::Value* next = b_.CreateAdd(i, b_.getInt64(1));
        i->addIncoming(next, loop);
        b_.CreateCondBr(b_.CreateICmpSLT(next, end), loop, exit);
        b_.SetInsertPoint(exit);
        b_.CreateRetVoid();
        return fn;
    }

    // for (i = begin; i < end; i += step) body(i); leaves the builder after the loop.
    // `vector_width` > 0 asks LLVM's loop vectorizer for that width (its cost model declines
    // the two-codes-a-byte loops, which run several times faster vectorized).
    void emit_loop(llvm::Value* begin, llvm::Value* end, int64_t step, const std::function<void(llvm::Value*)>& body, int vector_width = 0) {
        llvm::Function* fn = b_.GetInsertBlock()->getParent();
        llvm::BasicBlock* before = b_.GetInsertBlock();
        llvm::BasicBlock* loop = llvm::BasicBlock::Create(ctx_, "loop", fn);
        llvm::BasicBlock* after = llvm::BasicBlock::Create(ctx_, "loop.end", fn);
        b_.CreateCondBr(b_.CreateICmpSLT(begin, end), loop, after);
        b_.SetInsertPoint(loop);
        llvm::PHINode* i = b_.CreatePHI(b_.getInt64Ty(), 2, "i");
        i->addIncoming(begin, before);
        body(i);
        // No signed wrap (indices are far below 2^63): lets LLVM count a stepped loop's trips.
        llvm::Value* next = b_.CreateNSWAdd(i, b_.getInt64(step));
        i->addIncoming(next, b_.GetInsertBlock());
        llvm::BranchInst* latch = b_.CreateCondBr(b_.CreateICmpSLT(next, end), loop, after);
        if (vector_width > 0) {
            llvm::MDNode* width = llvm::MDNode::get(ctx_, {llvm::MDString::get(ctx_, "llvm.loop.vectorize.width"),
                                                           llvm::ConstantAsMetadata::get(b_.getInt32(vector_width))});
            llvm::MDNode* enable = llvm::MDNode::get(ctx_, {llvm::MDString::get(ctx_, "llvm.loop.vectorize.enable"),
                                                            llvm::ConstantAsMetadata::get(b_.getTrue())});
            llvm::MDNode* id = llvm::MDNode::getDistinct(ctx_, {nullptr, width, enable});
            id->replaceOperandWith(0, id);
            latch->setMetadata(llvm::LLVMContext::MD_loop, id);
        }
        b_.SetInsertPoint(after);
    }

    llvm::Value* min64(llvm::Value* a, llvm::Value* b) { return b_.CreateBinaryIntrinsic(llvm::Intrinsic::smin, a, b); }

    // void chunk(noalias p, noalias g, noalias states (values or codes)..., noalias scales of
    //            each quantized state..., i64 begin, i64 end, float scalars..., i64 offset, i64 seed
    //            (, i64 n, i64 columns: kernels with rank-1 states))
    llvm::Function* quantized_chunk_function() {
        const int S = layout_.num_states;
        std::vector<std::string> names = kernel_scalars(spec_.lowered);
        int num_scales = int(std::count(quantized_.begin(), quantized_.end(), true));
        int num_pointers = 2 + S + num_scales;
        std::vector<llvm::Type*> params(num_pointers, b_.getPtrTy());
        params.push_back(b_.getInt64Ty());
        params.push_back(b_.getInt64Ty());
        params.insert(params.end(), names.size() + num_reductions_, b_.getFloatTy());
        params.push_back(b_.getInt64Ty());
        params.push_back(b_.getInt64Ty());
        if (layout_.rank1) params.insert(params.end(), 2, b_.getInt64Ty());
        auto* fn = llvm::Function::Create(llvm::FunctionType::get(b_.getVoidTy(), params, false), llvm::GlobalValue::InternalLinkage,
                                          kernel_symbol(spec_) + ".chunk", module_);
        fn->addFnAttr(llvm::Attribute::NoUnwind);
        fn->addFnAttr(llvm::Attribute::NoInline);
        const int seed_arg = num_pointers + 2 + int(names.size() + num_reductions_) + 1, offset_arg = seed_arg - 1;
        for (int k = 0; k < num_pointers; ++k) fn->addParamAttr(k, llvm::Attribute::NoAlias);
        auto [scalars, reductions] = scalar_arguments(fn, unsigned(num_pointers + 2));
        ElementMath math(module_, spec_.lowered, spec_.target, spec_.options, scalars);
        llvm::Value* begin = fn->getArg(num_pointers);
        llvm::Value* end = fn->getArg(num_pointers + 1);
        b_.SetInsertPoint(llvm::BasicBlock::Create(ctx_, "entry", fn));

        struct Quantized {
            int state;
            std::unique_ptr<StateCodec> codec;
            llvm::Value* codes;
            llvm::Value* scales;
            llvm::Value* tile;    // the tile's new values, fp32
            bool stored = true;   // false where the program leaves the state as it is
            std::unique_ptr<Rank1Statistics> statistics;  // rank-1 states: scales is their buffer
            llvm::Value* code_tile = nullptr;  // 4-bit states: the tile's codes a byte each (one spare)
        };
        std::vector<Quantized> quantized;
        uint32_t largest = 0, smallest = 4096;
        int scale_arg = 2 + S;
        for (int s = 0; s < S; ++s) {
            if (!quantized_[s]) continue;
            const StateStorage& st = spec_.storage.state(spec_.lowered.states[s].name);
            largest = std::max(largest, st.block);
            smallest = std::min(smallest, st.block);
            quantized.push_back({s, std::make_unique<StateCodec>(module_, spec_.target, st, spec_.options.math), fn->getArg(2 + s), fn->getArg(scale_arg++), nullptr, true, nullptr});
            if (st.rank1) quantized.back().statistics = std::make_unique<Rank1Statistics>(b_, quantized.back().scales, fn->getArg(seed_arg + 1), fn->getArg(seed_arg + 2));
        }
        for (Quantized& q : quantized) {
            auto* alloca = b_.CreateAlloca(llvm::ArrayType::get(b_.getFloatTy(), largest));
            alloca->setAlignment(llvm::Align(64));
            q.tile = alloca;
            if (!q.codec->four_bit()) continue;
            auto* codes = b_.CreateAlloca(llvm::ArrayType::get(b_.getInt8Ty(), largest + 1));
            codes->setAlignment(llvm::Align(64));
            q.code_tile = codes;
        }
        // A 4-bit state's codes a byte each in its code tile, at element i's offset in the tile:
        // the loops that decode and encode then read and write contiguous bytes, which
        // vectorize, where two codes a byte made every element a byte gather or a
        // read-modify-write. Blocks are even (32 or more), so runs and tiles start on a byte.
        auto code_slot = [&](const Quantized& q, llvm::Value* i, llvm::Value* tile_begin) {
            return b_.CreateGEP(b_.getInt8Ty(), q.code_tile, b_.CreateSub(i, tile_begin));
        };
        llvm::AllocaInst* absmax = b_.CreateAlloca(b_.getInt32Ty());

        // Tiles of the largest block; inside, runs of the smallest block, where every state's
        // scale is one value.
        emit_loop(begin, end, largest, [&](llvm::Value* tile_begin) {
            llvm::Value* tile_end = min64(b_.CreateAdd(tile_begin, b_.getInt64(largest)), end);
            emit_loop(tile_begin, tile_end, smallest, [&](llvm::Value* run_begin) {
                std::vector<llvm::Value*> old_scales;
                for (Quantized& q : quantized) {
                    if (q.statistics) {  // per element
                        old_scales.push_back(nullptr);
                        continue;
                    }
                    llvm::Value* index = b_.CreateUDiv(run_begin, b_.getInt64(q.codec->storage().block));
                    old_scales.push_back(b_.CreateAlignedLoad(b_.getFloatTy(), b_.CreateGEP(b_.getFloatTy(), q.scales, index), llvm::Align(4)));
                }
                llvm::Value* run_end = min64(b_.CreateAdd(run_begin, b_.getInt64(smallest)), tile_end);
                for (const Quantized& q : quantized) {
                    if (!q.code_tile) continue;
                    // Byte j holds elements 2j (high nibble) and 2j + 1; an odd run_end (the
                    // tensor's end) unpacks into the spare byte.
                    emit_loop(run_begin, run_end, 2, [&](llvm::Value* i) {
                        llvm::Value* byte = b_.CreateLoad(b_.getInt8Ty(), b_.CreateGEP(b_.getInt8Ty(), q.codes, b_.CreateLShr(i, 1)));
                        b_.CreateStore(b_.CreateLShr(byte, 4), code_slot(q, i, tile_begin));
                        b_.CreateStore(b_.CreateAnd(byte, b_.getInt8(15)), code_slot(q, b_.CreateAdd(i, b_.getInt64(1)), tile_begin));
                    }, 16);
                }
                emit_loop(run_begin, run_end, 1, [&](llvm::Value* i) {
                    std::vector<llvm::Value*> values(2 + S, nullptr), addrs(2 + S, nullptr);
                    for (int k = 0; k < 2 + S; ++k) {
                        if (k >= 2 && quantized_[k - 2]) continue;
                        llvm::Type* elem = math.storage_type(types_[k]);
                        addrs[k] = b_.CreateGEP(elem, fn->getArg(k), i);
                        values[k] = math.to_f32(b_, types_[k], b_.CreateAlignedLoad(elem, addrs[k], llvm::Align(dtype_bytes(types_[k]))));
                    }
                    for (size_t k = 0; k < quantized.size(); ++k) {
                        const Quantized& q = quantized[k];
                        llvm::Value* code = q.code_tile ? b_.CreateZExt(b_.CreateLoad(b_.getInt8Ty(), code_slot(q, i, tile_begin)), b_.getInt32Ty())
                                                        : q.codec->load_code(b_, q.codes, i);
                        llvm::Value* scale = q.statistics ? q.statistics->stored_scale(b_, q.statistics->cursor(b_, i)) : old_scales[k];
                        values[2 + q.state] = q.codec->decode(b_, code, scale);
                    }
                    ElementValues in{values[0], values[1], std::vector<llvm::Value*>(values.begin() + 2, values.end()), reductions};
                    ElementValues out = math.update(b_, in);
                    // What the program leaves as loaded (assigned to itself) is not stored.
                    if (out.p != in.p) {
                        llvm::Value* global = b_.CreateAdd(fn->getArg(offset_arg), i);
                        b_.CreateAlignedStore(math.param_from_f32(b_, types_[0], out.p, global, fn->getArg(seed_arg)), addrs[0],
                                              llvm::Align(dtype_bytes(types_[0])));
                    }
                    for (int s = 0; s < S; ++s)
                        if (!quantized_[s] && out.states[s] != in.states[s])
                            b_.CreateAlignedStore(math.from_f32(b_, types_[2 + s], out.states[s]), addrs[2 + s], llvm::Align(dtype_bytes(types_[2 + s])));
                    for (Quantized& q : quantized) {
                        q.stored = out.states[q.state] != in.states[q.state];
                        if (q.stored)
                            b_.CreateAlignedStore(out.states[q.state], b_.CreateGEP(b_.getFloatTy(), q.tile, b_.CreateSub(i, tile_begin)), llvm::Align(4));
                    }
                });
            });
            for (const Quantized& q : quantized) {
                if (!q.stored) continue;
                uint32_t block = q.codec->storage().block;
                emit_loop(tile_begin, tile_end, block, [&](llvm::Value* block_begin) {
                    llvm::Value* block_end = min64(b_.CreateAdd(block_begin, b_.getInt64(block)), tile_end);
                    auto tile_value = [&](llvm::Value* i) {
                        return b_.CreateAlignedLoad(b_.getFloatTy(), b_.CreateGEP(b_.getFloatTy(), q.tile, b_.CreateSub(i, tile_begin)), llvm::Align(4));
                    };
                    auto one = llvm::ConstantFP::get(b_.getFloatTy(), 1.0);
                    llvm::Value* inverse = nullptr;
                    if (!q.statistics) {
                        // The absmax accumulates in an alloca that the optimizer promotes to a
                        // vectorized reduction.
                        b_.CreateStore(b_.getInt32(0), absmax);
                        emit_loop(block_begin, block_end, 1, [&](llvm::Value* i) {
                            llvm::Value* m = b_.CreateBinaryIntrinsic(llvm::Intrinsic::umax, b_.CreateLoad(b_.getInt32Ty(), absmax),
                                                                      StateCodec::magnitude_bits(b_, tile_value(i)));
                            b_.CreateStore(m, absmax);
                        });
                        llvm::Value* scale = q.codec->scale_from_absmax(b_, b_.CreateLoad(b_.getInt32Ty(), absmax));
                        llvm::Value* block_index = b_.CreateUDiv(block_begin, b_.getInt64(block));
                        b_.CreateAlignedStore(scale, b_.CreateGEP(b_.getFloatTy(), q.scales, block_index), llvm::Align(4));
                        inverse = b_.CreateFDiv(one, scale);
                    }
                    // Element i's value times the reciprocal of its scale: the block's, or for a
                    // rank-1 state its own from the new statistics.
                    auto normalized = [&](llvm::Value* i) {
                        llvm::Value* r = inverse ? inverse : b_.CreateFDiv(one, q.statistics->new_scale(b_, q.statistics->cursor(b_, i)));
                        return b_.CreateFMul(tile_value(i), r);
                    };
                    if (q.codec->four_bit()) {
                        // Codes into the code tile, then packed two a byte; past an odd
                        // block_end (the tensor's end) the low nibble is 0.
                        emit_loop(block_begin, block_end, 1, [&](llvm::Value* i) {
                            b_.CreateStore(b_.CreateTrunc(q.codec->encode(b_, normalized(i)), b_.getInt8Ty()), code_slot(q, i, tile_begin));
                        });
                        b_.CreateStore(b_.getInt8(0), code_slot(q, block_end, tile_begin));
                        emit_loop(block_begin, block_end, 2, [&](llvm::Value* i) {
                            llvm::Value* high = b_.CreateLoad(b_.getInt8Ty(), code_slot(q, i, tile_begin));
                            llvm::Value* low = b_.CreateLoad(b_.getInt8Ty(), code_slot(q, b_.CreateAdd(i, b_.getInt64(1)), tile_begin));
                            b_.CreateStore(b_.CreateOr(b_.CreateShl(high, 4), low), b_.CreateGEP(b_.getInt8Ty(), q.codes, b_.CreateLShr(i, 1)));
                        }, 16);
                    } else {
                        emit_loop(block_begin, block_end, 1, [&](llvm::Value* i) {
                            llvm::Value* code = q.codec->encode(b_, normalized(i));
                            b_.CreateStore(b_.CreateTrunc(code, b_.getInt8Ty()), b_.CreateGEP(b_.getInt8Ty(), q.codes, i));
                        });
                    }
                });
            }
        });
        b_.CreateRetVoid();
        return fn;
    }

    llvm::Module& module_;
    const KernelSpec& spec_;
    llvm::LLVMContext& ctx_;
    llvm::IRBuilder<> b_;
    TableLayout layout_;
    size_t num_reductions_;  // the chunk functions take their values after the scalars
    std::vector<DType> types_;     // p, g, states (fp32 for block-quantized ones)
    std::vector<bool> quantized_;  // per state
};

}  // namespace

void generate_host_kernel(llvm::Module& module, const KernelSpec& spec) { HostKernel(module, spec).generate(); }

}  // namespace optjit
