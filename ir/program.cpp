#include "ir/program.h"

#include <bit>
#include <cstdint>

namespace optjit {

namespace {
bool same_number(double a, double b) { return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b); }
}  // namespace

bool operator==(const HyperDecl& a, const HyperDecl& b) { return a.name == b.name && same_number(a.value, b.value); }
bool operator==(const StateDecl& a, const StateDecl& b) { return a.name == b.name && same_number(a.init, b.init); }

bool operator==(const Program& a, const Program& b) {
    return a.name == b.name && a.hypers == b.hypers && a.states == b.states && a.scalars == b.scalars &&
           a.update == b.update;
}

int Program::hyper_index(std::string_view n) const {
    for (size_t i = 0; i < hypers.size(); ++i)
        if (hypers[i].name == n) return int(i);
    return -1;
}

int Program::state_index(std::string_view n) const {
    for (size_t i = 0; i < states.size(); ++i)
        if (states[i].name == n) return int(i);
    return -1;
}

}  // namespace optjit
