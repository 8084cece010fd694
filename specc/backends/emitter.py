"""The target-neutral emitter: the state of one module being generated, and what every lowering rule reads.

In: a graph's values and equations, one at a time, from a target's generator and its rules.
Out: lines of generated code (a :class:`~specc.backends.lines.Lines`), each value bound to a name,
a literal, a scalar local or a view.

:class:`Emitter` is what rules of every target may rely on (its methods are the emitter protocol
of :mod:`specc.backends.common` and :mod:`specc.backends.loops`): names and bindings, dim
arithmetic, typed literals, loop nests, indexing through views and broadcasting, and the comment
heading each equation.  A target's emitter subclasses it and implements where memory comes from
and how independent elements run (:meth:`Emitter.alloc`, :meth:`Emitter.phase`,
:meth:`Emitter.parallel`, :meth:`Emitter.add_at`, :meth:`Emitter.copy`, :meth:`Emitter.helper`).
"""

from __future__ import annotations

import keyword
import math
import re
from contextlib import ExitStack, contextmanager
from pathlib import PurePath
from typing import Callable, ContextManager, Iterable, Iterator, Mapping, Sequence

from ..ir.core import Eqn, Graph, Value
from ..ir.dims import Dim, Shape, parse_dim, shape_str
from ..ops import REGISTRY
from ..ops.core import ONE
from .lines import Lines
from .text import Namer, escape

NP_DTYPES = {"f32": "np.float32", "f64": "np.float64", "i32": "np.int32"}
# Python's own names that generated code of every target calls: a spec value never takes them.
PYTHON_NAMES = set(keyword.kwlist) | {"np", "range", "min", "max", "abs", "int", "float", "len", "print",
                                      "IndexError", "None", "True", "False"}
# Ops whose code reads its inputs element by element through Emitter.element/load: their inputs may be
# literals or views (see needs_array); every other op indexes arrays directly.
ELEMENT_READERS = {name for name, op in REGISTRY.items() if op.elementwise} | {"fused", "concat", "getitem",
                                                                                 "transpose"}
IndexMap = Callable[[Sequence[str]], list[str]]  # may carry ``names``: the variables its indices read


class Scope:
    """Def/use of one function of generated code: the variables it assigns and those it reads from outside.

    Filled as rules bind and read values (:meth:`Emitter.define`, :meth:`Emitter.name`, :meth:`Emitter.dim`,
    loads through views, :meth:`Emitter.use` and :meth:`Emitter.bind` for a rule's own variables), in
    order, so that a function split out of generated code gets its arguments (``uses``) and results
    (``defs`` read later) from the equations, not from its text.  Scalar locals and a rule's
    temporaries that never leave its code are not tracked.
    """

    def __init__(self, defined: Iterable[str] = ()) -> None:
        self.defs: dict[str, None] = dict.fromkeys(defined)
        self.uses: dict[str, None] = {}  # read before (or without) being assigned here: from outside

    def define(self, name: str) -> None:
        self.defs.setdefault(name, None)

    def use(self, name: str) -> None:
        if name not in self.defs:
            self.uses.setdefault(name, None)


class Emitter:
    """The state of one module being generated: its lines, names, and how each value is bound.

    A value is bound to exactly one of: an array variable (``arrays``), a literal
    (``consts``: a ``full`` that elementwise code reads as a number), a scalar
    local inside the current elementwise loop nest (``scalars``), or a view
    (``views``: a getitem or transpose that only loops read, kept as an index
    map onto its source instead of a copy).  :func:`needs_array` decides which
    values must be arrays.  ``lowerings`` is the target's rule table (op name -> rule).
    """

    target = "?"

    def __init__(self, lowerings: Mapping[str, Callable], reserved: Iterable[str]) -> None:
        self.lowerings = lowerings
        self.lines = Lines(depth=1)
        self.names = Namer(reserved)
        self.arrays: dict[int, str] = {}
        self.consts: dict[int, str] = {}
        self.scalars: dict[int, str] = {}
        self.views: dict[int, tuple[Value, IndexMap]] = {}
        self.view_names: dict[int, str] = {}
        self.dim_names: dict[str, str] = {}  # dim symbol -> argument name
        self.helpers: dict[str, str] = {}  # helper name -> its source, in first-use order
        self.dest: dict[int, str] = {}  # value uid -> the array row to write it to (a scan's history)
        self.materialize: set[int] = set()  # values that must be arrays (read by non-elementwise code)
        self.dest_arrays: dict[int, str] = {}  # value uid -> the array whose row ``dest`` names
        self.const_uses: dict[int, list[str]] = {}  # a literal's variables (dims), read where it is inlined
        self.scope = Scope()  # def/use of the function being written
        self._unnamed = 0
        self._names: dict[int, str] = {}  # names chosen by name_values, taken by the first define
        self._where: str | None = None

    # -- names and bindings ---------------------------------------------------------------
    def define(self, v: Value) -> str:
        """A new array variable for ``v``, assigned here."""
        name = self._fresh_for(v)
        self.arrays[v.uid] = name
        self.scope.define(name)
        return name

    def bind(self, name: str) -> str:
        """A rule's own variable (a view, an index), assigned here, that code elsewhere may read."""
        self.scope.define(name)
        return name

    def use(self, *names: str) -> None:
        """Variables the code being written reads, where a rule writes them without :meth:`name`."""
        for name in names:
            self.scope.use(name)

    @contextmanager
    def in_scope(self, scope: Scope) -> Iterator[Scope]:
        """Def/use of what is written inside goes to ``scope`` (a function split out, a statement)."""
        outer, self.scope = self.scope, scope
        try:
            yield scope
        finally:
            self.scope = outer

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
                if src.uid in self.const_uses:
                    self.const_uses[v.uid] = self.const_uses[src.uid]
                return
        raise KeyError(f"{src!r} is not bound")

    def name(self, v: Value) -> str:
        """The array variable holding ``v``, read here."""
        name = self.peek(v)
        self.scope.use(name)
        return name

    def describe(self, v: Value, idx: Sequence[str]) -> str:
        """:meth:`load`'s text, for a comment: nothing is read."""
        with self.in_scope(Scope()):
            return self.load(v, idx)

    def peek(self, v: Value) -> str:
        """The array variable holding ``v``, for code written elsewhere (a comment, a statement)."""
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
        self.scope.use(self.dim_names[s])
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

    # -- what each target implements ----------------------------------------------------------
    def alloc(self, v: Value, fill: float | None = None) -> str:
        """Define ``v`` as a new array (or as its destination row, inside a scan); optionally filled."""
        raise NotImplementedError

    def phase(self, title: str) -> ContextManager[None]:
        """Code that may run once every earlier write is visible (see :mod:`specc.backends.loops`)."""
        raise NotImplementedError

    def parallel(self, shape: Shape) -> ContextManager[list[str]]:
        """The independent elements of ``shape``; yields their index names (see :mod:`specc.backends.loops`)."""
        raise NotImplementedError

    def add_at(self, array: str, idx: Sequence[str], value: str) -> None:
        """``array[idx] += value``, atomically where elements run at once."""
        raise NotImplementedError

    def copy(self, dst: str, lead: Sequence[str], src: Value) -> None:
        """``dst[*lead, ...] = src``, element by element."""
        raise NotImplementedError

    def helper(self, kind: str, dtype: str | None = None) -> str:
        """The name of a helper function, adding its source to the module on first use."""
        raise NotImplementedError

    def transpose_view(self, eqn: Eqn) -> bool:
        """Bind a transpose's result without code of its own when the target can (the CPU: ``x.T`` for BLAS)."""
        return False

    def index_value(self, base: str, kind: str, args: Sequence[str]) -> str:
        """A checked run-time index (helper ``kind``: ``wrap_index`` or ``slice_start`` of ``args``) bound to a
        new variable that the code here reads."""
        name = self.temp(base)
        self.lines(f"{self.bind(name)} = {self.helper(kind)}({', '.join(args)})")
        return name

    # -- arrays and loops -------------------------------------------------------------------
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
            self.use(*self.const_uses.get(v.uid, ()))
            return self.consts[v.uid]
        if v.uid in self.views:
            src, index_map = self.views[v.uid]
            text = self.load(src, index_map(idx))
            self.use(*getattr(index_map, "names", ()))  # they follow the array's name in the text
            return text
        return self.at(self.name(v), idx)

    # -- equations --------------------------------------------------------------------------
    @staticmethod
    def location(eqn: Eqn) -> tuple[str, str] | None:
        """(``file:line``, the source line), both escaped, or None for an equation without a source."""
        loc = eqn.loc
        if loc is None or loc.source is None:
            return None
        where = escape(f"{PurePath(loc.source.name).name}:{loc.line}")
        return where, escape(loc.source.line(loc.line).strip())

    def head(self, eqn: Eqn) -> None:
        """The comment over an equation's code: file:line, op, and the source line (once per line)."""
        place = self.location(eqn)
        if place is None:
            self.lines.comment(eqn.op)
            self._where = None
            return
        where, line = place
        if where == self._where:
            self.lines.comment(f"{where} {eqn.op}")
        else:
            self.lines.blank()
            self.lines.comment(f"{where} {eqn.op}: {line}")
        self._where = where

    def emit_graph(self, graph: Graph) -> None:
        """The code of every equation of ``graph``, its inputs being bound already."""
        self.materialize |= needs_array(graph)
        for eqn in graph.eqns:
            rule = self.lowerings.get(eqn.op)
            if rule is None:
                raise NotImplementedError(f"no {self.target.upper()} lowering for op '{eqn.op}'")
            self.head(eqn)
            self.apply(rule, eqn)

    def apply(self, rule: Callable[["Emitter", Eqn], None], eqn: Eqn) -> None:
        """Run one equation's lowering rule."""
        rule(self, eqn)


def needs_array(graph: Graph) -> set[int]:
    """Values that must exist as arrays: graph outputs, and inputs of equations whose code indexes arrays
    directly (everything but elementwise loops and copies, which read through :meth:`Emitter.load`)."""
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


__all__ = ["ELEMENT_READERS", "NP_DTYPES", "PYTHON_NAMES", "Emitter", "Scope", "graph_dims", "needs_array"]
