"""Splitting a matmul of a concatenation: ``concat(a, b, axis=-1) @ W`` -> ``a @ W[:Ka] + b @ W[Ka:]``.

In: a Graph.  Out: the Graph where, inside a recurrence body, a matmul whose
left operand concatenates parts that depend on the states (``h[t-1]``) with
parts that do not (``x[t]``) is split row-wise, so that the part free of the
states can be hoisted out of the loop (:mod:`specc.transforms.passes.hoist`).  Adjacent
parts of the same kind stay concatenated.

Outside recurrence bodies nothing is split: there it would only add an ``add``.
The new equations carry the matmul's span; the sum keeps its output name.

Its column-wise cousin :func:`narrow_matmuls` computes only the columns of a
product that are read: ``(a @ W)[:, j:k]`` -> ``a @ W[:, j:k]``.
"""

from __future__ import annotations

from ...ir.dims import Dim
from ...ir.core import Eqn, Graph, Value
from ...ir.builder import GraphBuilder
from .rewrite import VARYING, loop_classes, map_bodies, producers, users, with_params
from ...ir.scan import unpack_scan


def split_concat_matmul(graph: Graph) -> Graph:
    eqns = []
    changed = False
    for e in graph.eqns:
        if e.op == "scan":
            body = _split_body(e)
            if body is not e.params["body"]:
                e, changed = with_params(e, body=body), True
        eqns.append(e)
    return Graph(graph.inputs, tuple(eqns), graph.outputs) if changed else graph


def _split_body(scan_eqn: Eqn) -> Graph:
    body: Graph = scan_eqn.params["body"]
    body = map_bodies(body, split_concat_matmul)  # nested recurrences: their own bodies
    cls = loop_classes(unpack_scan(with_params(scan_eqn, body=body)))
    made = producers(body.eqns)
    eqns: list[Eqn] = []
    changed = False
    for e in body.eqns:
        new = _split(e, made, cls)
        if new is None:
            eqns.append(e)
        else:
            eqns.extend(new)
            changed = True
    return Graph(body.inputs, tuple(eqns), body.outputs) if changed else body


def _split(e: Eqn, made: dict[int, Eqn], cls: dict[int, str]) -> list[Eqn] | None:
    if e.op != "matmul":
        return None
    z, w = e.inputs
    cat = made.get(z.uid)
    if cat is None or cat.op != "concat" or cat.params["axis"] % z.type.rank != z.type.rank - 1 or w.type.rank not in (1, 2):
        return None
    runs = _runs(cat.inputs, cls)
    if len(runs) < 2:
        return None
    em = GraphBuilder(loc=e.loc, splice=True)
    total: Value | None = None
    offset = Dim.const(0)
    for k, run in enumerate(runs):
        part = run[0] if len(run) == 1 else em.emit1("concat", run, {"axis": z.type.rank - 1})
        width = part.shape[-1]
        stop = None if k == len(runs) - 1 else offset + width
        rows = em.emit1("getitem", [w], {"index": (("slice", None if k == 0 else offset, stop, 1),)},
                        name=w.name)
        prod = em.emit1("matmul", [part, rows])
        last = k == len(runs) - 1
        total = prod if total is None else em.emit1("add", [total, prod], output=e.outputs[0] if last else None)
        offset = offset + width
    return em.eqns


def _runs(parts: tuple[Value, ...], cls: dict[int, str]) -> list[list[Value]]:
    """Adjacent parts grouped by whether they depend on the states."""
    runs: list[list[Value]] = []
    prev = None
    for v in parts:
        varying = cls.get(v.uid) == VARYING
        if runs and varying == prev:
            runs[-1].append(v)
        else:
            runs.append([v])
        prev = varying
    return runs


def narrow_matmuls(graph: Graph) -> Graph:
    """``(a @ W)[..., j:k]`` -> ``a @ W[:, j:k]`` when nothing else reads ``a @ W``: only the columns read are computed.

    Everywhere, scan bodies included; in a loop the slice of a const ``W`` is then hoisted.
    """
    graph = map_bodies(graph, narrow_matmuls)
    readers = users(graph.eqns)
    made = producers(graph.eqns)
    outputs = {v.uid for v in graph.outputs}
    replaced: dict[Eqn, list[Eqn]] = {}
    gone: set[Eqn] = set()
    for e in graph.eqns:
        prod = made.get(e.inputs[0].uid) if e.op == "getitem" else None
        if prod is None or prod.op != "matmul" or prod.inputs[1].type.rank != 2:
            continue
        p = prod.outputs[0]
        index = tuple(e.params["index"])
        full = ("slice", None, None, 1)
        if (len(readers.get(p.uid, ())) != 1 or p.uid in outputs or len(index) != p.type.rank
                or any(tuple(x) != full for x in index[:-1]) or index[-1][0] != "slice"):
            continue
        a, w = prod.inputs
        em = GraphBuilder(loc=e.loc, splice=True)
        cols = em.emit1("getitem", [w], {"index": (full, index[-1])}, name=w.name)
        em.emit1("matmul", [a, cols], loc=prod.loc, output=e.outputs[0])
        replaced[e] = em.eqns
        gone.add(prod)
    if not replaced:
        return graph
    eqns = [x for e in graph.eqns if e not in gone for x in replaced.get(e, [e])]
    return Graph(graph.inputs, tuple(eqns), graph.outputs)
