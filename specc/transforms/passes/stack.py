"""Stacking per-step outputs that are concatenated twice: once per step, once after the loop.

In: a Graph.  Out: the Graph where a recurrence writes one wide history instead
of several narrow ones, when it pays.

The pattern (the LSTM's backward step): a scan body computes
``s = concat(g1, ..., gk, axis=-1)`` of values that are also per-step outputs
(lag-0 states, histories ``G1 .. Gk`` of shape [T, ..., Hi]), and after the
loop ``concat(G1, ..., Gk, axis=-1)`` joins those histories again, possibly
each through the same reshape of its leading axes (``[T, B, H] -> [B*T, H]``),
for the weight-gradient product.  Then:

* ``s`` becomes a per-step output of the scan (its history ``S``:
  [T, ..., H1 + ... + Hk]) in place of ``G1 .. Gk``; the step writes its rows
  once, and the copy after the loop is gone;
* the concatenation after the loop becomes ``S`` (or ``S`` reshaped);
* every other use of a ``Gi`` reads columns ``[..., ai:bi]`` of ``S``
  (a ``getitem`` on the last axis, which code reading elements takes in place).
  A reduction keeping the last axis (the bias gradient ``sum(Gi, axes=(0, 1))``)
  and a reshape keeping it become that op of ``S`` followed by the slice, so that
  they read ``S`` itself (one reduction of ``S`` serves all the ``Gi``); the
  result is the same number for number.

Nothing else changes: the histories must be distinct lag-0 states of the same
scan, listed in the same order in both concatenations, both on the last axis,
and ``s`` must not already be a state.  Scan bodies too (nested recurrences).
The new equations carry the spans of those they replace.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...ir.dims import Dim
from ...ir.core import Eqn, Graph, TensorType, Value
from ...ir.builder import GraphBuilder
from .rewrite import map_bodies, new_graph, producers, users
from ...ir.scan import State, unpack_scan

FULL = ("slice", None, None, 1)
# Ops acting on each column of the last axis alone: op(S)[..., a:b] == op(S[..., a:b]).
REDUCTIONS = frozenset({"sum", "mean", "max"})


@dataclass
class Match:
    states: list[int]  # the Gi: indices of the scan's states, in concat order
    step: Value  # s, the body's concat of their step values
    outer: Eqn  # the concat of the histories after the loop
    reshapes: list[Eqn | None]  # the reshape each Gi goes through on the way there (or None)


def stack_histories(graph: Graph) -> Graph:
    graph = map_bodies(graph, stack_histories)
    for e in graph.eqns:
        if e.op == "scan":
            match = _find(graph, e)
            if match is not None:
                return stack_histories(_rewrite(graph, e, match))  # again, for any other match
    return graph


def _last_axis(e: Eqn) -> bool:
    rank = e.outputs[0].type.rank
    return e.params["axis"] % rank == rank - 1


def _find(graph: Graph, scan_eqn: Eqn) -> Match | None:
    """The first outer concat of histories of ``scan_eqn`` that a body concat repeats step by step."""
    scan = unpack_scan(scan_eqn)
    outs = {s.out.uid for s in scan.states}
    step_of = {s.out.uid: i for i, s in enumerate(scan.states) if s.lag == 0}
    result_of = {s.result.uid: i for i, s in enumerate(scan.states) if s.lag == 0}
    in_body: dict[tuple[int, ...], Value] = {}
    for be in scan.eqns:
        key = tuple(step_of.get(v.uid, -1) for v in be.inputs)
        if (be.op == "concat" and _last_axis(be) and len(key) >= 2 and -1 not in key and len(set(key)) == len(key)
                and be.outputs[0].uid not in outs):
            in_body.setdefault(key, be.outputs[0])
    if not in_body:
        return None
    made = producers(graph.eqns)
    for e in graph.eqns:
        if e.op != "concat" or not _last_axis(e):
            continue
        parts = [_history(v, made, result_of) for v in e.inputs]
        if any(p is None for p in parts):
            continue
        key = tuple(i for i, _r in parts)
        reshapes = [r for _i, r in parts]
        if key in in_body and _same_reshapes(reshapes):
            return Match(list(key), in_body[key], e, reshapes)
    return None


def _history(v: Value, made: dict[int, Eqn], result_of: dict[int, int]) -> tuple[int, Eqn | None] | None:
    """(state index, None) for a history itself, (state index, reshape) for a history reshaped keeping its last axis."""
    if v.uid in result_of:
        return result_of[v.uid], None
    r = made.get(v.uid)
    if r is not None and r.op == "reshape" and r.inputs[0].uid in result_of and _keeps_last(r):
        return result_of[r.inputs[0].uid], r
    return None


def _keeps_last(r: Eqn) -> bool:
    (x,), (y,) = r.inputs, r.outputs
    return y.type.rank >= 1 and y.shape[-1] == x.shape[-1]


def _same_reshapes(reshapes: list[Eqn | None]) -> bool:
    if all(r is None for r in reshapes):
        return True
    if any(r is None for r in reshapes):
        return False
    lead = {tuple(r.outputs[0].shape[:-1]) for r in reshapes}
    return len(lead) == 1


def _rewrite(graph: Graph, scan_eqn: Eqn, m: Match) -> Graph:
    scan = unpack_scan(scan_eqn)
    stacked = [scan.states[i] for i in m.states]
    concat = m.outer
    lead = m.reshapes[0].outputs[0].shape[:-1] if m.reshapes[0] is not None else None
    name = f"{stacked[0].name}..{stacked[-1].name}"
    if lead is None:
        whole = concat.outputs[0]  # the scan now computes the outer concat itself
    else:
        whole = Value(TensorType(m.step.dtype, (scan.length, *m.step.shape)), name)
    new_state = State(name, 0, None, [], m.step, whole)
    first = min(m.states)
    scan.states = [new_state if k == first else s for k, s in enumerate(scan.states) if k == first or k not in m.states]
    columns = _columns(stacked)

    readers = users(graph.eqns)
    dropped = {id(concat)} | {id(r) for r in m.reshapes if r is not None and _only_reader(r, concat, readers, graph)}
    column_ops = {id(e) for e in graph.eqns if id(e) not in dropped and _column_op(e, columns)}
    rewritten = dropped | column_ops
    sliced = {v.uid for e in graph.eqns if id(e) not in rewritten for v in e.inputs}
    sliced |= {v.uid for v in graph.outputs}
    em = GraphBuilder(loc=scan_eqn.loc, splice=True)
    shared: dict[tuple, Value] = {}  # (op, params) -> that op of the whole history
    eqns: list[Eqn] = []
    for e in graph.eqns:
        if e is scan_eqn:
            eqns.append(scan.pack())
            for s in stacked:  # the histories still read elsewhere: their columns of the whole
                if s.result.uid in sliced:
                    em.emit1("getitem", [whole], {"index": _last_slice(whole, columns[s.result.uid])},
                             output=s.result)
        elif e is concat:
            if lead is not None:
                em.emit1("reshape", [whole], {"shape": (*lead, whole.shape[-1])}, loc=e.loc, output=e.outputs[0])
        elif id(e) in column_ops:
            _through_whole(em, e, whole, columns[e.inputs[0].uid], shared)
        elif id(e) not in dropped:
            eqns.append(e)
        eqns.extend(_take(em))
    return new_graph(graph, graph.inputs, eqns, graph.outputs)


def _columns(stacked: list[State]) -> dict[int, tuple[Dim | None, Dim | None]]:
    """history uid -> its columns (start, stop; None at either end) in the stacked history."""
    out = {}
    offset = Dim.const(0)
    for k, s in enumerate(stacked):
        stop = offset + s.out.shape[-1]
        out[s.result.uid] = (None if k == 0 else offset, None if k == len(stacked) - 1 else stop)
        offset = stop
    return out


def _only_reader(r: Eqn, concat: Eqn, readers: dict[int, list[Eqn]], graph: Graph) -> bool:
    out = r.outputs[0]
    return all(e is concat for e in readers.get(out.uid, ())) and not any(v is out for v in graph.outputs)


def _column_op(e: Eqn, columns: dict[int, tuple]) -> bool:
    """Whether ``e`` reads one of the histories and acts on each of its last-axis columns alone (so that it
    can read the whole stacked history, and its result be sliced)."""
    if len(e.inputs) != 1 or e.inputs[0].uid not in columns:
        return False
    x = e.inputs[0]
    if e.op in REDUCTIONS:
        return x.type.rank - 1 not in e.params["axes"]
    return e.op == "reshape" and _keeps_last(e)


def _through_whole(em: GraphBuilder, e: Eqn, whole: Value, cols: tuple, shared: dict[tuple, Value]) -> None:
    """``e`` on the whole stacked history (once per distinct op and params), then its columns: ``e``'s output."""
    params = dict(e.params)
    if e.op == "reshape":
        params["shape"] = (*e.outputs[0].shape[:-1], whole.shape[-1])
    key = (e.op, repr(sorted(params.items())))
    if key not in shared:
        shared[key] = em.emit1(e.op, [whole], params, loc=e.loc)
    em.emit1("getitem", [shared[key]], {"index": _last_slice(shared[key], cols)}, loc=e.loc, output=e.outputs[0])


def _last_slice(v: Value, cols: tuple) -> tuple:
    return (FULL,) * (v.type.rank - 1) + (("slice", cols[0], cols[1], 1),)


def _take(em: GraphBuilder) -> list[Eqn]:
    out, em.eqns = em.eqns, []
    return out
