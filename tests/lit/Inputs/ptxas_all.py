"""ptxas_all.py OPTJIT PTXAS OUTDIR FILE...: compiles every program FILE to PTX for sm_80 and
sm_90 in several storage variants (16-bit and block-quantized states among them) and assembles each with `ptxas -arch=sm_XX`.

Prints one line per kernel, "ok NAME sm_XX VARIANT" or "FAIL NAME sm_XX VARIANT" followed by
the failing tool's output, then "assembled N of M"; exits 1 if any kernel failed.
"""
import os
import re
import subprocess
import sys

optjit, ptxas, outdir = sys.argv[1:4]
files = sorted(sys.argv[4:])
os.makedirs(outdir, exist_ok=True)


def states_of(path):
    with open(path) as f:
        return re.findall(r"^\s*state\s+(\w+)", f.read(), re.MULTILINE)


total = ok = 0
for path in files:
    name = os.path.splitext(os.path.basename(path))[0]
    bf16_states = []
    for s in states_of(path):
        bf16_states += ["--state", s + "=bf16"]

    def every_state(fmt):
        out = []
        for s in states_of(path):
            out += ["--state", s + "=" + fmt]
        return out

    variants = {
        "f32": [],
        "bf16": ["--param-dtype", "bf16", "--grad-dtype", "bf16"] + bf16_states,
        "f16": ["--param-dtype", "f16", "--grad-dtype", "f32"],
        "mixed": ["--param-dtype", "f32", "--grad-dtype", "f16"] + bf16_states[:2],
        "fast": ["--fast-math", "--param-dtype", "bf16"],
        # Block-quantized states: one warp a block (q8), half a warp (q4), blocks spanning
        # warps (4096: a reduction through shared memory), fp8 (hardware conversion on sm_90).
        "q8": ["--param-dtype", "bf16", "--grad-dtype", "bf16"] + every_state("q8s"),
        "q4": every_state("q4s"),
        "q4u-4096": ["--param-dtype", "bf16"] + every_state("q4u:4096"),
        "fp8": ["--param-dtype", "bf16", "--grad-dtype", "bf16"] + every_state("fp8:32"),
    }
    for sm in ("sm_80", "sm_90"):
        for variant, options in variants.items():
            total += 1
            ptx = os.path.join(outdir, "%s.%s.%s.ptx" % (name, sm, variant))
            cubin = ptx[:-4] + ".cubin"
            steps = [
                [optjit, "compile", path, "--target", sm, "--emit", "ptx", "-o", ptx] + options,
                [ptxas, "-arch=" + sm, ptx, "-o", cubin],
            ]
            failed = None
            for cmd in steps:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                if r.returncode != 0:
                    failed = "%s\nexit %d\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr)
                    break
            if failed:
                print("FAIL %s %s %s\n%s" % (name, sm, variant, failed))
            else:
                ok += 1
                print("ok %s %s %s" % (name, sm, variant))
print("assembled %d of %d" % (ok, total))
sys.exit(0 if ok == total else 1)
