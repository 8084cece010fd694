"""The CPU lowering rules of convolutions and their gradients: products per batch element (im2col).

In: a ``conv``, ``conv_grad_input`` or ``conv_grad_weight`` equation and a
:class:`~specc.backends.cpu.emitter.CpuEmitter`.
Out: loops that gather each window into the columns of a matrix, and ``np.dot`` (BLAS) on it.

A convolution is a product per batch element: out[b] [O, P] = W [O, C*K] @ cols [C*K, P], where
column p of ``cols`` holds the window of output position p (im2col; zeros in the padding), so
BLAS does the multiply-adds; the gradients are the two other products and a scatter back (col2im).
Pools, whose code is the same on both targets, are in :mod:`specc.backends.loops`.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Sequence

from ...ir.core import Eqn, Value
from ...ir.dims import Dim
from ..base import RuleSet
from ..common import position, taps
from .emitter import CpuEmitter

RULES = RuleSet()


def _cols_shape(e: CpuEmitter, x: Value, w: Value, out_spatial: Sequence[Dim]) -> tuple[str, str, str]:
    """(C*K, P, K) as expressions: the rows and columns of ``cols``, and the taps per channel."""
    taps = Dim.const(1)
    for d in w.shape[2:]:
        taps = taps * d
    npos = Dim.const(1)
    for d in out_spatial:
        npos = npos * d
    return e.dim(x.shape[1] * taps), e.dim(npos), e.dim(taps)


def _flat(names: Sequence[str], sizes: Sequence[str]) -> str:
    """The row-major flat index of ``names`` in an array of ``sizes``."""
    text = names[0]
    for n, size in zip(names[1:], sizes[1:]):
        text = f"({text}) * {size} + {n}"
    return text


def _im2col(e: CpuEmitter, cols: str, xs: str, b: str, x: Value, w: Value, out_spatial: Sequence[Dim], p,
            ntaps: str, scatter: bool = False) -> None:
    """Fill ``cols`` [C*K, P] from batch element ``b`` of ``xs`` (or, ``scatter``: add it back into ``xs``)."""
    kernel = [e.dim(d) for d in w.shape[2:]]
    spatial = [e.dim(d) for d in out_spatial]
    with ExitStack() as stack:
        stack.enter_context(e.lines.block(f"for j0 in range({e.dim(x.shape[1])}):"))
        for s, k in enumerate(kernel):
            stack.enter_context(e.lines.block(f"for k{s} in range({k}):"))
        row = f"j0 * {ntaps} + {_flat(taps(kernel), kernel)}" if kernel else "j0"
        us = []
        for s, size in enumerate(spatial):
            stack.enter_context(e.lines.block(f"for i{2 + s} in range({size}):"))
            us.append(position(e, stack, s, f"i{2 + s}", f"k{s}", p["stride"][s], p["dilation"][s],
                                p["padding"][s], x.shape[2 + s]))
        col = _flat([f"i{2 + s}" for s in range(len(spatial))], spatial)
        if scatter:
            e.lines(f"{e.at(xs, [b, 'j0', *us])} += {cols}[{row}, {col}]")
        else:
            e.lines(f"{cols}[{row}, {col}] = {e.at(xs, [b, 'j0', *us])}")


@RULES("conv")
def conv(e: CpuEmitter, eqn: Eqn) -> None:
    """out[b, o, p] = sum over c and the window k of x[b, c, p * stride + k * dilation - pad] * w[o, c, k]."""
    x, w = eqn.inputs
    (out,) = eqn.outputs
    xs, ws, o = e.name(x), e.name(w), e.alloc(out)
    ck, npos, ntaps = _cols_shape(e, x, w, out.shape[2:])
    dt = e.np_dtype(x.dtype)
    cols, w2, o3 = e.temp("cols"), e.temp(f"{ws}_2d"), e.temp(f"{o}_3d")
    e.lines(f"{cols} = np.zeros(({ck}, {npos}), {dt})  # positions in the padding stay 0")
    e.lines(f"{w2} = {ws}.reshape(({e.dim(w.shape[0])}, {ck}))")
    e.lines(f"{o3} = {o}.reshape(({e.dim(x.shape[0])}, {e.dim(w.shape[0])}, {npos}))")
    with e.lines.block(f"for i0 in range({e.dim(x.shape[0])}):"):
        _im2col(e, cols, xs, "i0", x, w, out.shape[2:], eqn.params, ntaps)
        e.lines(f"np.dot({w2}, {cols}, {o3}[i0])")


@RULES("conv_grad_input", "conv_transpose")
def conv_grad_input(e: CpuEmitter, eqn: Eqn) -> None:
    """dx = col2im(W^T @ dy[b]) per batch element: each window tap's share added back to its input position.

    ``conv_transpose(x, w)`` is this product with x as dy (its output shape gives the positions)."""
    dy, w = eqn.inputs
    (out,) = eqn.outputs
    ds, ws, o = e.name(dy), e.name(w), e.alloc(out, fill=0.0)
    ck, npos, ntaps = _cols_shape(e, out, w, dy.shape[2:])
    dcols, w2, d3 = e.temp("dcols"), e.temp(f"{ws}_2d"), e.temp(f"{ds}_3d")
    e.lines(f"{dcols} = np.empty(({ck}, {npos}), {e.np_dtype(dy.dtype)})")
    e.lines(f"{w2} = {ws}.reshape(({e.dim(w.shape[0])}, {ck}))")
    e.lines(f"{d3} = {ds}.reshape(({e.dim(dy.shape[0])}, {e.dim(dy.shape[1])}, {npos}))")
    with e.lines.block(f"for i0 in range({e.dim(dy.shape[0])}):"):
        e.lines(f"np.dot({w2}.T, {d3}[i0], {dcols})")
        _im2col(e, dcols, o, "i0", out, w, dy.shape[2:], eqn.params, ntaps, scatter=True)


@RULES("conv_grad_weight")
def conv_grad_weight(e: CpuEmitter, eqn: Eqn) -> None:
    """dW [O, C*K] = sum over b of dy[b] [O, P] @ cols(x[b])^T [P, C*K]."""
    x, dy = eqn.inputs
    (out,) = eqn.outputs
    p = eqn.params
    xs, ds, o = e.name(x), e.name(dy), e.alloc(out, fill=0.0)
    ck, npos, ntaps = _cols_shape(e, x, out, dy.shape[2:])
    dt = e.np_dtype(x.dtype)
    cols, part, o2, d3 = e.temp("cols"), e.temp("part"), e.temp(f"{o}_2d"), e.temp(f"{ds}_3d")
    nout = e.dim(out.shape[0])
    e.lines(f"{cols} = np.zeros(({ck}, {npos}), {dt})  # positions in the padding stay 0")
    e.lines(f"{part} = np.empty(({nout}, {ck}), {dt})")
    e.lines(f"{o2} = {o}.reshape(({nout}, {ck}))")
    e.lines(f"{d3} = {ds}.reshape(({e.dim(x.shape[0])}, {nout}, {npos}))")
    with e.lines.block(f"for i0 in range({e.dim(x.shape[0])}):"):
        _im2col(e, cols, xs, "i0", x, out, dy.shape[2:], p, ntaps)
        e.lines(f"np.dot({d3}[i0], {cols}.T, {part})")
        with e.lines.block(f"for j0 in range({nout}):"):
            with e.lines.block(f"for j1 in range({ck}):"):
                e.lines(f"{o2}[j0, j1] += {part}[j0, j1]")
