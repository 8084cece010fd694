"""Ops that move, select, combine or reduce data: matmul, reductions,
concat, getitem (indexing and slicing), reshape, transpose, cast, full.

Shape parameters may be symbolic (:class:`~specc.ir.dims.Dim`); the reference
evaluation resolves them with the run-time dim bindings in the context.  Each
op's VJP is written just before its registration, which gives it.
"""

from __future__ import annotations

import numpy as np

from ..ir.dims import Dim, numel, shape_str
from ..ir.core import TensorType
from .core import ONE, Op, ShapeRuleError, need_float, np_dtype, register, same_dtype


# ---- matmul ----------------------------------------------------------------------------
def _matmul_infer(ins, params):
    a, b = ins
    dt = same_dtype(ins, "@")
    need_float(a, "@")
    if a.rank == 0 or b.rank == 0:
        raise ShapeRuleError("'@' needs tensors of rank >= 1, not scalars")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.rank == 1 else b.shape[-2]
    if k_a != k_b:
        raise ShapeRuleError(
            f"inner dims of '@' differ: {shape_str(a.shape)} @ {shape_str(b.shape)} ({k_a} vs {k_b})"
        )
    if b.rank == 1:
        return [TensorType(dt, a.shape[:-1])]
    if b.rank == 2:
        return [TensorType(dt, a.shape[:-1] + b.shape[1:])]
    if a.rank != b.rank or a.shape[:-2] != b.shape[:-2]:
        raise ShapeRuleError(
            f"batched '@' needs equal batch dims: {shape_str(a.shape)} @ {shape_str(b.shape)}"
        )
    return [TensorType(dt, a.shape[:-1] + b.shape[-1:])]


def _swap_last(g, x):
    r = x.type.rank
    return g.transpose(x, list(range(r - 2)) + [r - 1, r - 2])


def _matmul_vjp(g, eqn, cts, needed):
    a, b = eqn.inputs
    (ct,) = cts
    da = db = None
    if b.type.rank == 1:  # [..., K] @ [K] -> [...]
        if needed[0]:
            col = g.reshape(ct, tuple(ct.shape) + (ONE,))
            da = g.mul(col, b)
        if needed[1]:
            m = numel(a.shape[:-1])
            db = g.matmul(g.transpose(g.reshape(a, (m, a.shape[-1])), (1, 0)), g.reshape(ct, (m,)))
    elif b.type.rank == 2:  # [..., K] @ [K, N] -> [..., N]
        if needed[0]:
            da = g.matmul(ct, g.transpose(b, (1, 0)))
        if needed[1]:
            m = numel(a.shape[:-1])
            a2 = g.reshape(a, (m, a.shape[-1]))
            db = g.matmul(g.transpose(a2, (1, 0)), g.reshape(ct, (m, b.shape[1])))
    else:  # batched: [..., M, K] @ [..., K, N]
        if needed[0]:
            da = g.matmul(ct, _swap_last(g, b))
        if needed[1]:
            db = g.matmul(_swap_last(g, a), ct)
    return [da, db]


register(Op("matmul", _matmul_infer, lambda ctx, ins, p: [np.matmul(ins[0], ins[1])], n_inputs=2,
            doc="a @ b: [..., K] @ [K, N] -> [..., N]; batched [..., M, K] @ [..., K, N]", vjp=_matmul_vjp))


# ---- reductions ------------------------------------------------------------------------
def _reduce_infer(name):
    def infer(ins, params):
        (x,) = ins
        if name != "max":
            need_float(x, name)
        axes = params["axes"]
        for a in axes:
            if not 0 <= a < x.rank:
                raise ShapeRuleError(f"axis {a} is out of range for a rank-{x.rank} tensor")
        if params["keepdims"]:
            shape = tuple(ONE if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return [TensorType(x.dtype, shape)]

    return infer


def _keepdims_shape(x_shape, axes):
    return tuple(ONE if i in axes else d for i, d in enumerate(x_shape))


def _reduce_vjp(name):
    def vjp(g, eqn, cts, needed):
        (x,), (y,), (ct,) = eqn.inputs, eqn.outputs, cts
        axes = eqn.params["axes"]
        kd = _keepdims_shape(x.shape, axes)
        ct_b = g.broadcast_to(g.reshape(ct, kd), x.shape)
        if name == "sum":
            return [ct_b]
        if name == "mean":
            count = numel(tuple(x.shape[i] for i in axes))
            return [g.div(ct_b, g.size(count, x.dtype))]
        # max: share the cotangent among the maxima of each reduced group
        mask = g.emit("ge", [x, g.reshape(y, kd)])
        count = g.emit("sum", [mask], axes=tuple(axes), keepdims=True)
        return [g.mul(ct_b, g.div(mask, count))]

    return vjp


_REDUCERS = {"sum": np.sum, "mean": np.mean, "max": np.max}
for _name, _fn in _REDUCERS.items():
    register(Op(
        _name,
        _reduce_infer(_name),
        (lambda fn: lambda ctx, ins, p: [np.asarray(fn(ins[0], axis=tuple(p["axes"]), keepdims=p["keepdims"]),
                                                    dtype=ins[0].dtype)])(_fn),
        n_inputs=1,
        doc=f"{_name} over axes (params: axes, keepdims)",
        vjp=_reduce_vjp(_name),
    ))


# ---- concat ----------------------------------------------------------------------------
def _concat_infer(ins, params):
    if not ins:
        raise ShapeRuleError("concat needs at least one tensor")
    dt = same_dtype(ins, "concat")
    rank = ins[0].rank
    axis = params["axis"]
    for i, t in enumerate(ins):
        if t.rank != rank:
            raise ShapeRuleError(f"concat of tensors of different rank ({ins[0].rank} and {t.rank})", operand=i)
    total = Dim.const(0)
    for i, t in enumerate(ins):
        for ax in range(rank):
            if ax != axis and t.shape[ax] != ins[0].shape[ax]:
                raise ShapeRuleError(
                    f"concat along axis {axis}: dim {ax} differs ({ins[0].shape[ax]} vs {t.shape[ax]})", operand=i
                )
        total = total + t.shape[axis]
    shape = tuple(total if ax == axis else d for ax, d in enumerate(ins[0].shape))
    return [TensorType(dt, shape)]


def _concat_vjp(g, eqn, cts, needed):
    (ct,) = cts
    axis = eqn.params["axis"]
    out, start = [], Dim.const(0)
    for v, need in zip(eqn.inputs, needed):
        stop = start + v.shape[axis]
        if need:
            index = tuple(("slice", None, None, 1) for _ in range(axis)) + (("slice", start, stop, 1),)
            out.append(g.emit("getitem", [ct], index=index))
        else:
            out.append(None)
        start = stop
    return out


register(Op("concat", _concat_infer, lambda ctx, ins, p: [np.concatenate(ins, axis=p["axis"])],
            doc="join tensors along an axis", vjp=_concat_vjp))


# ---- getitem ---------------------------------------------------------------------------
# params["index"]: one entry per leading axis:
#   ("int", Dim)                       pick one position (negative counts from the end)
#   ("slice", Dim|None, Dim|None, int) start, stop, step
def _slice_len(length: Dim, start: Dim | None, stop: Dim | None, step: int) -> Dim:
    """Length of x[start:stop:step] on an axis; NumPy's clamping when everything is known."""
    if step <= 0:
        raise ShapeRuleError("slice step must be positive")
    known = [d for d in (start, stop) if d is not None]
    if length.is_const and all(d.is_const for d in known):
        sl = slice(None if start is None else start.value, None if stop is None else stop.value, step)
        return Dim.const(len(range(length.value)[sl]))

    def norm(d: Dim | None, default: Dim) -> Dim:
        if d is None:
            return default
        return length + d if d.is_const and d.value < 0 else d

    span = norm(stop, length) - norm(start, Dim.const(0))
    if span.is_const:
        return Dim.const(max(0, -(-span.value // step)))
    return span if step == 1 else (span + (step - 1)) // step


def _getitem_infer(ins, params):
    (x,) = ins
    index = params["index"]
    if len(index) > x.rank:
        raise ShapeRuleError(f"too many indices ({len(index)}) for a rank-{x.rank} tensor")
    out: list[Dim] = []
    for ax, entry in enumerate(index):
        length = x.shape[ax]
        if entry[0] == "int":
            k = entry[1]
            if k.is_const and length.is_const and not -length.value <= k.value < length.value:
                raise ShapeRuleError(f"index {k.value} is out of range for axis {ax} of size {length.value}")
        else:
            n = _slice_len(length, entry[1], entry[2], entry[3])
            if n.is_const and n.value <= 0:
                raise ShapeRuleError(f"slice selects nothing on axis {ax} (size {length})")
            out.append(n)
    out.extend(x.shape[len(index):])
    return [TensorType(x.dtype, tuple(out))]


def index_key(ctx, index) -> tuple:
    """A getitem index with its sizes resolved: a NumPy subscript."""
    key = []
    for entry in index:
        if entry[0] == "int":
            key.append(ctx.dim(entry[1]))
        else:
            lo = None if entry[1] is None else ctx.dim(entry[1])
            hi = None if entry[2] is None else ctx.dim(entry[2])
            key.append(slice(lo, hi, entry[3]))
    return tuple(key)


def _getitem_ref(ctx, ins, params):
    return [np.array(ins[0][index_key(ctx, params["index"])], copy=True)]  # a copy, 0-d for an all-int index


def _getitem_vjp(g, eqn, cts, needed):
    (x,), (ct,) = eqn.inputs, cts
    return [g.emit("getitem_grad", [ct], index=eqn.params["index"], in_shape=tuple(x.shape))]


register(Op("getitem", _getitem_infer, _getitem_ref, n_inputs=1, doc="x[i], x[a:b], x[:, a:b:s]",
            vjp=_getitem_vjp))


# ---- reshape / transpose / cast / full -------------------------------------------------
def _reshape_infer(ins, params):
    (x,) = ins
    shape = tuple(params["shape"])
    if numel(shape) != numel(x.shape):
        raise ShapeRuleError(
            f"cannot reshape {shape_str(x.shape)} ({numel(x.shape)} elements) to {shape_str(shape)} "
            f"({numel(shape)} elements)"
        )
    return [TensorType(x.dtype, shape)]


register(Op("reshape", _reshape_infer, lambda ctx, ins, p: [ins[0].reshape(ctx.shape(p["shape"]))], n_inputs=1,
            doc="same elements, new shape",
            vjp=lambda g, eqn, cts, needed: [g.reshape(cts[0], eqn.inputs[0].shape)]))


def _transpose_infer(ins, params):
    (x,) = ins
    perm = params["perm"]
    if sorted(perm) != list(range(x.rank)):
        raise ShapeRuleError(f"transpose axes {list(perm)} are not a permutation of a rank-{x.rank} tensor's axes")
    return [TensorType(x.dtype, tuple(x.shape[i] for i in perm))]


def _transpose_vjp(g, eqn, cts, needed):
    perm = eqn.params["perm"]
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return [g.transpose(cts[0], inverse)]


register(Op("transpose", _transpose_infer,
            lambda ctx, ins, p: [np.ascontiguousarray(np.transpose(ins[0], p["perm"]))], n_inputs=1,
            doc="permute axes", vjp=_transpose_vjp))

def _cast_vjp(g, eqn, cts, needed):
    x = eqn.inputs[0]
    return [g.emit("cast", [cts[0]], dtype=x.dtype)] if x.type.is_float and cts[0].type.is_float else [None]


register(Op("cast", lambda ins, p: [TensorType(p["dtype"], ins[0].shape)],
            lambda ctx, ins, p: [ins[0].astype(np_dtype(p["dtype"]))], n_inputs=1, elementwise=True,
            doc="convert dtype", vjp=_cast_vjp))

register(Op("full", lambda ins, p: [TensorType(p["dtype"], tuple(p["shape"]))],
            lambda ctx, ins, p: [np.full(ctx.shape(p["shape"]), p["value"], dtype=np_dtype(p["dtype"]))],
            n_inputs=0, elementwise=True, doc="a tensor filled with one value (zeros, ones, constants)",
            vjp=lambda g, eqn, cts, needed: []))
