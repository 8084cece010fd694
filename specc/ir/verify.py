"""The IR verifier: checks a graph against the op registry.

In: a :class:`~specc.ir.core.Graph` or :class:`~specc.ir.core.Program`.
Out: nothing, or an :class:`~specc.errors.IRError` naming the first broken
invariant: SSA (each value defined once), definition before use, each
equation's output types equal to what its op's shape rule gives, and the
op's own checks (:meth:`specc.ops.core.Op.verify`).  An op whose params hold
a body graph (``scan``, ``fused``) is handed :func:`verify` for it, so the
ops never import the verifier.

It lives apart from :mod:`specc.ir.core` because it reads the op registry,
and the ops are built on the core types.
"""

from __future__ import annotations

from ..errors import IRError
from ..ops import REGISTRY
from .core import Graph, Program, Value


def verify(graph: Graph, *, where: str = "graph") -> None:
    """Check SSA, definition before use, and each equation against its op's shape rule."""
    defined: set[int] = set()
    for v in graph.inputs:
        _define(v, defined, where)
    for eqn in graph.eqns:
        for v in eqn.inputs:
            if v.uid not in defined:
                raise IRError(f"{where}: {eqn.op} uses {v!r} before it is defined", eqn.loc)
        op = REGISTRY.get(eqn.op)
        if op is None:
            raise IRError(f"{where}: unknown op '{eqn.op}'", eqn.loc)
        try:
            expected = op.infer([v.type for v in eqn.inputs], dict(eqn.params))
        except Exception as e:  # a shape rule rejecting its own graph is a compiler bug
            raise IRError(f"{where}: {eqn.op}: {e}", eqn.loc) from None
        got = [v.type for v in eqn.outputs]
        if list(expected) != got:
            raise IRError(
                f"{where}: {eqn.op} outputs {', '.join(map(str, got))} but its shape rule gives "
                f"{', '.join(map(str, expected))}",
                eqn.loc,
            )
        op.verify(eqn, where, verify)
        for v in eqn.outputs:
            _define(v, defined, where)
    for v in graph.outputs:
        if v.uid not in defined:
            raise IRError(f"{where}: output {v!r} is never defined")


def _define(v: Value, defined: set[int], where: str) -> None:
    if v.uid in defined:
        raise IRError(f"{where}: {v!r} is defined twice (not SSA)")
    defined.add(v.uid)


def verify_program(prog: Program) -> None:
    """:func:`verify` on the model's graph, and the model's own invariants (a scalar loss first)."""
    g = prog.graph
    if len(g.inputs) != len(prog.inputs) + len(prog.params):
        raise IRError("program inputs do not match its graph's inputs")
    if len(g.outputs) != len(prog.output_names) + len(prog.state_updates):
        raise IRError("program output names do not match its graph's outputs")
    if prog.output_names[:1] != ("loss",):
        raise IRError("the first program output must be 'loss'")
    if g.outputs[0].shape != ():
        raise IRError("loss must be a scalar")
    verify(g, where=f"model {prog.name}")
