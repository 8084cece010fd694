"""Builtins of selection and masks: ``where``, ``not``, ``stop_gradient``, ``argmax``/``argmin``,
``tril``/``triu``, ``repeat``/``tile`` and ``max``/``min`` of a tensor or of two tensors.

In: a call's evaluated arguments (see :mod:`specc.frontend.builtins`, whose ``builtin``
decorator registers these in the same table).  Out: IR equations through the call context.

Masks are 0/1 numbers of their tensor's dtype (see :mod:`specc.ops.select`), so ``tril``/``triu``
select through ``where`` with the ``tri`` mask, ``repeat``/``tile`` broadcast against zeros and
reshape (their gradients are the sums autodiff already gives broadcasting), and ``min`` over axes
is ``-max(-x)``.
"""

from __future__ import annotations

from typing import Any

from ..ir.core import Value
from ..ir.dims import Dim
from .builtins import Axes, Raw, Tensor, builtin
from .expressions import tensor

ONE = Dim.const(1)


def _operand(cx, v: Any, name: str, dtype: str | None) -> Value:
    """A tensor argument taken raw, so that a number gets the dtype of the other branch (``where(c, ids, 0)``)."""
    return tensor(cx.el, v, cx.arg_spans.get(name, cx.call.span), cx.frame, dtype)


@builtin
def where(cx, cond: Tensor, a: Raw, b: Raw) -> Value:
    """a where cond is nonzero (true), else b; broadcasting; the gradient goes to the chosen branch"""
    dtype = a.dtype if isinstance(a, Value) else b.dtype if isinstance(b, Value) else None
    a, b = _operand(cx, a, "a", dtype), _operand(cx, b, "b", dtype)
    cx.tensor_args += [("argument 'a'", a), ("argument 'b'", b)]
    return cx.emit("where", [cond, a, b])


@builtin
def not_(cx, x: Tensor) -> Value:
    """1 where x is 0 (false), else 0: `not x` or `!x`"""
    return cx.emit("compare", [x, cx.const(0.0, x.dtype)], cmp="eq")


@builtin
def stop_gradient(cx, x: Tensor) -> Value:
    """x, through which no gradient flows back (a constant to the optimiser)"""
    return cx.emit("stop_gradient", [x])


def _arg(name: str):
    def fn(cx, x: Tensor, axis: int = -1, keepdims: bool = False) -> Value:
        return cx.emit(name, [x], axis=cx.axis(axis, x), keepdims=bool(keepdims))

    fn.__name__ = name
    fn.__doc__ = f"i32 position of the {name[3:]} along an axis (the first on ties); no gradient"
    return builtin(fn)


_arg("argmax")
_arg("argmin")


def _triangle(cx, x: Value, diagonal: int, lower: bool) -> Value:
    if x.type.rank < 2:
        cx.fail(f"'{cx.call.func}' needs a matrix (or a batch of them), got a tensor of rank {x.type.rank}")
    shape = tuple(x.shape[-2:])
    mask = cx.emit("tri", [], shape=shape, k=diagonal if lower else diagonal - 1, dtype=x.dtype)
    zero = cx.const(0.0, x.dtype)
    return cx.emit("where", [mask, x, zero] if lower else [mask, zero, x])


@builtin
def tril(cx, x: Tensor, diagonal: int = 0) -> Value:
    """x on and below the diagonal (j - i <= diagonal) of its last two axes, 0 above"""
    return _triangle(cx, x, diagonal, lower=True)


@builtin
def triu(cx, x: Tensor, diagonal: int = 0) -> Value:
    """x on and above the diagonal (j - i >= diagonal) of its last two axes, 0 below"""
    return _triangle(cx, x, diagonal, lower=False)


def _spread(cx, x: Value, split: tuple, full: tuple, final: tuple) -> Value:
    """reshape x to ``split``, broadcast it to ``full`` (adding zeros), reshape to ``final``."""
    y = cx.emit("reshape", [x], shape=split) if split != tuple(x.shape) else x
    y = cx.emit("add", [y, cx.emit("full", [], shape=full, value=0.0, dtype=x.dtype)])
    return cx.emit("reshape", [y], shape=final)


@builtin
def repeat(cx, x: Tensor, repeats: int, axis: int) -> Value:
    """each element repeated `repeats` times along an axis (NumPy's repeat): [a, b] -> [a, a, b, b]"""
    if repeats < 1:
        cx.fail(f"repeats must be positive, got {repeats}", cx.arg_spans.get("repeats"))
    ax = cx.axis(axis, x)
    s = tuple(x.shape)
    n = Dim.const(repeats)
    return _spread(cx, x, s[:ax + 1] + (ONE,) + s[ax + 1:], s[:ax + 1] + (n,) + s[ax + 1:],
                   s[:ax] + (s[ax] * n,) + s[ax + 1:])


@builtin
def tile(cx, x: Tensor, reps: Axes) -> Value:
    """x repeated as a whole `reps` times per axis (NumPy's tile): tile([a, b], 2) -> [a, b, a, b]"""
    items = reps if isinstance(reps, list) else [reps]
    if not items or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in items):
        cx.fail(f"reps must be a positive integer or a list of them, got {reps}", cx.arg_spans.get("reps"))
    rank = max(len(items), x.type.rank)
    items = [1] * (rank - len(items)) + list(items)
    s = (ONE,) * (rank - x.type.rank) + tuple(x.shape)
    split = tuple(d for size in s for d in (ONE, size))
    full = tuple(d for r, size in zip(items, s) for d in (Dim.const(r), size))
    final = tuple(size * r for r, size in zip(items, s))
    return _spread(cx, x, split, full, final)


def _extreme(name: str, binary: str):
    def fn(cx, x: Tensor, axis: Raw = None, keepdims: bool = False) -> Value:
        if isinstance(axis, Value) or isinstance(axis, float):  # max(a, b): elementwise, broadcasting
            b = _operand(cx, axis, "axis", x.dtype)
            return cx.emit(binary, [x, b])
        axes = tuple(range(x.type.rank)) if axis is None else cx.axes(axis, x)
        if name == "max":
            return cx.emit("max", [x], axes=axes, keepdims=bool(keepdims))
        return cx.emit("neg", [cx.emit("max", [cx.emit("neg", [x])], axes=axes, keepdims=bool(keepdims))])

    fn.__name__ = name
    fn.__doc__ = (f"{name} over axes (all by default); {name}(a, b) of two tensors (or a tensor and a float) is "
                  f"elementwise, broadcasting, the gradient going to the {'larger' if name == 'max' else 'smaller'} "
                  "(to a on ties)")
    return builtin(fn)


_extreme("max", "maximum")
_extreme("min", "minimum")
