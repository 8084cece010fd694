"""Lowering rules shared by the CPU and CUDA generators.

In: an equation and the target's emitter.  Out: its code, written against two
emitter methods that each target implements its own way:

* ``phase(title)``: code that may run once every earlier write is visible.  On
  the CPU code runs in order, so nothing; on CUDA a new kernel at top level, or
  a barrier after it inside a recurrence's persistent kernel;
* ``parallel(shape)``: the elements of ``shape``, each independent of the
  others.  On the CPU a loop nest; on CUDA a grid- or block-strided loop.

Only ops whose code is the same on both targets up to these two live here
(data movement: views, copies, concatenation, one-hot); ops whose best form
differs (reductions, softmax and losses, scatter-adds with atomics, products)
keep one rule per target in ``cpu_rules`` and ``cuda_rules``.
"""

from __future__ import annotations

from ..dims import Dim
from ..ir import Eqn, Value
from . import lowering
from .cpu_rules import _index_map

TARGETS = ("cpu", "cuda")


def shared(*ops: str):
    def register(rule):
        for target in TARGETS:
            lowering(target, *ops)(rule)
        return rule

    return register


def _comment_view(e, v: Value) -> None:
    idx = e.index_names(v.type.rank)
    e.lines.comment(f"{e.at(e.define_view(v), idx)} is {e.load(v, idx)}, read in place (no copy)")


@shared("getitem")
def getitem(e, eqn: Eqn) -> None:
    """A view read in place by the code that uses it, else a copy of the selected elements."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    index_map = _index_map(e, x, eqn.params["index"], out)
    if out.uid not in e.materialize:
        e.views[out.uid] = (x, index_map)
        _comment_view(e, out)
        return
    o = e.alloc(out)
    with e.phase("getitem"), e.parallel(out.shape) as oi:
        e.lines(f"{e.at(o, oi)} = {e.load(x, index_map(oi))}")


@shared("getitem_grad")
def getitem_grad(e, eqn: Eqn) -> None:
    """Zeros of the indexed tensor's shape, the cotangent copied in at the index."""
    (dy,), (out,) = eqn.inputs, eqn.outputs
    src = e.name(dy)
    o = e.alloc(out, fill=0.0)
    with e.phase("getitem_grad"):
        index_map = _index_map(e, out, eqn.params["index"], dy)
        with e.parallel(dy.shape) as oi:
            e.lines(f"{e.at(o, index_map(oi))} = {e.at(src, oi)}")


@shared("transpose")
def transpose(e, eqn: Eqn) -> None:
    """out[i0, i1, ...] = x[...] with the input's axis perm[k] read at i_k: in place, or a copy."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    perm = eqn.params["perm"]

    def index_map(idx):
        where = [""] * len(perm)
        for k, ax in enumerate(perm):
            where[ax] = idx[k]
        return where

    if out.uid not in e.materialize:
        e.views[out.uid] = (x, index_map)
        _comment_view(e, out)
        return
    o = e.alloc(out)
    with e.phase("transpose"), e.parallel(out.shape) as oi:
        e.lines(f"{e.at(o, oi)} = {e.load(x, index_map(oi))}")


@shared("concat")
def concat(e, eqn: Eqn) -> None:
    """A copy per part, at its offset along the axis (on CUDA, one kernel for all parts)."""
    (out,) = eqn.outputs
    axis = eqn.params["axis"] % out.type.rank
    o = e.alloc(out)
    offset = Dim.const(0)
    with e.phase("concat"):
        for part in eqn.inputs:
            with e.parallel(part.shape) as idx:
                at = list(idx)
                if offset != Dim.const(0):
                    at[axis] = f"{e.dim_atom(offset)} + {idx[axis]}"
                e.lines(f"{e.at(o, at)} = {e.element(part, idx, part.shape)}")
            offset = offset + part.shape[axis]


@shared("one_hot")
def one_hot(e, eqn: Eqn) -> None:
    """out[..., j] = 1 where labels[...] == j, else 0 (a label outside [0, n) gives a row of zeros)."""
    (labels,), (out,) = eqn.inputs, eqn.outputs
    y, o = e.name(labels), e.alloc(out)
    one, zero = e.lit(1.0, out.dtype), e.lit(0.0, out.dtype)
    with e.phase("one_hot"), e.parallel(out.shape) as oi:
        e.lines(f"{e.at(o, oi)} = {one} if {e.at(y, oi[:-1])} == {oi[-1]} else {zero}")
