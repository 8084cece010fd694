"""The CPU lowering rules: one function per op, emitting the op's code through an :class:`Emitter`.

In: an equation whose inputs are bound (arrays, inlined literals, or scalar
locals of the current loop nest).
Out: lines of Numba-compatible Python that bind its outputs.

Each op's exact meaning is its NumPy reference (``ref`` in :mod:`specc.ops`);
the rules below reproduce it.  Elementwise ops are given once, as a scalar
expression (:data:`SCALAR`), used both for a lone op's loop nest and inside a
``fused`` group's loop nest.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from typing import Callable, Sequence

from ...ir.dims import Dim
from ...ir.core import Eqn, Value
from ...ops import REGISTRY
from ...ops.core import broadcast
from ...ir.scan import split_inputs
from .. import lowering
from .generator import GLOBALS, NJIT, NJIT_NOGIL, TARGET, THREADS, Emitter, free_names, sanitize
from .vecmath import MATH_HELPERS
from ..lines import Lines
from .rows import ROW, RowPlan, row_plan


def cpu(*ops: str):
    return lowering(TARGET, *ops)


# ---- helpers the generated code may call (added to a module on first use) -----------------
def _gelu(name: str, dt: str) -> str:
    def lit(v: float) -> str:
        return Emitter.lit(v, dt)

    tanh = f"tanh_{dt}"  # the helper is added with this one
    return f'''{NJIT}
def {name}(x):
    """x * Phi(x), the tanh approximation."""
    return {lit(0.5)} * x * ({lit(1.0)} + {tanh}({lit(0.7978845608028654)} * (x + {lit(0.044715)} * x * x * x)))
'''


def _wrap_index(name: str, dt: str | None) -> str:
    return f'''{NJIT}
def {name}(i, n):
    """NumPy's rule for an integer index: a negative one counts from the end."""
    if i < 0:
        i += n
    if i < 0 or i >= n:
        raise IndexError("index out of range")
    return i
'''


def _slice_start(name: str, dt: str | None) -> str:
    return f'''{NJIT}
def {name}(start, n, count, step):
    """NumPy's rule for a slice start (step > 0), checked against the length the shape rule gave."""
    if start < 0:
        start += n
    start = min(max(start, 0), n)
    if count > 0 and start + (count - 1) * step >= n:
        raise IndexError("slice out of range")
    return start
'''


# exp, log, tanh, sigmoid, softplus: vectorizable arithmetic (specc.backends.cpu.vecmath), not libm
# calls, so that the loops calling them vectorize
HELPERS: dict[str, Callable[[str, str | None], str]] = {
    **MATH_HELPERS,
    "gelu": _gelu,
    "wrap_index": _wrap_index,
    "slice_start": _slice_start,
}


# ---- elementwise: one scalar expression per op -----------------------------------------------
# (emitter, equation, operand expressions) -> the result's expression.  Operands are atoms
# (names, loads, literals), so no template needs parentheses around them.
ScalarRule = Callable[[Emitter, Eqn, Sequence[str]], str]


def _dt(eqn: Eqn) -> str:
    return eqn.outputs[0].dtype


def _call(fn: str) -> ScalarRule:
    return lambda e, q, a: f"{fn}({a[0]})"


def _helper(kind: str) -> ScalarRule:
    return lambda e, q, a: f"{e.helper(kind, _dt(q))}({a[0]})"


def _gelu_rule(e: Emitter, q: Eqn, a: Sequence[str]) -> str:
    e.helper("tanh", _dt(q))
    return f"{e.helper('gelu', _dt(q))}({a[0]})"


def _infix(op: str) -> ScalarRule:
    return lambda e, q, a: f"{a[0]} {op} {a[1]}"


def _pow(e: Emitter, q: Eqn, a: Sequence[str]) -> str:
    if a[1] == e.lit(2.0, _dt(q)):  # x ** 2: NumPy squares exactly, so must we
        return f"{a[0]} * {a[0]}"
    return f"{a[0]} ** {a[1]}"


def _leaky_relu(e: Emitter, q: Eqn, a: Sequence[str]) -> str:
    return f"({a[0]} if {a[0]} > 0 else {e.lit(q.params.get('alpha', 0.01), _dt(q))} * {a[0]})"


def _elu(e: Emitter, q: Eqn, a: Sequence[str]) -> str:
    return f"({a[0]} if {a[0]} > 0 else {e.lit(q.params.get('alpha', 1.0), _dt(q))} * {e.helper('expm1', _dt(q))}({a[0]}))"


SCALAR: dict[str, ScalarRule] = {
    "neg": lambda e, q, a: f"-{a[0]}",
    "exp": _helper("exp"),
    "log": _helper("log"),
    "sqrt": _call("np.sqrt"),
    "abs": _call("abs"),
    "tanh": _helper("tanh"),
    "sigmoid": _helper("sigmoid"),
    "relu": lambda e, q, a: f"max({a[0]}, {e.lit(0.0, _dt(q))})",
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "gelu": _gelu_rule,
    "softplus": _helper("softplus"),
    "add": _infix("+"),
    "sub": _infix("-"),
    "mul": _infix("*"),
    "div": _infix("/"),
    "pow": _pow,
    "maximum": lambda e, q, a: f"max({a[0]}, {a[1]})",
    "minimum": lambda e, q, a: f"min({a[0]}, {a[1]})",
    "cast": lambda e, q, a: f"{e.np_dtype(q.params['dtype'])}({a[0]})",
    "full": lambda e, q, a: e.lit(q.params["value"], q.params["dtype"]),
    "size": lambda e, q, a: f"{e.np_dtype(q.params['dtype'])}({e.dim(q.params['dim'])})",
    "step": lambda e, q, a: _indicator(e, q, f"{a[0]} > 0"),
    "sign": _call("np.sign"),
    "ge": lambda e, q, a: _indicator(e, q, f"{a[0]} >= {a[1]}"),
}
CONSTANT = ("full", "size")  # no inputs: a literal (or dim arithmetic) wherever elementwise code reads them
# Ops whose code reads its inputs element by element through Emitter.element/load: their inputs may be
# literals or views (see needs_array); every other op indexes arrays directly.
ELEMENT_READERS = {*SCALAR, "fused", "concat", "getitem", "transpose"}


def _indicator(e: Emitter, q: Eqn, condition: str) -> str:
    return f"({e.lit(1.0, _dt(q))} if {condition} else {e.lit(0.0, _dt(q))})"


def elementwise_with(scalar: dict[str, ScalarRule]) -> Callable[[Emitter, Eqn], None]:
    """The elementwise rule of a target whose scalar templates are ``scalar`` (the CUDA rules use it too):
    one output element per iteration of ``e.parallel`` (a loop nest on the CPU, threads on CUDA)."""
    def elementwise(e: Emitter, eqn: Eqn) -> None:
        """Operands broadcast by their index expressions."""
        (out,) = eqn.outputs
        o = e.alloc(out)
        with e.phase(eqn.op), e.parallel(out.shape) as idx:
            args = [e.element(v, idx, out.shape) for v in eqn.inputs]
            e.lines(f"{e.at(o, idx)} = {scalar[eqn.op](e, eqn, args)}")

    return elementwise


cpu(*(name for name in SCALAR if name not in CONSTANT))(elementwise_with(SCALAR))


@cpu(*CONSTANT)
def constant(e: Emitter, eqn: Eqn) -> None:
    """A literal where only elementwise code reads it; else an array."""
    (out,) = eqn.outputs
    value = SCALAR[eqn.op](e, eqn, [])
    if out.uid not in e.materialize:
        e.consts[out.uid] = value
        e.lines.comment(f"inlined where read: {value}")
    elif eqn.op == "full":
        e.alloc(out, fill=eqn.params["value"])
    else:
        e.lines(f"{e.alloc(out)}[()] = {value}")


def fused_with(scalar: dict[str, ScalarRule]) -> Callable[[Emitter, Eqn], None]:
    """The rule of a fused group for a target whose scalar templates are ``scalar`` (CUDA's too): one
    iteration of ``e.parallel`` over the group's domain, each body value a scalar local of it."""
    def fused(e: Emitter, eqn: Eqn) -> None:
        body = eqn.params["body"]
        for bv, v in zip(body.inputs, eqn.inputs):
            e.alias(bv, v)
        outs = [e.alloc(v) for v in eqn.outputs]
        domain = eqn.outputs[0].shape
        for v in eqn.outputs[1:]:
            domain = broadcast(domain, v.shape)
        with e.phase("fused"), e.parallel(domain) as idx:
            for be in body.eqns:
                (bo,) = be.outputs
                expr = scalar[be.op](e, be, [e.element(v, idx, domain) for v in be.inputs])
                if be.op in CONSTANT:  # a literal where it is read
                    e.consts[bo.uid] = expr
                else:
                    e.head(be)
                    e.lines(f"{e.local(bo)} = {expr}")
            for o, v, bo in zip(outs, eqn.outputs, body.outputs):
                e.lines(f"{e.at(o, e.broadcast_index(v.shape, idx, domain))} = {e.element(bo, idx, domain)}")
        for bv in (*body.inputs, *(be.outputs[0] for be in body.eqns)):
            e.scalars.pop(bv.uid, None)

    return fused


cpu("fused")(fused_with(SCALAR))


# ---- matmul: BLAS through np.dot on 2-D views ------------------------------------------------
# A product outside any loop that may be large ends the current part of the entry: the Python entry
# calls specc.runtime.matmul_rows, which splits it by rows across the kernel's threads (BLAS itself
# stays on one thread).  A recurrence's
# step times a matrix that is the same for every step goes through matmul_nt, with the matrix
# transposed once before the loop (see _transpose_constants).
@cpu("matmul")
def matmul(e: Emitter, eqn: Eqn) -> None:
    a, b = eqn.inputs
    (out,) = eqn.outputs
    x, w = e.name(a), e.name(b)
    o = e.alloc(out)
    if a.type.rank == 1 and b.type.rank == 1:
        e.lines(f"{o}[()] = np.dot({x}, {w})")
    elif b.type.rank <= 2:
        if a.type.rank > 2:  # [..., K] -> [M, K]: the leading axes are rows of one product
            rows = e.count(a.shape[:-1])
            x = _view(e, x, f"({rows}, {e.dim(a.shape[-1])})")
            o = _view(e, o, f"({rows}, {e.dim(b.shape[1])})" if b.type.rank == 2 else f"({rows},)")
        if a.type.rank >= 2 and b.type.rank == 2 and e.lines.depth == 1 and not e.in_rows and _may_be_large(a, b):
            # not per step, and maybe large: blocks of rows on the kernel's threads, from the Python entry
            if a.uid in e.transpose_of:  # a = z.T: read from z, split along the inner axis
                e.runtime_calls.add("matmul_t_rows")
                e.split(f"matmul_t_rows({e.transpose_of[a.uid]}, {w}, {o}, {THREADS})",
                        "a product z.T @ g: blocks of the inner axis on threads")
            else:
                e.runtime_calls.add("matmul_rows")
                e.split(f"matmul_rows({x}, {w}, {o}, {THREADS})", "a product: blocks of rows on threads")
        elif a.type.rank >= 2 and b.uid in e.transposed:  # a step's product with a constant matrix
            e.shared.add("matmul_nt")
            e.lines(f"matmul_nt({x}, {w}, {e.transposed[b.uid]}, {o})")
        else:
            e.lines(f"np.dot({x}, {w}, {o})")
    else:  # batched: [..., M, K] @ [..., K, N], one product per batch index
        nb = e.count(a.shape[:-2])
        m, k, n = (e.dim(d) for d in (a.shape[-2], a.shape[-1], b.shape[-1]))
        x = _view(e, x, f"({nb}, {m}, {k})")
        w = _view(e, w, f"({nb}, {k}, {n})")
        o = _view(e, o, f"({nb}, {m}, {n})")
        with e.lines.block(f"for i0 in range({nb}):"):
            e.lines(f"np.dot({x}[i0], {w}[i0], {o}[i0])")


def _may_be_large(a: Value, b: Value) -> bool:
    """Whether a product may reach specc.runtime.MIN_PARALLEL_MACS (any size with a symbolic dim does)."""
    from .runtime import MIN_PARALLEL_MACS

    macs = 1
    for d in (*a.shape, b.shape[-1]):
        if not d.is_const:
            return True
        macs *= d.value
    return macs >= MIN_PARALLEL_MACS


def _view(e: Emitter, array: str, shape: str) -> str:
    name = e.temp(f"{array}_2d" if shape.count(",") == 1 else f"{array}_{shape.count(',') + 1}d")
    e.lines(f"{name} = {array}.reshape({shape})")
    return name


# ---- reductions ---------------------------------------------------------------------------
@cpu("sum", "mean", "max")
def reduce(e: Emitter, eqn: Eqn) -> None:
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
            _accumulate(e, eqn, acc, load)
        _reduce_result(e, eqn, dst, acc, x, reduced)


def _reduce_in_order(e: Emitter, eqn: Eqn, src: str, o: str, kept: list[int], reduced: list[int]) -> None:
    x = eqn.inputs[0]
    kept_shape = [x.shape[ax] for ax in kept]
    acc = e.temp("acc")
    dtype = "np.float64" if eqn.op != "max" or x.type.is_float else "np.int64"
    e.lines(f"{acc} = np.full({e.shape(kept_shape)}, {_reduce_start(eqn, x)}, {dtype})")
    with e.loops(x.shape, "j") as idx:
        _accumulate(e, eqn, e.at(acc, [idx[ax] for ax in kept]), e.at(src, idx))
    with e.loops(kept_shape, "i") as oi:
        at = dict(zip(kept, oi))
        dst = e.at(o, [at.get(ax, "0") for ax in range(x.type.rank)] if eqn.params["keepdims"] else oi)
        _reduce_result(e, eqn, dst, e.at(acc, oi), x, reduced)


def _reduce_start(eqn: Eqn, x: Value) -> str:
    if eqn.op == "max":
        return "-np.inf" if x.type.is_float else "-2147483648"
    return "0.0"


def _accumulate(e: Emitter, eqn: Eqn, acc: str, load: str) -> None:
    if eqn.op == "max":
        with e.lines.block(f"if {load} > {acc}:"):
            e.lines(f"{acc} = {load}")
    else:
        e.lines(f"{acc} += {load}")


def _reduce_result(e: Emitter, eqn: Eqn, dst: str, acc: str, x: Value, reduced: list[int]) -> None:
    if eqn.op == "mean":
        e.lines(f"{dst} = {acc} / {_paren(e.count([x.shape[ax] for ax in reduced]))}")
    else:
        e.lines(f"{dst} = {acc}")


def _paren(expr: str) -> str:
    return expr if expr.isidentifier() or expr.isdigit() else f"({expr})"


# ---- softmax family and losses -----------------------------------------------------------------
def _row_max(e: Emitter, m: str, n: str, load: str) -> None:
    e.lines(f"{m} = -np.inf")
    with e.lines.block(f"for j0 in range({n}):"):
        with e.lines.block(f"if {load} > {m}:"):
            e.lines(f"{m} = {load}")


@cpu("softmax", "log_softmax")
def softmax(e: Emitter, eqn: Eqn) -> None:
    """Per row along the axis: the max, then exp(x - max) summed in float64."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    axis = eqn.params["axis"]
    src, o = e.name(x), e.alloc(out)
    n = e.dim(x.shape[axis])
    m, s = e.temp("m"), e.temp("s")
    with e.loops([d for ax, d in enumerate(x.shape) if ax != axis]) as oi:
        idx = [*oi[:axis], "j0", *oi[axis:]]
        load, store = e.at(src, idx), e.at(o, idx)
        _row_max(e, m, n, load)
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


def _row_logsumexp(e: Emitter, lse: str, m: str, s: str, n: str, load: str) -> None:
    """lse = log(sum_j e^row[j]), computed as max + log(sum e^(row - max)); the row max is already in m."""
    with e.lines.block(f"for j0 in range({n}):"):
        e.lines(f"{s} += np.exp({load} - {m})")
    e.lines(f"{lse} = {m} + np.log({s})")


@cpu("cross_entropy")
def cross_entropy(e: Emitter, eqn: Eqn) -> None:
    """mean over rows of logsumexp(z) - z[label]."""
    logits, labels = eqn.inputs
    (out,) = eqn.outputs
    z, y, o = e.name(logits), e.name(labels), e.alloc(out)
    c = e.dim(logits.shape[-1])
    total, m, s, k, lse = e.temp("total"), e.temp("m"), e.temp("s"), e.temp("label"), e.temp("lse")
    e.lines(f"{total} = 0.0")
    with e.loops(labels.shape) as oi:
        row = e.at(z, [*oi, "j0"])
        _row_max(e, m, c, row)
        e.lines(f"{s} = 0.0")
        _row_logsumexp(e, lse, m, s, c, row)
        e.lines(f"{k} = {e.at(y, oi)}")
        _check_index(e, k, c, "cross_entropy: a label is out of range")
        e.lines(f"{total} += {lse} - {e.at(z, [*oi, k])}")
    e.lines(f"{o}[()] = {total} / {_paren(e.count(labels.shape))}")


def _check_index(e: Emitter, k: str, n: str, message: str) -> None:
    """NumPy's indexing: a negative index counts from the end; out of range raises."""
    with e.lines.block(f"if {k} < 0:"):
        e.lines(f"{k} += {n}")
    with e.lines.block(f"if {k} < 0 or {k} >= {n}:"):
        e.lines(f'raise IndexError("{message}")')


@cpu("bce_logits")
def bce_logits(e: Emitter, eqn: Eqn) -> None:
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
    e.lines(f"{o}[()] = {total} / {_paren(e.count(logits.shape))}")


# ---- convolution and pooling: loops over windows -------------------------------------------------
# Names in this section: i0 (batch), i1 (channel), i2, i3, ... the loops of the equation's output;
# j0, j1, ... inner loops; k0, k1, ... the taps of a window; u0, u1, ... input positions.
def _position(e: Emitter, stack: ExitStack, s: int, pos: str, tap: str, stride: int, dil: int, pad: int,
              size: Dim) -> str:
    """``u_s = pos * stride + tap * dilation - pad``: the input position of one window tap.

    A position in the padding is skipped: an ``if`` opens (on ``stack``) for a padded axis.
    """
    terms = [pos if stride == 1 else f"{pos} * {stride}", tap if dil == 1 else f"{tap} * {dil}"]
    u = f"u{s}"
    e.lines(f"{u} = {' + '.join(terms)}" + (f" - {pad}" if pad else ""))
    if pad:
        stack.enter_context(e.lines.block(f"if 0 <= {u} < {e.dim(size)}:"))
    return u


def _window(e: Emitter, stack: ExitStack, x: Value, kernel: Sequence[str], p, dil: Sequence[int]) -> list[str]:
    """Loops over the taps k0, k1, ... of the window at output position i2, i3, ...; returns u0, u1, ..."""
    us = []
    for s, k in enumerate(kernel):
        stack.enter_context(e.lines.block(f"for k{s} in range({k}):"))
        us.append(_position(e, stack, s, f"i{2 + s}", f"k{s}", p["stride"][s], dil[s], p["padding"][s],
                            x.shape[2 + s]))
    return us


def _taps(kernel: Sequence) -> list[str]:
    return [f"k{s}" for s in range(len(kernel))]


# A convolution is a product per batch element: out[b] [O, P] = W [O, C*K] @ cols [C*K, P], where
# column p of ``cols`` holds the window of output position p (im2col; zeros in the padding), so
# BLAS does the multiply-adds; the gradients are the two other products and a scatter back (col2im).
def _cols_shape(e: Emitter, x: Value, w: Value, out_spatial: Sequence[Dim]) -> tuple[str, str, str]:
    """(C*K, P, K) as expressions: the rows and columns of ``cols``, and the taps per channel."""
    taps = Dim.const(1)
    for d in w.shape[2:]:
        taps = taps * d
    npos = Dim.const(1)
    for d in out_spatial:
        npos = npos * d
    return e.dim(x.shape[1] * taps), e.dim(npos), e.dim(taps)


def _flat(names: Sequence[str], sizes: Sequence[str]) -> str:
    """The row-major flat index of ``names`` in an array of ``sizes``."""
    text = names[0]
    for n, size in zip(names[1:], sizes[1:]):
        text = f"({text}) * {size} + {n}"
    return text


def _im2col(e: Emitter, cols: str, xs: str, b: str, x: Value, w: Value, out_spatial: Sequence[Dim], p,
            ntaps: str, scatter: bool = False) -> None:
    """Fill ``cols`` [C*K, P] from batch element ``b`` of ``xs`` (or, ``scatter``: add it back into ``xs``)."""
    kernel = [e.dim(d) for d in w.shape[2:]]
    spatial = [e.dim(d) for d in out_spatial]
    with ExitStack() as stack:
        stack.enter_context(e.lines.block(f"for j0 in range({e.dim(x.shape[1])}):"))
        for s, k in enumerate(kernel):
            stack.enter_context(e.lines.block(f"for k{s} in range({k}):"))
        row = f"j0 * {ntaps} + {_flat(_taps(kernel), kernel)}" if kernel else "j0"
        us = []
        for s, size in enumerate(spatial):
            stack.enter_context(e.lines.block(f"for i{2 + s} in range({size}):"))
            us.append(_position(e, stack, s, f"i{2 + s}", f"k{s}", p["stride"][s], p["dilation"][s],
                                p["padding"][s], x.shape[2 + s]))
        col = _flat([f"i{2 + s}" for s in range(len(spatial))], spatial)
        if scatter:
            e.lines(f"{e.at(xs, [b, 'j0', *us])} += {cols}[{row}, {col}]")
        else:
            e.lines(f"{cols}[{row}, {col}] = {e.at(xs, [b, 'j0', *us])}")


@cpu("conv")
def conv(e: Emitter, eqn: Eqn) -> None:
    """out[b, o, p] = sum over c and the window k of x[b, c, p * stride + k * dilation - pad] * w[o, c, k]."""
    x, w = eqn.inputs
    (out,) = eqn.outputs
    xs, ws, o = e.name(x), e.name(w), e.alloc(out)
    ck, npos, ntaps = _cols_shape(e, x, w, out.shape[2:])
    dt = e.np_dtype(x.dtype)
    cols, w2, o3 = e.temp("cols"), e.temp(f"{ws}_2d"), e.temp(f"{o}_3d")
    e.lines(f"{cols} = np.zeros(({ck}, {npos}), {dt})  # positions in the padding stay 0")
    e.lines(f"{w2} = {ws}.reshape(({e.dim(w.shape[0])}, {ck}))")
    e.lines(f"{o3} = {o}.reshape(({e.dim(x.shape[0])}, {e.dim(w.shape[0])}, {npos}))")
    with e.lines.block(f"for i0 in range({e.dim(x.shape[0])}):"):
        _im2col(e, cols, xs, "i0", x, w, out.shape[2:], eqn.params, ntaps)
        e.lines(f"np.dot({w2}, {cols}, {o3}[i0])")


@cpu("conv_grad_input")
def conv_grad_input(e: Emitter, eqn: Eqn) -> None:
    """dx = col2im(W^T @ dy[b]) per batch element: each window tap's share added back to its input position."""
    dy, w = eqn.inputs
    (out,) = eqn.outputs
    ds, ws, o = e.name(dy), e.name(w), e.alloc(out, fill=0.0)
    ck, npos, ntaps = _cols_shape(e, out, w, dy.shape[2:])
    dcols, w2, d3 = e.temp("dcols"), e.temp(f"{ws}_2d"), e.temp(f"{ds}_3d")
    e.lines(f"{dcols} = np.empty(({ck}, {npos}), {e.np_dtype(dy.dtype)})")
    e.lines(f"{w2} = {ws}.reshape(({e.dim(w.shape[0])}, {ck}))")
    e.lines(f"{d3} = {ds}.reshape(({e.dim(dy.shape[0])}, {e.dim(dy.shape[1])}, {npos}))")
    with e.lines.block(f"for i0 in range({e.dim(dy.shape[0])}):"):
        e.lines(f"np.dot({w2}.T, {d3}[i0], {dcols})")
        _im2col(e, dcols, o, "i0", out, w, dy.shape[2:], eqn.params, ntaps, scatter=True)


@cpu("conv_grad_weight")
def conv_grad_weight(e: Emitter, eqn: Eqn) -> None:
    """dW [O, C*K] = sum over b of dy[b] [O, P] @ cols(x[b])^T [P, C*K]."""
    x, dy = eqn.inputs
    (out,) = eqn.outputs
    p = eqn.params
    xs, ds, o = e.name(x), e.name(dy), e.alloc(out, fill=0.0)
    ck, npos, ntaps = _cols_shape(e, x, out, dy.shape[2:])
    dt = e.np_dtype(x.dtype)
    cols, part, o2, d3 = e.temp("cols"), e.temp("part"), e.temp(f"{o}_2d"), e.temp(f"{ds}_3d")
    nout = e.dim(out.shape[0])
    e.lines(f"{cols} = np.zeros(({ck}, {npos}), {dt})  # positions in the padding stay 0")
    e.lines(f"{part} = np.empty(({nout}, {ck}), {dt})")
    e.lines(f"{o2} = {o}.reshape(({nout}, {ck}))")
    e.lines(f"{d3} = {ds}.reshape(({e.dim(x.shape[0])}, {nout}, {npos}))")
    with e.lines.block(f"for i0 in range({e.dim(x.shape[0])}):"):
        _im2col(e, cols, xs, "i0", x, out, dy.shape[2:], p, ntaps)
        e.lines(f"np.dot({d3}[i0], {cols}.T, {part})")
        with e.lines.block(f"for j0 in range({nout}):"):
            with e.lines.block(f"for j1 in range({ck}):"):
                e.lines(f"{o2}[j0, j1] += {part}[j0, j1]")


def _pool_size(p) -> int:
    size = 1
    for k in p["kernel"]:
        size *= k
    return size


# ---- lookup, indexing, layout ----------------------------------------------------------------------
@cpu("take")
def take(e: Emitter, eqn: Eqn) -> None:
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


@cpu("take_grad")
def take_grad(e: Emitter, eqn: Eqn) -> None:
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


def _index_map(e: Emitter, x: Value, index, part: Value) -> Callable[[Sequence[str]], list[str]]:
    """For ``part = x[index]``: a function from an index of ``part`` to the index of ``x`` it reads.

    Each axis of x is a fixed index (checked, negative from the end), ``start + i * step`` of an axis
    of ``part`` (a slice: NumPy's clamping of the start), or an axis of ``part`` (those after the index).
    Setup code (run-time normalisation of symbolic indices) is emitted here.
    """
    where: list[str] = []  # templates over part's index: "{0}", "3 + {1} * 2", "k"
    axis = 0  # the next axis of part
    for ax, entry in enumerate(index):
        n = x.shape[ax]
        if entry[0] == "int":
            k: Dim = entry[1]
            if k.is_const and n.is_const and -n.value <= k.value < n.value:
                where.append(str(k.value % n.value))
            else:
                name = e.temp("k")
                e.lines(f"{name} = {e.helper('wrap_index')}({e.dim(k)}, {e.dim(n)})")
                where.append(name)
        else:
            _, lo, _hi, step = entry  # the stop only sets the length: part's shape
            if lo is None:
                start = "0"
            elif lo.is_const and n.is_const:
                start = str(slice(lo.value, None, step).indices(n.value)[0])
            else:
                start = e.temp("start")
                count = e.dim(part.shape[axis])
                e.lines(f"{start} = {e.helper('slice_start')}({e.dim(lo)}, {e.dim(n)}, {count}, {step})")
            i = f"{{{axis}}}" if step == 1 else f"{{{axis}}} * {step}"
            where.append(i if start == "0" else f"{start} + {i}")
            axis += 1
    rest = [f"{{{a}}}" for a in range(axis, axis + x.type.rank - len(index))]
    templates = where + rest
    return lambda idx: [t.format(*idx) for t in templates]


@cpu("reshape")
def reshape(e: Emitter, eqn: Eqn) -> None:
    """A view: the same elements (every array here is C-contiguous)."""
    (x,), (out,) = eqn.inputs, eqn.outputs
    src = e.name(x)
    e.lines(f"{e.define(out)} = {src}.reshape({e.shape(out.shape)})")


# ---- recurrences ---------------------------------------------------------------------------------
@cpu("scan")
def scan(e: Emitter, eqn: Eqn) -> None:
    """A loop over the steps; the body's code runs once per step (see specc.ops.scan for the layout).

    When every step treats the batch rows independently (:func:`specc.backends.cpu.rows.row_plan`),
    the loop becomes a function of a block of rows (``nogil``), and
    :func:`specc.runtime.run_row_blocks` runs one block per thread: the whole recurrence,
    all steps, with no synchronisation between steps.  The entry then becomes Python code
    calling the kernel's parts in turn (see :meth:`Emitter.split`).  (Two alternatives were
    measured and dropped: a ``prange`` over the blocks made Numba compile the recurrence
    twice and build a parallel wrapper, 4-6 s more for the LSTM's gradient kernel; an
    ``objmode`` call from the kernel costs 0.3 s of compilation in every process.)
    """
    history = [e.alloc(v) for v in eqn.outputs]  # [T, ...] per state, in time order
    plan = row_plan(eqn) if e.lines.depth == 1 and not e.in_rows else None  # only a top-level loop splits
    if plan is None:
        _scan_loop(e, eqn, history, None)
    else:
        _scan_by_rows(e, eqn, history, plan)


def _scan_by_rows(e: Emitter, eqn: Eqn, history: list[str], plan: RowPlan) -> None:
    body = eqn.params["body"]
    name = e.temp(f"scan_{sanitize(eqn.params['states'][0][0])}")
    lo, hi, nb = e.temp("lo"), e.temp("hi"), e.temp("nb")
    rows = e.dim(Dim.sym(plan.batch))
    made = _transpose_constants(e, eqn, plan.inputs)  # in the part before: one copy for every block
    outer, e.lines = e.lines, Lines(depth=1)
    e.dim_names[plan.batch], e.in_rows = nb, True
    try:
        e.lines(f"{nb} = {hi} - {lo}")
        _scan_loop(e, eqn, history, (plan, lo, hi))
        code = e.lines.render()
    finally:
        e.lines, e.dim_names[plan.batch], e.in_rows = outer, rows, False
        for uid in made:
            del e.transposed[uid]
    free = free_names(code, set(e.helpers) | set(e.functions) | GLOBALS, {lo, hi})
    args = ", ".join(free)
    e.functions[name] = (f"{NJIT_NOGIL}\ndef {name}({args}, {lo}, {hi}):\n"
                         f'    """The recurrence of lines {_lines_of(eqn)} on rows {lo}:{hi} of the batch."""\n'
                         f"{code}")
    e.runtime_calls.add("run_row_blocks")
    e.split(f"run_row_blocks({name}, ({args},), {rows}, {THREADS})",
            f"rows are independent: {name} runs on one block of rows per thread")


def _lines_of(eqn: Eqn) -> str:
    lines = sorted({q.loc.line for q in eqn.params["body"].walk() if q.loc is not None})
    return f"{lines[0]}-{lines[-1]}" if lines else "?"


def _scan_loop(e: Emitter, eqn: Eqn, history: list[str], rows: tuple[RowPlan, str, str] | None) -> None:
    """The loop over steps; with ``rows`` = (plan, lo, hi), on rows lo:hi of every row-wise array."""
    p = eqn.params
    body = p["body"]
    consts, seqs, inits = split_inputs(eqn.inputs, p)
    nc, ns = p["n_consts"], p["n_seqs"]
    length = e.dim(p["length"])
    n, t = e.temp("n"), e.temp("t")
    outputs = Counter(v.uid for v in body.outputs)
    body_inputs = {v.uid for v in body.inputs}
    kinds = rows[0].inputs if rows else ("shared",) * len(body.inputs)
    block = f", {rows[1]}:{rows[2]}" if rows else ""
    lo = rows[1] if rows else ""

    def shifted(idx: Sequence[str]) -> list[str]:  # a block's row i0 is the batch's row lo + i0
        return [f"{lo} + {idx[0]}", *idx[1:]]

    for bv, v, kind in zip(body.inputs[:nc], consts, kinds):
        if kind != ROW or v.uid in e.consts:
            e.alias(bv, v)
        elif v.uid in e.views:
            e.views[bv.uid] = (v, shifted)
        else:
            e.lines(f"{e.define(bv)} = {e.name(v)}[{lo}:{rows[2]}]")
    made = _transpose_constants(e, eqn, kinds)  # none left if the row blocks' caller made them
    with e.lines.block(f"for {n} in range({length}):"):
        e.lines(f"{t} = {length} - 1 - {n}" if p["reverse"] else f"{t} = {n}")
        for bv, v, kind in zip(body.inputs[nc:nc + ns], seqs, kinds[nc:nc + ns]):
            mine = block if kind == ROW else ""
            if v.uid in e.arrays:
                e.lines(f"{e.define(bv)} = {e.name(v)}[{t}{mine}]")
            elif v.uid in e.views:  # read in place through the view: row t of it
                if mine:
                    e.views[bv.uid] = (v, lambda idx, t=t: [t, *shifted(idx)])
                else:
                    e.views[bv.uid] = (v, lambda idx, t=t: [t, *idx])
                e.lines.comment(f"{e.define_view(bv)} = row {t} of {e.define_view(v)}, read in place")
            else:  # a literal
                e.alias(bv, v)
        lagged = iter(body.inputs[nc + ns:])
        init = iter(inits)
        for hist, (_name, lag) in zip(history, p["states"]):
            if lag == 0:
                continue
            start = e.name(next(init)) + (f"[{lo}:{rows[2]}]" if rows else "")
            for k in range(1, lag + 1):
                row = f"{t} + {k}" if p["reverse"] else f"{t} - {k}"
                e.lines(f"{e.define(next(lagged))} = {hist}[{row}{block}] if {n} >= {k} else {start}")
        for hist, v in zip(history, body.outputs):  # computed straight into row t where possible
            if outputs[v.uid] == 1 and v.uid not in body_inputs:
                e.dest[v.uid] = f"{hist}[{t}{block}]"
        e.emit_graph(body)
        for hist, v in zip(history, body.outputs):
            unplaced = e.dest.pop(v.uid, None) is not None  # its rule made no new array (a view)
            if unplaced or outputs[v.uid] > 1 or v.uid in body_inputs:
                e.lines.comment(f"{hist}[{t}] = {e.name(v)}")
                if rows:
                    dst = e.temp(f"{hist}_t")
                    e.lines(f"{dst} = {hist}[{t}{block}]")
                    e.copy(dst, [], v)
                else:
                    e.copy(hist, [t], v)
    for uid in made:
        del e.transposed[uid]


def _transpose_constants(e: Emitter, eqn: Eqn, kinds: Sequence[str]) -> list[int]:
    """Before a recurrence's loop (before its row blocks: once, not per thread): ``W.T`` as a C array
    for each constant matrix ``W`` that a step multiplies by (``h[t-1] @ W``), for ``matmul_nt``.
    Returns the uids of the body inputs it bound."""
    body = eqn.params["body"]
    nc = eqn.params["n_consts"]
    consts = {bv.uid: (v, kind) for bv, v, kind in zip(body.inputs[:nc], eqn.inputs[:nc], kinds)}
    made = []
    for be in body.eqns:
        if be.op != "matmul" or len(be.inputs) != 2:
            continue
        a, b = be.inputs
        v, kind = consts.get(b.uid, (None, ROW))
        if (v is not None and kind != ROW and v.uid in e.arrays and b.uid not in e.transposed
                and b.type.rank == 2 and a.type.rank >= 2 and b.type.is_float):
            name = e.temp(f"{e.name(v)}_t")
            e.lines(f"{name} = np.ascontiguousarray({e.name(v)}.T)  # for matmul_nt: rows of {e.name(v)}.T")
            e.transposed[b.uid] = name
            made.append(b.uid)
    return made


# ---- random draws: lifted to inputs before generation ---------------------------------------------
def lifted_random(e: Emitter, eqn: Eqn) -> None:
    raise AssertionError(f"random op '{eqn.op}' reached the CPU generator: specc.backends.lift should have "
                         f"turned it into an input")


cpu(*(name for name, op in REGISTRY.items() if op.random))(lifted_random)


from .. import loops as loop_rules  # noqa: E402,F401  (rules shared with the CUDA generator, registered for both)
