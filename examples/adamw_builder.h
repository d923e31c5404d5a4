// AdamW built with the C++ builder: the same program as examples/adamw.opt, line for line
// (tests/test_builder.cpp checks that the two are equal).
#pragma once

#include "ir/builder.h"

namespace optjit {

inline Program build_adamw() {
    using namespace dsl;
    Builder b("adamw");
    Value lr = b.hyper("lr", 1e-3);
    Value beta1 = b.hyper("beta1", 0.9);
    Value beta2 = b.hyper("beta2", 0.999);
    Value eps = b.hyper("eps", 1e-8);
    Value weight_decay = b.hyper("weight_decay", 1e-2);
    Value m = b.state("m", 0);
    Value v = b.state("v", 0);
    Value p = b.p(), g = b.g(), step = b.step();
    b.assign(p, p * (1 - lr * weight_decay));
    b.assign(m, lerp(m, g, 1 - beta1));
    b.assign(v, lerp(v, g * g, 1 - beta2));
    // pow, not ^: C++'s ^ is xor with the wrong precedence.
    b.assign(p, p - lr / (1 - pow(beta1, step)) * (m / (sqrt(v) / sqrt(1 - pow(beta2, step)) + eps)));
    return b.build();
}

}  // namespace optjit
