"""Lowering rules shared by the CPU and CUDA generators.

In: an equation and the target's emitter.  Out: its code, written against two
emitter methods that each target implements its own way:

* ``phase(title)``: code that may run once every earlier write is visible.  On
  the CPU code runs in order, so nothing; on CUDA a new kernel at top level, or
  a barrier after it inside a recurrence's persistent kernel;
* ``parallel(shape)``: the elements of ``shape``, each independent of the
  others.  On the CPU a loop nest; on CUDA a grid- or block-strided loop.

and ``add_at(array, index, value)``: ``array[index] += value``, atomically on
CUDA where threads may add to the same element.

Only ops whose code is the same on both targets up to these live here (data
movement, one-hot, pooling and its gradients); ops whose best form differs
(reductions, softmax and losses, products, convolutions, index checks) keep
one rule per target in ``cpu/`` and ``cuda/``.  :data:`RULES` is a rule set
that each target's lowering table includes.
"""

from __future__ import annotations

from contextlib import ExitStack

from ..ir.core import Eqn
from ..ir.dims import Dim
from .base import RuleSet
from .common import index_map as _index_map
from .common import pool_size as _pool_size
from .common import window as _window
from .emitter import Emitter

RULES = RuleSet()


def _view_or_copy(e: Emitter, eqn: Eqn, index_map) -> None:
    """``out[i] = x[index_map(i)]``: a view read in place by the code that uses it, else a copy."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    if out.uid not in e.materialize:
        e.views[out.uid] = (x, index_map)
        idx = e.index_names(out.type.rank)
        e.lines.comment(f"{e.at(e.define_view(out), idx)} is {e.describe(out, idx)}, read in place (no copy)")
        return
    o = e.alloc(out)
    with e.phase(eqn.op), e.parallel(out.shape) as oi:
        e.use(o)
        load = e.load(x, index_map(oi))
        e.use(*getattr(index_map, "names", ()))
        e.lines(f"{e.at(o, oi)} = {load}")


@RULES("getitem")
def getitem(e: Emitter, eqn: Eqn) -> None:
    """A view read in place by the code that uses it, else a copy of the selected elements."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    _view_or_copy(e, eqn, _index_map(e, x, eqn.params["index"], out))


@RULES("getitem_grad")
def getitem_grad(e: Emitter, eqn: Eqn) -> None:
    """Zeros of the indexed tensor's shape, the cotangent copied in at the index."""
    (dy,), (out,) = eqn.inputs, eqn.outputs
    src = e.name(dy)
    o = e.alloc(out, fill=0.0)
    with e.phase("getitem_grad"):
        index_map = _index_map(e, out, eqn.params["index"], dy)
        with e.parallel(dy.shape) as oi:
            e.use(o, *getattr(index_map, "names", ()), src)
            e.lines(f"{e.at(o, index_map(oi))} = {e.at(src, oi)}")


@RULES("transpose")
def transpose(e: Emitter, eqn: Eqn) -> None:
    """out[i0, i1, ...] = x[...] with the input's axis perm[k] read at i_k: in place, or a copy."""
    perm = eqn.params["perm"]
    if e.transpose_view(eqn):  # the CPU: x.T, a view that only BLAS reads
        return

    def index_map(idx):
        where = [""] * len(perm)
        for k, ax in enumerate(perm):
            where[ax] = idx[k]
        return where

    _view_or_copy(e, eqn, index_map)


@RULES("concat")
def concat(e: Emitter, eqn: Eqn) -> None:
    """A copy per part, at its offset along the axis (on CUDA, one kernel for all parts)."""
    (out,) = eqn.outputs
    axis = eqn.params["axis"] % out.type.rank
    o = e.alloc(out)
    offset = Dim.const(0)
    with e.phase("concat"):
        for part in eqn.inputs:
            with e.parallel(part.shape) as idx:
                e.use(o)
                at = list(idx)
                if offset != Dim.const(0):
                    at[axis] = f"{e.dim_atom(offset)} + {idx[axis]}"
                e.lines(f"{e.at(o, at)} = {e.element(part, idx, part.shape)}")
            offset = offset + part.shape[axis]


@RULES("one_hot")
def one_hot(e: Emitter, eqn: Eqn) -> None:
    """out[..., j] = 1 where labels[...] == j, else 0 (a label outside [0, n) gives a row of zeros)."""
    (labels,), (out,) = eqn.inputs, eqn.outputs
    y, o = e.name(labels), e.alloc(out)
    one, zero = e.lit(1.0, out.dtype), e.lit(0.0, out.dtype)
    with e.phase("one_hot"), e.parallel(out.shape) as oi:
        e.use(o, y)
        e.lines(f"{e.at(o, oi)} = {one} if {e.at(y, oi[:-1])} == {oi[-1]} else {zero}")


# ---- arg-reductions and triangular masks (specc.ops.select) ---------------------------------------
@RULES("argmax", "argmin")
def arg_reduce(e: Emitter, eqn: Eqn) -> None:
    """One element per kept position: a loop along the axis keeping the first best (NumPy's ties)."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    axis, keep = eqn.params["axis"] % x.type.rank, eqn.params.get("keepdims")
    src, o = e.name(x), e.alloc(out)
    kept = [ax for ax in range(x.type.rank) if ax != axis]
    best, arg = e.temp("best"), e.temp("arg")
    better = ">" if eqn.op == "argmax" else "<"
    with e.phase(eqn.op), e.parallel([x.shape[ax] for ax in kept]) as oi:
        where = dict(zip(kept, oi))
        e.use(src)
        e.lines(f"{best} = {e.at(src, [where.get(ax, '0') for ax in range(x.type.rank)])}")
        e.lines(f"{arg} = 0")
        with e.loops([x.shape[axis]], "j") as (j,):
            load = e.at(src, [where.get(ax, j) for ax in range(x.type.rank)])
            e.use(src)
            with e.lines.block(f"if {load} {better} {best}:"):
                e.lines(f"{best} = {load}")
                e.lines(f"{arg} = {j}")
        e.use(o)
        e.lines(f"{e.at(o, [where.get(ax, '0') for ax in range(x.type.rank)] if keep else oi)} = {arg}")


@RULES("tri")
def tri(e: Emitter, eqn: Eqn) -> None:
    """out[i, j] = 1 where j - i <= k, else 0."""
    (out,) = eqn.outputs
    o = e.alloc(out)
    one, zero = e.lit(1.0, out.dtype), e.lit(0.0, out.dtype)
    with e.phase("tri"), e.parallel(out.shape) as (i, j):
        e.use(o)
        e.lines(f"{e.at(o, [i, j])} = {one} if {j} - {i} <= {int(eqn.params['k'])} else {zero}")


# ---- pooling: one window per output element ------------------------------------------------------
@RULES("max_pool", "avg_pool")
def pool(e: Emitter, eqn: Eqn) -> None:
    """Max (padding never wins) or mean (padding counts as zeros) over each window."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    p = eqn.params
    xs, o = e.name(x), e.alloc(out)
    acc = e.temp("acc")
    with e.phase(eqn.op), e.parallel(out.shape) as oi:
        e.lines(f"{acc} = {'-np.inf' if eqn.op == 'max_pool' else '0.0'}")
        with ExitStack() as stack:
            us = _window(e, stack, x, [str(k) for k in p["kernel"]], p, (1,) * p["nd"])
            load = e.at(xs, ["i0", "i1", *us])
            e.use(xs)
            if eqn.op == "max_pool":
                with e.lines.block(f"if {load} > {acc}:"):
                    e.lines(f"{acc} = {load}")
            else:
                e.lines(f"{acc} += {load}")
        e.use(o)
        e.lines(f"{e.at(o, oi)} = {acc}" + (f" / {_pool_size(p)}" if eqn.op == "avg_pool" else ""))


@RULES("max_pool_grad")
def max_pool_grad(e: Emitter, eqn: Eqn) -> None:
    """Each window's cotangent goes to its first maximum (a maximum in the padding is dropped)."""
    x, dy = eqn.inputs
    (out,) = eqn.outputs
    p = eqn.params
    xs, ds, o = e.name(x), e.name(dy), e.alloc(out, fill=0.0)
    m = e.temp("m")
    best = [e.temp(f"best{s}") for s in range(p["nd"])]
    with e.phase("max_pool_grad"), e.parallel(dy.shape) as oi:
        e.lines(f"{m} = -np.inf")
        for s, b in enumerate(best):  # tap 0 wins when nothing beats -inf (NumPy's argmax)
            e.lines(f"{b} = i{2 + s}" + (f" * {p['stride'][s]}" if p["stride"][s] != 1 else "")
                    + (f" - {p['padding'][s]}" if p["padding"][s] else ""))
        with ExitStack() as stack:
            us = _window(e, stack, x, [str(k) for k in p["kernel"]], p, (1,) * p["nd"])
            load = e.at(xs, ["i0", "i1", *us])
            e.use(xs)
            with e.lines.block(f"if {load} > {m}:"):
                e.lines(f"{m} = {load}")
                for b, u in zip(best, us):
                    e.lines(f"{b} = {u}")
        inside = " and ".join(f"0 <= {b} < {e.dim(x.shape[2 + s])}" for s, b in enumerate(best))
        with e.lines.block(f"if {inside}:"):
            e.use(o, ds)
            e.add_at(o, ["i0", "i1", *best], e.at(ds, oi))


@RULES("avg_pool_grad")
def avg_pool_grad(e: Emitter, eqn: Eqn) -> None:
    """Each window's cotangent spread evenly over its taps (those in the padding dropped)."""
    (dy,), (out,) = eqn.inputs, eqn.outputs
    p = eqn.params
    ds, o = e.name(dy), e.alloc(out, fill=0.0)
    with e.phase("avg_pool_grad"), e.parallel(dy.shape) as oi:
        with ExitStack() as stack:
            us = _window(e, stack, out, [str(k) for k in p["kernel"]], p, (1,) * p["nd"])
            e.use(o, ds)
            e.add_at(o, ["i0", "i1", *us], f"{e.at(ds, oi)} / {_pool_size(p)}")
