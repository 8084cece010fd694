"""The CPU emitter: the target-neutral emitter, with memory from NumPy and loops that run in order.

In: lowering rules' calls (see :class:`specc.backends.emitter.Emitter`).
Out: lines of Numba-compatible Python; the entry's split points (where the Python entry runs a
product or a recurrence on threads between ``@njit`` parts) and the functions split out of it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from ...ir.core import Eqn, Value
from ...ir.dims import Shape
from ..emitter import NP_DTYPES, PYTHON_NAMES, Emitter, Scope
from .helpers import HELPERS

TARGET = "cpu"
HOST_INDEX = {"wrap_index": "host_index", "slice_start": "host_slice_start"}  # the entry's own index rules
# Numba compiles about 80 lines of loops in a second, one function at a time per process: a longer stretch of
# top-level code is cut into parts of about this many statements, which compile in parallel on a cold cache
# (specc.backends.cpu.precompile) for ~0.1 s more each (and a few microseconds more per call)
MAX_PART_STATEMENTS = 80
ENTRY = "run"
THREADS = "threads"  # the entry's last argument when it splits work across threads
# Names generated CPU code uses for itself; a spec value with one of them gets a suffix.
GLOBALS = PYTHON_NAMES | {"njit", "run_row_blocks", "matmul_rows", "matmul_t_rows", "matmul_nt", "host_index",
                          "host_slice_start", "transposed"}
RESERVED = GLOBALS | {ENTRY, THREADS} | set(HELPERS) | {f"{h}_{dt}" for h in HELPERS for dt in NP_DTYPES}


class CpuEmitter(Emitter):
    """The neutral emitter for the CPU: arrays from ``np.empty``, parallel elements as a loop nest,
    and the state of an entry that splits work across threads (:meth:`split`)."""

    target = TARGET

    def __init__(self, lowerings: Mapping[str, Callable],
                 host_rules: Mapping[str, Callable[["CpuEmitter", Eqn], bool]] | None = None) -> None:
        super().__init__(lowerings, RESERVED)
        self.host_rules = host_rules or {}  # op -> its top-level NumPy statement (specc.backends.cpu.host)
        self.functions: dict[str, str] = {}  # functions split out of the entry (row-wise recurrences)
        self.in_rows = False  # emitting the body of a function over a block of batch rows
        self.splits: list[Split] = []  # where the entry's parts end, and what runs between them
        self.parts: list[Scope] = []  # def/use of each part ended by a split (the current one: self.scope)
        self.runtime_calls: set[str] = set()  # functions of specc.backends.cpu.runtime the entry calls
        self.transposed: dict[int, str] = {}  # a recurrence's constant matrix -> its transpose, made before the loop
        self.product_transposes: set[int] = set()  # 2-D transposes only top-level products read: x.T, no copy
        self.transpose_of: dict[int, str] = {}  # such a transpose -> the C array it transposes
        self.shared: set[str] = set()  # functions of specc.backends.cpu.shared the module calls
        # the host glue: top-level allocations, views and data movement done by the Python entry with NumPy
        self.prelude: list[str] = []  # the entry's statements before the current part (they read only dims
        self.preludes: list[list[str]] = []  # and host arrays); those of each part ended by a split
        self.host_names: set[str] = set()  # variables the Python entry assigns (arrays, views of them)
        self.host_ready: set[str] = set()  # those whose elements are all written when assigned (inputs, copies)
        # a view that loops read in place -> how the entry would write it in NumPy (for a NumPy copy reading it)
        self.host_views: dict[int, Callable[[], tuple[str, list[str]]]] = {}
        # a 2-D top-level value -> how the entry writes its transpose from arrays it holds (cpu/host.py)
        self.host_t: dict[int, Callable[[], str]] = {}
        # what the @njit functions will be called with: variable -> (dtype, rank, layout) or ("int",)
        self.arg_types: dict[str, tuple] = {}
        self.function_args: dict[str, list[str]] = {}  # a function split out -> its parameters
        self.function_keys: dict[tuple, str] = {}  # (code_key, argument kinds) -> the function with that code

    def define(self, v: Value) -> str:
        name = super().define(v)
        self.arg_types[name] = (v.dtype, v.type.rank, "C")  # np.empty, or a reshape of a C array
        return name

    def typed(self, name: str, kind: tuple) -> str:
        """Record the type of a variable that is no value's array (a view, an index)."""
        self.arg_types[name] = kind
        return name

    # -- the host glue: what the Python entry does itself ---------------------------------------
    def at_top(self) -> bool:
        """Code at the entry's top level (not in a loop, not in a function of a block of rows)."""
        return self.lines.depth == 1 and not self.in_rows

    def host_define(self, v: Value) -> str:
        """A variable for ``v`` that the Python entry assigns (a part reading it takes it as an argument)."""
        with self.in_scope(Scope()):
            name = self.define(v)
        self.host_names.add(name)
        return name

    def host_expr(self, fn: Callable[[], str]) -> str:
        """Text built by ``fn`` (shapes, dims) for the entry: its reads are not the current part's."""
        with self.in_scope(Scope()):
            return fn()

    def before_part(self, name: str, expr: str) -> str:
        """``name = expr`` run by the entry before the current part: ``expr`` reads only dims and host
        variables (an allocation, a reshape of a host array), so it may run before the part's code."""
        self.prelude.append(f"{name} = {expr}")
        self.host_names.add(name)
        return name

    def apply(self, rule: Callable[[Emitter, Eqn], None], eqn: Eqn) -> None:
        """Data movement at the top level is the Python entry's (NumPy: :mod:`specc.backends.cpu.host`).
        A top-level part that reached MAX_PART_STATEMENTS ends before the next equation."""
        if self.at_top() and self.lines.statements - (self.splits[-1].statements if self.splits else 0) \
                >= MAX_PART_STATEMENTS:
            self.split("", "", ())
        host = self.host_rules.get(eqn.op)
        if host is not None and self.at_top() and host(self, eqn):
            return
        rule(self, eqn)

    def index_value(self, base: str, kind: str, args: Sequence[str]) -> str:
        """At the top level the entry computes a run-time index (Python, :mod:`specc.backends.cpu.runtime`)."""
        if not self.at_top():
            return super().index_value(base, kind, args)
        fn = HOST_INDEX[kind]
        self.runtime_calls.add(fn)
        name = self.typed(self.before_part(self.temp(base), f"{fn}({', '.join(args)})"), ("int",))
        self.use(name)
        return name

    def host(self, statement: str, why: str, reads: Sequence[str]) -> None:
        """A statement of the Python entry between parts (NumPy data movement); see :meth:`split`."""
        self.split(statement, why, reads)

    def alloc(self, v: Value, fill: float | None = None) -> str:
        """Define ``v`` as a new array (or as its destination row, inside a scan); optionally filled.
        At the top level the Python entry allocates it (NumPy), before the part that writes it."""
        row = self.dest.get(v.uid)
        if row is None and self.at_top():
            name = self.host_define(v)
            self.use(name)  # the part after it writes it: an argument
            shape = self.host_expr(lambda: self.shape(v.shape))
            dtype = self.np_dtype(v.dtype)
            if fill is None:
                return self.before_part(name, f"np.empty({shape}, {dtype})")
            if fill == 0.0 and math.copysign(1.0, fill) > 0:  # calloc: pages zeroed on first touch
                return self.before_part(name, f"np.zeros({shape}, {dtype})")
            return self.before_part(name, f"np.full({shape}, {self.lit(fill, v.dtype)}, {dtype})")
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
        src = self.peek(x)
        if self.at_top() and src in self.host_names:
            name = self.before_part(self.host_define(out), f"{src}.T  # a view: BLAS reads it transposed in place")
        else:
            name = self.define(out)
            self.lines(f"{name} = {self.name(x)}.T  # a view: BLAS reads it transposed in place")
        self.typed(name, (out.dtype, 2, "F"))
        self.transpose_of[out.uid] = src
        return True

    def split(self, statement: str, why: str, reads: Sequence[str]) -> None:
        """End the current part of the entry here; the entry runs ``statement`` (plain Python, reading the
        variables ``reads``) before the next part.  See :class:`specc.backends.cpu.generator.CpuGenerator`."""
        self.splits.append(Split(len(self.lines), self.lines.statements, statement, why, tuple(reads)))
        self.parts.append(self.scope)
        self.preludes.append(self.prelude)
        self.scope, self.prelude = Scope(), []


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
