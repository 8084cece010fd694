"""What the passes share: emitting equations, substituting values, scans taken apart and rebuilt.

In: IR records (:mod:`specc.ir`).  Out: new IR records; nothing is mutated.

* :class:`Emitter` appends equations typed by their op's shape rule.
* :func:`substitute` renames the inputs of equations (a value replaced by
  another); :func:`with_inputs` / :func:`with_params` copy one equation.
* :class:`Scan` is a ``scan`` equation taken apart into (outer, inner) pairs
  for its consts and sequences and one :class:`State` per state, so that a
  pass can drop or add consts, sequences and states and :meth:`Scan.pack` it
  back into one equation (whose outputs keep their identity).
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
from dataclasses import dataclass
from typing import Any

from ..dims import Dim
from ..errors import Span
from ..ir import Eqn, Graph, TensorType, Value, freeze
from ..ops import REGISTRY

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


class Emitter:
    """Appends equations to a list; each equation's outputs are typed by its op's shape rule."""

    def __init__(self, loc: Span | None = None):
        self.eqns: list[Eqn] = []
        self.loc = loc

    def emit(self, op: str, inputs: Sequence[Value], params: Mapping[str, Any] | None = None, *,
             loc: Span | None = None, names: Sequence[str | None] | None = None,
             outputs: Sequence[Value] | None = None) -> list[Value]:
        params = dict(params or {})
        types = REGISTRY[op].infer([v.type for v in inputs], params)
        if outputs is not None:  # reuse given output values (their types must agree)
            if [v.type for v in outputs] != list(types):
                raise AssertionError(f"{op}: outputs {list(map(str, outputs))} but the rule gives {types}")
            outs = list(outputs)
        else:
            names = names or [None] * len(types)
            outs = [Value(t, n) for t, n in zip(types, names)]
        self.eqns.append(Eqn(op, tuple(inputs), tuple(outs), freeze(params), loc or self.loc))
        return outs

    def emit1(self, op: str, inputs: Sequence[Value], params: Mapping[str, Any] | None = None, *,
              loc: Span | None = None, name: str | None = None, output: Value | None = None) -> Value:
        return self.emit(op, inputs, params, loc=loc, names=[name],
                         outputs=None if output is None else [output])[0]


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


def copy_value(em: Emitter, v: Value, loc: Span | None) -> Value:
    """A new value equal to ``v`` computed by its own equation (``v + 0`` for floats, as the elaborator does)."""
    zero = em.emit1("full", [], {"dtype": v.dtype, "shape": (), "value": 0.0 if v.type.is_float else 0}, loc=loc)
    return em.emit1("add", [v, zero], loc=loc, name=v.name)


# ---- scans -----------------------------------------------------------------------------
@dataclass
class State:
    name: str
    lag: int
    init: Value | None  # the outer initial value (lag >= 1)
    lagged: list[Value]  # body inputs: the state at t-1, ..., t-lag
    out: Value  # body output: the state at t
    result: Value  # the scan's output: the whole sequence [T, ...]


@dataclass
class Scan:
    """A scan equation taken apart; :meth:`pack` builds the equation back."""

    consts: list[tuple[Value, Value]]  # (outer value, body input)
    seqs: list[tuple[Value, Value]]  # (outer [T, ...], body input: the slice at t)
    states: list[State]
    eqns: list[Eqn]  # the body's equations
    params: dict[str, Any]  # reverse, length and anything else, without body/n_consts/n_seqs/states
    loc: Span | None = None

    @property
    def length(self) -> Dim:
        return self.params["length"]

    @property
    def reverse(self) -> bool:
        return bool(self.params["reverse"])

    def body_inputs(self) -> list[Value]:
        return [i for _o, i in self.consts] + [i for _o, i in self.seqs] + [v for s in self.states for v in s.lagged]

    def pack(self) -> Eqn:
        """The scan equation; its outputs are the states' ``result`` values (their identity kept).

        Keeps the elaborator's convention that every body output is a distinct value
        computed in the body: an output that is a body input or repeats an earlier output
        gets a copy.
        """
        ins = self.body_inputs()
        input_uids = {v.uid for v in ins}
        em = Emitter()
        outs, taken = [], set()
        for s in self.states:
            v = s.out
            if (v.uid in input_uids or v.uid in taken) and v.type.is_float:
                v = copy_value(em, v, self.loc)
            taken.add(v.uid)
            outs.append(v)
        body = Graph(tuple(ins), tuple(self.eqns) + tuple(em.eqns), tuple(outs))
        params = {
            **self.params,
            "body": body,
            "n_consts": len(self.consts),
            "n_seqs": len(self.seqs),
            "states": tuple((s.name, s.lag) for s in self.states),
        }
        inputs = [o for o, _i in self.consts] + [o for o, _i in self.seqs] + [s.init for s in self.states if s.lag]
        return Eqn("scan", tuple(inputs), tuple(s.result for s in self.states), freeze(params), self.loc)


def unpack_scan(eqn: Eqn) -> Scan:
    p = eqn.params
    body: Graph = p["body"]
    nc, ns = p["n_consts"], p["n_seqs"]
    consts = list(zip(eqn.inputs[:nc], body.inputs[:nc]))
    seqs = list(zip(eqn.inputs[nc:nc + ns], body.inputs[nc:nc + ns]))
    inits = iter(eqn.inputs[nc + ns:])
    lagged = iter(body.inputs[nc + ns:])
    states = []
    for (name, lag), out, result in zip(p["states"], body.outputs, eqn.outputs):
        init = next(inits) if lag else None
        states.append(State(name, lag, init, [next(lagged) for _ in range(lag)], out, result))
    rest = {k: v for k, v in p.items() if k not in ("body", "n_consts", "n_seqs", "states")}
    return Scan(consts, seqs, states, list(body.eqns), rest, eqn.loc)


def final_index(scan_params: Mapping[str, Any]) -> set[Dim]:
    """The getitem indices that pick a scan output's last computed step."""
    length = scan_params["length"]
    if scan_params["reverse"]:
        return {Dim.const(0), -length}
    return {Dim.const(-1), length - 1}


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
