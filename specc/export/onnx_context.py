"""The ONNX graph under construction: names, nodes, constants and run-time sizes.

In: what the lowering rules ask for (a node, a constant, the run-time value of a
symbolic dim such as ``B`` or ``T - 1``, an ONNX type for an IR value).
Out: a list of ONNX nodes (``onnx.helper.make_node``) for one graph, the model's or a
Scan body's; a body reads its parents' names (constants, sizes, parameters) as ONNX
outer scope.  Sizes come from the graph inputs' shapes (``Shape``), computed once per
graph.  :meth:`Lowering.lower` applies a rule table (op name -> rule) to equations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ..errors import ExportError, Span
from ..ir.core import NUMPY_DTYPES, Eqn, TensorType
from ..ir.dims import Dim, parse_dim

ONNX_DTYPES = {"f32": TensorProto.FLOAT, "f64": TensorProto.DOUBLE, "i32": TensorProto.INT32}
INT64_MAX = np.iinfo(np.int64).max
Rule = Callable[["Lowering", Eqn, list[str]], "str | list[str]"]


class Lowering:
    """One ONNX graph under construction: its nodes, fresh names (shared with parent graphs), run-time sizes."""

    def __init__(self, rules: Mapping[str, Rule], taken: set[str], sizes: Mapping[str, tuple[str, int]],
                 fixed: Mapping[str, int], parent: Lowering | None = None, cells: bool = True):
        self.rules = rules  # op name -> rule (specc.export.onnx_rules.RULES)
        self.cells = cells  # standard LSTM/GRU cells as ONNX's LSTM/GRU ops (else every recurrence is a Scan)
        self.read: set[int] = set()  # values the equations being lowered read, or the graph returns
        self.nodes: list[Any] = []
        self.taken = taken  # every name used in the model, subgraphs included (ONNX wants them unique)
        self.sizes = sizes  # symbolic dim -> (graph input, axis) that holds it
        self.fixed = {k: Dim.const(v) for k, v in fixed.items()}
        self.parent = parent
        self._dims: dict[Any, str] = {}  # Dim or shape -> its int64 tensor
        self._consts: dict[tuple, str] = {}
        self.loc: Span | None = None
        self.hint = "t"  # the spec's name for what the current equation computes

    # -- names and nodes ------------------------------------------------------------------
    def fresh(self, hint: str | None = None) -> str:
        base = re.sub(r"[^A-Za-z0-9_.]", "_", (hint or self.hint).replace("[", "_").replace("]", "")) or "t"
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def node(self, op_type: str, inputs: list[str], *, hint: str | list[str] | None = None, n_out: int = 1,
             **attrs: Any):
        """Append one node; returns its output name (a list of names when ``n_out > 1``, one hint each)."""
        hints = hint if isinstance(hint, list) else [hint] * n_out
        outs = [self.fresh(h) for h in hints]
        doc = f"{self.loc}: {self.loc.source.line(self.loc.line).strip()}" if self.loc and self.loc.source else None
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], doc_string=doc, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, value: Any, dtype: Any, hint: str = "const") -> str:
        """A Constant node holding ``value`` as a NumPy array of ``dtype`` (one per value, reused by subgraphs)."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        g: Lowering | None = self
        while g is not None:
            if key in g._consts:
                return g._consts[key]
            g = g.parent
        self._consts[key] = self.node("Constant", [], hint=hint, value=numpy_helper.from_array(arr))
        return self._consts[key]

    def scalar(self, value: float, dtype: str) -> str:
        return self.const(value, NUMPY_DTYPES[dtype])

    def int64s(self, values: list[int]) -> str:
        return self.const(values, np.int64, hint="ints")

    def child(self) -> Lowering:
        """A graph nested in this one (a Scan body)."""
        sub = Lowering(self.rules, self.taken, self.sizes, {}, parent=self, cells=self.cells)
        sub.fixed = self.fixed
        return sub

    # -- sizes ----------------------------------------------------------------------------
    def known(self, d: Dim) -> Dim:
        """``d`` with the dims the spec fixes replaced by their values."""
        return d.substitute(self.fixed) if self.fixed else d

    def dim(self, d: Dim) -> str:
        """An int64 tensor of shape [1] holding the run-time value of ``d``."""
        d = self.known(d)
        if d.is_const:
            return self.int64s([d.value])
        found = self._cached(d)
        if found:
            return found
        total = None
        for monomial, coeff in d.terms:
            factors = [self._symbol(s) for s in monomial]
            if coeff != 1 or not monomial:
                factors.append(self.int64s([coeff]))
            term = factors[0]
            for f in factors[1:]:
                term = self.node("Mul", [term, f], hint="size")
            total = term if total is None else self.node("Add", [total, term], hint="size")
        self._dims[d] = total
        return total

    def _cached(self, key: Any) -> str | None:
        """A size computed earlier in this graph or an enclosing one (visible here as ONNX outer scope)."""
        g: Lowering | None = self
        while g is not None:
            if key in g._dims:
                return g._dims[key]
            g = g.parent
        return None

    def _symbol(self, s: str) -> str:
        if s.startswith("("):  # an opaque floor division "(expr // k)" (a convolution's output size)
            inner, k = s[1:-1].rsplit(" // ", 1)
            return self.node("Div", [self.dim(parse_dim(inner)), self.int64s([int(k)])], hint="size")
        if s not in self.sizes:
            raise ExportError(f"cannot compute the size '{s}' at run time: no exported input has an axis of that size",
                              self.loc, hint="export with --with-loss if only the labels carry it")
        src, axis = self.sizes[s]
        return self.node("Shape", [src], hint=s, start=axis, end=axis + 1)

    def shape(self, shape: tuple[Dim, ...]) -> str:
        """An int64 tensor [rank] holding a run-time shape."""
        shape = tuple(self.known(d) for d in shape)
        if all(d.is_const for d in shape):
            return self.int64s([d.value for d in shape])
        found = self._cached(shape)
        if not found:
            found = self._dims[shape] = self.node("Concat", [self.dim(d) for d in shape], hint="shape", axis=0)
        return found

    def value_info(self, name: str, t: TensorType) -> Any:
        """An ONNX type for ``name``: its dtype and shape, symbolic dims as named dynamic axes."""
        axes = []
        for d in t.shape:
            d = self.known(d)
            axes.append(d.value if d.is_const else d.as_symbol())  # None: a computed size, left unnamed
        return helper.make_tensor_value_info(name, ONNX_DTYPES[t.dtype], axes)

    # -- equations ------------------------------------------------------------------------
    def lower(self, eqns: tuple[Eqn, ...] | list[Eqn], env: dict[int, str], keep: tuple = ()) -> None:
        """Lower equations in order; ``env`` maps each IR value (by uid) to its ONNX name.

        ``keep``: the values the graph returns (with what the equations read, :attr:`read`
        while they are lowered: a rule may leave a value nobody reads uncomputed).
        """
        outer_read = self.read
        self.read = {v.uid for e in eqns for v in e.inputs} | {v.uid for v in keep}
        try:
            for eqn in eqns:
                self._lower_one(eqn, env)
        finally:
            self.read = outer_read

    def _lower_one(self, eqn: Eqn, env: dict[int, str]) -> None:
        rule = self.rules.get(eqn.op)
        if rule is None:
            raise ExportError(f"op '{eqn.op}' has no ONNX export rule", eqn.loc,
                              hint="see docs/export.md for the ops that export")
        self.loc = eqn.loc
        self.hint = eqn.outputs[0].name or eqn.op if eqn.outputs else eqn.op
        outs = rule(self, eqn, [env[v.uid] for v in eqn.inputs])
        outs = [outs] if isinstance(outs, str) else list(outs)
        if len(outs) != len(eqn.outputs):
            raise AssertionError(f"ONNX rule for {eqn.op} gave {len(outs)} outputs, not {len(eqn.outputs)}")
        env.update({v.uid: o for v, o in zip(eqn.outputs, outs)})
