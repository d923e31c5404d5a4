#!/usr/bin/env python3
"""Instructions one thread executes per chunk on the fast path of a quantized GPU kernel.

The quantized kernels are issue-bound (benchmarks/NOTES.md), so this count predicts their time:
    optjit compile examples/adamw.opt --target sm_90 --emit ptx --param-dtype bf16 \\
        --grad-dtype bf16 --state m=q8s --state v=q8u -o k.ptx
    ptxas -arch=sm_90 -O3 k.ptx -o k.cubin        # /usr/local/cuda/bin/ptxas
    nvdisasm -c -ndf k.cubin > k.sass              # nvdisasm: copy it from the device machine
    benchmarks/count_sass.py k.sass 8              # 8 elements a thread
    benchmarks/count_sass.py k.sass 8 optjit_adamw # one kernel of a module that holds several
                                                   # (rank-1 states add NAME_statistics)
    benchmarks/count_sass.py k.sass 16             # --gpu-tune unroll_chunks=2: the loop body
                                                   # holds two chunks, 16 elements a thread

It walks the chunk loop (the backward branch before the first RET that spans the most
instructions) from its head to its back edge: loops run once, branches around code that holds a slow-path CALL (the
IEEE division's, or a whole update redone with the IEEE instructions) are taken (the fast
path), branches to a CALL are not, the non-finite encode (FSETP.NAN) and the element-by-element loads and
stores of a short chunk (LDG.E.U8/U16, STG.E.U8/U16) and code holding a loop (the tensor
search when the walk moves to another tensor or run) are skipped, and any other
conditional branch falls through (listed, so that a reader can check the path).
COUNT_SASS_LIST=1 prints the walked instructions too.
"""
import os
import re
import signal
import sys


def main(path, elements, function=None):
    ins, labels = [], {}
    inside = function is None
    for line in open(path):
        m = re.match(r'^\s*\.section\s+\.text\.(\w+),', line)
        if m:
            inside = function is None or m.group(1) == function
            continue
        if not inside:
            continue
        m = re.match(r'^(\.L_x_\d+):', line)
        if m:
            labels[m.group(1)] = len(ins)
            continue
        m = re.match(r'\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;?\s*$', line)
        if m:
            ins.append(m.group(2))

    def target(x):
        m = re.search(r'`\((\.L_x_\d+)\)', x)
        return labels[m.group(1)] if m else None

    def calls(at, n=7):
        return any('CALL' in x for x in ins[at:at + n])

    def slow_load(at):  # the element-by-element loads of a short chunk, before the next branch
        for x in ins[at:at + 400]:
            if re.search(r'LDG\.E\.(U8|U16)', x):
                return True
            if 'BRA' in x:
                return False
        return False

    def holds_loop(at, end):  # a loop between at and end: the tensor search of a new tensor or run
        for k in range(at, end):
            if 'BRA' in ins[k] and target(ins[k]) is not None and at <= target(ins[k]) < k:
                return True
        return False

    def slow_store(at, end):  # the element-by-element stores of a short chunk, before `end`
        return any(re.search(r'STG\.E\.(U8|U16)', x) for x in ins[at:min(end, at + 60)])

    # The chunk loop: of the backward branches before the first RET, the one that spans the
    # most instructions (the tensor search's loop sits inside it, the table copies before it).
    head = tail = None
    for i, x in enumerate(ins):
        if x.startswith('RET'):
            break
        if re.match(r'(@!?U?P[0-9T] )?BRA `', x) and target(x) is not None and target(x) < i:
            if head is None or i - target(x) > tail - head:
                head, tail = target(x), i
    if head is None:
        sys.exit('no chunk loop found')
    pc, ops, fallthroughs = head, {}, []
    for _ in range(100000):
        x = ins[pc]
        if os.environ.get('COUNT_SASS_LIST'):
            print(x)
        op = re.sub(r'^@!?U?P[0-9T] ', '', x).split()[0]
        ops[op] = ops.get(op, 0) + 1
        if pc == tail:
            break
        if 'BRA' in x and x.startswith('@'):
            t = target(x)
            if t <= pc:
                taken = False
            elif calls(pc + 1, t - pc - 1) or any('FSETP.NAN' in y for y in ins[pc + 1:min(t, pc + 150)]) or slow_load(pc + 1) or slow_store(pc + 1, t) or holds_loop(pc + 1, t):
                taken = True
            else:
                taken = False
                if not calls(t):
                    fallthroughs.append(x)
            pc = t if taken else pc + 1
        elif 'BRA' in x:
            pc = target(x)
        else:
            pc += 1
    total = sum(ops.values())
    print(f'{total} instructions a chunk, {total / elements:.1f} an element')
    for op, n in sorted(ops.items(), key=lambda kv: -kv[1]):
        print(f'  {n:5d}  {op}')
    for x in fallthroughs:
        print('  fell through:', x)


if __name__ == '__main__':
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under `| head`
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8, sys.argv[3] if len(sys.argv) > 3 else None)
