"""Lifting random draws out of a graph (a lowering stage shared by every target).

In: a Graph, possibly with random equations (``op.random``: normal, uniform,
dropout_mask), at top level or inside recurrence bodies.
Out: the same computation as a Graph without random equations, whose inputs
are the original inputs followed by one input per lifted draw, and the list
of :class:`RandomDraw` records that say what each extra input must hold.

Generated kernels never draw random numbers: the runtime draws them with
NumPy, outside the kernel, with exactly the reference interpreter's scheme
(``RefContext.rng(stream)`` seeded by (seed, stream, loop indices)), so that
a compiled graph reproduces the interpreter bit for bit, dropout and the
VAE's noise included.  A draw inside a recurrence body becomes a sequence
``[T, ...]`` read at ``[t]`` like ``x[t]``: row ``t`` holds what the
interpreter draws at step ``t`` (its ``ctx.path`` ends in ``t``), in a
reversed recurrence too.  Nested recurrences stack: ``[T_outer, T_inner, ...]``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..ir.dims import Dim
from ..errors import IRError
from ..ir.core import Eqn, Graph, TensorType, Value, freeze
from ..ops import REGISTRY, RefContext
from ..ir.scan import split_inputs


@dataclass(frozen=True, eq=False)
class RandomDraw:
    """One random equation turned into a graph input."""

    op: str
    params: Mapping[str, Any]
    value: Value  # the new graph input: [*loops, *shape]
    loops: tuple[Dim, ...]  # lengths of the enclosing recurrences, outermost first

    def sample(self, dims: Mapping[str, int], seed: int, training: bool) -> np.ndarray:
        """What the reference interpreter draws for this equation, at every step of its loops."""
        counts = [d.evaluate(dims) for d in self.loops]
        ref = REGISTRY[self.op].ref
        params = dict(self.params)
        shape = tuple(d.evaluate(dims) for d in self.value.shape)
        out = np.empty(shape, dtype=_np_dtype(self.value.dtype))
        for path in itertools.product(*(range(n) for n in counts)):
            ctx = RefContext(dict(dims), seed=seed, training=training, path=tuple(path))
            out[path] = ref(ctx, [], params)[0]
        return out


def lift_random(graph: Graph) -> tuple[Graph, list[RandomDraw]]:
    """``graph`` with its random equations replaced by new trailing inputs, and what to draw for them."""
    lifted, draws = _lift(graph)
    if not draws:
        return graph, []
    return Graph(graph.inputs + tuple(d.value for d in draws), lifted.eqns, lifted.outputs), draws


def _lift(graph: Graph) -> tuple[Graph, list[RandomDraw]]:
    """Returns the graph without random equations (inputs unchanged) and the draws it now reads."""
    eqns: list[Eqn] = []
    draws: list[RandomDraw] = []
    for eqn in graph.eqns:
        op = REGISTRY[eqn.op]
        if op.random:
            if eqn.inputs or len(eqn.outputs) != 1:
                raise IRError(f"cannot lift random op '{eqn.op}': it has inputs or several outputs", eqn.loc)
            draws.append(RandomDraw(eqn.op, eqn.params, eqn.outputs[0], ()))
        elif eqn.op == "scan":
            new_eqn, inner = _lift_scan(eqn)
            eqns.append(new_eqn)
            draws.extend(inner)
        else:
            body = eqn.params.get("body")
            if isinstance(body, Graph) and any(REGISTRY[e.op].random for e in body.walk()):
                raise IRError(f"random op inside the body of '{eqn.op}' cannot be lifted", eqn.loc)
            eqns.append(eqn)
    if not draws:
        return graph, []
    return Graph(graph.inputs, tuple(eqns), graph.outputs), draws


def _lift_scan(eqn: Eqn) -> tuple[Eqn, list[RandomDraw]]:
    """A scan whose body draws becomes a scan over extra sequences, one per draw."""
    p = eqn.params
    body: Graph = p["body"]
    new_body, inner = _lift(body)
    if not inner:
        return eqn, []
    length: Dim = p["length"]
    consts, seqs, inits = split_inputs(eqn.inputs, p)
    nc, ns = p["n_consts"], p["n_seqs"]
    outer: list[RandomDraw] = []
    for d in inner:
        v = d.value
        steps = Value(TensorType(v.dtype, (length, *v.shape)), name=f"{v.name or d.op}.steps")
        outer.append(RandomDraw(d.op, d.params, steps, (length, *d.loops)))
    body_inputs = body.inputs[:nc + ns] + tuple(d.value for d in inner) + body.inputs[nc + ns:]
    params = dict(p, body=Graph(body_inputs, new_body.eqns, new_body.outputs), n_seqs=ns + len(inner))
    inputs = (*consts, *seqs, *(d.value for d in outer), *inits)
    return Eqn(eqn.op, inputs, eqn.outputs, freeze(params), eqn.loc), outer


def _np_dtype(dt: str) -> Any:
    from ..ir.core import NUMPY_DTYPES

    return NUMPY_DTYPES[dt]
