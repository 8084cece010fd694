"""The CPU backend's run-time helpers: the thread pool that generated kernels call, and the allocator.

In: calls from generated CPU modules (``from specc.backends.cpu.runtime import ...``) and from
:class:`specc.runtime.CompiledGraph`.  Out: work split over threads; glibc tuned once per process.

Threads: one owner of the cores.  A kernel splits its work itself, never
through BLAS: a recurrence whose steps treat batch rows independently runs
as one block of rows per thread (:func:`run_row_blocks`; every step of the
block on one thread, no synchronisation between steps, see
:mod:`specc.backends.cpu.rows`), a large product outside loops as blocks of
rows (:func:`matmul_rows`, :func:`matmul_t_rows`), both on one pool of
Python threads (the kernels are ``nogil``, and NumPy releases the GIL in
BLAS); specc uses no OpenMP or ``prange``, whose threads spin after each
parallel region and, with as many cores as threads, take a core from the
next recurrence (in a process that had imported PyTorch, which shares
libgomp, the LSTM training step ran 1.3x slower that way).
The BLAS that ``np.dot`` calls is held to one thread while a kernel runs
(threadpoolctl, about 20 microseconds a call, restored after), so OpenBLAS
threads never compete with the kernel's own.  The per-step products of a
recurrence are small (32 x 256 x 1024 for the benchmark LSTM), where BLAS
threads only synchronise: on this project's two-core machine, busy with
other work, the LSTM forward kernel (T=8, B=64) took 200 ms with two
OpenBLAS threads and 1-3 ms with one.  The number of threads is
``$SPECC_NUM_THREADS``, else the CPUs this process may run on.  Kernel
calls are serialised by a lock: each one already uses every thread it may.

Memory: a kernel allocates its temporaries and results afresh at every call
(tens of MB for a recurrence's training step), and glibc's malloc gives
large freed blocks back to the system at once, so the next call takes them
again as fresh pages: about 8,000 page faults per LSTM training step at
T=50, B=32, H=256, 30% of its time on one thread.  :func:`tune_allocator` asks
glibc (``mallopt``) to serve blocks up to 64 MB from its heap and to keep up to
256 MB of freed heap for reuse.  That changes the whole process's allocator, so
it is done only when asked: the ``specc`` command asks (``SPECC_MALLOC_TUNING=0``
stops it); a program that imports specc keeps its allocator unless it calls
``tune_allocator(force=True)`` or sets ``SPECC_MALLOC_TUNING=1``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any, Callable

import numpy as np

from ..common import slice_start as host_slice_start  # noqa: F401  (the generated entries' index rules)
from ..common import wrap_index as host_index  # noqa: F401

# ---- threads -----------------------------------------------------------------------------------
MIN_BLOCK_ROWS = 4  # a block of fewer rows makes per-step matrix-vector products: not worth a thread
_POOL: Any = None  # the threads that run row blocks, and how many it has
_POOL_SIZE = 0


def run_row_blocks(fn: Callable[..., None], args: tuple, rows: int, threads: int) -> None:
    """``fn(*args, lo, hi)`` for blocks of the ``rows`` rows, one block per thread, and wait.

    Called by a generated module's Python entry for a recurrence whose rows are
    independent; ``fn`` is a ``nogil`` kernel, so the blocks run in parallel.
    """
    _in_blocks(lambda lo, hi: fn(*args, lo, hi), rows, max(1, min(threads, rows // MIN_BLOCK_ROWS)))


def _in_blocks(fn: Callable[[int, int], Any], n: int, blocks: int) -> list[Any]:
    """``fn(lo, hi)`` for ``blocks`` blocks of ``range(n)``, the first on this thread, the others on the pool."""
    global _POOL, _POOL_SIZE
    if blocks <= 1:
        return [fn(0, n)]
    if _POOL_SIZE < blocks:
        from concurrent.futures import ThreadPoolExecutor

        _POOL_SIZE = max(blocks, kernel_threads())
        _POOL = ThreadPoolExecutor(max_workers=_POOL_SIZE, thread_name_prefix="specc")
    futures = [_POOL.submit(fn, k * n // blocks, (k + 1) * n // blocks) for k in range(1, blocks)]
    first = fn(0, n // blocks)
    return [first, *(f.result() for f in futures)]


# a product below this many multiply-adds runs on one thread: handing a block to another Python
# thread costs ~20-50 microseconds, about what one core does in 2^22 multiply-adds
MIN_PARALLEL_MACS = 1 << 22
MIN_PRODUCT_ROWS = 16  # thinner blocks make BLAS run its small-matrix paths


def matmul_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray, threads: int) -> None:
    """``np.dot(a, b, out)`` on up to ``threads`` threads, by blocks of rows of ``a``.

    Called by a generated module's Python entry for a product outside any loop (an input
    projection of all steps, a dense layer).  NumPy releases the GIL inside BLAS (held to one
    thread), so the blocks run in parallel on the same pool as the row blocks of recurrences:
    specc's kernels use no other threads (no OpenMP, whose spinning threads would compete).
    """
    m, k = a.shape
    n = b.shape[1] if b.ndim == 2 else 1
    blocks = min(threads, m // MIN_PRODUCT_ROWS)
    if blocks < 2 or m * k * n < MIN_PARALLEL_MACS:
        np.dot(a, b, out=out)
    else:
        _in_blocks(lambda lo, hi: np.dot(a[lo:hi], b, out=out[lo:hi]), m, blocks)


def matmul_t_rows(at: np.ndarray, b: np.ndarray, out: np.ndarray, threads: int) -> None:
    """``np.dot(at.T, b, out)`` (a weight gradient ``z.T @ g``) on up to ``threads`` threads, read from ``at``
    itself: by blocks of rows of the result, ``out[lo:hi] = at[:, lo:hi].T @ b`` (BLAS reads the block of
    columns of ``at`` transposed, in place).  Each element is one whole dot product over the inner axis, so
    the result does not depend on the number of threads, and there are no partial products to add (the split
    along the inner axis that this replaces took 8% longer on [1280, 768].T @ [1280, 2048], two threads)."""
    k, m = at.shape
    n = b.shape[1]
    blocks = min(threads, m // MIN_PRODUCT_ROWS)
    if blocks < 2 or m * k * n < MIN_PARALLEL_MACS:
        np.dot(at.T, b, out=out)
        return
    _in_blocks(lambda lo, hi: np.matmul(at[:, lo:hi].T, b, out=out[lo:hi]), m, blocks)


def transposed(a: np.ndarray) -> np.ndarray:
    """``a.T`` (2-D) as a new C array, by 32 x 32 tiles (``specc.backends.cpu.shared.transpose_into``): the
    recurrences' weight matrix for ``matmul_nt``, made once per call; NumPy's ``ascontiguousarray(a.T)``
    took 3.5x as long for [768, 2048] (strided reads)."""
    from .shared import transpose_into

    out = np.empty((a.shape[1], a.shape[0]), a.dtype)
    transpose_into(a, out)
    return out


def kernel_threads() -> int:
    """``$SPECC_NUM_THREADS``, else the CPUs this process may run on."""
    env = os.environ.get("SPECC_NUM_THREADS")
    n = int(env) if env else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


_CONTROLLER: Any = None


def _blas_limit() -> Any:
    global _CONTROLLER
    if _CONTROLLER is None:
        import scipy.linalg.cython_blas  # noqa: F401  (Numba's np.dot calls this BLAS: load it first)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")



# ---- memory ----------------------------------------------------------------------------------
MMAP_THRESHOLD = 64 << 20  # blocks up to this size come from the heap, not from their own mmap
TRIM_THRESHOLD = 256 << 20  # freed heap kept for reuse before any goes back to the system
_ALLOCATOR: bool | None = None  # None: not tuned yet; else whether glibc took the settings


def tune_allocator(force: bool = False) -> bool:
    """Keep the memory of freed large blocks for the next kernel call (glibc only; once per process).

    Only when asked: ``force=True`` or ``$SPECC_MALLOC_TUNING=1`` (the runtime calls this before
    every kernel call without ``force``: a host application's allocator is left alone).
    Sets glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (which also stops their dynamic
    adjustment).  Returns whether the allocator is tuned: False when not asked, on other C libraries.
    """
    global _ALLOCATOR
    if not (force or os.environ.get("SPECC_MALLOC_TUNING") == "1"):
        return bool(_ALLOCATOR)
    if _ALLOCATOR is not None:
        return _ALLOCATOR
    _ALLOCATOR = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
    _ALLOCATOR = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _ALLOCATOR
