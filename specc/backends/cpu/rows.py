"""Row independence of a recurrence: may its batch be split across threads?

In: a ``scan`` equation.
Out: a :class:`RowPlan` when every step treats the rows of the batch (the
leading axis of its states) independently, else None.

A recurrence runs step after step, but in most networks row ``b`` of every
state depends only on row ``b`` of the inputs: ``h[t] = tanh(x[t] @ W +
h[t-1] @ U + b)`` mixes features, never batch rows.  Then the whole loop
over ``t`` can run on each block of rows separately, one block per thread,
with no synchronisation between steps (what the CPU generator does; a GPU
generator could give each block of rows its own thread block).

The check is a forward walk over the body that gives each value one of two
kinds: ROW (axis 0 is the batch axis, and the batch size appears nowhere
else in its shape) or SHARED (the batch size does not appear in its shape:
weights, biases, constants).  Each op has a rule; an op without one, or a
value fitting neither kind, makes the recurrence sequential.  The rules are
conservative: an op is row-wise only when it never reads across axis 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...ir.dims import Dim
from ...ir.core import Eqn, Graph, Value
from ...ops import REGISTRY

ROW, SHARED = "row", "shared"


@dataclass(frozen=True)
class RowPlan:
    batch: str  # the dim symbol of the batch axis (axis 0 of every state)
    inputs: tuple[str, ...]  # ROW or SHARED per body input


class _Sequential(Exception):
    pass


def row_plan(eqn: Eqn) -> RowPlan | None:
    """How the body of scan ``eqn`` splits by rows, or None if it does not."""
    body: Graph = eqn.params["body"]
    if not body.outputs or any(v.type.rank == 0 for v in body.outputs):
        return None
    batch = body.outputs[0].shape[0].as_symbol()
    if batch is None or eqn.params["length"].symbols & {batch}:
        return None
    try:
        kinds: dict[int, str] = {}
        for v in body.inputs:
            kinds[v.uid] = _kind_of_shape(v, batch)
        for e in body.eqns:
            for v, k in zip(e.outputs, _rule(e, [kinds[i.uid] for i in e.inputs], batch)):
                kinds[v.uid] = k
        if any(kinds[v.uid] != ROW for v in body.outputs):
            return None
    except _Sequential:
        return None
    return RowPlan(batch, tuple(kinds[v.uid] for v in body.inputs))


def _kind_of_shape(v: Value, batch: str) -> str:
    shape = v.shape
    if not any(batch in d.symbols for d in shape):
        return SHARED
    if shape and shape[0] == Dim.sym(batch) and not any(batch in d.symbols for d in shape[1:]):
        return ROW
    raise _Sequential


def _rule(e: Eqn, kinds: list[str], batch: str) -> list[str]:
    """The kinds of ``e``'s outputs given its inputs' kinds (raises _Sequential when unsure)."""
    outs = [_kind_of_shape(v, batch) for v in e.outputs]
    if ROW not in kinds:  # computed from shared values only: row-free unless it makes a batch axis
        if e.op == "size" and batch in e.params["dim"].symbols:
            raise _Sequential  # the batch size inside a block is the block's, not the batch's
        if e.op == "scan":
            raise _Sequential
        return outs
    op = REGISTRY[e.op]
    rank = e.outputs[0].type.rank
    rows_ok = all(k == SHARED or v.type.rank == rank for v, k in zip(e.inputs, kinds))
    if (op.elementwise or e.op in ("fused", "cast")) and rows_ok and outs == [ROW] * len(outs):
        return outs
    if e.op == "matmul":
        a, b = kinds
        if a == ROW and b == SHARED and e.inputs[0].type.rank == 2:
            return [ROW]
    elif e.op == "getitem":
        index = e.params["index"]
        if not index or _full_slice(index[0], batch):
            return outs if outs == [ROW] else _fail()
    elif e.op == "concat":
        if e.params["axis"] != 0 and all(k == ROW for k in kinds) and outs == [ROW]:
            return outs
    elif e.op == "transpose":
        if e.params["perm"][0] == 0 and outs == [ROW]:
            return outs
    elif e.op == "reshape":
        if outs == [ROW]:  # the leading axis kept: C order keeps each row's elements together
            return outs
    elif e.op in ("sum", "mean", "max"):
        if 0 not in e.params["axes"] and outs == [ROW]:
            return outs
    elif e.op in ("softmax", "log_softmax"):
        if e.params["axis"] != 0:
            return outs
    raise _Sequential


def _full_slice(entry: tuple, batch: str) -> bool:
    if entry[0] != "slice" or entry[3] not in (1, None):
        return False
    lo, hi = entry[1], entry[2]
    return (lo is None or lo == Dim.const(0)) and (hi is None or hi == Dim.sym(batch))


def _fail() -> list[str]:
    raise _Sequential


__all__ = ["ROW", "SHARED", "RowPlan", "row_plan"]
