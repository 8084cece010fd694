"""The CPU code generator: an IR graph -> Python source for Numba's ``@njit``.

In: any checked Graph (random draws are lifted to inputs first, see
:mod:`specc.backends.lift`) and a module name.
Out: a :class:`~specc.backends.GeneratedModule` whose source defines one entry
``run(<inputs>, <draws>, <dims>)`` returning a tuple of outputs, plus the few
per-dtype helpers it calls (``sigmoid_f32``, ``wrap_index``, ...).

What a reader of the generated source can rely on:

* every value is a C-contiguous NumPy array (0-d for a scalar), named after
  the spec's own name (``h.W_f`` -> ``h_W_f``, ``c[t-1]`` -> ``c_t_1``) or
  ``v0``, ``v1``, ... for intermediates; scalar constants (``full``) read by
  elementwise code are inlined as typed literals (``np.float32(0.5)``);
* each symbolic dim is an int argument named as in the spec (``T``, ``B``);
  shapes are Python arithmetic on them (``(T * B, 64)``), so one compiled
  kernel serves every binding of the dims;
* each equation's code is headed by a comment with its ``.nn`` file, line and
  op, and the source line itself;
* ``matmul`` calls ``np.dot`` (BLAS) on 2-D views; every other op is explicit
  loops (one loop nest per elementwise op or ``fused`` group, with
  broadcasting done by index arithmetic); float reductions accumulate in
  float64;
* ``scan`` is a Python loop over ``t`` inside the kernel; each state's
  history is preallocated ``[T, ...]``, the body's results are written in
  place into row ``t`` when the op allows it, and a lagged read is the row
  ``t - k`` or, before the first step, the init;
* no slice assignment (``a[t] = b``): Numba compiles each such site slowly
  (about 0.4 s here), so copies are explicit loops.

The lowering rules, one per op, are in :mod:`specc.backends.cpu.rules`; this
module holds the :class:`Emitter` they write with and the generator.
"""

from __future__ import annotations

import ast
import keyword
import math
import re
from contextlib import ExitStack, contextmanager
from pathlib import PurePath
from typing import Callable, Iterator, Sequence

from ...ir.dims import Dim, Shape, parse_dim, shape_str
from ...ir.core import Eqn, Graph, Value
from ...ops.core import ONE
from .. import GENERATORS, LOWERINGS, GeneratedModule
from ..lift import lift_random
from ..lines import Lines

TARGET = "cpu"
ENTRY = "run"
THREADS = "threads"  # the entry's last argument when it splits work across threads
# fastmath "contract" only: a multiply and an add may fuse into one FMA (the math helpers of
# specc.backends.cpu.vecmath, inlined, run 20-55% faster with it); NaN, Inf, -0.0 and subnormals keep
# their meaning.  Never reassoc/nnan/ninf/afn: the helpers' range reductions depend on it.
NJIT = '@njit(cache=True, error_model="numpy", fastmath={"contract"})'
NJIT_NOGIL = '@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)'
NP_DTYPES = {"f32": "np.float32", "f64": "np.float64", "i32": "np.int32"}

# Names generated code uses for itself; a spec value with one of them gets a suffix.
GLOBALS = {"np", "njit", "run_row_blocks", "matmul_rows", "matmul_t_rows", "matmul_nt", "range", "min", "max", "abs", "int", "float", "len",
           "print", "IndexError", "None", "True", "False"}
RESERVED = set(keyword.kwlist) | GLOBALS | {ENTRY, THREADS}
LOOP_INDEX = re.compile(r"[ijku]\d+$")  # loop indices (i0, j1, k2, u0): reserved as a family


class Namer:
    """Unique Python identifiers for one generated module."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def fresh(self, base: str) -> str:
        base = sanitize(base)
        name, k = base, 0
        while name in self.used or name in RESERVED or LOOP_INDEX.match(name):
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def sanitize(name: str) -> str:
    """A spec name as a Python identifier: ``h.W_f`` -> ``h_W_f``, ``c[t-1]`` -> ``c_t_1``."""
    out = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "v"
    return f"v_{out}" if out[0].isdigit() else out


class Emitter:
    """The state of one module being generated: its lines, names, and how each value is bound.

    A value is bound to exactly one of: an array variable (``arrays``), a literal
    (``consts``: a ``full`` that elementwise code reads as a number), a scalar
    local inside the current elementwise loop nest (``scalars``), or a view
    (``views``: a getitem or transpose that only loops read, kept as an index
    map onto its source instead of a copy).  :func:`needs_array` decides which
    values must be arrays.
    """

    def __init__(self) -> None:
        self.lines = Lines(depth=1)
        self.names = Namer()
        self.arrays: dict[int, str] = {}
        self.consts: dict[int, str] = {}
        self.scalars: dict[int, str] = {}
        self.views: dict[int, tuple[Value, Callable[[Sequence[str]], list[str]]]] = {}
        self.view_names: dict[int, str] = {}
        self.dim_names: dict[str, str] = {}  # dim symbol -> argument name
        self.helpers: dict[str, str] = {}  # helper name -> its source, in first-use order
        self.dest: dict[int, str] = {}  # value uid -> the array row to write it to (a scan's history)
        self.materialize: set[int] = set()  # values that must be arrays (read by non-elementwise code)
        self.functions: dict[str, str] = {}  # functions split out of the entry (row-wise recurrences)
        self.in_rows = False  # emitting the body of a function over a block of batch rows
        self.splits: list[tuple[int, str, str]] = []  # (line, Python statement, comment) between parts
        self.runtime_calls: set[str] = set()  # functions of specc.runtime the entry calls between parts
        self.transposed: dict[int, str] = {}  # a recurrence's constant matrix -> its transpose, made before the loop
        self.product_transposes: set[int] = set()  # 2-D transposes only top-level products read: x.T, no copy
        self.transpose_of: dict[int, str] = {}  # such a transpose -> the C array it transposes
        self.shared: set[str] = set()  # functions of specc.backends.cpu.shared the module calls
        self._unnamed = 0
        self._names: dict[int, str] = {}  # names chosen by name_values, taken by the first define
        self._where: str | None = None
        from .rules import HELPERS  # their names, with and without a dtype suffix, are taken

        self.names.used |= set(HELPERS) | {f"{h}_{dt}" for h in HELPERS for dt in NP_DTYPES}

    # -- names and bindings ---------------------------------------------------------------
    def define(self, v: Value) -> str:
        """A new array variable for ``v``."""
        name = self._fresh_for(v)
        self.arrays[v.uid] = name
        return name

    def local(self, v: Value) -> str:
        """A new scalar local for ``v`` inside an elementwise loop nest."""
        name = self._fresh_for(v)
        self.scalars[v.uid] = name
        return name

    def _fresh_for(self, v: Value) -> str:
        if v.uid in self._names:
            return self._names.pop(v.uid)
        if v.name:
            return self.names.fresh(v.name)
        name = self.names.fresh(f"v{self._unnamed}")
        self._unnamed += 1
        return name

    def name_values(self, graph: Graph) -> None:
        """Choose every value's name up front, in program order, so that the spec's names come first and
        temporaries (``acc``, ``m``, ``k``) never push a spec name to a suffix."""
        for v in graph.inputs:
            self._names[v.uid] = self._fresh_for(v)
        for eqn in graph.eqns:
            for v in eqn.outputs:
                self._names[v.uid] = self._fresh_for(v)
            body = eqn.params.get("body")
            if isinstance(body, Graph):
                shared = eqn.params["n_consts"] if eqn.op == "scan" else len(body.inputs)  # aliases: no names
                for v in body.inputs[shared:]:
                    self._names[v.uid] = self._fresh_for(v)
                self.name_values(Graph((), body.eqns, body.outputs))

    def define_view(self, v: Value) -> str:
        """A name for a view (shown in comments; the view itself is an index map, see ``views``)."""
        if v.uid not in self.view_names:
            self.view_names[v.uid] = self._fresh_for(v)
        return self.view_names[v.uid]

    def temp(self, base: str) -> str:
        return self.names.fresh(base)

    def alias(self, v: Value, src: Value) -> None:
        """Bind ``v`` to whatever ``src`` is bound to (a body input to the value outside)."""
        for table in (self.arrays, self.consts, self.scalars, self.views):
            if src.uid in table:
                table[v.uid] = table[src.uid]
                return
        raise KeyError(f"{src!r} is not bound")

    def name(self, v: Value) -> str:
        """The array variable holding ``v``."""
        if v.uid not in self.arrays:
            raise KeyError(f"{v!r} has no array (bound: {v.uid in self.consts and 'a literal' or 'nothing'})")
        return self.arrays[v.uid]

    # -- dims, dtypes, literals -------------------------------------------------------------
    def dim(self, d: Dim) -> str:
        """A Python int expression for a dim: ``T * B``, ``H + 8``, ``(L - 3) // 2``."""
        if d.is_const:
            return str(d.value)
        ordered = [t for t in d.terms if t[0]] + [t for t in d.terms if not t[0]]
        parts: list[str] = []
        for k, (mono, c) in enumerate(ordered):
            factors = [self._dim_symbol(s) for s in mono]
            if abs(c) != 1 or not factors:
                factors.insert(0, str(abs(c)))
            text = " * ".join(factors)
            if k == 0:
                parts.append(text if c > 0 else f"-{text}")
            else:
                parts.append(f"{'+' if c > 0 else '-'} {text}")
        return " ".join(parts)

    def dim_atom(self, d: Dim) -> str:
        """:meth:`dim`, parenthesised unless it is a single name or number."""
        text = self.dim(d)
        return text if re.fullmatch(r"[\w.]+", text) else f"({text})"

    def _dim_symbol(self, s: str) -> str:
        if s.startswith("("):  # an opaque floor division "(expr // k)"
            inner, k = s[1:-1].rsplit(" // ", 1)
            return f"({self.dim_atom(parse_dim(inner))} // {k})"
        return self.dim_names[s]

    def shape(self, shape: Shape) -> str:
        items = [self.dim(d) for d in shape]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"

    @staticmethod
    def np_dtype(dtype: str) -> str:
        return NP_DTYPES[dtype]

    @staticmethod
    def lit(value: float, dtype: str) -> str:
        """A literal of the given dtype: Numba computes float32 math in float32 only with typed constants."""
        if dtype == "i32":
            text = str(int(value))
            return f"({text})" if text.startswith("-") else text
        x = float(value)
        if math.isnan(x):
            text = "np.nan"
        elif x in (float("inf"), float("-inf")):
            text = "np.inf" if x > 0 else "-np.inf"
        else:
            text = repr(x)
        if dtype == "f32":
            return f"np.float32({text})"
        return f"({text})" if text.startswith("-") else text

    def count(self, shape: Shape) -> str:
        """The number of elements of a shape, as an expression."""
        n = Dim.const(1)
        for d in shape:
            n = n * d
        return self.dim(n)

    # -- arrays and loops -------------------------------------------------------------------
    def alloc(self, v: Value, fill: float | None = None) -> str:
        """Define ``v`` as a new array (or as its destination row, inside a scan); optionally filled."""
        name = self.define(v)
        row = self.dest.pop(v.uid, None)
        if row is not None:
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

    @staticmethod
    def index_names(rank: int, prefix: str = "i") -> list[str]:
        return [f"{prefix}{k}" for k in range(rank)]

    @contextmanager
    def loops(self, shape: Shape, prefix: str = "i") -> Iterator[list[str]]:
        """A loop nest over ``shape`` (none for a scalar); yields the index names, outermost first."""
        idx = self.index_names(len(shape), prefix)
        with ExitStack() as stack:
            for name, d in zip(idx, shape):
                stack.enter_context(self.lines.block(f"for {name} in range({self.dim(d)}):"))
            yield idx

    @contextmanager
    def phase(self, title: str) -> Iterator[None]:
        """Code that needs every earlier write done: on the CPU, code runs in order (see loop_rules)."""
        yield

    def parallel(self, shape: Shape):
        """The independent elements of ``shape``: on the CPU, a loop nest (see loop_rules)."""
        return self.loops(shape)

    def add_at(self, array: str, idx: Sequence[str], value: str) -> None:
        """``array[idx] += value`` (code runs in order on the CPU: no atomics; see loop_rules)."""
        self.lines(f"{self.at(array, idx)} += {value}")

    @staticmethod
    def at(array: str, idx: Sequence[str]) -> str:
        return f"{array}[{', '.join(idx)}]" if idx else f"{array}[()]"

    @staticmethod
    def broadcast_index(shape: Shape, idx: Sequence[str], domain: Shape) -> list[str]:
        """Indices into a value of ``shape`` broadcast (NumPy-style, aligned right) over ``domain``."""
        off = len(domain) - len(shape)
        out = []
        for j, d in enumerate(shape):
            if d == domain[off + j]:
                out.append(idx[off + j])
            elif d == ONE:
                out.append("0")
            else:
                raise ValueError(f"{shape_str(shape)} does not broadcast to {shape_str(domain)}")
        return out

    def element(self, v: Value, idx: Sequence[str], domain: Shape) -> str:
        """The element of ``v`` at ``idx`` of a loop nest over ``domain``: a local, a literal or a load."""
        if v.uid in self.scalars:
            return self.scalars[v.uid]
        return self.load(v, self.broadcast_index(v.shape, idx, domain))

    def load(self, v: Value, idx: Sequence[str]) -> str:
        """The element ``v[idx]`` (an index of ``v``'s own shape), through views to the array holding it."""
        if v.uid in self.consts:
            return self.consts[v.uid]
        if v.uid in self.views:
            src, index_map = self.views[v.uid]
            return self.load(src, index_map(idx))
        return self.at(self.name(v), idx)

    def copy(self, dst: str, lead: Sequence[str], src: Value) -> None:
        """``dst[*lead, ...] = src`` as a loop nest (Numba compiles slice assignment slowly)."""
        with self.loops(src.shape) as idx:
            self.lines(f"{self.at(dst, [*lead, *idx])} = {self.element(src, idx, src.shape)}")

    def split(self, statement: str, why: str) -> None:
        """End the current part of the entry here; the entry runs ``statement`` (plain Python)
        before the next part.  See :meth:`CpuGenerator.generate`."""
        self.splits.append((len(self.lines), statement, why))

    # -- helpers ----------------------------------------------------------------------------
    def helper(self, kind: str, dtype: str | None = None) -> str:
        """The name of a helper function, adding its source to the module on first use."""
        from .rules import HELPERS

        name = f"{kind}_{dtype}" if dtype else kind
        if name not in self.helpers:
            self.helpers[name] = HELPERS[kind](name, dtype)
        return name

    # -- equations --------------------------------------------------------------------------
    def head(self, eqn: Eqn) -> None:
        """The comment over an equation's code: file:line, op, and the source line (once per line)."""
        loc = eqn.loc
        if loc is None or loc.source is None:
            self.lines.comment(eqn.op)
            self._where = None
            return
        where = f"{PurePath(loc.source.name).name}:{loc.line}"
        if where == self._where:
            self.lines.comment(f"{where} {eqn.op}")
        else:
            self.lines.blank()
            self.lines.comment(f"{where} {eqn.op}: {loc.source.line(loc.line).strip()}")
        self._where = where

    target = TARGET  # whose rules emit_graph applies (the CUDA emitter, a subclass, has its own)

    def emit_graph(self, graph: Graph) -> None:
        """The code of every equation of ``graph``, its inputs being bound already."""
        self.materialize |= needs_array(graph)
        rules = LOWERINGS[self.target]
        for eqn in graph.eqns:
            rule = rules.get(eqn.op)
            if rule is None:
                raise NotImplementedError(f"no {self.target.upper()} lowering for op '{eqn.op}'")
            self.head(eqn)
            self.apply(rule, eqn)

    def apply(self, rule: Callable[["Emitter", Eqn], None], eqn: Eqn) -> None:
        """Run one equation's lowering rule."""
        rule(self, eqn)


def free_names(code: str, globals_: set[str], exclude: set[str]) -> list[str]:
    """The names ``code`` (a function body) reads but never assigns, in order of first use: the
    arguments a function split out of the entry needs."""
    tree = ast.parse("def f():\n" + code)
    stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    loads = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)),
                   key=lambda n: (n.lineno, n.col_offset))
    seen: dict[str, None] = {}
    for n in loads:
        if n.id not in stored and n.id not in globals_ and n.id not in exclude:
            seen.setdefault(n.id, None)
    return list(seen)


def needs_array(graph: Graph) -> set[int]:
    """Values that must exist as arrays: graph outputs, and inputs of equations whose code indexes arrays
    directly (everything but elementwise loops and copies, which read through :meth:`Emitter.load`)."""
    from .rules import ELEMENT_READERS

    out = {v.uid for v in graph.outputs}
    for eqn in graph.eqns:
        if eqn.op == "scan":  # a sequence that the body only reads in loops may stay a view
            nc, ns = eqn.params["n_consts"], eqn.params["n_seqs"]
            body = eqn.params["body"]
            in_body = needs_array(body)
            for k, v in enumerate(eqn.inputs):
                if not nc <= k < nc + ns or body.inputs[k].uid in in_body:
                    out.add(v.uid)
        elif eqn.op not in ELEMENT_READERS:
            out.update(v.uid for v in eqn.inputs)
    return out


def product_transposes(graph: Graph) -> set[int]:
    """2-D transposes (outside loops) read only by products outside loops, and not results: BLAS reads
    an operand transposed in place, so ``x.T`` (a view) replaces the copy."""
    readers: dict[int, list[Eqn]] = {}
    for eqn in graph.eqns:
        for v in eqn.inputs:
            readers.setdefault(v.uid, []).append(eqn)
    results = {v.uid for v in graph.outputs}
    found = set()
    for eqn in graph.eqns:
        if eqn.op == "transpose" and eqn.outputs[0].type.rank == 2 and eqn.params["perm"] == (1, 0):
            out = eqn.outputs[0]
            users = readers.get(out.uid, [])
            if users and out.uid not in results and all(u.op == "matmul" and u.inputs[0].type.rank == 2
                                                         and u.inputs[1].type.rank == 2 for u in users):
                found.add(out.uid)
    return found


def graph_dims(graph: Graph) -> list[str]:
    """The dim symbols a graph's code may need, in order of first appearance."""
    seen: dict[str, None] = {}

    def add_dim(d: Dim) -> None:
        for s in sorted(d.symbols):
            if s.startswith("("):
                add_dim(parse_dim(s[1:-1].rsplit(" // ", 1)[0]))
            else:
                seen.setdefault(s, None)

    def add_param(p: object) -> None:
        if isinstance(p, Dim):
            add_dim(p)
        elif isinstance(p, (tuple, list)):
            for q in p:
                add_param(q)

    def visit(g: Graph) -> None:
        for v in g.inputs:
            for d in v.shape:
                add_dim(d)
        for e in g.eqns:
            for v in e.outputs:
                for d in v.shape:
                    add_dim(d)
            for p in e.params.values():
                if isinstance(p, Graph):
                    visit(p)
                else:
                    add_param(p)

    visit(graph)
    return list(seen)


class CpuGenerator:
    """Generates the Numba source for a graph (see the module docstring for its shape)."""

    target = TARGET

    def generate(self, graph: Graph, name: str) -> GeneratedModule:
        lifted, draws = lift_random(graph)
        e = Emitter()
        dims = graph_dims(lifted)
        for s in dims:
            e.dim_names[s] = e.names.fresh(s)
        e.name_values(lifted)
        e.product_transposes = product_transposes(lifted)
        args = [e.define(v) for v in lifted.inputs]
        e.emit_graph(lifted)
        results = [e.name(v) for v in lifted.outputs]
        threads = bool(e.splits)
        dim_args = [e.dim_names[s] for s in dims] + ([THREADS] if threads else [])

        src = Lines()
        src(f'"""{name}: generated by specc for the CPU (Numba).  Regenerated from the IR; do not edit.')
        src()
        src(f"Entry: {ENTRY}({', '.join(args + dim_args)}) -> ({', '.join(results)})")
        src()
        for a, v in zip(args, lifted.inputs):
            src(f"  {a}: {v.type}")
        for s in dims:
            src(f"  {e.dim_names[s]}: the size of dim {s}")
        if threads:
            src(f"  {THREADS}: how many threads it may use")
        src('"""')
        src()
        src("import numpy as np")
        src("from numba import njit")
        if e.splits or e.shared:
            src()
        if e.shared:
            src(f"from specc.backends.cpu.shared import {', '.join(sorted(e.shared))}")
        if e.splits:
            src(f"from specc.backends.cpu.runtime import {', '.join(sorted(e.runtime_calls))}")
        for helper_source in (*e.helpers.values(), *e.functions.values()):
            src()
            src()
            src.extend(helper_source.rstrip("\n").splitlines())
        e.lines.blank()
        e.lines(f"return ({', '.join(results)}{',' if len(results) == 1 else ''})")
        part_names: list[str] = []
        if e.splits:
            text = src.render() + _parts(e, args + dim_args, part_names)
        else:
            src()
            src()
            src(NJIT)
            src(f"def {ENTRY}({', '.join(args + dim_args)}):")
            text = src.render() + e.lines.render()
        n_in = len(graph.inputs)
        return GeneratedModule(
            target=TARGET,
            name=sanitize(name),
            source=text,
            entry=ENTRY,
            inputs=tuple(args[:n_in]),
            draws=tuple(draws),
            dims=tuple(dims),
            outputs=tuple(results),
            threads=threads,
            kernels=tuple(part_names) + tuple(e.functions) if e.splits else (ENTRY,),
        )


def _parts(e: Emitter, params: list[str], part_names: list[str]) -> str:
    """The entry cut at each split into ``@njit`` parts, and the Python entry calling them.

    Each part takes the names it reads that an earlier part (or the entry's caller) made,
    and returns the names it makes that a later part or statement reads.
    """
    codes = ["\n".join(p) + "\n" for p in e.lines.cut([at for at, _s, _w in e.splits])]
    statements: list[tuple[str, str] | None] = [(s, w) for _at, s, w in e.splits] + [None]
    known = GLOBALS | set(e.helpers) | set(e.functions)
    rank = {n: k for k, n in enumerate(params)}  # the entry's own order first, then order of first use
    free = [sorted(free_names(c, known, set()), key=lambda n: rank.get(n, len(rank))) for c in codes]
    reads_after: list[set[str]] = [set() for _ in codes]
    later: set[str] = set()
    for k in range(len(codes) - 1, -1, -1):  # part k, then statement k, then part k + 1 ...
        stmt = statements[k]
        reads_after[k] = later | (set(free_names(f"    {stmt[0]}", known, set())) if stmt else set())
        later = reads_after[k] | set(free[k])
    out, entry = Lines(), Lines(depth=1)
    for k, code in enumerate(codes):
        last = k == len(codes) - 1
        if _has_code(code):
            name = f"{ENTRY}_part{k}"
            part_names.append(name)
            returns = [n for n in _stored_names(code) if n in reads_after[k]]
            out()
            out()
            out(NJIT)
            out(f"def {name}({', '.join(free[k])}):")
            out.extend(code.rstrip("\n").split("\n"))
            call = f"{name}({', '.join(free[k])})"
            if last:
                entry(f"return {call}")
            elif returns:
                out(f"    return ({', '.join(returns)}{',' if len(returns) == 1 else ''})")
                entry(f"{', '.join(returns)}{',' if len(returns) == 1 else ''} = {call}")
            else:
                entry(call)
        stmt = statements[k]
        if stmt is not None:
            entry.comment(stmt[1])
            entry(stmt[0])
    out()
    out()
    out(f"def {ENTRY}({', '.join(params)}):")
    out('    """The kernel\'s parts in turn; between them, recurrences and large products run on threads (plain Python)."""')
    return out.render() + entry.render()


def _has_code(code: str) -> bool:
    return bool(ast.parse("def f():\n" + code + "\n    pass\n").body[0].body[:-1])


def _stored_names(code: str) -> list[str]:
    tree = ast.parse("def f():\n" + code)
    names = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)),
                   key=lambda n: (n.lineno, n.col_offset))
    return list(dict.fromkeys(n.id for n in names))


GENERATORS[TARGET] = CpuGenerator

from . import rules as cpu_rules  # noqa: F401  (registers the CPU lowering rules)

__all__ = ["CpuGenerator", "Emitter", "graph_dims", "needs_array", "sanitize"]
