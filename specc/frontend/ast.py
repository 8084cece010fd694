"""The typed AST of a .nn file: one frozen dataclass per grammar rule.

In: nothing (these are plain records; :mod:`specc.frontend.parser` builds them).
Out: nodes that each carry the :class:`~specc.errors.Span` of the text they
came from, so every later stage can point at the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..errors import Span


# ---- expressions ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True, slots=True)
class Str:
    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True, slots=True)
class Kwarg:
    name: str
    value: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple["Expr", ...]
    kwargs: tuple[Kwarg, ...]
    span: Span
    func_span: Span


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # one of + - * / // @ **
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Neg:
    operand: "Expr"
    span: Span


@dataclass(frozen=True, slots=True)
class Slice:
    start: "Expr | None"
    stop: "Expr | None"
    step: "Expr | None"
    span: Span


@dataclass(frozen=True, slots=True)
class EllipsisExpr:
    span: Span


@dataclass(frozen=True, slots=True)
class Index:
    base: "Expr"
    subs: tuple[Union["Expr", Slice], ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TupleExpr:
    """``a, b`` after ``return``: a layer returning several tensors."""

    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Unpacked:
    """One name of ``h, c = f(...)``: the ``index``-th result of ``value``, which is evaluated once.

    The parser turns ``h, c = f(...)`` into one :class:`Assign` per name, each holding an ``Unpacked``
    of the same ``value`` node; ``names`` are all the names, in order (the first names the call's
    parameters).
    """

    value: "Expr"
    index: int
    names: tuple[str, ...]
    span: Span


Expr = Union[Num, Name, Str, Bool, Call, BinOp, Neg, Index, ListExpr, EllipsisExpr, TupleExpr, Unpacked]


# ---- types ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TypeAnn:
    dtype: str | None  # 'f32' | 'f64' | 'i32' | None (the model's float type)
    dims: tuple[Expr, ...]
    span: Span
    dtype_span: Span | None


# ---- statements ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParamDecl:
    name: str
    type: TypeAnn
    init: Expr | None
    span: Span
    state: bool = False  # `state m: [C] = zeros`: not trained, changed only by its `update`


@dataclass(frozen=True, slots=True)
class Update:
    """``update m = expr``: the new value of the state ``m`` after each training step."""

    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Assign:
    name: str
    time: Expr | None  # `h[t] = ...` inside a recurrence
    value: Expr
    span: Span
    target_span: Span


@dataclass(frozen=True, slots=True)
class Output:
    name: str
    value: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class Return:
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Init:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class Recur:
    var: str
    over: Expr
    reverse: bool
    body: tuple["Stmt", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TrainItem:
    key: str
    value: Expr
    span: Span


@dataclass(frozen=True, slots=True)
class TrainBlock:
    items: tuple[TrainItem, ...]
    span: Span


Stmt = Union[ParamDecl, Assign, Output, Return, Init, Recur, TrainBlock, Update]


# ---- definitions ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TensorParam:
    name: str
    type: TypeAnn
    span: Span


@dataclass(frozen=True, slots=True)
class SizeParam:
    keyword: str  # the name used at call sites: hidden=64
    dim: str  # the dim it binds inside the layer: H
    default: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class OptionParam:
    name: str
    default: Expr
    span: Span


LayerParam = Union[TensorParam, SizeParam, OptionParam]


@dataclass(frozen=True, slots=True)
class LayerDef:
    name: str
    params: tuple[LayerParam, ...]
    ret: TypeAnn | None  # the first declared return shape
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span
    rets: tuple[TypeAnn, ...] = ()  # every declared return shape (`-> [B, H], [B, H]`)


@dataclass(frozen=True, slots=True)
class ModelDef:
    name: str
    inputs: tuple[TensorParam, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class DimBinding:
    name: str
    value: Expr | None
    span: Span


@dataclass(frozen=True, slots=True)
class DimDecl:
    bindings: tuple[DimBinding, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Use:
    path: str
    span: Span


Item = Union[DimDecl, Use, LayerDef, ModelDef, TrainBlock]


@dataclass(frozen=True, slots=True)
class Module:
    items: tuple[Item, ...]
    span: Span
