"""Large products outside a recurrence: specc's row split (BLAS on one thread per block) vs one BLAS call
on all threads, and which BLAS runs.

    python benchmarks/gemm_threads.py [--threads 2] [--shapes 1600x64x1024,...]

specc's kernels hold BLAS to one thread and split a large product by blocks of rows over their own
threads (``specc.backends.cpu.runtime.matmul_rows``; a weight gradient ``z.T @ g`` by blocks of the inner
axis, ``matmul_t_rows``).  This prints, per M x K x N (the default shapes are the suite's input
projections, weight gradients and MLP layers, float32), the median time of: the row split on
``--threads`` threads, one ``np.dot`` with BLAS on one thread, and one ``np.dot`` with BLAS on
``--threads`` threads; GF/s of each; and the BLAS threadpoolctl finds (its library and architecture).
``t`` after a shape (``1600x64x1024t``) times ``a.T @ b`` read in place, as a weight gradient is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DEFAULT = ("1600x64x1024,1600x256x1024t,1600x1024x256,1280x256x2048,1280x512x2048t,1280x2048x512,"
           "1024x784x256,1024x256x256,784x1024x256t,128x784x256")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default=DEFAULT)
    ap.add_argument("--samples", type=int, default=15)
    args = ap.parse_args(argv)
    from harness import set_threads

    set_threads(args.threads)
    import numpy as np
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot calls: loaded as specc loads it)
    from threadpoolctl import ThreadpoolController

    from specc.backends.cpu.runtime import matmul_rows, matmul_t_rows

    ctl = ThreadpoolController()
    for info in ctl.info():
        if info.get("user_api") == "blas":
            print(f"BLAS: {info.get('internal_api')} {info.get('version')} ({info.get('architecture')}), "
                  f"{os.path.basename(info.get('filepath', ''))}")
    print(f"{'M x K x N':>16} {'split ms':>9} {'GF/s':>6} {'1-thr ms':>9} {'GF/s':>6} "
          f"{f'{args.threads}-thr BLAS':>12} {'GF/s':>6} {'split/BLAS':>10}")

    def med(fn) -> float:
        fn()
        ts = []
        for _ in range(args.samples):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    for text in args.shapes.split(","):
        transposed = text.endswith("t")
        m, k, n = (int(s) for s in text.rstrip("t").split("x"))
        rng = np.random.default_rng(0)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        if transposed:  # out = a.T @ b with a [K, M] stored (a weight gradient reads z in place)
            a = rng.standard_normal((k, m)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            split = lambda: matmul_t_rows(a, b, out, args.threads)  # noqa: E731
            blas = lambda: np.dot(a.T, b, out=out)  # noqa: E731
        else:
            a = rng.standard_normal((m, k)).astype(np.float32)
            split = lambda: matmul_rows(a, b, out, args.threads)  # noqa: E731
            blas = lambda: np.dot(a, b, out=out)  # noqa: E731
        with ctl.limit(limits=1, user_api="blas"):
            t_split, t_one = med(split), med(blas)
        with ctl.limit(limits=args.threads, user_api="blas"):
            t_all = med(blas)
        gf = 2 * m * k * n / 1e9
        print(f"{text:>16} {t_split * 1e3:9.3f} {gf / t_split:6.1f} {t_one * 1e3:9.3f} {gf / t_one:6.1f} "
              f"{t_all * 1e3:12.3f} {gf / t_all:6.1f} {t_split / t_all:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
