"""Gradient tests: the VJP rules, the gradient-only ops and backpropagation through time.

In: the op registry (:data:`specc.ops.REGISTRY`), :func:`specc.transforms.autodiff.backprop`, the reference
interpreter and :func:`specc.transforms.gradcheck.gradcheck`.
Out: three groups of checks, all in float64.

1. Per op: one forward equation on symbolic shapes, its backward built by ``backprop`` from a random
   cotangent ``ct`` (an extra graph input) and run by the interpreter, against central differences of
   the op's NumPy reference along random directions v:
   ``<vjp(ct), v> == (<ct, f(x + eps v)> - <ct, f(x - eps v)>) / (2 eps)`` for every float input.
   Inputs stay away from kinks (relu and abs at 0, ties of max).
2. The gradient-only ops (:data:`specc.ops.grad.GRAD_ONLY`) against definitions independent of their
   own code: adjoint identities with the forward op (``<conv(x, w), dy> == <x, conv_grad_input(dy, w)>``),
   full finite-difference gradients (pooling), values by hand (masks, sizes, one-hot), and their shape
   rules on symbolic shapes.
3. Recurrences (the scan VJP, backpropagation through time): ``gradcheck`` on small specs in float64,
   with parameters moved off their initial values so zero biases hide nothing, at T = 1 and T = 5; and
   every spec in specs/.  A deliberately wrong tanh rule must make gradcheck fail.

Coverage tests fail when a registered op is neither tested here nor exempted with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import specc
from specc.transforms.autodiff import BODY_RULES, GradCtx, backprop, vjp_rule
from specc.ir.builder import GraphBuilder
from specc.ir.dims import Dim, concrete
from specc.transforms.gradcheck import gradcheck
from specc.backends.interp import interpret
from specc.ir.core import NUMPY_DTYPES, Graph, TensorType, Value
from specc.ir.verify import verify
from specc.ops import REGISTRY, DTypeRuleError, RefContext, ShapeRuleError
from specc.ops.grad import GRAD_ONLY

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted((ROOT / "specs").glob("*.nn"))
EPS = 1e-6  # central-difference step (float64)
TOL = 1e-6  # |analytic - numeric| / max(1, |numeric|)


# ---- helpers ---------------------------------------------------------------------------
def d(x: int | str | Dim) -> Dim:
    """A dim from an int (constant), a name (symbol) or a Dim."""
    if isinstance(x, Dim):
        return x
    return Dim.sym(x) if isinstance(x, str) else Dim.const(x)


def ty(dtype: str, *dims: int | str | Dim) -> TensorType:
    return TensorType(dtype, tuple(d(x) for x in dims))


def inner(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def one_eqn_graph(op: str, types: list[TensorType],
                  params: Mapping[str, Any]) -> tuple[GraphBuilder, list[Value], Value]:
    b = GraphBuilder()
    ins = [b.add_input(Value(t, f"in{i}")) for i, t in enumerate(types)]
    (out,) = b.emit(op, ins, dict(params))
    return b, ins, out


def run_op(op: str, arrays: list[np.ndarray], types: list[TensorType], params: Mapping[str, Any],
           dims: Mapping[str, int]) -> np.ndarray:
    """Run one op through a graph, checking the result against the op's own shape rule."""
    b, _, out = one_eqn_graph(op, types, params)
    graph = b.build([out])
    verify(graph)
    (y,) = interpret(graph, arrays, dims)
    assert y.shape == concrete(out.shape, dims)
    assert y.dtype == np.dtype(NUMPY_DTYPES[out.dtype])
    return y


# ---- 1. per-op VJPs against central differences -----------------------------------------
def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Magnitudes in [0.1, 2] with random signs: no input near a kink at 0."""
    return rng.uniform(0.1, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def on_grid(offset: float) -> Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]:
    """Shuffled multiples of 0.25 plus ``offset``: two inputs with different offsets never tie."""
    def make(rng, shape):
        return rng.integers(-8, 9, shape) * 0.25 + offset
    return make


@dataclass(frozen=True)
class Arg:
    shape: tuple[int | str | Dim, ...]
    lo: float = -2.0
    hi: float = 2.0
    dtype: str = "f64"
    make: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray] | None = None
    ids: int | None = None  # an i32 input of ids in [0, ids)
    fixed: Any = None  # an exact value
    wrt: bool = True  # differentiate with respect to it (float inputs only)
    same_as: int | None = None  # the same Value as an earlier input (a repeated operand)

    def value(self, rng: np.random.Generator, dims: Mapping[str, int]) -> np.ndarray:
        shape = concrete(tuple(d(x) for x in self.shape), dims)
        if self.fixed is not None:
            x = np.array(self.fixed)
        elif self.ids is not None:
            x = rng.integers(0, self.ids, shape)
        elif self.make is not None:
            x = self.make(rng, shape)
        else:
            x = rng.uniform(self.lo, self.hi, shape)
        return np.asarray(x, dtype=NUMPY_DTYPES["i32" if self.ids is not None else self.dtype])


@dataclass(frozen=True)
class VjpCase:
    id: str
    op: str
    args: tuple[Arg, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    dims: Mapping[str, int] = field(default_factory=dict)
    eps: float = EPS
    tol: float = TOL
    xfail: str | None = None

    @property
    def distinct(self) -> list[int]:
        """Positions in ``args`` of the distinct operands (a repeated one counts once)."""
        return [i for i, a in enumerate(self.args) if a.same_as is None]


def build_vjp(case: VjpCase) -> tuple[Graph, list[int], Value]:
    """The forward equation and its backward: inputs (distinct operands..., ct), outputs one gradient each."""
    b = GraphBuilder()
    distinct: list[Value] = []
    operands: list[Value] = []
    for i, a in enumerate(case.args):
        if a.same_as is not None:
            operands.append(operands[a.same_as])
            continue
        v = b.add_input(Value(ty("i32" if a.ids is not None else a.dtype, *a.shape), f"in{i}"))
        distinct.append(v)
        operands.append(v)
    (out,) = b.emit(case.op, operands, dict(case.params))
    fwd = b.eqns[-1]
    ct = b.add_input(Value(out.type, "ct"))
    wrt = [j for j, v in enumerate(distinct) if v.type.is_float and case.args[case.distinct[j]].wrt]
    cts = backprop(b, [fwd], {out.uid: ct}, {distinct[j].uid for j in wrt})
    g = GradCtx(b)
    grads = [cts[distinct[j].uid] if distinct[j].uid in cts else g.zeros(distinct[j].type) for j in wrt]
    graph = b.build(grads)
    verify(graph)
    return graph, wrt, out


def vjp_errors(case: VjpCase, seed: int = 0, directions: int = 2) -> list[str]:
    """Mismatches between the interpreted VJP and central differences of the op's reference."""
    rng = np.random.default_rng(seed)
    graph, wrt, out = build_vjp(case)
    distinct = [a.value(rng, case.dims) for a in case.args if a.same_as is None]
    ct = rng.standard_normal(concrete(out.shape, case.dims)).astype(NUMPY_DTYPES[out.dtype])
    grads = interpret(graph, distinct + [ct], case.dims)

    op, ctx = REGISTRY[case.op], RefContext(dims=dict(case.dims))
    pick = case.distinct

    def f(xs: list[np.ndarray]) -> float:
        operands = [xs[pick.index(i)] if a.same_as is None else xs[pick.index(a.same_as)]
                    for i, a in enumerate(case.args)]
        return inner(ct, op.ref(ctx, operands, dict(case.params))[0])

    errors = []
    for j, gj in zip(wrt, grads):
        x = distinct[j]
        if gj.shape != x.shape or gj.dtype != x.dtype:
            errors.append(f"input {j}: gradient is {gj.dtype}{gj.shape}, input {x.dtype}{x.shape}")
            continue
        for _ in range(directions):
            v = rng.standard_normal(x.shape)
            v /= max(np.linalg.norm(v), 1e-12)
            plus, minus = list(distinct), list(distinct)
            plus[j], minus[j] = (x + case.eps * v).astype(x.dtype), (x - case.eps * v).astype(x.dtype)
            numeric = (f(plus) - f(minus)) / (2 * case.eps)
            analytic = inner(gj, v)
            if not abs(analytic - numeric) <= case.tol * max(1.0, abs(numeric)):
                errors.append(f"input {j}: <vjp, v> = {analytic!r}, finite differences {numeric!r}")
    return errors


BH = {"B": 3, "H": 4}
UNARY_DOMAINS: dict[str, dict[str, Any]] = {
    # op: Arg options keeping the input inside the domain and away from kinks
    "neg": {}, "exp": {}, "tanh": {}, "gelu": {"lo": -3, "hi": 3}, "softplus": {"lo": -3, "hi": 3},
    "sigmoid": {"lo": -6, "hi": 6}, "log": {"lo": 0.2, "hi": 3}, "sqrt": {"lo": 0.2, "hi": 3},
    "abs": {"make": away_from_zero}, "relu": {"make": away_from_zero},
    "leaky_relu": {"make": away_from_zero}, "elu": {"make": away_from_zero},
}
BINARY_DOMAINS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "add": ({}, {}), "sub": ({}, {}), "mul": ({}, {}),
    "div": ({}, {"lo": 0.5, "hi": 2}),  # divisors away from 0
    "pow": ({"lo": 0.5, "hi": 2}, {"lo": -1.5, "hi": 2}),  # positive bases, a tensor exponent
    "maximum": ({"make": on_grid(0.1)}, {"make": on_grid(0.0)}),  # never a tie
    "minimum": ({"make": on_grid(0.1)}, {"make": on_grid(0.0)}),
}
BROADCASTS = {
    # id: (shape of a, shape of b, dims)
    "same": (("B", "H"), ("B", "H"), BH),
    "outer": (("B", 1), (1, "H"), BH),  # both broadcast: [B, 1] with [1, H]
    "rank-b": (("B", "H"), ("H",), BH),  # the shorter shape is padded on the left
    "rank-a": (("H",), ("B", "H"), BH),
    "scalar-a": ((), ("B", "H"), BH),
    "one-b": (("T", "B", "H"), (1,), {"T": 2, **BH}),  # a [1] against a rank-3 tensor
    "mid": (("T", 1, "H"), ("B", 1), {"T": 2, **BH}),
}


def _unary_cases() -> list[VjpCase]:
    cases = [VjpCase(name, name, (Arg(("B", "H"), **opts),), dims=BH) for name, opts in UNARY_DOMAINS.items()]
    return cases + [
        VjpCase("tanh-scalar", "tanh", (Arg(()),)),
        VjpCase("leaky_relu-alpha", "leaky_relu", (Arg(("B", "H"), make=away_from_zero),), {"alpha": 0.2}, BH),
        VjpCase("elu-alpha", "elu", (Arg(("B", "H"), make=away_from_zero),), {"alpha": 0.5}, BH),
        VjpCase("sigmoid-extreme", "sigmoid", (Arg((5,), fixed=[-40.0, -8.0, 0.3, 8.0, 40.0]),)),
    ]


def _binary_cases() -> list[VjpCase]:
    cases = [
        VjpCase(f"{name}-{bid}", name, (Arg(sa, **oa), Arg(sb, **ob)), dims=dims)
        for name, (oa, ob) in BINARY_DOMAINS.items()
        for bid, (sa, sb, dims) in BROADCASTS.items()
    ]
    return cases + [
        # `x ** 2` as specs write it: a negative base, a constant exponent not differentiated
        VjpCase("pow-neg-base-const-exp", "pow", (Arg(("B", "H"), make=away_from_zero), Arg((), fixed=3.0, wrt=False)),
                dims=BH),
        # a repeated operand: both contributions must be added up
        VjpCase("mul-self", "mul", (Arg(("B", "H")), Arg((), same_as=0)), dims=BH),
        VjpCase("add-self", "add", (Arg(("B", "H")), Arg((), same_as=0)), dims=BH),
        VjpCase("sub-self", "sub", (Arg(("B", "H")), Arg((), same_as=0)), dims=BH),
        VjpCase("div-self", "div", (Arg(("B", "H"), lo=0.5), Arg((), same_as=0)), dims=BH),
        VjpCase("pow-self", "pow", (Arg(("B", "H"), lo=0.5), Arg((), same_as=0)), dims=BH),
    ]


MKN = {"B": 3, "T": 2, "M": 3, "K": 4, "N": 5}


def _structural_cases() -> list[VjpCase]:
    def reduce(kind, axes, keep):
        return VjpCase(f"{kind}-{''.join(map(str, axes))}-{'keep' if keep else 'drop'}", kind,
                       (Arg(("B", "T", "H")),), {"axes": axes, "keepdims": keep}, {"T": 2, **BH})

    def getitem(cid, index, shape=("T", "B", "H"), dims=None):
        return VjpCase(f"getitem-{cid}", "getitem", (Arg(shape),), {"index": index}, dims or {"T": 5, **BH})

    full = ("slice", None, None, 1)
    return [
        VjpCase("matmul-2d", "matmul", (Arg(("B", "K")), Arg(("K", "N"))), dims=MKN),
        VjpCase("matmul-vec", "matmul", (Arg(("B", "K")), Arg(("K",))), dims=MKN),
        VjpCase("matmul-1d-left", "matmul", (Arg(("K",)), Arg(("K", "N"))), dims=MKN),
        VjpCase("matmul-1d-1d", "matmul", (Arg(("K",)), Arg(("K",))), dims=MKN),
        VjpCase("matmul-3d@2d", "matmul", (Arg(("T", "B", "K")), Arg(("K", "N"))), dims=MKN),
        VjpCase("matmul-3d@1d", "matmul", (Arg(("T", "B", "K")), Arg(("K",))), dims=MKN),
        VjpCase("matmul-batched", "matmul", (Arg(("T", "M", "K")), Arg(("T", "K", "N"))), dims=MKN),
        VjpCase("matmul-batched-4d", "matmul", (Arg((2, "T", "M", "K")), Arg((2, "T", "K", "N"))), dims=MKN),
        VjpCase("matmul-self", "matmul", (Arg(("K", "K")), Arg((), same_as=0)), dims=MKN),
        *[reduce(kind, axes, keep) for kind in ("sum", "mean", "max")
          for axes, keep in (((1,), False), ((0, 2), True), ((0, 2), False), ((0, 1, 2), False), ((2,), True),
                             ((2, 0), False))],
        VjpCase("concat-3-axis1", "concat", (Arg(("B", "H")), Arg(("B", "D")), Arg(("B", 2))), {"axis": 1},
                {"D": 3, **BH}),
        VjpCase("concat-axis0", "concat", (Arg(("T", "H")), Arg((1, "H"))), {"axis": 0}, {"T": 3, **BH}),
        VjpCase("concat-axis2", "concat", (Arg(("T", "B", 2)), Arg(("T", "B", "H"))), {"axis": 2}, {"T": 2, **BH}),
        VjpCase("concat-one", "concat", (Arg(("B", "H")),), {"axis": 0}, BH),
        VjpCase("concat-self", "concat", (Arg(("B", "H")), Arg((), same_as=0), Arg((), same_as=0)), {"axis": 1}, BH),
        getitem("int", (("int", d(1)),)),
        getitem("neg-int", (("int", d(-1)),)),
        getitem("slice-neg-int", (("slice", d(1), d(-1), 1), ("int", d(-2)))),
        getitem("strided", (("slice", None, None, 2), ("slice", d(1), None, 2))),
        getitem("neg-start-step3", (("slice", d(-4), None, 3),)),
        getitem("inner-axis", (full, full, ("slice", d(1), d(3), 1))),
        getitem("sym-slice", (("slice", d("a"), d("a") + 2, 1),), dims={"T": 5, "a": 2, **BH}),
        getitem("sym-last", (("int", d("T") - 1),)),
        getitem("sym-column", (full, ("int", d("t"))), dims={"T": 5, "t": 2, **BH}),
        getitem("all-int", (("int", d(1)), ("int", d(-1)), ("int", d(0)))),
        getitem("sym-strided", (("slice", None, None, 2),)),
        VjpCase("reshape-split", "reshape", (Arg(("B", 2 * d("H"))),), {"shape": (d("B"), d(2), d("H"))}, BH),
        VjpCase("reshape-flatten", "reshape", (Arg(("T", "B", "H")),), {"shape": (d("T") * d("B"), d("H"))},
                {"T": 2, **BH}),
        VjpCase("reshape-to-scalar", "reshape", (Arg((1, 1)),), {"shape": ()}),
        VjpCase("transpose-3d", "transpose", (Arg(("T", "B", "H")),), {"perm": (2, 0, 1)}, {"T": 2, **BH}),
        VjpCase("transpose-2d", "transpose", (Arg(("B", "H")),), {"perm": (1, 0)}, BH),
        VjpCase("transpose-4d", "transpose", (Arg((2, "T", "B", "H")),), {"perm": (0, 2, 3, 1)}, {"T": 2, **BH}),
        VjpCase("cast-f64", "cast", (Arg(("B", "H")),), {"dtype": "f64"}, BH),
        # to f32: the output is rounded to 1e-7, so a unit step (the map is linear) and a looser tolerance
        VjpCase("cast-f32", "cast", (Arg(("B", "H")),), {"dtype": "f32"}, BH, eps=1.0, tol=1e-5),
    ]


def _conv_p(nd, stride, padding, dilation):
    return {"nd": nd, "stride": stride, "padding": padding, "dilation": dilation}


def _pool_p(nd, kernel, stride, padding):
    return {"nd": nd, "kernel": kernel, "stride": stride, "padding": padding}


CONV_CASES = [
    # id: (x shape, w shape, params, dims)
    ("1d", ("B", 3, "L"), (4, 3, 3), _conv_p(1, (1,), (0,), (1,)), {"B": 2, "L": 7}),
    ("1d-s2-p1-d2", ("B", 2, 9), (3, 2, 3), _conv_p(1, (2,), (1,), (2,)), {"B": 1}),
    ("1d-s3-gaps", (2, 2, 8), (3, 2, 2), _conv_p(1, (3,), (0,), (1,)), {}),  # inputs 2 and 5 in no window
    ("2d", ("B", 2, 5, 4), (3, 2, 3, 2), _conv_p(2, (1, 1), (0, 0), (1, 1)), {"B": 2}),
    ("2d-s21-p12-d12", (1, 3, 6, 5), (2, 3, 2, 3), _conv_p(2, (2, 1), (1, 2), (1, 2)), {}),
    ("2d-sym-s2-p1", ("B", 2, "H", "W"), (3, 2, 3, 3), _conv_p(2, (2, 2), (1, 1), (1, 1)), {"B": 2, "H": 7, "W": 6}),
]
CONV_TRANSPOSE_CASES = [
    # id: (x shape [B, C_in, *S], w shape [C_in, C_out, *K], params, dims)
    ("1d", ("B", 3, "L"), (3, 2, 3), {**_conv_p(1, (1,), (0,), (1,)), "output_padding": (0,)}, {"B": 2, "L": 5}),
    ("1d-s2-p1-d2-op1", ("B", 2, 6), (2, 3, 3), {**_conv_p(1, (2,), (1,), (2,)), "output_padding": (1,)}, {"B": 1}),
    ("2d-s21-p10-op10", (1, 3, 4, 3), (3, 2, 3, 2), {**_conv_p(2, (2, 1), (1, 0), (1, 2)), "output_padding": (1, 0)},
     {}),
]
POOL_CASES = [
    # id: (op, x shape, params, dims, input maker)
    ("max1d-k2-s2", "max_pool", ("B", 3, "L"), _pool_p(1, (2,), (2,), (0,)), {"B": 2, "L": 7}, None),
    ("max2d-k32-s12-p10", "max_pool", (2, 2, 5, 6), _pool_p(2, (3, 2), (1, 2), (1, 0)), {}, None),  # overlapping
    ("max1d-neg-padded", "max_pool", (2, 2, 7), _pool_p(1, (3,), (2,), (1,)), {}, {"lo": -3, "hi": -1}),
    ("max1d-s3-gaps", "max_pool", (1, 2, 8), _pool_p(1, (2,), (3,), (0,)), {}, None),
    ("avg1d-k3-s1-p1", "avg_pool", ("B", 2, "L"), _pool_p(1, (3,), (1,), (1,)), {"B": 1, "L": 6}, None),
    ("avg2d-k2-s2", "avg_pool", (2, 3, 4, 6), _pool_p(2, (2, 2), (2, 2), (0, 0)), {}, None),
    ("avg2d-k3-s2-p1", "avg_pool", ("B", "C", 7, 7), _pool_p(2, (3, 3), (2, 2), (1, 1)), {"B": 1, "C": 2}, None),
]


def _nn_cases() -> list[VjpCase]:
    return [
        VjpCase("softmax-last", "softmax", (Arg(("B", "C")),), {"axis": 1}, {"B": 3, "C": 5}),
        VjpCase("softmax-first", "softmax", (Arg((4, "B", 3)),), {"axis": 0}, {"B": 2}),
        VjpCase("softmax-mid", "softmax", (Arg(("B", "T", "C")),), {"axis": 1}, {"B": 2, "T": 4, "C": 3}),
        VjpCase("log_softmax-last", "log_softmax", (Arg(("B", "T", "C")),), {"axis": 2}, {"B": 2, "T": 3, "C": 4}),
        VjpCase("log_softmax-first", "log_softmax", (Arg((4, "B")),), {"axis": 0}, {"B": 3}),
        VjpCase("log_softmax-mid", "log_softmax", (Arg((2, 4, 3)),), {"axis": 1}),
        *[VjpCase(f"conv{cid}", "conv", (Arg(xs), Arg(ws)), p, dims) for cid, xs, ws, p, dims in CONV_CASES],
        *[VjpCase(f"conv_transpose{cid}", "conv_transpose", (Arg(xs), Arg(ws)), p, dims)
          for cid, xs, ws, p, dims in CONV_TRANSPOSE_CASES],
        *[VjpCase(f"{pid}", op, (Arg(xs, **(mk or {})),), p, dims) for pid, op, xs, p, dims, mk in POOL_CASES],
        VjpCase("take-2d-ids", "take", (Arg(("V", "D")), Arg(("B", 4), fixed=[[0, 2, 2, 1], [2, 0, 4, 4]], ids=6)),
                dims={"V": 6, "D": 3, "B": 2}),  # repeated ids; rows 3 and 5 never taken
        VjpCase("take-1d-ids", "take", (Arg((5, "D")), Arg(("B",), ids=5)), dims={"D": 2, "B": 7}),
        VjpCase("take-scalar-id", "take", (Arg((5, 3)), Arg((), fixed=3, ids=5))),
        VjpCase("cross_entropy-2d", "cross_entropy", (Arg(("B", 5)), Arg(("B",), ids=5)), dims={"B": 4}),
        VjpCase("cross_entropy-3d", "cross_entropy", (Arg(("B", "T", 4)), Arg(("B", "T"), ids=4)),
                dims={"B": 2, "T": 3}),
        VjpCase("bce_logits", "bce_logits", (Arg(("B", "H"), lo=-5, hi=5), Arg(("B", "H"), lo=0, hi=1)), dims=BH),
        VjpCase("bce_logits-targets-const", "bce_logits",
                (Arg(("B",), lo=-5, hi=5), Arg(("B",), lo=0, hi=1, wrt=False)), dims={"B": 5}),
    ]


def _grad_op_cases() -> list[VjpCase]:
    """The gradient-only ops that have a VJP of their own (zero, or linear)."""
    return [
        VjpCase("step", "step", (Arg(("B", "H"), make=away_from_zero),), dims=BH),
        VjpCase("sign", "sign", (Arg(("B", "H"), make=away_from_zero),), dims=BH),
        VjpCase("ge", "ge", (Arg(("B", 1), make=on_grid(0.1)), Arg((1, "H"), make=on_grid(0.0))), dims=BH),
        VjpCase("getitem_grad", "getitem_grad", (Arg((2, "H")),),
                {"index": (("slice", d(1), None, 2),), "in_shape": (d(5), d("H"))}, {"H": 3}),
    ]


def _select_cases() -> list[VjpCase]:
    """specc.ops.select: where's gradient goes to the chosen branch; the masks and arg-reductions give none."""
    return [
        VjpCase("where", "where", (Arg(("B", "H"), make=away_from_zero, wrt=False), Arg(("B", "H")), Arg(("B", "H"))),
                dims=BH),
        VjpCase("where-broadcast", "where", (Arg(("B", 1), make=on_grid(0.0), wrt=False), Arg((1, "H")), Arg(())),
                dims=BH),
        VjpCase("where-float-cond", "where", (Arg(("B", "H"), make=on_grid(0.1)), Arg(("B", "H")), Arg((1, "H"))),
                dims=BH),  # a float condition: piecewise constant in it, so no gradient
        VjpCase("stop_gradient", "stop_gradient", (Arg(("B", "H")),), dims=BH,
                xfail="stop_gradient's VJP is zero by design; the difference quotient of its value is not"),
        *[VjpCase(f"compare-{c}", "compare", (Arg(("B", 1), make=on_grid(0.1)), Arg((1, "H"), make=on_grid(0.0))),
                  {"cmp": c}, dims=BH) for c in ("lt", "le", "gt", "ge", "eq", "ne")],
        VjpCase("argmax", "argmax", (Arg(("B", "H"), make=on_grid(0.01)),), {"axis": 1}, dims=BH),
        VjpCase("argmin", "argmin", (Arg(("B", "H"), make=on_grid(0.01)),), {"axis": 0, "keepdims": True}, dims=BH),
    ]


VJP_CASES: list[VjpCase] = (_unary_cases() + _binary_cases() + _structural_cases() + _nn_cases() + _grad_op_cases()
                            + _select_cases())


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
     for c in VJP_CASES],
)
def test_vjp_matches_central_differences(case: VjpCase) -> None:
    errors = vjp_errors(case)
    assert not errors, f"{case.op} ({case.id}): " + "; ".join(errors)


def test_a_wrong_rule_fails_the_per_op_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness is not vacuous: a sigmoid rule missing its (1 - y) factor is caught."""
    monkeypatch.setattr(REGISTRY["sigmoid"], "vjp", lambda g, eqn, cts, needed: [g.mul(cts[0], eqn.outputs[0])])
    assert vjp_errors(VjpCase("sigmoid", "sigmoid", (Arg(("B", "H")),), dims=BH))


def _mask_grad(op: str, x: np.ndarray, params: Mapping[str, Any] | None = None) -> np.ndarray:
    case = VjpCase(op, op, (Arg(x.shape),), params or {})
    graph, _, out = build_vjp(case)
    return interpret(graph, [x, np.ones(concrete(out.shape, {}))], {})[0]


def test_tie_and_kink_conventions() -> None:
    """Where the derivative is undefined, the rules pick a documented subgradient."""
    np.testing.assert_array_equal(_mask_grad("relu", np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(_mask_grad("abs", np.array([-1.0, 0.0, 2.0])), [-1.0, 0.0, 1.0])
    # max over an axis shares the cotangent among the tied maxima
    np.testing.assert_array_equal(_mask_grad("max", np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]),
                                             {"axes": (1,), "keepdims": False}), [[0, 0.5, 0.5], [1, 0, 0]])
    # maximum / minimum give a tie to the first operand
    for op in ("maximum", "minimum"):
        b, ins, out = one_eqn_graph(op, [ty("f64", 3), ty("f64", 3)], {})
        ct = b.add_input(Value(out.type, "ct"))
        cts = backprop(b, [b.eqns[0]], {out.uid: ct}, {v.uid for v in ins})
        ga, gb = interpret(b.build([cts[ins[0].uid], cts[ins[1].uid]]),
                           [np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]), np.ones(3)], {})
        win_a = [0.0, 1.0, 1.0] if op == "maximum" else [1.0, 1.0, 0.0]
        np.testing.assert_array_equal(ga, win_a)
        np.testing.assert_array_equal(gb, 1.0 - np.array(win_a))


def test_integer_inputs_get_no_gradient() -> None:
    """Labels and ids are not differentiated, and a cast to i32 stops the gradient."""
    b = GraphBuilder()
    x = b.add_input(Value(ty("f64", 3), "x"))
    (k,) = b.emit("cast", [x], {"dtype": "i32"})
    (y,) = b.emit("cast", [k], {"dtype": "f64"})
    ct = b.add_input(Value(y.type, "ct"))
    assert x.uid not in backprop(b, list(b.eqns), {y.uid: ct}, {x.uid})


# ---- 2. gradient-only ops --------------------------------------------------------------
@dataclass(frozen=True)
class AdjointCase:
    """<fwd(x, other), dy> == <x, adj(dy, other)>: ``adj`` is the adjoint of a forward op linear in x."""

    id: str
    op: str  # the gradient-only op under test
    fwd: str
    x: Arg
    other: Arg | None  # the forward op's other operand (conv weight, ids), if any
    fwd_params: Mapping[str, Any]
    adj_params: Callable[[TensorType, TensorType | None], dict]  # (x type, other type) -> params
    adj_inputs: Callable[[Value, Value | None, Value], list[Value]]  # (x, other, dy) -> operands
    x_is_first: bool = True  # x is the forward op's first operand
    dims: Mapping[str, int] = field(default_factory=dict)


def _adjoint_cases() -> list[AdjointCase]:
    cases = []
    for cid, xs, ws, p, dims in CONV_CASES:
        cases.append(AdjointCase(f"conv_grad_input-{cid}", "conv_grad_input", "conv", Arg(xs), Arg(ws), p,
                                 lambda xt, wt, p=p: {**p, "in_shape": xt.shape},
                                 lambda x, w, dy: [dy, w], dims=dims))
        cases.append(AdjointCase(f"conv_grad_weight-{cid}", "conv_grad_weight", "conv", Arg(ws), Arg(xs), p,
                                 lambda wt, xt, p=p: {**p, "w_shape": wt.shape},
                                 lambda w, x, dy: [x, dy], x_is_first=False, dims=dims))
    for pid, op, xs, p, dims, _ in POOL_CASES:
        if op == "avg_pool":  # linear in x (max_pool is checked by finite differences below)
            cases.append(AdjointCase(f"avg_pool_grad-{pid}", "avg_pool_grad", "avg_pool", Arg(xs), None, p,
                                     lambda xt, _o, p=p: {**p, "in_shape": xt.shape},
                                     lambda x, _o, dy: [dy], dims=dims))
    getitems = [
        ("int", (("int", d(1)),), ("T", "B", "H")),
        ("neg-int", (("int", d(-1)),), ("T", "B", "H")),
        ("slices", (("slice", d(1), d(-1), 1), ("int", d(-2))), ("T", "B", "H")),
        ("strided", (("slice", None, None, 2), ("slice", d(1), None, 2)), ("T", "B", "H")),
        ("sym", (("slice", d("a"), d("a") + 2, 1), ("slice", None, None, 1), ("int", d("T") - 3)), ("T", "B", "T")),
        ("all-int", (("int", d(2)), ("int", d(0)), ("int", d(-1))), ("T", "B", "H")),
    ]
    for gid, index, shape in getitems:
        cases.append(AdjointCase(f"getitem_grad-{gid}", "getitem_grad", "getitem", Arg(shape), None,
                                 {"index": index}, lambda xt, _o, index=index: {"index": index, "in_shape": xt.shape},
                                 lambda x, _o, dy: [dy], dims={"T": 5, "a": 1, **BH}))
    takes = [
        ("1d", Arg(("B",), fixed=[1, 1, 4, 0, 1, 4, 2], ids=6)),  # repeated ids, row 3 never taken
        ("2d", Arg(("B", 3), fixed=[[0, 2, 2], [2, 2, 5]], ids=6)),
        ("scalar", Arg((), fixed=2, ids=6)),
    ]
    for tid, ids in takes:
        cases.append(AdjointCase(f"take_grad-{tid}", "take_grad", "take", Arg(("V", "D")), ids, {},
                                 lambda tt, _i: {"rows": tt.shape[0]}, lambda t, i, dy: [i, dy],
                                 dims={"V": 6, "D": 3, "B": 7 if tid == "1d" else 2}))
    return cases


ADJOINT_CASES = _adjoint_cases()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ADJOINT_CASES])
def test_adjoint_identity(case: AdjointCase) -> None:
    rng = np.random.default_rng(1)
    b = GraphBuilder()
    x = b.add_input(Value(ty(case.x.dtype, *case.x.shape), "x"))
    other = None
    if case.other is not None:
        dt = "i32" if case.other.ids is not None else case.other.dtype
        other = b.add_input(Value(ty(dt, *case.other.shape), "other"))
    operands = [x] if other is None else ([x, other] if case.x_is_first else [other, x])
    (y,) = b.emit(case.fwd, operands, dict(case.fwd_params))
    dy = b.add_input(Value(y.type, "dy"))
    adj_params = case.adj_params(x.type, None if other is None else other.type)
    (adj,) = b.emit(case.op, case.adj_inputs(x, other, dy), adj_params)
    assert adj.type == x.type  # the shape rule gives the adjoint the type of x, symbolic dims included
    graph = b.build([y, adj])
    verify(graph)
    for _ in range(2):
        xv = case.x.value(rng, case.dims)
        args = [xv] + ([case.other.value(rng, case.dims)] if case.other is not None else [])
        dyv = rng.standard_normal(concrete(y.shape, case.dims))
        yv, adjv = interpret(graph, args + [dyv], case.dims)
        assert adjv.shape == xv.shape
        lhs, rhs = inner(yv, dyv), inner(xv, adjv)
        assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)), (lhs, rhs)


def numeric_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """The full gradient of a scalar function, one central difference per element."""
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        g[idx] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("pid, op, xs, p, dims, mk", [pytest.param(*c, id=c[0]) for c in POOL_CASES])
def test_pool_grad_is_the_finite_difference_gradient(pid, op, xs, p, dims, mk) -> None:
    """max_pool_grad(x, dy) and avg_pool_grad(dy) equal d<pool(x), dy>/dx, element by element."""
    rng = np.random.default_rng(2)
    xt = ty("f64", *xs)
    x = Arg(xs, **(mk or {})).value(rng, dims)
    (yt,) = REGISTRY[op].infer([xt], p)
    dy = rng.standard_normal(concrete(yt.shape, dims))
    ctx = RefContext(dims=dict(dims))
    want = numeric_gradient(lambda z: inner(REGISTRY[op].ref(ctx, [z], p)[0], dy), x)
    grad_p = {**p, "in_shape": xt.shape}
    if op == "max_pool":
        got = run_op("max_pool_grad", [x, dy], [xt, yt], grad_p, dims)
    else:
        got = run_op("avg_pool_grad", [dy], [yt], grad_p, dims)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8)


@dataclass(frozen=True)
class HandCase:
    id: str
    op: str
    inputs: list[np.ndarray]
    params: Mapping[str, Any]
    expected: Any
    dims: Mapping[str, int] = field(default_factory=dict)
    types: list[TensorType] | None = None  # default: the inputs' concrete shapes


def _types_of(arrays: list[np.ndarray]) -> list[TensorType]:
    return [TensorType("i32" if a.dtype == np.int32 else "f64", tuple(d(n) for n in a.shape)) for a in arrays]


HAND_CASES: list[HandCase] = [
    HandCase("step", "step", [np.array([-1.5, -1e-300, 0.0, 1e-300, 0.5])], {}, [0, 0, 0, 1, 1]),
    HandCase("sign", "sign", [np.array([[-2.0, 0.0], [3.0, -1e-300]])], {}, [[-1, 0], [1, -1]]),
    HandCase("ge", "ge", [np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])], {}, [0, 1, 1]),
    HandCase("ge-broadcast", "ge", [np.array([[1.0], [3.0]]), np.array([2.0, 3.0, 0.5])], {},
             [[0, 0, 1], [1, 1, 1]]),
    HandCase("size-sym", "size", [], {"dim": d("B") * d("H") + 1, "dtype": "f64"}, 13.0, {"B": 3, "H": 4}),
    HandCase("size-const", "size", [], {"dim": d(7), "dtype": "f32"}, 7.0),
    HandCase("one_hot", "one_hot", [np.array([2, 0, 1, 2], dtype=np.int32)], {"n": d(3), "dtype": "f64"},
             [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]),
    HandCase("one_hot-2d-sym", "one_hot", [np.array([[1], [0]], dtype=np.int32)], {"n": d("C"), "dtype": "f32"},
             [[[0, 1]], [[1, 0]]], {"C": 2}),
    # max_pool_grad: ties go to the first maximum of a window, as PyTorch
    HandCase("max_pool_grad-tie", "max_pool_grad",
             [np.array([[[1.0, 1.0, 0.0, 2.0, 5.0, 5.0]]]), np.array([[[10.0, 20.0, 30.0]]])],
             _pool_p(1, (2,), (2,), (0,)) | {"in_shape": (d(1), d(1), d(6))}, [[[10, 0, 0, 20, 30, 0]]]),
    # overlapping windows add up where one input is the maximum of several
    HandCase("max_pool_grad-overlap", "max_pool_grad",
             [np.array([[[0.0, 4.0, 1.0, 2.0]]]), np.array([[[1.0, 2.0, 4.0]]])],
             _pool_p(1, (2,), (1,), (0,)) | {"in_shape": (d(1), d(1), d(4))}, [[[0, 3, 0, 4]]]),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in HAND_CASES])
def test_grad_op_values_by_hand(case: HandCase) -> None:
    got = run_op(case.op, case.inputs, case.types or _types_of(case.inputs), case.params, case.dims)
    np.testing.assert_array_equal(got, np.asarray(case.expected, dtype=got.dtype))


@dataclass(frozen=True)
class GradShapeCase:
    id: str
    op: str
    ins: tuple[TensorType, ...]
    params: Mapping[str, Any]
    out: TensorType


B, H, T, L = d("B"), d("H"), d("T"), d("L")
GRAD_SHAPE_CASES: list[GradShapeCase] = [
    GradShapeCase("step", "step", (ty("f64", "B", "H"),), {}, ty("f64", "B", "H")),
    GradShapeCase("sign", "sign", (ty("f32", "T"),), {}, ty("f32", "T")),
    GradShapeCase("ge", "ge", (ty("f64", "B", 1), ty("f64", 1, "H")), {}, ty("f64", "B", "H")),
    GradShapeCase("ge-rank", "ge", (ty("f32", "T", "B", "H"), ty("f32", "H")), {}, ty("f32", "T", "B", "H")),
    GradShapeCase("size", "size", (), {"dim": T * B, "dtype": "f64"}, ty("f64")),
    GradShapeCase("getitem_grad", "getitem_grad", (ty("f64", "B", "H"),),
                  {"index": (("int", T - 1),), "in_shape": (T, B, H)}, ty("f64", "T", "B", "H")),
    GradShapeCase("conv_grad_input", "conv_grad_input", (ty("f32", "B", 8, L - 2), ty("f32", 8, "C", 3)),
                  {**_conv_p(1, (1,), (0,), (1,)), "in_shape": (B, d("C"), L)}, ty("f32", "B", "C", "L")),
    GradShapeCase("conv_grad_weight", "conv_grad_weight", (ty("f64", "B", "C", "L"), ty("f64", "B", 8, L - 2)),
                  {**_conv_p(1, (1,), (0,), (1,)), "w_shape": (d(8), d("C"), d(3))}, ty("f64", 8, "C", 3)),
    GradShapeCase("max_pool_grad", "max_pool_grad", (ty("f32", "B", "C", "H", "W"), ty("f32", "B", "C", 2, 2)),
                  {**_pool_p(2, (2, 2), (2, 2), (0, 0)), "in_shape": (B, d("C"), H, d("W"))},
                  ty("f32", "B", "C", "H", "W")),
    GradShapeCase("avg_pool_grad", "avg_pool_grad", (ty("f64", "B", "C", L - 1),),
                  {**_pool_p(1, (2,), (1,), (0,)), "in_shape": (B, d("C"), L)}, ty("f64", "B", "C", "L")),
    GradShapeCase("take_grad", "take_grad", (ty("i32", "B", "T"), ty("f32", "B", "T", "D")), {"rows": d("V")},
                  ty("f32", "V", "D")),
    GradShapeCase("take_grad-scalar-ids", "take_grad", (ty("i32"), ty("f64", "D")), {"rows": d(10)},
                  ty("f64", 10, "D")),
    GradShapeCase("one_hot", "one_hot", (ty("i32", "B", "T"),), {"n": d("C"), "dtype": "f32"},
                  ty("f32", "B", "T", "C")),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in GRAD_SHAPE_CASES])
def test_grad_op_shape_rule(case: GradShapeCase) -> None:
    assert REGISTRY[case.op].infer(list(case.ins), dict(case.params)) == [case.out]


@pytest.mark.parametrize("op, ins, params, error", [
    pytest.param("step", (ty("i32", "B"),), {}, DTypeRuleError, id="step-i32"),
    pytest.param("sign", (ty("i32", "B"),), {}, DTypeRuleError, id="sign-i32"),
    pytest.param("ge", (ty("f32", "B"), ty("f64", "B")), {}, DTypeRuleError, id="ge-mix"),
    pytest.param("ge", (ty("f32", "B"), ty("f32", "H")), {}, ShapeRuleError, id="ge-no-bcast"),
    pytest.param("take_grad", (ty("i32", "B"), ty("f32", "T", "D")), {"rows": d(5)}, ShapeRuleError,
                 id="take_grad-mismatch"),
    pytest.param("take_grad", (ty("f32", "B"), ty("f32", "B", "D")), {"rows": d(5)}, DTypeRuleError,
                 id="take_grad-float-ids"),
    pytest.param("one_hot", (ty("f32", "B"),), {"n": d(3), "dtype": "f32"}, DTypeRuleError, id="one_hot-float"),
    pytest.param("conv_grad_input", (ty("f32", "B", 8, "L"), ty("f64", 8, 3, 3)),
                 {**_conv_p(1, (1,), (0,), (1,)), "in_shape": (B, d(3), L)}, DTypeRuleError, id="conv_grad_input-mix"),
])
def test_grad_op_shape_rule_rejects(op, ins, params, error) -> None:
    with pytest.raises(error):
        REGISTRY[op].infer(list(ins), dict(params))


def test_every_grad_only_op_is_tested() -> None:
    valued = {c.op for c in ADJOINT_CASES} | {c.op for c in HAND_CASES} | {"max_pool_grad", "avg_pool_grad"}
    shaped = {c.op for c in GRAD_SHAPE_CASES}
    assert not set(GRAD_ONLY) - valued, f"gradient-only ops without a value check: {sorted(set(GRAD_ONLY) - valued)}"
    assert not set(GRAD_ONLY) - shaped, f"gradient-only ops without a shape case: {sorted(set(GRAD_ONLY) - shaped)}"


# ---- coverage over the registry --------------------------------------------------------
EXEMPT: dict[str, str] = {
    # created by the fusion pass after differentiation; never differentiated itself
    "fused": "differentiated before fusion",
    # the recurrence: its VJP (backpropagation through time) is checked end to end by gradcheck below
    "scan": "covered by the recurrence gradchecks",
    # random draws and constants take no inputs, so there is nothing to differentiate
    "normal": "random: no differentiable inputs",
    "uniform": "random: no differentiable inputs",
    "dropout_mask": "random: no differentiable inputs",
    "training_flag": "no inputs (lifted like a draw; value checked in test_ops_ref)",
    "full": "no inputs",
    "tri": "no inputs (a constant mask; value checked in test_ops_ref)",
    "size": "no inputs (value checked by hand above)",
    "one_hot": "integer input only (value checked by hand above)",
}


def test_every_op_is_covered() -> None:
    """A newly registered op fails here until it has a VJP case, a gradient-only test or an exemption."""
    covered = {c.op for c in VJP_CASES} | set(GRAD_ONLY) | set(EXEMPT)
    assert not set(REGISTRY) - covered, f"ops without gradient tests: {sorted(set(REGISTRY) - covered)}"
    assert set(EXEMPT) <= set(REGISTRY), f"stale exemptions: {sorted(set(EXEMPT) - set(REGISTRY))}"


def test_every_forward_op_has_a_vjp_rule() -> None:
    """Each op has a VJP (its own, or autodiff's rule for ops with a body) or says why it has none."""
    no_rule = {name for name in REGISTRY if vjp_rule(name) is None}
    unexplained = {name for name in no_rule if not REGISTRY[name].no_vjp}
    assert not unexplained, f"ops with no VJP and no reason given: {sorted(unexplained)}"
    # the gradient-only adjoints are first-order only; fused is created after differentiation
    assert no_rule <= set(GRAD_ONLY) | {"fused"}, sorted(no_rule - set(GRAD_ONLY) - {"fused"})
    assert set(BODY_RULES) <= set(REGISTRY), sorted(set(BODY_RULES) - set(REGISTRY))
    with_rule = {name for name in REGISTRY if vjp_rule(name) is not None}
    untested = with_rule - {c.op for c in VJP_CASES} - set(EXEMPT)
    assert not untested, f"VJP rules without a central-difference case: {sorted(untested)}"


# ---- 3. recurrences: backpropagation through time --------------------------------------
SCAN_SPECS: dict[str, str] = {
    "elman": """
        model m(x: [T, B, 3], y: i32[B]) {
          param W: [3, 4] = glorot
          param U: [4, 4] = orthogonal
          param b: [4] = zeros
          recur t over x {
            init h = zeros([B, 4])
            h[t] = tanh(x[t] @ W + h[t-1] @ U + b)
          }
          loss = cross_entropy(h[-1], y)
        }""",
    "stdlib_lstm": """
        model m(x: [T, B, 3], y: i32[B]) {
          h = lstm(x, hidden=4)
          loss = cross_entropy(dense(h[-1], 3), y)
        }""",
    "stdlib_gru": """
        model m(x: [T, B, 3], y: i32[B]) {
          h = gru(x, hidden=4)
          loss = cross_entropy(dense(h[-1], 3), y)
        }""",
    "stacked_lstm_gru_rnn": """
        model m(x: [T, B, 3]) {
          loss = mean(rnn(gru(lstm(x, hidden=4), hidden=3), hidden=2) ** 2)
        }""",
    "lag2": """
        model m(x: [T, B, 3]) {
          param W: [3, 4] = glorot
          recur t over x {
            init s = zeros([B, 4]) + 0.2
            s[t] = 0.5 * s[t-1] + 0.3 * tanh(s[t-2]) + x[t] @ W
          }
          loss = mean(s ** 2)
        }""",
    "lag2_only": """
        model m(x: [T, B, 3]) {
          param W: [3, 4] = glorot
          recur t over x {
            init s = zeros([B, 4]) + 0.2
            s[t] = tanh(s[t-2]) + x[t] @ W
          }
          loss = mean(s ** 2)
        }""",
    "reverse": """
        model m(x: [T, B, 3]) {
          param W: [3, 4] = glorot
          param U: [4, 4] = glorot
          recur t over x reverse {
            init h = zeros([B, 4]) + 0.1
            h[t] = tanh(x[t] @ W + h[t+1] @ U)
          }
          loss = mean(h[0] ** 2) + mean(h[-1])
        }""",
    "reverse_lag3_learned_init": """
        model m(x: [T, B, 3]) {
          param W: [3, 4] = glorot
          param h0: [4] = zeros
          recur t over x reverse {
            init s = zeros([B, 4]) + h0
            s[t] = 0.4 * tanh(s[t+1]) + 0.3 * s[t+3] * s[t+1] + x[t] @ W
          }
          loss = mean(s ** 2) + mean(s[0])
        }""",
    "two_states_lags_1_and_2_reverse": """
        model m(x: [T, B, 3], ids: i32[B]) {
          param W: [3, 4] = glorot
          param U: [4, 4] = glorot
          param table: [5, 4] = normal(1.0)
          e = take(table, ids)
          recur t over x reverse {
            init c = zeros([B, 4]) + 0.1
            init h = zeros([B, 4]) - 0.2
            y[t] = tanh(h[t+1] @ U + e)
            c[t] = 0.5 * c[t+2] + 0.3 * tanh(c[t+1]) * y[t] + x[t] @ W
            h[t] = tanh(c[t] + h[t+1] * c[t+2])
          }
          loss = mean(h ** 2) + mean(y * c)
        }""",
    "output_is_a_lagged_read": """
        model m(x: [T, B, 3]) {
          recur t over x {
            init h = zeros([B, 3]) + 0.5
            h[t] = h[t-1] * x[t]
            g[t] = h[t-1]
          }
          loss = mean(h * g) + sum(g[-1])
        }""",
    "per_step_output": """
        model m(x: [T, B, 3]) {
          param W: [3, 4] = glorot
          param U: [4, 4] = glorot
          param V: [4, 2] = glorot
          recur t over x {
            init h = zeros([B, 4])
            h[t] = tanh(x[t] @ W + h[t-1] @ U)
            y[t] = h[t] @ V
          }
          loss = mean(y ** 2)
        }""",
    "learned_h0_whole_sequence": """
        model m(x: [T, B, 3]) {
          param W: [3, 4] = glorot
          param U: [4, 4] = glorot
          param h0: [4] = zeros
          recur t over x {
            init h = zeros([B, 4]) + h0
            h[t] = tanh(x[t] @ W + h[t-1] @ U)
          }
          loss = mean(h) + sum(h[-1] * h[0])
        }""",
    "bidirectional": """
        model m(x: [T, B, 3], y: i32[T, B]) {
          param Wf: [3, 4] = glorot
          param Uf: [4, 4] = glorot
          param Wb: [3, 4] = glorot
          param Ub: [4, 4] = glorot
          recur t over x {
            init f = zeros([B, 4])
            f[t] = tanh(x[t] @ Wf + f[t-1] @ Uf)
          }
          recur t over x reverse {
            init g = zeros([B, 4])
            g[t] = tanh(x[t] @ Wb + g[t+1] @ Ub)
          }
          loss = cross_entropy(dense(concat(f, g), 5), y)
        }""",
    "layer_norm_cell": """
        model m(x: [T, B, 3]) {
          param W: [3, 4] = glorot
          param U: [4, 4] = glorot
          recur t over x {
            init h = zeros([B, 4])
            init c = zeros([B, 4])
            c[t] = 0.7 * c[t-1] + tanh(x[t] @ W + h[t-1] @ U)
            h[t] = tanh(layer_norm(c[t], name="ln"))
          }
          loss = mean(h ** 2)
        }""",
    "dense_in_body": """
        model m(x: [T, B, 3]) {
          recur t over x {
            init h = zeros([B, 4])
            h[t] = tanh(dense(concat(x[t], h[t-1]), 4, name="cell"))
          }
          loss = mean(h ** 2)
        }""",
    "dropout_and_normal_in_body": """
        model m(x: [T, B, 3]) {
          param W: [3, 4] = glorot
          param U: [4, 4] = glorot
          recur t over x {
            init h = zeros([B, 4])
            h[t] = tanh(dropout(x[t] @ W, 0.3) + h[t-1] @ U + 0.1 * normal([B, 4]))
          }
          loss = mean(h ** 2)
        }""",
    "vae_sampling": """
        model m(x: [B, 6]) {
          mu = dense(x, 3)
          logvar = dense(x, 3)
          z = mu + exp(0.5 * logvar) * normal([B, 3])
          loss = 6 * binary_cross_entropy(sigmoid(dense(z, 6)), x) + gaussian_kl(mu, logvar)
        }""",
    "computed_seq_and_const": """
        model m(x: [T, B, 3], z: [T, B, 4]) {
          param W: [3, 4] = glorot
          param U: [4, 4] = glorot
          xs = tanh(x @ W)
          q = mean(z, axis=0)
          recur t over xs {
            init h = tanh(x[0] @ W)
            h[t] = tanh(xs[t] + h[t-1] @ U + z[t] * q)
          }
          loss = mean(h ** 2)
        }""",
    "aliased_outputs": """
        model m(x: [T, B, 4]) {
          param U: [4, 4] = glorot
          recur t over x {
            init h = zeros([B, 4]) + 0.3
            init k = zeros([B, 4]) + 0.5
            h[t] = tanh(x[t] + h[t-1] @ U)
            c[t] = h[t]
            y[t] = x[t]
            k[t] = k[t-1]
          }
          loss = mean(c * y) + mean(k * h) + mean(h)
        }""",
    "embedding_in_body": """
        model m(ids: i32[T, B], x: [T, B, 3]) {
          param table: [5, 3] = normal(1.0)
          param U: [3, 3] = glorot
          recur t over x {
            init h = zeros([B, 3])
            h[t] = tanh(take(table, ids[t]) * x[t] + h[t-1] @ U)
          }
          loss = mean(h ** 2)
        }""",
    "unused_state": """
        model m(x: [T, B, 3]) {
          param W: [3, 3] = glorot
          recur t over x {
            init h = zeros([B, 3])
            init acc = zeros([B, 3])
            h[t] = tanh(x[t] @ W + h[t-1])
            acc[t] = acc[t-1] + h[t]
          }
          loss = mean(h[0] ** 2)
        }""",
    "no_sequence_read": """
        model m(x: [T, B, 3]) {
          param U: [3, 3] = glorot
          recur t over x {
            init h = tanh(x[0])
            h[t] = tanh(h[t-1] @ U)
          }
          loss = mean(h ** 2)
        }""",
    "recurrence_inside_recurrence": """
        layer inner(x: [S, B, D]) -> [S, B, D] {
          param W: [D, D] = glorot
          recur s over x {
            init g = zeros([B, D])
            g[s] = tanh(g[s-1] @ W + x[s])
          }
          return g
        }
        model m(x: [T, B, 3]) {
          param U: [3, 3] = glorot
          recur t over x {
            init h = zeros([B, 3])
            g = inner(x * h[t-1], name="in")
            h[t] = tanh(h[t-1] @ U + mean(g, axis=0) + x[t])
          }
          loss = mean(h ** 2)
        }""",
}


def _compile(source: str) -> specc.Model:
    return specc.compile("dim T, B\n" + source, dtype="float64")


def _reads_time(model: specc.Model) -> bool:
    return any("T" in dim.symbols for i in model.program.inputs for dim in i.value.shape)


def _id_range(model: specc.Model, v: Value) -> int:
    """How many ids an integer input may take: the classes of a cross_entropy or the rows of a take."""
    for eqn in model.program.graph.walk():
        if eqn.op == "cross_entropy" and eqn.inputs[1] is v:
            return eqn.inputs[0].shape[-1].value
        if eqn.op == "take" and eqn.inputs[1] is v:
            return eqn.inputs[0].shape[0].value
    return 2


def gradcheck_model(model: specc.Model, sizes: Mapping[str, int], seed: int = 0, tol: float = TOL) -> list[str]:
    """gradcheck every parameter and float input at parameters moved off their initial values."""
    prog = model.program
    rng = np.random.default_rng(seed)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in model.init_params(seed).items()}
    dims = dict(prog.dims)
    for info in prog.inputs:
        for dim in info.value.shape:
            for s in dim.symbols:
                dims.setdefault(s, sizes.get(s, 2))
    inputs = {}
    for info in prog.inputs:
        shape = concrete(info.value.shape, dims)
        if info.value.type.is_float:
            inputs[info.name] = rng.uniform(0.0, 1.0, shape)  # in [0, 1]: valid targets for a BCE too
        else:
            inputs[info.name] = rng.integers(0, _id_range(model, info.value), shape).astype(np.int32)
    checks = gradcheck(prog, params, inputs, dims, wrt_inputs=True, directions=2, seed=seed)
    wanted = set(params) | {i.name for i in prog.inputs if i.value.type.is_float}
    assert {c.name for c in checks} == wanted  # nothing skipped
    return [f"{c.name}: analytic {c.analytic!r}, numeric {c.numeric!r}" for c in checks if not c.ok(tol)]


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("name", sorted(SCAN_SPECS))
def test_recurrence_gradcheck(name: str, steps: int) -> None:
    errors = gradcheck_model(_compile(SCAN_SPECS[name]), {"T": steps, "B": 2})
    assert not errors, f"{name}, T={steps}: " + "; ".join(errors)


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_shipped_spec_gradcheck(path: Path) -> None:
    model = specc.compile(path, dtype="float64")
    for steps in [1, 5] if _reads_time(model) else [None]:
        errors = gradcheck_model(model, {"T": steps or 1, "B": 2})
        assert not errors, f"{path.name}, T={steps}: " + "; ".join(errors)


def test_a_wrong_tanh_rule_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """gradcheck is not vacuous: a tanh VJP of 1 - y instead of 1 - y^2, inside a recurrence, is reported."""
    model = _compile(SCAN_SPECS["elman"])
    assert not gradcheck_model(model, {"T": 3, "B": 2})

    def wrong(g, eqn, cts, needed):
        (y,), (ct,) = eqn.outputs, cts
        return [g.mul(ct, g.sub(g.const(1.0, y.dtype), y))]

    monkeypatch.setattr(REGISTRY["tanh"], "vjp", wrong)
    assert gradcheck_model(model, {"T": 3, "B": 2})


def test_registering_an_op_without_a_vjp_or_a_reason_fails() -> None:
    from specc.ops.core import Op, register

    with pytest.raises(ValueError, match="vjp"):
        register(Op("no_such_op", lambda ins, p: [], lambda ctx, ins, p: []))
    assert "no_such_op" not in REGISTRY
