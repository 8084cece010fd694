"""Where a compiled training step spends its time: the median of each part of the generated module.

    python benchmarks/parts.py [--cell lstm] [--shape 50,32,64,256] [--threads 2] [--repeats 20]
    python benchmarks/parts.py --spec specs/mlp.nn --dim B=128 --repeats 50

A kernel whose entry is split (a recurrence running by blocks of rows, see docs/cpu.md) is plain
Python calling ``run_part0``, ``run_part1``, ... and the recurrences through
``specc.backends.cpu.runtime.run_row_blocks``.  This tool replaces each of those names in the loaded module by a
timer around the original, runs the forward-and-backward step ``--repeats`` times, and prints the
median milliseconds per part (a recurrence is timed around all its row blocks, so with two threads
it is the wall time of the slower block), their sum, and the whole step timed from outside.
The large products between parts (``matmul_rows``, ``matmul_t_rows``) are timed as one line each
(all their calls in a step added up); "the rest" is the step less those: the entry's own NumPy
statements (allocations, copies: see specc/backends/cpu/host.py), the calls, and the API's checks.  A kernel that is one njit function has only one part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import set_threads  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="lstm", help="a cell of benchmarks/rnn.py (lstm, gru, peephole)")
    ap.add_argument("--shape", default="50,32,64,256", help="T,B,In,H for --cell (default 50,32,64,256)")
    ap.add_argument("--spec", help="a .nn file instead of --cell (its inputs are drawn from N(0, 1))")
    ap.add_argument("--dim", action="append", default=[], help="NAME=SIZE for --spec, repeatable")
    ap.add_argument("--threads", type=int, default=2, help="kernel threads (default 2)")
    ap.add_argument("--repeats", type=int, default=20, help="timed steps (default 20)")
    return ap.parse_args(argv)


def _workload(args: argparse.Namespace) -> tuple[Any, dict, dict]:
    import numpy as np

    import specc
    from specc.ir.dims import concrete

    if args.spec:
        model = specc.compile(args.spec, target="cpu", dtype="float32")
        dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
        rng = np.random.default_rng(0)
        inputs = {}
        for v in model.program.graph.inputs:
            if v.name in model.param_shapes:
                continue
            shape = concrete(v.shape, dims)
            if v.dtype.startswith("i"):
                inputs[v.name] = rng.integers(0, 2, shape).astype(np.int64)
            else:
                inputs[v.name] = rng.standard_normal(shape).astype(np.float32)
        return model, inputs, dims
    from rnn import _input, spec_text

    T, B, D, H = (int(s) for s in args.shape.split(","))
    model = specc.compile(spec_text(args.cell, D, H), target="cpu", dtype="float32")
    return model, {"x": _input(T, B, D)}, {"T": T, "B": B}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    from specc.backends.cpu.runtime import tune_allocator

    # as the specc command does (the library leaves the host's allocator alone unless asked): without it
    # the LSTM step at 50x32x64x256 took 37 ms instead of 22 (page faults; docs/cpu.md, "Memory")
    tune_allocator(force=os.environ.get("SPECC_MALLOC_TUNING") != "0")
    model, inputs, _ = _workload(args)
    params = model.init_params(0)
    model.value_and_grad(params, **inputs)  # compile and warm up
    compiled = model.kernel("grad")
    mod = compiled._module
    times: dict[str, list[float]] = defaultdict(lambda: [0.0] * args.repeats)  # per name, per step: seconds
    step = 0
    names = [k for k in compiled.module.kernels if k != compiled.module.entry]

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            out = fn(*a, **kw)
            times[name][step] += time.perf_counter() - t
            return out
        return wrapper

    originals = {k: getattr(mod, k) for k in names if k.startswith("run_part")}
    originals |= {k: getattr(mod, k) for k in ("matmul_rows", "matmul_t_rows") if hasattr(mod, k)}
    blocks = getattr(mod, "run_row_blocks", None)
    for k, fn in originals.items():
        setattr(mod, k, timed(k, fn))
    if blocks is not None:
        setattr(mod, "run_row_blocks", lambda fn, a, *rest: timed(fn.__name__ if hasattr(fn, "__name__")
                                                                    else str(fn), blocks)(fn, a, *rest))
    whole = []
    try:
        for step in range(args.repeats):
            t = time.perf_counter()
            model.value_and_grad(params, **inputs)
            whole.append(time.perf_counter() - t)
    finally:
        for k, fn in originals.items():
            setattr(mod, k, fn)
        if blocks is not None:
            setattr(mod, "run_row_blocks", blocks)
    print(f"{model.name}: {args.spec or args.cell + ' ' + args.shape}, {args.threads} threads, "
          f"median of {args.repeats} (ms)")
    total = 0.0
    for name, ts in times.items():
        med = statistics.median(ts) * 1e3
        total += med
        print(f"  {name:28s} {med:8.2f}")
    print(f"  {'sum of parts':28s} {total:8.2f}")
    step_ms = statistics.median(whole) * 1e3
    print(f"  {'the rest (NumPy glue, calls)':28s} {step_ms - total:8.2f}")
    print(f"  {'whole step (value_and_grad)':28s} {step_ms:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
