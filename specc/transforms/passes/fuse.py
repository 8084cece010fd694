"""Elementwise fusion.

In: a Graph.  Out: the Graph where each maximal group of connected
elementwise equations (``op.elementwise``; not random) with the same output
shape becomes one ``fused`` equation holding them as its body.  Scalar
constants (``full`` of shape ()) the group reads are copied into the body.
A group has one output per value that something outside it reads (several
when an intermediate is also used outside).  Every output of a fused
equation has the group's shape; its inputs broadcast against it, so a code
generator runs one loop nest.

A group never swallows an equation that both depends on the group and feeds
it through something outside (that would make a cycle).  Groups of one op
are left alone.  The fused equation keeps the group's outer values, so
nothing downstream changes, and a span covering its members; the body's
equations keep their own spans and names.  Scan bodies are fused too, so the
gate math of an LSTM step becomes one equation.
"""

from __future__ import annotations

from ...ir.core import Eqn, Graph, Value, freeze
from ...ops import REGISTRY
from .rewrite import dependencies, fresh, has_body, is_scalar_full, map_bodies, merged_loc, new_graph, toposort, users


def fuse_elementwise(graph: Graph) -> Graph:
    graph = map_bodies(graph, fuse_elementwise)
    eqns = graph.eqns
    groups = _groups(eqns)
    groups = [g for g in groups if len(g) >= 2]
    if not groups:
        return graph
    in_group = {k: gi for gi, g in enumerate(groups) for k in g}
    readers = users(eqns)
    graph_outputs = {v.uid for v in graph.outputs}
    made = {v.uid: e for e in eqns for v in e.outputs}
    nodes: list[tuple[int, Eqn]] = [(k, e) for k, e in enumerate(eqns) if k not in in_group]
    for gi, g in enumerate(groups):
        nodes.append((g[0], _fused(eqns, g, in_group, gi, readers, graph_outputs, made)))
    nodes = _drop_unused_constants(nodes, graph_outputs)
    return new_graph(graph, graph.inputs, toposort(nodes), graph.outputs)


def _fusible(e: Eqn) -> bool:
    op = REGISTRY[e.op]
    return op.elementwise and not op.random and e.op != "full" and not has_body(e) and len(e.outputs) == 1


def _groups(eqns: tuple[Eqn, ...]) -> list[list[int]]:
    """Groups of equation indices, grown greedily in program order and kept free of cycles."""
    made = {v.uid: k for k, e in enumerate(eqns) for v in e.outputs}
    dep = dependencies(eqns)
    group_of: dict[int, int] = {}
    members: dict[int, int] = {}  # group id -> bitmask of its equations
    for k, e in enumerate(eqns):
        if not _fusible(e):
            continue
        group_of[k], members[k] = k, 1 << k
        for v in e.inputs:
            j = made.get(v.uid)
            if j is None or j not in group_of or eqns[j].outputs[0].shape != e.outputs[0].shape:
                continue
            g, h = group_of[k], group_of[j]
            if g == h or not _convex(members[g] | members[h], dep):
                continue
            members[g] |= members.pop(h)
            for m in _bits(members[g]):
                group_of[m] = g
    return sorted(([m for m in _bits(mask)] for mask in members.values()), key=lambda g: g[0])


def _convex(mask: int, dep: list[int]) -> bool:
    """No equation outside ``mask`` both depends on it and is depended on by it."""
    needs = 0
    for m in _bits(mask):
        needs |= dep[m]
    return not any(dep[n] & mask for n in _bits(needs & ~mask))


def _bits(mask: int) -> list[int]:
    out, k = [], 0
    while mask:
        if mask & 1:
            out.append(k)
        mask >>= 1
        k += 1
    return out


def _fused(eqns, group: list[int], in_group: dict[int, int], gi: int, readers, graph_outputs: set[int],
           made: dict[int, Eqn]) -> Eqn:
    members = [eqns[k] for k in group]
    position = {e: k for k, e in enumerate(eqns)}
    own = {v.uid for e in members for v in e.outputs}
    env: dict[int, Value] = {}
    outer_ins: list[Value] = []
    body_ins: list[Value] = []
    body: list[Eqn] = []
    for e in members:
        ins = []
        for v in e.inputs:
            if v.uid not in env:
                src = made.get(v.uid)
                if src is not None and is_scalar_full(src):  # a constant: copied into the body
                    c = fresh(v)
                    body.append(Eqn("full", (), (c,), src.params, src.loc))
                    env[v.uid] = c
                elif v.uid not in own:
                    env[v.uid] = fresh(v)
                    outer_ins.append(v)
                    body_ins.append(env[v.uid])
            ins.append(env[v.uid])
        outs = tuple(fresh(v) for v in e.outputs)
        env.update({v.uid: o for v, o in zip(e.outputs, outs)})
        body.append(Eqn(e.op, tuple(ins), outs, e.params, e.loc))
    outer_outs = [v for e in members for v in e.outputs
                  if v.uid in graph_outputs or any(in_group.get(position[r]) != gi for r in readers.get(v.uid, ()))]
    if not outer_outs:
        outer_outs = list(members[-1].outputs)
    params = {"body": Graph(tuple(body_ins), tuple(body), tuple(env[v.uid] for v in outer_outs))}
    return Eqn("fused", tuple(outer_ins), tuple(outer_outs), freeze(params), merged_loc(members))


def _drop_unused_constants(nodes: list[tuple[int, Eqn]], graph_outputs: set[int]) -> list[tuple[int, Eqn]]:
    read = {v.uid for _k, e in nodes for v in e.inputs} | graph_outputs
    return [(k, e) for k, e in nodes if not (is_scalar_full(e) and e.outputs[0].uid not in read)]
