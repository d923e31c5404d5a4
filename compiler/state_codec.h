// LLVM IR for reading and writing one block-quantized state (ir/quantization.h): what the
// NVPTX and host back ends share. A back end walks elements and blocks its own way; per
// element it asks the codec for a value from a code and a scale (decode), per block for the
// scale from the block's largest magnitude (scale_from_absmax), and per element for the code of
// a value times the reciprocal of that scale (encode).
//
// Codes are found without searching the tables: q8s, q8u, q4s and q4u through the bucket
// lookup of compiler/code_lookup.h (one table load and an addition), on the GPU's fast path
// q4u's evenly spaced codes by a rounding-down fma (code_lookup.h's grid_code), fp8 by the sm_89+
// conversion instruction or, before sm_89 and on the host, by integer rounding to nearest
// even. Every path equals ir/quantization.cpp's.
#pragma once

#include <llvm/IR/GlobalVariable.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>

#include <map>
#include <vector>

#include "compiler/target.h"
#include "ir/storage.h"

namespace optjit {

class StateCodec {
public:
    // With fast GPU math (`math` Fast, a GPU target) a decoded value's multiplication by its
    // scale may reassociate with the update's products by launch-uniform factors (ElementMath),
    // which then multiply the block's scale (one multiplication a block instead of one an
    // element).
    StateCodec(llvm::Module& module, const Target& target, const StateStorage& storage, MathMode math);

    const StateStorage& storage() const { return storage_; }
    bool four_bit() const;

    // The constant tables the codec reads (internal globals of the module, shared by codecs of
    // the same format). A GPU kernel copies them into shared memory and calls relocate().
    const std::vector<llvm::GlobalVariable*>& tables() const { return tables_; }
    void relocate(llvm::GlobalVariable* table, llvm::Value* copy) { where_[table] = copy; }

    // The i32 code of element `i` (i64, negative too) of a code array, from an even element (q4:
    // the even element is the high nibble).
    llvm::Value* load_code(llvm::IRBuilder<>& b, llvm::Value* codes, llvm::Value* i) const;
    // `code`: i32 holding one code. The fp32 value it stands for in a block of `scale`.
    llvm::Value* decode(llvm::IRBuilder<>& b, llvm::Value* code, llvm::Value* scale) const;
    // Table formats: the code (word >> shift) & mask of `word` (i32), decoded. The table's byte
    // offset comes from one shift and one mask of the word (the code times 4), where
    // extracting the code and then scaling it is one instruction more.
    llvm::Value* decode_field(llvm::IRBuilder<>& b, llvm::Value* word, unsigned shift, uint32_t mask, llvm::Value* scale) const;
    // 4-bit formats: the two elements of byte `byte` (0 to 3) of `word` (i32; the even element
    // is the high nibble), decoded by one shift, one mask and one 8-byte load from a table of
    // the 256 pairs: 2.5 instructions an element where decode_field takes 4.
    std::pair<llvm::Value*, llvm::Value*> decode_byte(llvm::IRBuilder<>& b, llvm::Value* word, unsigned byte, llvm::Value* scale) const;
    // Two fp8 codes at once where the hardware converts pairs (else two decodes).
    std::pair<llvm::Value*, llvm::Value*> decode_pair(llvm::IRBuilder<>& b, llvm::Value* code0, llvm::Value* code1,
                                                      llvm::Value* scale) const;
    // The i32 magnitude bits of an fp32 value: max over them is the absmax, NaN included
    // (NaN patterns are above infinity's), and integer maxima vectorize and shuffle cheaply.
    static llvm::Value* magnitude_bits(llvm::IRBuilder<>& b, llvm::Value* value);
    // The block's scale from the max of magnitude_bits: absmax floored at 1e-12, NaN kept, and
    // for fp8 divided by 448.
    llvm::Value* scale_from_absmax(llvm::IRBuilder<>& b, llvm::Value* absmax_bits) const;
    // The i32 code of `normalized` (a value times the fp32 reciprocal of its block's scale).
    llvm::Value* encode(llvm::IRBuilder<>& b, llvm::Value* normalized) const;
    // Two codes at once (fp8 on sm_89+ converts pairs); other formats encode each.
    std::pair<llvm::Value*, llvm::Value*> encode_pair(llvm::IRBuilder<>& b, llvm::Value* v0, llvm::Value* v1) const;
    bool has_lookup() const { return entries_ != nullptr; }  // the table formats (not fp8)
    bool unsigned_lookup() const;                              // q8u and q4u
    // Table formats: an i32 whose top byte is the code of `normalized`, which must not be NaN;
    // the low bytes are not zero. Packing codes by bytes saves the shift. `saturated`: the value
    // is known to lie in [0, 1] (a multiplication with .sat), so that an unsigned table's upper
    // clamp can go.
    llvm::Value* encode_in_top_byte(llvm::IRBuilder<>& b, llvm::Value* normalized, bool saturated = false) const;
    // Evenly spaced tables (q4u): their N (code_lookup.h's grid_steps), else 0.
    int grid_steps() const;
    // GPU, evenly spaced tables: kGridBias plus the code of value * inverse, the exact product,
    // for `scaled_inverse` = inverse * grid_steps(): one fma rounding down and one integer max
    // where the lookup takes seven instructions. `value` must be finite and at most the block's
    // largest magnitude.
    llvm::Value* encode_on_grid(llvm::IRBuilder<>& b, llvm::Value* value, llvm::Value* scaled_inverse) const;

private:
    llvm::GlobalVariable* table(const char* name, llvm::Type* elem, const std::vector<llvm::Constant*>& values);
    llvm::Value* load_table(llvm::IRBuilder<>& b, llvm::GlobalVariable* t, llvm::Value* index) const;
    llvm::Value* load_invariant(llvm::IRBuilder<>& b, llvm::Type* type, llvm::Value* address) const;
    llvm::Value* table_base(llvm::GlobalVariable* t) const;  // the shared-memory copy, once relocated
    llvm::Value* encode_fp8_software(llvm::IRBuilder<>& b, llvm::Value* normalized) const;
    llvm::Value* scaled(llvm::IRBuilder<>& b, llvm::Value* unit, llvm::Value* scale) const;  // unit * scale
    llvm::Value* decode_fp8_software(llvm::IRBuilder<>& b, llvm::Value* code) const;
    bool hardware_fp8() const { return target_.is_gpu() && target_.sm >= 89; }

    llvm::Module& module_;
    Target target_;
    StateStorage storage_;
    llvm::GlobalVariable* values_ = nullptr;   // decoded table values (table formats)
    llvm::GlobalVariable* entries_ = nullptr;  // code_lookup entries (table formats)
    llvm::GlobalVariable* pairs_ = nullptr;    // 4-bit formats: both values of each byte
    bool fast_math_ = false;  // fast GPU math
    std::vector<llvm::GlobalVariable*> tables_;
    std::map<llvm::GlobalVariable*, llvm::Value*> where_;
};

}  // namespace optjit
