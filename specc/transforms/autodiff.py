"""Reverse-mode automatic differentiation on the IR.

In: a checked :class:`~specc.ir.core.Program` (forward graph).
Out: a :class:`GradProgram`: one ordinary IR graph computing the forward
outputs and then the gradient of the loss with respect to every parameter
(and, on request, every float input).  The backward part is built from IR
ops by each op's ``vjp`` rule (given to the op at registration, next to its
shape rule, in :mod:`specc.ops`), so the same verifier, printer, passes and
code generators handle it.  Ops whose params hold a body graph are
differentiated by rules this module owns (:data:`BODY_RULES`): recurrences by
backpropagation through time, the VJP of ``scan`` being another ``scan``
running in the opposite direction (:func:`specc.transforms.bptt.scan_vjp`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from ..errors import SpeccError, Span
from ..ir.builder import GraphBuilder
from ..ir.core import Eqn, Graph, Program, TensorType, Value, prune
from ..ir.dims import Dim, Shape, numel
from ..ops import REGISTRY, ShapeRuleError
from .bptt import merge_scans, scan_vjp


class MissingRuleError(SpeccError):
    pass


class GradCtx:
    """What a VJP rule uses to emit backward equations (all tagged with the forward eqn's span)."""

    def __init__(self, builder: GraphBuilder, loc: Span | None = None):
        self.b = builder
        self.loc = loc

    def emit(self, op: str, inputs: Sequence[Value], **params) -> Value:
        try:
            return self.b.emit1(op, list(inputs), params, self.loc)
        except ShapeRuleError as e:  # a VJP rule that builds an ill-typed graph is a compiler bug
            raise AssertionError(f"VJP rule emitted a bad '{op}': {e.message}") from None

    def emit_many(self, op: str, inputs: Sequence[Value], **params) -> list[Value]:
        return self.b.emit(op, list(inputs), params, self.loc)

    # -- for rules of ops with a body, which differentiate the body into a builder of their own
    def on(self, builder: GraphBuilder) -> GradCtx:
        """The same context emitting into ``builder``."""
        return GradCtx(builder, self.loc)

    def backprop(self, eqns: Sequence[Eqn], seeds: dict[int, Value], active: set[int]) -> dict[int, Value]:
        """:func:`backprop` of ``eqns`` into this context's builder."""
        return backprop(self.b, eqns, seeds, active)

    # -- small helpers used by many rules ------------------------------------------------
    def const(self, value: float, dtype: str) -> Value:
        return self.emit("full", [], shape=(), value=float(value), dtype=dtype)

    def zeros(self, t: TensorType) -> Value:
        return self.emit("full", [], shape=tuple(t.shape), value=0.0, dtype=t.dtype)

    def add(self, a: Value, b: Value) -> Value:
        return self.emit("add", [a, b])

    def sub(self, a: Value, b: Value) -> Value:
        return self.emit("sub", [a, b])

    def mul(self, a: Value, b: Value) -> Value:
        return self.emit("mul", [a, b])

    def div(self, a: Value, b: Value) -> Value:
        return self.emit("div", [a, b])

    def neg(self, a: Value) -> Value:
        return self.emit("neg", [a])

    def scale(self, a: Value, k: float) -> Value:
        return self.mul(a, self.const(k, a.dtype))

    def size(self, d: Dim, dtype: str) -> Value:
        return self.const(d.value, dtype) if d.is_const else self.emit("size", [], dim=d, dtype=dtype)

    def reshape(self, x: Value, shape: Shape) -> Value:
        return x if tuple(x.shape) == tuple(shape) else self.emit("reshape", [x], shape=tuple(shape))

    def broadcast_to(self, x: Value, shape: Shape) -> Value:
        if tuple(x.shape) == tuple(shape):
            return x
        return self.add(x, self.emit("full", [], shape=tuple(shape), value=0.0, dtype=x.dtype))

    def sum_to(self, x: Value, shape: Shape) -> Value:
        """Undo NumPy broadcasting: sum x over the axes it was broadcast along, to ``shape``."""
        shape = tuple(shape)
        if tuple(x.shape) == shape:
            return x
        lead = len(x.shape) - len(shape)
        axes = list(range(lead))
        for i, d in enumerate(shape):
            if d == Dim.const(1) and x.shape[lead + i] != d:
                axes.append(lead + i)
        s = self.emit("sum", [x], axes=tuple(axes), keepdims=True) if axes else x
        return self.reshape(s, shape)

    def matmul(self, a: Value, b: Value) -> Value:
        return self.emit("matmul", [a, b])

    def transpose(self, x: Value, perm: Iterable[int]) -> Value:
        return self.emit("transpose", [x], perm=tuple(perm))

    def numel(self, shape: Shape, dtype: str) -> Value:
        return self.size(numel(shape), dtype)


# VJP rules of the ops whose params hold a body graph: they differentiate the body with this
# module's backprop, so they are kept here (as JAX keeps its per-transformation rule tables)
# rather than on the op, which would make the ops import autodiff.
BODY_RULES = {"scan": scan_vjp}


def vjp_rule(op: str) -> Callable | None:
    """The VJP rule of ``op``, or None."""
    return BODY_RULES.get(op) or REGISTRY[op].vjp


def backprop(ctx_builder: GraphBuilder, eqns: Sequence[Eqn], seeds: dict[int, Value],
             active: set[int]) -> dict[int, Value]:
    """Run VJP rules over ``eqns`` in reverse; returns cotangents keyed by value uid.

    ``active``: uids of values that depend on something being differentiated
    (extended here through the equations); rules are only run where needed.
    """
    active = set(active)
    for e in eqns:
        if any(v.uid in active for v in e.inputs) and not REGISTRY[e.op].random:
            active.update(v.uid for v in e.outputs if v.type.is_float)
    cts: dict[int, Value] = dict(seeds)
    for e in reversed(eqns):
        outs = [cts.get(v.uid) for v in e.outputs]
        if all(o is None for o in outs):
            continue
        needed = [v.uid in active and v.type.is_float for v in e.inputs]
        if not any(needed):
            continue
        rule = vjp_rule(e.op)
        if rule is None:
            raise MissingRuleError(f"no gradient rule for op '{e.op}'", e.loc,
                                   hint="this op cannot be differentiated yet")
        g = GradCtx(ctx_builder, e.loc)
        in_cts = rule(g, e, outs, needed)
        for v, ct, need in zip(e.inputs, in_cts, needed):
            if ct is None or not need:
                continue
            if ct.type != v.type:
                raise AssertionError(f"VJP of {e.op} gives {ct.type} for an input of type {v.type}")
            prev = cts.get(v.uid)
            cts[v.uid] = ct if prev is None else g.add(prev, ct)
            _name_cotangent(ctx_builder, v, cts[v.uid])
    return cts


def _name_cotangent(b: GraphBuilder, v: Value, ct: Value) -> None:
    """Call the cotangent of ``h`` ``d_h`` (readable backward IR and generated code)."""
    if v.name and ct.name is None and b.owns(ct) and not any(ct is i for i in b.inputs):
        object.__setattr__(ct, "name", "d_" + v.name)  # a fresh temporary, not yet in a published graph


@dataclass(frozen=True)
class GradProgram:
    """``graph.outputs`` = the forward outputs, then one gradient per ``wrt`` value (same order)."""

    program: Program
    graph: Graph
    wrt: tuple[str, ...]  # parameter names, then input names when gradients of inputs were asked for
    n_forward: int


def value_and_grad(prog: Program, *, wrt_inputs: bool = False) -> GradProgram:
    fwd = prog.graph
    b = GraphBuilder()
    for v in fwd.inputs:
        b.add_input(v)
    b.extend(fwd.eqns)
    targets = [(p.name, p.value) for p in prog.params]
    if wrt_inputs:
        targets += [(i.name, i.value) for i in prog.inputs if i.value.type.is_float]
    loss = fwd.outputs[0]
    seed = GradCtx(b, prog.loc).const(1.0, loss.dtype)
    cts = backprop(b, fwd.eqns, {loss.uid: seed}, {v.uid for _, v in targets})
    grads = []
    for name, v in targets:
        ct = cts.get(v.uid)
        grads.append(ct if ct is not None else GradCtx(b, prog.loc).zeros(v.type))
    graph = b.build(list(fwd.outputs) + grads)
    graph = prune(merge_scans(graph))  # each recurrence runs forward once, saving what BPTT reads
    return GradProgram(prog, graph, tuple(n for n, _ in targets), len(fwd.outputs))
