"""The state of one elaboration: scopes, frames and the program being built.

In: a loaded :class:`~specc.frontend.loader.Module` and the float dtype asked for.
Out: a :class:`Context` that the other front-end modules read and extend:
the sizes declared at the top of each file (a layer sees those of its own
file and of the files it uses, a model those of every file), the root graph
builder, the parameters declared so far and where each model input or
parameter is declared (for notes in messages).

A :class:`Frame` is what one block being elaborated knows: its scope, the
builder it emits into (a recurrence body has its own), the prefix of its
parameters' names and the chain of layer calls that led to it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import ast as A
from .loader import Module
from ..errors import Source, Span
from ..ir.builder import GraphBuilder
from ..ir.core import ParamInfo, Value
from ..ir.dims import Dim


NESTING_MARGIN = 200  # Python frames kept free: nesting deeper than the interpreter allows is a spec error


def stack_room() -> int:
    """How many more Python frames the interpreter allows here (the elaborator recurses over the spec)."""
    depth, f = 0, sys._getframe()
    while f is not None:
        depth, f = depth + 1, f.f_back
    return sys.getrecursionlimit() - depth


ROOM = 1500  # frames the elaborator may use beyond its caller's: about 4 a level of nesting, the parser allows 100


@contextmanager
def recursion_room(frames: int = ROOM) -> Iterator[None]:
    """Raise Python's recursion limit (for this call only) so that the elaborator has ``frames`` frames
    beyond its caller's, however deep the caller already is; the nesting the parser accepts then always
    elaborates, and the NESTING_MARGIN guard stays the last line of defence."""
    old = sys.getrecursionlimit()
    need = sys.getrecursionlimit() - stack_room() + frames
    if need > old:
        sys.setrecursionlimit(need)
    try:
        yield
    finally:
        if need > old:
            sys.setrecursionlimit(old)


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

    def dim_names(self) -> set[str]:
        out: set[str] = set()
        s: Scope | None = self
        while s is not None:
            out |= set(s.dims)
            s = s.parent
        return out

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


# A layer call on the stack: the layer's name and the call's span (None: the layer is checked on its own).
CallSite = tuple[str, "Span | None"]


@dataclass
class Frame:
    scope: Scope
    builder: GraphBuilder
    prefix: str  # parameter name prefix: "" in a model, "h." inside the lstm called for h
    recur: RecurCtx | None = None
    layer_stack: tuple[CallSite, ...] = ()
    stmt_target: str | None = None
    primary_call: A.Call | None = None
    call_counts: dict[str, int] = field(default_factory=dict)
    sharing: bool = False  # inside a call with share=...: parameters are looked up, not declared


class Context:
    """Program-wide state of an elaboration, and the one entry point that the modules below call back into.

    ``generic`` is set when a layer is checked on its own, for every size: its
    parameters may then have symbolic shapes.
    """

    def __init__(self, module: Module, float_dtype: str | None = None, *, generic: bool = False):
        self.mod = module
        self.float_dtype = float_dtype or "f32"
        self.forced_dtype = float_dtype
        self.generic = generic
        self.root = GraphBuilder()
        self.params: dict[str, ParamInfo] = {}
        self.param_calls: dict[str, Span] = {}
        self.streams = 0
        self.global_scope = Scope()  # the sizes of every file: what a model sees
        self.file_scopes: dict[Source, Scope] = {}  # the sizes each file sees: its own and those of its uses
        self.declared: dict[int, Span] = {}  # uid of a model input or parameter -> its declaration
        self.nesting = 0  # expressions being evaluated, one inside the other (layer bodies included)
        self.unpacked: dict[tuple[int, int], tuple] = {}  # (scope id, call node id) -> (scope, node, results)
        self.state_updates: dict[str, Value] = {}  # state's full name -> its value after a training step
        self.layer_results: dict[int, tuple[str, str]] = {}  # uid of a layer call's result -> (layer, prefix)

    def call(self, e: A.Call, frame: Frame) -> Value:
        """Elaborate a call of a layer or a builtin (provided by the coordinator, :mod:`.elaborate`)."""
        raise NotImplementedError

    def file_scope(self, source: Source | None) -> Scope:
        """The sizes declared at the top of a file and of the files it uses (a layer's outermost scope)."""
        if source is None:
            return self.global_scope
        scope = self.file_scopes.get(source)
        if scope is None:
            return Scope()
        return scope
