"""Batching per-step gradient accumulations into one product after the loop.

In: a Graph.  Out: the Graph where a recurrence state that only sums per-step
products, as the backward scan of a weight does::

    acc[t] = acc[t-1] + transpose(a_t) @ g_t        (acc starts at zeros)
    ... only acc's last step is read after the loop

becomes two per-step outputs ``a_t`` and ``g_t`` (lag 0) and, after the loop,
one big product over all the steps::

    acc = transpose(reshape(a, [T*B, K])) @ reshape(g, [T*B, N])

A term ``sum(g_t, axes)`` (a bias gradient) likewise becomes the per-step
output ``g_t`` and one ``sum`` over the time axis too.  Other terms of the
sum stay in the loop, in a state that still accumulates them.

The pattern is found generically: a state with lag 1, its initial value a
``full`` of zeros, its step ``add(acc[t-1], d)`` with ``acc[t-1]`` read
nowhere else, ``d`` a tree of single-use adds, and the state's sequence read
only at its last step (``acc[-1]``; ``acc[0]`` in a reversed scan).  The
per-step outputs are then free to be hoisted (a sequence slice ``x[t]`` is
just the sequence ``x``).  Summation order changes (one product instead of T
partial sums): the result agrees to rounding.
"""

from __future__ import annotations

from ...ir.dims import Dim
from ...ir.core import Eqn, Graph, TensorType, Value
from ...ir.builder import GraphBuilder
from .rewrite import map_bodies, new_graph, producers, resolve, users, with_inputs
from ...ir.scan import Scan, State, final_index, unpack_scan


def batch_accumulations(graph: Graph) -> Graph:
    graph = map_bodies(graph, batch_accumulations)
    readers = users(graph.eqns)
    made = producers(graph.eqns)
    outputs = {v.uid for v in graph.outputs}
    subst: dict[int, Value] = {}
    dropped: set[Eqn] = set()
    eqns: list[Eqn] = []
    for e in graph.eqns:
        if e in dropped:
            continue
        e = with_inputs(e, [resolve(v, subst) for v in e.inputs])
        if e.op == "scan":
            e, after, replaced, gone = _batch(e, readers, made, outputs)
            eqns.append(e)
            eqns.extend(after)
            subst.update(replaced)
            dropped.update(gone)
        else:
            eqns.append(e)
    return new_graph(graph, graph.inputs, eqns, [resolve(v, subst) for v in graph.outputs])


def _batch(eqn: Eqn, readers, made, outputs) -> tuple[Eqn, list[Eqn], dict[int, Value], set[Eqn]]:
    scan = unpack_scan(eqn)
    em = GraphBuilder(loc=eqn.loc, splice=True)
    replaced: dict[int, Value] = {}
    gone: set[Eqn] = set()
    changed = False
    for s in list(scan.states):
        finals = _final_reads(s, scan, readers, outputs)
        if finals is None or not _zero(made.get(s.init.uid) if s.init is not None else None):
            continue
        found = _accumulation(scan, s)
        if found is None:
            continue
        step, adds, products, rest = found
        total = _after_loop(scan, s, products, em)
        if rest:  # the other terms stay accumulated in the loop
            body_em = GraphBuilder(loc=step.loc, splice=True)
            d = rest[0]
            for r in rest[1:]:
                d = body_em.emit1("add", [d, r])
            s.out = body_em.emit1("add", [s.lagged[0], d], name=s.out.name)
            scan.eqns = [e for e in scan.eqns if e not in adds] + body_em.eqns
            last = em.emit1("getitem", [s.result], {"index": (("int", min(finals, key=str)),)}, loc=step.loc)
            total = em.emit1("add", [last, total], loc=step.loc, name=s.name)
        else:
            scan.eqns = [e for e in scan.eqns if e not in adds]
            scan.states.remove(s)
        for r in readers.get(s.result.uid, ()):
            replaced[r.outputs[0].uid] = total
            gone.add(r)
        changed = True
    if not changed:
        return eqn, [], {}, set()
    return scan.pack(), em.eqns, replaced, gone


def _final_reads(s: State, scan: Scan, readers, outputs) -> set[Dim] | None:
    """The indices reading the state's last step, if that is all anything reads of its sequence."""
    if s.lag != 1 or s.result.uid in outputs:
        return None
    finals = final_index(scan.params)
    reads = readers.get(s.result.uid, [])
    if not reads:
        return None
    for r in reads:
        index = r.params.get("index") if r.op == "getitem" else None
        if not index or len(index) != 1 or index[0][0] != "int" or index[0][1] not in finals:
            return None
    return {r.params["index"][0][1] for r in reads}


def _zero(e: Eqn | None) -> bool:
    return e is not None and e.op == "full" and e.params["value"] == 0


def _accumulation(scan: Scan, s: State):
    """(step equation, adds to drop, product terms, other terms) if ``s`` only accumulates, else None."""
    made = producers(scan.eqns)
    readers = users(scan.eqns)
    body_outs = [st.out.uid for st in scan.states]
    step = made.get(s.out.uid)
    prev = s.lagged[0]
    if step is None or step.op != "add" or body_outs.count(s.out.uid) != 1 or readers.get(s.out.uid):
        return None
    if len(readers.get(prev.uid, [])) != 1 or prev.uid in body_outs:
        return None
    a, b = step.inputs
    if (a is prev) == (b is prev):
        return None
    d = b if a is prev else a
    adds, leaves = [step], []

    def split(v: Value) -> None:  # the terms of a tree of single-use adds
        e = made.get(v.uid)
        if e is not None and e.op == "add" and len(readers.get(v.uid, [])) == 1 and v.uid not in body_outs:
            adds.append(e)
            for x in e.inputs:
                split(x)
        else:
            leaves.append(v)

    split(d)
    products, rest = [], []
    for v in leaves:
        term = _product(made.get(v.uid), made, s.out.type)
        if term is not None:
            products.append(term)
        else:
            rest.append(v)
    return (step, adds, products, rest) if products else None


def _product(e: Eqn | None, made: dict[int, Eqn], acc: TensorType) -> tuple | None:
    """("matmul", loc, a, g) or ("sum", loc, g, axes) if ``e`` computes such a term of type ``acc``."""
    if e is None or e.outputs[0].type != acc:
        return None
    loc = e.loc
    if e.op == "matmul" and e.inputs[0].type.rank == 2 and e.inputs[1].type.rank == 2:
        return ("matmul", loc, *e.inputs)
    if e.op == "reshape":  # sum(g, keepdims=true) reshaped to drop the kept axes
        e = made.get(e.inputs[0].uid)
        if e is None or e.op != "sum":
            return None
    if e.op == "sum":
        g, axes = e.inputs[0], tuple(e.params["axes"])
        if tuple(d for k, d in enumerate(g.shape) if k not in axes) == tuple(acc.shape):
            return ("sum", loc, g, axes)
    return None


def _per_step(scan: Scan, value: Value, name: str) -> Value:
    """Add ``value`` as a per-step output of the loop (unless it is one already); its sequence [T, ...]."""
    for s in scan.states:
        if s.lag == 0 and s.out is value:
            return s.result
    result = Value(TensorType(value.dtype, (scan.length, *value.shape)), name)
    scan.states.append(State(name, 0, None, [], value, result))
    return result


def _after_loop(scan: Scan, s: State, products: list[tuple], em: GraphBuilder) -> Value:
    length = scan.length
    made = producers(scan.eqns)
    total = None
    for k, (kind, loc, *operands) in enumerate(products):
        tag = f"{s.name}.{k}" if len(products) > 1 else s.name
        em.loc = loc or scan.loc
        if kind == "sum":
            g, axes = operands
            g = _per_step(scan, g, f"{tag}.g")
            term = em.emit1("sum", [g], {"axes": (0, *(a + 1 for a in axes)), "keepdims": False})
        else:
            lhs, rhs = operands
            left = made.get(lhs.uid)
            m, n = rhs.shape
            rows = em.emit1("reshape", [_per_step(scan, rhs, f"{tag}.g")], {"shape": (length * m, n)})
            if left is not None and left.op == "transpose" and tuple(left.params["perm"]) == (1, 0):
                a = _per_step(scan, left.inputs[0], f"{tag}.a")  # [T, M, K]
                flat = em.emit1("reshape", [a], {"shape": (length * m, lhs.shape[0])})
                cols = em.emit1("transpose", [flat], {"perm": (1, 0)})
            else:
                a = _per_step(scan, lhs, f"{tag}.a")  # [T, K, M]
                moved = em.emit1("transpose", [a], {"perm": (1, 0, 2)})
                cols = em.emit1("reshape", [moved], {"shape": (lhs.shape[0], length * m)})
            term = em.emit1("matmul", [cols, rows])
        total = term if total is None else em.emit1("add", [total, term])
    return total
