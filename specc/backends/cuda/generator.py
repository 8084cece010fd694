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
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ...ir.dims import Shape
from ...ir.core import Eqn, Graph, Value
from .. import GENERATORS, GeneratedModule
from ..cpu.generator import Emitter, graph_dims, sanitize
from ..lift import lift_random
from ..lines import Lines

TARGET = "cuda"
ENTRY = "run"
JIT = "@cuda.jit(cache=True)"
PERSISTENT_JIT = "@persistent"  # cuda.jit with launch bounds, defined in the module's prelude
DEVICE_JIT = "@cuda.jit(device=True, cache=True)"

# Names the generated code uses for itself (the CPU emitter reserves the rest).
CUDA_RESERVED = {
    "cuda", "math", "numba", "grid", "tid", "nthreads", "flat", "THREADS", "SCAN_THREADS", "TILE", "MAX_BLOCKS",
    "SIMULATED", "SCAN_BLOCKS", "persistent", "scratch", "_SCRATCH", "grid_for", "gemm_grid", "cdiv",
}

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


@dataclass
class Kernel:
    """A kernel being written: its name, the comment over it, its body, and the element counts it loops over."""

    name: str
    head: list[str]
    body: Lines
    persistent: bool
    work: list[str] = field(default_factory=list)


class CudaEmitter(Emitter):
    """The CPU emitter's names, bindings, dims and views, with code split between host and kernels.

    ``self.lines`` is where code goes now: the host entry's body (``self.host``) or the body of the
    kernel being written (``self.kernel``).  A rule opens a kernel with :meth:`phase` (a grid-stride
    kernel at top level; inside a recurrence's persistent kernel, a block-strided loop and a barrier)
    and loops over output elements with :meth:`parallel`.
    """

    def __init__(self, grid_scan: bool = False) -> None:
        super().__init__()
        self.grid_scan = grid_scan  # persistent kernels as cooperative grids (else one block)
        self.names.used |= CUDA_RESERVED
        from .rules import DEVICE_HELPERS, HOST_HELPERS

        self.names.used |= {f"{h}_{dt}" for h in DEVICE_HELPERS for dt in ("f32", "f64", "i32")}
        self.names.used |= set(DEVICE_HELPERS) | set(HOST_HELPERS) | {"gemm_f32", "gemm_f64"}
        self.host = self.lines
        self.host_args: list[str] = []
        self.kernel: Kernel | None = None
        self.kernels: list[str] = []  # sources, in launch order
        self._eqn: Eqn | None = None
        self._n_kernels = 0
        self.escaping: set[int] = set()  # values the entry returns, or that a returned reshape views
        self._slots = 0

    # -- storage ----------------------------------------------------------------------------------
    @staticmethod
    def at(array: str, idx: Sequence[str]) -> str:
        return f"{array}[{', '.join(idx)}]" if idx else f"{array}[0]"

    def dev_shape(self, shape: Shape) -> str:
        """The device array's shape: a scalar is stored as one element."""
        return self.shape(shape) if shape else "(1,)"

    def alloc(self, v: Value, fill: float | None = None) -> str:
        """Define ``v`` as a device array allocated by the host (or its destination row, inside a scan)."""
        name = self.define(v)
        row = self.dest.pop(v.uid, None)
        if row is not None:
            self.lines(f"{name} = {row}")
        elif v.uid in self.escaping:  # returned to the caller: a new array every call
            self.host(f"{name} = cuda.device_array({self.dev_shape(v.shape)}, {self.np_dtype(v.dtype)})")
        else:  # a temporary: the same device memory every call (no allocation per step)
            self.host(f"{name} = scratch({self._slots}, {self.dev_shape(v.shape)}, {self.np_dtype(v.dtype)})")
            self._slots += 1
        if fill is not None:
            with self.phase(f"fill_{name}"), self.parallel(v.shape) as idx:
                self.lines(f"{self.at(name, idx)} = {self.lit(fill, v.dtype)}")
        return name

    def row(self, array: str, t: str, rank: int) -> str:
        """Row ``t`` of a ``[T, ...]`` array as an array (a scalar row stays a one-element array)."""
        return f"{array}[{t}]" if rank else f"{array}[{t}:{t} + 1]"

    # -- kernels -----------------------------------------------------------------------------------
    @property
    def in_kernel(self) -> bool:
        return self.kernel is not None

    def _open(self, title: str, persistent: bool) -> None:
        name = self.names.fresh(f"k{self._n_kernels}_{sanitize(title)}")
        self._n_kernels += 1
        head = []
        eqn = self._eqn
        if eqn is not None and eqn.loc is not None and eqn.loc.source is not None:
            from pathlib import PurePath

            loc = eqn.loc
            head.append(f"# {PurePath(loc.source.name).name}:{loc.line} {eqn.op}: "
                        f"{loc.source.line(loc.line).strip()}")
        elif eqn is not None:
            head.append(f"# {eqn.op}")
        self.kernel = Kernel(name, head, Lines(depth=1), persistent)
        self.lines = self.kernel.body
        if persistent and self.grid_scan:
            self.lines("grid = cuda.cg.this_grid()")
        if persistent and not self.grid_scan:
            self.lines("tid = cuda.threadIdx.x")
            self.lines("nthreads = cuda.blockDim.x")
        else:
            self.lines("tid = cuda.grid(1)")
            self.lines("nthreads = cuda.gridsize(1)")

    def _close(self) -> None:
        k = self.kernel
        assert k is not None
        self.kernel = None
        self.lines = self.host
        body = k.body.render()
        params = self._params(body)
        src = Lines()
        src.extend(k.head)
        src(PERSISTENT_JIT if k.persistent else JIT)
        src(f"def {k.name}({', '.join(params)}):")
        text = src.render() + body
        self.kernels.append(text)
        if k.persistent:
            launch = "SCAN_BLOCKS, SCAN_THREADS"
        else:
            work = " + ".join(f"({w})" if " " in w and len(k.work) > 1 else w for w in k.work) or "1"
            launch = f"grid_for({work}), THREADS"
        self.host(f"{k.name}[{launch}]({', '.join(params)})")

    def _params(self, body: str) -> list[str]:
        """The host names a kernel body reads (arrays, dims, index setup), in order of first use."""
        code = "\n".join(line.split("#", 1)[0] for line in body.splitlines())
        known = set(self.host_args) | set(re.findall(r"^\s*([A-Za-z_]\w*) = ", self.host.render(), re.MULTILINE))
        seen: dict[str, None] = {}
        for word in re.findall(r"(?<![\w.])[A-Za-z_]\w*", code):  # not attributes (threadIdx.x)
            if word in known:
                seen.setdefault(word, None)
        dims = set(self.dim_names.values())
        return [w for w in seen if w not in dims] + [w for w in seen if w in dims]  # arrays first, then sizes

    @contextmanager
    def phase(self, title: str) -> Iterator[None]:
        """Code that may run once every earlier write is visible: a new kernel at top level, else a barrier after."""
        if self.kernel is not None:
            yield
            self.lines("grid.sync()" if self.grid_scan else "cuda.syncthreads()")
            return
        self._open(title, persistent=False)
        try:
            yield
        finally:
            self._close()

    @contextmanager
    def persistent(self, title: str) -> Iterator[None]:
        """A single-block kernel that loops over time itself (nothing new inside one already)."""
        if self.kernel is not None:
            yield
            return
        self._open(title, persistent=True)
        try:
            yield
        finally:
            self._close()

    def add_at(self, array: str, idx: Sequence[str], value: str) -> None:
        """``array[idx] += value`` atomically: threads of a kernel may add to the same element."""
        self.lines(f"cuda.atomic.add({array}, ({', '.join(idx)},), {value})")

    @contextmanager
    def parallel(self, shape: Shape) -> Iterator[list[str]]:
        """The elements of ``shape`` shared among the threads (grid- or block-strided); yields i0, i1, ..."""
        assert self.kernel is not None, "parallel() outside a phase"
        idx = self.index_names(len(shape))
        if not shape:
            self.kernel.work.append("1")
            with self.lines.block("if tid == 0:"):
                yield idx
            return
        n = self.count(shape)
        self.kernel.work.append(n)
        with self.lines.block(f"for flat in range(tid, {n}, nthreads):"):
            for k in range(len(shape)):
                inner = self.count(shape[k + 1:])
                expr = "flat" if inner == "1" else f"flat // {_paren(inner)}"
                if k > 0:
                    expr += f" % {self.dim_atom(shape[k])}"
                self.lines(f"{idx[k]} = {expr}")
            yield idx

    def copy(self, dst: str, lead: Sequence[str], src: Value) -> None:
        """``dst[*lead, ...] = src``, the elements shared among the threads."""
        with self.phase(f"copy_{dst}"), self.parallel(src.shape) as idx:
            self.lines(f"{self.at(dst, [*lead, *idx])} = {self.element(src, idx, src.shape)}")

    # -- helpers -----------------------------------------------------------------------------------
    def helper(self, kind: str, dtype: str | None = None) -> str:
        """A device function inside kernels, a plain Python function in the host entry."""
        from .rules import DEVICE_HELPERS, HOST_HELPERS

        if self.in_kernel:
            name = f"{kind}_{dtype}" if dtype else kind
            if name not in self.helpers:
                self.helpers[name] = DEVICE_HELPERS[kind](name, dtype)
        else:
            name = f"{kind}_host"
            if name not in self.helpers:
                self.helpers[name] = HOST_HELPERS[kind](name, dtype)
        return name

    def helper_kernel(self, kind: str, dtype: str) -> str:
        """A kernel the module defines once and the host launches (``gemm_f32``)."""
        from .rules import DEVICE_HELPERS

        name = f"{kind}_{dtype}"
        if name not in self.helpers:
            self.helpers[name] = DEVICE_HELPERS[kind](name, dtype)
        return name

    # -- equations ---------------------------------------------------------------------------------
    target = TARGET

    def apply(self, rule, eqn: Eqn) -> None:
        """Run the rule with the equation being lowered known (kernels are named after it)."""
        outer, self._eqn = self._eqn, eqn
        rule(self, eqn)
        self._eqn = outer


def escaping(graph: Graph) -> set[int]:
    """The graph's outputs and the arrays they are reshaped views of (top level: scan bodies never escape)."""
    out = {v.uid for v in graph.outputs}
    for eqn in reversed(graph.eqns):
        if eqn.op == "reshape" and eqn.outputs[0].uid in out:
            out.add(eqn.inputs[0].uid)
    return out


def _paren(expr: str) -> str:
    return expr if re.fullmatch(r"[\w.]+", expr) else f"({expr})"


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

    def __init__(self, grid_scan: bool | None = None) -> None:
        self.grid_scan = grid_scan_requested() if grid_scan is None else grid_scan

    def generate(self, graph: Graph, name: str) -> GeneratedModule:
        lifted, draws = lift_random(graph)
        e = CudaEmitter(self.grid_scan)
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
        src(f'"""{name}: generated by specc for CUDA (numba-cuda).  Regenerated from the IR; do not edit.')
        src()
        src(f"Entry: {ENTRY}({', '.join(args + dim_args)}) -> ({', '.join(results)})")
        src("Device arrays in and out; a scalar is an array of shape (1,).")
        src()
        for a, v in zip(args, lifted.inputs):
            src(f"  {a}: {v.type}")
        for s in dims:
            src(f"  {e.dim_names[s]}: the size of dim {s}")
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


GENERATORS[TARGET] = CudaGenerator

from . import rules as cuda_rules  # noqa: F401  (registers the CUDA lowering rules)

__all__ = ["CudaEmitter", "CudaGenerator"]
