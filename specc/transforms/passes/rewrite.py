"""What the passes share: substituting values, equation and graph helpers, loop classes.

In: IR records (:mod:`specc.ir.core`).  Out: new IR records; nothing is mutated.

* equations are emitted by :class:`specc.ir.builder.GraphBuilder` (``splice=True``).
* :func:`substitute` renames the inputs of equations (a value replaced by
  another); :func:`with_inputs` / :func:`with_params` copy one equation.
* scans are taken apart and packed back by :mod:`specc.ir.scan`.
* :func:`map_bodies` applies a pass to the body of every scan at the top
  level of a graph.
* :func:`loop_classes` tells, inside a scan body, which values are
  loop-invariant (``C``), per-step functions of the sequence slices (``S``)
  or depend on the states or on random draws (``V``).

Every helper returns its input object itself when nothing changed, so that
``new is old`` tells a pipeline that a pass did nothing.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ...errors import Span
from ...ir.core import Eqn, Graph, TensorType, Value, freeze
from ...ir.scan import Scan
from ...ops import REGISTRY

Pass = Callable[[Graph], Graph]


# ---- equations -------------------------------------------------------------------------
def has_body(eqn: Eqn) -> bool:
    return isinstance(eqn.params.get("body"), Graph)


def with_inputs(eqn: Eqn, inputs: Sequence[Value]) -> Eqn:
    if len(inputs) == len(eqn.inputs) and all(a is b for a, b in zip(inputs, eqn.inputs)):
        return eqn
    return Eqn(eqn.op, tuple(inputs), eqn.outputs, eqn.params, eqn.loc)


def with_params(eqn: Eqn, **params: Any) -> Eqn:
    return Eqn(eqn.op, eqn.inputs, eqn.outputs, freeze({**eqn.params, **params}), eqn.loc)


def fresh(v: Value, type_: TensorType | None = None) -> Value:
    """A new value like ``v`` (same name hint)."""
    return Value(type_ or v.type, v.name)


def substitute(eqns: Iterable[Eqn], subst: Mapping[int, Value]) -> list[Eqn]:
    """The equations with every input ``v`` replaced by ``subst[v.uid]`` (when present)."""
    if not subst:
        return list(eqns)
    return [with_inputs(e, [subst.get(v.uid, v) for v in e.inputs]) for e in eqns]


def resolve(v: Value, subst: Mapping[int, Value]) -> Value:
    return subst.get(v.uid, v)


def new_graph(old: Graph, inputs: Sequence[Value], eqns: Sequence[Eqn], outputs: Sequence[Value]) -> Graph:
    """``old`` itself when nothing differs, else a new Graph."""
    if (len(inputs) == len(old.inputs) and len(eqns) == len(old.eqns) and len(outputs) == len(old.outputs)
            and all(a is b for a, b in zip(inputs, old.inputs)) and all(a is b for a, b in zip(eqns, old.eqns))
            and all(a is b for a, b in zip(outputs, old.outputs))):
        return old
    return Graph(tuple(inputs), tuple(eqns), tuple(outputs))


def map_bodies(graph: Graph, fn: Pass, *, fused: bool = False) -> Graph:
    """``graph`` with ``fn`` applied to the body of each scan (and fused, if asked) equation at its top level.

    ``fn`` must keep a body's inputs and outputs (their number, order and types).
    """
    eqns = []
    for e in graph.eqns:
        if has_body(e) and (e.op == "scan" or (fused and e.op == "fused")):
            body = fn(e.params["body"])
            if body is not e.params["body"]:
                e = with_params(e, body=body)
        eqns.append(e)
    return new_graph(graph, graph.inputs, eqns, graph.outputs)


def users(eqns: Iterable[Eqn]) -> dict[int, list[Eqn]]:
    """uid -> the equations reading that value."""
    out: dict[int, list[Eqn]] = {}
    for e in eqns:
        for v in e.inputs:
            out.setdefault(v.uid, []).append(e)
    return out


def producers(eqns: Iterable[Eqn]) -> dict[int, Eqn]:
    """uid -> the equation defining that value."""
    return {v.uid: e for e in eqns for v in e.outputs}


def prune_eqns(eqns: Sequence[Eqn], needed: Iterable[Value]) -> list[Eqn]:
    """The equations that ``needed`` depends on, in their order."""
    live = {v.uid for v in needed}
    kept = []
    for e in reversed(eqns):
        if any(o.uid in live for o in e.outputs):
            kept.append(e)
            live.update(v.uid for v in e.inputs)
    return kept[::-1]


def toposort(nodes: list[tuple[int, Eqn]]) -> list[Eqn]:
    """The equations in dependency order, otherwise in the order of their positions."""
    made = {v.uid: n for n, (_k, e) in enumerate(nodes) for v in e.outputs}
    waiting = [0] * len(nodes)
    after: dict[int, list[int]] = {}
    for n, (_k, e) in enumerate(nodes):
        deps = {made[v.uid] for v in e.inputs if v.uid in made}
        waiting[n] = len(deps)
        for d in deps:
            after.setdefault(d, []).append(n)
    ready = [(k, n) for n, (k, _e) in enumerate(nodes) if not waiting[n]]
    heapq.heapify(ready)
    out = []
    while ready:
        _k, n = heapq.heappop(ready)
        out.append(nodes[n][1])
        for m in after.get(n, ()):
            waiting[m] -= 1
            if not waiting[m]:
                heapq.heappush(ready, (nodes[m][0], m))
    if len(out) != len(nodes):
        raise AssertionError("fusion made a cycle")
    return out

def dependencies(eqns: Sequence[Eqn]) -> list[int]:
    """For each equation, a bitmask of the equations it depends on (directly or not)."""
    made = {v.uid: k for k, e in enumerate(eqns) for v in e.outputs}
    dep: list[int] = []
    for e in eqns:
        mask = 0
        for v in e.inputs:
            j = made.get(v.uid)
            if j is not None:
                mask |= (1 << j) | dep[j]
        dep.append(mask)
    return dep


def merged_loc(eqns: Iterable[Eqn]) -> Span | None:
    """One span covering the spans of ``eqns`` from the first one's file (others are ignored)."""
    loc = None
    for e in eqns:
        if e.loc is None:
            continue
        loc = e.loc if loc is None else loc.merge(e.loc)
    return loc


def is_scalar_full(eqn: Eqn) -> bool:
    return eqn.op == "full" and tuple(eqn.params["shape"]) == ()


def full_value(eqn: Eqn) -> float | int:
    return eqn.params["value"]


# ---- loop classes ----------------------------------------------------------------------
CONST, SEQ, VARYING = "C", "S", "V"


def loop_classes(scan: Scan) -> dict[int, str]:
    """uid -> C (a function of the consts only), S (of consts and sequence slices) or V (else).

    Random draws are V: each step draws anew.  Equations holding a body are V too
    (passes move single equations, not whole recurrences).
    """
    cls: dict[int, str] = {}
    for _o, i in scan.consts:
        cls[i.uid] = CONST
    for _o, i in scan.seqs:
        cls[i.uid] = SEQ
    for s in scan.states:
        for v in s.lagged:
            cls[v.uid] = VARYING
    for e in scan.eqns:
        c = eqn_class(e, cls)
        for v in e.outputs:
            cls[v.uid] = c
    return cls


def eqn_class(e: Eqn, cls: Mapping[int, str]) -> str:
    if REGISTRY[e.op].random or has_body(e):
        return VARYING
    ins = {cls[v.uid] for v in e.inputs}
    if VARYING in ins:
        return VARYING
    return SEQ if SEQ in ins else CONST
