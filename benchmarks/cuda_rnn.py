"""Recurrent training steps on a GPU: specc's CUDA backend vs PyTorch, float32, TF32 off.

    python benchmarks/cuda_rnn.py [--cells lstm,gru,peephole] [--shapes 0,1] [--repeats 20] [--warmup 3]
                                  [--budget 10] [--json out.json]
    python benchmarks/cuda_rnn.py --tiny     # no GPU: numba-cuda's simulator, one tiny shape, a smoke test
    SPECC_CUDA_GRID_SCAN=1 python benchmarks/cuda_rnn.py ...   # the cooperative-grid persistent kernels

Issue 6's workloads: one step = forward + backward of loss = mean(h) over one recurrent layer (the
models of benchmarks/rnn.py), at (T, B, In, H) = (50, 32, 64, 256), (200, 1, 32, 64) and
(50, 256, 512, 1024), against

* ``lstm``: ``torch.nn.LSTM`` (cuDNN),
* ``gru``: ``torch.nn.GRU`` (cuDNN),
* ``peephole``: the peephole LSTM with a layer norm of specs/peephole_lstm.nn against the same cell
  written by hand in PyTorch (benchmarks/rnn.py's ``torch_cell_loss``); target: specc 5x faster.

The peers hold specc's parameters (:func:`rnn.stack`) and read the same input; PyTorch's TF32 is
off (``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``), so both
sides compute in float32.  Parameters and the batch are on the GPU before timing; specc's compiled
value-and-grad graph is called on device arrays and returns device arrays.  Every step is
synchronised.  Prints per cell and shape the median step of each side, the ratio specc / peer
(below 1: specc is faster), whether the losses agree and the largest gradient difference relative
to the largest gradient; ``--json`` writes the samples (rewritten after every row).  Exit status 1
when a loss or a gradient disagrees.

A budget bounds the time per implementation and shape (``--budget`` seconds; at least 3 timed
steps): specc's step is first timed at (T, B) = (1, min(B, 8)) and extrapolated linearly in T and
B; a shape whose estimate does not fit is reported as skipped with the estimate (the one-block
persistent kernel needs minutes per step at (50, 256, 512, 1024)).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np

SHAPES = [(50, 32, 64, 256), (200, 1, 32, 64), (50, 256, 512, 1024)]
TINY = [(3, 2, 4, 5)]
CELLS = ("lstm", "gru", "peephole")
PEER = {"lstm": "torch.nn.LSTM", "gru": "torch.nn.GRU", "peephole": "torch cell"}
TARGET = {"peephole": 0.2}  # issue 6: specc / peer at most this (5x faster)
PROBE_B = 8  # the estimate's probe: T = 1 and at most this many batch rows
MIN_SAMPLES = 3
LOSS_RTOL = 1e-4  # float32 means over up to 13 million numbers
GRAD_RTOL = 1e-3  # of the largest gradient entry


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default=",".join(CELLS), help="which cells, comma-separated (default all three)")
    ap.add_argument("--shapes", default=None, help="shapes by index into the three, e.g. 0,1")
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per implementation at most (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--budget", type=float, default=10.0,
                    help="seconds per implementation and shape (default 10; at least 3 timed steps)")
    ap.add_argument("--tiny", action="store_true", help="numba-cuda's simulator and one tiny shape (no GPU needed)")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args(argv)
    args.cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in args.cells if c not in CELLS]
    if bad:
        ap.error(f"unknown cell '{bad[0]}': choose from {', '.join(CELLS)}")
    try:
        args.shape_list = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES
    except (ValueError, IndexError):
        ap.error(f"--shapes takes indices 0 to {len(SHAPES) - 1}, comma-separated, e.g. 0,1")
    if args.tiny:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        args.shape_list = TINY
        args.repeats, args.warmup = 1, 0  # a simulated step takes seconds
    return args


@dataclass
class Side:
    """One implementation at one shape: its step, the loss and gradients (specc's names) of a step."""

    step: Callable[[], Any]
    loss: float
    grads: dict[str, np.ndarray]
    samples: list[float] = field(default_factory=list)
    skipped: str | None = None


# ---- specc --------------------------------------------------------------------------------------
def specc_side(cell: str, T: int, B: int, D: int, H: int, cuda: Any, probe: bool, budget: float):
    """specc's training step on device arrays; its parameters and input (for the peer); or a skip."""
    from rnn import spec_text

    import specc

    model = specc.compile(spec_text(cell, D, H), target="cuda", dtype="float32")
    params = model.init_params(0)
    x = np.random.default_rng(0).standard_normal((T, B, D)).astype(np.float32)
    gp = model.grad_program()
    keep, kernel = model._kernel(("grad", False), gp.graph)  # the compiled value-and-grad graph

    def make_step(xs: np.ndarray) -> Callable[[], Any]:
        host_args = [np.ascontiguousarray(xs), *(params[p.name] for p in model.program.params)]
        args = [cuda.to_device(host_args[i]) for i in keep]  # on the GPU once: the batch and the parameters
        dims = {"T": xs.shape[0], "B": xs.shape[1]}

        def step() -> Any:
            outs = kernel(args, dims, device=True)
            cuda.synchronize()
            return outs

        return step

    if probe:  # compile on a small probe, time it, extrapolate
        small = make_step(x[:1, :min(B, PROBE_B)])
        small()
        t0 = time.perf_counter()
        small()
        estimate = (time.perf_counter() - t0) * T * B / min(B, PROBE_B)
        if estimate * (1 + MIN_SAMPLES) > budget:
            return None, params, x, f"skipped: about {estimate:.3g} s per step (from T = 1, B = {min(B, PROBE_B)})"
    step = make_step(x)
    outs = step()
    grads = {k: g.copy_to_host() for k, g in zip(gp.wrt, outs[gp.n_forward:])}
    return Side(step, float(outs[0].copy_to_host().reshape(-1)[0]), grads), params, x, None


# ---- PyTorch ------------------------------------------------------------------------------------
def configure_torch() -> Any:
    """PyTorch with TF32 off (both sides compute in float32), or None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def torch_side(torch: Any, cell: str, params: dict, x: np.ndarray, H: int) -> tuple[Side, str]:
    """The peer of ``cell`` holding specc's parameters: one step, its loss and gradients; and where it ran."""
    import rnn

    device = "cuda" if torch.cuda.is_available() else "cpu"
    D = x.shape[2]
    xt = torch.from_numpy(x).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if cell == "peephole":
        P = {k: torch.from_numpy(v).to(device).requires_grad_(True) for k, v in rnn.stack(cell, params).items()}

        def step() -> Any:
            for p in P.values():
                p.grad = None
            loss = rnn.torch_cell_loss(torch, cell, P, xt)
            loss.backward()
            sync()
            return loss

        loss = float(step().item())
        grads = rnn.unstack(cell, {k: v.grad.cpu().numpy() for k, v in P.items()})
    else:
        net = rnn.torch_nn(torch, cell, rnn.stack(cell, params), D, H).to(device)

        def step() -> Any:
            net.zero_grad(set_to_none=True)
            loss = net(xt)[0].mean()
            loss.backward()
            sync()
            return loss

        loss = float(step().item())
        grads = rnn.unstack(cell, rnn.torch_nn_grads(cell, _host_copy(torch, net), H))
    return Side(step, loss, grads), device


def _host_copy(torch: Any, net: Any) -> Any:
    """The module with its parameters and their gradients on the host (torch_nn_grads reads .numpy())."""
    import copy

    host = copy.deepcopy(net).cpu()
    for p, q in zip(host.parameters(), net.parameters()):
        p.grad = q.grad.detach().cpu()
    return host


# ---- timing and comparing ------------------------------------------------------------------------
def timed(step: Callable[[], Any], warmup: int, repeats: int, budget: float) -> list[float]:
    """Up to ``repeats`` timed steps after ``warmup``, stopping once ``budget`` seconds are spent (at least 3)."""
    for _ in range(warmup):
        step()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < repeats and (len(samples) < MIN_SAMPLES or spent < budget):
        t0 = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t0)
        spent += samples[-1]
    return samples


def grad_error(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> float:
    """The largest difference over every gradient entry, relative to the largest entry."""
    scale = max(float(np.max(np.abs(g))) for g in theirs.values())
    err = max(float(np.max(np.abs(np.asarray(ours[k], np.float64).reshape(g.shape) - g))) for k, g in theirs.items())
    return err / max(scale, 1e-30)


def compare(cell: str, ours: Side, theirs: Side) -> dict[str, Any]:
    loss_ok = abs(ours.loss - theirs.loss) <= LOSS_RTOL * max(1.0, abs(theirs.loss))
    gerr = grad_error(ours.grads, theirs.grads)
    return {"losses_agree": loss_ok, "grad_error": gerr, "grads_agree": gerr <= GRAD_RTOL}


def describe_device(cuda: Any, torch: Any, simulated: bool) -> dict[str, Any]:
    info: dict[str, Any] = {"simulator": simulated, "grid_scan": os.environ.get("SPECC_CUDA_GRID_SCAN", "0"),
                            "python": platform.python_version(), "numpy": np.__version__}
    from importlib.metadata import version

    info["numba_cuda"] = version("numba-cuda")
    if not simulated:
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        info |= {"gpu": name, "sms": dev.MULTIPROCESSOR_COUNT, "cc": list(dev.compute_capability)}
    if torch is not None:
        info |= {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
                 "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                 "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    return info


def row_text(cell: str, shape, ours: Side | None, theirs: Side | None, check: dict, skipped: str | None,
             where: str, simulated: bool) -> str:
    ms = statistics.median(ours.samples) * 1e3 if ours and ours.samples else math.nan
    tms = statistics.median(theirs.samples) * 1e3 if theirs and theirs.samples else math.nan
    ratio = ms / tms if ours and theirs else math.nan
    target = TARGET.get(cell)
    verdict = "" if target is None or math.isnan(ratio) or simulated else (" PASS" if ratio <= target else " MISS")
    agree = "-" if not check else (f"{'yes' if check['losses_agree'] else 'NO'}/"
                                   f"{'yes' if check['grads_agree'] else 'NO'} ({check['grad_error']:.1e})")
    text = (f"{cell:<9} {str(shape):<22} {ms:>10.3f} {PEER[cell]:>14} {tms:>10.3f} {ratio:>7.2f}{verdict:<5}  "
            f"{agree}{where}")
    return text + (f"  specc {skipped}" if skipped else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from specc.backends.cuda.runtime import require_cuda
    from specc.errors import SpeccError

    try:
        cuda = require_cuda()
    except SpeccError as e:
        print(e.render(), file=sys.stderr)
        return 1
    torch = configure_torch()
    info = describe_device(cuda, torch, args.tiny)
    print(", ".join(f"{k} {v}" for k, v in info.items()))
    print(f"{'cell':<9} {'T, B, In, H':<22} {'specc ms':>10} {'peer':>14} {'peer ms':>10} {'ratio':>7}{'':<5}  "
          f"losses/grads agree (grad error)")
    results = []
    for cell in args.cells:
        for T, B, D, H in args.shape_list:
            ours, params, x, skipped = specc_side(cell, T, B, D, H, cuda, probe=not args.tiny, budget=args.budget)
            if ours is not None:
                ours.samples = timed(ours.step, args.warmup, args.repeats, args.budget)
            row: dict[str, Any] = {"cell": cell, "shape": [T, B, D, H], "peer": PEER[cell],
                                   "specc_s": ours.samples if ours else [], "specc_loss": ours.loss if ours else None,
                                   "specc_skipped": skipped}
            theirs, check, where = None, {}, " (no torch)"
            if torch is not None:
                theirs, device = torch_side(torch, cell, params, x, H)
                theirs.samples = timed(theirs.step, args.warmup, args.repeats, args.budget)
                where = "" if device == "cuda" else " (torch on CPU)"
                check = compare(cell, ours, theirs) if ours is not None else {}
                row |= {"peer_s": theirs.samples, "peer_loss": theirs.loss, "peer_device": device, **check}
            if ours is not None and theirs is not None:
                row["ratio"] = statistics.median(ours.samples) / statistics.median(theirs.samples)
            print(row_text(cell, (T, B, D, H), ours, theirs, check, skipped, where, args.tiny), flush=True)
            results.append(row)
            if args.json:  # after every row: a run stopped by a timeout keeps what it measured
                with open(args.json, "w") as f:
                    json.dump({"device": info, "results": results}, f, indent=1)
    failed = [r for r in results if r.get("losses_agree") is False or r.get("grads_agree") is False]
    if failed:
        print(f"{len(failed)} disagreement(s) between specc and its peer: see the table", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
