"""Ops of comparison and selection: masks, ``where``, ``stop_gradient``, arg-reductions, triangles.

In: operand types and params.  Out: registered :class:`~specc.ops.core.Op` entries.

Truth values are numbers of the operands' dtype, 1 for true and 0 for false (a comparison of
f32 tensors gives an f32 mask, of i32 tensors an i32 one), and ``where`` reads any nonzero
condition as true.  So there is no boolean dtype: a mask is an ordinary elementwise value that
fusion keeps in a register, ``float(mask)`` is free, and ``mask * x`` needs no cast.

* ``compare`` (``cmp`` one of lt, le, gt, ge, eq, ne): broadcasting, zero derivative.
* ``where(c, a, b)``: a where c != 0 else b, broadcasting all three; the cotangent goes to the
  chosen branch, zero to the other, none to ``c``.
* ``stop_gradient(x)``: x forward, no cotangent back.
* ``argmax`` / ``argmin`` along one axis: i32 positions (the first one on ties, as NumPy).
* ``tri``: the [N, M] mask 1 where ``j - i <= k`` (NumPy's ``tri``); tril/triu multiply by it.
"""

from __future__ import annotations

import numpy as np

from ..ir.core import TensorType
from .core import ONE, Op, ShapeRuleError, broadcast, norm_axis, np_dtype, register, same_dtype

CMP = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
       "ne": np.not_equal}


def _zero_vjp(g, eqn, cts, needed):
    return [None] * len(eqn.inputs)  # piecewise constant (or integer valued): no gradient


def _compare_infer(ins, p):
    if p["cmp"] not in CMP:
        raise ShapeRuleError(f"unknown comparison {p['cmp']!r}")
    dt = same_dtype(ins, "compare")
    return [TensorType(dt, broadcast(ins[0].shape, ins[1].shape))]


register(Op("compare", _compare_infer,
            lambda ctx, ins, p: [CMP[p["cmp"]](ins[0], ins[1]).astype(ins[0].dtype)], n_inputs=2,
            elementwise=True, doc="1 where `a cmp b` holds, else 0 (cmp: lt le gt ge eq ne)", vjp=_zero_vjp))


def _where_infer(ins, p):
    dt = same_dtype(ins[1:], "where")
    return [TensorType(dt, broadcast(broadcast(ins[0].shape, ins[1].shape), ins[2].shape))]


def _where_vjp(g, eqn, cts, needed):
    c, a, b = eqn.inputs
    (ct,) = cts
    zero = g.const(0.0, ct.dtype)
    da = g.sum_to(g.emit("where", [c, ct, zero]), a.shape) if needed[1] else None
    db = g.sum_to(g.emit("where", [c, zero, ct]), b.shape) if needed[2] else None
    return [None, da, db]


register(Op("where", _where_infer,
            lambda ctx, ins, p: [np.where(ins[0] != 0, ins[1], ins[2]).astype(ins[1].dtype)], n_inputs=3,
            elementwise=True, doc="a where c != 0, else b (broadcasting)", vjp=_where_vjp))

register(Op("stop_gradient", lambda ins, p: [ins[0]], lambda ctx, ins, p: [ins[0].copy()], n_inputs=1,
            elementwise=True, doc="x, through which no gradient flows back", vjp=_zero_vjp))


def _arg_infer(name):
    def infer(ins, p):
        x = ins[0]
        if x.rank == 0:
            raise ShapeRuleError(f"'{name}' needs a tensor with at least one axis")
        ax = norm_axis(p["axis"], x.rank)
        if p.get("keepdims"):
            shape = tuple(ONE if i == ax else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i != ax)
        return [TensorType("i32", shape)]

    return infer


def _arg_ref(fn):
    def ref(ctx, ins, p):
        y = fn(ins[0], axis=p["axis"], keepdims=bool(p.get("keepdims")))
        return [np.asarray(y, dtype=np.int32)]

    return ref


for _name, _fn in (("argmax", np.argmax), ("argmin", np.argmin)):
    register(Op(_name, _arg_infer(_name), _arg_ref(_fn), n_inputs=1,
                doc=f"i32 positions of the {_name[3:]} along an axis (the first on ties)", vjp=_zero_vjp))


def _tri_infer(ins, p):
    if len(p["shape"]) != 2:
        raise ShapeRuleError("tri makes a matrix: its shape has two sizes")
    return [TensorType(p["dtype"], tuple(p["shape"]))]


def _tri_ref(ctx, ins, p):
    n, m = ctx.shape(p["shape"])
    return [np.tri(n, m, int(p["k"]), dtype=np_dtype(p["dtype"]))]


register(Op("tri", _tri_infer, _tri_ref, n_inputs=0, doc="[N, M] mask: 1 where j - i <= k, else 0",
            vjp=_zero_vjp))
