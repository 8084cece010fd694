"""Elementwise ops: unary activations and broadcasting binary arithmetic.

Each entry of the two tables below is one op: its NumPy reference,
whether it accepts integers and (unary) its derivative; the binary ops' VJPs
are in :func:`_binary_vjp`.  Shape rule: unary keeps the shape; binary
broadcasts NumPy-style on symbolic dims (equal dims, or one of them 1).
"""

from __future__ import annotations

import numpy as np

from ..ir.core import TensorType
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


def _gelu_grad(g, x, y, p):
    c, k = float(_GELU_C), 0.044715
    x2 = g.mul(x, x)
    u = g.scale(g.add(x, g.scale(g.mul(x2, x), k)), c)
    th = g.emit("tanh", [u])
    sech2 = g.sub(g.const(1.0, x.dtype), g.mul(th, th))
    du = g.scale(g.add(g.const(1.0, x.dtype), g.scale(x2, 3 * k)), c)
    left = g.scale(g.add(g.const(1.0, x.dtype), th), 0.5)
    return g.add(left, g.mul(g.scale(x, 0.5), g.mul(sech2, du)))


def _one(g, x):
    return g.const(1.0, x.dtype)


# name -> (reference, allows integers, derivative, doc).  The derivative f'(x) is written with
# IR ops through autodiff's context g (x the input value, y the output value, p the params);
# the VJP multiplies it by the cotangent.
UNARY = {
    "neg": (lambda x, p: -x, True, lambda g, x, y, p: g.const(-1.0, x.dtype), "-x"),
    "exp": (lambda x, p: np.exp(x), False, lambda g, x, y, p: y, "e^x"),
    "log": (lambda x, p: np.log(x), False, lambda g, x, y, p: g.div(_one(g, x), x), "natural logarithm"),
    "sqrt": (lambda x, p: np.sqrt(x), False, lambda g, x, y, p: g.div(g.const(0.5, x.dtype), y), "square root"),
    "abs": (lambda x, p: np.abs(x), True, lambda g, x, y, p: g.emit("sign", [x]), "|x|"),
    "sigmoid": (_sigmoid, False, lambda g, x, y, p: g.mul(y, g.sub(_one(g, x), y)), "1 / (1 + e^-x)"),
    "tanh": (lambda x, p: np.tanh(x), False, lambda g, x, y, p: g.sub(_one(g, x), g.mul(y, y)),
             "hyperbolic tangent"),
    "relu": (lambda x, p: np.maximum(x, 0).astype(x.dtype), False, lambda g, x, y, p: g.emit("step", [x]),
             "max(x, 0)"),
    "leaky_relu": (_leaky_relu, False,
                   lambda g, x, y, p: g.add(g.scale(g.emit("step", [x]), 1.0 - p.get("alpha", 0.01)),
                                            g.const(p.get("alpha", 0.01), x.dtype)),
                   "x if x > 0 else alpha * x (alpha = 0.01)"),
    "elu": (_elu, False,
            lambda g, x, y, p: g.add(g.emit("step", [x]),
                                     g.mul(g.sub(_one(g, x), g.emit("step", [x])),
                                           g.add(y, g.const(p.get("alpha", 1.0), x.dtype)))),
            "x if x > 0 else alpha * (e^x - 1) (alpha = 1)"),
    "gelu": (_gelu, False, _gelu_grad, "x * Phi(x), tanh approximation"),
    "softplus": (lambda x, p: np.logaddexp(0, x).astype(x.dtype), False, lambda g, x, y, p: g.emit("sigmoid", [x]),
                 "log(1 + e^x)"),
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


def _unary_vjp(name, grad):
    def vjp(g, eqn, cts, needed):
        (x,), (y,), (ct,) = eqn.inputs, eqn.outputs, cts
        if name == "neg":  # -ct itself, not ct * -1
            return [g.neg(ct)]
        return [g.mul(ct, grad(g, x, y, dict(eqn.params)))]

    return vjp


def _binary_vjp(name):
    def vjp(g, eqn, cts, needed):
        a, b = eqn.inputs
        (y,), (ct,) = eqn.outputs, cts
        if name == "add":
            da, db = ct, ct
        elif name == "sub":
            da, db = ct, g.neg(ct) if needed[1] else None
        elif name == "mul":
            da = g.mul(ct, b) if needed[0] else None
            db = g.mul(ct, a) if needed[1] else None
        elif name == "div":
            da = g.div(ct, b) if needed[0] else None
            db = g.neg(g.div(g.mul(ct, y), b)) if needed[1] else None
        elif name == "pow":
            da = g.mul(ct, g.mul(b, g.emit("pow", [a, g.sub(b, g.const(1.0, b.dtype))]))) if needed[0] else None
            db = g.mul(ct, g.mul(y, g.emit("log", [a]))) if needed[1] else None
        else:  # maximum / minimum: the gradient goes to the winner (to a on ties)
            mask = g.emit("ge", [a, b] if name == "maximum" else [b, a])
            da = g.mul(ct, mask) if needed[0] else None
            db = g.mul(ct, g.sub(g.const(1.0, a.dtype), mask)) if needed[1] else None
        return [None if d is None else g.sum_to(d, v.shape) for d, v in zip((da, db), (a, b))]

    return vjp


def _unary(name: str, fn, ints: bool, grad, doc: str) -> Op:
    def infer(ins, params):
        if not ints:
            need_float(ins[0], name)
        return [ins[0]]

    def ref(ctx, ins, params):
        return [np.asarray(fn(ins[0], params), dtype=ins[0].dtype)]

    return Op(name, infer, ref, n_inputs=1, elementwise=True, doc=doc, vjp=_unary_vjp(name, grad))


def _binary(name: str, fn, ints: bool, doc: str) -> Op:
    def infer(ins, params):
        dt = same_dtype(ins, name)
        if not ints:
            need_float(ins[0], name)
        return [TensorType(dt, broadcast(ins[0].shape, ins[1].shape))]

    def ref(ctx, ins, params):
        return [np.asarray(fn(ins[0], ins[1]), dtype=ins[0].dtype)]

    return Op(name, infer, ref, n_inputs=2, elementwise=True, doc=doc, vjp=_binary_vjp(name))


for _name, (_fn, _ints, _grad, _doc) in UNARY.items():
    register(_unary(_name, _fn, _ints, _grad, _doc))
for _name, (_fn, _ints, _doc) in BINARY.items():
    register(_binary(_name, _fn, _ints, _doc))
