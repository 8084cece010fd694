"""Parameter declarations: ``param W: [D, H] = glorot``.

In: a :class:`~specc.frontend.ast.ParamDecl` in a frame (a model, a layer
called with a name prefix, or a recurrence body, from which it is hoisted).
Out: a new input of the root graph, recorded as a
:class:`~specc.ir.core.ParamInfo` with its initializer; an error if its shape
is not made of fixed positive sizes (unless a layer is being checked for every
size) or if two parameters get the same full name.
"""

from __future__ import annotations

import math

from . import ast as A
from .context import Context, Frame
from .diagnostics import call_notes, dim_note
from .sizes import check_size, type_ann
from .syntax import names_in, number_literal
from ..errors import ArgumentError, ShapeError, SpecNameError, did_you_mean
from ..ir.core import Initializer, ParamInfo, TensorType, Value
from ..ir.dims import numel

MAX_PARAM_NUMBERS = 2**31 - 1  # elements of one parameter: more cannot be allocated or indexed sanely

INITIALIZERS = {  # name -> (min args, max args)
    "zeros": (0, 0), "ones": (0, 0), "constant": (1, 1), "normal": (0, 1), "uniform": (0, 2),
    "glorot": (0, 0), "he": (0, 0), "orthogonal": (0, 1),
}


def param_decl(cx: Context, s: A.ParamDecl, frame: Frame) -> None:
    t = type_ann(cx, s.type, frame.scope)
    if not cx.generic:
        for d, d_ast in zip(t.shape, s.type.dims):
            if not d.is_const or d.value <= 0:
                infos = [(n, frame.scope.dim(n)) for n in sorted(names_in(d_ast))]
                notes = [dim_note(n, info) for n, info in infos if info and info.origin]
                what = "fixed sizes" if not d.is_const else "positive sizes"
                raise ShapeError(f"parameter shapes must be {what}, but '{s.name}' has {d}", d_ast.span,
                                 notes=notes + call_notes(frame),
                                 hint="parameter sizes come from layer arguments (hidden=64) or fixed dims"
                                 if not d.is_const else None)
    for d, d_ast in zip(t.shape, s.type.dims):
        check_size(d, d_ast.span)
    n = numel(t.shape)
    if n.is_const and n.value > MAX_PARAM_NUMBERS:
        raise ShapeError(f"parameter '{s.name}' would hold {n.value:,} numbers ({_bytes(n.value * 4)} as f32); "
                         f"the largest parameter holds {MAX_PARAM_NUMBERS:,}", s.type.span,
                         notes=call_notes(frame))
    init = initializer(s.init, t)
    full = frame.prefix + s.name
    if frame.sharing:
        shared_param(cx, s, t, full, frame)
        return
    if full in cx.params:
        where = frame.layer_stack[-1][1] if frame.layer_stack else s.span
        raise SpecNameError(f"two parameters are both named '{full}'", where or s.span,
                            notes=[f"the other '{full}' comes from {cx.param_calls[full]}",
                                   f"'{s.name}' is declared at {s.span}"] + call_notes(frame)[1:],
                            hint="to use the same parameters in both calls, pass share= the result of the first "
                                 "call instead of a name (b = f(x2, share=a)); to keep them apart, give the calls "
                                 "different names, e.g. name=\"fc2\"")
    v = cx.root.add_input(Value(t, full))
    cx.declared[v.uid] = s.span
    cx.params[full] = ParamInfo(full, v, init, s.span, state=s.state)
    cx.param_calls[full] = (frame.layer_stack[-1][1] if frame.layer_stack else None) or s.span
    frame.scope.values[s.name] = (v, s.span)


def shared_param(cx: Context, s: A.ParamDecl, t: TensorType, full: str, frame: Frame) -> None:
    """Inside a call with ``share=``: bind the parameter of the earlier call, which must have this shape."""
    info = cx.params.get(full)
    where = next((site for _, site in reversed(frame.layer_stack) if site is not None), s.span)
    if info is None or info.loc != s.span:
        raise SpecNameError(f"the call shared with has no parameter '{full}'", where,
                            notes=[f"'{s.name}' is declared at {s.span}"] + call_notes(frame),
                            hint="share= reuses the parameters of a call of the same layer with the same options")
    if info.value.type != t:
        raise ShapeError(f"shared parameter '{full}' is {info.value.type} in the first call but {t} here", where,
                         notes=[f"'{s.name}' is declared at {s.span}", f"the first call is at {cx.param_calls[full]}"]
                         + call_notes(frame),
                         hint="calls that share parameters need the same sizes (hidden=...) and input widths")
    frame.scope.values[s.name] = (info.value, s.span)


def initializer(e: A.Expr | None, t: TensorType) -> Initializer:
    """``glorot``, ``normal(0.02)`` or a number; the default is glorot for matrices, zeros otherwise."""
    if e is None:
        return Initializer("glorot" if len(t.shape) >= 2 else "zeros")
    name, args, span = None, [], e.span
    if isinstance(e, A.Name):
        name = e.id
    elif isinstance(e, A.Call):
        name, span = e.func, e.func_span
        if e.kwargs:
            raise ArgumentError("initializer arguments are positional", e.kwargs[0].span)
        for a in e.args:
            val = number_literal(a)
            if val is None:
                raise ArgumentError("initializer arguments must be numbers", a.span)
            args.append(_finite(val, a))
    elif number_literal(e) is not None:
        return Initializer("constant", (_finite(number_literal(e), e),))
    else:
        raise ArgumentError("an initializer is a name (glorot), a call (normal(0.02)) or a number", e.span,
                            hint=f"the initializers are {', '.join(INITIALIZERS)}")
    if name not in INITIALIZERS:
        raise SpecNameError(f"unknown initializer '{name}'", span,
                            hint=did_you_mean(name, INITIALIZERS, n=2) or
                            f"use one of {', '.join(INITIALIZERS)}")
    lo, hi = INITIALIZERS[name]
    if not lo <= len(args) <= hi:
        raise ArgumentError(f"initializer '{name}' takes {lo}-{hi} arguments, got {len(args)}", e.span)
    if name == "normal" and args and args[0] < 0:
        raise ArgumentError(f"normal(std) needs std >= 0, got {args[0]:g}", e.args[0].span)
    return Initializer(name, tuple(args))


def _finite(val: int | float, e: A.Expr) -> float:
    """An initializer argument as a float; a number too large for one is an error at the argument."""
    try:
        out = float(val)
    except OverflowError:
        out = float("inf")
    if not math.isfinite(out):
        raise ArgumentError("an initializer argument must be a finite number", e.span)
    return out


def _bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""  # pragma: no cover
