"""Merging matmuls that share their left operand.

In: a Graph.  Out: the Graph where ``a @ W1``, ``a @ W2``, ... (each ``W``
a matrix) become one ``a @ concat(W1, W2, ..., axis=-1)`` followed by one
column slice per original product: the four gate products ``h[t-1] @ W_f``,
``h[t-1] @ W_i``, ... of an LSTM step become a single matmul.  Inside a
recurrence the concatenation of consts is loop-invariant, and
:mod:`specc.passes.hoist` moves it out of the loop.

The merged product is placed where the first of the group was (or as soon
after as its right operands are known); a matmul whose right operand depends
on another of the group joins a later group.  The slices
keep the original outputs (names, uses) and spans.  Scan bodies too.
"""

from __future__ import annotations

from ..dims import Dim
from ..ir import Eqn, Graph
from .rewrite import Emitter, dependencies, map_bodies, merged_loc, new_graph, toposort


def merge_matmuls(graph: Graph) -> Graph:
    graph = map_bodies(graph, merge_matmuls)
    eqns = graph.eqns
    dep = dependencies(eqns)
    groups: dict[int, list[int]] = {}  # left operand uid -> indices of its matmuls
    for k, e in enumerate(eqns):
        if e.op == "matmul" and e.inputs[1].type.rank == 2:
            groups.setdefault(e.inputs[0].uid, []).append(k)
    nodes: list[tuple[int, Eqn]] = []
    gone: set[int] = set()
    for members in groups.values():
        while len(members) >= 2:
            group = [members[0]]
            for k in members[1:]:  # no member may depend on another (through its right operand)
                if not any(dep[k] >> g & 1 for g in group):
                    group.append(k)
            if len(group) >= 2:
                nodes.extend((group[0], e) for e in _merge([eqns[k] for k in group]))
                gone.update(group)
            members = [k for k in members if k not in group]
    if not gone:
        return graph
    nodes.extend((k, e) for k, e in enumerate(eqns) if k not in gone)
    nodes.sort(key=lambda node: node[0])  # stable: a group's equations stay in their order
    return new_graph(graph, graph.inputs, toposort(nodes), graph.outputs)


def _merge(group: list[Eqn]) -> list[Eqn]:
    a = group[0].inputs[0]
    em = Emitter(merged_loc(group))
    weights = [e.inputs[1] for e in group]
    cat = em.emit1("concat", weights, {"axis": 1})
    product = em.emit1("matmul", [a, cat])
    lead = (("slice", None, None, 1),) * (a.type.rank - 1)
    offset = Dim.const(0)
    for k, e in enumerate(group):
        width = e.inputs[1].shape[1]
        stop = None if k == len(group) - 1 else offset + width
        cols = ("slice", None if k == 0 else offset, stop, 1)
        em.emit1("getitem", [product], {"index": lead + (cols,)}, loc=e.loc, output=e.outputs[0])
        offset = offset + width
    return em.eqns

