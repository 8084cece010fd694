"""Calls of builtin functions: binding a call's arguments to the builtin's signature.

In: a call of a builtin (:data:`~specc.frontend.builtins.BUILTINS`) in a frame.
Out: the IR value the builtin emits; or an :class:`~specc.errors.ArgumentError`
at the offending argument (unknown keyword, missing or repeated argument,
wrong kind of value), or a shape error naming the operands as the spec wrote
them.

A builtin is a Python function whose annotated signature is the language
signature; :class:`CallCtx` is the ``cx`` it receives, with the services it
uses to emit ops (``emit``, ``const``, ``axis``, ``resolve_reshape``...).
"""

from __future__ import annotations

import inspect
from typing import Any

from . import ast as A
from .builtins import Axes, IntOrPair, Raw, Shape, Size, Tensor, signature_text
from .context import Context, Frame
from .diagnostics import describe_static, rule_error
from .expressions import expr, tensor
from .sizes import MAX_SIZE, check_size, exact_div
from .syntax import snippet
from ..errors import ArgumentError, Span, did_you_mean
from ..ir.core import Value
from ..ir.dims import Dim, as_dim, numel, shape_str
from ..ops import ShapeRuleError

SHAPE_HOLES = {"reshape"}  # builtins whose shape argument may hold one -1


class CallCtx:
    """Binds a builtin call's arguments to the builtin's Python signature and emits its ops."""

    def __init__(self, el: Context, call: A.Call, frame: Frame, fn):
        self.el, self.call, self.frame, self.fn = el, call, frame, fn
        self.float_dtype = el.float_dtype
        self.arg_spans: dict[str, Span] = {}
        self.tensor_args: list[tuple[str, Value]] = []
        self.snippets: dict[int, str] = {}  # uid of a tensor argument -> its text in the spec

    def fail(self, msg: str, span: Span | None = None, hint: str | None = None):
        raise ArgumentError(msg, span or self.call.span, hint=hint)

    def run(self) -> Value:
        sig = inspect.signature(self.fn, eval_str=True)
        params = list(sig.parameters.values())[1:]
        text = signature_text(self.call.func, self.fn)
        names = [p.name for p in params if p.kind is not p.VAR_POSITIONAL]
        variadic = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
        pos_params = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        args, kwargs = [], {}
        if variadic is None and len(self.call.args) > len(pos_params):
            extra = self.call.args[len(pos_params)].span.merge(self.call.args[-1].span)
            self.fail(f"'{self.call.func}' takes {len(pos_params)} argument{'s' * (len(pos_params) != 1)}, "
                      f"got {len(self.call.args)}", extra, hint=f"call it as {text}")
        for i, a in enumerate(self.call.args):
            p = variadic if (variadic is not None) else pos_params[i]
            name = p.name if variadic is None else f"{i + 1}"
            args.append(self.convert(a, p, name))
        for k in self.call.kwargs:
            p = sig.parameters.get(k.name)
            if p is None or k.name == "cx" or p.kind is p.VAR_POSITIONAL:
                self.fail(f"'{self.call.func}' has no argument '{k.name}'", k.span,
                          hint=did_you_mean(k.name, names) or f"call it as {text}")
            if k.name in kwargs or variadic is None and any(pp.name == k.name
                                                            for pp in pos_params[:len(self.call.args)]):
                self.fail(f"argument '{k.name}' given twice", k.span)
            kwargs[k.name] = self.convert(k.value, p, k.name)
        missing = [p.name for p in pos_params[len(args):] if p.default is p.empty and p.name not in kwargs]
        if variadic is not None:
            missing = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty
                       and p.name not in kwargs]
        if missing:
            self.fail(f"'{self.call.func}' is missing the argument '{missing[0]}'", hint=f"call it as {text}")
        return self.fn(self, *args, **kwargs)

    def convert(self, a: A.Expr, p: inspect.Parameter, name: str) -> Any:
        self.arg_spans[name] = a.span
        val = expr(self.el, a, self.frame)
        ann = p.annotation
        if ann is Tensor:
            if val is None:
                return None
            v = tensor(self.el, val, a.span, self.frame)
            text = snippet(a.span)
            label = f"argument {name}" if name.isdigit() else f"argument '{name}'"
            self.tensor_args.append((label if text == name else f"{label} ('{text}')", v))
            self.snippets[v.uid] = text
            return v
        if ann is Raw:
            return val
        if isinstance(val, Value):
            self.fail(f"argument '{name}' of '{self.call.func}' must be a constant, not a tensor", a.span)
        if ann is float:
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                self.fail(f"argument '{name}' must be a number, got {describe_static(val)}", a.span)
            return float(val)
        if ann is int:
            if isinstance(val, Dim) and val.is_const:
                val = val.value
            if isinstance(val, bool) or not isinstance(val, int):
                self.fail(f"argument '{name}' must be an integer, got {describe_static(val)}", a.span)
            return check_size(as_dim(val), a.span, f"argument '{name}'").value
        if ann is bool:
            if not isinstance(val, bool):
                self.fail(f"argument '{name}' must be true or false", a.span)
            return val
        if ann is Shape:
            items = val if isinstance(val, list) else None
            if items is None:
                self.fail(f"argument '{name}' must be a shape like [B, H]", a.span)
            out = []
            for it, it_ast in zip(items, a.items):
                if isinstance(it, bool) or not isinstance(it, (int, Dim)):
                    self.fail(f"shape entries must be sizes, got {describe_static(it)}", it_ast.span)
                if isinstance(it, int) and it == -1 and self.call.func in SHAPE_HOLES:
                    out.append(-1)
                    continue
                d = check_size(as_dim(it), it_ast.span)
                if d.is_const and d.value <= 0:
                    self.fail(f"a size must be positive, got {d}", it_ast.span,
                              hint="only reshape takes -1, for the size that makes the element count match"
                              if d.value == -1 else None)
                out.append(d)
            return out
        if ann in (Axes, IntOrPair, Size):
            return val
        return val

    # services for builtins
    def emit(self, op: str, inputs: list[Value], **params) -> Value:
        for key in ("kernel", "stride", "dilation"):  # windows: a zero would divide by zero in the shape rule
            sizes = params.get(key) or ()
            if any(n <= 0 for n in sizes):
                shown = sizes[0] if len(set(sizes)) == 1 else list(sizes)
                self.fail(f"{key} must be positive, got {shown}", self.arg_spans.get(key))
        try:
            return self.frame.builder.emit1(op, inputs, params, self.call.span)
        except ShapeRuleError as e:
            err = rule_error(self.el, e, self.call.span, self.frame,
                             self.tensor_args or [(f"operand {i + 1}", v) for i, v in enumerate(inputs)],
                             display=self.call.func, inputs=inputs, snippets=self.snippets)
            raise err from None

    def const(self, value: float, dtype: str) -> Value:
        return self.emit("full", [], shape=(), value=float(value), dtype=dtype)

    def weak(self, a: Value, b: Value) -> tuple[Value, Value]:
        return a, b

    def stream(self) -> int:
        self.el.streams += 1
        return self.el.streams

    def axis(self, axis: Any, x: Value) -> int:
        rank = x.type.rank
        if isinstance(axis, bool) or not isinstance(axis, int):
            self.fail(f"an axis must be an integer, got {describe_static(axis)}")
        if not -rank <= axis < max(rank, 1) or rank == 0:
            self.fail(f"axis {axis} is out of range for a tensor of shape {shape_str(x.shape)}")
        return axis % rank

    def axes(self, axes: Any, x: Value, ordered: bool = True) -> tuple[int, ...]:
        items = axes if isinstance(axes, list) else [axes]
        out = [self.axis(a, x) for a in items]
        if len(set(out)) != len(out):
            self.fail(f"repeated axis in {axes}")
        return tuple(sorted(out)) if ordered else tuple(out)

    def ntuple(self, v: Any, n: int) -> tuple[int, ...]:
        items = v if isinstance(v, list) else [v] * n
        if len(items) != n or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in items):
            self.fail(f"expected a non-negative integer or a list of {n}, got {v}")
        if any(i > MAX_SIZE for i in items):
            self.fail(f"{max(items):,} is too large (the largest is {MAX_SIZE:,})")
        return tuple(items)

    def resolve_reshape(self, x: Value, shape: list) -> tuple[Dim, ...]:
        holes = [i for i, d in enumerate(shape) if d == -1]
        if len(holes) > 1:
            self.fail("at most one -1 in a reshape")
        if not holes:
            return tuple(shape)
        known = numel(tuple(d for d in shape if d != -1))
        total = numel(x.shape)
        q = exact_div(total, known)
        if q is None:
            self.fail(f"cannot infer -1: {total} elements are not a multiple of {known}")
        return tuple(q if d == -1 else d for d in shape)


