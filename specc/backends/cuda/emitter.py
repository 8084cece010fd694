"""The CUDA emitter: the target-neutral emitter, with code split between the host entry and kernels.

In: lowering rules' calls (see :class:`specc.backends.emitter.Emitter`).
Out: kernel sources (each a grid- or block-strided loop over output elements), device helpers,
and the host entry's lines (allocations, launches).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ...ir.core import Eqn, Value
from ...ir.dims import Shape
from ..emitter import PYTHON_NAMES, Emitter, Scope
from ..lines import Lines
from ..text import sanitize
from .helpers import DEVICE_HELPERS, HOST_HELPERS, JIT, PERSISTENT_JIT

TARGET = "cuda"
ENTRY = "run"
# Names the generated code uses for itself.
CUDA_RESERVED = {
    "cuda", "math", "numba", "grid", "tid", "nthreads", "flat", "THREADS", "SCAN_THREADS", "TILE", "MAX_BLOCKS",
    "SIMULATED", "SCAN_BLOCKS", "persistent", "scratch", "_SCRATCH", "grid_for", "gemm_grid", "cdiv",
}
RESERVED = (PYTHON_NAMES | {ENTRY} | CUDA_RESERVED | set(DEVICE_HELPERS) | {f"{h}_host" for h in HOST_HELPERS}
            | {f"{h}_{dt}" for h in DEVICE_HELPERS for dt in ("f32", "f64", "i32")})


@dataclass
class Kernel:
    """A kernel being written: its name, the comment over it, its body, and the element counts it loops over."""

    name: str
    head: list[str]
    body: Lines
    persistent: bool
    work: list[str] = field(default_factory=list)


class CudaEmitter(Emitter):
    """The neutral emitter's names, bindings, dims and views, with code split between host and kernels.

    ``self.lines`` is where code goes now: the host entry's body (``self.host``) or the body of the
    kernel being written (``self.kernel``).  A rule opens a kernel with :meth:`phase` (a grid-stride
    kernel at top level; inside a recurrence's persistent kernel, a block-strided loop and a barrier)
    and loops over output elements with :meth:`parallel`.
    """

    target = TARGET

    def __init__(self, lowerings: Mapping[str, Callable], grid_scan: bool = False) -> None:
        super().__init__(lowerings, RESERVED)
        self.grid_scan = grid_scan  # persistent kernels as cooperative grids (else one block)
        self.host = self.lines
        self.host_scope = self.scope  # def/use of the host entry; each kernel has its own
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
        row = self.dest.pop(v.uid, None)
        if row is not None:  # a row of a recurrence's history, in the kernel
            name = self.define(v)
            self.use(self.dest_arrays.pop(v.uid))
            self.lines(f"{name} = {row}")
        else:
            with self.in_scope(self.host_scope):  # the host allocates it, whichever kernel reads it
                name = self.define(v)
                if v.uid in self.escaping:  # returned to the caller: a new array every call
                    self.host(f"{name} = cuda.device_array({self.dev_shape(v.shape)}, {self.np_dtype(v.dtype)})")
                else:  # a temporary: the same device memory every call (no allocation per step)
                    self.host(f"{name} = scratch({self._slots}, {self.dev_shape(v.shape)}, "
                              f"{self.np_dtype(v.dtype)})")
                    self._slots += 1
        if fill is not None:
            with self.phase(f"fill_{name}"), self.parallel(v.shape) as idx:
                self.use(name)
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
        place = self.location(eqn) if eqn is not None else None
        if place is not None:
            head.append(f"# {place[0]} {eqn.op}: {place[1]}")
        elif eqn is not None:
            head.append(f"# {eqn.op}")
        self.kernel = Kernel(name, head, Lines(depth=1), persistent)
        self.lines = self.kernel.body
        self.scope = Scope()
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
        params = self._params(self.scope)
        self.scope = self.host_scope
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

    def _params(self, kernel: Scope) -> list[str]:
        """The host variables a kernel reads (arrays, index setup, dims), in order of first use: its def/use."""
        dims = set(self.dim_names.values())
        seen = list(kernel.uses)
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
            self.use(dst)
            self.lines(f"{self.at(dst, [*lead, *idx])} = {self.element(src, idx, src.shape)}")

    # -- helpers -----------------------------------------------------------------------------------
    def helper(self, kind: str, dtype: str | None = None) -> str:
        """A device function inside kernels, a plain Python function in the host entry."""
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
        name = f"{kind}_{dtype}"
        if name not in self.helpers:
            self.helpers[name] = DEVICE_HELPERS[kind](name, dtype)
        return name

    # -- equations ---------------------------------------------------------------------------------
    def apply(self, rule, eqn: Eqn) -> None:
        """Run the rule with the equation being lowered known (kernels are named after it)."""
        outer, self._eqn = self._eqn, eqn
        rule(self, eqn)
        self._eqn = outer


def _paren(expr: str) -> str:
    return expr if re.fullmatch(r"[\w.]+", expr) else f"({expr})"


__all__ = ["CUDA_RESERVED", "ENTRY", "RESERVED", "TARGET", "CudaEmitter", "Kernel"]
