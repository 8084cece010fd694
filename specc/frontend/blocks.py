"""The body of a model or a layer: equations ordered by their data, not by their lines.

In: the statements of a model or layer body and the frame to elaborate them in.
Out: every defined name bound in the frame's scope (parameters first, then the
equations in dataflow order), the model's ``output`` names and the layer's
``return`` statement; errors for a name defined twice, a statement in the
wrong kind of block, or a cycle without a time lag.
"""

from __future__ import annotations

from . import ast as A
from .context import Context, Frame
from .expressions import equation, named
from .params import param_decl
from .recurrences import recur
from .syntax import dataflow_order, defined_names, snippet, stmt_name_span, stmt_refs
from .diagnostics import call_notes
from ..errors import ConfigError, ModelError, RecurrenceError, ShapeError, SpecNameError


def block(cx: Context, stmts: tuple[A.Stmt, ...], frame: Frame, kind: str) -> tuple[list[str], A.Return | None]:
    """Elaborate a model or layer body. Returns the output names and the return statement."""
    defs: dict[str, A.Stmt] = {}
    outputs: list[str] = []
    ret: A.Return | None = None
    ordered: list[A.Stmt] = []
    for s in stmts:
        for n in defined_names(s):
            _check_new_name(n, s, frame, defs)
            defs[n] = s
        if isinstance(s, A.Output):
            if kind != "model":
                raise ModelError("`output` belongs in a model, not a layer", s.span,
                                 hint="return the value from the layer instead")
            if s.name in outputs:
                raise SpecNameError(f"'{s.name}' is an output twice", s.span)
            outputs.append(s.name)
        if isinstance(s, A.Return):
            if kind != "layer":
                out = s.value.id if isinstance(s.value, A.Name) else "name = ..."
                raise ModelError("`return` belongs in a layer; a model names its results with `output`", s.span,
                                 hint=f"write `output {out}`")
            if ret is not None:
                raise ModelError("a layer has one `return`", s.span, notes=[f"the first is at {ret.span}"])
            ret = s
        if isinstance(s, A.Init):
            raise RecurrenceError("`init` belongs inside a `recur` block", s.span)
        if isinstance(s, A.TrainBlock) and kind != "model":
            raise ConfigError("a `train` block belongs in a model or at the top level of the file", s.span)
        if isinstance(s, A.Recur):
            for b in s.body:
                if isinstance(b, A.Assign) and b.time is None:
                    frame.scope.recur_locals.setdefault(b.name, (b.target_span, s.var))
        if isinstance(s, A.Assign) and s.time is not None:
            raise RecurrenceError(f"'{s.name}[...] =' is only allowed inside a `recur` block", s.target_span,
                                  hint=f"write {s.name} = ...")
        ordered.append(s)
    # parameters first (they depend on nothing but sizes), then dataflow order
    for s in ordered:
        if isinstance(s, A.ParamDecl):
            param_decl(cx, s, frame)
    deps = {id(s): stmt_refs(s) & set(defs) for s in ordered}
    for s in dataflow_order([s for s in ordered if not isinstance(s, A.ParamDecl)], deps, defs, in_recur=False):
        stmt(cx, s, frame)
    for name in outputs:
        if frame.scope.values.get(name) is None:
            raise SpecNameError(f"output '{name}' is never defined", next(
                s.span for s in stmts if isinstance(s, A.Output) and s.name == name))
    return outputs, ret


def _check_new_name(n: str, s: A.Stmt, frame: Frame, defs: dict[str, A.Stmt]) -> None:
    if n in defs:
        raise SpecNameError(f"'{n}' is defined twice", stmt_name_span(s),
                            notes=[f"first defined at {stmt_name_span(defs[n])}"],
                            hint="equations are definitions, not assignments: use a new name")
    if frame.scope.dim(n) is not None:
        raise SpecNameError(f"'{n}' is already a size name", stmt_name_span(s))
    if n in frame.scope.values:
        raise SpecNameError(f"'{n}' is already defined (an input or argument)", stmt_name_span(s))


def update_state(cx: Context, s: A.Update, frame: Frame) -> None:
    """``update m = expr``: record ``expr`` as the value the state ``m`` of this block takes after a step."""
    full = frame.prefix + s.name
    info = cx.params.get(full)
    bound = frame.scope.values.get(s.name)
    if info is None or not info.state or bound is None or bound[0] is not info.value:
        raise SpecNameError(f"'{s.name}' is not a state of this block", s.name_span,
                            hint=f"declare it in the same layer or model: `state {s.name}: [...] = zeros`; "
                                 f"parameters are changed by the optimizer, not by `update`")
    if full in cx.state_updates or frame.sharing:
        raise ModelError(f"state '{full}' would be updated by two calls", s.span, notes=call_notes(frame),
                         hint="a layer with a state (batch_norm) cannot be called with share=; give each "
                              "call its own parameters and states")
    v = named(equation(cx, s.name + "_next", s.value, frame, primary=False), frame, s.name + "_next")
    if v.type != info.value.type:
        raise ShapeError(f"the update of state '{s.name}' is {v.type}, but the state is {info.value.type}",
                         s.value.span, notes=[f"'{s.name}' is declared at {info.loc}"] + call_notes(frame))
    cx.state_updates[full] = v


def stmt(cx: Context, s: A.Stmt, frame: Frame) -> None:
    if isinstance(s, A.Assign):
        v = equation(cx, s.name, s.value, frame)
        frame.scope.values[s.name] = (named(v, frame, s.name), s.target_span)
    elif isinstance(s, A.Output):
        if s.value is not None:
            v = equation(cx, s.name, s.value, frame)
            frame.scope.values[s.name] = (named(v, frame, s.name), s.span)
    elif isinstance(s, A.Recur):
        recur(cx, s, frame)
    elif isinstance(s, A.Return):
        if isinstance(s.value, A.ListExpr):
            items = ", ".join(snippet(i.span) for i in s.value.items)
            raise ModelError("a layer returns tensors, not a list", s.value.span,
                             hint=f"return several with `return {items}`")
        if isinstance(s.value, A.TupleExpr):
            v = tuple(equation(cx, f"out{i}", item, frame, primary=False) for i, item in enumerate(s.value.items))
        else:
            v = equation(cx, "out", s.value, frame)
        frame.scope.values["return"] = (v, s.span)
    elif isinstance(s, A.Update):
        update_state(cx, s, frame)
    elif isinstance(s, (A.TrainBlock, A.ParamDecl)):
        pass
    else:  # pragma: no cover - the parser produces nothing else
        raise AssertionError(s)
