#include "compiler/state_codec.h"

#include <llvm/IR/InlineAsm.h>
#include <llvm/IR/Intrinsics.h>
#include <llvm/IR/IntrinsicsNVPTX.h>

#include <bit>
#include <span>
#include <stdexcept>

#include "compiler/code_lookup.h"
#include "compiler/llvm_backend.h"
#include "ir/quantization.h"

namespace optjit {

namespace {

llvm::Value* f32(llvm::IRBuilder<>& b, float v) { return llvm::ConstantFP::get(b.getFloatTy(), v); }

}  // namespace

StateCodec::StateCodec(llvm::Module& module, const Target& target, const StateStorage& storage, MathMode math)
    : module_(module), target_(target), storage_(storage), fast_math_(target.is_gpu() && math == MathMode::Fast) {
    if (!is_block_quantized(storage.format)) throw std::logic_error("StateCodec: not a block-quantized format");
    llvm::LLVMContext& c = module.getContext();
    StateFormat f = storage.format;
    if (f != StateFormat::FP8) {
        std::vector<llvm::Constant*> values;
        for (float v : code_table(f)) values.push_back(llvm::ConstantFP::get(llvm::Type::getFloatTy(c), v));
        values_ = table("values", llvm::Type::getFloatTy(c), values);
        std::vector<llvm::Constant*> entries;
        for (uint32_t e : code_lookup(f).entries) entries.push_back(llvm::ConstantInt::get(llvm::Type::getInt32Ty(c), e));
        entries_ = table("lookup", llvm::Type::getInt32Ty(c), entries);
    }
    if (four_bit()) {
        std::span<const float> unit = code_table(f);
        std::vector<llvm::Constant*> pairs;
        for (int byte = 0; byte < 256; ++byte)
            for (int nibble : {byte >> 4, byte & 15}) pairs.push_back(llvm::ConstantFP::get(llvm::Type::getFloatTy(c), unit[size_t(nibble)]));
        pairs_ = table("pairs", llvm::Type::getFloatTy(c), pairs);
    }
}

bool StateCodec::four_bit() const { return storage_.format == StateFormat::Q4S || storage_.format == StateFormat::Q4U; }

llvm::GlobalVariable* StateCodec::table(const char* name, llvm::Type* elem, const std::vector<llvm::Constant*>& values) {
    std::string symbol = std::string("optjit.") + std::string(format_name(storage_.format)) + "." + name;
    llvm::GlobalVariable* g = module_.getGlobalVariable(symbol, true);
    if (!g) {
        auto* type = llvm::ArrayType::get(elem, values.size());
        g = new llvm::GlobalVariable(module_, type, true, llvm::GlobalValue::InternalLinkage, llvm::ConstantArray::get(type, values),
                                     symbol, nullptr, llvm::GlobalValue::NotThreadLocal, target_.is_gpu() ? kNvptxGlobal : 0);
        g->setAlignment(llvm::Align(16));
    }
    tables_.push_back(g);
    return g;
}

llvm::Value* StateCodec::table_base(llvm::GlobalVariable* t) const {
    auto it = where_.find(t);
    return it == where_.end() ? t : it->second;
}

llvm::Value* StateCodec::load_invariant(llvm::IRBuilder<>& b, llvm::Type* type, llvm::Value* address) const {
    auto* load = b.CreateAlignedLoad(type, address, llvm::Align(4));
    load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(b.getContext(), {}));
    return load;
}

llvm::Value* StateCodec::load_table(llvm::IRBuilder<>& b, llvm::GlobalVariable* t, llvm::Value* index) const {
    llvm::Type* elem = t->getValueType()->getArrayElementType();
    if (index->getType() != b.getInt64Ty()) index = b.CreateZExt(index, b.getInt64Ty());
    return load_invariant(b, elem, b.CreateGEP(elem, table_base(t), index));
}

llvm::Value* StateCodec::magnitude_bits(llvm::IRBuilder<>& b, llvm::Value* value) {
    return b.CreateAnd(b.CreateBitCast(value, b.getInt32Ty()), b.getInt32(0x7fffffff));
}

llvm::Value* StateCodec::scale_from_absmax(llvm::IRBuilder<>& b, llvm::Value* absmax_bits) const {
    llvm::Value* absmax = b.CreateBitCast(absmax_bits, b.getFloatTy());
    llvm::Value* scale = b.CreateBinaryIntrinsic(llvm::Intrinsic::maximum, absmax, f32(b, 1e-12f));  // NaN stays NaN
    if (storage_.format == StateFormat::FP8) scale = b.CreateFDiv(scale, f32(b, 448.0f));
    return scale;
}

llvm::Value* StateCodec::scaled(llvm::IRBuilder<>& b, llvm::Value* unit, llvm::Value* scale) const {
    llvm::Value* product = b.CreateFMul(unit, scale);
    return fast_math_ ? reassociable(product) : product;
}

llvm::Value* StateCodec::load_code(llvm::IRBuilder<>& b, llvm::Value* codes, llvm::Value* i) const {
    // i may be negative, from a cursor at an even element (codegen_nvptx.cpp's short chunks).
    llvm::Value* index = four_bit() ? b.CreateAShr(i, 1) : i;
    llvm::Value* byte = b.CreateZExt(b.CreateLoad(b.getInt8Ty(), b.CreateGEP(b.getInt8Ty(), codes, index)), b.getInt32Ty());
    if (!four_bit()) return byte;
    llvm::Value* odd = b.CreateICmpNE(b.CreateAnd(i, b.getInt64(1)), b.getInt64(0));
    return b.CreateSelect(odd, b.CreateAnd(byte, b.getInt32(15)), b.CreateLShr(byte, 4));
}

llvm::Value* StateCodec::decode(llvm::IRBuilder<>& b, llvm::Value* code, llvm::Value* scale) const {
    llvm::Value* unit = storage_.format == StateFormat::FP8 ? decode_fp8_software(b, code) : load_table(b, values_, code);
    return scaled(b, unit, scale);
}

llvm::Value* StateCodec::decode_field(llvm::IRBuilder<>& b, llvm::Value* word, unsigned shift, uint32_t mask, llvm::Value* scale) const {
    if (!has_lookup()) throw std::logic_error("StateCodec::decode_field: fp8 has no table");
    llvm::Value* moved = shift >= 2 ? b.CreateLShr(word, shift - 2) : b.CreateShl(word, 2 - shift);
    llvm::Value* offset = b.CreateZExt(b.CreateAnd(moved, b.getInt32(mask << 2)), b.getInt64Ty());
    llvm::Value* unit = load_invariant(b, b.getFloatTy(), b.CreateGEP(b.getInt8Ty(), table_base(values_), offset));
    return scaled(b, unit, scale);
}

std::pair<llvm::Value*, llvm::Value*> StateCodec::decode_byte(llvm::IRBuilder<>& b, llvm::Value* word, unsigned byte, llvm::Value* scale) const {
    if (!pairs_) throw std::logic_error("StateCodec::decode_byte: not a 4-bit format");
    // The byte times 8, the offset of its pair.
    llvm::Value* moved = byte == 0 ? b.CreateShl(word, 3) : b.CreateLShr(word, 8 * byte - 3);
    llvm::Value* offset = b.CreateZExt(b.CreateAnd(moved, b.getInt32(0x7f8)), b.getInt64Ty());
    auto* pair_type = llvm::FixedVectorType::get(b.getFloatTy(), 2);
    auto* load = b.CreateAlignedLoad(pair_type, b.CreateGEP(b.getInt8Ty(), table_base(pairs_), offset), llvm::Align(8));
    load->setMetadata(llvm::LLVMContext::MD_invariant_load, llvm::MDNode::get(b.getContext(), {}));
    return {scaled(b, b.CreateExtractElement(load, uint64_t(0)), scale), scaled(b, b.CreateExtractElement(load, uint64_t(1)), scale)};
}

std::pair<llvm::Value*, llvm::Value*> StateCodec::decode_pair(llvm::IRBuilder<>& b, llvm::Value* code0, llvm::Value* code1,
                                                              llvm::Value* scale) const {
    if (storage_.format != StateFormat::FP8 || !hardware_fp8()) return {decode(b, code0, scale), decode(b, code1, scale)};
    // cvt.rn.f16x2.e4m3x2: the high byte becomes the high half. code0 goes low, as in memory
    // (the other order is a byte swap, which NVPTX cannot select for i16).
    llvm::Value* packed = b.CreateTrunc(b.CreateOr(b.CreateShl(code1, 8), code0), b.getInt16Ty());
    auto* asm_type = llvm::FunctionType::get(b.getInt32Ty(), {b.getInt16Ty()}, false);
    llvm::Value* halves = b.CreateCall(llvm::InlineAsm::get(asm_type, "cvt.rn.f16x2.e4m3x2 $0, $1;", "=r,h", false), {packed});
    auto half = [&](int shift) {
        llvm::Value* h = b.CreateBitCast(b.CreateTrunc(b.CreateLShr(halves, shift), b.getInt16Ty()), b.getHalfTy());
        return scaled(b, b.CreateFPExt(h, b.getFloatTy()), scale);
    };
    return {half(0), half(16)};
}

llvm::Value* StateCodec::encode(llvm::IRBuilder<>& b, llvm::Value* normalized) const {
    if (storage_.format == StateFormat::FP8) {
        if (!hardware_fp8()) return encode_fp8_software(b, normalized);
        return encode_pair(b, normalized, normalized).first;
    }
    llvm::Value* code = b.CreateLShr(encode_in_top_byte(b, normalized), 24);
    return b.CreateSelect(b.CreateFCmpUNO(normalized, normalized), b.getInt32(0), code);
}

std::pair<llvm::Value*, llvm::Value*> StateCodec::encode_pair(llvm::IRBuilder<>& b, llvm::Value* v0, llvm::Value* v1) const {
    if (storage_.format != StateFormat::FP8 || !hardware_fp8()) return {encode(b, v0), encode(b, v1)};
    // cvt.rn.satfinite.e4m3x2.f32 d, a, b: a goes to the high byte, so v1 is passed first.
    // NaN gives 0x7f and infinities saturate, as float_to_e4m3 does.
    auto* asm_type = llvm::FunctionType::get(b.getInt16Ty(), {b.getFloatTy(), b.getFloatTy()}, false);
    llvm::Value* packed = b.CreateCall(llvm::InlineAsm::get(asm_type, "cvt.rn.satfinite.e4m3x2.f32 $0, $1, $2;", "=h,f,f", false), {v1, v0});
    llvm::Value* wide = b.CreateZExt(packed, b.getInt32Ty());
    return {b.CreateAnd(wide, b.getInt32(0xff)), b.CreateLShr(wide, 8)};
}

bool StateCodec::unsigned_lookup() const { return has_lookup() && !code_lookup(storage_.format).is_signed; }

// compiler/code_lookup.h's lookup_code, instruction for instruction (NaN aside).
llvm::Value* StateCodec::encode_in_top_byte(llvm::IRBuilder<>& b, llvm::Value* normalized, bool saturated) const {
    const CodeLookup& lookup = code_lookup(storage_.format);
    llvm::Value* key = b.CreateBitCast(normalized, b.getInt32Ty());
    if (lookup.is_signed) key = b.CreateBinaryIntrinsic(llvm::Intrinsic::abs, key, b.getFalse());  // INT_MIN stays
    if (!lookup.whole_range) {
        key = b.CreateBinaryIntrinsic(llvm::Intrinsic::smax, key, b.getInt32(lookup.low_key));
        // An unsigned table's high_key is above 1.0's key.
        if (!saturated || lookup.is_signed) key = b.CreateBinaryIntrinsic(llvm::Intrinsic::smin, key, b.getInt32(lookup.high_key));
    }
    // The bucket's offset in i64, so that the table's first bucket folds into the address.
    llvm::Value* bucket = b.CreateSub(b.CreateZExt(b.CreateLShr(key, uint64_t(lookup.shift)), b.getInt64Ty()),
                                      b.getInt64(uint32_t(lookup.low_key) >> lookup.shift));
    return b.CreateAdd(load_table(b, entries_, bucket), key);
}

int StateCodec::grid_steps() const { return optjit::grid_steps(storage_.format); }

llvm::Value* StateCodec::encode_on_grid(llvm::IRBuilder<>& b, llvm::Value* value, llvm::Value* scaled_inverse) const {
    if (!grid_steps() || !target_.is_gpu()) throw std::logic_error("StateCodec::encode_on_grid: not an evenly spaced table on the GPU");
    llvm::Value* sum = b.CreateIntrinsic(llvm::Intrinsic::nvvm_fma_rm_f, {}, {value, scaled_inverse, f32(b, 0x1p23f - 0.5f)});
    return b.CreateBinaryIntrinsic(llvm::Intrinsic::smax, b.CreateBitCast(sum, b.getInt32Ty()), b.getInt32(kGridBias));
}

// ir/quantization.cpp's float_to_e4m3 with integers: round the fp32 mantissa to 3 bits (to
// nearest even) and rebias the exponent; below 2^-6, multiples of 2^-9.
llvm::Value* StateCodec::encode_fp8_software(llvm::IRBuilder<>& b, llvm::Value* normalized) const {
    llvm::Value* bits = b.CreateBitCast(normalized, b.getInt32Ty());
    llvm::Value* sign = b.CreateAnd(b.CreateLShr(bits, 24), b.getInt32(0x80));
    llvm::Value* magnitude = b.CreateAnd(bits, b.getInt32(0x7fffffff));
    llvm::Value* odd = b.CreateAnd(b.CreateLShr(magnitude, 20), b.getInt32(1));
    llvm::Value* rounded = b.CreateAdd(magnitude, b.CreateAdd(odd, b.getInt32(0x7ffff)));
    llvm::Value* normal = b.CreateSub(b.CreateLShr(rounded, 20), b.getInt32(120 << 3));
    llvm::Value* a = b.CreateBitCast(magnitude, b.getFloatTy());
    llvm::Value* subnormal = b.CreateFPToSI(b.CreateUnaryIntrinsic(llvm::Intrinsic::rint, b.CreateFMul(a, f32(b, 512.0f))), b.getInt32Ty());
    llvm::Value* is_subnormal = b.CreateICmpULT(magnitude, b.getInt32(int32_t(std::bit_cast<uint32_t>(0x1p-6f))));
    llvm::Value* code = b.CreateSelect(is_subnormal, subnormal, normal);
    code = b.CreateSelect(b.CreateICmpUGE(magnitude, b.getInt32(int32_t(std::bit_cast<uint32_t>(448.0f)))), b.getInt32(0x7e), code);
    code = b.CreateOr(code, sign);
    return b.CreateSelect(b.CreateICmpUGT(magnitude, b.getInt32(0x7f800000)), b.getInt32(0x7f), code);
}

llvm::Value* StateCodec::decode_fp8_software(llvm::IRBuilder<>& b, llvm::Value* code) const {
    llvm::Value* low7 = b.CreateAnd(code, b.getInt32(0x7f));
    llvm::Value* normal = b.CreateBitCast(b.CreateAdd(b.CreateShl(low7, 20), b.getInt32(120 << 23)), b.getFloatTy());
    llvm::Value* subnormal = b.CreateFMul(b.CreateUIToFP(b.CreateAnd(code, b.getInt32(7)), b.getFloatTy()), f32(b, 0x1p-9f));
    llvm::Value* magnitude = b.CreateSelect(b.CreateICmpULT(low7, b.getInt32(8)), subnormal, normal);
    llvm::Value* value = b.CreateSelect(b.CreateICmpNE(b.CreateAnd(code, b.getInt32(0x80)), b.getInt32(0)), b.CreateFNeg(magnitude), magnitude);
    return b.CreateSelect(b.CreateICmpEQ(low7, b.getInt32(0x7f)), f32(b, std::numeric_limits<float>::quiet_NaN()), value);
}

}  // namespace optjit
