"""The fused elementwise op: ``fused``.

A chain of elementwise ops that a code generator runs as one loop nest.
Params: ``body`` — a Graph of elementwise ops only (broadcasting NumPy-style
between its inputs); the equation's inputs are the body's inputs, its
outputs the body's outputs.  The elementwise-fusion pass creates these; the
reference evaluation simply runs the body.
"""

from __future__ import annotations

from ..errors import IRError
from ..ir.core import Eqn, Graph
from .core import REGISTRY, GraphVerifier, Op, ShapeRuleError, register


def _infer(ins, p):
    body: Graph = p["body"]
    if [v.type for v in body.inputs] != list(ins):
        raise ShapeRuleError("fused: input types differ from the body's inputs")
    return [v.type for v in body.outputs]


def _verify(eqn: Eqn, where: str, verify: GraphVerifier) -> None:
    body: Graph = eqn.params["body"]
    for e in body.eqns:
        if not REGISTRY[e.op].elementwise:
            raise IRError(f"{where}: fused body holds a non-elementwise op '{e.op}'", e.loc)
    verify(body, where=f"{where} / fused body")


def _ref(ctx, ins, p):
    return ctx.run_graph(p["body"], list(ins), ctx)


register(Op("fused", _infer, _ref, n_inputs=None, extra_verify=_verify,
            doc="elementwise ops fused into one loop; params: body (a Graph)",
            no_vjp="built by the fusion pass, which runs after differentiation"))
