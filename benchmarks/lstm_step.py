"""LSTM training step (forward + backward), specc vs PyTorch, at the same thread count.

    python benchmarks/lstm_step.py [--threads 2] [--repeats 20] [--json out.json]

For each (T, B, In, H): specc's compiled CPU kernels for the stdlib LSTM (the textbook
equations, one matrix per gate) with loss = mean(h), next to torch.nn.LSTM (oneDNN) and a
hand-written PyTorch cell in a Python loop, all float32.  Prints medians over repeats after
warm-up and the ratio specc / peer from this one run (these machines are noisy: compare
ratios, not absolute times).  Compile time (first call, cold or from the disk cache) is
reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

SHAPES = [(50, 32, 64, 256), (100, 16, 128, 128), (20, 64, 256, 512), (200, 1, 32, 64)]

SPEC = """dim T, B
model bench(x: f32[T, B, {D}]) {{
  h = lstm(x, hidden={H})
  loss = mean(h)
}}
"""


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_specc(T, B, D, H, repeats):
    import specc

    model = specc.compile(SPEC.format(D=D, H=H), target="cpu", dtype="float32")
    params = model.init_params(0)
    x = np.random.default_rng(0).standard_normal((T, B, D)).astype(np.float32)
    t = time.perf_counter()
    model.value_and_grad(params, x=x)
    first = time.perf_counter() - t
    step = median_time(lambda: model.value_and_grad(params, x=x), repeats)
    return step, first


def bench_torch(T, B, D, H, repeats):
    import torch

    x = torch.randn(T, B, D)
    lstm = torch.nn.LSTM(D, H)

    def cudnn_like():
        lstm.zero_grad()
        out, _ = lstm(x)
        out.mean().backward()

    W = torch.randn(D + H, 4 * H, requires_grad=True)
    b = torch.zeros(4 * H, requires_grad=True)

    def cell_loop():
        h = torch.zeros(B, H)
        c = torch.zeros(B, H)
        hs = []
        for t in range(T):
            z = torch.cat([h, x[t]], dim=1) @ W + b
            i, f, g, o = z.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
        torch.stack(hs).mean().backward()

    return median_time(cudnn_like, repeats), median_time(cell_loop, max(3, repeats // 4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--shapes", default="all", help="'all' or indices like 0,3")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    os.environ["SPECC_NUM_THREADS"] = str(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    shapes = SHAPES if args.shapes == "all" else [SHAPES[int(i)] for i in args.shapes.split(",")]
    rows = []
    print(f"LSTM fwd+bwd step, float32, {args.threads} threads, median of {args.repeats}")
    print(f"{'T, B, In, H':>20} {'specc ms':>9} {'first s':>8} {'nn.LSTM ms':>11} {'ratio':>6} "
          f"{'torch cell ms':>14} {'ratio':>6}")
    for T, B, D, H in shapes:
        step, first = bench_specc(T, B, D, H, args.repeats)
        row = {"shape": [T, B, D, H], "specc_ms": step * 1e3, "specc_first_call_s": first}
        line = f"{str((T, B, D, H)):>20} {step * 1e3:9.2f} {first:8.2f}"
        if torch is not None:
            ref, cell = bench_torch(T, B, D, H, args.repeats)
            row |= {"torch_lstm_ms": ref * 1e3, "torch_cell_ms": cell * 1e3}
            line += f" {ref * 1e3:11.2f} {step / ref:6.2f} {cell * 1e3:14.2f} {step / cell:6.2f}"
        print(line, flush=True)
        rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
