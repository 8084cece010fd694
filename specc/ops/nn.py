"""Neural-network ops: softmax family, convolution, pooling, lookup, losses,
random draws.

Convolution and pooling use NCHW / NCL layouts and weights [O, C, K...], as
PyTorch does, so weights map one to one.  Each op's VJP is written just
before its registration, which gives it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..ir.dims import Dim, shape_str
from ..ir.core import TensorType
from .core import Op, ShapeRuleError, need_float, need_int, np_dtype, register, same_dtype
from .shard import draw_plan


# ---- softmax / log_softmax -------------------------------------------------------------
def _softmax_ref(ctx, ins, p):
    x = ins[0]
    z = x - np.max(x, axis=p["axis"], keepdims=True)
    e = np.exp(z)
    return [(e / np.sum(e, axis=p["axis"], keepdims=True)).astype(x.dtype)]


def _log_softmax_ref(ctx, ins, p):
    x = ins[0]
    z = x - np.max(x, axis=p["axis"], keepdims=True)
    return [(z - np.log(np.sum(np.exp(z), axis=p["axis"], keepdims=True))).astype(x.dtype)]


def _axis_keep_infer(name):
    def infer(ins, p):
        need_float(ins[0], name)
        if not 0 <= p["axis"] < max(ins[0].rank, 1) or ins[0].rank == 0:
            raise ShapeRuleError(f"{name} needs a tensor with an axis {p['axis']}")
        return [ins[0]]

    return infer


def _softmax_vjp(g, eqn, cts, needed):
    (y,), (ct,) = eqn.outputs, cts
    axis = eqn.params["axis"]
    s = g.emit("sum", [g.mul(ct, y)], axes=(axis,), keepdims=True)
    return [g.mul(y, g.sub(ct, s))]


def _log_softmax_vjp(g, eqn, cts, needed):
    (y,), (ct,) = eqn.outputs, cts
    axis = eqn.params["axis"]
    s = g.emit("sum", [ct], axes=(axis,), keepdims=True)
    return [g.sub(ct, g.mul(g.emit("exp", [y]), s))]


register(Op("softmax", _axis_keep_infer("softmax"), _softmax_ref, n_inputs=1, doc="e^x / sum(e^x) along axis",
            vjp=_softmax_vjp))
register(Op("log_softmax", _axis_keep_infer("log_softmax"), _log_softmax_ref, n_inputs=1,
            doc="x - log(sum(e^x)) along axis", vjp=_log_softmax_vjp))


# ---- convolution -----------------------------------------------------------------------
def conv_out(length: Dim, k: Dim, stride: int, pad: int, dil: int) -> Dim:
    return (length + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _conv_infer(ins, p):
    x, w = ins
    nd = p["nd"]
    dt = same_dtype(ins, f"conv{nd}d")
    need_float(x, f"conv{nd}d")
    if x.rank != nd + 2:
        raise ShapeRuleError(f"conv{nd}d input must be [B, C, {'L' if nd == 1 else 'H, W'}], got {shape_str(x.shape)}")
    if w.rank != nd + 2:
        raise ShapeRuleError(f"conv{nd}d weight must be [O, C, {', '.join('K' * nd)}], got {shape_str(w.shape)}",
                             operand=1)
    if x.shape[1] != w.shape[1]:
        raise ShapeRuleError(
            f"conv{nd}d: input has {x.shape[1]} channels but the weight expects {w.shape[1]}", operand=1
        )
    spatial = []
    for i in range(nd):
        n = conv_out(x.shape[2 + i], w.shape[2 + i], p["stride"][i], p["padding"][i], p["dilation"][i])
        if n.is_const and n.value <= 0:
            raise ShapeRuleError(f"conv{nd}d: the kernel does not fit the input ({shape_str(x.shape)}) on axis {2 + i}")
        spatial.append(n)
    return [TensorType(dt, (x.shape[0], w.shape[0], *spatial))]


def _windows(x: np.ndarray, k: tuple[int, ...], stride, pad, dil, fill=0.0) -> np.ndarray:
    """[B, C, *S] -> [B, C, *S_out, *K] (a strided view after padding)."""
    nd = len(k)
    if any(pad):
        x = np.pad(x, [(0, 0), (0, 0)] + [(q, q) for q in pad], constant_values=fill)
    span = tuple(dil[i] * (k[i] - 1) + 1 for i in range(nd))
    v = sliding_window_view(x, span, axis=tuple(range(2, 2 + nd)))
    sl = (slice(None), slice(None)) + tuple(slice(None, None, stride[i]) for i in range(nd))
    sl += tuple(slice(None, None, dil[i]) for i in range(nd))
    return v[sl]


def _conv_ref(ctx, ins, p):
    x, w = ins
    nd = p["nd"]
    k = w.shape[2:]
    win = _windows(x, k, p["stride"], p["padding"], p["dilation"])  # [B, C, *S, *K]
    # contract C and K: out[b, o, s] = sum_{c,k} win[b, c, s, k] * w[o, c, k]
    c_axes = [1] + list(range(2 + nd, 2 + 2 * nd))
    w_axes = [1] + list(range(2, 2 + nd))
    out = np.tensordot(win, w, axes=(c_axes, w_axes))  # [B, *S, O]
    return [np.ascontiguousarray(np.moveaxis(out, -1, 1)).astype(x.dtype)]


def _conv_params(p):
    return {k: p[k] for k in ("nd", "stride", "padding", "dilation")}


def _conv_vjp(g, eqn, cts, needed):
    x, w = eqn.inputs
    (ct,) = cts
    p = _conv_params(eqn.params)
    dx = g.emit("conv_grad_input", [ct, w], in_shape=tuple(x.shape), **p) if needed[0] else None
    dw = g.emit("conv_grad_weight", [x, ct], w_shape=tuple(w.shape), **p) if needed[1] else None
    return [dx, dw]


register(Op("conv", _conv_infer, _conv_ref, n_inputs=2,
            doc="convolution (cross-correlation) of [B, C, *S] with [O, C, *K]; params nd, stride, padding, dilation",
            vjp=_conv_vjp))


# ---- pooling ---------------------------------------------------------------------------
def _pool_infer(name):
    def infer(ins, p):
        (x,) = ins
        nd = p["nd"]
        need_float(x, name)
        if x.rank != nd + 2:
            raise ShapeRuleError(f"{name}{nd}d input must be [B, C, {'L' if nd == 1 else 'H, W'}], "
                                 f"got {shape_str(x.shape)}")
        spatial = []
        for i in range(nd):
            n = conv_out(x.shape[2 + i], Dim.const(p["kernel"][i]), p["stride"][i], p["padding"][i], 1)
            if n.is_const and n.value <= 0:
                raise ShapeRuleError(f"{name}{nd}d: the window does not fit the input {shape_str(x.shape)}")
            spatial.append(n)
        return [TensorType(x.dtype, (x.shape[0], x.shape[1], *spatial))]

    return infer


def _pool_ref(reduce, fill):
    def ref(ctx, ins, p):
        x = ins[0]
        nd = p["nd"]
        win = _windows(x, p["kernel"], p["stride"], p["padding"], (1,) * nd, fill=fill)
        return [reduce(win, axis=tuple(range(-nd, 0))).astype(x.dtype)]

    return ref


def _pool_params(p):
    return {k: p[k] for k in ("nd", "kernel", "stride", "padding")}


def _max_pool_vjp(g, eqn, cts, needed):
    x = eqn.inputs[0]
    return [g.emit("max_pool_grad", [x, cts[0]], in_shape=tuple(x.shape), **_pool_params(eqn.params))]


def _avg_pool_vjp(g, eqn, cts, needed):
    x = eqn.inputs[0]
    return [g.emit("avg_pool_grad", [cts[0]], in_shape=tuple(x.shape), **_pool_params(eqn.params))]


register(Op("max_pool", _pool_infer("max_pool"), _pool_ref(np.max, -np.inf), n_inputs=1,
            doc="max over windows; params nd, kernel, stride, padding", vjp=_max_pool_vjp))
register(Op("avg_pool", _pool_infer("avg_pool"), _pool_ref(np.mean, 0.0), n_inputs=1,
            doc="mean over windows (padding counts as zeros); params nd, kernel, stride, padding",
            vjp=_avg_pool_vjp))


# ---- lookup ----------------------------------------------------------------------------
def _take_infer(ins, p):
    table, ids = ins
    need_int(ids, "embedding", operand=1)
    if table.rank != 2:
        raise ShapeRuleError(f"embedding table must be [V, D], got {shape_str(table.shape)}")
    return [TensorType(table.dtype, ids.shape + table.shape[1:])]


def _take_vjp(g, eqn, cts, needed):
    table, ids = eqn.inputs
    return [g.emit("take_grad", [ids, cts[0]], rows=table.shape[0]), None]


register(Op("take", _take_infer, lambda ctx, ins, p: [ins[0][ins[1]]], n_inputs=2,
            doc="rows of a table by integer ids: table[ids]", vjp=_take_vjp))


# ---- losses ----------------------------------------------------------------------------
def _ce_infer(ins, p):
    logits, labels = ins
    need_float(logits, "cross_entropy")
    need_int(labels, "cross_entropy", operand=1)
    if logits.rank < 1 or labels.shape != logits.shape[:-1]:
        raise ShapeRuleError(
            f"cross_entropy needs logits [..., C] and integer labels [...]: got {shape_str(logits.shape)} "
            f"and {shape_str(labels.shape)}"
        )
    return [TensorType(logits.dtype, ())]


def _ce_ref(ctx, ins, p):
    logits, labels = ins
    logp = _log_softmax_ref(ctx, [logits], {"axis": logits.ndim - 1})[0]
    picked = np.take_along_axis(logp, labels[..., None].astype(np.int64), axis=-1)
    return [np.asarray(-np.mean(picked), dtype=logits.dtype)]


def _ce_vjp(g, eqn, cts, needed):
    logits, labels = eqn.inputs
    (ct,) = cts
    n = g.numel(labels.shape, logits.dtype)
    probs = g.emit("softmax", [logits], axis=logits.type.rank - 1)
    onehot = g.emit("one_hot", [labels], n=logits.shape[-1], dtype=logits.dtype)
    return [g.mul(g.sub(probs, onehot), g.div(ct, n)), None]


register(Op("cross_entropy", _ce_infer, _ce_ref, n_inputs=2,
            doc="mean over the batch of -log softmax(logits)[label]", vjp=_ce_vjp))


def _bce_infer(ins, p):
    dt = same_dtype(ins, "binary_cross_entropy")
    need_float(ins[0], "binary_cross_entropy")
    if ins[0].shape != ins[1].shape:
        raise ShapeRuleError(
            f"binary_cross_entropy needs equal shapes: {shape_str(ins[0].shape)} vs {shape_str(ins[1].shape)}"
        )
    return [TensorType(dt, ())]


def _bce_ref(ctx, ins, p):
    z, y = ins  # logits and targets in [0, 1]; stable: max(z,0) - z*y + log(1 + e^-|z|)
    loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return [np.asarray(np.mean(loss), dtype=z.dtype)]


def _bce_vjp(g, eqn, cts, needed):
    z, y = eqn.inputs
    (ct,) = cts
    scale = g.div(ct, g.numel(z.shape, z.dtype))
    dz = g.mul(g.sub(g.emit("sigmoid", [z]), y), scale) if needed[0] else None
    dy = g.mul(g.neg(z), scale) if needed[1] else None
    return [dz, dy]


register(Op("bce_logits", _bce_infer, _bce_ref, n_inputs=2,
            doc="mean binary cross-entropy of targets given logits (stable)", vjp=_bce_vjp))


# ---- random draws ----------------------------------------------------------------------
# Each random equation has a `stream` id; draws depend on (seed, stream, loop indices),
# so a replay with the same seed gives the same numbers.
def _rand_infer(ins, p):
    return [TensorType(p["dtype"], tuple(p["shape"]))]


# In data-parallel training a rank draws the whole batch's numbers and keeps its rows
# (specc.ops.shard), so the draws do not depend on how many ranks share the batch.
def _draw(ctx, p, fn):
    shape, cut = draw_plan(p["shape"], dict(ctx.dims))
    out = fn(ctx.rng(p["stream"]), shape)
    return out if cut is None else np.ascontiguousarray(out[cut])


def _normal_ref(ctx, ins, p):
    return [_draw(ctx, p, lambda rng, shape: rng.standard_normal(shape)).astype(np_dtype(p["dtype"]))]


def _uniform_ref(ctx, ins, p):
    return [_draw(ctx, p, lambda rng, shape: rng.random(shape)).astype(np_dtype(p["dtype"]))]


def _dropout_mask_ref(ctx, ins, p):
    dt = np_dtype(p["dtype"])
    keep = 1.0 - p["p"]
    if not ctx.training or p["p"] == 0.0:
        return [np.ones(ctx.shape(p["shape"]), dtype=dt)]
    u = _draw(ctx, p, lambda rng, shape: rng.random(shape))
    return [np.where(u < keep, 1.0 / keep, 0.0).astype(dt)]


def _training_flag_infer(ins, p):
    return [TensorType(p["dtype"], ())]


def _training_flag_ref(ctx, ins, p):
    return [np.array(1.0 if ctx.training else 0.0, dtype=np_dtype(p["dtype"]))]


def _no_inputs_vjp(g, eqn, cts, needed):
    return []  # a draw has no inputs to differentiate


register(Op("normal", _rand_infer, _normal_ref, n_inputs=0, random=True, doc="standard normal draws",
            vjp=_no_inputs_vjp))
register(Op("uniform", _rand_infer, _uniform_ref, n_inputs=0, random=True, doc="uniform draws in [0, 1)",
            vjp=_no_inputs_vjp))
# Not random, but known only when the graph runs (training or evaluation): lifted out of the graph like
# a draw (specc.backends.lift), so every target reads it as an input without a lowering rule of its own.
register(Op("training_flag", _training_flag_infer, _training_flag_ref, n_inputs=0, random=True,
            doc="1 while training, 0 in evaluation (batch norm's choice of statistics)", vjp=_no_inputs_vjp))
register(Op("dropout_mask", _rand_infer, _dropout_mask_ref, n_inputs=0, random=True,
            doc="1/(1-p) with probability 1-p, else 0 (all ones when not training)", vjp=_no_inputs_vjp))
