"""The CUDA code generator: an IR graph -> Python source for numba-cuda's ``@cuda.jit``.

In: any checked Graph (random draws are lifted to inputs first, see
:mod:`specc.backends.lift`) and a module name; the same optimised IR the CPU
generator reads.
Out: a :class:`~specc.backends.GeneratedModule` whose source defines CUDA
kernels and one host entry ``run(<inputs>, <draws>, <dims>)`` that takes
device arrays, launches the kernels in order and returns a tuple of device
arrays (the runtime, :mod:`specc.backends.cuda.runtime`, moves data in and out).

Generating the source needs neither numba-cuda nor a GPU; loading it does.

What a reader of the generated source can rely on:

* every value is a C-contiguous device array named as in the CPU source
  (``h_W_f``, ``c_t_1``, ``v3``); a scalar is an array of shape ``(1,)``
  (read as ``x[0]``); literals and views (``getitem``/``transpose`` read in
  place) are as on the CPU;
* a top-level equation (or ``fused`` group) is one or a few kernels, each a
  grid-stride loop over the elements of its output (``for flat in
  range(tid, N, nthreads)``, the multi-index computed from ``flat``): the
  work of one output element (a dot product, a window, a row of a softmax)
  is serial inside its thread; each kernel is headed by its ``.nn`` line and
  launched from ``run`` with ``grid_for(N)`` blocks of ``THREADS``;
* a 2-D (or flattened) ``matmul`` outside a recurrence is the shared-memory
  tiled kernel ``gemm_<dtype>`` (TILE x TILE threads per output tile);
* a ``scan`` is ONE persistent kernel: a single block of ``SCAN_THREADS``
  loops over the time steps inside the kernel; each body equation is a
  block-strided loop over its elements (``for flat in range(tid, N,
  nthreads)``) followed by ``cuda.syncthreads()``; the body's temporaries are
  scratch arrays allocated once by ``run`` and reused every step; each
  state's history ``[T, ...]`` is written in place at row ``t``; the
  recurrent weights are read from global memory (L1/L2-cached).  The
  backward of a scan is a reversed scan, so BPTT is one persistent kernel
  too.  Nested recurrences are loops inside the same kernel.  With
  ``grid_scan`` (``$SPECC_CUDA_GRID_SCAN=1``) the persistent kernel is a
  cooperative grid of one block per SM instead, grid-strided loops and
  ``grid.sync()`` in place of the barrier (checked in the simulator, which
  runs one-block grids, and compiled to PTX; not yet run on a GPU).
* the entry allocates only what it returns (``cuda.device_array``); every
  temporary comes from ``scratch(slot, shape, dtype)``, device memory kept
  in the module for the next call (one call at a time per module: the
  runtime holds a lock);
* float reductions accumulate in float64 as on the CPU; ``gemm`` accumulates
  in the array's dtype, like BLAS.
* kernels never raise: an out-of-range class id or index is not detected on
  the device (the API checks class ids before a call).

The lowering rules, one per op, are in :mod:`specc.backends.cuda.rules`.
"""

from __future__ import annotations

import os
from typing import Mapping

from ...ir.core import Graph
from ..base import GeneratedModule, LoweringRule
from ..emitter import graph_dims
from ..lift import lift_random
from ..lines import Lines
from ..text import escape, sanitize
from .emitter import ENTRY, TARGET, CudaEmitter

GRID_PRELUDE = """
# Persistent kernels run as a cooperative grid of one block per SM, a grid sync between dependent steps
# (the simulator runs a one-block grid only).
SCAN_BLOCKS = 1 if SIMULATED else cuda.get_current_device().MULTIPROCESSOR_COUNT
"""
BLOCK_PRELUDE = """
SCAN_BLOCKS = 1  # persistent kernels run as one block (cuda.syncthreads between dependent steps)
"""

PRELUDE = '''\
import math

import numba
import numpy as np
from numba import cuda

# numba-cuda's simulator runs every GPU thread as a Python thread: small blocks there.
SIMULATED = bool(numba.config.ENABLE_CUDASIM)
THREADS = 32 if SIMULATED else 256  # threads per block of a grid-stride kernel
SCAN_THREADS = 32 if SIMULATED else 1024  # threads per block of a recurrence's persistent kernel
TILE = 4 if SIMULATED else 16  # gemm: TILE x TILE outputs per block, tiles staged in shared memory
MAX_BLOCKS = 4 if SIMULATED else 65535


# A persistent kernel's one block must fit on an SM whatever the kernel's size: its launch bounds make
# the compiler keep to 65536 / SCAN_THREADS registers per thread (the simulator takes no such option).
persistent = cuda.jit(cache=True) if SIMULATED else cuda.jit(cache=True, launch_bounds=SCAN_THREADS)


def cdiv(a, b):
    return (a + b - 1) // b


_SCRATCH = {}


def scratch(slot, shape, dtype):
    """The device array of a temporary, kept for the next call with the same shape: kernels run in order
    on one stream, so the next call's kernels touch it only after this call's are done."""
    key = (slot, shape)
    if key not in _SCRATCH:
        _SCRATCH[key] = cuda.device_array(shape, dtype)
    return _SCRATCH[key]


def grid_for(n):
    """Blocks for a grid-stride loop over n elements."""
    return max(1, min(cdiv(n, THREADS), MAX_BLOCKS))


def gemm_grid(m, n):
    """Blocks for gemm: one per TILE x TILE tile of the m x n result, at most MAX_BLOCKS (they stride)."""
    return max(1, min(cdiv(m, TILE) * cdiv(n, TILE), MAX_BLOCKS))
'''


def escaping(graph: Graph) -> set[int]:
    """The graph's outputs and the arrays they are reshaped views of (top level: scan bodies never escape)."""
    out = {v.uid for v in graph.outputs}
    for eqn in reversed(graph.eqns):
        if eqn.op == "reshape" and eqn.outputs[0].uid in out:
            out.add(eqn.inputs[0].uid)
    return out


def grid_scan_requested() -> bool:
    """``$SPECC_CUDA_GRID_SCAN=1``: persistent kernels as cooperative grids (not yet measured on a GPU)."""
    return os.environ.get("SPECC_CUDA_GRID_SCAN", "0") not in ("", "0")


class CudaGenerator:
    """Generates the numba-cuda source for a graph (see the module docstring for its shape).

    ``grid_scan``: a recurrence's persistent kernel runs as a cooperative grid of one block per SM,
    with ``grid.sync()`` between dependent steps, instead of one block with ``cuda.syncthreads()``
    (default: ``$SPECC_CUDA_GRID_SCAN``, else one block).
    """

    target = TARGET

    def __init__(self, lowerings: Mapping[str, LoweringRule], grid_scan: bool | None = None) -> None:
        self.lowerings = lowerings
        self.grid_scan = grid_scan_requested() if grid_scan is None else grid_scan

    def generate(self, graph: Graph, name: str) -> GeneratedModule:
        lifted, draws = lift_random(graph)
        e = CudaEmitter(self.lowerings, self.grid_scan)
        dims = graph_dims(lifted)
        for s in dims:
            e.dim_names[s] = e.names.fresh(s)
        e.name_values(lifted)
        args = [e.define(v) for v in lifted.inputs]
        dim_args = [e.dim_names[s] for s in dims]
        e.host_args = args + dim_args
        e.escaping = escaping(lifted)
        e.emit_graph(lifted)
        results = [e.name(v) for v in lifted.outputs]

        src = Lines()
        src(f'"""{escape(name, quoted=True)}: generated by specc for CUDA (numba-cuda).  Regenerated from the IR; do not edit.')
        src()
        src(f"Entry: {ENTRY}({', '.join(args + dim_args)}) -> ({', '.join(results)})")
        src("Device arrays in and out; a scalar is an array of shape (1,).")
        src()
        for a, v in zip(args, lifted.inputs):
            src(f"  {a}: {v.type}")
        for s in dims:
            src(f"  {e.dim_names[s]}: the size of dim {escape(s, quoted=True)}")
        src('"""')
        src()
        src.extend(PRELUDE.rstrip("\n").splitlines())
        src.extend((GRID_PRELUDE if self.grid_scan else BLOCK_PRELUDE).rstrip("\n").splitlines())
        for helper_source in e.helpers.values():
            src()
            src()
            src.extend(helper_source.rstrip("\n").splitlines())
        for kernel_source in e.kernels:
            src()
            src()
            src.extend(kernel_source.rstrip("\n").splitlines())
        src()
        src()
        src(f"def {ENTRY}({', '.join(args + dim_args)}):")
        e.host.blank()
        e.host(f"return ({', '.join(results)}{',' if len(results) == 1 else ''})")
        text = src.render() + e.host.render()
        return GeneratedModule(
            target=TARGET,
            name=sanitize(name),
            source=text,
            entry=ENTRY,
            inputs=tuple(args[:len(graph.inputs)]),
            draws=tuple(draws),
            dims=tuple(dims),
            outputs=tuple(results),
        )


__all__ = ["CudaGenerator", "escaping", "grid_scan_requested"]
