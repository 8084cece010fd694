"""The IR builder: equations appended one at a time, typed by their op's shape rule.

In: op names, input values and params, one equation at a time.
Out: a list of :class:`~specc.ir.core.Eqn` (``eqns``) or a
:class:`~specc.ir.core.Graph` (:meth:`GraphBuilder.build`).

One class serves every stage that writes IR:

* the elaborator and autodiff build whole graphs.  A builder for a recurrence
  body has a ``parent``; using an outer value inside the body captures it as a
  body input (a scan "const"), recursively through nested bodies.  A root
  builder rejects a value it has never seen (a compiler bug).
* passes emit equations to splice into a graph that already defines their
  inputs (``splice=True``: values from outside are used as they are), often
  reusing the values an old equation defined (``outputs=``).

Every equation gets the builder's default ``loc`` unless one is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Span
from ..ops import REGISTRY
from .core import Eqn, Graph, TensorType, Value, freeze


@dataclass
class Capture:
    outer: Value  # the value as the parent builder knows it
    inner: Value  # the body input standing for it


class GraphBuilder:
    def __init__(self, parent: GraphBuilder | None = None, *, loc: Span | None = None, splice: bool = False):
        self.parent = parent
        self.loc = loc  # the span of equations emitted without one
        self.splice = splice  # values defined outside this builder are used as they are
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
            if self.splice:
                return v
            raise AssertionError(f"{v!r} is not defined in any enclosing graph")
        outer = self.parent.use(v)
        inner = Value(v.type, v.name)
        self.captures[v.uid] = Capture(outer, inner)
        self.local.add(inner.uid)
        return inner

    def append(self, eqn: Eqn) -> None:
        """Append an equation built elsewhere (its inputs are taken as they are)."""
        self.eqns.append(eqn)
        self.local.update(v.uid for v in eqn.outputs)

    def extend(self, eqns: Iterable[Eqn]) -> None:
        for e in eqns:
            self.append(e)

    def emit(
        self,
        op: str,
        inputs: Sequence[Value],
        params: Mapping[str, Any] | None = None,
        loc: Span | None = None,
        names: Sequence[str | None] | None = None,
        *,
        outputs: Sequence[Value] | None = None,
    ) -> list[Value]:
        """Append one equation; the op's shape rule types its outputs (and may raise ShapeRuleError).

        ``outputs``: reuse these values as the equation's outputs (their types must agree
        with the rule's), so that the readers of an old equation read the new one.
        """
        ins = [self.use(v) for v in inputs]
        params = dict(params or {})
        types: list[TensorType] = REGISTRY[op].infer([v.type for v in ins], params)
        if outputs is not None:
            if [v.type for v in outputs] != list(types):
                raise AssertionError(f"{op}: outputs {list(map(str, outputs))} but the rule gives {types}")
            outs = list(outputs)
        else:
            names = names or [None] * len(types)
            outs = [Value(t, n) for t, n in zip(types, names)]
        self.append(Eqn(op, tuple(ins), tuple(outs), freeze(params), loc or self.loc))
        return outs

    def emit1(self, op: str, inputs: Sequence[Value], params: Mapping[str, Any] | None = None,
              loc: Span | None = None, name: str | None = None, *, output: Value | None = None) -> Value:
        return self.emit(op, inputs, params, loc, [name], outputs=None if output is None else [output])[0]

    def build(self, outputs: Sequence[Value], inputs: Sequence[Value] | None = None) -> Graph:
        return Graph(tuple(self.inputs if inputs is None else inputs), tuple(self.eqns), tuple(outputs))
