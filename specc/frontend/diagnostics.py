"""Messages about a spec: what the notes of an error say and where the error points.

In: the context and frame in which an error arises, the values involved, a
shape rule's complaint (:class:`~specc.ops.ShapeRuleError`).
Out: :class:`~specc.errors.SpeccError`s whose notes give each operand's type
and where it was declared, where each size in those types was fixed and the
chain of layer calls; an error inside the standard library moved to the
user's call (users cannot edit std.nn).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from . import ast as A
from .builtins import BUILTINS
from .context import Context, DimInfo, Frame
from .loader import STD_NAME
from ..errors import DTypeError, ModelError, ShapeError, SpeccError, SpecNameError, Span, did_you_mean
from ..ir.builder import GraphBuilder
from ..ir.core import Value
from ..ir.dims import Dim
from ..ops import DTypeRuleError, ShapeRuleError


def call_notes(frame: Frame) -> list[str]:
    """'in layer 'f' called at m.nn:3:7', innermost first."""
    return [f"in layer '{name}' called at {span}" if span is not None else
            f"in layer '{name}', checked for every size of its arguments"
            for name, span in reversed(frame.layer_stack)]


def notes_for(cx: Context, frame: Frame, operands: Iterable[tuple[str, Value]]) -> list[str]:
    """Each operand's type (and where it is declared), then where each size in those types was fixed."""
    notes = []
    symbols: list[str] = []
    for label, v in operands:
        notes.append(f"{label}: {v.type}{provenance(cx, frame, v)}")
        for d in v.shape:
            for s in sorted(d.symbols) if isinstance(d, Dim) else ():
                if s not in symbols:
                    symbols.append(s)
    for s in symbols:
        info = frame.scope.dim(s) or cx.global_scope.dim(s)
        if info and info.origin:
            notes.append(f"{s} is fixed by {info.origin}")
    notes.extend(call_notes(frame))
    return notes


def provenance(cx: Context, frame: Frame, v: Value) -> str:
    """', declared at f.nn:3:3', or ', computed from x (declared at ...) and W (...)' one equation back."""
    where = declared_at(cx, frame, v)
    if where is not None:
        return f", declared at {where}"
    eqn = next((q for q in reversed(frame.builder.eqns) if any(o is v for o in q.outputs)), None)
    if eqn is None:
        return ""
    parts, seen = [], set()
    for i in eqn.inputs:
        at = declared_at(cx, frame, i)
        if at is not None and i.name and i.uid not in seen:
            seen.add(i.uid)
            parts.append(f"{i.name}: {i.type} (declared at {at})")
    return ", computed from " + " and ".join(parts) if parts else ""


def declared_at(cx: Context, frame: Frame, v: Value) -> Span | None:
    """Where a model input or parameter is declared (seen through recurrence captures)."""
    b: GraphBuilder | None = frame.builder
    while b is not None and b.parent is not None:
        outer = next((c.outer for c in b.captures.values() if c.inner is v), None)
        if outer is None:
            break
        v, b = outer, b.parent
    return cx.declared.get(v.uid)


def dim_note(name: str, info: DimInfo) -> str:
    if str(info.value) == name:
        return f"{name} is fixed by {info.origin}"
    return f"{name} = {info.value}, from {info.origin}"


def rule_error(cx: Context, e: ShapeRuleError, span: Span, frame: Frame, operands, *, display: str | None = None,
               inputs: list[Value] = (), snippets: dict[int, str] | None = None) -> SpeccError:
    """A shape rule's complaint as a user error: named as the user wrote the op, with the operands' types."""
    cls = DTypeError if isinstance(e, DTypeRuleError) else ShapeError
    message = e.message
    quoted = re.match(r"'[^']+'", message)
    if display and quoted:  # rules name the IR op ('add', 'embedding'); say what the spec wrote ('+', 'take')
        message = f"'{display}'" + message[quoted.end():]
    elif display and display.isidentifier() and not message.startswith(display):
        message = f"{display}: {message}"
    hint = e.hint
    if hint and "float(x)" in hint and snippets:  # name the operand to convert
        idx = e.operand if e.operand is not None else next(
            (i for i, v in enumerate(inputs) if not v.type.is_float), None)
        text = snippets.get(inputs[idx].uid) if idx is not None and idx < len(inputs) else None
        if text:
            hint = f"convert it with float({text})"
    return cls(message, span, notes=notes_for(cx, frame, operands), hint=hint)


def emit(cx: Context, frame: Frame, op: str, inputs: list[Value], params: dict, span: Span,
         operands: list[tuple[str, Value]] | None = None, name: str | None = None,
         display: str | None = None, snippets: dict[int, str] | None = None) -> Value:
    """Emit one op into the frame's builder; a shape rule's complaint becomes an error at ``span``."""
    try:
        return frame.builder.emit1(op, inputs, params, span, name)
    except ShapeRuleError as e:
        ops = operands or [(f"operand {i + 1}", v) for i, v in enumerate(inputs)]
        raise rule_error(cx, e, span, frame, ops, display=display, inputs=inputs, snippets=snippets) from None


def unknown_name(cx: Context, name: str, span: Span, frame: Frame) -> SpeccError:
    if name in BUILTINS or name in cx.mod.layers:
        return SpecNameError(f"'{name}' is a function; call it as {name}(...)", span)
    cands = frame.scope.all_names()
    if frame.recur:
        cands |= set(frame.recur.states)
    local = frame.scope.recur_locals.get(name)
    if local is not None:
        where, var = local
        return SpecNameError(f"'{name}' is private to its `recur` block", span,
                             notes=[f"'{name}' is defined at {where}"] + call_notes(frame),
                             hint=f"make it a state, {name}[{var}] = ..., to read it after the block")
    return SpecNameError(f"unknown name '{name}'", span, hint=did_you_mean(name, cands),
                         notes=call_notes(frame))


def at_call_site(err: SpeccError, layer: A.LayerDef, call_span: Span | None) -> SpeccError:
    """An error inside a standard-library layer, moved to the spec's call (users cannot edit std.nn)."""
    span = err.span
    if call_span is None or span is None or span.source is None or span.source.name != STD_NAME \
            or call_span.source is span.source:
        return err
    here = f"in layer '{layer.name}' called at {call_span}"
    related = [(f"in the standard library's '{layer.name}'", span)] + err.related
    return type(err)(err.message, call_span, [n for n in err.notes if n != here], err.hint, err.kind, related)


def too_deep(frame: Frame, span: Span) -> SpeccError:
    """Nesting deeper than the compiler can follow: an error at the spot, not a RecursionError."""
    depth = len(frame.layer_stack)
    if depth >= 16:
        notes = call_notes(frame)
        return ModelError(f"layer calls are nested too deeply ({depth} layers, one inside the other)", span,
                          notes=notes[:3] + [f"... and {depth - 3} more calls"],
                          hint="call the layers one after the other, in a model or a layer of their own")
    return ModelError("this expression is nested too deeply for the compiler", span,
                      hint="split it into several equations")


def short(v: Any) -> str:
    text = str(v)
    return text if len(text) <= 20 else text[:8] + "..." + text[-8:]


def describe_static(v: Any) -> str:
    """How a message names a compile-time value: 'the size H', 'a boolean', 'the number 3'."""
    if isinstance(v, Value):
        return f"a tensor {v.type}"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return f"the string \"{v}\""
    if isinstance(v, list):
        return "a list"
    if isinstance(v, Dim):
        return f"the size {v}"
    if v is None:
        return "nothing"
    return f"the number {short(v)}"
