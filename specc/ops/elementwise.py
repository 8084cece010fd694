"""Elementwise ops: unary activations and broadcasting binary arithmetic.

Each entry of the two tables below is one op: its NumPy reference and
whether it accepts integers.  Shape rule: unary keeps the shape; binary
broadcasts NumPy-style on symbolic dims (equal dims, or one of them 1).
"""

from __future__ import annotations

import numpy as np

from ..ir import TensorType
from .core import Op, broadcast, need_float, register, same_dtype

_GELU_C = np.sqrt(2.0 / np.pi)


def _sigmoid(x, p):
    # stable for large |x|: exp of a non-positive number only
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


def _gelu(x, p):  # the tanh approximation (PyTorch's approximate='tanh')
    return (0.5 * x * (1.0 + np.tanh(_GELU_C * (x + 0.044715 * x**3)))).astype(x.dtype)


def _elu(x, p):
    a = p.get("alpha", 1.0)
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))).astype(x.dtype)


def _leaky_relu(x, p):
    a = p.get("alpha", 0.01)
    return np.where(x > 0, x, a * x).astype(x.dtype)


# name -> (reference, allows integers, doc)
UNARY = {
    "neg": (lambda x, p: -x, True, "-x"),
    "exp": (lambda x, p: np.exp(x), False, "e^x"),
    "log": (lambda x, p: np.log(x), False, "natural logarithm"),
    "sqrt": (lambda x, p: np.sqrt(x), False, "square root"),
    "abs": (lambda x, p: np.abs(x), True, "|x|"),
    "sigmoid": (_sigmoid, False, "1 / (1 + e^-x)"),
    "tanh": (lambda x, p: np.tanh(x), False, "hyperbolic tangent"),
    "relu": (lambda x, p: np.maximum(x, 0).astype(x.dtype), False, "max(x, 0)"),
    "leaky_relu": (_leaky_relu, False, "x if x > 0 else alpha * x (alpha = 0.01)"),
    "elu": (_elu, False, "x if x > 0 else alpha * (e^x - 1) (alpha = 1)"),
    "gelu": (_gelu, False, "x * Phi(x), tanh approximation"),
    "softplus": (lambda x, p: np.logaddexp(0, x).astype(x.dtype), False, "log(1 + e^x)"),
}

BINARY = {
    "add": (np.add, True, "a + b"),
    "sub": (np.subtract, True, "a - b"),
    "mul": (np.multiply, True, "a * b"),
    "div": (np.divide, False, "a / b"),
    "pow": (np.power, False, "a ** b"),
    "maximum": (np.maximum, True, "elementwise max(a, b)"),
    "minimum": (np.minimum, True, "elementwise min(a, b)"),
}


def _unary(name: str, fn, ints: bool, doc: str) -> Op:
    def infer(ins, params):
        if not ints:
            need_float(ins[0], name)
        return [ins[0]]

    def ref(ctx, ins, params):
        return [np.asarray(fn(ins[0], params), dtype=ins[0].dtype)]

    return Op(name, infer, ref, n_inputs=1, elementwise=True, doc=doc)


def _binary(name: str, fn, ints: bool, doc: str) -> Op:
    def infer(ins, params):
        dt = same_dtype(ins, name)
        if not ints:
            need_float(ins[0], name)
        return [TensorType(dt, broadcast(ins[0].shape, ins[1].shape))]

    def ref(ctx, ins, params):
        return [np.asarray(fn(ins[0], ins[1]), dtype=ins[0].dtype)]

    return Op(name, infer, ref, n_inputs=2, elementwise=True, doc=doc)


for _name, (_fn, _ints, _doc) in UNARY.items():
    register(_unary(_name, _fn, _ints, _doc))
for _name, (_fn, _ints, _doc) in BINARY.items():
    register(_binary(_name, _fn, _ints, _doc))
