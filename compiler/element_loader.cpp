#include "compiler/element_loader.h"

#include "ir/numeric.h"

namespace optjit {

ElementLoader::ElementLoader(llvm::Module& module, const KernelSpec& spec, const ElementMath& math) : spec_(spec), math_(math) {
    for (const StateDecl& s : spec.lowered.states) {
        const StateStorage& st = spec.storage.state(s.name);
        codecs_.push_back(is_block_quantized(st.format) ? std::make_unique<StateCodec>(module, spec.target, st) : nullptr);
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

ElementValues ElementLoader::load(llvm::IRBuilder<>& b, llvm::Value* i, const std::function<llvm::Value*(int)>& rank1_scale) const {
    auto load_f32 = [&](DType t, llvm::Value* array) {
        llvm::Type* elem = math_.storage_type(t);
        return math_.to_f32(b, t, b.CreateAlignedLoad(elem, b.CreateGEP(elem, array, i), llvm::Align(dtype_bytes(t))));
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
                : b.CreateAlignedLoad(b.getFloatTy(), b.CreateGEP(b.getFloatTy(), scales_[s], b.CreateUDiv(i, b.getInt64(codec->storage().block))),
                                      llvm::Align(4));
        in.states.push_back(codec->decode(b, codec->load_code(b, states_[s], i), scale));
    }
    return in;
}

}  // namespace optjit
