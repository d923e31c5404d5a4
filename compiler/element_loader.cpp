#include "compiler/element_loader.h"

#include "ir/numeric.h"

namespace optjit {

ElementLoader::ElementLoader(llvm::Module& module, const KernelSpec& spec, const ElementMath& math) : spec_(spec), math_(math) {
    for (const StateDecl& s : spec.lowered.states) {
        const StateStorage& st = spec.storage.state(s.name);
        codecs_.push_back(is_block_quantized(st.format) ? std::make_unique<StateCodec>(module, spec.target, st, spec.options.math) : nullptr);
    }
}

void ElementLoader::point_at(llvm::IRBuilder<>& b, const ChunkContext& chunk, unsigned address_space) {
    const TableLayout layout = table_layout(spec_);
    llvm::Type* ptr = llvm::PointerType::get(b.getContext(), address_space);
    p_ = b.CreateIntToPtr(chunk.word(layout.p()), ptr);
    g_ = b.CreateIntToPtr(chunk.word(layout.g()), ptr);
    states_.assign(codecs_.size(), nullptr);
    scales_.assign(codecs_.size(), nullptr);
    for (size_t s = 0; s < codecs_.size(); ++s) {
        states_[s] = b.CreateIntToPtr(chunk.word(layout.state(int(s))), ptr);
        if (codecs_[s]) scales_[s] = b.CreateIntToPtr(chunk.word(layout.scales(int(s))), ptr);
    }
}

namespace {

llvm::Value* invariant_load(llvm::IRBuilder<>& b, llvm::Type* type, llvm::Value* address, uint64_t align) {
    llvm::LoadInst* load = b.CreateAlignedLoad(type, address, llvm::Align(align));
    load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(b.getContext(), {}));
    return load;
}

}  // namespace

llvm::Value* ElementLoader::aligned(llvm::IRBuilder<>& b) const {
    llvm::Value* bits = b.CreateOr(b.CreatePtrToInt(p_, b.getInt64Ty()), b.CreatePtrToInt(g_, b.getInt64Ty()));
    for (llvm::Value* s : states_) bits = b.CreateOr(bits, b.CreatePtrToInt(s, b.getInt64Ty()));
    return b.CreateICmpEQ(b.CreateAnd(bits, b.getInt64(15)), b.getInt64(0));
}

std::vector<ElementValues> ElementLoader::load_run(llvm::IRBuilder<>& b, llvm::Value* i, int count,
                                                   const std::function<llvm::Value*(int, llvm::Value*)>& rank1_scale) const {
    // `count` fp32 values of a plain array, in vectors of up to 16 bytes.
    auto dense = [&](DType t, llvm::Value* array) {
        llvm::Type* elem = math_.storage_type(t);
        const int bytes = dtype_bytes(t), per_load = std::min(count, 16 / bytes);
        std::vector<llvm::Value*> out;
        for (int k = 0; k < count; k += per_load) {
            llvm::Value* at = b.CreateGEP(elem, array, b.CreateAdd(i, b.getInt64(k)));
            llvm::Value* v = invariant_load(b, llvm::FixedVectorType::get(elem, unsigned(per_load)), at, uint64_t(per_load * bytes));
            for (int j = 0; j < per_load; ++j) out.push_back(math_.to_f32(b, t, b.CreateExtractElement(v, uint64_t(j))));
        }
        return out;
    };
    std::vector<ElementValues> out(static_cast<size_t>(count));
    std::vector<llvm::Value*> p = dense(spec_.storage.param, p_), g = dense(spec_.storage.grad, g_);
    for (int k = 0; k < count; ++k) out[size_t(k)].p = p[size_t(k)], out[size_t(k)].g = g[size_t(k)];
    for (size_t s = 0; s < codecs_.size(); ++s) {
        const StateCodec* codec = codecs_[s].get();
        std::vector<llvm::Value*> values;
        if (!codec) {
            values = dense(state_dtype(spec_.storage.state(spec_.lowered.states[s].name).format), states_[s]);
        } else {
            // The run's codes in one load (count bytes, or count / 2 for 4-bit codes), as i32 words.
            const bool four = codec->four_bit();
            const int code_bytes = four ? count / 2 : count, words = (code_bytes + 3) / 4;
            llvm::Value* byte = four ? b.CreateLShr(i, 1) : i;
            llvm::Type* whole = b.getIntNTy(unsigned(8 * code_bytes));
            llvm::Value* codes = invariant_load(b, whole, b.CreateGEP(b.getInt8Ty(), states_[s], byte), uint64_t(code_bytes));
            codes = b.CreateZExt(codes, b.getIntNTy(unsigned(32 * words)));
            llvm::Value* block_scale = nullptr;  // one block holds the whole run
            if (!codec->storage().rank1)
                block_scale = invariant_load(b, b.getFloatTy(), b.CreateGEP(b.getFloatTy(), scales_[s], b.CreateUDiv(i, b.getInt64(codec->storage().block))), 4);
            auto scale_of = [&](int k) { return block_scale ? block_scale : rank1_scale(int(s), b.CreateAdd(i, b.getInt64(k))); };
            // Element k's code: byte k, or for 4-bit codes the high nibble of byte k / 2 when k is
            // even; its i32 word of the run, and its place in the word.
            const uint32_t mask = four ? 15u : 255u;
            auto bit_of = [&](int k) { return four ? unsigned(8 * (k / 2) + (k % 2 == 0 ? 4 : 0)) : unsigned(8 * k); };
            auto word_of = [&](int k) { return b.CreateTrunc(b.CreateLShr(codes, uint64_t(bit_of(k) / 32 * 32)), b.getInt32Ty()); };
            auto code_of = [&](int k) { return b.CreateAnd(b.CreateLShr(word_of(k), bit_of(k) % 32), b.getInt32(mask)); };
            for (int k = 0; k < count; ++k) {
                if (codec->has_lookup()) {
                    values.push_back(codec->decode_field(b, word_of(k), bit_of(k) % 32, mask, scale_of(k)));
                } else if (k % 2 == 0) {  // fp8: pairs, which sm_89+ converts in one instruction
                    auto [v0, v1] = block_scale ? codec->decode_pair(b, code_of(k), code_of(k + 1), block_scale)
                                                : std::pair{codec->decode(b, code_of(k), scale_of(k)), codec->decode(b, code_of(k + 1), scale_of(k + 1))};
                    values.push_back(v0);
                    values.push_back(v1);
                }
            }
        }
        for (int k = 0; k < count; ++k) out[size_t(k)].states.push_back(values[size_t(k)]);
    }
    return out;
}

ElementValues ElementLoader::load(llvm::IRBuilder<>& b, llvm::Value* i, const std::function<llvm::Value*(int)>& rank1_scale) const {
    auto load_f32 = [&](DType t, llvm::Value* array) {
        llvm::Type* elem = math_.storage_type(t);
        return math_.to_f32(b, t, invariant_load(b, elem, b.CreateGEP(elem, array, i), uint64_t(dtype_bytes(t))));
    };
    ElementValues in;
    in.p = load_f32(spec_.storage.param, p_);
    in.g = load_f32(spec_.storage.grad, g_);
    for (size_t s = 0; s < codecs_.size(); ++s) {
        const StateCodec* codec = codecs_[s].get();
        if (!codec) {
            in.states.push_back(load_f32(state_dtype(spec_.storage.state(spec_.lowered.states[s].name).format), states_[s]));
            continue;
        }
        llvm::Value* scale =
            codec->storage().rank1
                ? rank1_scale(int(s))
                : invariant_load(b, b.getFloatTy(), b.CreateGEP(b.getFloatTy(), scales_[s], b.CreateUDiv(i, b.getInt64(codec->storage().block))), 4);
        in.states.push_back(codec->decode(b, codec->load_code(b, states_[s], i), scale));
    }
    return in;
}

}  // namespace optjit
