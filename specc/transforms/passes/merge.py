"""Merging matmuls that share their left operand.

In: a Graph.  Out: the Graph where ``a @ W1``, ``a @ W2``, ... (each ``W``
a matrix) become one ``a @ concat(W1, W2, ..., axis=-1)`` followed by one
column slice per original product: the four gate products ``h[t-1] @ W_f``,
``h[t-1] @ W_i``, ... of an LSTM step become a single matmul.  Inside a
recurrence the concatenation of consts is loop-invariant, and
:mod:`specc.transforms.passes.hoist` moves it out of the loop.

The merged product is placed where the first of the group was (or as soon
after as its right operands are known); a matmul whose right operand depends
on another of the group joins a later group.  The slices keep the original
outputs (names, uses) and spans.  Scan bodies too.

Inside a recurrence body, a sum of products of the states (each read once),
``a1 @ W1 + a2 @ W2 + ...`` as a backward step computes ``dz``, becomes
``concat(a1, a2, ...) @ concat(W1, W2, ..., axis=0)``: one matmul per step.
(Only there: outside a loop the two concatenations would cost more than the
calls they save; and products free of the states are hoisted, not merged.)
The terms come in the order of the step's outputs that their left operands
are, not in the order of the sum: in a backward step each gate gradient
``d_f, d_i, ...`` is a per-step output (:mod:`specc.transforms.passes.accumulate`), in
the order of the weight-gradient products after the loop, which is the order
of the forward step, so the step's concatenation lists them as the one after
the loop does (see :mod:`specc.transforms.passes.stack`).  Terms whose left operand is no
output follow, in the sum's order.  The sum is then formed in another order,
which changes rounding only.
"""

from __future__ import annotations

from ...ir.dims import Dim
from ...ir.core import Eqn, Graph, Value
from ...ir.builder import GraphBuilder
from .rewrite import VARYING, dependencies, loop_classes, merged_loc, new_graph, producers, toposort, users, with_params
from ...ir.scan import unpack_scan


def merge_matmuls(graph: Graph) -> Graph:
    eqns = []
    for e in graph.eqns:
        if e.op == "scan":
            body = merge_matmuls(e.params["body"])
            body = _merge_sums(body, loop_classes(unpack_scan(with_params(e, body=body))))
            e = e if body is e.params["body"] else with_params(e, body=body)
        eqns.append(e)
    return _merge_shared_left(new_graph(graph, graph.inputs, eqns, graph.outputs))


def _merge_shared_left(graph: Graph) -> Graph:
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
    em = GraphBuilder(loc=merged_loc(group), splice=True)
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



def _merge_sums(body: Graph, cls: dict[int, str]) -> Graph:
    """In a loop body: a sum of products of the states, a1 @ W1 + a2 @ W2 + ..., becomes one matmul."""
    readers = users(body.eqns)
    made = producers(body.eqns)
    outputs = {v.uid for v in body.outputs}

    def single_use(v: Value) -> bool:
        return len(readers.get(v.uid, ())) == 1 and v.uid not in outputs

    replaced: dict[Eqn, list[Eqn]] = {}
    gone: set[Eqn] = set()
    for root in body.eqns:
        out = root.outputs[0]
        if root.op != "add" or (single_use(out) and readers[out.uid][0].op == "add"):
            continue  # not the top of a tree of adds
        adds, leaves = [root], []
        stack = list(root.inputs)
        while stack:
            v = stack.pop(0)
            e = made.get(v.uid)
            if e is not None and e.op == "add" and single_use(v):
                adds.append(e)
                stack[:0] = e.inputs
            else:
                leaves.append(v)
        products = [made[v.uid] for v in leaves if v.uid in made and v.type == out.type and single_use(v)
                    and cls.get(v.uid) == VARYING and made[v.uid].op == "matmul"
                    and made[v.uid].inputs[1].type.rank == 2]
        if len(products) < 2:
            continue
        products = _in_output_order(products, body)
        rest = [v for v in leaves if made.get(v.uid) not in products]
        em = GraphBuilder(loc=merged_loc(products), splice=True)
        rank = out.type.rank
        lhs = em.emit1("concat", [e.inputs[0] for e in products], {"axis": rank - 1})
        rhs = em.emit1("concat", [e.inputs[1] for e in products], {"axis": 0})
        total = em.emit1("matmul", [lhs, rhs], output=None if rest else out)
        for k, v in enumerate(rest):
            total = em.emit1("add", [total, v], loc=root.loc, output=out if k == len(rest) - 1 else None)
        replaced[root] = em.eqns
        gone.update(adds[1:] + products)
    if not replaced:
        return body
    eqns = [x for e in body.eqns if e not in gone for x in replaced.get(e, [e])]
    return Graph(body.inputs, tuple(eqns), body.outputs)


def _in_output_order(products: list[Eqn], body: Graph) -> list[Eqn]:
    """The products ordered by the position of their left operand among the body's outputs (others last)."""
    position = {v.uid: k for k, v in enumerate(body.outputs)}

    def key(k: int) -> tuple[bool, int, int]:
        pos = position.get(products[k].inputs[0].uid)
        return (pos is None, pos or 0, k)

    return [products[k] for k in sorted(range(len(products)), key=key)]
