"""LSTM training step on a GPU: specc's CUDA backend vs torch.nn.LSTM (cuDNN), float32.

    python benchmarks/cuda_lstm.py [--repeats 50] [--warmup 5] [--shapes 0,3] [--json out.json]
    python benchmarks/cuda_lstm.py --tiny       # no GPU: numba-cuda's simulator, tiny shapes, a smoke test

One step = forward + backward of loss = mean(h) over a one-layer LSTM (the stdlib ``lstm``, the
model of benchmarks/rnn.py), parameters and the batch already on the GPU: specc's compiled
value-and-grad graph is called on device arrays and returns device arrays (one persistent kernel
for the forward recurrence, one for its reversed backward, plus the grid-stride kernels and the
tiled gemm around them); PyTorch runs ``torch.nn.LSTM`` with cuDNN on the same numbers (its
second bias zero).  Both are synchronised after every step.  Prints per shape (T, B, In, H) the
median step time of each, the ratio specc / cuDNN (below 1: specc is faster), and whether the two
losses agree.  Shapes: (50, 32, 64, 256), (100, 16, 128, 128), (20, 64, 256, 512), (200, 1, 32, 64).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np

SHAPES = [(50, 32, 64, 256), (100, 16, 128, 128), (20, 64, 256, 512), (200, 1, 32, 64)]
TINY = [(3, 2, 4, 5)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=50, help="timed steps per implementation (default 50)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5; the first compiles)")
    ap.add_argument("--shapes", default=None, help="shapes by index into the four, e.g. 0,3")
    ap.add_argument("--tiny", action="store_true", help="numba-cuda's simulator and one tiny shape (no GPU needed)")
    ap.add_argument("--json", help="write the samples to this file")
    args = ap.parse_args(argv)
    if args.tiny:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        args.repeats, args.warmup = min(args.repeats, 2), min(args.warmup, 1)
    return args


def specc_step(T: int, B: int, D: int, H: int, cuda: Any, seed: int = 0):
    """A function running one specc training step on device arrays, and its loss on the host."""
    from rnn import spec_text

    import specc

    model = specc.compile(spec_text("lstm", D, H), target="cuda", dtype="float32")
    params = model.init_params(seed)
    x = np.random.default_rng(seed).standard_normal((T, B, D)).astype(np.float32)
    gp = model.grad_program()
    keep, kernel = model._kernel(("grad", False), gp.graph)  # the compiled value-and-grad graph
    host_args = [x, *(params[p.name] for p in model.program.params)]
    args = [cuda.to_device(host_args[i]) for i in keep]  # on the GPU once: the batch and the parameters
    dims = {"T": T, "B": B}

    def step() -> Any:
        outs = kernel(args, dims, device=True)
        cuda.synchronize()
        return outs

    loss = float(step()[0].copy_to_host()[0])
    return step, loss, params, x


def torch_step(T: int, B: int, D: int, H: int, params: dict, x: np.ndarray):
    """torch.nn.LSTM (cuDNN where there is a GPU) holding specc's parameters; one step and its loss."""
    import torch
    from rnn import stack, torch_nn

    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = torch_nn(torch, "lstm", stack("lstm", params), D, H).to(device)
    xt = torch.from_numpy(x).to(device)

    def step() -> float:
        net.zero_grad(set_to_none=True)
        h, _ = net(xt)
        loss = h.mean()
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    return step, float(step().item()), device


def timed(step: Any, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t0)
    return samples


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from specc.codegen.cuda_runtime import require_cuda
    from specc.errors import SpeccError

    try:
        cuda = require_cuda()
    except SpeccError as e:
        print(e.render(), file=sys.stderr)
        return 1
    shapes = TINY if args.tiny else [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    print(f"{'T, B, In, H':<22} {'specc ms':>10} {'cuDNN ms':>10} {'ratio':>7}  losses agree")
    results = []
    for T, B, D, H in shapes:
        step, loss, params, x = specc_step(T, B, D, H, cuda)
        ours = timed(step, args.warmup, args.repeats)
        row = {"shape": [T, B, D, H], "specc_s": ours, "specc_loss": loss}
        theirs, agree, where = None, "-", ""
        if have_torch:
            tstep, tloss, device = torch_step(T, B, D, H, params, x)
            theirs = timed(tstep, args.warmup, args.repeats)
            agree = "yes" if abs(tloss - loss) <= 1e-4 * max(1.0, abs(tloss)) else f"NO ({loss:.6g} vs {tloss:.6g})"
            where = "" if device == "cuda" else " (torch on CPU)"
            row |= {"torch_s": theirs, "torch_loss": tloss, "torch_device": device}
        ms = statistics.median(ours) * 1e3
        tms = statistics.median(theirs) * 1e3 if theirs else float("nan")
        ratio = ms / tms if theirs else float("nan")
        print(f"{(T, B, D, H)!s:<22} {ms:>10.3f} {tms:>10.3f} {ratio:>7.2f}  {agree}{where}")
        results.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"simulator": bool(args.tiny), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
