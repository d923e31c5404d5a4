#!/usr/bin/env python3
"""The workloads of `optjit bench`, stepped by torch.optim.AdamW, printed in the same columns.

Where PyTorch with CUDA is installed:  python3 benchmarks/torch_adamw_bench.py [--steps K]

bf16 parameters and gradients; torch keeps AdamW's states in the parameters' dtype, so its
states are bf16 (4 bytes a parameter). Rows: fused=True (one multi-tensor kernel per dtype and
device) and foreach=True (the default). Each row: median step time over K CUDA-event-timed
steps with a new learning rate every step, the bytes the step must move (p read and written,
g read, m and v read and written), GB/s, a device-to-device copy of the same bytes timed in the
same run, state bytes per parameter, and the first step's time (states allocated then).
"""
import argparse
import math
import statistics
import time


def llama_3_2_1b_shapes():
    """torch's Linear weights are [out, in]; as runtime/step_bench.cpp lists them."""
    hidden, kv, mlp, vocab = 2048, 512, 8192, 128256
    shapes = [(vocab, hidden)]
    for _ in range(16):
        shapes += [(hidden, hidden), (kv, hidden), (kv, hidden), (hidden, hidden),
                   (mlp, hidden), (mlp, hidden), (hidden, mlp), (hidden,), (hidden,)]
    shapes.append((hidden,))
    return shapes


def small_shapes():
    """4096 tensors of 1 to 65536 elements, log-uniform (the same sizes as optjit's)."""
    def mix64(x):
        x = (x + 0x9E3779B97F4A7C15) & (2**64 - 1)
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        return x ^ (x >> 31)

    def uniform01(seed, stream, index):
        h = mix64(mix64(mix64(seed) ^ stream) ^ index)
        return ((h >> 11) + 0.5) * (1.0 / 9007199254740992.0)

    return [(int(2.0 ** (16.0 * uniform01(7, 0, i))),) for i in range(4096)]


def median_ms(torch, steps, body):
    body(0)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(1, steps + 1):
        start.record()
        body(i)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def run(torch, name, shapes, steps):
    total = sum(math.prod(s) for s in shapes)
    print(f"== {name}: {len(shapes)} tensors, {total:.4g} parameters; torch.optim.AdamW, bf16 p and g; "
          f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"  {'states':<14} {'step ms':>9} {'GB moved':>9} {'GB/s':>8} {'copy GB/s':>10} {'% copy':>7} "
          f"{'state B/par':>11} {'first ms':>9}")
    gen = torch.Generator(device="cuda").manual_seed(1)
    for label, kwargs in (("bf16 fused", {"fused": True}), ("bf16 foreach", {"foreach": True})):
        params = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=torch.bfloat16, generator=gen)) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, device="cuda", dtype=torch.bfloat16, generator=gen) * 1e-2
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2, **kwargs)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.step()
        torch.cuda.synchronize()
        first_ms = (time.perf_counter() - t0) * 1e3

        def step(i):
            for group in opt.param_groups:
                group["lr"] = 1e-4 * (1 + 0.01 * i)
            opt.step()

        step_ms = median_ms(torch, steps, step)
        moved = total * (2 * 2 + 2 + 2 * 2 * 2)  # p r/w, g r, m and v r/w, all bf16
        half = moved // 2
        a = torch.empty(half, dtype=torch.uint8, device="cuda").fill_(0x3C)
        b = torch.empty_like(a)
        copy_ms = median_ms(torch, steps, lambda i: b.copy_(a))
        del a, b
        gbs, copy_gbs = moved / step_ms / 1e6, 2 * half / copy_ms / 1e6
        print(f"  {label:<14} {step_ms:>9.3f} {moved / 1e9:>9.3f} {gbs:>8.0f} {copy_gbs:>10.0f} {100 * gbs / copy_gbs:>6.1f}% "
              f"{4.0:>11.3f} {first_ms:>9.1f}")
        del opt, params
        torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=2**28, help="elements of the tensor workload")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_adamw_bench: PyTorch is not installed")
        return
    if not torch.cuda.is_available():
        print("torch_adamw_bench: PyTorch has no CUDA device here")
        return
    side = int(math.isqrt(args.size))
    tensor = [(side, args.size // side)] if side * (args.size // side) == args.size else [(args.size,)]
    run(torch, "tensor", tensor, args.steps)
    run(torch, "llama", llama_3_2_1b_shapes(), args.steps)
    run(torch, "small", small_shapes(), args.steps)


if __name__ == "__main__":
    main()
