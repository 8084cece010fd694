"""The IR: small immutable typed records.

In: nothing (the elaborator builds it, passes rewrite it).
Out: :class:`Graph` (SSA: inputs, equations, outputs) and :class:`Program`
(a model: its graph plus what each graph input and output means).

* A :class:`Value` has a :class:`TensorType` (dtype and symbolic shape) and
  compares by identity.
* An :class:`Eqn` is one op applied to values: ``op``, ``inputs``,
  ``params`` (static attributes, read-only), ``outputs`` and the ``.nn`` span
  it came from.
* A recurrence is one ``scan`` equation whose ``body`` parameter is a Graph.

:func:`specc.ir.verify.verify` checks the invariants (SSA, defined-before-used,
each equation's types agree with its op's shape rule, scan bodies well formed).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import numpy as np

from .dims import Dim, Shape, shape_str
from ..errors import Span

DTYPES = ("f32", "f64", "i32")
NUMPY_DTYPES = {"f32": np.float32, "f64": np.float64, "i32": np.int32}
FLOAT_DTYPES = ("f32", "f64")


def dtype_of_numpy(dt: np.dtype) -> str | None:
    for name, t in NUMPY_DTYPES.items():
        if np.dtype(t) == np.dtype(dt):
            return name
    return None


@dataclass(frozen=True, slots=True)
class TensorType:
    dtype: str
    shape: Shape

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def __str__(self) -> str:
        return f"{self.dtype}{shape_str(self.shape)}"


_ids = itertools.count()


@dataclass(frozen=True, slots=True, eq=False)
class Value:
    type: TensorType
    name: str | None = None
    uid: int = field(default_factory=lambda: next(_ids))

    @property
    def shape(self) -> Shape:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"Value({self.name or '_'}#{self.uid}: {self.type})"


def freeze(params: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(params or {}))


@dataclass(frozen=True, slots=True, eq=False)
class Eqn:
    op: str
    inputs: tuple[Value, ...]
    outputs: tuple[Value, ...]
    params: Mapping[str, Any]
    loc: Span | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Graph:
    inputs: tuple[Value, ...]
    eqns: tuple[Eqn, ...]
    outputs: tuple[Value, ...]

    def walk(self) -> Iterator[Eqn]:
        """Every equation, including those inside scan bodies (pre-order)."""
        for e in self.eqns:
            yield e
            body = e.params.get("body")
            if isinstance(body, Graph):
                yield from body.walk()


@dataclass(frozen=True, slots=True)
class Initializer:
    kind: str  # zeros | ones | normal | uniform | glorot | he | orthogonal | constant
    args: tuple[float, ...] = ()

    def __str__(self) -> str:
        return self.kind + (f"({', '.join(f'{a:g}' for a in self.args)})" if self.args else "")


@dataclass(frozen=True, slots=True)
class ParamInfo:
    name: str
    value: Value
    init: Initializer
    loc: Span | None
    state: bool = False  # a `state` (running statistics): not trained, replaced by its update after a step


@dataclass(frozen=True, slots=True)
class InputInfo:
    name: str
    value: Value
    loc: Span | None


@dataclass(frozen=True, slots=True)
class Program:
    """A model. ``graph.inputs`` = data inputs then parameters; ``graph.outputs`` = ``outputs``."""

    name: str
    graph: Graph
    inputs: tuple[InputInfo, ...]
    params: tuple[ParamInfo, ...]
    output_names: tuple[str, ...]  # 'loss' first, then the `output` names
    dims: Mapping[str, int]  # dims fixed by the spec (`dim H = 64`)
    train: Mapping[str, Any]  # the spec's training block, validated later by pydantic
    loc: Span | None = None
    # each `state`'s new value after a training step: (parameter name, index in graph.outputs past the
    # named outputs); computed by the value-and-grad graph, which the training loop writes back
    state_updates: tuple[tuple[str, int], ...] = ()

    @property
    def float_dtype(self) -> str:
        for v in itertools.chain((i.value for i in self.inputs), (p.value for p in self.params)):
            if v.type.is_float:
                return v.dtype
        return "f32"

    def output(self, name: str) -> Value:
        return self.graph.outputs[self.output_names.index(name)]


def dim_symbols(shape: Shape) -> set[str]:
    out: set[str] = set()
    for d in shape:
        out |= d.symbols
    return out


def is_scalar_shape(shape: Shape) -> bool:
    return len(shape) == 0


def same_shape(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(x == y for x, y in zip(a, b))


__all__ = [
    "Dim",
    "Eqn",
    "Graph",
    "InputInfo",
    "Initializer",
    "ParamInfo",
    "Program",
    "TensorType",
    "Value",
]


def prune(graph: Graph, outputs: tuple[Value, ...] | None = None) -> Graph:
    """The graph restricted to the equations that ``outputs`` (default: its own) need."""
    outputs = graph.outputs if outputs is None else outputs
    live = {v.uid for v in outputs}
    kept = []
    for eqn in reversed(graph.eqns):
        if any(o.uid in live for o in eqn.outputs):
            kept.append(eqn)
            live.update(i.uid for i in eqn.inputs)
    return Graph(graph.inputs, tuple(reversed(kept)), tuple(outputs))
