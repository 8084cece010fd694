"""Size expressions and type annotations, evaluated in a scope.

In: the AST of a size (``H + D``, ``2 * K``, ``(L - K) // 2 + 1``) or of a
type annotation (``f32[T, B, D]``), and the scope whose sizes it may name.
Out: a symbolic :class:`~specc.ir.dims.Dim` or a
:class:`~specc.ir.core.TensorType`; and the solution of ``e(name) = size`` for
a size expression linear in one unknown name (how ``x: [B, 2 * H]`` binds H).
"""

from __future__ import annotations

from typing import Callable

from . import ast as A
from .context import Context, Scope
from .syntax import substitute
from ..errors import DTypeError, ShapeError, SpeccError, SpecNameError, Span, did_you_mean
from ..ir.core import DTYPES, TensorType
from ..ir.dims import Dim


SIZE_OPS = ("+", "-", "*", "//")
MAX_SIZE = 2**31 - 1  # the largest size, subscript or layer size argument a spec may give


def check_size(d: Dim, span: Span, what: str = "a size") -> Dim:
    """``d`` if it is symbolic or within MAX_SIZE in magnitude; else an error at ``span``."""
    if d.is_const and abs(d.value) > MAX_SIZE:
        digits = len(str(abs(d.value)))
        shown = f"{d.value:,}" if digits <= 15 else f"a number of {digits} digits"
        raise ShapeError(f"{what} is too large: {shown} (the largest is {MAX_SIZE:,})", span)
    return d


def dim_expr(e: A.Expr, scope: Scope, *, what: str = "a size") -> Dim:
    """The value of a size expression built from integers, size names and + - * //."""
    if isinstance(e, A.Num):
        if not isinstance(e.value, int):
            raise ShapeError(f"{what} must be an integer, not {e.value}", e.span)
        return check_size(Dim.const(e.value), e.span, what)
    if isinstance(e, A.Name):
        info = scope.dim(e.id)
        if info is None:
            if scope.value(e.id) is not None:
                raise ShapeError(f"'{e.id}' is a tensor, but {what} is needed here", e.span)
            raise SpecNameError(f"unknown size '{e.id}'", e.span,
                                hint=did_you_mean(e.id, scope.dim_names()) or
                                f"declare it at the top of the file: dim {e.id}")
        return info.value
    if isinstance(e, A.Neg):
        return -dim_expr(e.operand, scope, what=what)
    if isinstance(e, A.BinOp) and e.op in SIZE_OPS:
        spine = [e]  # the left spine in a loop: a long sum of sizes is not deep recursion
        while isinstance(spine[-1].left, A.BinOp) and spine[-1].left.op in SIZE_OPS:
            spine.append(spine[-1].left)
        acc = dim_expr(spine[-1].left, scope, what=what)
        for node in reversed(spine):
            acc = check_size(_size_op(node, acc, dim_expr(node.right, scope, what=what)), node.span, what)
        return acc
    if isinstance(e, A.EllipsisExpr):
        raise ShapeError("'...' (any number of axes) is only allowed in the argument types of a layer", e.span)
    raise ShapeError(f"{what} must be built from integers, size names and + - * //", e.span)


def _size_op(e: A.BinOp, a: Dim, b: Dim) -> Dim:
    if e.op == "+":
        return a + b
    if e.op == "-":
        return a - b
    if e.op == "*":
        return a * b
    if not b.is_const or b.value <= 0:
        raise ShapeError("sizes can only be divided by a positive integer", e.right.span)
    return a // b


def type_ann(cx: Context, t: A.TypeAnn, scope: Scope) -> TensorType:
    return TensorType(dtype(cx, t), tuple(dim_expr(d, scope) for d in t.dims))


def dtype(cx: Context, t: A.TypeAnn) -> str:
    """The dtype an annotation names; f32 and f64 both mean the model's float type."""
    if t.dtype is None:
        return cx.float_dtype
    if t.dtype not in DTYPES:
        raise DTypeError(f"unknown dtype '{t.dtype}'", t.dtype_span,
                         hint=did_you_mean(t.dtype, DTYPES) or f"use one of {', '.join(DTYPES)}")
    if t.dtype in ("f32", "f64"):
        return cx.float_dtype
    return t.dtype


def exact_div(a: Dim, b: Dim) -> Dim | None:
    """a / b if it is a polynomial with integer coefficients, else None."""
    if b.is_const:
        k = b.value
        if k != 0 and all(c % k == 0 for _, c in a.terms):
            return Dim(tuple((m, c // k) for m, c in a.terms))
        return None
    if len(b.terms) == 1:
        (bm, bc), = b.terms
        out = []
        for m, c in a.terms:
            rest = list(m)
            for s in bm:
                if s not in rest:
                    return None
                rest.remove(s)
            if c % bc:
                return None
            out.append((tuple(rest), c // bc))
        return Dim._make(dict(out))
    return None


def solve_linear(e: A.Expr, name: str, target: Dim, evaluate: Callable[[A.Expr], Dim]) -> Dim | None:
    """Solve e(name) = target for an e linear in name (checked at name = 0, 1 and 2); None if it is not."""
    try:
        at0, at1, at2 = (evaluate(substitute(e, name, k)) for k in (0, 1, 2))
    except SpeccError:
        return None
    coef = at1 - at0
    if not coef.is_const or coef.value == 0 or at2 - at1 != coef:
        return None
    return exact_div(target - at0, coef)


def fixed_sizes(scope: Scope) -> dict[str, int]:
    """The sizes in scope whose value is fixed (``dim K = 2``): a recurrence may read a state at ``t-K``."""
    out = {}
    for name in scope.dim_names():
        info = scope.dim(name)
        if info is not None and info.value.is_const:
            out[name] = info.value.value
    return out
