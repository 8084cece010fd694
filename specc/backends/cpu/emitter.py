"""The CPU emitter: the target-neutral emitter, with memory from NumPy and loops that run in order.

In: lowering rules' calls (see :class:`specc.backends.emitter.Emitter`).
Out: lines of Numba-compatible Python; the entry's split points (where the Python entry runs a
product or a recurrence on threads between ``@njit`` parts) and the functions split out of it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from ...ir.core import Eqn, Value
from ...ir.dims import Shape
from ..emitter import NP_DTYPES, PYTHON_NAMES, Emitter, Scope
from .helpers import HELPERS

TARGET = "cpu"
ENTRY = "run"
THREADS = "threads"  # the entry's last argument when it splits work across threads
# Names generated CPU code uses for itself; a spec value with one of them gets a suffix.
GLOBALS = PYTHON_NAMES | {"njit", "run_row_blocks", "matmul_rows", "matmul_t_rows", "matmul_nt"}
RESERVED = GLOBALS | {ENTRY, THREADS} | set(HELPERS) | {f"{h}_{dt}" for h in HELPERS for dt in NP_DTYPES}


class CpuEmitter(Emitter):
    """The neutral emitter for the CPU: arrays from ``np.empty``, parallel elements as a loop nest,
    and the state of an entry that splits work across threads (:meth:`split`)."""

    target = TARGET

    def __init__(self, lowerings: Mapping[str, Callable]) -> None:
        super().__init__(lowerings, RESERVED)
        self.functions: dict[str, str] = {}  # functions split out of the entry (row-wise recurrences)
        self.in_rows = False  # emitting the body of a function over a block of batch rows
        self.splits: list[Split] = []  # where the entry's parts end, and what runs between them
        self.parts: list[Scope] = []  # def/use of each part ended by a split (the current one: self.scope)
        self.runtime_calls: set[str] = set()  # functions of specc.backends.cpu.runtime the entry calls
        self.transposed: dict[int, str] = {}  # a recurrence's constant matrix -> its transpose, made before the loop
        self.product_transposes: set[int] = set()  # 2-D transposes only top-level products read: x.T, no copy
        self.transpose_of: dict[int, str] = {}  # such a transpose -> the C array it transposes
        self.shared: set[str] = set()  # functions of specc.backends.cpu.shared the module calls

    def alloc(self, v: Value, fill: float | None = None) -> str:
        """Define ``v`` as a new array (or as its destination row, inside a scan); optionally filled."""
        name = self.define(v)
        row = self.dest.pop(v.uid, None)
        if row is not None:
            self.use(self.dest_arrays.pop(v.uid))
            self.lines(f"{name} = {row}")
            if fill is not None:
                with self.loops(v.shape) as idx:
                    self.lines(f"{self.at(name, idx)} = {self.lit(fill, v.dtype)}")
        elif fill is None:
            self.lines(f"{name} = np.empty({self.shape(v.shape)}, {self.np_dtype(v.dtype)})")
        else:
            self.lines(f"{name} = np.full({self.shape(v.shape)}, {self.lit(fill, v.dtype)}, "
                       f"{self.np_dtype(v.dtype)})")
        return name

    @contextmanager
    def phase(self, title: str) -> Iterator[None]:
        """Code that needs every earlier write done: on the CPU, code runs in order (see loops)."""
        yield

    def parallel(self, shape: Shape):
        """The independent elements of ``shape``: on the CPU, a loop nest (see loops)."""
        return self.loops(shape)

    def add_at(self, array: str, idx: Sequence[str], value: str) -> None:
        """``array[idx] += value`` (code runs in order on the CPU: no atomics; see loops)."""
        self.lines(f"{self.at(array, idx)} += {value}")

    def copy(self, dst: str, lead: Sequence[str], src: Value) -> None:
        """``dst[*lead, ...] = src`` as a loop nest (Numba compiles slice assignment slowly)."""
        with self.loops(src.shape) as idx:
            self.lines(f"{self.at(dst, [*lead, *idx])} = {self.element(src, idx, src.shape)}")

    def helper(self, kind: str, dtype: str | None = None) -> str:
        """The name of a helper function, adding its source to the module on first use."""
        name = f"{kind}_{dtype}" if dtype else kind
        if name not in self.helpers:
            self.helpers[name] = HELPERS[kind](name, dtype)
        return name

    def transpose_view(self, eqn: Eqn) -> bool:
        """A 2-D transpose that only top-level products read: ``x.T``, a view BLAS reads in place."""
        (x,), (out,) = eqn.inputs, eqn.outputs
        if out.uid not in self.product_transposes or x.uid not in self.arrays:
            return False
        self.lines(f"{self.define(out)} = {self.name(x)}.T  # a view: BLAS reads it transposed in place")
        self.transpose_of[out.uid] = self.name(x)
        return True

    def split(self, statement: str, why: str, reads: Sequence[str]) -> None:
        """End the current part of the entry here; the entry runs ``statement`` (plain Python, reading the
        variables ``reads``) before the next part.  See :class:`specc.backends.cpu.generator.CpuGenerator`."""
        self.splits.append(Split(len(self.lines), self.lines.statements, statement, why, tuple(reads)))
        self.parts.append(self.scope)
        self.scope = Scope()


@dataclass(frozen=True)
class Split:
    """The end of one part of the entry: after line ``line`` (``statements`` lines of code so far), the
    entry runs ``statement``, which reads ``reads``."""

    line: int
    statements: int
    statement: str
    why: str
    reads: tuple[str, ...]


__all__ = ["ENTRY", "GLOBALS", "RESERVED", "TARGET", "THREADS", "CpuEmitter", "Split"]
