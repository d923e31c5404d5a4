// FNV-1a, 64 bits: the checksum of disk-cache entries and checkpoints, and of run results.
#pragma once

#include <cstdint>
#include <span>

namespace optjit {

constexpr uint64_t kFnv1aBasis = 0xcbf29ce484222325ull;

// Continues hash `h` over `bytes` (start from kFnv1aBasis).
inline uint64_t fnv1a(std::span<const uint8_t> bytes, uint64_t h = kFnv1aBasis) {
    for (uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ull;
    return h;
}

}  // namespace optjit
