"""The recurrence op: ``scan``.

One equation holds the body graph of a ``recur`` block.

Equation inputs:  consts (values captured from outside: parameters, ...),
                  seqs   (tensors [T, ...] read at the current step: ``x[t]``),
                  inits  (one per state with lag >= 1: its value before step 0).
Body inputs:      the consts, one slice [...] per seq, then for each state
                  with lag K >= 1 its values at t-1, ..., t-K (iteration order).
Body outputs:     one per state, its value at step t.
Equation outputs: one per state, the whole sequence [T, ...] in time order.

Params: ``body``, ``n_consts``, ``n_seqs``, ``states`` (tuple of
(name, lag) — lag 0 is a per-step output never read back), ``reverse``,
``length`` (the symbolic T).  In a reversed scan step t runs T-1 .. 0 and a
lag of k reads t + k.  :mod:`specc.ir.scan` takes the operands apart by role;
the VJP (backpropagation through time) is autodiff's: :mod:`specc.transforms.bptt`.
"""

from __future__ import annotations

import numpy as np

from ..ir.dims import shape_str
from ..errors import IRError
from ..ir.core import Eqn, Graph, TensorType
from ..ir.scan import split_inputs
from .core import GraphVerifier, Op, ShapeRuleError, np_dtype, register


def _infer(ins, p):
    body: Graph = p["body"]
    length = p["length"]
    consts, seqs, inits = split_inputs(ins, p)
    for s in seqs:
        if s.rank == 0 or s.shape[0] != length:
            raise ShapeRuleError(f"a sequence read at [t] must have leading dim {length}, got {shape_str(s.shape)}")
    lagged = [(name, k) for name, k in p["states"] if k > 0]
    if len(inits) != len(lagged):
        raise ShapeRuleError(f"scan expects {len(lagged)} initial states, got {len(inits)}")
    outs = []
    for (name, _k), v in zip(p["states"], body.outputs):
        outs.append(TensorType(v.dtype, (length, *v.shape)))
    return outs


def _verify(eqn: Eqn, where: str, verify: GraphVerifier) -> None:
    p = eqn.params
    body: Graph = p["body"]
    consts, seqs, inits = split_inputs(eqn.inputs, p)
    expected = [c.type for c in consts] + [TensorType(s.dtype, s.shape[1:]) for s in seqs]
    init_iter = iter(inits)
    for (name, k), out in zip(p["states"], body.outputs):
        if k > 0:
            init = next(init_iter)
            if init.type != out.type:
                raise IRError(f"{where}: state {name} starts as {init.type} but steps to {out.type}", eqn.loc)
            expected.extend([out.type] * k)
    got = [v.type for v in body.inputs]
    if got != expected:
        raise IRError(f"{where}: scan body inputs {list(map(str, got))} != {list(map(str, expected))}", eqn.loc)
    if len(body.outputs) != len(p["states"]):
        raise IRError(f"{where}: scan body has {len(body.outputs)} outputs for {len(p['states'])} states", eqn.loc)
    verify(body, where=f"{where} / recur body")


def _ref(ctx, ins, p):
    body: Graph = p["body"]
    consts, seqs, inits = split_inputs(ins, p)
    length = ctx.dim(p["length"])
    states = p["states"]
    history: list[list[np.ndarray]] = [[] for _ in states]  # in iteration order
    init_of = {}
    it = iter(inits)
    for i, (_name, k) in enumerate(states):
        if k > 0:
            init_of[i] = next(it)
    steps = range(length - 1, -1, -1) if p["reverse"] else range(length)
    for n, t in enumerate(steps):
        args = list(consts) + [s[t] for s in seqs]
        for i, (_name, k) in enumerate(states):
            for lag in range(1, k + 1):
                args.append(history[i][n - lag] if n - lag >= 0 else init_of[i])
        sub = ctx.__class__(ctx.dims, ctx.seed, ctx.training, ctx.path + (t,), ctx.run_graph)
        outs = ctx.run_graph(body, args, sub)
        for i, v in enumerate(outs):
            history[i].append(v)
    results = []
    for i, hist in enumerate(history):
        seq = hist[::-1] if p["reverse"] else hist
        if seq:
            results.append(np.stack(seq))
        else:
            out_t = body.outputs[i].type
            results.append(np.zeros((0, *ctx.shape(out_t.shape)), dtype=np_dtype(out_t.dtype)))
    return results


register(Op("scan", _infer, _ref, n_inputs=None, extra_verify=_verify,
            doc="a recurrence: a body graph applied over time steps",
            no_vjp="an op with a body: autodiff's own rule (BPTT, specc.transforms.bptt)"))
