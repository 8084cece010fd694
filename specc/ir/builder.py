"""Incremental construction of IR graphs, used by the elaborator.

In: op names, input values and params, one equation at a time.
Out: a :class:`~specc.ir.core.Graph`.  A builder for a recurrence body has a
parent; using an outer value inside the body captures it as a body input
(a scan "const"), recursively through nested bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import Span
from .core import Eqn, Graph, TensorType, Value, freeze
from ..ops import REGISTRY


@dataclass
class Capture:
    outer: Value  # the value as the parent builder knows it
    inner: Value  # the body input standing for it


class GraphBuilder:
    def __init__(self, parent: "GraphBuilder | None" = None):
        self.parent = parent
        self.inputs: list[Value] = []
        self.eqns: list[Eqn] = []
        self.local: set[int] = set()
        self.captures: dict[int, Capture] = {}  # keyed by the uid of the value named in the scope

    def add_input(self, v: Value) -> Value:
        self.inputs.append(v)
        self.local.add(v.uid)
        return v

    def owns(self, v: Value) -> bool:
        return v.uid in self.local

    def use(self, v: Value) -> Value:
        """The value to use in this graph for ``v`` (captured from outside if needed)."""
        if v.uid in self.local:
            return v
        if v.uid in self.captures:
            return self.captures[v.uid].inner
        if self.parent is None:
            raise AssertionError(f"{v!r} is not defined in any enclosing graph")
        outer = self.parent.use(v)
        inner = Value(v.type, v.name)
        self.captures[v.uid] = Capture(outer, inner)
        self.local.add(inner.uid)
        return inner

    def emit(
        self,
        op: str,
        inputs: list[Value],
        params: Mapping[str, Any] | None = None,
        loc: Span | None = None,
        names: list[str | None] | None = None,
    ) -> list[Value]:
        """Append one equation; the op's shape rule types its outputs (and may raise ShapeRuleError)."""
        ins = [self.use(v) for v in inputs]
        params = dict(params or {})
        types: list[TensorType] = REGISTRY[op].infer([v.type for v in ins], params)
        names = names or [None] * len(types)
        outs = [Value(t, n) for t, n in zip(types, names)]
        self.eqns.append(Eqn(op, tuple(ins), tuple(outs), freeze(params), loc))
        self.local.update(v.uid for v in outs)
        return outs

    def emit1(self, op: str, inputs: list[Value], params=None, loc=None, name=None) -> Value:
        return self.emit(op, inputs, params, loc, [name])[0]

    def build(self, outputs: list[Value], inputs: list[Value] | None = None) -> Graph:
        return Graph(tuple(self.inputs if inputs is None else inputs), tuple(self.eqns), tuple(outputs))
