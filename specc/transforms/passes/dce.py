"""Dead-code elimination.

In: a Graph.  Out: the Graph without the equations its outputs do not need.

Inside a recurrence it also drops
* states whose sequence nobody outside reads and that no needed state reads
  at an earlier step (a state reading only itself is dead too);
* lags nobody reads: a state read at t-1 only keeps one lag; a state never
  read back becomes a per-step output (lag 0, no initial value);
* consts and sequences the body no longer uses.
A ``fused`` equation loses the outputs nobody reads.  The graph's own inputs
are kept (they are the program's interface).  Random draws are dropped like
anything else: each draw depends on its own stream, not on the others.
"""

from __future__ import annotations

from ...ir.core import Eqn, Graph, freeze
from .rewrite import new_graph, prune_eqns
from ...ir.scan import Scan, unpack_scan


def dce(graph: Graph) -> Graph:
    live = {v.uid for v in graph.outputs}
    kept: list[Eqn] = []
    for e in reversed(graph.eqns):
        if not any(o.uid in live for o in e.outputs):
            continue
        if e.op == "scan":
            e = _dce_scan(e, live)
        elif e.op == "fused":
            e = _dce_fused(e, live)
        kept.append(e)
        live.update(v.uid for v in e.inputs)
    return new_graph(graph, graph.inputs, kept[::-1], graph.outputs)


def _dce_scan(eqn: Eqn, live: set[int]) -> Eqn:
    scan = unpack_scan(eqn)
    needed = {i for i, s in enumerate(scan.states) if s.result.uid in live}
    while True:  # a needed state needs every state its step reads
        used = _used_by(scan, needed)
        more = {i for i, s in enumerate(scan.states) if i not in needed and any(v.uid in used for v in s.lagged)}
        if not more:
            break
        needed |= more
    used = _used_by(scan, needed)
    states = []
    for i, s in enumerate(scan.states):
        if i not in needed:
            continue
        lag = max((k + 1 for k, v in enumerate(s.lagged) if v.uid in used), default=0)
        if lag != s.lag:
            s = type(s)(s.name, lag, s.init if lag else None, s.lagged[:lag], s.out, s.result)
        states.append(s)
    body = dce(Graph(tuple(scan.body_inputs()), tuple(scan.eqns), tuple(s.out for s in states)))
    used = {v.uid for e in body.eqns for v in e.inputs} | {v.uid for v in body.outputs}
    new = Scan(
        consts=[(o, i) for o, i in scan.consts if i.uid in used],
        seqs=[(o, i) for o, i in scan.seqs if i.uid in used],
        states=states,
        eqns=list(body.eqns),
        params=scan.params,
        loc=scan.loc,
    )
    if _same_scan(scan, new):
        return eqn
    return new.pack()


def _used_by(scan: Scan, needed: set[int]) -> set[int]:
    """uids the needed states' body outputs depend on (directly or through body equations)."""
    outs = [s.out for i, s in enumerate(scan.states) if i in needed]
    uids = {v.uid for v in outs}
    for e in prune_eqns(scan.eqns, outs):
        uids.update(v.uid for v in e.inputs)
    return uids


def _same_scan(a: Scan, b: Scan) -> bool:
    return (len(a.consts) == len(b.consts) and len(a.seqs) == len(b.seqs)
            and [(s.name, s.lag) for s in a.states] == [(s.name, s.lag) for s in b.states]
            and len(a.eqns) == len(b.eqns) and all(x is y for x, y in zip(a.eqns, b.eqns)))


def _dce_fused(eqn: Eqn, live: set[int]) -> Eqn:
    body: Graph = eqn.params["body"]
    keep = [k for k, o in enumerate(eqn.outputs) if o.uid in live]
    if len(keep) == len(eqn.outputs):
        return eqn
    outs = tuple(body.outputs[k] for k in keep)
    eqns = prune_eqns(body.eqns, outs)
    used = {v.uid for e in eqns for v in e.inputs} | {v.uid for v in outs}
    ins = [k for k, v in enumerate(body.inputs) if v.uid in used]
    new_body = Graph(tuple(body.inputs[k] for k in ins), tuple(eqns), outs)
    params = {**eqn.params, "body": new_body}
    return Eqn("fused", tuple(eqn.inputs[k] for k in ins), tuple(eqn.outputs[k] for k in keep), freeze(params),
               eqn.loc)
