"""The built-in functions of the .nn language and how each lowers to IR ops.

In: a call's evaluated arguments (tensors as IR values, sizes, numbers).
Out: IR equations emitted through the call context.

Each builtin is a Python function whose annotated signature *is* the
language signature: ``Tensor`` arguments take tensors (a number becomes a
constant), ``int``/``float``/``bool`` take literals, ``Shape`` takes a list of
sizes, ``Axes`` an axis or a list of axes.  The elaborator binds call
arguments to these signatures and reports mismatches against the spec.
"""

from __future__ import annotations

from typing import Callable, NewType, Sequence

from ..ir.dims import Dim, numel
from ..ir.core import Value

Tensor = NewType("Tensor", object)
Shape = NewType("Shape", object)
Axes = NewType("Axes", object)
Size = NewType("Size", object)
IntOrPair = NewType("IntOrPair", object)
Raw = NewType("Raw", object)  # taken as evaluated: a tensor, a number or a size (the builtin converts it)

BUILTINS: dict[str, Callable] = {}


def builtin(fn: Callable) -> Callable:
    BUILTINS[fn.__name__.rstrip("_")] = fn
    return fn


# ---- elementwise -----------------------------------------------------------------------
def _unary(name: str, doc: str):
    def fn(cx, x: Tensor) -> Value:
        return cx.emit(name, [x])

    fn.__name__ = name
    fn.__doc__ = doc
    return builtin(fn)


for _n, _d in [
    ("exp", "e^x"), ("log", "natural log"), ("sqrt", "square root"), ("abs", "|x|"),
    ("sigmoid", "logistic function"), ("tanh", "hyperbolic tangent"), ("relu", "max(x, 0)"),
    ("gelu", "Gaussian error linear unit (tanh approximation)"), ("softplus", "log(1 + e^x)"),
]:
    _unary(_n, _d)


@builtin
def leaky_relu(cx, x: Tensor, alpha: float = 0.01) -> Value:
    """x if x > 0 else alpha * x"""
    return cx.emit("leaky_relu", [x], alpha=float(alpha))


@builtin
def elu(cx, x: Tensor, alpha: float = 1.0) -> Value:
    """x if x > 0 else alpha * (e^x - 1)"""
    return cx.emit("elu", [x], alpha=float(alpha))


@builtin
def maximum(cx, a: Tensor, b: Tensor) -> Value:
    """elementwise max"""
    a, b = cx.weak(a, b)
    return cx.emit("maximum", [a, b])


@builtin
def minimum(cx, a: Tensor, b: Tensor) -> Value:
    """elementwise min"""
    a, b = cx.weak(a, b)
    return cx.emit("minimum", [a, b])


@builtin
def clip(cx, x: Tensor, low: float, high: float) -> Value:
    """limit values to [low, high]"""
    lo, hi = cx.const(float(low), x.dtype), cx.const(float(high), x.dtype)
    return cx.emit("minimum", [cx.emit("maximum", [x, lo]), hi])


@builtin
def float_(cx, x: Tensor) -> Value:
    """convert to the model's float type"""
    return x if x.dtype == cx.float_dtype else cx.emit("cast", [x], dtype=cx.float_dtype)


@builtin
def int_(cx, x: Tensor) -> Value:
    """convert to i32 (truncating)"""
    return x if x.dtype == "i32" else cx.emit("cast", [x], dtype="i32")


# ---- softmax family and reductions -----------------------------------------------------
@builtin
def softmax(cx, x: Tensor, axis: int = -1) -> Value:
    """e^x / sum(e^x) along an axis"""
    return cx.emit("softmax", [x], axis=cx.axis(axis, x))


@builtin
def log_softmax(cx, x: Tensor, axis: int = -1) -> Value:
    """log of softmax, computed stably"""
    return cx.emit("log_softmax", [x], axis=cx.axis(axis, x))


def _reduction(name: str, doc: str):
    def fn(cx, x: Tensor, axis: Axes = None, keepdims: bool = False) -> Value:
        axes = tuple(range(x.type.rank)) if axis is None else cx.axes(axis, x)
        return cx.emit(name, [x], axes=axes, keepdims=bool(keepdims))

    fn.__name__ = name
    fn.__doc__ = doc
    return builtin(fn)


_reduction("sum", "sum over axes (all by default)")
_reduction("mean", "mean over axes (all by default)")
# max and min (over axes, or of two tensors) are in specc.frontend.builtins_select


# ---- structure -------------------------------------------------------------------------
@builtin
def concat(cx, *xs: Tensor, axis: int = -1) -> Value:
    """join tensors along an axis (the last by default)"""
    if not xs:
        cx.fail("concat needs at least one tensor")
    return cx.emit("concat", list(xs), axis=cx.axis(axis, xs[0]))


@builtin
def reshape(cx, x: Tensor, shape: Shape) -> Value:
    """same elements, new shape; one entry may be -1"""
    return cx.emit("reshape", [x], shape=cx.resolve_reshape(x, shape))


@builtin
def flatten(cx, x: Tensor, start: int = 1) -> Value:
    """merge the axes from `start` on into one: [B, C, H, W] -> [B, C*H*W]"""
    start = cx.axis(start, x)
    shape = tuple(x.shape[:start]) + (numel(x.shape[start:]),)
    return cx.emit("reshape", [x], shape=shape)


@builtin
def transpose(cx, x: Tensor, axes: Axes = None) -> Value:
    """permute axes (reverse them by default)"""
    perm = tuple(reversed(range(x.type.rank))) if axes is None else cx.axes(axes, x, ordered=False)
    return cx.emit("transpose", [x], perm=perm)


@builtin
def zeros(cx, shape: Shape) -> Value:
    """a tensor of zeros"""
    return cx.emit("full", [], shape=tuple(shape), value=0.0, dtype=cx.float_dtype)


@builtin
def ones(cx, shape: Shape) -> Value:
    """a tensor of ones"""
    return cx.emit("full", [], shape=tuple(shape), value=1.0, dtype=cx.float_dtype)


@builtin
def full(cx, shape: Shape, value: float) -> Value:
    """a tensor filled with one value"""
    return cx.emit("full", [], shape=tuple(shape), value=float(value), dtype=cx.float_dtype)


@builtin
def zeros_like(cx, x: Tensor) -> Value:
    """zeros of x's shape and dtype"""
    return cx.emit("full", [], shape=tuple(x.shape), value=0.0, dtype=x.dtype)


@builtin
def ones_like(cx, x: Tensor) -> Value:
    """ones of x's shape and dtype"""
    return cx.emit("full", [], shape=tuple(x.shape), value=1.0, dtype=x.dtype)


# ---- random ----------------------------------------------------------------------------
@builtin
def normal(cx, shape: Shape) -> Value:
    """standard normal draws (the VAE's epsilon); replayed exactly in the backward pass"""
    return cx.emit("normal", [], shape=tuple(shape), dtype=cx.float_dtype, stream=cx.stream())


@builtin
def normal_like(cx, x: Tensor) -> Value:
    """standard normal draws of x's shape"""
    return cx.emit("normal", [], shape=tuple(x.shape), dtype=x.dtype, stream=cx.stream())


@builtin
def uniform(cx, shape: Shape) -> Value:
    """uniform draws in [0, 1)"""
    return cx.emit("uniform", [], shape=tuple(shape), dtype=cx.float_dtype, stream=cx.stream())


@builtin
def dropout(cx, x: Tensor, p: float = 0.5) -> Value:
    """zero each element with probability p while training, scale the rest by 1/(1-p)"""
    if not 0.0 <= p < 1.0:
        cx.fail(f"dropout probability must be in [0, 1), got {p}")
    mask = cx.emit("dropout_mask", [], shape=tuple(x.shape), dtype=x.dtype, p=float(p), stream=cx.stream())
    return cx.emit("mul", [x, mask])


@builtin
def training(cx) -> Value:
    """1 while training, 0 in evaluation: a scalar for choosing between batch and running statistics"""
    return cx.emit("training_flag", [], dtype=cx.float_dtype)


# ---- convolution, pooling, lookup ------------------------------------------------------
def _conv(nd: int):
    def fn(cx, x: Tensor, w: Tensor, b: Tensor = None, stride: IntOrPair = 1, padding: IntOrPair = 0,
           dilation: IntOrPair = 1) -> Value:
        y = cx.emit("conv", [x, w], nd=nd, stride=cx.ntuple(stride, nd), padding=cx.ntuple(padding, nd),
                    dilation=cx.ntuple(dilation, nd))
        if b is None:
            return y
        bias = cx.emit("reshape", [b], shape=(b.shape[0],) + (Dim.const(1),) * nd) if b.type.rank == 1 else b
        return cx.emit("add", [y, bias])

    fn.__name__ = f"conv{nd}d"
    fn.__doc__ = f"{nd}-D convolution of [B, C, *S] with weights [O, C, *K] (+ bias [O])"
    return builtin(fn)


_conv(1)
_conv(2)


def _conv_transpose(nd: int):
    def fn(cx, x: Tensor, w: Tensor, b: Tensor = None, stride: IntOrPair = 1, padding: IntOrPair = 0,
           output_padding: IntOrPair = 0, dilation: IntOrPair = 1) -> Value:
        y = cx.emit("conv_transpose", [x, w], nd=nd, stride=cx.ntuple(stride, nd), padding=cx.ntuple(padding, nd),
                    dilation=cx.ntuple(dilation, nd), output_padding=cx.ntuple(output_padding, nd))
        if b is None:
            return y
        bias = cx.emit("reshape", [b], shape=(b.shape[0],) + (Dim.const(1),) * nd) if b.type.rank == 1 else b
        return cx.emit("add", [y, bias])

    fn.__name__ = f"conv_transpose{nd}d"
    fn.__doc__ = (f"{nd}-D transposed convolution of [B, C_in, *S] with weights [C_in, C_out, *K] (+ bias "
                  f"[C_out]), as torch's conv_transpose{nd}d")
    return builtin(fn)


_conv_transpose(1)
_conv_transpose(2)


def _pool(kind: str, nd: int):
    def fn(cx, x: Tensor, kernel: IntOrPair = 2, stride: IntOrPair = None, padding: IntOrPair = 0) -> Value:
        k = cx.ntuple(kernel, nd)
        s = k if stride is None else cx.ntuple(stride, nd)
        return cx.emit(f"{kind}_pool", [x], nd=nd, kernel=k, stride=s, padding=cx.ntuple(padding, nd))

    fn.__name__ = f"{kind}_pool{nd}d"
    fn.__doc__ = f"{kind} pooling over {nd}-D windows (stride defaults to the kernel)"
    return builtin(fn)


for _kind in ("max", "avg"):
    for _nd in (1, 2):
        _pool(_kind, _nd)


@builtin
def take(cx, table: Tensor, ids: Tensor) -> Value:
    """rows of table [V, D] at integer ids [...] -> [..., D]"""
    return cx.emit("take", [table, ids])


# ---- losses ----------------------------------------------------------------------------
@builtin
def cross_entropy(cx, logits: Tensor, labels: Tensor) -> Value:
    """mean over the batch of -log softmax(logits)[label]; labels are i32 class ids"""
    return cx.emit("cross_entropy", [logits, labels])


@builtin
def bce_logits(cx, logits: Tensor, targets: Tensor) -> Value:
    """binary cross-entropy of targets in [0, 1] given logits (numerically stable)"""
    logits, targets = cx.weak(logits, targets)
    return cx.emit("bce_logits", [logits, targets])


def signature_text(name: str, fn: Callable) -> str:
    import inspect

    parts = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.kind is p.VAR_POSITIONAL:
            parts.append(f"*{p.name}")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            d = p.default
            parts.append(f"{p.name}={'none' if d is None else str(d).lower() if isinstance(d, bool) else d}")
    return f"{name}({', '.join(parts)})"


def describe(names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(signature, doc) for each builtin, for `docs/` and `--help`."""
    out = []
    for name in sorted(names or BUILTINS):
        fn = BUILTINS[name]
        out.append((signature_text(name, fn), (fn.__doc__ or "").strip()))
    return out
