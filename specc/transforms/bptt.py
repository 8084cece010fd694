"""Backpropagation through time: the VJP of a ``scan``, and the merge of its forward scans.

In: a ``scan`` equation, the cotangents of its outputs, which inputs need one,
and autodiff's context (:class:`specc.transforms.autodiff.GradCtx`) to emit into.
Out: the cotangents of the scan's inputs, computed by a second scan running in the
opposite direction, and (:func:`merge_scans`) the graph in which each forward
recurrence runs once, saving per step what the backward scan reads.

Autodiff owns this rule in its table of rules for ops with a body graph
(``BODY_RULES``); it reaches back into autodiff only through the context it is
given (``g.on``, ``g.backprop``), so no module imports the other in a cycle.
"""

from __future__ import annotations

from ..ir.builder import GraphBuilder
from ..ir.core import Eqn, Graph, TensorType, Value, prune
from ..ir.dims import Dim
from ..ir.scan import scan_params, unpack_scan


def scan_vjp(g, eqn: Eqn, cts: list, needed: list[bool]) -> list:
    """The adjoint of a scan is a scan in the opposite direction.

    Saved from the forward pass: only the state sequences (the scan's outputs);
    each backward step recomputes its forward step from them (and from the
    same sequence slices and random draws), then runs the body's VJP.
    Carried backward: for a state read at lags 1..K, K pending cotangents
    (carry l = what later steps sent to the state l-1 steps back); for each
    differentiated const, a running sum.  Per step out: the cotangents of
    the sequence inputs.
    """
    sc = unpack_scan(eqn)
    nc, ns = len(sc.consts), len(sc.seqs)
    states, length, rev = sc.states, sc.length, sc.reverse
    need_c, need_s = needed[:nc], needed[nc:nc + ns]
    outs = eqn.outputs
    ct_seqs = [ct if ct is not None else g.zeros(o.type) for ct, o in zip(cts, outs)]
    step_type = [TensorType(o.dtype, o.shape[1:]) for o in outs]

    # the states as seen at lag l by each step: [init]*K ++ seq, sliced (mirrored when reversed)
    shifted: dict[tuple[int, int], Value] = {}
    for i, st in enumerate(states):
        k = st.lag
        if not k:
            continue
        pad = g.reshape(st.init, (Dim.const(1),) + tuple(st.init.shape))
        ext = g.emit("concat", [outs[i]] + [pad] * k if rev else [pad] * k + [outs[i]], axis=0)
        for lag in range(1, k + 1):
            lo = Dim.const(lag if rev else k - lag)
            shifted[(i, lag)] = g.emit("getitem", [ext], index=(("slice", lo, lo + length, 1),))
            object.__setattr__(shifted[(i, lag)], "name", f"{st.name}.prev{lag}")  # fresh: name it

    # the backward body
    bb = GraphBuilder()
    c_in = [bb.add_input(Value(v.type, v.name)) for _o, v in sc.consts]
    s_in = [bb.add_input(Value(v.type, v.name)) for _o, v in sc.seqs]
    sh_in = {(i, lag): bb.add_input(Value(step_type[i], states[i].lagged[lag - 1].name)) for i, lag in shifted}
    ct_in = [bb.add_input(Value(t, f"d_{st.name}[t]")) for st, t in zip(states, step_type)]
    carry_in = {(i, lag): bb.add_input(Value(step_type[i], f"d_{states[i].name}.carry{lag}")) for i, lag in shifted}
    acc_in = {j: bb.add_input(Value(c_in[j].type, f"d_{c_in[j].name}")) for j in range(nc) if need_c[j]}

    env = {v.uid: nv for (_o, v), nv in zip(sc.consts + sc.seqs, c_in + s_in)}
    for (i, lag), v in sh_in.items():
        env[states[i].lagged[lag - 1].uid] = v
    for e in sc.eqns:
        new = bb.emit(e.op, [env[v.uid] for v in e.inputs], dict(e.params), e.loc, [v.name for v in e.outputs])
        env.update({v.uid: nv for v, nv in zip(e.outputs, new)})
    recomputed = list(bb.eqns)

    gb = g.on(bb)
    seeds: dict[int, Value] = {}
    for i, st in enumerate(states):
        total = gb.add(ct_in[i], carry_in[(i, 1)]) if st.lag else ct_in[i]
        uid = env[st.out.uid].uid
        seeds[uid] = gb.add(seeds[uid], total) if uid in seeds else total
    active = {v.uid for v in c_in + s_in + list(sh_in.values()) if v.type.is_float}
    bcts = gb.backprop(recomputed, seeds, active)

    def fresh(v: Value | None, t: TensorType) -> Value:
        if v is None:
            return gb.zeros(t)
        return gb.add(v, gb.zeros(TensorType(v.dtype, ()))) if not _owned_output(bb, v) else v

    body_outs, bw_states = [], []
    for (i, lag), _v in shifted.items():
        parts = [x for x in (bcts.get(sh_in[(i, lag)].uid), carry_in.get((i, lag + 1))) if x is not None]
        val = parts[0] if len(parts) == 1 else (gb.add(*parts) if parts else None)
        body_outs.append(fresh(val, step_type[i]))
        bw_states.append((f"d_{states[i].name}.carry{lag}", 1))
    for j, acc in acc_in.items():
        d = bcts.get(c_in[j].uid)
        body_outs.append(gb.add(acc, d) if d is not None else fresh(acc, acc.type))
        bw_states.append((f"d_{c_in[j].name}", 1))
    seq_out = [j for j in range(ns) if need_s[j]]
    for j in seq_out:
        body_outs.append(fresh(bcts.get(s_in[j].uid), s_in[j].type))
        bw_states.append((f"d_{s_in[j].name}", 0))
    taken = set()
    for idx, v in enumerate(body_outs):  # every body output its own value
        if v.uid in taken:
            body_outs[idx] = gb.add(v, gb.zeros(TensorType(v.dtype, ())))
        taken.add(body_outs[idx].uid)
    bw_body = prune(bb.build(body_outs))

    # forward values the backward needs are saved by the forward scan, not recomputed
    saved = _residuals(bw_body, recomputed)
    saved_uids = {v.uid for v in saved}
    at = len(c_in) + len(s_in) + len(sh_in) + len(ct_in)  # the saved slices: after the other seqs
    bw_body = merge_scans(prune(Graph(
        (*bw_body.inputs[:at], *saved, *bw_body.inputs[at:]),
        tuple(e for e in bw_body.eqns if not any(o.uid in saved_uids for o in e.outputs)),
        bw_body.outputs)))
    forward_of = {env[v.uid].uid: v for e in sc.eqns for v in e.outputs}
    saved_seqs = _save_from_forward(g, eqn, [forward_of[v.uid] for v in saved])

    zero_inits = [g.zeros(bb_in.type) for bb_in in list(carry_in.values()) + list(acc_in.values())]
    bw_inputs = [o for o, _i in sc.consts] + [o for o, _i in sc.seqs] + list(shifted.values()) + ct_seqs + saved_seqs + zero_inits
    params = scan_params(bw_body, nc, ns + len(shifted) + len(ct_seqs) + len(saved), bw_states,
                         reverse=not rev, length=length)
    results = g.emit_many("scan", bw_inputs, **params)

    last = Dim.const(-1 if rev else 0)  # the step the backward scan ends on
    def final(v: Value) -> Value:
        return g.emit("getitem", [v], index=(("int", last),))

    res = iter(results)
    carry_final = {key: final(next(res)) for key in shifted}
    const_cts = {j: final(next(res)) for j in acc_in}
    seq_cts = {j: next(res) for j in seq_out}
    out: list[Value | None] = [const_cts.get(j) for j in range(nc)] + [seq_cts.get(j) for j in range(ns)]
    for i, st in enumerate(states):
        if st.lag:
            total = carry_final[(i, 1)]
            for lag in range(2, st.lag + 1):
                total = g.add(total, carry_final[(i, lag)])
            out.append(total)
    return out


# Ops a backward step recomputes from their inputs instead of reading them saved: moving or
# viewing data costs no more than reading a saved copy.
RECOMPUTED_OPS = frozenset({"concat", "getitem", "reshape", "transpose", "full", "size", "cast"})


def _residuals(bw_body: Graph, recomputed) -> list:
    """The recomputed forward values the backward step reads that are worth saving.

    Starting from what the backward equations read, a value made by a data-moving op
    (:data:`RECOMPUTED_OPS`) or by a multi-output op stays recomputed, and what it reads
    is looked at in turn; every other value (a product, an activation, a random draw) is
    saved by the forward scan as a per-step output.  So for the LSTM the gates and
    tanh(c_t) are saved, and the backward step does no matmul and no transcendental of
    the forward.
    """
    made_by = {o.uid: e for e in recomputed for o in e.outputs}
    recomputed_ids = {id(e) for e in recomputed}
    todo = [v for e in bw_body.eqns if id(e) not in recomputed_ids for v in e.inputs if v.uid in made_by]
    todo += [v for v in bw_body.outputs if v.uid in made_by]
    outputs = {v.uid for v in bw_body.outputs}
    seen: set[int] = set()
    saved = {}
    while todo:
        v = todo.pop()
        if v.uid in seen:
            continue
        seen.add(v.uid)
        e = made_by[v.uid]
        if e.op in RECOMPUTED_OPS or len(e.outputs) != 1 or v.uid in outputs:
            todo.extend(i for i in e.inputs if i.uid in made_by)
        else:
            saved[v.uid] = v
    order = {o.uid: k for k, e in enumerate(recomputed) for o in e.outputs}
    return sorted(saved.values(), key=lambda v: order[v.uid])


def _save_from_forward(g, eqn: Eqn, values: list) -> list:
    """Sequences [T, ...] of the forward body's ``values``, one per step.

    A value that is a state's step already has its sequence (an output of ``eqn``); the
    others become extra per-step outputs (lag 0) of a copy of ``eqn`` whose body is the
    same graph with more outputs.  :func:`merge_scans` then runs that copy in place of
    ``eqn``, so the forward recurrence runs once.
    """
    p = eqn.params
    body: Graph = p["body"]
    state_of = {v.uid: i for i, v in enumerate(body.outputs)}
    extra = [v for v in values if v.uid not in state_of]
    if not extra:
        return [eqn.outputs[state_of[v.uid]] for v in values]
    wider = Graph(body.inputs, body.eqns, body.outputs + tuple(extra))
    states = tuple(p["states"]) + tuple((f"{v.name or 'step'}.saved", 0) for v in extra)
    outs = g.emit_many("scan", list(eqn.inputs), **{**p, "body": wider, "states": states})
    seq_of = {v.uid: outs[len(body.outputs) + k] for k, v in enumerate(extra)}
    return [eqn.outputs[state_of[v.uid]] if v.uid in state_of else seq_of[v.uid] for v in values]


def merge_scans(graph: Graph) -> Graph:
    """Run a scan whose body is another scan's body with more outputs in place of that scan.

    (See :func:`_save_from_forward`.)  The wider scan takes the narrower one's place in
    the equation order (its inputs are the same, so they are defined there) and the
    narrower one's outputs are read from the wider one's first outputs.
    """
    wider_of: dict[int, Eqn] = {}
    for e in graph.eqns:
        if e.op != "scan":
            continue
        for d in graph.eqns:
            if d is not e and d.op == "scan" and _widens(e, d):
                wider_of[id(d)] = e
    if not wider_of:
        return graph
    subst: dict[int, Value] = {}
    moved = {id(e) for e in wider_of.values()}
    eqns = []
    for e in graph.eqns:
        if id(e) in moved:
            continue
        w = wider_of.get(id(e))
        if w is not None:
            subst.update({o.uid: wo for o, wo in zip(e.outputs, w.outputs)})
            e = w
        if any(v.uid in subst for v in e.inputs):
            e = Eqn(e.op, tuple(subst.get(v.uid, v) for v in e.inputs), e.outputs, e.params, e.loc)
        eqns.append(e)
    return Graph(graph.inputs, tuple(eqns), tuple(subst.get(v.uid, v) for v in graph.outputs))


def _widens(wide: Eqn, narrow: Eqn) -> bool:
    a, b = wide.params, narrow.params
    n = len(b["states"])
    return (len(wide.inputs) == len(narrow.inputs) and all(x is y for x, y in zip(wide.inputs, narrow.inputs))
            and a["body"].eqns is b["body"].eqns and a["body"].inputs is b["body"].inputs
            and tuple(a["states"][:n]) == tuple(b["states"]) and len(a["states"]) > n
            and all(x is y for x, y in zip(a["body"].outputs, b["body"].outputs))
            and all(a[k] == b[k] for k in b if k not in ("body", "states")))


def _owned_output(bb, v) -> bool:
    return bb.owns(v) and not any(v is i for i in bb.inputs)


