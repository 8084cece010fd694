"""The reference interpreter: runs any checked IR graph with NumPy.

In: a :class:`~specc.ir.core.Graph` (or a Program) and NumPy arrays for its inputs,
the run-time sizes of its symbolic dims, a seed and a training flag.
Out: NumPy arrays for its outputs.

Every backend is tested against this: it is written for clarity, in float32
or float64 as the IR says, one op reference (``ops.REGISTRY[op].ref``) per
equation, the same shape as every other interpreter in specc: an environment,
read/write, a loop over equations.  :data:`INTERP` is the interpreter as a
target (``specc.compile(..., target="interp")``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..ir.core import Graph, Value
from ..ops import REGISTRY, RefContext
from .base import Lowerings


def run_graph(graph: Graph, args: Sequence[np.ndarray], ctx: RefContext) -> list[np.ndarray]:
    env: dict[int, np.ndarray] = {}

    def read(v: Value) -> np.ndarray:
        return env[v.uid]

    def write(v: Value, x: np.ndarray) -> None:
        env[v.uid] = x

    if len(args) != len(graph.inputs):
        raise ValueError(f"graph takes {len(graph.inputs)} inputs, got {len(args)}")
    for v, x in zip(graph.inputs, args):
        write(v, x)
    for eqn in graph.eqns:
        outs = REGISTRY[eqn.op].ref(ctx, [read(v) for v in eqn.inputs], dict(eqn.params))
        for v, x in zip(eqn.outputs, outs):
            write(v, x)
    return [read(v) for v in graph.outputs]


def interpret(graph: Graph, args: Sequence[np.ndarray], dims: Mapping[str, int], *, seed: int = 0,
              training: bool = True) -> list[np.ndarray]:
    ctx = RefContext(dict(dims), seed=seed, training=training, run_graph=run_graph)
    return run_graph(graph, args, ctx)


class InterpBackend:
    """The reference interpreter as a target: it runs the IR itself, nothing is generated or compiled."""

    name = "interp"
    label = "reference interpreter"
    compiles = False
    device_resident = False

    def require(self) -> None:
        """NumPy only: it always runs."""

    def generator(self) -> Any:
        raise ValueError("the interp target runs the IR itself: it has no code generator")

    def lowerings(self) -> Lowerings:
        return Lowerings(self.name)

    def load(self, graph: Graph, module: Any, load: Any) -> Any:
        raise ValueError("the interp target runs the IR itself: it loads no kernels")


INTERP = InterpBackend()
