"""Typed AST to checked IR: the coordinator of the front end's elaboration.

In: a loaded :class:`~specc.frontend.loader.Module` (the spec, the files it
``use``s and the standard library) and the model to build.
Out: a :class:`~specc.ir.core.Program` whose every value has a dtype and a
symbolic shape and whose every equation carries its ``.nn`` span; or a
:class:`~specc.errors.SpeccError` pointing at the spec.

The work is done by the modules next to this one, each a stage of it:
``loader`` (files and ``use``), ``context`` (scopes, frames, program state),
``sizes`` (size expressions and types), ``expressions``, ``builtin_calls``,
``layers`` (argument binding, size unification, inlining), ``blocks`` and
``recurrences`` (equations in dataflow order, scans), ``params`` and
``diagnostics``. This module declares the sizes of each file, elaborates a
model's inputs and body, and reads its ``train`` settings.

Statements in a block are equations, not instructions: they are ordered by
their data dependencies (a reference to a state at an earlier time step is
not a dependency), and a cycle is an error that names it.
"""

from __future__ import annotations

from typing import Any

from . import ast as A
from .blocks import block
from .builtin_calls import CallCtx
from .builtins import BUILTINS
from . import builtins_select  # noqa: F401  (registers where, argmax, tril, ...)
from .context import Context, DimInfo, Frame, Scope
from .diagnostics import notes_for
from .layers import call_layer, check_layer_alone
from .loader import STD_NAME, STDLIB, Module, head_span, load_module
from .sizes import check_size, dim_expr, type_ann
from ..errors import (ArgumentError, ConfigError, DTypeError, ModelError, ShapeError, Source, SpecNameError,
                      did_you_mean)
from ..ir.core import InputInfo, Program, Value
from ..ir.dims import Dim, shape_str

__all__ = ["Elaborator", "Module", "load_module", "STD_NAME", "STDLIB"]


class Elaborator(Context):
    """Elaborates one model (:meth:`model`) or checks one layer on its own (:meth:`check_layer`).

    Use a new Elaborator for each: it holds the program being built.
    """

    def call(self, e: A.Call, frame: Frame) -> Value:
        if e.func in self.mod.layers:
            return call_layer(self, self.mod.layers[e.func], e, frame)
        fn = BUILTINS.get(e.func)
        if fn is None:
            raise SpecNameError(f"unknown function '{e.func}'", e.func_span,
                                hint=did_you_mean(e.func, set(BUILTINS) | set(self.mod.layers)))
        return CallCtx(self, e, frame, fn).run()

    # -- sizes declared with `dim` ---------------------------------------------------------
    def declare_global_dims(self) -> None:
        """The sizes of every file (what a model sees), then those each file sees: its own and its uses'."""
        declared_in: dict[Source, set[str]] = {}
        for decl in self.mod.dims:
            for b in decl.bindings:
                declared_in.setdefault(decl.span.source, set()).add(b.name)
                prev = self.global_scope.dims.get(b.name)
                if b.value is None:
                    if prev is None:
                        self.global_scope.dims[b.name] = DimInfo(Dim.sym(b.name))
                    continue
                d = dim_expr(b.value, self.global_scope)
                if not d.is_const or d.value <= 0:
                    raise ShapeError(f"a fixed size must be a positive integer, got {d}", b.value.span)
                if prev is not None and prev.value != d:
                    raise ShapeError(f"size '{b.name}' is declared twice with different values", b.span)
                self.global_scope.dims[b.name] = DimInfo(d, f"its declaration at {b.span}")
        for src in self.mod.sources:
            names = set().union(*(declared_in.get(s, set()) for s in self.mod.visible_from(src)))
            self.file_scopes[src] = Scope(dims={n: self.global_scope.dims[n] for n in sorted(names)})

    # -- a layer on its own ----------------------------------------------------------------
    def check_layer(self, layer: A.LayerDef) -> None:
        """Elaborate a layer for every size of its arguments (``specc check`` on layers nobody calls)."""
        self.generic = True  # its parameters may have symbolic shapes
        self.declare_global_dims()
        check_layer_alone(self, layer)

    # -- models ----------------------------------------------------------------------------
    def model(self, m: A.ModelDef) -> Program:
        self.declare_global_dims()
        self.float_dtype = self.forced_dtype or _model_float(m)
        scope = Scope(self.global_scope)
        inputs = [self._input(p, scope) for p in m.inputs]
        frame = Frame(scope, self.root, "")
        outputs, _ret = block(self, m.body, frame, kind="model")
        if "loss" not in scope.values:
            raise ModelError(f"model '{m.name}' has no loss", head_span(m.span, m.name),
                             hint="assign a scalar to `loss`, e.g. loss = cross_entropy(logits, y)")
        loss, loss_span = scope.values["loss"]
        if loss.shape != ():
            raise ShapeError(f"the loss must be a scalar, but it has shape {shape_str(loss.shape)}", loss_span,
                             notes=notes_for(self, frame, [("loss", loss)]), hint="reduce it, e.g. loss = mean(...)")
        if not loss.type.is_float:
            raise DTypeError(f"the loss must be a float, but it is {loss.type}", loss_span,
                             hint="convert it with float(...)")
        names = ["loss"] + [n for n in outputs if n != "loss"]
        outs = [loss] + [scope.values[n][0] for n in names[1:]]
        params = tuple(self.params.values())
        updates = list(self.state_updates.items())
        graph = self.root.build(outs + [v for _, v in updates],
                                inputs=[i.value for i in inputs] + [p.value for p in params])
        fixed = {n: i.value.value for n, i in self.global_scope.dims.items() if i.value.is_const}
        return Program(m.name, graph, tuple(inputs), params, tuple(names), fixed, self.train_items(m), m.span,
                       tuple((n, len(outs) + i) for i, (n, _) in enumerate(updates)))

    def _input(self, p: A.TensorParam, scope: Scope) -> InputInfo:
        if scope.values.get(p.name):
            raise SpecNameError(f"input '{p.name}' is declared twice", p.span,
                                notes=[f"first declared at {scope.values[p.name][1]}"])
        if scope.dim(p.name) is not None:
            raise SpecNameError(f"input '{p.name}' has the name of a size", p.span,
                                hint="sizes and tensors share one namespace: rename the input")
        t = type_ann(self, p.type, scope)
        for d_ast, d in zip(p.type.dims, t.shape):
            if d.is_const and d.value <= 0:
                raise ShapeError(f"a size must be positive, got {d}", d_ast.span)
            check_size(d, d_ast.span)
            for s in d.symbols:
                info = scope.dim(s)
                if info is not None and info.origin is None:
                    info.origin = f"input '{p.name}' at {d_ast.span}"
        v = self.root.add_input(Value(t, p.name))
        self.declared[v.uid] = p.span
        scope.values[p.name] = (v, p.span)
        return InputInfo(p.name, v, p.span)

    # -- training settings -----------------------------------------------------------------
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
                out[it.key] = (static_literal(it.value), it.span)
        return out


def _model_float(m: A.ModelDef) -> str:
    for p in m.inputs:
        if p.type.dtype in ("f32", "f64"):
            return p.type.dtype
    return "f32"


def static_literal(e: A.Expr) -> Any:
    """A training setting's value: a number, a name or string, a boolean, a list, or a call ``cosine(0.1)``."""
    if isinstance(e, A.Num):
        return e.value
    if isinstance(e, A.Neg) and isinstance(e.operand, A.Num):
        return -e.operand.value
    if isinstance(e, (A.Name, A.Str)):
        return e.id if isinstance(e, A.Name) else e.value
    if isinstance(e, A.Bool):
        return e.value
    if isinstance(e, A.ListExpr):
        return [static_literal(i) for i in e.items]
    if isinstance(e, A.Call):
        return {"kind": e.func, "args": [static_literal(a) for a in e.args],
                **{k.name: static_literal(k.value) for k in e.kwargs}}
    raise ArgumentError("a training setting must be a number, a name, a string or a list", e.span)


def check_layers(source: Source, mod: Module | None = None) -> None:
    """Check every layer defined in ``source`` itself for every size of its arguments."""
    mod = mod or load_module(source)
    for layer in mod.layers.values():
        if layer.span.source is source:
            Elaborator(mod).check_layer(layer)
