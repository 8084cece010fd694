"""Lowering pieces both targets use, written against the emitter protocol (:class:`~specc.backends.emitter.Emitter`).

In: an emitter and an equation (or part of one: an operand expression, an accumulator's name).
Out: code lines through the emitter, or expressions as text.

* scalar templates: the elementwise ops whose text is the same on every target (operators,
  ``max``/``min``/``abs``, typed literals, casts); each target adds its math (:data:`SCALAR`);
* the rule makers :func:`elementwise_with` and :func:`fused_with`, given a target's templates;
* reductions (:func:`accumulate`, :func:`reduce_result`, :func:`row_max`), window arithmetic of
  convolutions and pools (:func:`position`, :func:`window`), getitem's index map (:func:`index_map`);
* the sources of index helpers (:func:`wrap_index_source`, :func:`slice_start_source`) as plain
  Python, which each target decorates for its kernels.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Callable, Sequence

from ..ir.core import Eqn, Value
from ..ir.dims import Dim
from ..ops.core import broadcast
from .emitter import Emitter, IndexMap, Scope

# (emitter, equation, operand expressions) -> the result's expression.  Operands are atoms
# (names, loads, literals), so no template needs parentheses around them.
ScalarRule = Callable[[Emitter, Eqn, Sequence[str]], str]
CONSTANT = ("full", "size")  # no inputs: a literal (or dim arithmetic) wherever elementwise code reads them


def dt(eqn: Eqn) -> str:
    """The dtype of an equation's (first) result."""
    return eqn.outputs[0].dtype


def call(fn: str) -> ScalarRule:
    return lambda e, q, a: f"{fn}({a[0]})"


def helper_call(kind: str) -> ScalarRule:
    """A call of the target's helper ``kind`` for the result's dtype (``sigmoid_f32(x)``)."""
    return lambda e, q, a: f"{e.helper(kind, dt(q))}({a[0]})"


def infix(op: str) -> ScalarRule:
    return lambda e, q, a: f"{a[0]} {op} {a[1]}"


def _pow(e: Emitter, q: Eqn, a: Sequence[str]) -> str:
    if a[1] == e.lit(2.0, dt(q)):  # x ** 2: NumPy squares exactly, so must we
        return f"{a[0]} * {a[0]}"
    return f"{a[0]} ** {a[1]}"


def _leaky_relu(e: Emitter, q: Eqn, a: Sequence[str]) -> str:
    return f"({a[0]} if {a[0]} > 0 else {e.lit(q.params.get('alpha', 0.01), dt(q))} * {a[0]})"


CMP_SYMBOL = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def _indicator(e: Emitter, q: Eqn, condition: str) -> str:
    return f"({e.lit(1.0, dt(q))} if {condition} else {e.lit(0.0, dt(q))})"


# The templates every target shares; a target's own table adds exp, log, sqrt, tanh, sigmoid, elu,
# gelu, softplus and sign.
SCALAR: dict[str, ScalarRule] = {
    "neg": lambda e, q, a: f"-{a[0]}",
    "abs": call("abs"),
    "relu": lambda e, q, a: f"max({a[0]}, {e.lit(0.0, dt(q))})",
    "leaky_relu": _leaky_relu,
    "add": infix("+"),
    "sub": infix("-"),
    "mul": infix("*"),
    "div": infix("/"),
    "pow": _pow,
    "maximum": lambda e, q, a: f"max({a[0]}, {a[1]})",
    "minimum": lambda e, q, a: f"min({a[0]}, {a[1]})",
    "cast": lambda e, q, a: f"{e.np_dtype(q.params['dtype'])}({a[0]})",
    "full": lambda e, q, a: e.lit(q.params["value"], q.params["dtype"]),
    "size": lambda e, q, a: f"{e.np_dtype(q.params['dtype'])}({e.dim(q.params['dim'])})",
    "step": lambda e, q, a: _indicator(e, q, f"{a[0]} > 0"),
    "ge": lambda e, q, a: _indicator(e, q, f"{a[0]} >= {a[1]}"),
    # comparisons and selection (specc.ops.select): masks are 0/1 of the operands' dtype
    "compare": lambda e, q, a: _indicator(e, q, f"{a[0]} {CMP_SYMBOL[q.params['cmp']]} {a[1]}"),
    "where": lambda e, q, a: f"({a[1]} if {a[0]} != 0 else {a[2]})",
    "stop_gradient": lambda e, q, a: a[0],
}


def constant_value(e: Emitter, scalar: dict[str, ScalarRule], eqn: Eqn) -> str:
    """The literal of a ``full`` or ``size``; the variables it reads (dims) are read where it is inlined."""
    with e.in_scope(Scope()) as reads:
        value = scalar[eqn.op](e, eqn, [])
    e.const_uses[eqn.outputs[0].uid] = list(reads.uses)
    return value


def elementwise_with(scalar: dict[str, ScalarRule]) -> Callable[[Emitter, Eqn], None]:
    """The elementwise rule of a target whose scalar templates are ``scalar``: one output element per
    iteration of ``e.parallel`` (a loop nest on the CPU, threads on CUDA)."""
    def elementwise(e: Emitter, eqn: Eqn) -> None:
        """Operands broadcast by their index expressions."""
        (out,) = eqn.outputs
        o = e.alloc(out)
        with e.phase(eqn.op), e.parallel(out.shape) as idx:
            e.use(o)
            args = [e.element(v, idx, out.shape) for v in eqn.inputs]
            e.lines(f"{e.at(o, idx)} = {scalar[eqn.op](e, eqn, args)}")

    return elementwise


def fused_with(scalar: dict[str, ScalarRule]) -> Callable[[Emitter, Eqn], None]:
    """The rule of a fused group for a target whose scalar templates are ``scalar``: one iteration of
    ``e.parallel`` over the group's domain, each body value a scalar local of it."""
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
                if be.op in CONSTANT:  # a literal where it is read
                    e.consts[bo.uid] = constant_value(e, scalar, be)
                else:
                    expr = scalar[be.op](e, be, [e.element(v, idx, domain) for v in be.inputs])
                    e.head(be)
                    e.lines(f"{e.local(bo)} = {expr}")
            for o, v, bo in zip(outs, eqn.outputs, body.outputs):
                e.use(o)
                e.lines(f"{e.at(o, e.broadcast_index(v.shape, idx, domain))} = {e.element(bo, idx, domain)}")
        for bv in (*body.inputs, *(be.outputs[0] for be in body.eqns)):
            e.scalars.pop(bv.uid, None)

    return fused


# ---- reductions -----------------------------------------------------------------------------------
def accumulate(e: Emitter, eqn: Eqn, acc: str, load: str) -> None:
    """One step of a sum (``acc += load``) or a max."""
    if eqn.op == "max":
        with e.lines.block(f"if {load} > {acc}:"):
            e.lines(f"{acc} = {load}")
    else:
        e.lines(f"{acc} += {load}")


def reduce_result(e: Emitter, eqn: Eqn, dst: str, acc: str, x: Value, reduced: list[int]) -> None:
    """``dst`` = the accumulator (divided by the count of reduced elements for a mean)."""
    if eqn.op == "mean":
        e.lines(f"{dst} = {acc} / {paren(e.count([x.shape[ax] for ax in reduced]))}")
    else:
        e.lines(f"{dst} = {acc}")


def paren(expr: str) -> str:
    return expr if expr.isidentifier() or expr.isdigit() else f"({expr})"


def row_max(e: Emitter, m: str, n: str, load: str) -> None:
    """``m`` = the max of ``load`` over ``j0`` in ``range(n)``."""
    e.lines(f"{m} = -np.inf")
    with e.lines.block(f"for j0 in range({n}):"):
        with e.lines.block(f"if {load} > {m}:"):
            e.lines(f"{m} = {load}")


# ---- windows of convolutions and pools --------------------------------------------------------------
# Names: i0 (batch), i1 (channel), i2, i3, ... the loops of the equation's output; j0, j1, ... inner
# loops; k0, k1, ... the taps of a window; u0, u1, ... input positions.
def position(e: Emitter, stack: ExitStack, s: int, pos: str, tap: str, stride: int, dil: int, pad: int,
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


def window(e: Emitter, stack: ExitStack, x: Value, kernel: Sequence[str], p, dil: Sequence[int]) -> list[str]:
    """Loops over the taps k0, k1, ... of the window at output position i2, i3, ...; returns u0, u1, ..."""
    us = []
    for s, k in enumerate(kernel):
        stack.enter_context(e.lines.block(f"for k{s} in range({k}):"))
        us.append(position(e, stack, s, f"i{2 + s}", f"k{s}", p["stride"][s], dil[s], p["padding"][s],
                           x.shape[2 + s]))
    return us


def taps(kernel: Sequence) -> list[str]:
    return [f"k{s}" for s in range(len(kernel))]


def pool_size(p) -> int:
    size = 1
    for k in p["kernel"]:
        size *= k
    return size


# ---- indexing ------------------------------------------------------------------------------------------
def index_map(e: Emitter, x: Value, index, part: Value) -> IndexMap:
    """For ``part = x[index]``: a function from an index of ``part`` to the index of ``x`` it reads.

    Each axis of x is a fixed index (checked, negative from the end), ``start + i * step`` of an axis
    of ``part`` (a slice: NumPy's clamping of the start), or an axis of ``part`` (those after the index).
    Setup code (run-time normalisation of symbolic indices) is emitted here.
    """
    where: list[str] = []  # templates over part's index: "{0}", "3 + {1} * 2", "k"
    names: list[str] = []  # the variables of the setup code that the indices read
    axis = 0  # the next axis of part
    for ax, entry in enumerate(index):
        n = x.shape[ax]
        if entry[0] == "int":
            k: Dim = entry[1]
            if k.is_const and n.is_const and -n.value <= k.value < n.value:
                where.append(str(k.value % n.value))
            else:
                name = e.index_value("k", "wrap_index", [e.dim(k), e.dim(n)])
                where.append(name)
                names.append(name)
        else:
            _, lo, _hi, step = entry  # the stop only sets the length: part's shape
            if lo is None:
                start = "0"
            elif lo.is_const and n.is_const:
                start = str(slice(lo.value, None, step).indices(n.value)[0])
            else:
                count = e.dim(part.shape[axis])
                start = e.index_value("start", "slice_start", [e.dim(lo), e.dim(n), count, str(step)])
                names.append(start)
            i = f"{{{axis}}}" if step == 1 else f"{{{axis}}} * {step}"
            where.append(i if start == "0" else f"{start} + {i}")
            axis += 1
    rest = [f"{{{a}}}" for a in range(axis, axis + x.type.rank - len(index))]
    return _Templates(where + rest, names)


class _Templates:
    """An index map given as one template per axis; ``names``: the variables the templates read."""

    def __init__(self, templates: list[str], names: list[str]) -> None:
        self.templates, self.names = templates, names

    def __call__(self, idx: Sequence[str]) -> list[str]:
        return [t.format(*idx) for t in self.templates]


def wrap_index(i, n):
    """NumPy's rule for an integer index: a negative one counts from the end."""
    if i < 0:
        i += n
    if i < 0 or i >= n:
        raise IndexError("index out of range")
    return i


def slice_start(start, n, count, step):
    """NumPy's rule for a slice start (step > 0), checked against the length the shape rule gave."""
    if start < 0:
        start += n
    start = min(max(start, 0), n)
    if count > 0 and start + (count - 1) * step >= n:
        raise IndexError("slice out of range")
    return start


def wrap_index_source(name: str) -> str:
    """:func:`wrap_index` as source text named ``name``: plain Python (a target adds its decorator)."""
    return _source_as(wrap_index, name)


def slice_start_source(name: str) -> str:
    """:func:`slice_start` as source text named ``name``: plain Python (a target adds its decorator)."""
    return _source_as(slice_start, name)


def _source_as(fn, name: str) -> str:
    """The source of one of the functions above, renamed: the generated kernels' copy of the same rule that
    a CPU module's Python entry calls directly (specc.backends.cpu.runtime)."""
    import inspect

    return inspect.getsource(fn).replace(f"def {fn.__name__}(", f"def {name}(", 1)


__all__ = ["CONSTANT", "SCALAR", "ScalarRule", "accumulate", "call", "constant_value", "dt", "elementwise_with", "fused_with",
           "helper_call", "index_map", "infix", "paren", "pool_size", "position", "reduce_result", "row_max",
           "slice_start", "slice_start_source", "taps", "window", "wrap_index", "wrap_index_source"]
