"""Typed AST to checked IR: name resolution, layer inlining, recurrences,
shape and dtype inference.

In: parsed modules (the spec, the files it ``use``s, and the standard
library ``specc/lib/std.nn``).
Out: a :class:`~specc.ir.core.Program` whose every value has a dtype and a
symbolic shape and whose every equation carries its ``.nn`` span; or a
:class:`~specc.errors.SpeccError` pointing at the spec.

Statements in a block are equations, not instructions: they are ordered by
their data dependencies (a reference to a state at an earlier time step is
not a dependency), and a cycle is an error that names it.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import ast as A
from ..ir.builder import GraphBuilder
from .builtins import BUILTINS, Axes, IntOrPair, Shape, Size, Tensor, signature_text
from ..ir.dims import Dim, as_dim, numel, shape_str
from ..errors import (
    ArgumentError,
    ConfigError,
    DTypeError,
    ModelError,
    RecurrenceError,
    ShapeError,
    Source,
    SpeccError,
    SpecNameError,
    Span,
    did_you_mean,
)
from ..ir.core import DTYPES, InputInfo, Initializer, ParamInfo, Program, TensorType, Value
from ..ops import DTypeRuleError, ShapeRuleError

INITIALIZERS = {  # name -> (min args, max args)
    "zeros": (0, 0), "ones": (0, 0), "constant": (1, 1), "normal": (0, 1), "uniform": (0, 2),
    "glorot": (0, 0), "he": (0, 0), "orthogonal": (0, 1),
}
SHAPE_HOLES = {"reshape"}  # builtins whose shape argument may hold one -1
BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "@": "matmul"}
STDLIB = Path(__file__).resolve().parent / "lib" / "std.nn"
STD_NAME = "<std>/std.nn"  # how errors name the standard library: the same on every machine


# ---- the environment -------------------------------------------------------------------
@dataclass
class DimInfo:
    value: Dim
    origin: str | None = None  # "input 'x' at m.nn:3:14", for shape-error notes


@dataclass
class Scope:
    parent: "Scope | None" = None
    values: dict[str, tuple[Any, Span]] = field(default_factory=dict)  # tensors (Value) or constants
    dims: dict[str, DimInfo] = field(default_factory=dict)
    recur_locals: dict[str, tuple[Span, str]] = field(default_factory=dict)  # private to a recur block: span, var

    def value(self, name: str) -> tuple[Value, Span] | None:
        s: Scope | None = self
        while s is not None:
            if name in s.values:
                return s.values[name]
            s = s.parent
        return None

    def dim(self, name: str) -> DimInfo | None:
        s: Scope | None = self
        while s is not None:
            if name in s.dims:
                return s.dims[name]
            s = s.parent
        return None

    def all_names(self) -> set[str]:
        out: set[str] = set()
        s: Scope | None = self
        while s is not None:
            out |= set(s.values) | set(s.dims)
            s = s.parent
        return out


@dataclass
class RecurCtx:
    """What a recurrence body knows while it is being elaborated."""

    var: str
    reverse: bool
    length: Dim
    states: dict[str, int]  # name -> max lag
    lag_inputs: dict[tuple[str, int], Value]  # (state, lag) -> body input
    seq_inputs: dict[int, tuple[Value, Value]]  # outer uid -> (outer value, body input)
    current: dict[str, Value] = field(default_factory=dict)  # state values at t, once computed


@dataclass
class Frame:
    scope: Scope
    builder: GraphBuilder
    prefix: str  # parameter name prefix: "" in a model, "h." inside the lstm called for h
    recur: RecurCtx | None = None
    layer_stack: tuple[tuple[str, Span], ...] = ()
    stmt_target: str | None = None
    primary_call: A.Call | None = None
    call_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Module:
    """All definitions visible to a spec: its own, those it uses, and the standard library."""

    layers: dict[str, A.LayerDef]
    models: list[A.ModelDef]
    dims: list[A.DimDecl]
    train: list[A.TrainBlock]
    sources: list[Source]


def snippet(span: Span) -> str:
    if span.source is None or span.line != span.end_line:
        return "expression"
    return span.source.line(span.line)[span.col - 1: span.end_col - 1].strip() or "expression"


# ---- loading files ---------------------------------------------------------------------
def load_module(source: Source, *, stdlib: bool = True) -> Module:
    from .parser import parse

    mod = Module({}, [], [], [], [])
    seen: set[str] = set()

    def add(src: Source, is_root: bool, tree: A.Module | None = None) -> None:
        key = str(Path(src.name).resolve()) if src.name and not src.name.startswith("<") else src.name
        if key in seen:
            return
        seen.add(key)
        mod.sources.append(src)
        tree = tree or parse(src)
        for item in tree.items:
            if isinstance(item, A.Use):
                add(_read_use(src, item), False)
            elif isinstance(item, A.LayerDef):
                prev = mod.layers.get(item.name)
                if prev is not None and prev.span.source is not None and prev.span.source.name != STD_NAME \
                        and prev.span.source is not src:
                    raise SpecNameError(f"layer '{item.name}' is defined twice", item.name_span,
                                        notes=[f"first defined at {prev.span}"])
                if prev is not None and prev.span.source is src:
                    raise SpecNameError(f"layer '{item.name}' is defined twice", item.name_span,
                                        notes=[f"first defined at {prev.span}"])
                mod.layers[item.name] = item
            elif isinstance(item, A.ModelDef):
                if is_root:
                    first = next((m for m in mod.models if m.name == item.name), None)
                    if first is not None:
                        raise SpecNameError(f"model '{item.name}' is defined twice", head_span(item.span, item.name),
                                            notes=[f"first defined at {first.span}"])
                    mod.models.append(item)
            elif isinstance(item, A.DimDecl):
                mod.dims.append(item)
            elif isinstance(item, A.TrainBlock) and is_root:
                mod.train.append(item)

    if stdlib:
        std_source, std_tree = _parse_stdlib(STDLIB.read_text())
        add(std_source, False, std_tree)
    add(source, True)
    return mod


@functools.lru_cache(maxsize=2)
def _parse_stdlib(text: str) -> tuple[Source, A.Module]:
    """The standard library's AST, parsed once per text (parsing dominates the compile time of a small spec)."""
    from .parser import parse

    src = Source(STD_NAME, text)
    return src, parse(src)


def _read_use(src: Source, item: A.Use) -> Source:
    """The file a `use "path"` names, relative to the file that says it (to the working directory for text)."""
    base = Path(src.name).parent if not src.name.startswith("<") else Path(".")
    shown = os.path.normpath(base / item.path) if item.path else str(base)
    path = Path(shown).resolve()
    if path.is_dir():
        raise SpecNameError(f"'{item.path}' is a directory, not a .nn file", item.span)
    if not path.is_file():
        raise SpecNameError(f"cannot find '{item.path}' (looked for {shown})", item.span)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecNameError(f"cannot read '{item.path}': {e}", item.span) from None
    return Source(shown, text)


def head_span(span: Span, name: str) -> Span:
    """The head of a definition, `model m` or `layer f`: its keyword and name, not its whole body."""
    if span.source is None:
        return span
    m = re.compile(rf"\w+\s+{re.escape(name)}\b").match(span.source.line(span.line), span.col - 1)
    return Span(span.source, span.line, span.col, span.line, m.end() + 1) if m else span


# ---- the elaborator --------------------------------------------------------------------
class Elaborator:
    def __init__(self, module: Module, float_dtype: str | None = None):
        self.mod = module
        self.float_dtype = float_dtype or "f32"
        self.forced_dtype = float_dtype
        self.root = GraphBuilder()
        self.params: dict[str, ParamInfo] = {}
        self.param_calls: dict[str, Span] = {}
        self.streams = 0
        self.global_scope = Scope()
        self.trial = False  # checking a layer on symbolic sizes: parameter shapes may stay symbolic
        self.declared: dict[int, Span] = {}  # uid of a model input or parameter -> its declaration

    # -- errors ----------------------------------------------------------------------------
    def _notes_for(self, frame: Frame, operands: Iterable[tuple[str, Value]]) -> list[str]:
        """Each operand's type (and where it is declared), then where each size in those types was fixed."""
        notes = []
        symbols: list[str] = []
        for label, v in operands:
            notes.append(f"{label}: {v.type}{self._provenance(frame, v)}")
            for d in v.shape:
                for s in sorted(d.symbols) if isinstance(d, Dim) else ():
                    if s not in symbols:
                        symbols.append(s)
        for s in symbols:
            info = frame.scope.dim(s) or self.global_scope.dim(s)
            if info and info.origin:
                notes.append(f"{s} is fixed by {info.origin}")
        notes.extend(self._call_notes(frame))
        return notes

    def _provenance(self, frame: Frame, v: Value) -> str:
        """', declared at f.nn:3:3', or ', computed from x (declared at ...) and W (...)' one equation back."""
        where = self._declared_at(frame, v)
        if where is not None:
            return f", declared at {where}"
        eqn = next((q for q in reversed(frame.builder.eqns) if any(o is v for o in q.outputs)), None)
        if eqn is None:
            return ""
        parts, seen = [], set()
        for i in eqn.inputs:
            at = self._declared_at(frame, i)
            if at is not None and i.name and i.uid not in seen:
                seen.add(i.uid)
                parts.append(f"{i.name}: {i.type} (declared at {at})")
        return ", computed from " + " and ".join(parts) if parts else ""

    def _declared_at(self, frame: Frame, v: Value) -> Span | None:
        """Where a model input or parameter is declared (seen through recurrence captures)."""
        b: GraphBuilder | None = frame.builder
        while b is not None and b.parent is not None:
            outer = next((c.outer for c in b.captures.values() if c.inner is v), None)
            if outer is None:
                break
            v, b = outer, b.parent
        return self.declared.get(v.uid)

    @staticmethod
    def _call_notes(frame: Frame) -> list[str]:
        return [f"in layer '{name}' called at {span}" for name, span in reversed(frame.layer_stack)]

    def _rule_error(self, e: ShapeRuleError, span: Span, frame: Frame, operands, *, display: str | None = None,
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
        return cls(message, span, notes=self._notes_for(frame, operands), hint=hint)

    def emit(self, frame: Frame, op: str, inputs: list[Value], params: dict, span: Span,
             operands: list[tuple[str, Value]] | None = None, name: str | None = None,
             display: str | None = None, snippets: dict[int, str] | None = None) -> Value:
        try:
            return frame.builder.emit1(op, inputs, params, span, name)
        except ShapeRuleError as e:
            ops = operands or [(f"operand {i + 1}", v) for i, v in enumerate(inputs)]
            raise self._rule_error(e, span, frame, ops, display=display, inputs=inputs, snippets=snippets) from None

    # -- dims ------------------------------------------------------------------------------
    def dim_expr(self, e: A.Expr, scope: Scope, *, what: str = "a size") -> Dim:
        if isinstance(e, A.Num):
            if not isinstance(e.value, int):
                raise ShapeError(f"{what} must be an integer, not {e.value}", e.span)
            return Dim.const(e.value)
        if isinstance(e, A.Name):
            info = scope.dim(e.id)
            if info is None:
                if scope.value(e.id) is not None:
                    raise ShapeError(f"'{e.id}' is a tensor, but {what} is needed here", e.span)
                raise SpecNameError(f"unknown size '{e.id}'", e.span,
                                    hint=did_you_mean(e.id, self._dim_names(scope)) or
                                    f"declare it at the top of the file: dim {e.id}")
            return info.value
        if isinstance(e, A.Neg):
            return -self.dim_expr(e.operand, scope, what=what)
        if isinstance(e, A.BinOp) and e.op in ("+", "-", "*", "//"):
            a, b = self.dim_expr(e.left, scope, what=what), self.dim_expr(e.right, scope, what=what)
            if e.op == "+":
                return a + b
            if e.op == "-":
                return a - b
            if e.op == "*":
                return a * b
            if not b.is_const or b.value <= 0:
                raise ShapeError("sizes can only be divided by a positive integer", e.right.span)
            return a // b
        if isinstance(e, A.EllipsisExpr):
            raise ShapeError("'...' (any number of axes) is only allowed in the argument types of a layer", e.span)
        raise ShapeError(f"{what} must be built from integers, size names and + - * //", e.span)

    @staticmethod
    def _dim_names(scope: Scope) -> set[str]:
        out: set[str] = set()
        s: Scope | None = scope
        while s is not None:
            out |= set(s.dims)
            s = s.parent
        return out

    def type_ann(self, t: A.TypeAnn, scope: Scope) -> TensorType:
        dtype = self._dtype(t)
        shape = tuple(self.dim_expr(d, scope) for d in t.dims)
        return TensorType(dtype, shape)

    def _dtype(self, t: A.TypeAnn) -> str:
        if t.dtype is None:
            return self.float_dtype
        if t.dtype not in DTYPES:
            raise DTypeError(f"unknown dtype '{t.dtype}'", t.dtype_span,
                             hint=did_you_mean(t.dtype, DTYPES) or f"use one of {', '.join(DTYPES)}")
        if t.dtype in ("f32", "f64"):
            return self.float_dtype
        return t.dtype

    # -- models ----------------------------------------------------------------------------
    def declare_global_dims(self) -> None:
        for decl in self.mod.dims:
            for b in decl.bindings:
                prev = self.global_scope.dims.get(b.name)
                if b.value is None:
                    if prev is None:
                        self.global_scope.dims[b.name] = DimInfo(Dim.sym(b.name))
                    continue
                d = self.dim_expr(b.value, self.global_scope)
                if not d.is_const or d.value <= 0:
                    raise ShapeError(f"a fixed size must be a positive integer, got {d}", b.value.span)
                if prev is not None and prev.value != d:
                    raise ShapeError(f"size '{b.name}' is declared twice with different values", b.span)
                self.global_scope.dims[b.name] = DimInfo(d, f"its declaration at {b.span}")

    def model(self, m: A.ModelDef) -> Program:
        self.declare_global_dims()
        self.float_dtype = self.forced_dtype or self._model_float(m)
        scope = Scope(self.global_scope)
        inputs: list[InputInfo] = []
        for p in m.inputs:
            if scope.values.get(p.name):
                raise SpecNameError(f"input '{p.name}' is declared twice", p.span,
                                    notes=[f"first declared at {scope.values[p.name][1]}"])
            if scope.dim(p.name) is not None:
                raise SpecNameError(f"input '{p.name}' has the name of a size", p.span,
                                    hint="sizes and tensors share one namespace: rename the input")
            t = self.type_ann(p.type, scope)
            for d_ast, d in zip(p.type.dims, t.shape):
                if d.is_const and d.value <= 0:
                    raise ShapeError(f"a size must be positive, got {d}", d_ast.span)
                for s in d.symbols:
                    info = scope.dim(s)
                    if info is not None and info.origin is None:
                        info.origin = f"input '{p.name}' at {d_ast.span}"
            v = self.root.add_input(Value(t, p.name))
            self.declared[v.uid] = p.span
            scope.values[p.name] = (v, p.span)
            inputs.append(InputInfo(p.name, v, p.span))
        frame = Frame(scope, self.root, "")
        outputs, _ret = self.block(m.body, frame, kind="model")
        if "loss" not in scope.values:
            raise ModelError(f"model '{m.name}' has no loss", head_span(m.span, m.name),
                             hint="assign a scalar to `loss`, e.g. loss = cross_entropy(logits, y)")
        loss, loss_span = scope.values["loss"]
        if loss.shape != ():
            raise ShapeError(f"the loss must be a scalar, but it has shape {shape_str(loss.shape)}", loss_span,
                             notes=self._notes_for(frame, [("loss", loss)]), hint="reduce it, e.g. loss = mean(...)")
        if not loss.type.is_float:
            raise DTypeError(f"the loss must be a float, but it is {loss.type}", loss_span,
                             hint="convert it with float(...)")
        names = ["loss"] + [n for n in outputs if n != "loss"]
        outs = [loss] + [scope.values[n][0] for n in names[1:]]
        params = tuple(self.params.values())
        graph = self.root.build(outs, inputs=[i.value for i in inputs] + [p.value for p in params])
        fixed = {n: i.value.value for n, i in self.global_scope.dims.items() if i.value.is_const}
        return Program(m.name, graph, tuple(inputs), params, tuple(names), fixed, self.train_items(m), m.span)

    def _model_float(self, m: A.ModelDef) -> str:
        for p in m.inputs:
            if p.type.dtype in ("f32", "f64"):
                return p.type.dtype
        return "f32"

    def train_items(self, m: A.ModelDef) -> dict[str, Any]:
        blocks = list(self.mod.train) + [s for s in m.body if isinstance(s, A.TrainBlock)]
        out: dict[str, Any] = {}
        for blk in blocks:
            seen: dict[str, A.TrainItem] = {}
            for it in blk.items:
                if it.key in seen:
                    raise ConfigError(f"training setting '{it.key}' is set twice", it.span,
                                      notes=[f"first set at {seen[it.key].span}"])
                seen[it.key] = it
                out[it.key] = (self.static_literal(it.value), it.span)
        return out

    def static_literal(self, e: A.Expr) -> Any:
        if isinstance(e, A.Num):
            return e.value
        if isinstance(e, A.Neg) and isinstance(e.operand, A.Num):
            return -e.operand.value
        if isinstance(e, (A.Name, A.Str)):
            return e.id if isinstance(e, A.Name) else e.value
        if isinstance(e, A.Bool):
            return e.value
        if isinstance(e, A.ListExpr):
            return [self.static_literal(i) for i in e.items]
        if isinstance(e, A.Call):
            return {"kind": e.func, "args": [self.static_literal(a) for a in e.args],
                    **{k.name: self.static_literal(k.value) for k in e.kwargs}}
        raise ArgumentError("a training setting must be a number, a name, a string or a list", e.span)

    # -- blocks ----------------------------------------------------------------------------
    def block(self, stmts: tuple[A.Stmt, ...], frame: Frame, kind: str) -> tuple[list[str], A.Return | None]:
        """Elaborate a model or layer body. Returns the output names and the return statement."""
        defs: dict[str, A.Stmt] = {}
        outputs: list[str] = []
        ret: A.Return | None = None
        ordered_defs: list[tuple[list[str], A.Stmt]] = []
        for s in stmts:
            names = self._defined_names(s, frame)
            for n in names:
                self._check_new_name(n, s, frame, defs)
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
            ordered_defs.append((names, s))
        # parameters first (they depend on nothing but sizes), then dataflow order
        for names, s in ordered_defs:
            if isinstance(s, A.ParamDecl):
                self.param_decl(s, frame)
        deps = {id(s): self._stmt_refs(s, frame) & set(defs) for _, s in ordered_defs}
        for s in self._toposort([s for _, s in ordered_defs if not isinstance(s, A.ParamDecl)], deps, defs,
                                in_recur=False):
            self.stmt(s, frame)
        for name in outputs:
            if frame.scope.values.get(name) is None:
                raise SpecNameError(f"output '{name}' is never defined", next(
                    s.span for s in stmts if isinstance(s, A.Output) and s.name == name))
        return outputs, ret

    def _defined_names(self, s: A.Stmt, frame: Frame) -> list[str]:
        if isinstance(s, A.Assign):
            return [s.name]
        if isinstance(s, A.Output):
            return [s.name] if s.value is not None else []
        if isinstance(s, A.ParamDecl):
            return [s.name]
        if isinstance(s, A.Recur):
            return sorted({b.name for b in s.body if isinstance(b, A.Assign) and b.time is not None})
        return []

    def _check_new_name(self, n: str, s: A.Stmt, frame: Frame, defs: dict[str, A.Stmt]) -> None:
        if n in defs:
            raise SpecNameError(f"'{n}' is defined twice", _stmt_name_span(s),
                                notes=[f"first defined at {_stmt_name_span(defs[n])}"],
                                hint="equations are definitions, not assignments: use a new name")
        if frame.scope.dim(n) is not None:
            raise SpecNameError(f"'{n}' is already a size name", _stmt_name_span(s))
        if n in frame.scope.values:
            raise SpecNameError(f"'{n}' is already defined (an input or argument)", _stmt_name_span(s))

    def _stmt_refs(self, s: A.Stmt, frame: Frame) -> set[str]:
        if isinstance(s, (A.Assign, A.Return, A.Init)):
            return refs(s.value)
        if isinstance(s, A.Output):
            return refs(s.value) if s.value is not None else {s.name}
        if isinstance(s, A.Recur):
            states = {b.name for b in s.body if isinstance(b, A.Assign) and b.time is not None}
            local = {b.name for b in s.body if isinstance(b, A.Assign) and b.time is None}
            out = refs(s.over)
            for b in s.body:
                if isinstance(b, A.Init):
                    out |= refs(b.value)
                elif isinstance(b, (A.Assign,)):
                    out |= refs(b.value, lagged=states, var=s.var) - local - states - {s.var}
            return out
        return set()

    def _toposort(self, stmts: list[A.Stmt], deps: dict[int, set[str]], defs: dict[str, A.Stmt],
                  in_recur: bool = True) -> list[A.Stmt]:
        done: set[int] = set()
        visiting: list[A.Stmt] = []
        order: list[A.Stmt] = []
        by_id = {id(s): s for s in stmts}

        def visit(s: A.Stmt) -> None:
            if id(s) in done:
                return
            if any(v is s for v in visiting):
                cyc = visiting[[id(v) for v in visiting].index(id(s)):] + [s]
                names = [_stmt_label(c) for c in cyc]
                hint = "break it with a state read at an earlier step, e.g. h[t-1]" if in_recur else \
                    "outside a `recur` block a value cannot depend on itself; write the loop as " \
                    "`recur t over x { ... }` with a state read at an earlier step, e.g. h[t-1]"
                raise RecurrenceError(
                    f"cycle without a time lag: {' -> '.join(names)}", _stmt_name_span(s),
                    notes=[f"{_stmt_label(a)} (at {_stmt_name_span(a)}) uses {_stmt_label(b)}"
                           for a, b in itertools.pairwise(cyc)],
                    hint=hint)
            visiting.append(s)
            for n in sorted(deps[id(s)]):
                d = defs.get(n)
                if d is not None and id(d) in by_id:
                    visit(d)
            visiting.pop()
            done.add(id(s))
            order.append(s)

        for s in stmts:
            visit(s)
        return order

    # -- statements ------------------------------------------------------------------------
    def stmt(self, s: A.Stmt, frame: Frame) -> None:
        if isinstance(s, A.Assign):
            frame.stmt_target, frame.primary_call = s.name, self._primary(s.value)
            v = self.tensor(self.expr(s.value, frame), s.value.span, frame)
            frame.scope.values[s.name] = (self._named(v, frame, s.name), s.target_span)
        elif isinstance(s, A.Output):
            if s.value is not None:
                frame.stmt_target, frame.primary_call = s.name, self._primary(s.value)
                v = self.tensor(self.expr(s.value, frame), s.value.span, frame)
                frame.scope.values[s.name] = (self._named(v, frame, s.name), s.span)
        elif isinstance(s, A.Recur):
            self.recur(s, frame)
        elif isinstance(s, A.Return):
            frame.stmt_target, frame.primary_call = "out", self._primary(s.value)
            v = self.tensor(self.expr(s.value, frame), s.value.span, frame)
            frame.scope.values["return"] = (v, s.span)
        elif isinstance(s, (A.TrainBlock, A.ParamDecl)):
            pass
        else:  # pragma: no cover - the parser produces nothing else
            raise AssertionError(s)

    def _primary(self, e: A.Expr) -> A.Call | None:
        return e if isinstance(e, A.Call) and e.func in self.mod.layers else None

    def _named(self, v: Value, frame: Frame, name: str) -> Value:
        """Give a value its spec name (SSA: a new value only if it already has another name)."""
        full = frame.prefix + name
        if v.name is None and frame.builder.owns(v) and not any(v is i for i in frame.builder.inputs):
            object.__setattr__(v, "name", full)  # naming a fresh temporary; the IR is not yet published
        return v

    def param_decl(self, s: A.ParamDecl, frame: Frame) -> None:
        t = self.type_ann(s.type, frame.scope)
        if not self.trial:
            for d, d_ast in zip(t.shape, s.type.dims):
                if not d.is_const or d.value <= 0:
                    infos = [(n, frame.scope.dim(n)) for n in sorted(names_in(d_ast))]
                    notes = [_dim_note(n, info) for n, info in infos if info and info.origin]
                    what = "fixed sizes" if not d.is_const else "positive sizes"
                    raise ShapeError(f"parameter shapes must be {what}, but '{s.name}' has {d}", d_ast.span,
                                     notes=notes + self._call_notes(frame),
                                     hint="parameter sizes come from layer arguments (hidden=64) or fixed dims"
                                     if not d.is_const else None)
        init = self.initializer(s.init, t)
        full = frame.prefix + s.name
        if full in self.params:
            where = frame.layer_stack[-1][1] if frame.layer_stack else s.span
            raise SpecNameError(f"two parameters are both named '{full}'", where,
                                notes=[f"the other '{full}' comes from {self.param_calls[full]}",
                                       f"'{s.name}' is declared at {s.span}"] + self._call_notes(frame)[1:],
                                hint="give the layer calls different names, e.g. name=\"fc2\"")
        v = self.root.add_input(Value(t, full))
        self.declared[v.uid] = s.span
        self.params[full] = ParamInfo(full, v, init, s.span)
        self.param_calls[full] = frame.layer_stack[-1][1] if frame.layer_stack else s.span
        frame.scope.values[s.name] = (v, s.span)

    def initializer(self, e: A.Expr | None, t: TensorType) -> Initializer:
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
                val = _number_literal(a)
                if val is None:
                    raise ArgumentError("initializer arguments must be numbers", a.span)
                args.append(float(val))
        elif _number_literal(e) is not None:
            return Initializer("constant", (float(_number_literal(e)),))
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
        return Initializer(name, tuple(args))

    # -- recurrences -----------------------------------------------------------------------
    def recur(self, s: A.Recur, frame: Frame) -> None:
        over = self.tensor(self.expr(s.over, frame), s.over.span, frame)
        if over.type.rank == 0:
            raise ShapeError("`recur ... over x` needs a sequence x with a leading time axis, got a scalar",
                             s.over.span)
        length = over.shape[0]
        states: dict[str, int] = {}
        assigns: dict[str, A.Assign] = {}
        inits: dict[str, A.Init] = {}
        for b in s.body:
            if isinstance(b, A.Assign) and b.time is not None:
                if not (isinstance(b.time, A.Name) and b.time.id == s.var):
                    raise RecurrenceError(f"a state is defined at the current step: write {b.name}[{s.var}] = ...",
                                          b.time.span)
                states[b.name] = 0
                assigns[b.name] = b
            elif isinstance(b, A.Init):
                if b.name in inits:
                    raise RecurrenceError(f"'{b.name}' has two initial values", b.span,
                                          notes=[f"the first at {inits[b.name].span}"])
                inits[b.name] = b
            elif isinstance(b, (A.Output, A.Return, A.TrainBlock)):
                raise RecurrenceError("only equations, `init` and `param` belong inside a `recur` block", b.span)
            elif isinstance(b, A.Recur):
                raise RecurrenceError("nested `recur` blocks are not supported yet", b.span,
                                      hint="put the inner recurrence in a layer of its own")
        for name, ini in inits.items():
            if name not in states:
                raise RecurrenceError(f"'{name}' has an initial value but is never defined as {name}[{s.var}] = ...",
                                      ini.span, hint=did_you_mean(name, states))
        for b in s.body:
            if isinstance(b, A.Assign):
                bare = _bare_state_read(b.value, states)
                if bare is not None:
                    raise RecurrenceError(
                        f"'{bare.id}' is a state: say which step, {bare.id}[{s.var}] or "
                        f"{bare.id}[{_lag_text(s.var, 1, s.reverse)}]", bare.span)
        # lags: scan every lagged read
        for b in s.body:
            if isinstance(b, A.Assign):
                for name, k, span in lag_reads(b.value, states, s.var, s.reverse):
                    states[name] = max(states[name], k)
                    if k > 0 and name not in inits:
                        raise RecurrenceError(
                            f"'{name}' is read at {_lag_text(s.var, k, s.reverse)} but has no initial value", span,
                            hint=f"add `init {name} = zeros([...])` inside the recur block")
        # initial values are computed outside the loop
        init_vals: dict[str, Value] = {}
        for name, ini in inits.items():
            frame.stmt_target, frame.primary_call = name + "0", None
            init_vals[name] = self.tensor(self.expr(ini.value, frame), ini.value.span, frame)
        body = GraphBuilder(frame.builder)
        lag_inputs: dict[tuple[str, int], Value] = {}
        for name, k in states.items():
            for lag in range(1, k + 1):
                lag_inputs[(name, lag)] = body.add_input(Value(init_vals[name].type, f"{name}[{_lag_text(s.var, lag, s.reverse)}]"))
        rc = RecurCtx(s.var, s.reverse, length, states, lag_inputs, {})
        scope = Scope(frame.scope)
        inner = Frame(scope, body, frame.prefix, rc, frame.layer_stack)
        # params declared inside the body are hoisted: they do not depend on t
        stmts = [b for b in s.body if not isinstance(b, A.Init)]
        defs: dict[str, A.Stmt] = {}
        for b in stmts:
            for n in self._defined_names(b, inner):
                if n in defs:
                    raise SpecNameError(f"'{n}' is defined twice", _stmt_name_span(b),
                                        notes=[f"first defined at {_stmt_name_span(defs[n])}"])
                if frame.scope.value(n) is not None and n not in states:
                    prev = frame.scope.value(n)
                    raise SpecNameError(f"'{n}' is already defined outside this recurrence", _stmt_name_span(b),
                                        notes=[f"defined at {prev[1]}"])
                defs[n] = b
        for b in stmts:
            if isinstance(b, A.ParamDecl):
                self.param_decl(b, inner)
        deps = {id(b): (refs(b.value, lagged=set(states), var=s.var) if isinstance(b, A.Assign) else set()) & set(defs)
                for b in stmts}
        for b in self._toposort([b for b in stmts if not isinstance(b, A.ParamDecl)], deps, defs):
            assert isinstance(b, A.Assign)
            inner.stmt_target, inner.primary_call = b.name, self._primary(b.value)
            v = self.tensor(self.expr(b.value, inner), b.value.span, inner)
            if b.time is not None:
                if b.name in init_vals and v.type != init_vals[b.name].type:
                    raise ShapeError(
                        f"'{b.name}[{s.var}]' has type {v.type} but its initial value has {init_vals[b.name].type}",
                        b.value.span, notes=self._notes_for(inner, []) + [f"the init is at {inits[b.name].span}"])
                rc.current[b.name] = v
            else:
                scope.values[b.name] = (self._named(v, inner, b.name), b.target_span)
        order = list(states)
        outs = []
        for name in order:
            v = rc.current[name]
            if not body.owns(v) or any(v is o for o in outs) or any(v is i for i in body.inputs):
                v = body.emit1("add", [v, body.emit1("full", [], {"shape": (), "value": 0.0, "dtype": v.dtype})]) \
                    if v.type.is_float else v
            outs.append(v)
        caps = list(body.captures.values())
        seqs = list(rc.seq_inputs.values())
        graph = body.build(outs, inputs=[c.inner for c in caps] + [i for _, i in seqs] + list(lag_inputs.values()))
        eqn_inputs = [c.outer for c in caps] + [o for o, _ in seqs] + [init_vals[n] for n in order if states[n] > 0]
        params = {"body": graph, "n_consts": len(caps), "n_seqs": len(seqs),
                  "states": tuple((n, states[n]) for n in order), "reverse": s.reverse, "length": length}
        try:
            results = frame.builder.emit("scan", eqn_inputs, params, s.span, [frame.prefix + n for n in order])
        except ShapeRuleError as e:
            raise self._rule_error(e, s.span, frame, []) from None
        for name, v in zip(order, results):
            frame.scope.values[name] = (v, assigns[name].target_span)

    def time_read(self, e: A.Index, frame: Frame) -> Value | None:
        """``h[t-1]``, ``h[t]`` or ``x[t]`` inside a recurrence; None if ``e`` is not one."""
        rc = frame.recur
        if rc is None or not isinstance(e.base, A.Name) or not e.subs or not mentions(e.subs[0], rc.var):
            return None
        name, sub = e.base.id, e.subs[0]
        rest = e.subs[1:]
        if name in rc.states:
            k = time_lag(sub, rc.var, rc.reverse)
            if k is None:
                raise RecurrenceError(f"a state is read as {name}[{rc.var}] or at an earlier step, "
                                      f"{name}[{_lag_text(rc.var, 1, rc.reverse)}]", sub.span)
            v = rc.current[name] if k == 0 else rc.lag_inputs[(name, k)]
        else:
            if not (isinstance(sub, A.Name) and sub.id == rc.var):
                raise RecurrenceError(f"only states can be read at another step; '{name}' is read at [{rc.var}] only",
                                      sub.span)
            bound = frame.scope.value(name)
            if bound is None:
                raise self._unknown(name, e.base.span, frame)
            outer = bound[0]
            if not isinstance(outer, Value):
                raise RecurrenceError(f"'{name}' is a constant, not a sequence", e.base.span)
            if frame.builder.owns(outer) and not frame.builder.captures.get(outer.uid):
                raise RecurrenceError(f"'{name}' is computed at this step; write {name}, not {name}[{rc.var}]",
                                      e.span)
            if outer.type.rank == 0 or outer.shape[0] != rc.length:
                raise ShapeError(f"'{name}' is read at [{rc.var}], so its leading dim must be the recurrence "
                                 f"length {rc.length}", e.span, notes=self._notes_for(frame, [(name, outer)]))
            if outer.uid not in rc.seq_inputs:
                rc.seq_inputs[outer.uid] = (outer, frame.builder.add_input(
                    Value(TensorType(outer.dtype, outer.shape[1:]), f"{name}[{rc.var}]")))
            v = rc.seq_inputs[outer.uid][1]
        if rest:
            return self.index_value(v, rest, e, frame)
        return v

    # -- expressions -----------------------------------------------------------------------
    def expr(self, e: A.Expr, frame: Frame) -> Any:
        """Evaluate an expression: an IR Value for tensors, else a Python number, Dim, bool, str or list."""
        if isinstance(e, A.Num):
            return e.value
        if isinstance(e, A.Bool):
            return e.value
        if isinstance(e, A.Str):
            return e.value
        if isinstance(e, A.Name):
            return self.name(e, frame)
        if isinstance(e, A.ListExpr):
            return [self.expr(i, frame) for i in e.items]
        if isinstance(e, A.Neg):
            v = self.expr(e.operand, frame)
            if isinstance(v, Value):
                return self.emit(frame, "neg", [v], {}, e.span, [(f"operand '{snippet(e.operand.span)}'", v)],
                                 display="-", snippets={v.uid: snippet(e.operand.span)})
            return self.static_arith("-", 0, v, e)
        if isinstance(e, A.BinOp):
            return self.binop(e, frame)
        if isinstance(e, A.Index):
            tv = self.time_read(e, frame)
            if tv is not None:
                return tv
            base = self.tensor(self.expr(e.base, frame), e.base.span, frame)
            return self.index_value(base, e.subs, e, frame)
        if isinstance(e, A.Call):
            return self.call(e, frame)
        if isinstance(e, A.EllipsisExpr):
            raise ArgumentError("'...' is only allowed in subscripts and layer signatures", e.span)
        raise AssertionError(e)  # pragma: no cover

    def name(self, e: A.Name, frame: Frame) -> Any:
        rc = frame.recur
        if rc is not None:
            if e.id == rc.var:
                raise RecurrenceError(f"the step index '{rc.var}' can only be used in a subscript, as in x[{rc.var}]",
                                      e.span)
            if e.id in rc.states:
                raise RecurrenceError(
                    f"'{e.id}' is a state: say which step, {e.id}[{rc.var}] or {e.id}[{_lag_text(rc.var, 1, rc.reverse)}]",
                    e.span)
        bound = frame.scope.value(e.id)
        if bound is not None:
            return bound[0]
        info = frame.scope.dim(e.id)
        if info is not None:
            return info.value
        raise self._unknown(e.id, e.span, frame)

    def _unknown(self, name: str, span: Span, frame: Frame) -> SpeccError:
        if name in BUILTINS or name in self.mod.layers:
            return SpecNameError(f"'{name}' is a function; call it as {name}(...)", span)
        cands = frame.scope.all_names()
        if frame.recur:
            cands |= set(frame.recur.states)
        local = frame.scope.recur_locals.get(name)
        if local is not None:
            where, var = local
            return SpecNameError(f"'{name}' is private to its `recur` block", span,
                                 notes=[f"'{name}' is defined at {where}"] + self._call_notes(frame),
                                 hint=f"make it a state, {name}[{var}] = ..., to read it after the block")
        return SpecNameError(f"unknown name '{name}'", span, hint=did_you_mean(name, cands),
                             notes=self._call_notes(frame))

    def tensor(self, v: Any, span: Span, frame: Frame, dtype: str | None = None) -> Value:
        """Coerce a number (or a fixed size) to a constant tensor; reject other statics."""
        if isinstance(v, Value):
            return v
        if isinstance(v, Dim):
            if not v.is_const:
                raise ShapeError(f"the symbolic size {v} cannot be used as a number (yet)", span,
                                 hint="sizes bound at run time are not values in the graph")
            v = v.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ArgumentError(f"expected a tensor here, got {_describe_static(v)}", span)
        dt = dtype or (self.float_dtype if isinstance(v, float) or dtype is None else "i32")
        try:
            value = float(v)
        except OverflowError:
            raise ArgumentError(f"the number {_short(v)} is too large for a tensor", span) from None
        return self.emit(frame, "full", [], {"shape": (), "value": value, "dtype": dt}, span)

    def static_arith(self, op: str, a: Any, b: Any, e: A.Expr) -> Any:
        for x in (a, b):
            if isinstance(x, bool) or not isinstance(x, (int, float, Dim)):
                raise ArgumentError(f"'{op}' cannot combine {_describe_static(a)} and {_describe_static(b)}", e.span)
        if isinstance(a, Dim) or isinstance(b, Dim):
            if isinstance(a, float) or isinstance(b, float) or op not in ("+", "-", "*", "//"):
                raise ShapeError(f"sizes only combine with integers through + - * //, not '{op}'", e.span)
            a, b = as_dim(a), as_dim(b)
            if op == "//":
                if not b.is_const or b.value <= 0:
                    raise ShapeError("sizes can only be divided by a positive integer", e.span)
            return {"+": a + b, "-": a - b, "*": a * b, "//": a // b if op == "//" else None}[op]
        if op in ("/", "//") and b == 0 or op == "**" and a == 0 and b < 0:
            raise ArgumentError("division by zero", e.span)
        if op == "**" and abs(a) > 1 and b > 0 and b * math.log2(abs(a)) > 1024:
            raise ArgumentError(f"'{op}' overflows", e.span)
        try:
            out = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
                   "//": lambda: a // b, "**": lambda: a ** b}[op]()
        except OverflowError:
            raise ArgumentError(f"'{op}' overflows", e.span) from None
        if isinstance(out, complex):
            raise ArgumentError(f"'{op}' gives a complex number", e.span)
        return out

    def binop(self, e: A.BinOp, frame: Frame) -> Any:
        a, b = self.expr(e.left, frame), self.expr(e.right, frame)
        if not isinstance(a, Value) and not isinstance(b, Value):
            return self.static_arith(e.op, a, b, e)
        if e.op == "//":
            raise ArgumentError("'//' is integer division of sizes; use '/' for tensors", e.span)
        texts = (snippet(e.left.span), snippet(e.right.span))
        for t, t_text, c in ((a, texts[0], b), (b, texts[1], a)):
            if isinstance(t, Value) and not t.type.is_float and isinstance(c, float):  # 2.5 would become 2
                raise DTypeError(f"'{e.op}' mixes the {t.dtype} tensor '{t_text}' with the float {c}", e.span,
                                 notes=self._notes_for(frame, [(f"'{t_text}'", t)]),
                                 hint=f"convert it with float({t_text})")
        a = self.tensor(a, e.left.span, frame, b.dtype if isinstance(b, Value) else None)
        b = self.tensor(b, e.right.span, frame, a.dtype)
        operands = [(f"left operand '{texts[0]}'", a), (f"right operand '{texts[1]}'", b)]
        if a.dtype != b.dtype:
            i = 0 if not a.type.is_float else 1
            raise DTypeError(f"'{e.op}' mixes {a.dtype} and {b.dtype}", e.span, notes=self._notes_for(frame, operands),
                             hint=f"convert the {(a, b)[i].dtype} operand with float({texts[i]})")
        return self.emit(frame, BINOPS[e.op], [a, b], {}, e.span, operands, display=e.op,
                         snippets={a.uid: texts[0], b.uid: texts[1]})

    def index_value(self, x: Value, subs, e: A.Expr, frame: Frame) -> Value:
        entries: list[tuple] = []
        n_real = sum(1 for s in subs if not isinstance(s, A.EllipsisExpr))
        ell = [s for s in subs if isinstance(s, A.EllipsisExpr)]
        if len(ell) > 1:
            raise ArgumentError("at most one '...' in a subscript", ell[1].span)
        if n_real > x.type.rank:
            base = snippet(e.base.span) if isinstance(e, A.Index) else "x"
            raise ShapeError(f"{n_real} subscript{'s' * (n_real != 1)} for a tensor of rank {x.type.rank}", e.span,
                             notes=self._notes_for(frame, [(f"'{base}'", x)]))
        for s in subs:
            if isinstance(s, A.EllipsisExpr):
                entries.extend([("slice", None, None, 1)] * (x.type.rank - n_real))
            elif isinstance(s, A.Slice):
                lo = None if s.start is None else self.index_dim(s.start, frame)
                hi = None if s.stop is None else self.index_dim(s.stop, frame)
                step = Dim.const(1) if s.step is None else self.index_dim(s.step, frame)
                if not step.is_const or step.value <= 0:
                    raise ShapeError("a slice step must be a positive integer", s.step.span)
                entries.append(("slice", lo, hi, step.value))
            else:
                entries.append(("int", self.index_dim(s, frame)))
        while entries and entries[-1] == ("slice", None, None, 1):
            entries.pop()
        if not entries:
            return x
        return self.emit(frame, "getitem", [x], {"index": tuple(entries)}, e.span,
                         [(f"'{snippet(e.base.span) if isinstance(e, A.Index) else 'x'}'", x)])

    def index_dim(self, s: A.Expr, frame: Frame) -> Dim:
        v = self.expr(s, frame)
        if isinstance(v, Value):
            raise ArgumentError("subscripts must be integers or sizes, not tensors", s.span,
                                hint="use take(table, ids) to select by integer tensors")
        if isinstance(v, bool) or not isinstance(v, (int, Dim)):
            raise ArgumentError(f"a subscript must be an integer, got {_describe_static(v)}", s.span)
        return as_dim(v)

    # -- calls -----------------------------------------------------------------------------
    def call(self, e: A.Call, frame: Frame) -> Value:
        if e.func in self.mod.layers:
            return self.call_layer(self.mod.layers[e.func], e, frame)
        fn = BUILTINS.get(e.func)
        if fn is None:
            raise SpecNameError(f"unknown function '{e.func}'", e.func_span,
                                hint=did_you_mean(e.func, set(BUILTINS) | set(self.mod.layers)))
        return CallCtx(self, e, frame, fn).run()

    def call_layer(self, layer: A.LayerDef, e: A.Call, frame: Frame) -> Value:
        if any(name == layer.name for name, _ in frame.layer_stack):
            raise ArgumentError(f"layer '{layer.name}' calls itself", e.span, notes=self._call_notes(frame))
        by_name: dict[str, A.LayerParam] = {}
        for p in layer.params:
            if _param_key(p) in by_name:
                raise SpecNameError(f"layer '{layer.name}' has two arguments named '{_param_key(p)}'", p.span,
                                    notes=[f"the first is at {by_name[_param_key(p)].span}"])
            by_name[_param_key(p)] = p
        explicit_name = None
        kwargs: dict[str, A.Kwarg] = {}
        for k in e.kwargs:
            if k.name in kwargs or k.name == "name" and explicit_name is not None:
                raise ArgumentError(f"argument '{k.name}' given twice", k.span)
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
            bound[_param_key(p)] = a
        for k, kw in kwargs.items():
            if k in bound:
                raise ArgumentError(f"argument '{k}' given twice", kw.span)
            bound[k] = kw.value
        scope = Scope(self.global_scope)
        env: dict[str, DimInfo] = {}
        # sizes and options first: they may appear in tensor shapes
        for p in layer.params:
            key = _param_key(p)
            arg = bound.get(key)
            if isinstance(p, A.SizeParam):
                if arg is None:
                    if p.default is None:
                        raise ArgumentError(f"layer '{layer.name}' needs the size '{p.keyword}'", e.span,
                                            hint=f"it is called as {layer_sig(layer)}")
                    d = self.dim_expr(p.default, Scope(self.global_scope, dims=dict(env)))
                else:
                    val = self.expr(arg, frame)
                    if isinstance(val, bool) or not isinstance(val, (int, Dim)):
                        raise ArgumentError(f"size '{p.keyword}' must be an integer, got {_describe_static(val)}",
                                            arg.span)
                    d = as_dim(val)
                    if d.is_const and d.value <= 0:
                        raise ArgumentError(f"size '{p.keyword}' must be positive, got {d}", arg.span)
                env[p.dim] = DimInfo(d, f"argument {p.keyword}={d} at {arg.span}" if arg else None)
            elif isinstance(p, A.OptionParam):
                src = arg if arg is not None else p.default
                val = self.expr(src, frame)
                if isinstance(val, Value) or isinstance(val, (str, list)) or val is None:
                    raise ArgumentError(f"option '{p.name}' of layer '{layer.name}' must be a constant number "
                                        f"or boolean", src.span)
                scope.values[p.name] = (val, src.span)  # a static: usable where a literal is
        tensors: list[tuple[A.TensorParam, Value, A.Expr]] = []
        for p in layer.params:
            if isinstance(p, A.TensorParam):
                arg = bound.get(p.name)
                if arg is None:
                    raise ArgumentError(f"layer '{layer.name}' needs the tensor argument '{p.name}'", e.span,
                                        hint=f"it is called as {layer_sig(layer)}")
                v = self.tensor(self.expr(arg, frame), arg.span, frame)
                tensors.append((p, v, arg))
        ellipsis = None
        for p, v, arg in tensors:
            matched = self.unify(p.type, v, env, layer, p.name, arg.span, frame)
            ellipsis = matched if matched is not None else ellipsis
        scope.dims.update(env)
        for p, v, arg in tensors:
            scope.values[p.name] = (v, arg.span)
        prefix = self._layer_prefix(layer, e, frame, explicit_name)
        inner = Frame(scope, frame.builder, prefix, None, frame.layer_stack + ((layer.name, e.span),))
        try:
            _, ret = self.block(layer.body, inner, kind="layer")
            if ret is None:
                raise ModelError(f"layer '{layer.name}' has no `return`", layer.name_span)
            out = scope.values["return"][0]
            if layer.ret is not None:
                self.check_return(layer, out, env, inner, ellipsis or (), ret)
        except SpeccError as err:
            raise _at_call_site(err, layer, e) from None
        return out

    def _layer_prefix(self, layer: A.LayerDef, e: A.Call, frame: Frame, explicit: str | None) -> str:
        if explicit is not None:
            return frame.prefix + explicit + "."
        target = frame.stmt_target or layer.name
        if frame.primary_call is e:
            return frame.prefix + target + "."
        key = f"{target}.{layer.name}"
        n = frame.call_counts.get(key, 0) + 1
        frame.call_counts[key] = n
        return frame.prefix + key + ("" if n == 1 else f"_{n}") + "."

    def unify(self, ann: A.TypeAnn, v: Value, env: dict[str, DimInfo], layer: A.LayerDef, pname: str,
              span: Span, frame: Frame) -> tuple[Dim, ...] | None:
        """Bind the layer's dim names from an argument's shape; returns what '...' matched."""
        ellipsis = None

        def fail(msg: str) -> SpeccError:
            return ShapeError(f"argument '{pname}' of layer '{layer.name}': {msg}", span,
                              notes=self._notes_for(frame, [(pname, v)]) + [f"'{layer.name}' declares "
                                                                            f"{pname}: {_ann_text(ann)} at {ann.span}"])

        if ann.dtype is not None and ann.dtype not in DTYPES:
            raise DTypeError(f"unknown dtype '{ann.dtype}'", ann.dtype_span,
                             hint=did_you_mean(ann.dtype, DTYPES) or f"use one of {', '.join(DTYPES)}")
        if ann.dtype == "i32" and v.dtype != "i32" or ann.dtype in ("f32", "f64") and not v.type.is_float:
            raise DTypeError(f"argument '{pname}' of layer '{layer.name}' must be {ann.dtype}, got {v.dtype}", span,
                             notes=[*self._notes_for(frame, [(pname, v)]),
                                    f"'{layer.name}' declares {pname}: {_ann_text(ann)} at {ann.span}"],
                             hint=f"convert it with {'int' if ann.dtype == 'i32' else 'float'}({snippet(span)})")
        dims = list(ann.dims)
        ell = [i for i, d in enumerate(dims) if isinstance(d, A.EllipsisExpr)]
        if len(ell) > 1:
            raise ShapeError("at most one '...' in a shape", dims[ell[1]].span)
        actual = list(v.shape)
        if ell:
            i = ell[0]
            n_after = len(dims) - i - 1
            if len(actual) < len(dims) - 1:
                raise fail(f"expected rank >= {len(dims) - 1}, got {shape_str(v.shape)}")
            ellipsis = tuple(actual[i:len(actual) - n_after])
            pairs = list(zip(dims[:i], actual[:i])) + list(zip(dims[i + 1:], actual[len(actual) - n_after:]))
        else:
            if len(actual) != len(dims):
                raise fail(f"expected shape {_ann_text(ann)} (rank {len(dims)}), got {shape_str(v.shape)}")
            pairs = list(zip(dims, actual))
        deferred = []
        for d_ast, d in pairs:
            fixed = self.global_scope.dims.get(d_ast.id) if isinstance(d_ast, A.Name) else None
            if fixed is not None and fixed.value.is_const and d_ast.id not in env:
                env[d_ast.id] = fixed  # a size fixed by `dim D = 8` is checked, not re-bound
            if isinstance(d_ast, A.Name) and d_ast.id not in env:
                env[d_ast.id] = DimInfo(d, f"argument '{pname}' at {span}")
            elif isinstance(d_ast, A.Name):
                if env[d_ast.id].value != d:
                    raise fail(f"dim {d_ast.id} is {env[d_ast.id].value} (from {env[d_ast.id].origin}) "
                               f"but this argument has {d}")
            else:
                deferred.append((d_ast, d))
        for d_ast, d in deferred:
            unknown = names_in(d_ast) - set(env)
            if len(unknown) == 1:
                name = unknown.pop()
                sol = solve_linear(d_ast, name, d, lambda e_: self.dim_expr(e_, Scope(dims=env)))
                if sol is None:
                    raise fail(f"cannot solve {snippet(d_ast.span)} = {d} for {name}")
                env[name] = DimInfo(sol, f"argument '{pname}' at {span}")
            want = self.dim_expr(d_ast, Scope(self.global_scope, dims=dict(env)))
            if want != d:
                raise fail(f"expected {snippet(d_ast.span)} = {want}, got {d}")
        return ellipsis

    def check_return(self, layer: A.LayerDef, out: Value, env: dict[str, DimInfo], frame: Frame,
                     ellipsis: tuple[Dim, ...], ret: A.Return | None = None) -> None:
        dims = [d for d in layer.ret.dims]
        scope = Scope(self.global_scope, dims=dict(env))
        want: list[Dim] = []
        for d in dims:
            if isinstance(d, A.EllipsisExpr):
                want.extend(ellipsis)
            else:
                want.append(self.dim_expr(d, scope))
        if tuple(want) != out.shape:
            related = [(f"the value returned here has shape {shape_str(out.shape)}", ret.value.span)] if ret else []
            names = sorted(set().union(*(names_in(d) for d in dims)) & set(env))
            notes = [_dim_note(n, env[n]) for n in names if env[n].origin]
            raise ShapeError(f"layer '{layer.name}' returns {shape_str(out.shape)} but declares "
                             f"-> {_ann_text(layer.ret)} = {shape_str(tuple(want))}", layer.ret.span,
                             notes=notes + self._call_notes(frame), related=related)

    # -- checking layers nobody calls ------------------------------------------------------
    def _trial_dim(self, d: A.Expr) -> Dim:
        """A stand-in size for checking a layer on its own: a fixed global size, else a symbol."""
        fixed = self.global_scope.dims.get(d.id) if isinstance(d, A.Name) else None
        if fixed is not None and fixed.value.is_const:
            return fixed.value
        return Dim.sym(_dim_placeholder(d))

    def trial_layer(self, layer: A.LayerDef) -> None:
        """Elaborate a layer on symbolic sizes so that its errors surface even if no model calls it."""
        self.trial = True
        try:
            saved = (self.root, self.params, self.param_calls)
            self.root, self.params, self.param_calls = GraphBuilder(), {}, {}
            scope = Scope(self.global_scope)
            frame = Frame(scope, self.root, "", None, ((layer.name, layer.name_span),))
            args = []
            for p in layer.params:
                if isinstance(p, A.TensorParam):
                    dims = [self._trial_dim(d) for d in p.type.dims if not isinstance(d, A.EllipsisExpr)]
                    dt = p.type.dtype if p.type.dtype == "i32" else self.float_dtype
                    v = self.root.add_input(Value(TensorType(dt, tuple(dims)), p.name))
                    scope.values[f"__arg_{p.name}"] = (v, p.span)
                    args.append(A.Kwarg(p.name, A.Name(f"__arg_{p.name}", p.span), p.span))
                elif isinstance(p, A.SizeParam):
                    scope.dims[f"__size_{p.dim}"] = DimInfo(Dim.sym(p.dim))
                    args.append(A.Kwarg(p.keyword, A.Name(f"__size_{p.dim}", p.span), p.span))
            call = A.Call(layer.name, (), tuple(args), layer.span, layer.name_span)
            frame.stmt_target = layer.name
            self.call_layer(layer, call, Frame(scope, self.root, "", None, ()))
        finally:
            self.root, self.params, self.param_calls = saved
            self.trial = False


class CallCtx:
    """Binds a builtin call's arguments to the builtin's Python signature and emits its ops."""

    def __init__(self, el: Elaborator, call: A.Call, frame: Frame, fn):
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
        val = self.el.expr(a, self.frame)
        ann = p.annotation
        if ann is Tensor:
            if val is None:
                return None
            v = self.el.tensor(val, a.span, self.frame)
            text = snippet(a.span)
            label = f"argument {name}" if name.isdigit() else f"argument '{name}'"
            self.tensor_args.append((label if text == name else f"{label} ('{text}')", v))
            self.snippets[v.uid] = text
            return v
        if isinstance(val, Value):
            self.fail(f"argument '{name}' of '{self.call.func}' must be a constant, not a tensor", a.span)
        if ann is float:
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                self.fail(f"argument '{name}' must be a number, got {_describe_static(val)}", a.span)
            return float(val)
        if ann is int:
            if isinstance(val, Dim) and val.is_const:
                val = val.value
            if isinstance(val, bool) or not isinstance(val, int):
                self.fail(f"argument '{name}' must be an integer, got {_describe_static(val)}", a.span)
            return val
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
                    self.fail(f"shape entries must be sizes, got {_describe_static(it)}", it_ast.span)
                if isinstance(it, int) and it == -1 and self.call.func in SHAPE_HOLES:
                    out.append(-1)
                    continue
                d = as_dim(it)
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
            err = self.el._rule_error(e, self.call.span, self.frame,
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
            self.fail(f"an axis must be an integer, got {_describe_static(axis)}")
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


# ---- helpers -----------------------------------------------------------------------------
def exact_div(a: Dim, b: Dim) -> Dim | None:
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


def refs(e: Any, lagged: set[str] = frozenset(), var: str | None = None) -> set[str]:
    """Names an expression depends on (reads of a lagged state at an earlier step excluded)."""
    out: set[str] = set()

    def walk(x: Any) -> None:
        if isinstance(x, A.Name):
            out.add(x.id)
        elif isinstance(x, A.Index):
            if (var is not None and isinstance(x.base, A.Name) and x.base.id in lagged and x.subs
                    and mentions(x.subs[0], var)):
                if isinstance(x.subs[0], A.Name) and x.subs[0].id == var:
                    out.add(x.base.id)  # h[t]: a dependency on the current step
                for s in x.subs[1:]:
                    walk(s)
                return
            walk(x.base)
            for s in x.subs:
                walk(s)
        elif isinstance(x, A.Call):
            for a in x.args:
                walk(a)
            for k in x.kwargs:
                walk(k.value)
        elif isinstance(x, A.BinOp):
            walk(x.left)
            walk(x.right)
        elif isinstance(x, A.Neg):
            walk(x.operand)
        elif isinstance(x, A.ListExpr):
            for i in x.items:
                walk(i)
        elif isinstance(x, A.Slice):
            for i in (x.start, x.stop, x.step):
                if i is not None:
                    walk(i)

    walk(e)
    return out


def mentions(e: Any, name: str) -> bool:
    return name in refs(e)


def names_in(e: Any) -> set[str]:
    return refs(e)


def time_lag(sub: A.Expr, var: str, reverse: bool) -> int | None:
    """0 for ``t``; k for ``t-k`` (``t+k`` in a reversed recurrence); None otherwise."""
    if isinstance(sub, A.Name) and sub.id == var:
        return 0
    if isinstance(sub, A.BinOp) and isinstance(sub.left, A.Name) and sub.left.id == var \
            and isinstance(sub.right, A.Num) and isinstance(sub.right.value, int) and sub.right.value > 0:
        if sub.op == ("+" if reverse else "-"):
            return sub.right.value
    return None


def lag_reads(e: Any, states: dict[str, int], var: str, reverse: bool) -> list[tuple[str, int, Span]]:
    out = []

    def walk(x: Any) -> None:
        if isinstance(x, A.Index) and isinstance(x.base, A.Name) and x.base.id in states and x.subs:
            k = time_lag(x.subs[0], var, reverse)
            if k is None and mentions(x.subs[0], var):
                wrong = time_lag(x.subs[0], var, not reverse)
                hint = None
                if wrong is not None:
                    hint = ("this recurrence runs backwards: an earlier step is "
                            f"{_lag_text(var, wrong, reverse)}") if reverse else \
                        f"a forward recurrence reads earlier steps as {_lag_text(var, wrong, reverse)}"
                raise RecurrenceError(f"'{x.base.id}' can only be read at {var} or an earlier step",
                                      x.subs[0].span, hint=hint)
            if k is not None:
                out.append((x.base.id, k, x.span))
        for child in _children(x):
            walk(child)

    walk(e)
    return out


def _dim_note(name: str, info: DimInfo) -> str:
    if str(info.value) == name:
        return f"{name} is fixed by {info.origin}"
    return f"{name} = {info.value}, from {info.origin}"


def _bare_state_read(e: Any, states: dict[str, int]) -> A.Name | None:
    """The first read of a state without a step (``h`` rather than ``h[t]``), if any."""
    if isinstance(e, A.Name):
        return e if e.id in states else None
    children = _children(e)
    if isinstance(e, A.Index) and isinstance(e.base, A.Name) and e.subs:
        children = list(e.subs)  # h[...] says a step; what the subscript says is checked elsewhere
    for c in children:
        found = _bare_state_read(c, states)
        if found is not None:
            return found
    return None


def _children(x: Any) -> list:
    if isinstance(x, A.Index):
        return [x.base, *x.subs]
    if isinstance(x, A.Call):
        return [*x.args, *(k.value for k in x.kwargs)]
    if isinstance(x, A.BinOp):
        return [x.left, x.right]
    if isinstance(x, A.Neg):
        return [x.operand]
    if isinstance(x, A.ListExpr):
        return list(x.items)
    if isinstance(x, A.Slice):
        return [i for i in (x.start, x.stop, x.step) if i is not None]
    return []


def solve_linear(e: A.Expr, name: str, target: Dim, evaluate) -> Dim | None:
    """Solve e(name) = target for an e linear in name, by evaluating e at name = 0 and 1."""
    try:
        at0 = evaluate(_subst(e, name, 0))
        at1 = evaluate(_subst(e, name, 1))
    except SpeccError:
        return None
    coef = at1 - at0
    if not coef.is_const or coef.value == 0:
        return None
    return exact_div(target - at0, coef)


def _subst(e: A.Expr, name: str, value: int) -> A.Expr:
    if isinstance(e, A.Name) and e.id == name:
        return A.Num(value, e.span)
    if isinstance(e, A.BinOp):
        return A.BinOp(e.op, _subst(e.left, name, value), _subst(e.right, name, value), e.span)
    if isinstance(e, A.Neg):
        return A.Neg(_subst(e.operand, name, value), e.span)
    return e


def _lag_text(var: str, k: int, reverse: bool) -> str:
    return var if k == 0 else f"{var}{'+' if reverse else '-'}{k}"


def _param_key(p: A.LayerParam) -> str:
    return p.keyword if isinstance(p, A.SizeParam) else p.name


def _dim_placeholder(d: A.Expr) -> str:
    return d.id if isinstance(d, A.Name) else snippet(d.span).replace(" ", "")


def _ann_text(t: A.TypeAnn) -> str:
    return (t.dtype or "") + "[" + ", ".join(snippet(d.span) for d in t.dims) + "]"


def layer_sig(layer: A.LayerDef) -> str:
    parts = []
    for p in layer.params:
        if isinstance(p, A.TensorParam):
            parts.append(p.name)
        elif isinstance(p, A.SizeParam):
            parts.append(f"{p.keyword}={snippet(p.default.span) if p.default else p.dim}")
        else:
            parts.append(f"{p.name}={snippet(p.default.span)}")
    return f"{layer.name}({', '.join(parts)})"


def _stmt_name_span(s: A.Stmt) -> Span:
    if isinstance(s, A.Assign):
        return s.target_span
    return s.span


def _stmt_label(s: A.Stmt) -> str:
    if isinstance(s, A.Assign):
        return s.name if s.time is None else f"{s.name}[{snippet(s.time.span)}]"
    if isinstance(s, A.Recur):
        return "recur " + ", ".join(sorted({b.name for b in s.body if isinstance(b, A.Assign) and b.time}))
    return getattr(s, "name", type(s).__name__)


def _at_call_site(err: SpeccError, layer: A.LayerDef, call: A.Call) -> SpeccError:
    """An error inside a standard-library layer, moved to the spec's call (users cannot edit std.nn)."""
    span = err.span
    if span is None or span.source is None or span.source.name != STD_NAME or call.span.source is span.source:
        return err
    here = f"in layer '{layer.name}' called at {call.span}"
    related = [(f"in the standard library's '{layer.name}'", span)] + err.related
    return type(err)(err.message, call.span, [n for n in err.notes if n != here], err.hint, err.kind, related)


def _number_literal(e: A.Expr) -> int | float | None:
    """The value of ``3``, ``0.5`` or ``-0.5``; None for anything else."""
    if isinstance(e, A.Num):
        return e.value
    if isinstance(e, A.Neg) and isinstance(e.operand, A.Num):
        return -e.operand.value
    return None


def _short(v: Any) -> str:
    text = str(v)
    return text if len(text) <= 20 else text[:8] + "..." + text[-8:]


def _describe_static(v: Any) -> str:
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
    return f"the number {_short(v)}"
