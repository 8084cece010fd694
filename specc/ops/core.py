"""The op registry: one object per op, holding everything about it.

An :class:`Op` is registered once, by name, in :data:`REGISTRY`, with its
shape/dtype rule (``infer``), its NumPy reference evaluation (``ref``) and
its VJP (``vjp``: the backward equations, emitted through the builder
context autodiff passes it, so an op never imports the builder), side by
side in the op's module.  An op without a VJP says why at registration
(``no_vjp``): gradient-only ops are first order, ``fused`` is built after
differentiation, and ``scan`` (an op with a body graph) is differentiated by
a rule that autodiff owns (:mod:`specc.transforms.bptt`).  Code generators
keep their lowering rules in their own tables (``lowerings`` by target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import IRError
from ..ir.core import NUMPY_DTYPES, Eqn, TensorType
from ..ir.dims import Dim, Shape, shape_str

# The graph verifier, handed to the per-op check of ops whose params hold a body graph
# (the verifier, in specc.ir.verify, reads this registry: the ops cannot import it).
GraphVerifier = Callable[..., None]  # (graph: Graph, *, where: str) -> None


class ShapeRuleError(Exception):
    """Raised by a shape rule; the elaborator adds the span and each operand's shape."""

    def __init__(self, message: str, hint: str | None = None, operand: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.operand = operand


class DTypeRuleError(ShapeRuleError):
    pass


@dataclass
class RefContext:
    """What the reference evaluation of an op may need besides its inputs."""

    dims: Mapping[str, int]
    seed: int = 0
    training: bool = True
    path: tuple[int, ...] = ()  # loop indices of enclosing recurrences, for per-step random draws
    run_graph: Callable[..., list[np.ndarray]] | None = None

    def dim(self, d: Dim) -> int:
        return d.evaluate(self.dims)

    def shape(self, s: Shape) -> tuple[int, ...]:
        return tuple(self.dim(d) for d in s)

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, stream, *self.path])


@dataclass
class Op:
    name: str
    infer: Callable[[Sequence[TensorType], dict], list[TensorType]]
    ref: Callable[[RefContext, Sequence[np.ndarray], dict], list[np.ndarray]]
    n_inputs: int | None = None  # None: variadic
    elementwise: bool = False
    random: bool = False
    doc: str = ""
    # vjp(g, eqn, cts, needed) -> one cotangent (or None) per input; g: autodiff's GradCtx
    vjp: Callable | None = None
    no_vjp: str | None = None  # why the op has no vjp of its own (it must have one or the other)
    lowerings: dict[str, Callable] = field(default_factory=dict)
    extra_verify: Callable[[Eqn, str, GraphVerifier], None] | None = None

    def verify(self, eqn: Eqn, where: str, verify_graph: GraphVerifier) -> None:
        """The op's own checks of one equation; ``verify_graph`` checks a body graph in its params."""
        if self.n_inputs is not None and len(eqn.inputs) != self.n_inputs:
            raise IRError(f"{where}: {self.name} takes {self.n_inputs} inputs, got {len(eqn.inputs)}", eqn.loc)
        if self.extra_verify:
            self.extra_verify(eqn, where, verify_graph)


REGISTRY: dict[str, Op] = {}


def register(op: Op) -> Op:
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name} registered twice")
    if (op.vjp is None) == (op.no_vjp is None):
        raise ValueError(f"op {op.name}: give either its vjp or, in no_vjp, why it has none")
    REGISTRY[op.name] = op
    return op


# ---- helpers shared by shape rules ------------------------------------------------------
ONE = Dim.const(1)


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeRuleError(f"axis {axis} is out of range for a rank-{rank} tensor")
    return axis % rank if rank else 0


def broadcast(a: Shape, b: Shape) -> Shape:
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else ONE
        db = b[-i] if i <= len(b) else ONE
        if da == db or db == ONE:
            out.append(da)
        elif da == ONE:
            out.append(db)
        else:
            raise ShapeRuleError(
                f"shapes {shape_str(a)} and {shape_str(b)} do not broadcast: dim {da} vs {db} (axis {-i})"
            )
    return tuple(reversed(out))


def same_dtype(types: Sequence[TensorType], opname: str) -> str:
    dts = {t.dtype for t in types}
    if len(dts) > 1:
        raise DTypeRuleError(
            f"'{opname}' mixes dtypes {', '.join(sorted(dts))}",
            hint="convert explicitly with float(x) or int(x)",
        )
    return types[0].dtype


def need_float(t: TensorType, opname: str, operand: int = 0) -> None:
    if not t.is_float:
        raise DTypeRuleError(
            f"'{opname}' needs a float tensor, got {t.dtype}", hint="convert with float(x)", operand=operand
        )


def need_int(t: TensorType, opname: str, operand: int = 0) -> None:
    if t.dtype != "i32":
        raise DTypeRuleError(f"'{opname}' needs an i32 tensor here, got {t.dtype}", operand=operand)


def np_dtype(dtype: str) -> Any:
    return NUMPY_DTYPES[dtype]
