"""Per-op tests over the registry: NumPy references and shape/dtype rules.

In: every op in :data:`specc.ops.REGISTRY` except ``scan`` (tested with the
recurrences).
Out: three checks per op.

* The reference evaluation (``Op.ref``) against a second computation written
  by hand for this file: Python loops and ``math`` on tiny arrays, never the
  NumPy call the op itself uses; in f32 and f64 (and i32 where allowed), with
  the output dtype preserved.
* The reference agrees with the op's own shape rule on the output's shape and
  dtype.
* The shape rule on symbolic shapes, and the errors it raises on bad inputs.

Each table below lists cases; :func:`test_every_op_has_cases` fails when an
op is registered without an entry, so a new op cannot land untested.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pytest

from specc.ir.dims import Dim, concrete
from specc.ir.core import NUMPY_DTYPES, TensorType
from specc.ops import REGISTRY, DTypeRuleError, RefContext, ShapeRuleError

# scan and fused run body graphs and have their own tests; the gradient-only ops
# (specc.ops.grad) are tested as adjoints of their forward ops in tests/test_vjp.py.
from specc.ops.grad import GRAD_ONLY  # noqa: E402

UNTESTED_HERE = {"scan", "fused", *GRAD_ONLY}
FLOATS = ("f32", "f64")
TOL = {
    "f32": {"rtol": 1e-5, "atol": 1e-6},
    "f64": {"rtol": 1e-12, "atol": 1e-12},
    "i32": {"rtol": 0, "atol": 0},
}


# ---- helpers ---------------------------------------------------------------------------
def d(x: int | str | Dim) -> Dim:
    """A dim from an int (constant), a name (symbol) or a Dim."""
    if isinstance(x, Dim):
        return x
    return Dim.sym(x) if isinstance(x, str) else Dim.const(x)


def ty(dtype: str, *dims: int | str | Dim) -> TensorType:
    return TensorType(dtype, tuple(d(x) for x in dims))


def shape(*dims: int | str | Dim) -> tuple[Dim, ...]:
    return tuple(d(x) for x in dims)


def arr(dtype: str, *dims: int, lo: float = -2.0, hi: float = 2.0, seed: int = 0) -> np.ndarray:
    """Small test data; integers in [-5, 5] for i32."""
    rng = np.random.default_rng(seed)
    if dtype == "i32":
        return rng.integers(-5, 6, size=dims).astype(np.int32)
    return rng.uniform(lo, hi, size=dims).astype(NUMPY_DTYPES[dtype])


def labels(*dims: int, n_classes: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_classes, size=dims).astype(np.int32)


def each(fn: Callable[..., float], *arrays: np.ndarray) -> np.ndarray:
    """Apply a scalar Python function element by element, with NumPy broadcasting."""
    args = np.broadcast_arrays(*arrays)
    flat = [fn(*(float(v) for v in vals)) for vals in zip(*(a.ravel() for a in args))]
    return np.array(flat, dtype=np.float64).reshape(args[0].shape)


def indices(dims: Sequence[int]):
    return itertools.product(*(range(n) for n in dims))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---- hand-written references -----------------------------------------------------------
def matmul_loops(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2-D, 1-D right operand, [..., M, K] @ [K, N] and equal-batch [..., M, K] @ [..., K, N]."""
    if b.ndim == 1:
        return matmul_loops(a, b[:, None])[..., 0]
    if a.ndim > 2:
        bs = [b] * a.shape[0] if b.ndim == 2 else list(b)
        return np.stack([matmul_loops(a[i], bs[i]) for i in range(a.shape[0])])
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n))
    for i, j in indices((m, n)):
        out[i, j] = sum(float(a[i, q]) * float(b[q, j]) for q in range(k))
    return out


def reduce_loops(x: np.ndarray, axes: tuple[int, ...], keepdims: bool, kind: str) -> np.ndarray:
    groups: dict[tuple[int, ...], list[float]] = {}
    for idx in indices(x.shape):
        key = tuple(0 if i in axes else v for i, v in enumerate(idx))
        groups.setdefault(key, []).append(float(x[idx]))
    kept = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    out = np.zeros(kept)
    for key, vals in groups.items():
        out[key] = {"sum": sum(vals), "mean": sum(vals) / len(vals), "max": max(vals)}[kind]
    if keepdims:
        return out
    return out.reshape(tuple(n for i, n in enumerate(x.shape) if i not in axes))


def softmax_rows(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    """Along `axis`, by moving it last and applying the formula to each row."""
    moved = np.moveaxis(x.astype(np.float64), axis, -1)
    out = np.zeros_like(moved)
    for idx in indices(moved.shape[:-1]):
        row = [float(v) for v in moved[idx]]
        total = sum(math.exp(v) for v in row)
        out[idx] = [v - math.log(total) if log else math.exp(v) / total for v in row]
    return np.moveaxis(out, -1, axis)


def out_size(n: int, k: int, stride: int, pad: int, dil: int) -> int:
    """Count the window starts that fit, rather than using the closed formula."""
    span = dil * (k - 1) + 1
    return len(range(-pad, n + pad - span + 1, stride))


def conv_loops(x, w, stride, padding, dilation) -> np.ndarray:
    nd = x.ndim - 2
    (b_n, c_n), s_in, o_n, k_sz = x.shape[:2], x.shape[2:], w.shape[0], w.shape[2:]
    s_out = [out_size(s_in[i], k_sz[i], stride[i], padding[i], dilation[i]) for i in range(nd)]
    out = np.zeros((b_n, o_n, *s_out))
    for b, o, *pos in indices((b_n, o_n, *s_out)):
        acc = 0.0
        for c, *k in indices((c_n, *k_sz)):
            src = [pos[i] * stride[i] - padding[i] + k[i] * dilation[i] for i in range(nd)]
            if all(0 <= src[i] < s_in[i] for i in range(nd)):  # outside: zero padding
                acc += float(x[(b, c, *src)]) * float(w[(o, c, *k)])
        out[(b, o, *pos)] = acc
    return out


def conv_transpose_loops(x, w, stride, padding, dilation, output_padding) -> np.ndarray:
    """Scatter form: out[b, co, s*stride + k*dil - pad] += x[b, ci, s] * w[ci, co, k] (torch's conv_transpose)."""
    nd = x.ndim - 2
    s_out = [(x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w.shape[2 + i] - 1)
             + output_padding[i] + 1 for i in range(nd)]
    out = np.zeros((x.shape[0], w.shape[1], *s_out))
    for b, ci, *pos in indices(x.shape):
        for co, *k in indices(w.shape[1:]):
            dst = [pos[i] * stride[i] + k[i] * dilation[i] - padding[i] for i in range(nd)]
            if all(0 <= dst[i] < s_out[i] for i in range(nd)):
                out[(b, co, *dst)] += float(x[(b, ci, *pos)]) * float(w[(ci, co, *k)])
    return out


def pool_loops(x, kernel, stride, padding, kind: str) -> np.ndarray:
    nd = x.ndim - 2
    s_in = x.shape[2:]
    s_out = [out_size(s_in[i], kernel[i], stride[i], padding[i], 1) for i in range(nd)]
    out = np.zeros((*x.shape[:2], *s_out))
    for b, c, *pos in indices((*x.shape[:2], *s_out)):
        vals = []
        for k in indices(kernel):
            src = [pos[i] * stride[i] - padding[i] + k[i] for i in range(nd)]
            if all(0 <= src[i] < s_in[i] for i in range(nd)):
                vals.append(float(x[(b, c, *src)]))
        # avg_pool counts padding as zeros: divide by the full window size
        out[(b, c, *pos)] = max(vals) if kind == "max" else sum(vals) / math.prod(kernel)
    return out


def cross_entropy_formula(logits: np.ndarray, y: np.ndarray) -> float:
    rows = logits.reshape(-1, logits.shape[-1])
    losses = []
    for row, label in zip(rows, y.ravel()):
        log_z = math.log(sum(math.exp(float(v)) for v in row))
        losses.append(log_z - float(row[int(label)]))
    return sum(losses) / len(losses)


def bce_formula(z: np.ndarray, y: np.ndarray) -> float:
    terms = [
        -(t * math.log(sigmoid(v)) + (1 - t) * math.log(1 - sigmoid(v)))
        for v, t in zip(z.ravel().tolist(), y.ravel().tolist())
    ]
    return sum(terms) / len(terms)


def index_lists(data: Any, key: Sequence[int | slice]) -> Any:
    """Python-list indexing: an int drops an axis, a slice keeps it."""
    if not key:
        return data
    k, rest = key[0], key[1:]
    if isinstance(k, int):
        return index_lists(data[k], rest)
    return [index_lists(row, rest) for row in data[k]]


def transpose_loops(x: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(tuple(x.shape[p] for p in perm))
    for idx in indices(out.shape):
        src = [0] * x.ndim
        for out_axis, in_axis in enumerate(perm):
            src[in_axis] = idx[out_axis]
        out[idx] = x[tuple(src)]
    return out


def concat_lists(arrays: Sequence[np.ndarray], axis: int) -> Any:
    def join(parts: list, depth: int) -> list:
        if depth == axis:
            return [row for p in parts for row in p]
        return [join([p[i] for p in parts], depth + 1) for i in range(len(parts[0]))]

    return join([a.tolist() for a in arrays], 0)


def reshape_flat(x: np.ndarray, new_shape: tuple[int, ...]) -> np.ndarray:
    """Row-major order: element i of the input goes to flat position i of the output."""
    flat = [float(v) for v in x.ravel()]  # ravel is C order
    out = np.zeros(new_shape)
    for i, idx in enumerate(indices(new_shape)):
        out[idx] = flat[i]
    return out


def gelu_tanh(x: float) -> float:
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


# ---- reference cases -------------------------------------------------------------------
@dataclass(frozen=True)
class RefCase:
    """One evaluation of one op, and what it should give by hand."""

    id: str
    op: str
    inputs: Callable[[str], list[np.ndarray]]  # dtype -> input arrays
    expected: Callable[..., Any]  # (*inputs) -> array-like, computed independently
    params: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] = field(default_factory=dict)
    dtypes: tuple[str, ...] = FLOATS
    dims: Mapping[str, int] = field(default_factory=dict)
    out_dtype: str | None = None  # None: the case's dtype
    in_shapes: tuple[tuple[Dim, ...], ...] | None = None  # symbolic shapes for the shape rule
    xfail: str | None = None  # a known bug, for both the value and the shape-rule check

    def params_for(self, dtype: str) -> dict:
        return dict(self.params(dtype) if callable(self.params) else self.params)


UNARY_FORMULAS: dict[str, tuple[Callable[[float], float], tuple[float, float], tuple[str, ...]]] = {
    # op: (formula, input range, dtypes)
    "neg": (lambda x: -x, (-2, 2), ("f32", "f64", "i32")),
    "abs": (abs, (-2, 2), ("f32", "f64", "i32")),
    "exp": (math.exp, (-2, 2), FLOATS),
    "log": (math.log, (0.1, 3), FLOATS),
    "sqrt": (math.sqrt, (0.1, 3), FLOATS),
    "sigmoid": (sigmoid, (-6, 6), FLOATS),
    "tanh": (math.tanh, (-2, 2), FLOATS),
    "relu": (lambda x: x if x > 0 else 0.0, (-2, 2), FLOATS),
    "leaky_relu": (lambda x: x if x > 0 else 0.01 * x, (-2, 2), FLOATS),
    "elu": (lambda x: x if x > 0 else math.exp(x) - 1.0, (-2, 2), FLOATS),
    "gelu": (gelu_tanh, (-3, 3), FLOATS),
    "softplus": (lambda x: math.log1p(math.exp(x)), (-3, 3), FLOATS),
}

BINARY_FORMULAS: dict[str, tuple[Callable[[float, float], float], tuple[str, ...]]] = {
    "add": (lambda a, b: a + b, ("f32", "f64", "i32")),
    "sub": (lambda a, b: a - b, ("f32", "f64", "i32")),
    "mul": (lambda a, b: a * b, ("f32", "f64", "i32")),
    "maximum": (max, ("f32", "f64", "i32")),
    "minimum": (min, ("f32", "f64", "i32")),
    "div": (lambda a, b: a / b, FLOATS),
    "pow": (lambda a, b: a**b, FLOATS),
}


def _unary_cases() -> list[RefCase]:
    cases = []
    for name, (fn, (lo, hi), dtypes) in UNARY_FORMULAS.items():
        cases.append(RefCase(
            name, name,
            lambda dt, lo=lo, hi=hi: [arr(dt, 3, 4, lo=lo, hi=hi)],
            lambda x, fn=fn: each(fn, x),
            dtypes=dtypes,
        ))
    cases += [
        RefCase("leaky_relu-alpha", "leaky_relu", lambda dt: [arr(dt, 2, 5)],
                lambda x: each(lambda v: v if v > 0 else 0.2 * v, x), params={"alpha": 0.2}),
        RefCase("elu-alpha", "elu", lambda dt: [arr(dt, 2, 5)],
                lambda x: each(lambda v: v if v > 0 else 0.5 * (math.exp(v) - 1.0), x),
                params={"alpha": 0.5}),
        RefCase("sigmoid-extreme", "sigmoid",  # the stable form: no overflow warning, no nan
                lambda dt: [np.array([-80.0, -20.0, 0.0, 20.0, 80.0], dtype=NUMPY_DTYPES[dt])],
                lambda x: each(lambda v: 0.5 * (1 + math.tanh(v / 2)), x)),
    ]
    return cases


def _binary_cases() -> list[RefCase]:
    cases = []
    for name, (fn, dtypes) in BINARY_FORMULAS.items():
        lo = 0.5 if name in ("div", "pow") else -2.0  # positive bases and divisors
        cases.append(RefCase(
            f"{name}-broadcast", name,
            lambda dt, lo=lo: [arr(dt, 3, 1, lo=lo, seed=1), arr(dt, 1, 4, lo=lo, seed=2)],
            lambda a, b, fn=fn: each(fn, a, b),
            dtypes=dtypes,
            in_shapes=(shape("B", 1), shape(1, "H")),
            dims={"B": 3, "H": 4},
        ))
        cases.append(RefCase(
            f"{name}-rank", name,  # [H] against [B, H]: the shorter shape is padded on the left
            lambda dt, lo=lo: [arr(dt, 2, 3, lo=lo, seed=3), arr(dt, 3, lo=lo, seed=4)],
            lambda a, b, fn=fn: each(fn, a, b),
            dtypes=dtypes,
        ))
    return cases


def _structural_cases() -> list[RefCase]:
    x54 = lambda dt: [arr(dt, 5, 4)]  # noqa: E731
    any_dt = ("f32", "f64", "i32")
    return [
        RefCase("matmul-2d", "matmul", lambda dt: [arr(dt, 3, 4, seed=1), arr(dt, 4, 2, seed=2)],
                matmul_loops),
        RefCase("matmul-vec", "matmul", lambda dt: [arr(dt, 3, 4, seed=1), arr(dt, 4, seed=2)],
                matmul_loops),
        RefCase("matmul-batch-2d", "matmul", lambda dt: [arr(dt, 2, 3, 4, seed=1), arr(dt, 4, 5, seed=2)],
                matmul_loops),
        RefCase("matmul-batched", "matmul",
                lambda dt: [arr(dt, 2, 3, 4, seed=1), arr(dt, 2, 4, 5, seed=2)], matmul_loops),
        *[
            RefCase(f"{kind}-{axes}-{keep}", kind, lambda dt: [arr(dt, 2, 3, 4)],
                    lambda x, axes=axes, keep=keep, kind=kind: reduce_loops(x, axes, keep, kind),
                    params={"axes": axes, "keepdims": keep},
                    dtypes=any_dt if kind == "max" else FLOATS)
            for kind in ("sum", "mean", "max")
            for axes, keep in (((1,), False), ((0, 2), True), ((0, 1, 2), False))
        ],
        RefCase("concat-axis1", "concat",
                lambda dt: [arr(dt, 2, 3, seed=1), arr(dt, 2, 2, seed=2), arr(dt, 2, 1, seed=3)],
                lambda *xs: concat_lists(xs, 1), params={"axis": 1}, dtypes=any_dt),
        RefCase("concat-axis0", "concat", lambda dt: [arr(dt, 2, 3, seed=1), arr(dt, 1, 3, seed=2)],
                lambda *xs: concat_lists(xs, 0), params={"axis": 0}, dtypes=any_dt,
                in_shapes=(shape("T", 3), shape(1, 3)), dims={"T": 2}),
        RefCase("getitem-neg-int", "getitem", x54, lambda x: index_lists(x.tolist(), [-1]),
                params={"index": (("int", d(-1)),)}, dtypes=any_dt),
        RefCase("getitem-slices", "getitem", x54,
                lambda x: index_lists(x.tolist(), [slice(1, -1), -2]),
                params={"index": (("slice", d(1), d(-1), 1), ("int", d(-2)))}, dtypes=any_dt),
        RefCase("getitem-step", "getitem", x54,
                lambda x: index_lists(x.tolist(), [slice(None, None, 2), slice(1, None, 2)]),
                params={"index": (("slice", None, None, 2), ("slice", d(1), None, 2))}),
        RefCase("getitem-sym-slice", "getitem", x54,  # x[a:a+2] with a = 2
                lambda x: index_lists(x.tolist(), [slice(2, 4)]),
                params={"index": (("slice", d("a"), d("a") + 2, 1),)},
                dims={"a": 2, "T": 5}, in_shapes=(shape("T", 4),)),
        RefCase("getitem-sym-last", "getitem", x54,  # x[T - 1]
                lambda x: index_lists(x.tolist(), [4]),
                params={"index": (("int", d("T") - 1),)},
                dims={"T": 5}, in_shapes=(shape("T", 4),)),
        RefCase("getitem-sym-column", "getitem", x54,  # x[:, t]
                lambda x: index_lists(x.tolist(), [slice(None), 3]),
                params={"index": (("slice", None, None, 1), ("int", d("t")))},
                dims={"t": 3, "T": 5}, in_shapes=(shape("T", 4),)),
        RefCase("getitem-scalar", "getitem", x54, lambda x: index_lists(x.tolist(), [1, -1]),
                params={"index": (("int", d(1)), ("int", d(-1)))}),
        RefCase("reshape-sym", "reshape", lambda dt: [arr(dt, 4, 6)],
                lambda x: reshape_flat(x, (2, 3, 4)), params={"shape": shape("B", 3, 4)},
                dims={"B": 2}, in_shapes=(shape(2 * d("B"), 6),), dtypes=any_dt),
        RefCase("reshape-flatten", "reshape", lambda dt: [arr(dt, 2, 3, 4)],
                lambda x: reshape_flat(x, (24,)), params={"shape": shape(24)}),
        RefCase("transpose", "transpose", lambda dt: [arr(dt, 2, 3, 4)],
                lambda x: transpose_loops(x, (2, 0, 1)), params={"perm": (2, 0, 1)}, dtypes=any_dt),
        RefCase("transpose-2d", "transpose", lambda dt: [arr(dt, 2, 3)],
                lambda x: transpose_loops(x, (1, 0)), params={"perm": (1, 0)}),
        *[
            RefCase(f"cast-to-{to}", "cast",
                    lambda dt: [np.array([[-1.7, -0.2, 0.0], [0.5, 2.9, 3.0]]).astype(NUMPY_DTYPES[dt])],
                    # to i32 truncates toward zero, like C
                    lambda x, to=to: each(lambda v: float(int(v)) if to == "i32" else v, x),
                    params={"dtype": to}, out_dtype=to, dtypes=FLOATS)
            for to in ("f32", "f64", "i32")
        ],
        RefCase("cast-from-i32", "cast", lambda dt: [arr("i32", 2, 3)], lambda x: each(float, x),
                params={"dtype": "f64"}, out_dtype="f64", dtypes=("i32",)),
        RefCase("full", "full", lambda dt: [], lambda: [[2.0] * 3] * 2,
                params=lambda dt: {"shape": shape("B", 3), "value": 2.0, "dtype": dt},
                dims={"B": 2}, dtypes=any_dt),
        RefCase("full-fraction", "full", lambda dt: [], lambda: [[-0.25] * 2] * 3,
                params=lambda dt: {"shape": shape(3, 2), "value": -0.25, "dtype": dt}),
    ]


def _nn_cases() -> list[RefCase]:
    def conv(nd, stride, padding, dilation, x_sz, w_sz):
        p = {"nd": nd, "stride": stride, "padding": padding, "dilation": dilation}
        return RefCase(
            f"conv{nd}d-s{stride}-p{padding}-d{dilation}", "conv",
            lambda dt: [arr(dt, *x_sz, seed=1), arr(dt, *w_sz, seed=2)],
            lambda x, w: conv_loops(x, w, stride, padding, dilation), params=p,
        )

    def conv_t(nd, stride, padding, dilation, output_padding, x_sz, w_sz):
        p = {"nd": nd, "stride": stride, "padding": padding, "dilation": dilation, "output_padding": output_padding}
        return RefCase(
            f"conv_transpose{nd}d-s{stride}-p{padding}-d{dilation}-op{output_padding}", "conv_transpose",
            lambda dt: [arr(dt, *x_sz, seed=1), arr(dt, *w_sz, seed=2)],
            lambda x, w: conv_transpose_loops(x, w, stride, padding, dilation, output_padding), params=p,
        )

    def pool(op, nd, kernel, stride, padding, x_sz, lo=-2.0, hi=2.0):
        p = {"nd": nd, "kernel": kernel, "stride": stride, "padding": padding}
        return RefCase(
            f"{op}{nd}d-k{kernel}-s{stride}-p{padding}-{lo:g}", op, lambda dt: [arr(dt, *x_sz, lo=lo, hi=hi)],
            lambda x: pool_loops(x, kernel, stride, padding, op[:3]), params=p,
        )

    return [
        RefCase("softmax-last", "softmax", lambda dt: [arr(dt, 3, 5)],
                lambda x: softmax_rows(x, 1, log=False), params={"axis": 1}),
        RefCase("softmax-first", "softmax", lambda dt: [arr(dt, 4, 2, 3)],
                lambda x: softmax_rows(x, 0, log=False), params={"axis": 0}),
        RefCase("softmax-large", "softmax",  # would overflow exp without the max shift
                lambda dt: [np.array([[1000.0, 1001.0, 1002.0]], dtype=NUMPY_DTYPES[dt])],
                lambda x: softmax_rows(x - 1001.0, 1, log=False), params={"axis": 1}),
        RefCase("log_softmax-last", "log_softmax", lambda dt: [arr(dt, 3, 5)],
                lambda x: softmax_rows(x, 1, log=True), params={"axis": 1}),
        RefCase("log_softmax-mid", "log_softmax", lambda dt: [arr(dt, 2, 4, 3)],
                lambda x: softmax_rows(x, 1, log=True), params={"axis": 1}),
        conv(1, (1,), (0,), (1,), (2, 3, 7), (4, 3, 3)),
        conv(1, (2,), (1,), (2,), (1, 2, 9), (3, 2, 3)),
        conv(2, (1, 1), (0, 0), (1, 1), (2, 2, 5, 4), (3, 2, 3, 2)),
        conv(2, (2, 1), (1, 2), (1, 2), (1, 3, 6, 5), (2, 3, 2, 3)),
        conv_t(1, (1,), (0,), (1,), (0,), (2, 3, 5), (3, 4, 3)),
        conv_t(1, (2,), (1,), (2,), (1,), (1, 2, 6), (2, 3, 3)),
        conv_t(2, (2, 1), (1, 0), (1, 2), (1, 0), (2, 3, 4, 3), (3, 2, 3, 2)),
        pool("max_pool", 1, (2,), (2,), (0,), (2, 3, 7)),
        pool("max_pool", 2, (3, 2), (1, 2), (1, 0), (2, 2, 5, 6)),
        pool("max_pool", 1, (3,), (2,), (1,), (2, 2, 7), lo=-3, hi=-1),  # padding must not win the max
        pool("avg_pool", 1, (3,), (1,), (1,), (1, 2, 6)),
        pool("avg_pool", 2, (2, 2), (2, 2), (0, 0), (2, 3, 4, 6)),
        RefCase("take", "take", lambda dt: [arr(dt, 6, 3), labels(2, 4, n_classes=6)],
                lambda table, ids: [[table[i].tolist() for i in row] for row in ids.tolist()]),
        RefCase("cross_entropy-2d", "cross_entropy", lambda dt: [arr(dt, 4, 5), labels(4, n_classes=5)],
                cross_entropy_formula),
        RefCase("cross_entropy-3d", "cross_entropy",  # mean over every [B, T] position
                lambda dt: [arr(dt, 2, 3, 4), labels(2, 3, n_classes=4)], cross_entropy_formula),
        RefCase("bce_logits", "bce_logits",
                lambda dt: [arr(dt, 3, 4, lo=-5, hi=5), arr(dt, 3, 4, lo=0, hi=1, seed=5)], bce_formula),
    ]


def _select_cases() -> list[RefCase]:
    """Comparisons, where, stop_gradient, arg-reductions and tri (specc.ops.select), by Python loops."""
    cmps = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
            "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b}

    def grid(dt, *dims, seed=0):  # few distinct values, so that equal pairs occur
        return (np.random.default_rng(seed).integers(-2, 3, dims)).astype(NUMPY_DTYPES[dt])

    def argext(x, axis, best):
        x = np.moveaxis(x, axis, -1)
        out = np.zeros(x.shape[:-1])
        for idx in indices(x.shape[:-1]):
            row = [float(v) for v in x[idx]]
            out[idx] = row.index(best(row))  # the first position on ties
        return out

    cases = [RefCase(f"compare-{c}", "compare", lambda dt: [grid(dt, 3, 1), grid(dt, 1, 4, seed=1)],
                     lambda a, b, f=f: each(lambda u, v: float(f(u, v)), a, b), params={"cmp": c},
                     dtypes=("f32", "f64", "i32")) for c, f in cmps.items()]
    cases += [
        RefCase("where-broadcast", "where", lambda dt: [grid(dt, 3, 1), arr(dt, 1, 4), arr(dt, 3, 4, seed=2)],
                lambda c, a, b: each(lambda u, v, w: v if u != 0 else w, c, a, b), dtypes=("f32", "f64", "i32")),
        RefCase("stop_gradient", "stop_gradient", lambda dt: [arr(dt, 2, 3)], lambda x: each(lambda v: v, x)),
        RefCase("argmax-last", "argmax", lambda dt: [grid(dt, 3, 4)], lambda x: argext(x, 1, max),
                params={"axis": 1}, out_dtype="i32"),
        RefCase("argmax-first-keep", "argmax", lambda dt: [grid(dt, 4, 3)],
                lambda x: argext(x, 0, max)[None, :], params={"axis": 0, "keepdims": True}, out_dtype="i32"),
        RefCase("argmin-last", "argmin", lambda dt: [grid(dt, 2, 3, 4)], lambda x: argext(x, 2, min),
                params={"axis": 2}, out_dtype="i32"),
        RefCase("tri", "tri", lambda dt: [], lambda: [[1.0 if j - i <= 0 else 0.0 for j in range(4)] for i in range(3)],
                params=lambda dt: {"shape": shape(3, 4), "k": 0, "dtype": dt}),
        RefCase("tri-k", "tri", lambda dt: [], lambda: [[1.0 if j - i <= -1 else 0.0 for j in range(3)]
                                                        for i in range(3)],
                params=lambda dt: {"shape": shape(3, "N"), "k": -1, "dtype": dt}, dims={"N": 3}),
    ]
    return cases


REF_CASES: list[RefCase] = _unary_cases() + _binary_cases() + _structural_cases() + _nn_cases() + _select_cases()


def _ref_params() -> list:
    out = []
    for case in REF_CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        out += [pytest.param(case, dt, id=f"{case.id}-{dt}", marks=marks) for dt in case.dtypes]
    return out


def _run(case: RefCase, dtype: str) -> tuple[list[np.ndarray], np.ndarray]:
    ins = case.inputs(dtype)
    outs = REGISTRY[case.op].ref(RefContext(dims=dict(case.dims)), ins, case.params_for(dtype))
    assert len(outs) == 1
    return ins, outs[0]


@pytest.mark.parametrize("case, dtype", _ref_params())
def test_ref_matches_hand_computation(case: RefCase, dtype: str) -> None:
    ins, got = _run(case, dtype)
    want = np.asarray(case.expected(*ins), dtype=np.float64)
    assert got.dtype == np.dtype(NUMPY_DTYPES[case.out_dtype or dtype])
    assert got.shape == want.shape  # assert_allclose alone would broadcast
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got.astype(np.float64), want, **TOL[case.out_dtype or dtype])


@pytest.mark.parametrize("case, dtype", _ref_params())
def test_ref_agrees_with_shape_rule(case: RefCase, dtype: str) -> None:
    ins, got = _run(case, dtype)
    shapes = case.in_shapes or [tuple(d(n) for n in x.shape) for x in ins]
    in_types = [TensorType(_dtype_name(x), s) for x, s in zip(ins, shapes)]
    (out,) = REGISTRY[case.op].infer(in_types, case.params_for(dtype))
    assert concrete(out.shape, case.dims) == got.shape
    assert out.dtype == _dtype_name(got)


def _dtype_name(x: np.ndarray) -> str:
    return next(k for k, v in NUMPY_DTYPES.items() if np.dtype(v) == x.dtype)


# ---- properties not captured by a single expected value --------------------------------
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_rows_sum_to_one(op: str, dtype: str) -> None:
    x = arr(dtype, 4, 6, lo=-10, hi=10)
    (y,) = REGISTRY[op].ref(RefContext(dims={}), [x], {"axis": 1})
    probs = np.exp(y.astype(np.float64)) if op == "log_softmax" else y.astype(np.float64)
    np.testing.assert_allclose(probs.sum(axis=1), np.ones(4), rtol=1e-5)
    assert np.all(probs > 0)


def test_cross_entropy_of_uniform_logits_is_log_classes() -> None:
    logits = np.zeros((3, 7))
    (loss,) = REGISTRY["cross_entropy"].ref(RefContext(dims={}), [logits, labels(3, n_classes=7)], {})
    assert loss.shape == ()
    assert float(loss) == pytest.approx(math.log(7), rel=1e-12)


# ---- random ops ------------------------------------------------------------------------
RANDOM_CASES: dict[str, dict[str, Any]] = {
    "normal": {},
    "uniform": {},
    "dropout_mask": {"p": 0.25},
}


def _draw(op: str, dtype: str = "f64", *, seed: int = 0, stream: int = 1, path=(), training=True,
          dims=(("B", 64), ("H", 80)), **extra) -> np.ndarray:
    params = {"shape": shape("B", "H"), "dtype": dtype, "stream": stream, **RANDOM_CASES[op], **extra}
    ctx = RefContext(dims=dict(dims), seed=seed, path=tuple(path), training=training)
    (out,) = REGISTRY[op].ref(ctx, [], params)
    return out


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", sorted(RANDOM_CASES))
def test_random_is_deterministic_per_seed_and_stream(op: str, dtype: str) -> None:
    first = _draw(op, dtype)
    assert first.dtype == np.dtype(NUMPY_DTYPES[dtype])
    assert first.shape == (64, 80)
    np.testing.assert_array_equal(first, _draw(op, dtype))
    assert not np.array_equal(first, _draw(op, dtype, stream=2)), "streams must differ"
    assert not np.array_equal(first, _draw(op, dtype, seed=1)), "seeds must differ"
    # per-step draws inside a recurrence
    assert not np.array_equal(_draw(op, dtype, path=(0,)), _draw(op, dtype, path=(1,)))


def test_normal_moments() -> None:
    x = _draw("normal", dims=(("B", 100), ("H", 100)))
    assert abs(x.mean()) < 0.05
    assert abs(x.std() - 1.0) < 0.05


def test_uniform_range_and_mean() -> None:
    x = _draw("uniform", dims=(("B", 100), ("H", 100)))
    assert x.min() >= 0.0 and x.max() < 1.0
    assert abs(x.mean() - 0.5) < 0.02


@pytest.mark.parametrize("dtype", FLOATS)
def test_dropout_mask_is_ones_when_not_training(dtype: str) -> None:
    m = _draw("dropout_mask", dtype, training=False, p=0.5)
    assert m.dtype == np.dtype(NUMPY_DTYPES[dtype])
    np.testing.assert_array_equal(m, np.ones((64, 80)))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("p", [0.1, 0.25, 0.6])
def test_dropout_mask_values_and_keep_rate(p: float, dtype: str) -> None:
    m = _draw("dropout_mask", dtype, p=p, dims=(("B", 100), ("H", 100)))
    scale = NUMPY_DTYPES[dtype](1.0 / (1.0 - p))
    assert set(np.unique(m).tolist()) <= {0.0, float(scale)}
    keep = float(np.mean(m != 0))
    assert abs(keep - (1.0 - p)) < 0.03  # about 6 sigma for 10_000 draws
    assert abs(float(m.astype(np.float64).mean()) - 1.0) < 0.05  # inverted dropout: E[mask] = 1


def test_dropout_mask_p_zero_is_ones() -> None:
    np.testing.assert_array_equal(_draw("dropout_mask", p=0.0), np.ones((64, 80)))


# ---- shape rules -----------------------------------------------------------------------
@dataclass(frozen=True)
class ShapeCase:
    id: str
    op: str
    ins: tuple[TensorType, ...]
    params: Mapping[str, Any]
    out: TensorType
    xfail: str | None = None


def _conv_p(nd, stride, padding, dilation=None):
    return {"nd": nd, "stride": stride, "padding": padding, "dilation": dilation or (1,) * nd}


def _pool_p(nd, kernel, stride, padding):
    return {"nd": nd, "kernel": kernel, "stride": stride, "padding": padding}


_RAND_P = {"shape": shape("B", "H"), "dtype": "f32", "stream": 3}
B, H, T = d("B"), d("H"), d("T")

SHAPE_CASES: list[ShapeCase] = [
    ShapeCase("compare-bcast", "compare", (ty("f32", "B", 1), ty("f32", 1, "H")), {"cmp": "lt"}, ty("f32", "B", "H")),
    ShapeCase("compare-i32", "compare", (ty("i32", "B"), ty("i32", "B")), {"cmp": "eq"}, ty("i32", "B")),
    ShapeCase("where-bcast", "where", (ty("i32", "B", 1), ty("f32", "H"), ty("f32", 1, 1)), {}, ty("f32", "B", "H")),
    ShapeCase("stop_gradient", "stop_gradient", (ty("f64", "B", "H"),), {}, ty("f64", "B", "H")),
    ShapeCase("argmax", "argmax", (ty("f32", "B", "C"),), {"axis": 1}, ty("i32", "B")),
    ShapeCase("argmin-keep", "argmin", (ty("f32", "T", "B", "C"),), {"axis": 0, "keepdims": True},
              ty("i32", 1, "B", "C")),
    ShapeCase("tri", "tri", (), {"shape": shape("T", "T"), "k": 0, "dtype": "f32"}, ty("f32", "T", "T")),
    *[ShapeCase(f"{name}-f64", name, (ty("f64", "B", "H"),), {}, ty("f64", "B", "H"))
      for name in UNARY_FORMULAS],
    ShapeCase("neg-i32", "neg", (ty("i32", "T"),), {}, ty("i32", "T")),
    ShapeCase("abs-i32", "abs", (ty("i32", "T"),), {}, ty("i32", "T")),
    *[ShapeCase(f"{name}-bcast", name, (ty("f32", "B", 1), ty("f32", 1, "H")), {}, ty("f32", "B", "H"))
      for name in BINARY_FORMULAS],
    ShapeCase("add-rank", "add", (ty("f32", "T", "B", "H"), ty("f32", "H")), {}, ty("f32", "T", "B", "H")),
    ShapeCase("mul-scalar", "mul", (ty("f64"), ty("f64", "B", "H")), {}, ty("f64", "B", "H")),
    ShapeCase("add-i32", "add", (ty("i32", "B"), ty("i32", "B")), {}, ty("i32", "B")),
    ShapeCase("sub-same", "sub", (ty("f32", B + H, 3), ty("f32", H + B, 3)), {}, ty("f32", B + H, 3)),
    ShapeCase("matmul-2d", "matmul", (ty("f32", "B", "D"), ty("f32", "D", "H")), {}, ty("f32", "B", "H")),
    ShapeCase("matmul-3d@2d", "matmul", (ty("f32", "T", "B", "D"), ty("f32", "D", "H")), {},
              ty("f32", "T", "B", "H")),
    ShapeCase("matmul-vec", "matmul", (ty("f64", "B", "D"), ty("f64", "D")), {}, ty("f64", "B")),
    ShapeCase("matmul-batched", "matmul", (ty("f32", "B", "M", "K"), ty("f32", "B", "K", "N")), {},
              ty("f32", "B", "M", "N")),
    ShapeCase("sum-axis", "sum", (ty("f32", "B", "T", "H"),), {"axes": (1,), "keepdims": False},
              ty("f32", "B", "H")),
    ShapeCase("mean-keep", "mean", (ty("f64", "B", "T", "H"),), {"axes": (0, 2), "keepdims": True},
              ty("f64", 1, "T", 1)),
    ShapeCase("max-all-i32", "max", (ty("i32", "B", "H"),), {"axes": (0, 1), "keepdims": False}, ty("i32")),
    ShapeCase("concat-sym", "concat", (ty("f32", "B", "H"), ty("f32", "B", "D"), ty("f32", "B", 2)),
              {"axis": 1}, ty("f32", "B", H + d("D") + 2)),
    ShapeCase("concat-axis0", "concat", (ty("f32", "T", "H"), ty("f32", 1, "H")), {"axis": 0},
              ty("f32", T + 1, "H")),
    ShapeCase("getitem-int", "getitem", (ty("f32", "T", "B", "H"),), {"index": (("int", d("t")),)},
              ty("f32", "B", "H")),
    ShapeCase("getitem-neg-int", "getitem", (ty("f32", "T", "B"),), {"index": (("int", d(-1)),)},
              ty("f32", "B")),
    ShapeCase("getitem-tail", "getitem", (ty("f32", "T", "H"),), {"index": (("slice", d(1), None, 1),)},
              ty("f32", T - 1, "H")),
    ShapeCase("getitem-last3", "getitem", (ty("f32", "T"),), {"index": (("slice", d(-3), None, 1),)},
              ty("f32", 3)),
    ShapeCase("getitem-window", "getitem", (ty("f32", "B", "T"),),
              {"index": (("slice", None, None, 1), ("slice", d("t"), d("t") + 4, 1))}, ty("f32", "B", 4)),
    ShapeCase("getitem-step-const", "getitem", (ty("f32", 7, "H"),),
              {"index": (("slice", d(1), None, 2),)}, ty("f32", 3, "H")),
    ShapeCase("getitem-step-sym", "getitem", (ty("f32", "T"),), {"index": (("slice", None, None, 2),)},
              ty("f32", (T + 1) // 2)),
    ShapeCase("getitem-all-int", "getitem", (ty("f32", 5, 3),), {"index": (("int", d(1)), ("int", d(-1)))},
              ty("f32")),
    ShapeCase("getitem-sym-bounds-const-axis", "getitem", (ty("f32", 5, 3),),
              {"index": (("slice", d("t"), d("t") + 2, 1),)}, ty("f32", 2, 3)),
    ShapeCase("getitem-start-before-0", "getitem", (ty("f32", 5, 3),),
              {"index": (("slice", d(-10), None, 1),)}, ty("f32", 5, 3)),
    ShapeCase("reshape-flatten", "reshape", (ty("f32", "T", "B", "H"),), {"shape": (T * B, H)},
              ty("f32", T * B, "H")),
    ShapeCase("reshape-split", "reshape", (ty("f64", "B", 2 * H),), {"shape": (B, d(2), H)},
              ty("f64", "B", 2, "H")),
    ShapeCase("transpose", "transpose", (ty("i32", "T", "B", "H"),), {"perm": (1, 0, 2)},
              ty("i32", "B", "T", "H")),
    ShapeCase("cast", "cast", (ty("f32", "B", "H"),), {"dtype": "i32"}, ty("i32", "B", "H")),
    ShapeCase("full", "full", (), {"shape": shape("B", 3), "value": 0.0, "dtype": "f64"}, ty("f64", "B", 3)),
    ShapeCase("softmax", "softmax", (ty("f32", "B", "C"),), {"axis": 1}, ty("f32", "B", "C")),
    ShapeCase("log_softmax", "log_softmax", (ty("f64", "B", "T", "C"),), {"axis": 2},
              ty("f64", "B", "T", "C")),
    ShapeCase("conv1d-same", "conv", (ty("f32", "B", "C", "L"), ty("f32", "O", "C", 3)),
              _conv_p(1, (1,), (1,)), ty("f32", "B", "O", "L")),
    ShapeCase("conv1d-valid", "conv", (ty("f32", "B", 4, "L"), ty("f32", 8, 4, 5)),
              _conv_p(1, (1,), (0,)), ty("f32", "B", 8, d("L") - 4)),
    ShapeCase("conv2d-const", "conv", (ty("f64", "B", 3, 32, 28), ty("f64", 16, 3, 5, 3)),
              _conv_p(2, (2, 1), (2, 1), (1, 2)), ty("f64", "B", 16, 16, 26)),
    ShapeCase("conv2d-sym-stride", "conv", (ty("f32", "B", 3, "H", "W"), ty("f32", 8, 3, 3, 3)),
              _conv_p(2, (2, 2), (1, 1)), ty("f32", "B", 8, (H - 1) // 2 + 1, (d("W") - 1) // 2 + 1)),
    ShapeCase("max_pool2d", "max_pool", (ty("f32", "B", 3, 8, 6),), _pool_p(2, (2, 2), (2, 2), (0, 0)),
              ty("f32", "B", 3, 4, 3)),
    ShapeCase("max_pool1d-sym", "max_pool", (ty("f64", "B", "C", "L"),), _pool_p(1, (3,), (1,), (1,)),
              ty("f64", "B", "C", "L")),
    ShapeCase("avg_pool2d", "avg_pool", (ty("f32", "B", "C", 7, 7),), _pool_p(2, (3, 3), (2, 2), (1, 1)),
              ty("f32", "B", "C", 4, 4)),
    ShapeCase("take", "take", (ty("f32", "V", "D"), ty("i32", "B", "T")), {}, ty("f32", "B", "T", "D")),
    ShapeCase("cross_entropy", "cross_entropy", (ty("f64", "B", "T", "C"), ty("i32", "B", "T")), {},
              ty("f64")),
    ShapeCase("bce_logits", "bce_logits", (ty("f32", "B", "H"), ty("f32", "B", "H")), {}, ty("f32")),
    ShapeCase("normal", "normal", (), _RAND_P, ty("f32", "B", "H")),
    ShapeCase("uniform", "uniform", (), {**_RAND_P, "dtype": "f64"}, ty("f64", "B", "H")),
    ShapeCase("dropout_mask", "dropout_mask", (), {**_RAND_P, "p": 0.1}, ty("f32", "B", "H")),
    ShapeCase("conv_transpose1d", "conv_transpose", (ty("f32", "B", 4, "L"), ty("f32", 4, 2, 3)),
              {**_conv_p(1, (2,), (1,)), "output_padding": (1,)}, ty("f32", "B", 2, (d("L") - 1) * 2 - 2 + 2 + 1 + 1)),
    ShapeCase("conv_transpose2d", "conv_transpose", (ty("f64", "B", 3, 5, 4), ty("f64", 3, 6, 3, 2)),
              {**_conv_p(2, (1, 2), (0, 1), (2, 1)), "output_padding": (0, 1)}, ty("f64", "B", 6, 9, 7)),
    ShapeCase("training_flag", "training_flag", (), {"dtype": "f64"}, ty("f64")),
]


@pytest.mark.parametrize("training", [True, False])
def test_training_flag(training: bool) -> None:
    (out,) = REGISTRY["training_flag"].ref(RefContext(dims={}, training=training), [], {"dtype": "f32"})
    assert out.shape == () and out.dtype == np.float32 and float(out) == (1.0 if training else 0.0)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
     for c in SHAPE_CASES],
)
def test_shape_rule(case: ShapeCase) -> None:
    assert REGISTRY[case.op].infer(list(case.ins), dict(case.params)) == [case.out]


def test_symbolic_conv_output_evaluates_like_the_loops() -> None:
    """The opaque floor-division dims of a strided conv evaluate to the loop count."""
    (out,) = REGISTRY["conv"].infer(
        [ty("f32", "B", 3, "H", "W"), ty("f32", 8, 3, 3, 2)], _conv_p(2, (2, 3), (1, 0), (2, 1))
    )
    for h, w in [(7, 9), (8, 10), (11, 4)]:
        got = concrete(out.shape, {"B": 2, "H": h, "W": w})
        assert got == (2, 8, out_size(h, 3, 2, 1, 2), out_size(w, 2, 3, 0, 1))


@dataclass(frozen=True)
class ErrorCase:
    id: str
    op: str
    ins: tuple[TensorType, ...]
    params: Mapping[str, Any]
    error: type[Exception]


FLOAT_ONLY_UNARY = ("exp", "log", "sqrt", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus")
FLOAT_ONLY_BINARY = ("div", "pow")

ERROR_CASES: list[ErrorCase] = [
    ErrorCase("compare-mix", "compare", (ty("f32", "B"), ty("i32", "B")), {"cmp": "lt"}, DTypeRuleError),
    ErrorCase("compare-no-bcast", "compare", (ty("f32", "B"), ty("f32", "H")), {"cmp": "lt"}, ShapeRuleError),
    ErrorCase("where-mix", "where", (ty("f32", "B"), ty("f32", "B"), ty("i32", "B")), {}, DTypeRuleError),
    ErrorCase("where-no-bcast", "where", (ty("f32", "B"), ty("f32", "H"), ty("f32", "H")), {}, ShapeRuleError),
    ErrorCase("argmax-scalar", "argmax", (ty("f32"),), {"axis": 0}, ShapeRuleError),
    ErrorCase("argmax-axis", "argmax", (ty("f32", "B"),), {"axis": 1}, ShapeRuleError),
    ErrorCase("tri-rank", "tri", (), {"shape": shape("T"), "k": 0, "dtype": "f32"}, ShapeRuleError),
    *[ErrorCase(f"{name}-i32", name, (ty("i32", "B"),), {}, DTypeRuleError) for name in FLOAT_ONLY_UNARY],
    *[ErrorCase(f"{name}-i32", name, (ty("i32", "B"), ty("i32", "B")), {}, DTypeRuleError)
      for name in FLOAT_ONLY_BINARY],
    *[ErrorCase(f"{name}-mix", name, (ty("i32", "B"), ty("f32", "B")), {}, DTypeRuleError)
      for name in BINARY_FORMULAS],
    ErrorCase("add-f32-f64", "add", (ty("f32", "B"), ty("f64", "B")), {}, DTypeRuleError),
    ErrorCase("add-no-bcast", "add", (ty("f32", "B"), ty("f32", "H")), {}, ShapeRuleError),
    ErrorCase("mul-no-bcast", "mul", (ty("f32", "B", 3), ty("f32", "B", 4)), {}, ShapeRuleError),
    ErrorCase("matmul-inner", "matmul", (ty("f32", "B", "D"), ty("f32", "H", "K")), {}, ShapeRuleError),
    ErrorCase("matmul-inner-const", "matmul", (ty("f32", 2, 3), ty("f32", 4, 5)), {}, ShapeRuleError),
    ErrorCase("matmul-vec-inner", "matmul", (ty("f32", "B", "D"), ty("f32", "H")), {}, ShapeRuleError),
    ErrorCase("matmul-scalar", "matmul", (ty("f32"), ty("f32", "D", "H")), {}, ShapeRuleError),
    ErrorCase("matmul-batch", "matmul", (ty("f32", "B", "M", "K"), ty("f32", "T", "K", "N")), {},
              ShapeRuleError),
    ErrorCase("matmul-i32", "matmul", (ty("i32", "B", "D"), ty("i32", "D", "H")), {}, DTypeRuleError),
    ErrorCase("matmul-mix", "matmul", (ty("f32", "B", "D"), ty("f64", "D", "H")), {}, DTypeRuleError),
    ErrorCase("sum-i32", "sum", (ty("i32", "B"),), {"axes": (0,), "keepdims": False}, DTypeRuleError),
    ErrorCase("mean-i32", "mean", (ty("i32", "B"),), {"axes": (0,), "keepdims": False}, DTypeRuleError),
    ErrorCase("max-axis", "max", (ty("f32", "B", "H"),), {"axes": (2,), "keepdims": False}, ShapeRuleError),
    ErrorCase("sum-axis", "sum", (ty("f32", "B", "H"),), {"axes": (0, 5), "keepdims": True}, ShapeRuleError),
    ErrorCase("concat-rank", "concat", (ty("f32", "B", "H"), ty("f32", "B")), {"axis": 0}, ShapeRuleError),
    ErrorCase("concat-dim", "concat", (ty("f32", "B", "H"), ty("f32", "T", "H")), {"axis": 1}, ShapeRuleError),
    ErrorCase("concat-mix", "concat", (ty("f32", "B"), ty("i32", "B")), {"axis": 0}, DTypeRuleError),
    ErrorCase("concat-none", "concat", (), {"axis": 0}, ShapeRuleError),
    ErrorCase("getitem-too-many", "getitem", (ty("f32", "B"),), {"index": (("int", d(0)), ("int", d(0)))},
              ShapeRuleError),
    ErrorCase("getitem-out-of-range", "getitem", (ty("f32", 5),), {"index": (("int", d(5)),)}, ShapeRuleError),
    ErrorCase("getitem-neg-out-of-range", "getitem", (ty("f32", 5),), {"index": (("int", d(-6)),)},
              ShapeRuleError),
    ErrorCase("getitem-empty", "getitem", (ty("f32", 5),), {"index": (("slice", d(3), d(3), 1),)},
              ShapeRuleError),
    ErrorCase("getitem-step0", "getitem", (ty("f32", "T"),), {"index": (("slice", None, None, 0),)},
              ShapeRuleError),
    ErrorCase("reshape-count", "reshape", (ty("f32", "B", "H"),), {"shape": (B, H + 1)}, ShapeRuleError),
    ErrorCase("reshape-const", "reshape", (ty("f32", 2, 3),), {"shape": shape(5)}, ShapeRuleError),
    ErrorCase("transpose-perm", "transpose", (ty("f32", "B", "H"),), {"perm": (0, 0)}, ShapeRuleError),
    ErrorCase("transpose-rank", "transpose", (ty("f32", "B", "H"),), {"perm": (0, 1, 2)}, ShapeRuleError),
    ErrorCase("softmax-i32", "softmax", (ty("i32", "B", "C"),), {"axis": 1}, DTypeRuleError),
    ErrorCase("softmax-axis", "softmax", (ty("f32", "B", "C"),), {"axis": 2}, ShapeRuleError),
    ErrorCase("softmax-scalar", "softmax", (ty("f32"),), {"axis": 0}, ShapeRuleError),
    ErrorCase("log_softmax-i32", "log_softmax", (ty("i32", "C"),), {"axis": 0}, DTypeRuleError),
    ErrorCase("conv-channels", "conv", (ty("f32", "B", 3, "L"), ty("f32", 8, 4, 3)), _conv_p(1, (1,), (0,)),
              ShapeRuleError),
    ErrorCase("conv-channels-sym", "conv", (ty("f32", "B", "C", "H", "W"), ty("f32", 8, "D", 3, 3)),
              _conv_p(2, (1, 1), (0, 0)), ShapeRuleError),
    ErrorCase("conv-rank", "conv", (ty("f32", "B", 3, "L"), ty("f32", 8, 3, 3, 3)), _conv_p(1, (1,), (0,)),
              ShapeRuleError),
    ErrorCase("conv-input-rank", "conv", (ty("f32", 3, "L"), ty("f32", 8, 3, 3)), _conv_p(1, (1,), (0,)),
              ShapeRuleError),
    ErrorCase("conv-too-small", "conv", (ty("f32", "B", 3, 4), ty("f32", 8, 3, 5)), _conv_p(1, (1,), (0,)),
              ShapeRuleError),
    ErrorCase("conv-i32", "conv", (ty("i32", "B", 3, 9), ty("i32", 8, 3, 3)), _conv_p(1, (1,), (0,)),
              DTypeRuleError),
    ErrorCase("conv-mix", "conv", (ty("f32", "B", 3, 9), ty("f64", 8, 3, 3)), _conv_p(1, (1,), (0,)),
              DTypeRuleError),
    ErrorCase("max_pool-rank", "max_pool", (ty("f32", "B", "L"),), _pool_p(1, (2,), (2,), (0,)),
              ShapeRuleError),
    ErrorCase("max_pool-too-small", "max_pool", (ty("f32", "B", 3, 2),), _pool_p(1, (3,), (1,), (0,)),
              ShapeRuleError),
    ErrorCase("avg_pool-i32", "avg_pool", (ty("i32", "B", 3, 8),), _pool_p(1, (2,), (2,), (0,)),
              DTypeRuleError),
    ErrorCase("max_pool-i32", "max_pool", (ty("i32", "B", 3, 8),), _pool_p(1, (2,), (2,), (0,)),
              DTypeRuleError),
    ErrorCase("take-float-ids", "take", (ty("f32", "V", "D"), ty("f32", "B")), {}, DTypeRuleError),
    ErrorCase("take-table-rank", "take", (ty("f32", "V", "D", "E"), ty("i32", "B")), {}, ShapeRuleError),
    ErrorCase("ce-label-shape", "cross_entropy", (ty("f32", "B", "C"), ty("i32", "B", "C")), {},
              ShapeRuleError),
    ErrorCase("ce-label-batch", "cross_entropy", (ty("f32", "B", "C"), ty("i32", "T")), {}, ShapeRuleError),
    ErrorCase("ce-float-labels", "cross_entropy", (ty("f32", "B", "C"), ty("f32", "B")), {}, DTypeRuleError),
    ErrorCase("ce-int-logits", "cross_entropy", (ty("i32", "B", "C"), ty("i32", "B")), {}, DTypeRuleError),
    ErrorCase("bce-shape", "bce_logits", (ty("f32", "B", "H"), ty("f32", "B", 1)), {}, ShapeRuleError),
    ErrorCase("bce-mix", "bce_logits", (ty("f32", "B"), ty("f64", "B")), {}, DTypeRuleError),
    ErrorCase("bce-i32", "bce_logits", (ty("i32", "B"), ty("i32", "B")), {}, DTypeRuleError),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ERROR_CASES])
def test_shape_rule_rejects(case: ErrorCase) -> None:
    with pytest.raises(case.error) as info:
        REGISTRY[case.op].infer(list(case.ins), dict(case.params))
    if case.error is ShapeRuleError:  # a dtype error is the wrong diagnosis for a shape mistake
        assert not isinstance(info.value, DTypeRuleError)
    assert str(info.value)


# ---- coverage --------------------------------------------------------------------------
def test_every_op_has_cases() -> None:
    """A newly registered op fails here until it has a reference case and a shape case."""
    ops = set(REGISTRY) - UNTESTED_HERE
    tables = {
        "REF_CASES or RANDOM_CASES": {c.op for c in REF_CASES} | set(RANDOM_CASES) | {"training_flag"},  # by hand
        "SHAPE_CASES": {c.op for c in SHAPE_CASES},
    }
    missing = {table: sorted(ops - covered) for table, covered in tables.items() if ops - covered}
    assert not missing, f"ops without test cases: {missing}"


def test_tables_name_only_registered_ops() -> None:
    named = {c.op for c in (*REF_CASES, *SHAPE_CASES, *ERROR_CASES)} | set(RANDOM_CASES)
    assert named <= set(REGISTRY), sorted(named - set(REGISTRY))
