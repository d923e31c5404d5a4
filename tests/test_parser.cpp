#include <doctest/doctest.h>

#include "ir/parser.h"
#include "ir/printer.h"

using namespace optjit;

TEST_CASE("parser: a minimal program round-trips") {
    ParseResult r = parse("optimizer sgd\n hyper lr = 0.1\n update\n p = p - lr * g\n");
    REQUIRE(r.ok());
    CHECK(print(r.program) == "optimizer sgd\n  hyper lr = 0.1\n  update\n    p = p - lr * g\n");
}
