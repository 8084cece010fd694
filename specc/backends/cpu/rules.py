"""The CPU lowering rules of elementwise ops, products, reductions, softmax and losses, lookups and reshapes.

In: an equation whose inputs are bound (arrays, inlined literals, or scalar locals of the current loop
nest) and a :class:`~specc.backends.cpu.emitter.CpuEmitter`.
Out: lines of Numba-compatible Python that bind its outputs.

Each op's exact meaning is its NumPy reference (``ref`` in :mod:`specc.ops`); the rules reproduce it.
Elementwise ops are given once, as a scalar expression (:data:`SCALAR`), used both for a lone op's loop
nest and inside a ``fused`` group's loop nest.  Convolutions are in :mod:`specc.backends.cpu.conv`,
recurrences in :mod:`specc.backends.cpu.scan`, and the rules both targets share in
:mod:`specc.backends.loops`; :mod:`specc.backends.cpu.backend` puts them in one table.
"""

from __future__ import annotations

from typing import Sequence

from ...ir.core import Eqn, Value
from ...ops import REGISTRY
from ..base import RuleSet
from ..common import (CONSTANT, ScalarRule, accumulate, call, constant_value, dt, elementwise_with, fused_with, helper_call,
                      paren, reduce_result, row_max)
from ..common import SCALAR as COMMON_SCALAR
from .emitter import THREADS, CpuEmitter

RULES = RuleSet()


# ---- elementwise: one scalar expression per op -----------------------------------------------
def _gelu_rule(e: CpuEmitter, q: Eqn, a: Sequence[str]) -> str:
    e.helper("tanh", dt(q))
    return f"{e.helper('gelu', dt(q))}({a[0]})"


def _elu(e: CpuEmitter, q: Eqn, a: Sequence[str]) -> str:
    return f"({a[0]} if {a[0]} > 0 else {e.lit(q.params.get('alpha', 1.0), dt(q))} * {e.helper('expm1', dt(q))}({a[0]}))"


SCALAR: dict[str, ScalarRule] = {
    **COMMON_SCALAR,
    "exp": helper_call("exp"),
    "log": helper_call("log"),
    "sqrt": call("np.sqrt"),
    "tanh": helper_call("tanh"),
    "sigmoid": helper_call("sigmoid"),
    "elu": _elu,
    "gelu": _gelu_rule,
    "softplus": helper_call("softplus"),
    "sign": call("np.sign"),
}
RULES(*(name for name in SCALAR if name not in CONSTANT))(elementwise_with(SCALAR))
RULES("fused")(fused_with(SCALAR))


@RULES(*CONSTANT)
def constant(e: CpuEmitter, eqn: Eqn) -> None:
    """A literal where only elementwise code reads it; else an array."""
    (out,) = eqn.outputs
    value = constant_value(e, SCALAR, eqn)
    if out.uid not in e.materialize:
        e.consts[out.uid] = value
        e.lines.comment(f"inlined where read: {value}")
    elif eqn.op == "full":
        e.alloc(out, fill=eqn.params["value"])
    else:
        o = e.alloc(out)
        e.use(*e.const_uses[out.uid])
        e.lines(f"{o}[()] = {value}")


# ---- matmul: BLAS through np.dot on 2-D views ------------------------------------------------
# A product outside any loop that may be large ends the current part of the entry: the Python entry
# calls specc.backends.cpu.runtime.matmul_rows, which splits it by rows across the kernel's threads
# (BLAS itself stays on one thread).  A recurrence's step times a matrix that is the same for every
# step goes through matmul_nt, with the matrix transposed once before the loop (see
# specc.backends.cpu.scan).
@RULES("matmul")
def matmul(e: CpuEmitter, eqn: Eqn) -> None:
    a, b = eqn.inputs
    (out,) = eqn.outputs
    x, w = e.peek(a), e.peek(b)  # read here, or by the entry between parts (a split)
    o = e.alloc(out)
    top = e.at_top()  # not in a loop: the Python entry calls NumPy (BLAS) itself, no Numba code
    if a.type.rank == 1 and b.type.rank == 1 and top:
        e.host(f"{o}[()] = np.dot({x}, {w})", "a dot product (NumPy)", (x, w, o))
    elif a.type.rank == 1 and b.type.rank == 1:
        e.use(x, w)
        e.lines(f"{o}[()] = np.dot({x}, {w})")
    elif b.type.rank <= 2:
        if a.type.rank > 2:  # [..., K] -> [M, K]: the leading axes are rows of one product
            rows = e.count(a.shape[:-1])
            x = _view(e, x, f"({rows}, {e.dim(a.shape[-1])})")
            o = _view(e, o, f"({rows}, {e.dim(b.shape[1])})" if b.type.rank == 2 else f"({rows},)")
        if a.type.rank >= 2 and b.type.rank == 2 and top and _may_be_large(a, b):
            # not per step, and maybe large: blocks of rows on the kernel's threads, from the Python entry
            if a.uid in e.transpose_of:  # a = z.T: read from z, split along the inner axis
                z = e.transpose_of[a.uid]
                e.runtime_calls.add("matmul_t_rows")
                e.split(f"matmul_t_rows({z}, {w}, {o}, {THREADS})",
                        "a product z.T @ g: blocks of the inner axis on threads", (z, w, o))
            else:
                e.runtime_calls.add("matmul_rows")
                e.split(f"matmul_rows({x}, {w}, {o}, {THREADS})", "a product: blocks of rows on threads", (x, w, o))
        elif a.type.rank >= 2 and b.uid in e.transposed:  # a step's product with a constant matrix
            e.shared.add("matmul_nt")
            e.use(x, w, e.transposed[b.uid])
            e.lines(f"matmul_nt({x}, {w}, {e.transposed[b.uid]}, {o})")
        elif top:
            e.host(f"np.dot({x}, {w}, out={o})", "a small product (NumPy: BLAS on this thread)", (x, w, o))
        else:
            e.use(x, w)
            e.lines(f"np.dot({x}, {w}, {o})")
    else:  # batched: [..., M, K] @ [..., K, N], one product per batch index
        nb = e.count(a.shape[:-2])
        m, k, n = (e.dim(d) for d in (a.shape[-2], a.shape[-1], b.shape[-1]))
        x = _view(e, x, f"({nb}, {m}, {k})")
        w = _view(e, w, f"({nb}, {k}, {n})")
        o = _view(e, o, f"({nb}, {m}, {n})")
        if top:
            e.host(f"np.matmul({x}, {w}, out={o})", "batched products (NumPy: BLAS per batch index)", (x, w, o))
            return
        with e.lines.block(f"for i0 in range({nb}):"):
            e.lines(f"np.dot({x}[i0], {w}[i0], {o}[i0])")


def _may_be_large(a: Value, b: Value) -> bool:
    """Whether a product may reach MIN_PARALLEL_MACS (any size with a symbolic dim does)."""
    from .runtime import MIN_PARALLEL_MACS

    macs = 1
    for d in (*a.shape, b.shape[-1]):
        if not d.is_const:
            return True
        macs *= d.value
    return macs >= MIN_PARALLEL_MACS


def _view(e: CpuEmitter, array: str, shape: str) -> str:
    name = e.temp(f"{array}_2d" if shape.count(",") == 1 else f"{array}_{shape.count(',') + 1}d")
    if array in e.arg_types:
        e.typed(name, (e.arg_types[array][0], len([d for d in shape.strip("()").split(",") if d.strip()]), "C"))
    if e.at_top() and array in e.host_names:  # the entry's array: the entry makes the view
        e.before_part(name, f"{array}.reshape({shape})")
        e.use(name)  # read by the code after it (or the split statement: then an unused argument)
        return name
    e.bind(name)
    e.use(array)
    e.lines(f"{name} = {array}.reshape({shape})")
    return name


# ---- reductions ---------------------------------------------------------------------------
@RULES("sum", "mean", "max")
def reduce(e: CpuEmitter, eqn: Eqn) -> None:
    """One accumulator (float64 for floats) per output element.

    Reduced axes inside kept ones when the last axis is reduced (each accumulator then reads
    contiguous memory); otherwise (the bias gradient's sum over [T, B] of [T, B, H]) the input
    is read in its own order into an array of accumulators: reading a column per accumulator
    was 15-30x slower ([50, 32, 256]: 0.52 ms against 0.035 ms).
    """
    (x,), (out,) = eqn.inputs, eqn.outputs
    axes, keep = set(eqn.params["axes"]), eqn.params["keepdims"]
    src, o = e.name(x), e.alloc(out)
    kept = [ax for ax in range(x.type.rank) if ax not in axes]
    reduced = [ax for ax in range(x.type.rank) if ax in axes]
    if reduced and kept and kept[-1] == x.type.rank - 1:
        _reduce_in_order(e, eqn, src, o, kept, reduced)
        return
    acc = e.temp("acc")
    with e.loops([x.shape[ax] for ax in kept], "i") as oi:
        ri = e.index_names(len(reduced), "j")
        where = {ax: i for ax, i in zip(kept, oi)} | {ax: j for ax, j in zip(reduced, ri)}
        load = e.at(src, [where[ax] for ax in range(x.type.rank)])
        dst = e.at(o, [where[ax] if ax in kept else "0" for ax in range(x.type.rank)] if keep else oi)
        e.lines(f"{acc} = {_reduce_start(eqn, x)}")
        with e.loops([x.shape[ax] for ax in reduced], "j"):
            accumulate(e, eqn, acc, load)
        reduce_result(e, eqn, dst, acc, x, reduced)


def _reduce_in_order(e: CpuEmitter, eqn: Eqn, src: str, o: str, kept: list[int], reduced: list[int]) -> None:
    x = eqn.inputs[0]
    kept_shape = [x.shape[ax] for ax in kept]
    acc = e.temp("acc")
    dtype = "np.float64" if eqn.op != "max" or x.type.is_float else "np.int64"
    e.lines(f"{acc} = np.full({e.shape(kept_shape)}, {_reduce_start(eqn, x)}, {dtype})")
    with e.loops(x.shape, "j") as idx:
        accumulate(e, eqn, e.at(acc, [idx[ax] for ax in kept]), e.at(src, idx))
    with e.loops(kept_shape, "i") as oi:
        at = dict(zip(kept, oi))
        dst = e.at(o, [at.get(ax, "0") for ax in range(x.type.rank)] if eqn.params["keepdims"] else oi)
        reduce_result(e, eqn, dst, e.at(acc, oi), x, reduced)


def _reduce_start(eqn: Eqn, x: Value) -> str:
    if eqn.op == "max":
        return "-np.inf" if x.type.is_float else "-2147483648"
    return "0.0"


# ---- softmax family and losses -----------------------------------------------------------------

@RULES("softmax", "log_softmax")
def softmax(e: CpuEmitter, eqn: Eqn) -> None:
    """Per row along the axis: the max, then exp(x - max) summed in float64."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    axis = eqn.params["axis"]
    src, o = e.name(x), e.alloc(out)
    n = e.dim(x.shape[axis])
    m, s = e.temp("m"), e.temp("s")
    with e.loops([d for ax, d in enumerate(x.shape) if ax != axis]) as oi:
        idx = [*oi[:axis], "j0", *oi[axis:]]
        load, store = e.at(src, idx), e.at(o, idx)
        row_max(e, m, n, load)
        e.lines(f"{s} = 0.0")
        if eqn.op == "softmax":
            ex = e.temp("ex")
            with e.lines.block(f"for j0 in range({n}):"):
                e.lines(f"{ex} = np.exp({load} - {m})")
                e.lines(f"{store} = {ex}")
                e.lines(f"{s} += {ex}")
            with e.lines.block(f"for j0 in range({n}):"):
                e.lines(f"{store} = {store} / {s}")
        else:
            lse = e.temp("lse")
            _row_logsumexp(e, lse, m, s, n, load)
            with e.lines.block(f"for j0 in range({n}):"):
                e.lines(f"{store} = {load} - {lse}")


def _row_logsumexp(e: CpuEmitter, lse: str, m: str, s: str, n: str, load: str) -> None:
    """lse = log(sum_j e^row[j]), computed as max + log(sum e^(row - max)); the row max is already in m."""
    with e.lines.block(f"for j0 in range({n}):"):
        e.lines(f"{s} += np.exp({load} - {m})")
    e.lines(f"{lse} = {m} + np.log({s})")


@RULES("cross_entropy")
def cross_entropy(e: CpuEmitter, eqn: Eqn) -> None:
    """mean over rows of logsumexp(z) - z[label]."""
    logits, labels = eqn.inputs
    (out,) = eqn.outputs
    z, y, o = e.name(logits), e.name(labels), e.alloc(out)
    c = e.dim(logits.shape[-1])
    total, m, s, k, lse = e.temp("total"), e.temp("m"), e.temp("s"), e.temp("label"), e.temp("lse")
    e.lines(f"{total} = 0.0")
    with e.loops(labels.shape) as oi:
        row = e.at(z, [*oi, "j0"])
        row_max(e, m, c, row)
        e.lines(f"{s} = 0.0")
        _row_logsumexp(e, lse, m, s, c, row)
        e.lines(f"{k} = {e.at(y, oi)}")
        _check_index(e, k, c, "cross_entropy: a label is out of range")
        e.lines(f"{total} += {lse} - {e.at(z, [*oi, k])}")
    e.lines(f"{o}[()] = {total} / {paren(e.count(labels.shape))}")


def _check_index(e: CpuEmitter, k: str, n: str, message: str) -> None:
    """NumPy's indexing: a negative index counts from the end; out of range raises."""
    with e.lines.block(f"if {k} < 0:"):
        e.lines(f"{k} += {n}")
    with e.lines.block(f"if {k} < 0 or {k} >= {n}:"):
        e.lines(f'raise IndexError("{message}")')


@RULES("bce_logits")
def bce_logits(e: CpuEmitter, eqn: Eqn) -> None:
    """mean of softplus(z) - z*y (softplus(z) = max(z, 0) + log1p(e^-|z|))."""
    logits, targets = eqn.inputs
    (out,) = eqn.outputs
    z, y, o = e.name(logits), e.name(targets), e.alloc(out)
    total, zv = e.temp("total"), e.temp("z")
    softplus = e.helper("softplus", logits.dtype)
    e.lines(f"{total} = 0.0")
    with e.loops(logits.shape) as idx:
        e.lines(f"{zv} = {e.at(z, idx)}")
        e.lines(f"{total} += {softplus}({zv}) - {zv} * {e.at(y, idx)}")
    e.lines(f"{o}[()] = {total} / {paren(e.count(logits.shape))}")


# ---- lookup, indexing, layout ----------------------------------------------------------------------
@RULES("take")
def take(e: CpuEmitter, eqn: Eqn) -> None:
    table, ids = eqn.inputs
    (out,) = eqn.outputs
    t, i, o = e.name(table), e.name(ids), e.alloc(out)
    rows = e.dim(table.shape[0])
    k = e.temp("row")
    with e.loops(ids.shape) as oi:
        e.lines(f"{k} = {e.at(i, oi)}")
        _check_index(e, k, rows, "take: an id is out of range")
        with e.lines.block(f"for j0 in range({e.dim(table.shape[1])}):"):
            e.lines(f"{e.at(o, [*oi, 'j0'])} = {t}[{k}, j0]")


@RULES("take_grad")
def take_grad(e: CpuEmitter, eqn: Eqn) -> None:
    """Scatter-add: out[ids[i], ...] += dy[i, ...] into zeros [rows, ...]."""
    ids, dy = eqn.inputs
    (out,) = eqn.outputs
    i, d, o = e.name(ids), e.name(dy), e.alloc(out, fill=0.0)
    rows = e.dim(out.shape[0])
    k = e.temp("row")
    with e.loops(ids.shape) as oi:
        e.lines(f"{k} = {e.at(i, oi)}")
        _check_index(e, k, rows, "take: an id is out of range")
        with e.loops(out.shape[1:], "j") as ji:
            e.lines(f"{e.at(o, [k, *ji])} += {e.at(d, [*oi, *ji])}")


@RULES("reshape")
def reshape(e: CpuEmitter, eqn: Eqn) -> None:
    """A view: the same elements (every array here is C-contiguous)."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    if e.at_top() and e.peek(x) in e.host_names:  # the entry's array: the entry makes the view
        e.before_part(e.host_define(out), f"{e.peek(x)}.reshape({e.host_expr(lambda: e.shape(out.shape))})")
        return
    src = e.name(x)
    e.lines(f"{e.define(out)} = {src}.reshape({e.shape(out.shape)})")


# ---- random draws: lifted to inputs before generation ---------------------------------------------
def lifted_random(e: CpuEmitter, eqn: Eqn) -> None:
    raise AssertionError(f"random op '{eqn.op}' reached the CPU generator: specc.backends.lift should have "
                         f"turned it into an input")


RULES(*(name for name, op in REGISTRY.items() if op.random))(lifted_random)
