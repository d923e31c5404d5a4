"""Writes generated inputs too large or too binary to keep in the repository.

usage: gen.py KIND FILE
"""
import random
import sys

HEAD = b"optimizer t\nupdate\n"
N = 100_000
BIG = 10 * 1024 * 1024


def make(kind):
    if kind == "empty":
        return b""
    if kind == "random-bytes":
        rng = random.Random(1)  # fixed: the expected position is part of the test
        return b"optimizer t\nupdate\np = g \x00\xff" + bytes(rng.randrange(256) for _ in range(4096))
    if kind == "nul-in-name":
        return HEAD + b"p = g\x00x\n"
    if kind == "high-byte":
        return HEAD + b"p = g * \xe2\x88\x9a2\n"
    if kind == "unterminated-paren":
        return HEAD + b"p = (g + (1"
    if kind == "unterminated-call":
        return HEAD + b"p = max(g, "
    if kind == "unterminated-decl":
        return b"optimizer t\nhyper lr ="
    if kind == "deep-parens":
        return HEAD + b"p = " + b"(" * N + b"g" + b")" * N + b"\n"
    if kind == "deep-parens-open":
        return HEAD + b"p = " + b"(" * N
    if kind == "deep-minus":
        return HEAD + b"p = " + b"-" * N + b"g\n"
    if kind == "deep-power":
        return HEAD + b"p = g" + b" ^ g" * N + b"\n"
    if kind == "deep-calls":
        return HEAD + b"p = " + b"sqrt(" * N + b"g" + b")" * N + b"\n"
    if kind == "long-sum":
        return HEAD + b"p = g" + b" + g" * (BIG // 4) + b"\n"
    if kind == "long-name":
        return HEAD + b"p = " + b"x" * BIG + b"\n"
    if kind == "long-name-target":
        return HEAD + b"x" * BIG + b" = g\np = g\n"
    if kind == "long-number":
        return HEAD + b"p = " + b"1" * BIG + b"\n"
    if kind == "long-comment":
        return HEAD + b"p = g # " + b"c" * BIG + b"\np = $\n"
    if kind == "many-lines":
        # 10^5 statements, each misusing a name: diagnostics must not take quadratic time.
        return HEAD + b"".join(b"t%d = nope\n" % i for i in range(N)) + b"p = g\n"
    if kind == "many-blank-lines":
        return HEAD + b"\n" * N + b"p = $\n"
    raise SystemExit(f"gen.py: unknown kind {kind}")


with open(sys.argv[2], "wb") as f:
    f.write(make(sys.argv[1]))
