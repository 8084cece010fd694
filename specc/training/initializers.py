"""Parameter initialisers.

In: an :class:`~specc.ir.core.Initializer` (kind and arguments), a concrete shape,
a dtype and a NumPy generator.
Out: the initial array.

Fan-in/fan-out follow the layouts specc uses: a matrix is [in, out]
(``x @ W``); a convolution kernel is [O, C, K...] (fan-in C*K..., fan-out O*K...).
"""

from __future__ import annotations

import zlib

import numpy as np

from ..ir.core import Initializer


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


def initialize(init: Initializer, shape: tuple[int, ...], dtype, rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    kind, args = init.kind, init.args
    if kind == "zeros":
        x = np.zeros(shape)
    elif kind == "ones":
        x = np.ones(shape)
    elif kind == "constant":
        x = np.full(shape, args[0])
    elif kind == "normal":
        x = rng.normal(0.0, args[0] if args else 0.01, shape)
    elif kind == "uniform":
        lo, hi = (-args[0], args[0]) if len(args) == 1 else (args if args else (-0.05, 0.05))
        x = rng.uniform(lo, hi, shape)
    elif kind == "glorot":
        a = np.sqrt(6.0 / (fan_in + fan_out))
        x = rng.uniform(-a, a, shape)
    elif kind == "he":
        x = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif kind == "orthogonal":
        x = _orthogonal(shape, rng) * (args[0] if args else 1.0)
    else:  # pragma: no cover - the elaborator rejects unknown kinds
        raise ValueError(f"unknown initializer {kind}")
    return np.asarray(x, dtype=dtype, order="C")  # keeps 0-d (ascontiguousarray makes it 1-d)


def _orthogonal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if len(shape) < 2:
        return rng.normal(0.0, 1.0, shape)
    rows, cols = shape[0], int(np.prod(shape[1:]))
    a = rng.normal(0.0, 1.0, (max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # a uniform draw over orthogonal matrices
    if rows < cols:
        q = q.T
    return q[:rows, :cols].reshape(shape)


def param_rng(seed: int, name: str) -> np.random.Generator:
    """One generator per parameter, so adding a parameter never changes the others' values."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(name.encode())])
