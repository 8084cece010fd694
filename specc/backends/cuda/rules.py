"""The CUDA lowering rules: one function per op, emitting the op's kernels through a :class:`CudaEmitter`.

In: an equation whose inputs are bound (device arrays, inlined literals, views, or scalar locals of
the current loop), top level or inside a recurrence's persistent kernel.
Out: kernel code that binds its outputs, and host code (allocations, launches) that runs it.

Each rule says what ONE output element costs: it opens a phase (:meth:`CudaEmitter.phase`: a kernel
at top level, a barrier-separated step inside a persistent kernel) and shares the output's elements
among the threads (:meth:`CudaEmitter.parallel`).  It takes its operands' names on the host
(:meth:`~specc.backends.emitter.Emitter.peek`) and says where the kernel reads them
(:meth:`~specc.backends.emitter.Emitter.use`): a kernel's arguments are its def/use, not its text.
So one rule serves both a top-level kernel and a recurrence body.  Scatters (``take_grad``,
``max_pool_grad``, ``conv_grad_input``) zero their output in one phase and add with
``cuda.atomic.add`` in the next.

Elementwise ops share the target-neutral scalar templates (:data:`specc.backends.common.SCALAR`);
math goes through ``math.*`` (numba-cuda has no NumPy ufuncs in kernels).  The window arithmetic of
convolutions and pools, and getitem's index maps, are :mod:`specc.backends.common`'s, and the rules
both targets share are in :mod:`specc.backends.loops`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack

from ...ir.core import Eqn, Value
from ...ir.scan import split_inputs
from ...ops import REGISTRY
from ..base import RuleSet
from ..common import (CONSTANT, accumulate, constant_value, dt, elementwise_with, fused_with, helper_call, paren, position,
                      reduce_result, row_max, taps, window)
from ..common import SCALAR as COMMON_SCALAR
from .emitter import CudaEmitter

ScalarRule = Callable[[CudaEmitter, Eqn, Sequence[str]], str]
RULES = RuleSet()


# ---- elementwise -------------------------------------------------------------------------------
def _math(fn: str) -> ScalarRule:
    return lambda e, q, a: f"math.{fn}({a[0]})"


def _elu(e: CudaEmitter, q: Eqn, a: Sequence[str]) -> str:
    return f"({a[0]} if {a[0]} > 0 else {e.lit(q.params.get('alpha', 1.0), dt(q))} * math.expm1({a[0]}))"


SCALAR: dict[str, ScalarRule] = {
    **COMMON_SCALAR,  # neutral templates: operators, max/min/abs, literals, casts
    "exp": _math("exp"),
    "log": _math("log"),
    "sqrt": _math("sqrt"),
    "tanh": _math("tanh"),
    "elu": _elu,
    "sigmoid": helper_call("sigmoid"),
    "softplus": helper_call("softplus"),
    "gelu": helper_call("gelu"),
    "sign": helper_call("sign"),
}


RULES(*(name for name in SCALAR if name not in CONSTANT))(elementwise_with(SCALAR))  # one thread per element


@RULES(*CONSTANT)
def constant(e: CudaEmitter, eqn: Eqn) -> None:
    """A literal where only elementwise code reads it; else an array."""
    (out,) = eqn.outputs
    value = constant_value(e, SCALAR, eqn)
    if out.uid not in e.materialize:
        e.consts[out.uid] = value
        e.lines.comment(f"inlined where read: {value}")
        return
    o = e.alloc(out)
    with e.phase(eqn.op), e.parallel(out.shape) as idx:
        e.use(o, *e.const_uses[out.uid])
        e.lines(f"{e.at(o, idx)} = {value}")


RULES("fused")(fused_with(SCALAR))  # one thread per element of the domain, the body in its registers


# ---- matmul --------------------------------------------------------------------------------------
@RULES("matmul")
def matmul(e: CudaEmitter, eqn: Eqn) -> None:
    """Top level, b of rank <= 2: the tiled gemm on 2-D views.  Else (batched, or in a recurrence): a dot
    product per output element."""
    a, b = eqn.inputs
    (out,) = eqn.outputs
    if not e.in_kernel and b.type.rank <= 2:
        _gemm_launch(e, a, b, out)
        return
    x, w, o = e.peek(a), e.peek(b), e.alloc(out)
    acc = e.temp("acc")
    with e.phase("matmul"), e.parallel(out.shape) as idx:
        if b.type.rank == 1:
            xi, wi = [*idx, "j0"], ["j0"]
        elif a.type.rank == 1:
            xi, wi = ["j0"], ["j0", idx[-1]]
        elif b.type.rank == 2:
            xi, wi = [*idx[:-1], "j0"], ["j0", idx[-1]]
        else:
            xi, wi = [*idx[:-1], "j0"], [*idx[:-2], "j0", idx[-1]]
        e.lines(f"{acc} = {e.lit(0.0, out.dtype)}")
        with e.lines.block(f"for j0 in range({e.dim(a.shape[-1])}):"):
            e.use(x, w)
            e.lines(f"{acc} += {e.at(x, xi)} * {e.at(w, wi)}")
        e.use(o)
        e.lines(f"{e.at(o, idx)} = {acc}")


def _gemm_launch(e: CudaEmitter, a: Value, b: Value, out: Value) -> None:
    x, w, o = e.name(a), e.name(b), e.alloc(out)
    k = e.dim(a.shape[-1])
    rows = e.count(a.shape[:-1])
    cols = e.dim(b.shape[1]) if b.type.rank == 2 else "1"
    x2 = _view(e, x, f"({rows}, {k})", a.type.rank != 2)
    w2 = _view(e, w, f"({k}, {cols})", b.type.rank != 2)
    o2 = _view(e, o, f"({rows}, {cols})", out.type.rank != 2)
    gemm = e.helper_kernel("gemm", out.dtype)
    e.lines(f"{gemm}[gemm_grid({rows}, {cols}), (TILE, TILE)]({x2}, {w2}, {o2})")


def _view(e: CudaEmitter, array: str, shape: str, needed: bool) -> str:
    if not needed:
        return array
    name = e.temp(f"{array}_2d")
    e.lines(f"{name} = {array}.reshape({shape})")
    return name


# ---- reductions ------------------------------------------------------------------------------------
@RULES("sum", "mean", "max")
def reduce(e: CudaEmitter, eqn: Eqn) -> None:
    """One thread per kept element, looping over the reduced axes (float64 accumulator for floats)."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    axes, keep = set(eqn.params["axes"]), eqn.params["keepdims"]
    src, o = e.peek(x), e.alloc(out)
    kept = [ax for ax in range(x.type.rank) if ax not in axes]
    reduced = [ax for ax in range(x.type.rank) if ax in axes]
    acc = e.temp("acc")
    with e.phase(eqn.op), e.parallel([x.shape[ax] for ax in kept]) as oi:
        ri = e.index_names(len(reduced), "j")
        where = {ax: i for ax, i in zip(kept, oi)} | {ax: j for ax, j in zip(reduced, ri)}
        load = e.at(src, [where[ax] for ax in range(x.type.rank)])
        dst = e.at(o, [where[ax] if ax in kept else "0" for ax in range(x.type.rank)] if keep else oi)
        if eqn.op == "max":
            e.lines(f"{acc} = {'-np.inf' if x.type.is_float else '-2147483648'}")
        else:
            e.lines(f"{acc} = {'0.0' if x.type.is_float else '0'}")
        with e.loops([x.shape[ax] for ax in reduced], "j"):
            e.use(src)
            accumulate(e, eqn, acc, load)
        e.use(o)
        reduce_result(e, eqn, dst, acc, x, reduced)


# ---- softmax family and losses -------------------------------------------------------------------
def _row_logsumexp(e: CudaEmitter, lse: str, m: str, s: str, n: str, load: str) -> None:
    e.lines(f"{s} = 0.0")
    with e.lines.block(f"for j0 in range({n}):"):
        e.lines(f"{s} += math.exp({load} - {m})")
    e.lines(f"{lse} = {m} + math.log({s})")


@RULES("softmax", "log_softmax")
def softmax(e: CudaEmitter, eqn: Eqn) -> None:
    """One thread per row along the axis: the max, then exp(x - max) summed in float64."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    axis = eqn.params["axis"]
    src, o = e.peek(x), e.alloc(out)
    m, s = e.temp("m"), e.temp("s")
    with e.phase(eqn.op), e.parallel([d for ax, d in enumerate(x.shape) if ax != axis]) as oi:
        n = e.dim(x.shape[axis])
        idx = [*oi[:axis], "j0", *oi[axis:]]
        load, store = e.at(src, idx), e.at(o, idx)
        e.use(src, o)  # o: first in the stores below
        row_max(e, m, n, load)
        if eqn.op == "softmax":
            e.lines(f"{s} = 0.0")
            with e.lines.block(f"for j0 in range({n}):"):
                e.lines(f"{s} += math.exp({load} - {m})")
            with e.lines.block(f"for j0 in range({n}):"):
                e.lines(f"{store} = math.exp({load} - {m}) / {s}")
        else:
            lse = e.temp("lse")
            _row_logsumexp(e, lse, m, s, n, load)
            with e.lines.block(f"for j0 in range({n}):"):
                e.lines(f"{store} = {load} - {lse}")


@RULES("cross_entropy")
def cross_entropy(e: CudaEmitter, eqn: Eqn) -> None:
    """mean over rows of logsumexp(z) - z[label]: one thread sums the rows (a negative label counts from the end)."""
    logits, labels = eqn.inputs
    (out,) = eqn.outputs
    z, y, o = e.peek(logits), e.peek(labels), e.alloc(out)
    total, m, s, k, lse = e.temp("total"), e.temp("m"), e.temp("s"), e.temp("label"), e.temp("lse")
    with e.phase(eqn.op), e.parallel(()):
        e.lines(f"{total} = 0.0")
        with e.loops(labels.shape) as oi:
            c = e.dim(logits.shape[-1])
            row = e.at(z, [*oi, "j0"])
            e.use(z, y, o)
            row_max(e, m, c, row)
            _row_logsumexp(e, lse, m, s, c, row)
            e.lines(f"{k} = {e.at(y, oi)}")
            with e.lines.block(f"if {k} < 0:"):
                e.lines(f"{k} += {c}")
            e.lines(f"{total} += {lse} - {e.at(z, [*oi, k])}")
        e.lines(f"{o}[0] = {total} / {paren(e.count(labels.shape))}")


@RULES("bce_logits")
def bce_logits(e: CudaEmitter, eqn: Eqn) -> None:
    """mean of max(z, 0) - z*y + log1p(e^-|z|): one thread sums."""
    logits, targets = eqn.inputs
    (out,) = eqn.outputs
    z, y, o = e.peek(logits), e.peek(targets), e.alloc(out)
    total, zv = e.temp("total"), e.temp("z")
    zero = e.lit(0.0, logits.dtype)
    with e.phase(eqn.op), e.parallel(()):
        e.lines(f"{total} = 0.0")
        with e.loops(logits.shape) as idx:
            e.use(z, y, o)
            e.lines(f"{zv} = {e.at(z, idx)}")
            e.lines(f"{total} += max({zv}, {zero}) - {zv} * {e.at(y, idx)} + math.log1p(math.exp(-abs({zv})))")
        e.lines(f"{o}[0] = {total} / {paren(e.count(logits.shape))}")


# ---- convolution and pooling ---------------------------------------------------------------------
# Names as in the CPU rules: i0 (batch), i1 (channel), i2, ... the output position; j0, ... inner loops;
# k0, ... the taps of a window; u0, ... input positions.
@RULES("conv")
def conv(e: CudaEmitter, eqn: Eqn) -> None:
    """One thread per output element: out[b, o, p] = sum over c, k of x[b, c, p*stride + k*dil - pad] * w[o, c, k]."""
    x, w = eqn.inputs
    (out,) = eqn.outputs
    xs, ws, o = e.peek(x), e.peek(w), e.alloc(out)
    acc = e.temp("acc")
    kernel = [e.dim(d) for d in w.shape[2:]]
    with e.phase("conv"), e.parallel(out.shape) as oi:
        e.lines(f"{acc} = 0.0")
        with ExitStack() as stack:
            stack.enter_context(e.lines.block(f"for j0 in range({e.dim(x.shape[1])}):"))
            us = window(e, stack, x, kernel, eqn.params, eqn.params["dilation"])
            e.use(xs, ws)
            e.lines(f"{acc} += {e.at(xs, ['i0', 'j0', *us])} * {e.at(ws, ['i1', 'j0', *taps(kernel)])}")
        e.use(o)
        e.lines(f"{e.at(o, oi)} = {acc}")


@RULES("conv_grad_input", "conv_transpose")
def conv_grad_input(e: CudaEmitter, eqn: Eqn) -> None:
    """Zeros, then one thread per element of dy adding dy[b, o, p] * w[o, c, k] into dx atomically
    (``conv_transpose(x, w)``: the same with x as dy)."""
    dy, w = eqn.inputs
    (out,) = eqn.outputs
    ds, ws, o = e.peek(dy), e.peek(w), e.alloc(out, fill=0.0)
    kernel = [e.dim(d) for d in w.shape[2:]]
    with e.phase("conv_grad_input"), e.parallel(dy.shape) as oi, ExitStack() as stack:
        stack.enter_context(e.lines.block(f"for j0 in range({e.dim(w.shape[1])}):"))
        us = window(e, stack, out, kernel, eqn.params, eqn.params["dilation"])
        e.use(o, ds, ws)
        e.lines(f"cuda.atomic.add({o}, ({', '.join(['i0', 'j0', *us])}), "
                f"{e.at(ds, oi)} * {e.at(ws, ['i1', 'j0', *taps(kernel)])})")


@RULES("conv_grad_weight")
def conv_grad_weight(e: CudaEmitter, eqn: Eqn) -> None:
    """One thread per weight: sum over b and the output positions of x[b, c, p*stride + k*dil - pad] * dy[b, o, p]."""
    x, dy = eqn.inputs
    (out,) = eqn.outputs
    p = eqn.params
    xs, ds, o = e.peek(x), e.peek(dy), e.alloc(out)
    acc = e.temp("acc")
    with e.phase("conv_grad_weight"), e.parallel(out.shape) as oi:
        e.lines(f"{acc} = 0.0")
        with ExitStack() as stack:
            stack.enter_context(e.lines.block(f"for j0 in range({e.dim(x.shape[0])}):"))
            us = []
            for s in range(p["nd"]):
                pos = f"j{1 + s}"
                stack.enter_context(e.lines.block(f"for {pos} in range({e.dim(dy.shape[2 + s])}):"))
                us.append(position(e, stack, s, pos, f"i{2 + s}", p["stride"][s], p["dilation"][s],
                                    p["padding"][s], x.shape[2 + s]))
            positions = [f"j{1 + s}" for s in range(p["nd"])]
            e.use(xs, ds)
            e.lines(f"{acc} += {e.at(xs, ['j0', 'i1', *us])} * {e.at(ds, ['j0', 'i0', *positions])}")
        e.use(o)
        e.lines(f"{e.at(o, oi)} = {acc}")


# ---- lookup, indexing, layout ----------------------------------------------------------------------
def _wrap(e: CudaEmitter, k: str, n: str) -> None:
    with e.lines.block(f"if {k} < 0:"):
        e.lines(f"{k} += {n}")


@RULES("take")
def take(e: CudaEmitter, eqn: Eqn) -> None:
    """One thread per output element: out[i..., j] = table[ids[i...], j]."""
    table, ids = eqn.inputs
    (out,) = eqn.outputs
    t, i, o = e.peek(table), e.peek(ids), e.alloc(out)
    k = e.temp("row")
    with e.phase("take"), e.parallel(out.shape) as oi:
        e.use(i)
        e.lines(f"{k} = {e.at(i, oi[:-1])}")
        _wrap(e, k, e.dim(table.shape[0]))
        e.use(o, t)
        e.lines(f"{e.at(o, oi)} = {t}[{k}, {oi[-1]}]")


@RULES("take_grad")
def take_grad(e: CudaEmitter, eqn: Eqn) -> None:
    """Zeros [rows, ...], then one thread per element of dy: out[ids[i], ...] += dy[i, ...] (atomically)."""
    ids, dy = eqn.inputs
    (out,) = eqn.outputs
    i, d, o = e.peek(ids), e.peek(dy), e.alloc(out, fill=0.0)
    k = e.temp("row")
    lead = ids.type.rank
    with e.phase("take_grad"), e.parallel(dy.shape) as di:
        e.use(i)
        e.lines(f"{k} = {e.at(i, di[:lead])}")
        _wrap(e, k, e.dim(out.shape[0]))
        e.use(o, d)
        e.lines(f"cuda.atomic.add({o}, ({', '.join([k, *di[lead:]])},), {e.at(d, di)})")


@RULES("reshape")
def reshape(e: CudaEmitter, eqn: Eqn) -> None:
    """The same elements (every array here is C-contiguous): a reshaped view, on the host or in the kernel."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    src = e.name(x)
    e.lines(f"{e.define(out)} = {src}.reshape({e.dev_shape(out.shape)})")


# ---- recurrences: one persistent kernel --------------------------------------------------------------
@RULES("scan")
def scan(e: CudaEmitter, eqn: Eqn) -> None:
    """One single-block kernel looping over the steps; each body equation a block-strided loop and a barrier.

    The body's temporaries are allocated by the host once (scratch reused every step); each state's value
    is computed straight into row t of its history where the op allows it, else copied there.
    """
    p = eqn.params
    body = p["body"]
    consts, seqs, inits = split_inputs(eqn.inputs, p)
    nc, ns = p["n_consts"], p["n_seqs"]
    history = [e.alloc(v) for v in eqn.outputs]  # [T, ...] per state, in time order
    outputs = [v.uid for v in body.outputs]
    body_inputs = {v.uid for v in body.inputs}
    with e.persistent("scan"):
        length = e.dim(p["length"])
        n, t = e.temp("n"), e.temp("t")
        with e.lines.block(f"for {n} in range({length}):"):
            e.lines(f"{t} = {length} - 1 - {n}" if p["reverse"] else f"{t} = {n}")
            for bv, v in zip(body.inputs[:nc], consts):
                e.alias(bv, v)
            for bv, v in zip(body.inputs[nc:nc + ns], seqs):
                if v.uid in e.arrays:
                    e.lines(f"{e.define(bv)} = {e.row(e.name(v), t, bv.type.rank)}")
                elif v.uid in e.views:  # read in place through the view: row t of it
                    e.views[bv.uid] = (v, lambda idx, t=t: [t, *idx])
                    e.lines.comment(f"{e.define_view(bv)} = row {t} of {e.define_view(v)}, read in place")
                else:  # a literal
                    e.alias(bv, v)
            lagged = iter(body.inputs[nc + ns:])
            init = iter(inits)
            for hist, out, (_name, lag) in zip(history, eqn.outputs, p["states"]):
                if lag == 0:
                    continue
                e.use(hist)
                start = e.name(next(init))
                rank = out.type.rank - 1
                for k in range(1, lag + 1):
                    step = f"{t} + {k}" if p["reverse"] else f"{t} - {k}"
                    e.lines(f"{e.define(next(lagged))} = {e.row(hist, step, rank)} if {n} >= {k} else {start}")
            for hist, v in zip(history, body.outputs):  # computed straight into row t where possible
                if outputs.count(v.uid) == 1 and v.uid not in body_inputs:
                    e.dest[v.uid], e.dest_arrays[v.uid] = e.row(hist, t, v.type.rank), hist
            e.emit_graph(body)
            for hist, v in zip(history, body.outputs):
                unplaced = e.dest.pop(v.uid, None) is not None  # its rule made no new array (a view)
                e.dest_arrays.pop(v.uid, None)
                if unplaced or outputs.count(v.uid) > 1 or v.uid in body_inputs:
                    e.lines.comment(f"{hist}[{t}] = {e.peek(v) if v.uid in e.arrays else 'its value'}")
                    e.copy(hist, [t], v)


# ---- random draws: lifted to inputs before generation ---------------------------------------------
def lifted_random(e: CudaEmitter, eqn: Eqn) -> None:
    raise AssertionError(f"random op '{eqn.op}' reached the CUDA generator: specc.backends.lift should have "
                         f"turned it into an input")


RULES(*(name for name, op in REGISTRY.items() if op.random))(lifted_random)
