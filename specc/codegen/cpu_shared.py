"""Kernels every generated CPU module shares, compiled once per machine (Numba's cache).

In: nothing from the IR; generated modules import these by name.
Out: ``@njit`` functions that a spec's kernels call, so that a new spec does not
compile them again: Numba loads them from its on-disk cache the first time a
module's kernel is compiled against them.

``matmul_blocks`` is a product ``out = a @ b`` of 2-D C arrays split by rows of
``a`` across threads (a ``prange``; each block calls BLAS on one thread).  Its
parallel wrapper is costly to compile (a few seconds), which is why it lives here
and not in each generated module.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# below this many multiply-adds a product runs on one thread: a parallel launch costs
# ~10-20 microseconds, about what one core does in 2^21 multiply-adds
MIN_PARALLEL_MACS = 1 << 21
MIN_BLOCK_ROWS = 16  # thinner blocks make BLAS run its small-matrix paths

_PRANGE = {"prange": True, "numpy": False, "setitem": False, "reduction": False, "comprehension": False,
           "stencil": False, "fusion": False, "inplace_binop": False}


@njit(cache=True, error_model="numpy", parallel=_PRANGE)
def _matmul_rows(a, b, out, blocks):
    m = a.shape[0]
    for k in prange(blocks):
        lo = k * m // blocks
        hi = (k + 1) * m // blocks
        np.dot(a[lo:hi], b, out[lo:hi])


@njit(cache=True, error_model="numpy")
def matmul_blocks(a, b, out, threads):
    """``np.dot(a, b, out)`` on up to ``threads`` threads, by blocks of rows of ``a``."""
    m, k = a.shape
    blocks = min(threads, m // MIN_BLOCK_ROWS)
    if blocks < 2 or m * k * b.shape[1] < MIN_PARALLEL_MACS:
        np.dot(a, b, out)
    else:
        _matmul_rows(a, b, out, blocks)


@njit(cache=True, error_model="numpy", nogil=True)
def adam_step(p, g, m, v, b1, omb1, b2, omb2, c1, c2, lr, eps):
    """One Adam step over flat arrays in one pass; returns (new p, new m, new v).

    The same float operations in the same order as :meth:`specc.optim.Optimizer._adam_step`'s
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


__all__ = ["MIN_PARALLEL_MACS", "adam_step", "matmul_blocks"]
