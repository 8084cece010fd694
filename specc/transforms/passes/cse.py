"""Common-subexpression elimination.

In: a Graph.  Out: the Graph where an equation repeating an earlier one (same
op, same inputs, equal params) is gone and its outputs replaced by the
earlier outputs.  Inputs of ``add``, ``mul``, ``maximum`` and ``minimum``
count in either order.

Never merged: random draws (two draws are two different samples) and
equations holding a body.  A recurrence that receives the same outer value
twice as a const (or as a sequence) reads it through one body input.
Scan bodies are handled on their own (values do not cross graph boundaries).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ...ir.dims import Dim
from ...ir.core import Eqn, Graph, Value
from ...ops import REGISTRY
from .rewrite import has_body, new_graph, resolve, substitute, with_inputs, with_params
from ...ir.scan import Scan, unpack_scan

COMMUTATIVE = {"add", "mul", "maximum", "minimum"}


def cse(graph: Graph) -> Graph:
    seen: dict[Hashable, Eqn] = {}
    subst: dict[int, Value] = {}
    eqns = []
    for e in graph.eqns:
        e = with_inputs(e, [resolve(v, subst) for v in e.inputs])
        if e.op == "scan":
            e = _dedupe_scan_inputs(e)
            body = cse(e.params["body"])
            e = e if body is e.params["body"] else with_params(e, body=body)
        key = _key(e)
        if key is not None and key in seen:
            for old, new in zip(e.outputs, seen[key].outputs):
                subst[old.uid] = new
            continue
        if key is not None:
            seen[key] = e
        eqns.append(e)
    return new_graph(graph, graph.inputs, eqns, [resolve(v, subst) for v in graph.outputs])


def _key(e: Eqn) -> Hashable | None:
    if REGISTRY[e.op].random or has_body(e):
        return None
    uids = tuple(v.uid for v in e.inputs)
    if e.op in COMMUTATIVE:
        uids = tuple(sorted(uids))
    try:
        params = tuple(sorted((k, _hashable(v)) for k, v in e.params.items()))
        hash(params)
    except TypeError:
        return None
    return (e.op, uids, params)


def _hashable(x: Any) -> Hashable:
    """A key telling params apart exactly: 1 from 1.0 and True, 0.0 from -0.0, and nan equal to itself."""
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(_hashable(y) for y in x))
    if isinstance(x, float):
        return ("float", repr(x))
    if isinstance(x, Dim):
        return ("dim", x)
    return (type(x).__name__, x)


def _dedupe_scan_inputs(eqn: Eqn) -> Eqn:
    scan = unpack_scan(eqn)
    subst: dict[int, Value] = {}

    def dedupe(pairs: list[tuple[Value, Value]]) -> list[tuple[Value, Value]]:
        first: dict[int, Value] = {}
        kept = []
        for outer, inner in pairs:
            if outer.uid in first:
                subst[inner.uid] = first[outer.uid]
            else:
                first[outer.uid] = inner
                kept.append((outer, inner))
        return kept

    consts, seqs = dedupe(scan.consts), dedupe(scan.seqs)
    if not subst:
        return eqn
    states = scan.states
    for s in states:
        s.out = resolve(s.out, subst)
    new = Scan(consts, seqs, states, substitute(scan.eqns, subst), scan.params, scan.loc)
    return new.pack()
