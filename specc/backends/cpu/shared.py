"""Kernels every generated CPU module shares, compiled once per machine (Numba's cache).

In: nothing from the IR; generated modules import these by name.
Out: ``@njit`` functions that a spec's kernels call, so that a new spec does not
compile them again: Numba loads them from its on-disk cache the first time a
module's kernel is compiled against them.

``matmul_nt`` is the product of a recurrence's step, ``h[t-1] @ W`` with a few rows and
a weight matrix that stays the same for every step: the recurrence transposes ``W``
once before its loop and the step multiplies row by row of ``W.T`` (dot products over
contiguous memory, 4 x 4 outputs at a time, vectorized by LLVM).  BLAS instead packs
``W`` again at every call; for ``[16, 256] @ [256, 1024]`` on one core that halves the
step's product time (benchmarks/gemm_step.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# matmul_nt uses its own kernel where it measured faster than OpenBLAS on one core
# (benchmarks/gemm_step.py): at least 4 rows, and a weight matrix with 256+ rows or 128K+ elements
NT_MIN_ROWS = 4
NT_MIN_K = 256
NT_MIN_WEIGHTS = 1 << 17


def nt_may_help(k: int | None, n: int | None) -> bool:
    """Whether ``matmul_nt`` may take its own path for a weight matrix ``[k, n]`` (None: a size known only
    at run time).  When it cannot, a recurrence calls ``np.dot`` directly: a call to ``matmul_nt`` makes
    Numba link its code into the caller and optimise it again (about 0.35 s of every such compile)."""
    if k is None or n is None:
        return True
    return k >= NT_MIN_K or k * n >= NT_MIN_WEIGHTS


@njit(cache=True, error_model="numpy", nogil=True)
def matmul_nt(a, b, bt, out):
    """``np.dot(a, b, out)``, given also ``bt`` = ``b.T`` as a C array (made once, outside a loop).

    Each output element is one dot product of a row of ``a`` and a row of ``bt`` in a fixed
    order, so a row's result does not depend on how many rows ``a`` has (the row blocks of a
    recurrence give the same bits on any number of threads).
    """
    m, k = a.shape
    n = b.shape[1]
    if m < NT_MIN_ROWS or k == 0 or (k < NT_MIN_K and k * n < NT_MIN_WEIGHTS):
        np.dot(a, b, out)
        return
    padded = np.zeros(((m + 3) // 4 * 4, k), a.dtype)  # contiguous, and whole tiles of 4 rows
    padded[:m] = a
    _nt_tiles(padded, bt, out, m, np.zeros(1, a.dtype)[0])


@njit(cache=True, error_model="numpy", nogil=True, fastmath={"reassoc", "contract"})
def _nt_tiles(a, bt, out, m, zero):
    """``out[:m] = a[:m] @ bt.T`` for ``a`` [4 * tiles, K]: 4 x 4 dot products at a time.

    ``reassoc`` lets LLVM vectorize each dot product over K (partial sums in one vector
    register per output, added up at the end): the reordering BLAS does too.
    """
    rows, kk = a.shape
    n = bt.shape[0]
    n4 = n - n % 4
    for j in range(0, n4, 4):  # 4 rows of bt stay in L1 while every tile of a passes
        for i in range(0, rows, 4):
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
            for k in range(kk):
                a0, a1, a2, a3 = a[i, k], a[i + 1, k], a[i + 2, k], a[i + 3, k]
                b0, b1, b2, b3 = bt[j, k], bt[j + 1, k], bt[j + 2, k], bt[j + 3, k]
                s00 += a0 * b0
                s01 += a0 * b1
                s02 += a0 * b2
                s03 += a0 * b3
                s10 += a1 * b0
                s11 += a1 * b1
                s12 += a1 * b2
                s13 += a1 * b3
                s20 += a2 * b0
                s21 += a2 * b1
                s22 += a2 * b2
                s23 += a2 * b3
                s30 += a3 * b0
                s31 += a3 * b1
                s32 += a3 * b2
                s33 += a3 * b3
            out[i, j], out[i, j + 1], out[i, j + 2], out[i, j + 3] = s00, s01, s02, s03
            if i + 1 < m:
                out[i + 1, j], out[i + 1, j + 1], out[i + 1, j + 2], out[i + 1, j + 3] = s10, s11, s12, s13
            if i + 2 < m:
                out[i + 2, j], out[i + 2, j + 1], out[i + 2, j + 2], out[i + 2, j + 3] = s20, s21, s22, s23
            if i + 3 < m:
                out[i + 3, j], out[i + 3, j + 1], out[i + 3, j + 2], out[i + 3, j + 3] = s30, s31, s32, s33
    for j in range(n4, n):  # the last n % 4 columns: 4 x 1 at a time
        for i in range(0, rows, 4):
            s0 = s1 = s2 = s3 = zero
            for k in range(kk):
                b0 = bt[j, k]
                s0 += a[i, k] * b0
                s1 += a[i + 1, k] * b0
                s2 += a[i + 2, k] * b0
                s3 += a[i + 3, k] * b0
            out[i, j] = s0
            if i + 1 < m:
                out[i + 1, j] = s1
            if i + 2 < m:
                out[i + 2, j] = s2
            if i + 3 < m:
                out[i + 3, j] = s3


@njit(cache=True, error_model="numpy", nogil=True)
def transpose_into(a, out):
    """``out[:] = a.T`` for 2-D ``a``, by 32 x 32 tiles (both arrays' lines stay in cache within a tile)."""
    n, m = a.shape
    for i0 in range(0, n, 32):
        for j0 in range(0, m, 32):
            for i in range(i0, min(i0 + 32, n)):
                for j in range(j0, min(j0 + 32, m)):
                    out[j, i] = a[i, j]


@njit(cache=True, error_model="numpy", nogil=True)
def adam_step(p, g, m, v, b1, omb1, b2, omb2, c1, c2, lr, eps):
    """One Adam step over flat arrays in one pass; returns (new p, new m, new v).

    The same float operations in the same order as :meth:`specc.training.optim.Optimizer._adam_step`'s
    NumPy expression (no fastmath, so no FMA contraction): the same bits, without NumPy's
    ten passes over memory and their temporaries.  Scalars have p's dtype: ``omb1`` = 1 - b1,
    ``omb2`` = 1 - b2, ``c1`` = 1 - b1^t, ``c2`` = 1 - b2^t.
    """
    p2, m2, v2 = np.empty_like(p), np.empty_like(p), np.empty_like(p)
    for i in range(p.size):
        gi = g[i]
        mi = b1 * m[i] + omb1 * gi
        vi = b2 * v[i] + omb2 * (gi * gi)
        m2[i] = mi
        v2[i] = vi
        p2[i] = p[i] - lr * (mi / c1) / (np.sqrt(vi / c2) + eps)
    return p2, m2, v2


__all__ = ["adam_step", "matmul_nt"]
