"""Layer calls: binding arguments, unifying size variables, inlining the body.

In: a call of a user or standard-library layer in a frame; or a layer alone,
to be checked for every size of its arguments (``specc check`` on a layer
that no model calls).
Out: the layer's body elaborated inline into the caller's builder, its
parameters named ``prefix.W``, and the returned value checked against the
declared return type.

A layer's size variables (every name in its signature that its own file does
not fix with ``dim D = 8``) are local to the layer: each call binds them from
its arguments' shapes and size arguments. A size written as an expression of
one unknown (``x: [B, 2 * H]``) is solved for it. Both a call and the check
of a layer on its own go through :func:`apply_layer`, so that both accept and
reject the same layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import ast as A
from .blocks import block
from .context import Context, DimInfo, Frame, Scope
from .diagnostics import at_call_site, call_notes, describe_static, dim_note, notes_for, unknown_name
from .expressions import expr, tensor
from .sizes import check_size, dim_expr, solve_linear
from .syntax import ann_text, layer_sig, names_in, param_key, snippet
from ..errors import ArgumentError, DTypeError, ModelError, ShapeError, SpeccError, SpecNameError, Span, did_you_mean
from ..ir.core import DTYPES, TensorType, Value
from ..ir.dims import Dim, as_dim, shape_str


@dataclass
class LayerArgs:
    """A layer call's arguments, evaluated: what the layer's signature is unified with."""

    sizes: dict[str, DimInfo]  # size variable (H of `hidden H`) -> its value; absent: use the default
    options: dict[str, tuple[Any, Span]]  # option name -> its constant value
    tensors: list[tuple[A.TensorParam, Value, Span]]  # in signature order, with the argument's span


# ---- a call -----------------------------------------------------------------------------
def call_layer(cx: Context, layer: A.LayerDef, e: A.Call, frame: Frame) -> Value | tuple[Value, ...]:
    """The value (or values: ``return h, c``) of a layer call, its body inlined into the frame's builder."""
    if any(name == layer.name for name, _ in frame.layer_stack):
        raise ArgumentError(f"layer '{layer.name}' calls itself", e.span, notes=call_notes(frame))
    bound, explicit_name, share = match_arguments(layer, e)
    args = evaluate_arguments(cx, layer, bound, e, frame)
    if share is not None:
        prefix = shared_prefix(cx, layer, share, explicit_name, frame)
    else:
        prefix = layer_prefix(layer, e, frame, explicit_name)
    out = apply_layer(cx, layer, args, e.span, frame, prefix, sharing=share is not None or frame.sharing)
    for v in out if isinstance(out, tuple) else (out,):
        cx.layer_results.setdefault(v.uid, (layer.name, prefix))
    return out


def shared_prefix(cx: Context, layer: A.LayerDef, share: A.Kwarg, explicit_name: str | None, frame: Frame) -> str:
    """The parameter prefix of the earlier call that ``share=za`` names: the call that computed ``za``."""
    if explicit_name is not None:
        raise ArgumentError("a call takes name= or share=, not both", share.span,
                            hint="share= reuses the parameters of the call it names, so they keep that name")
    if not isinstance(share.value, A.Name):
        raise ArgumentError("share= takes the name of a value computed by an earlier call of the same layer",
                            share.value.span, hint=f"e.g. a = {layer.name}(x1, ...); b = {layer.name}(x2, ..., "
                                                   f"share=a)")
    bound = frame.scope.value(share.value.id)
    if bound is None:
        raise unknown_name(cx, share.value.id, share.value.span, frame)
    v = bound[0]
    origin = cx.layer_results.get(v.uid) if isinstance(v, Value) else None
    if origin is None:
        raise ArgumentError(f"'{share.value.id}' is not the result of a layer call, so it has no parameters "
                            f"to share", share.value.span,
                            hint=f"name the result of a call of '{layer.name}', e.g. share=a after "
                                 f"a = {layer.name}(...)")
    if origin[0] != layer.name:
        raise ArgumentError(f"'{share.value.id}' was computed by layer '{origin[0]}', not '{layer.name}': "
                            f"only calls of the same layer share parameters", share.value.span)
    return origin[1]


def match_arguments(layer: A.LayerDef, e: A.Call) -> tuple[dict[str, A.Expr], str | None, A.Kwarg | None]:
    """Each argument of the call by its parameter's key (positional, then keyword), name="..." and share=."""
    by_name: dict[str, A.LayerParam] = {}
    for p in layer.params:
        if param_key(p) in by_name:
            raise SpecNameError(f"layer '{layer.name}' has two arguments named '{param_key(p)}'", p.span,
                                notes=[f"the first is at {by_name[param_key(p)].span}"])
        by_name[param_key(p)] = p
    explicit_name = None
    share = None
    kwargs: dict[str, A.Kwarg] = {}
    for k in e.kwargs:
        if k.name in kwargs or k.name == "name" and explicit_name is not None or k.name == "share" and share:
            raise ArgumentError(f"argument '{k.name}' given twice", k.span)
        if k.name == "share" and "share" not in by_name:
            share = k
            continue
        if k.name == "name" and "name" not in by_name:
            if not isinstance(k.value, A.Str):
                raise ArgumentError("name= takes a string", k.value.span)
            explicit_name = k.value.value
            continue
        if k.name not in by_name:
            raise ArgumentError(f"layer '{layer.name}' has no argument '{k.name}'", k.span,
                                hint=did_you_mean(k.name, by_name) or f"it is called as {layer_sig(layer)}")
        kwargs[k.name] = k
    if len(e.args) > len(layer.params):
        extra = e.args[len(layer.params)].span.merge(e.args[-1].span)
        raise ArgumentError(f"layer '{layer.name}' takes {len(layer.params)} arguments, got {len(e.args)}",
                            extra, hint=f"it is called as {layer_sig(layer)}")
    bound: dict[str, A.Expr] = {}
    for p, a in zip(layer.params, e.args):
        bound[param_key(p)] = a
    for k, kw in kwargs.items():
        if k in bound:
            raise ArgumentError(f"argument '{k}' given twice", kw.span)
        bound[k] = kw.value
    return bound, explicit_name, share


def evaluate_arguments(cx: Context, layer: A.LayerDef, bound: dict[str, A.Expr], e: A.Call,
                       frame: Frame) -> LayerArgs:
    """The call's arguments evaluated in the caller's frame: sizes and options first, then tensors."""
    args = LayerArgs({}, {}, [])
    for p in layer.params:
        arg = bound.get(param_key(p))
        if isinstance(p, A.SizeParam):
            if arg is None:
                if p.default is None:
                    raise ArgumentError(f"layer '{layer.name}' needs the size '{p.keyword}'", e.span,
                                        hint=f"it is called as {layer_sig(layer)}")
                continue
            val = expr(cx, arg, frame)
            if isinstance(val, bool) or not isinstance(val, (int, Dim)):
                raise ArgumentError(f"size '{p.keyword}' must be an integer, got {describe_static(val)}", arg.span)
            d = check_size(as_dim(val), arg.span, f"size '{p.keyword}'")
            if d.is_const and d.value <= 0:
                raise ArgumentError(f"size '{p.keyword}' must be positive, got {d}", arg.span)
            args.sizes[p.dim] = DimInfo(d, f"argument {p.keyword}={d} at {arg.span}")
        elif isinstance(p, A.OptionParam):
            args.options[p.name] = option_value(cx, layer, p, arg if arg is not None else p.default, frame)
    for p in layer.params:
        if isinstance(p, A.TensorParam):
            arg = bound.get(p.name)
            if arg is None:
                raise ArgumentError(f"layer '{layer.name}' needs the tensor argument '{p.name}'", e.span,
                                    hint=f"it is called as {layer_sig(layer)}")
            args.tensors.append((p, tensor(cx, expr(cx, arg, frame), arg.span, frame), arg.span))
    return args


def option_value(cx: Context, layer: A.LayerDef, p: A.OptionParam, src: A.Expr, frame: Frame) -> tuple[Any, Span]:
    val = expr(cx, src, frame)
    if isinstance(val, Value) or isinstance(val, (str, list)) or val is None:
        raise ArgumentError(f"option '{p.name}' of layer '{layer.name}' must be a constant number "
                            f"or boolean", src.span)
    return val, src.span  # a static: usable where a literal is


def layer_prefix(layer: A.LayerDef, e: A.Call, frame: Frame, explicit: str | None) -> str:
    """How the call's parameters are named: ``h.`` for ``h = lstm(...)``, ``y.dense_2.`` for a second
    unnamed dense call in the equation of ``y``, ``fc2.`` for ``name="fc2"``."""
    if explicit is not None:
        return frame.prefix + explicit + "."
    target = frame.stmt_target or layer.name
    if frame.primary_call is e:
        return frame.prefix + target + "."
    key = f"{target}.{layer.name}"
    n = frame.call_counts.get(key, 0) + 1
    frame.call_counts[key] = n
    return frame.prefix + key + ("" if n == 1 else f"_{n}") + "."


# ---- a layer checked on its own -------------------------------------------------------
def check_layer_alone(cx: Context, layer: A.LayerDef) -> None:
    """Elaborate a layer for every size of its arguments, so that its errors surface even if no model calls it.

    Each size variable becomes a symbol of its own name, each tensor argument a value whose shape is the
    declared one; then the layer goes through the same unification and body as any call.
    """
    fscope = cx.file_scope(layer.span.source)
    frame = Frame(Scope(fscope), cx.root, "")
    args = LayerArgs({}, {}, [])
    free: dict[str, DimInfo] = {}
    for p in layer.params:
        if isinstance(p, A.SizeParam):
            args.sizes[p.dim] = free[p.dim] = DimInfo(Dim.sym(p.dim))
        elif isinstance(p, A.OptionParam):
            args.options[p.name] = option_value(cx, layer, p, p.default, frame)
    for p in layer.params:
        if isinstance(p, A.TensorParam):
            for d in p.type.dims:
                for n in sorted(names_in(d)):
                    fixed = fscope.dims.get(n)
                    if n not in free and not (fixed is not None and fixed.value.is_const):
                        free[n] = DimInfo(Dim.sym(n))
    sizes = Scope(fscope, dims=free)
    for p in layer.params:
        if isinstance(p, A.TensorParam):
            shape = tuple(dim_expr(d, sizes) for d in p.type.dims if not isinstance(d, A.EllipsisExpr))
            dt = p.type.dtype if p.type.dtype == "i32" else cx.float_dtype
            args.tensors.append((p, cx.root.add_input(Value(TensorType(dt, shape), p.name)), p.span))
    apply_layer(cx, layer, args, None, frame, "")


# ---- the layer's body -------------------------------------------------------------------
def apply_layer(cx: Context, layer: A.LayerDef, args: LayerArgs, site: Span | None, frame: Frame,
                prefix: str, *, sharing: bool = False) -> Value | tuple[Value, ...]:
    """Unify the signature with the arguments, elaborate the body with the sizes bound, check the return.

    ``site`` is the call's span; None when the layer is checked on its own. ``sharing``: the parameters
    named ``prefix...`` exist already (``share=``) and are reused rather than declared.
    """
    fscope = cx.file_scope(layer.span.source)
    scope = Scope(fscope)
    env: dict[str, DimInfo] = {}
    for p in layer.params:
        if isinstance(p, A.SizeParam):
            env[p.dim] = args.sizes.get(p.dim) or DimInfo(dim_expr(p.default, Scope(fscope, dims=dict(env))))
        elif isinstance(p, A.OptionParam):
            scope.values[p.name] = args.options[p.name]
    ellipsis = None
    for p, v, span in args.tensors:
        matched = unify(cx, p.type, v, env, layer, p.name, span, frame, fscope)
        ellipsis = matched if matched is not None else ellipsis
    scope.dims.update(env)
    for p, v, span in args.tensors:
        scope.values[p.name] = (v, span)
    inner = Frame(scope, frame.builder, prefix, None, frame.layer_stack + ((layer.name, site),), sharing=sharing)
    try:
        _, ret = block(cx, layer.body, inner, kind="layer")
        if ret is None:
            raise ModelError(f"layer '{layer.name}' has no `return`", layer.name_span)
        out = scope.values["return"][0]
        outs = out if isinstance(out, tuple) else (out,)
        if layer.rets and len(layer.rets) != len(outs):
            raise ShapeError(f"layer '{layer.name}' declares {len(layer.rets)} return shapes but returns "
                             f"{len(outs)} tensors", layer.rets[0].span.merge(layer.rets[-1].span),
                             related=[("returned here", ret.span)], notes=call_notes(inner))
        items = ret.value.items if isinstance(ret.value, A.TupleExpr) else (ret.value,)
        for ann, v, item in zip(layer.rets, outs, items):
            check_return(layer, ann, v, env, inner, ellipsis or (), item.span, fscope)
    except SpeccError as err:
        raise at_call_site(err, layer, site) from None
    return out


def unify(cx: Context, ann: A.TypeAnn, v: Value, env: dict[str, DimInfo], layer: A.LayerDef, pname: str,
          span: Span, frame: Frame, fscope: Scope) -> tuple[Dim, ...] | None:
    """Bind the layer's size variables from an argument's shape; returns what '...' matched."""

    def fail(msg: str) -> SpeccError:
        return ShapeError(f"argument '{pname}' of layer '{layer.name}': {msg}", span,
                          notes=notes_for(cx, frame, [(pname, v)]) + [f"'{layer.name}' declares "
                                                                      f"{pname}: {ann_text(ann)} at {ann.span}"])

    if ann.dtype is not None and ann.dtype not in DTYPES:
        raise DTypeError(f"unknown dtype '{ann.dtype}'", ann.dtype_span,
                         hint=did_you_mean(ann.dtype, DTYPES) or f"use one of {', '.join(DTYPES)}")
    if ann.dtype == "i32" and v.dtype != "i32" or ann.dtype in ("f32", "f64") and not v.type.is_float:
        raise DTypeError(f"argument '{pname}' of layer '{layer.name}' must be {ann.dtype}, got {v.dtype}", span,
                         notes=[*notes_for(cx, frame, [(pname, v)]),
                                f"'{layer.name}' declares {pname}: {ann_text(ann)} at {ann.span}"],
                         hint=f"convert it with {'int' if ann.dtype == 'i32' else 'float'}({snippet(span)})")
    dims = list(ann.dims)
    ell = [i for i, d in enumerate(dims) if isinstance(d, A.EllipsisExpr)]
    if len(ell) > 1:
        raise ShapeError("at most one '...' in a shape", dims[ell[1]].span)
    actual = list(v.shape)
    ellipsis = None
    if ell:
        i = ell[0]
        n_after = len(dims) - i - 1
        if len(actual) < len(dims) - 1:
            raise fail(f"expected rank >= {len(dims) - 1}, got {shape_str(v.shape)}")
        ellipsis = tuple(actual[i:len(actual) - n_after])
        pairs = list(zip(dims[:i], actual[:i])) + list(zip(dims[i + 1:], actual[len(actual) - n_after:]))
    else:
        if len(actual) != len(dims):
            raise fail(f"expected shape {ann_text(ann)} (rank {len(dims)}), got {shape_str(v.shape)}")
        pairs = list(zip(dims, actual))
    deferred = []
    for d_ast, d in pairs:
        fixed = fscope.dims.get(d_ast.id) if isinstance(d_ast, A.Name) else None
        if fixed is not None and fixed.value.is_const and d_ast.id not in env:
            env[d_ast.id] = fixed  # a size fixed by `dim D = 8` in the layer's own file is checked, not re-bound
        if isinstance(d_ast, A.Name) and d_ast.id not in env:
            env[d_ast.id] = DimInfo(d, f"argument '{pname}' at {span}")
        elif isinstance(d_ast, A.Name):
            if env[d_ast.id].value != d:
                raise fail(f"dim {d_ast.id} is {env[d_ast.id].value} (from {env[d_ast.id].origin}) "
                           f"but this argument has {d}")
        else:
            deferred.append((d_ast, d))
    _solve(deferred, env, fscope, fail, f"argument '{pname}' at {span}")
    for d_ast, d in deferred:
        want = dim_expr(d_ast, Scope(fscope, dims=dict(env)))
        if want != d:
            raise fail(f"expected {snippet(d_ast.span)} = {want}, got {d}")
    return ellipsis


def _solve(deferred: list[tuple[A.Expr, Dim]], env: dict[str, DimInfo], fscope: Scope, fail, origin: str) -> None:
    """Bind the unknown names of size expressions (``2 * H = 8`` gives H = 4), one unknown at a time."""
    todo = list(deferred)
    while todo:
        stuck = []
        for d_ast, d in todo:
            unknown = {n for n in names_in(d_ast) - set(env) if not _fixed(fscope, n)}
            if not unknown:
                continue
            if len(unknown) > 1:
                stuck.append((d_ast, d))
                continue
            name = unknown.pop()
            sol = solve_linear(d_ast, name, d, lambda e_: dim_expr(e_, Scope(fscope, dims=dict(env))))
            if sol is None:
                raise fail(f"no whole size {name} gives {snippet(d_ast.span)} = {d}")
            env[name] = DimInfo(sol, origin)
        if len(stuck) == len(todo):
            d_ast, d = stuck[0]
            names = sorted(n for n in names_in(d_ast) - set(env) if not _fixed(fscope, n))
            raise fail(f"cannot find {' and '.join(names)} from {snippet(d_ast.span)} = {d}: each size of a "
                       f"layer's signature must appear alone in some argument's type, or as a size argument")
        todo = stuck


def _fixed(fscope: Scope, name: str) -> bool:
    info = fscope.dims.get(name)
    return info is not None and info.value.is_const


def check_return(layer: A.LayerDef, ann: A.TypeAnn, out: Value, env: dict[str, DimInfo], frame: Frame,
                 ellipsis: tuple[Dim, ...], where: Span | None, fscope: Scope) -> None:
    dims = [d for d in ann.dims]
    scope = Scope(fscope, dims=dict(env))
    want: list[Dim] = []
    for d in dims:
        if isinstance(d, A.EllipsisExpr):
            want.extend(ellipsis)
        else:
            want.append(dim_expr(d, scope))
    if tuple(want) != out.shape:
        related = [(f"the value returned here has shape {shape_str(out.shape)}", where)] if where else []
        names = sorted(set().union(*(names_in(d) for d in dims)) & set(env))
        notes = [dim_note(n, env[n]) for n in names if env[n].origin]
        raise ShapeError(f"layer '{layer.name}' returns {shape_str(out.shape)} but declares "
                         f"-> {ann_text(ann)} = {shape_str(tuple(want))}", ann.span,
                         notes=notes + call_notes(frame), related=related)
