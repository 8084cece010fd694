"""A recurrence step's product on one core: OpenBLAS (np.dot from njit) vs specc's matmul_nt.

    python benchmarks/gemm_step.py [--dtype float32] [--shapes 16x256x1024,32x256x1024]

Inside a recurrence, ``h[t-1] @ W`` is a product with few rows and the same ``W`` at every step.
OpenBLAS packs ``W`` again at every call; ``specc.backends.cpu.shared.matmul_nt`` takes ``W.T``
made once before the loop and computes 4 x 4 dot products at a time.  Prints per M x K x N the
median time of each over calls in a loop (BLAS held to one thread, as specc's kernels hold it),
GF/s and the ratio matmul_nt / BLAS; matmul_nt falls back to BLAS below its size thresholds, so
those rows show ~1.0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before NumPy loads OpenBLAS

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from specc.backends.cpu.shared import matmul_nt  # noqa: E402

DEFAULT = ("16x256x1024,32x256x1024,16x1024x256,8x512x2048,16x256x768,16x128x1024,"
           "8x128x512,4x256x1024,1x256x1024")


@njit(nogil=True)
def _blas(a, b, bt, out, reps):
    for _ in range(reps):
        np.dot(a, b, out)


@njit(nogil=True)
def _nt(a, b, bt, out, reps):
    for _ in range(reps):
        matmul_nt(a, b, bt, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--shapes", default=DEFAULT, help="MxKxN,... (default: the recurrences of the suite)")
    ap.add_argument("--samples", type=int, default=7, help="timed samples per shape (default 7)")
    args = ap.parse_args(argv)
    dt = np.dtype(args.dtype)
    print(f"{'M x K x N':>16} {'BLAS us':>9} {'GF/s':>6} {'nt us':>9} {'GF/s':>6} {'nt/BLAS':>8}")
    for text in args.shapes.split(","):
        m, k, n = (int(s) for s in text.split("x"))
        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k)).astype(dt)
        b = rng.standard_normal((k, n)).astype(dt)
        bt = np.ascontiguousarray(b.T)
        out = np.empty((m, n), dt)
        reps = max(1, int(5e7 / (m * k * n)))
        med = {}
        for name, fn in (("blas", _blas), ("nt", _nt)):
            fn(a, b, bt, out, 1)
            samples = []
            for _ in range(args.samples):
                t = time.perf_counter()
                fn(a, b, bt, out, reps)
                samples.append((time.perf_counter() - t) / reps)
            med[name] = statistics.median(samples)
        flop = 2 * m * k * n
        print(f"{text:>16} {med['blas'] * 1e6:9.1f} {flop / med['blas'] / 1e9:6.1f} {med['nt'] * 1e6:9.1f} "
              f"{flop / med['nt'] / 1e9:6.1f} {med['nt'] / med['blas']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
