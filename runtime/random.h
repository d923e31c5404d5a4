// Deterministic pseudo-random data: a counter-based generator (SplitMix64 of seed, stream and
// index), so any element can be drawn independently, in any order, on any thread, and the
// same seed gives the same data on every platform (std::normal_distribution does not).
#pragma once

#include <cmath>
#include <cstdint>

namespace optjit {

inline uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Uniform in (0, 1).
inline double uniform01(uint64_t seed, uint64_t stream, uint64_t index) {
    uint64_t h = mix64(mix64(mix64(seed) ^ stream) ^ index);
    return (double(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

// Standard normal (Box-Muller on two independent uniforms).
inline double normal(uint64_t seed, uint64_t stream, uint64_t index) {
    double u1 = uniform01(seed, stream, 2 * index), u2 = uniform01(seed, stream, 2 * index + 1);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace optjit
