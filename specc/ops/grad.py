"""Ops that backward passes are built from.

The VJP rules of the forward ops (next to each op) emit these besides
ordinary ops: masks (``step``, ``sign``, ``ge``), a run-time size
(``size``), and the adjoints of data movement that no combination of
forward ops expresses cheaply (``getitem_grad``, the convolution and
pooling adjoints, ``take_grad``, ``one_hot``).  The masks, ``size`` and
``one_hot`` have a zero derivative and ``getitem_grad`` is linear; the
other adjoints are first order only (``no_vjp``).
"""

from __future__ import annotations

import numpy as np

from ..ir.dims import shape_str
from ..ir.core import TensorType
from .core import Op, ShapeRuleError, need_float, need_int, np_dtype, register, same_dtype
from .nn import _windows
from .structural import index_key


FIRST_ORDER = "gradient-only op: first order (the adjoint of an adjoint is not needed)"


def _zero_vjp(g, eqn, cts, needed):
    return [None] * len(eqn.inputs)  # piecewise constant: derivative 0 almost everywhere


def _same(ins, p):
    need_float(ins[0], "mask")
    return [ins[0]]


register(Op("step", _same, lambda ctx, ins, p: [(ins[0] > 0).astype(ins[0].dtype)], n_inputs=1,
            elementwise=True, doc="1 where x > 0, else 0 (the derivative of relu)", vjp=_zero_vjp))
register(Op("sign", _same, lambda ctx, ins, p: [np.sign(ins[0]).astype(ins[0].dtype)], n_inputs=1,
            elementwise=True, doc="-1, 0 or 1 (the derivative of abs)", vjp=_zero_vjp))


def _ge_infer(ins, p):
    from .core import broadcast

    dt = same_dtype(ins, "ge")
    need_float(ins[0], "ge")
    return [TensorType(dt, broadcast(ins[0].shape, ins[1].shape))]


register(Op("ge", _ge_infer, lambda ctx, ins, p: [(ins[0] >= ins[1]).astype(ins[0].dtype)], n_inputs=2,
            elementwise=True, doc="1 where a >= b, else 0", vjp=_zero_vjp))

register(Op("size", lambda ins, p: [TensorType(p["dtype"], ())],
            lambda ctx, ins, p: [np.asarray(ctx.dim(p["dim"]), dtype=np_dtype(p["dtype"]))], n_inputs=0,
            elementwise=True, doc="the run-time value of a symbolic size, as a scalar", vjp=_zero_vjp))


# ---- getitem ---------------------------------------------------------------------------
def _getitem_grad_infer(ins, p):
    return [TensorType(ins[0].dtype, tuple(p["in_shape"]))]


def _getitem_grad_ref(ctx, ins, p):
    out = np.zeros(ctx.shape(p["in_shape"]), dtype=ins[0].dtype)
    out[index_key(ctx, p["index"])] = ins[0]
    return [out]


def _getitem_grad_vjp(g, eqn, cts, needed):
    return [g.emit("getitem", [cts[0]], index=eqn.params["index"])]  # linear: its adjoint is the getitem


register(Op("getitem_grad", _getitem_grad_infer, _getitem_grad_ref, n_inputs=1,
            doc="zeros of the indexed tensor's shape with the cotangent placed at the index",
            vjp=_getitem_grad_vjp))


# ---- convolution adjoints --------------------------------------------------------------
def _conv_grad_input_infer(ins, p):
    same_dtype(ins, "conv_grad_input")
    return [TensorType(ins[0].dtype, tuple(p["in_shape"]))]


def _conv_grad_input_ref(ctx, ins, p):
    dy, w = ins  # dy [B, O, *S_out], w [O, C, *K]
    nd = p["nd"]
    in_shape = ctx.shape(p["in_shape"])
    k = w.shape[2:]
    stride, pad, dil = p["stride"], p["padding"], p["dilation"]
    padded = [in_shape[2 + i] + 2 * pad[i] for i in range(nd)]
    dx = np.zeros((in_shape[0], in_shape[1], *padded), dtype=dy.dtype)
    # scatter each kernel tap: dx[b, c, s*stride + k*dil] += sum_o dy[b, o, s] * w[o, c, k]
    for tap in np.ndindex(*k):
        contrib = np.tensordot(dy, w[(slice(None), slice(None)) + tap], axes=([1], [0]))  # [B, *S, C]
        contrib = np.moveaxis(contrib, -1, 1)
        sl = tuple(slice(tap[i] * dil[i], tap[i] * dil[i] + stride[i] * dy.shape[2 + i], stride[i])
                   for i in range(nd))
        dx[(slice(None), slice(None)) + sl] += contrib
    crop = tuple(slice(pad[i], pad[i] + in_shape[2 + i]) for i in range(nd))
    return [np.ascontiguousarray(dx[(slice(None), slice(None)) + crop])]


def _conv_grad_weight_infer(ins, p):
    same_dtype(ins, "conv_grad_weight")
    return [TensorType(ins[0].dtype, tuple(p["w_shape"]))]


def _conv_grad_weight_ref(ctx, ins, p):
    x, dy = ins  # x [B, C, *S], dy [B, O, *S_out]
    nd = p["nd"]
    k = ctx.shape(p["w_shape"])[2:]
    win = _windows(x, k, p["stride"], p["padding"], p["dilation"])  # [B, C, *S_out, *K]
    # dw[o, c, k] = sum_{b, s} dy[b, o, s] * win[b, c, s, k]
    dy_axes = [0] + list(range(2, 2 + nd))
    win_axes = [0] + list(range(2, 2 + nd))
    return [np.tensordot(dy, win, axes=(dy_axes, win_axes)).astype(x.dtype)]  # [O, C, *K]


register(Op("conv_grad_input", _conv_grad_input_infer, _conv_grad_input_ref, n_inputs=2,
            doc="adjoint of conv with respect to its input; params as conv plus in_shape",
            no_vjp=FIRST_ORDER))
register(Op("conv_grad_weight", _conv_grad_weight_infer, _conv_grad_weight_ref, n_inputs=2,
            doc="adjoint of conv with respect to its weight; params as conv plus w_shape",
            no_vjp=FIRST_ORDER))


# ---- pooling adjoints ------------------------------------------------------------------
def _pool_grad_infer(ins, p):
    return [TensorType(ins[0].dtype, tuple(p["in_shape"]))]


def _pool_scatter(ctx, dy, p, weights):
    """Add weights[b, c, s, k] * dy[b, c, s] into the input position of window s, tap k."""
    nd = p["nd"]
    in_shape = ctx.shape(p["in_shape"])
    stride, pad, k = p["stride"], p["padding"], p["kernel"]
    padded = [in_shape[2 + i] + 2 * pad[i] for i in range(nd)]
    dx = np.zeros((in_shape[0], in_shape[1], *padded), dtype=dy.dtype)
    for tap in np.ndindex(*k):
        w = weights[(Ellipsis,) + tap]  # [B, C, *S_out]
        sl = tuple(slice(tap[i], tap[i] + stride[i] * dy.shape[2 + i], stride[i]) for i in range(nd))
        dx[(slice(None), slice(None)) + sl] += w * dy
    crop = tuple(slice(pad[i], pad[i] + in_shape[2 + i]) for i in range(nd))
    return np.ascontiguousarray(dx[(slice(None), slice(None)) + crop])


def _max_pool_grad_ref(ctx, ins, p):
    x, dy = ins
    nd = p["nd"]
    win = _windows(x, p["kernel"], p["stride"], p["padding"], (1,) * nd, fill=-np.inf)
    flat = win.reshape(win.shape[: 2 + nd] + (-1,))
    first = np.argmax(flat, axis=-1)  # the first maximum of each window gets the gradient (as PyTorch)
    onehot = np.zeros_like(flat)
    np.put_along_axis(onehot, first[..., None], 1.0, axis=-1)
    return [_pool_scatter(ctx, dy, p, onehot.reshape(win.shape))]


def _avg_pool_grad_ref(ctx, ins, p):
    (dy,) = ins
    nd = p["nd"]
    k = p["kernel"]
    weights = np.full(dy.shape + tuple(k), 1.0 / int(np.prod(k)), dtype=dy.dtype)
    del nd
    return [_pool_scatter(ctx, dy, p, weights)]


def _max_pool_grad_infer(ins, p):
    same_dtype(ins, "max_pool_grad")
    return [TensorType(ins[0].dtype, tuple(p["in_shape"]))]


register(Op("max_pool_grad", _max_pool_grad_infer, _max_pool_grad_ref, n_inputs=2,
            doc="adjoint of max_pool: the cotangent goes to each window's first maximum",
            no_vjp=FIRST_ORDER))
register(Op("avg_pool_grad", _pool_grad_infer, _avg_pool_grad_ref, n_inputs=1,
            doc="adjoint of avg_pool: the cotangent spread evenly over each window",
            no_vjp=FIRST_ORDER))


# ---- lookup and labels -----------------------------------------------------------------
def _take_grad_infer(ins, p):
    ids, dy = ins
    need_int(ids, "take_grad")
    if dy.shape[: ids.rank] != ids.shape:
        raise ShapeRuleError(f"take_grad: cotangent {shape_str(dy.shape)} does not match ids {shape_str(ids.shape)}")
    return [TensorType(dy.dtype, (p["rows"], *dy.shape[ids.rank:]))]


def _take_grad_ref(ctx, ins, p):
    ids, dy = ins
    rows = ctx.dim(p["rows"])
    out = np.zeros((rows,) + dy.shape[ids.ndim:], dtype=dy.dtype)
    np.add.at(out, ids.reshape(-1), dy.reshape((-1,) + dy.shape[ids.ndim:]))
    return [out]


register(Op("take_grad", _take_grad_infer, _take_grad_ref, n_inputs=2,
            doc="adjoint of take: scatter-add the cotangent rows into a [V, D] table",
            no_vjp=FIRST_ORDER))


def _one_hot_infer(ins, p):
    need_int(ins[0], "one_hot")
    return [TensorType(p["dtype"], (*ins[0].shape, p["n"]))]


def _one_hot_ref(ctx, ins, p):
    n = ctx.dim(p["n"])
    return [(ins[0][..., None] == np.arange(n)).astype(np_dtype(p["dtype"]))]


register(Op("one_hot", _one_hot_infer, _one_hot_ref, n_inputs=1, doc="integer labels to one-hot rows",
            vjp=_zero_vjp))

GRAD_ONLY = ("step", "sign", "ge", "size", "getitem_grad", "conv_grad_input", "conv_grad_weight",
             "max_pool_grad", "avg_pool_grad", "take_grad", "one_hot")
