"""Gradient checking: analytic gradients against float64 central differences.

In: a Program, parameters and inputs (NumPy), the run-time dims.
Out: one :class:`Check` per parameter (and float input, when asked): the
directional derivative along random unit directions computed both ways,
and whether they agree.  Random ops draw the same numbers at every
evaluation (the seed is fixed), so dropout and the VAE are checkable too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from .autodiff import value_and_grad
from ..errors import Span
from ..backends.interp import interpret
from ..ir.core import Program


@dataclass(frozen=True)
class Check:
    name: str
    analytic: float
    numeric: float
    loc: Span | None

    @property
    def error(self) -> float:
        return abs(self.analytic - self.numeric) / max(1.0, abs(self.numeric), abs(self.analytic))

    def ok(self, tol: float) -> bool:
        return bool(np.isfinite(self.analytic) and self.error <= tol)


def gradcheck(prog: Program, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray],
              dims: Mapping[str, int], *, eps: float = 1e-6, directions: int = 2, seed: int = 0,
              wrt_inputs: bool = False, grad_fn: Callable | None = None) -> list[Check]:
    """Compare <grad, v> with (L(p + eps v) - L(p - eps v)) / (2 eps) for random unit v per tensor.

    ``grad_fn(args) -> (loss, grads)`` may supply another implementation of the
    gradients (a compiled backend); by default the reference interpreter runs
    the backward IR.
    """
    gp = value_and_grad(prog, wrt_inputs=wrt_inputs)
    names = [i.name for i in prog.inputs] + [p.name for p in prog.params]
    values = {**{k: np.asarray(v) for k, v in inputs.items()}, **{k: np.asarray(v) for k, v in params.items()}}

    def args_of(vals):
        return [vals[n] for n in names]

    def loss_at(vals) -> float:
        return float(interpret(prog.graph, args_of(vals), dims, seed=seed)[0])

    if grad_fn is None:
        outs = interpret(gp.graph, args_of(values), dims, seed=seed)
        grads = dict(zip(gp.wrt, outs[gp.n_forward:]))
    else:
        grads = grad_fn(args_of(values))[1]
    locs = {p.name: p.loc for p in prog.params} | {i.name: i.loc for i in prog.inputs}
    rng = np.random.default_rng(seed + 1)
    checks = []
    for name in gp.wrt:
        base = values[name]
        for _ in range(directions):
            v = rng.standard_normal(base.shape)
            v /= max(np.linalg.norm(v), 1e-12)
            plus = dict(values, **{name: (base + eps * v).astype(base.dtype)})
            minus = dict(values, **{name: (base - eps * v).astype(base.dtype)})
            numeric = (loss_at(plus) - loss_at(minus)) / (2 * eps)
            analytic = float(np.sum(np.asarray(grads[name], dtype=np.float64) * v))
            checks.append(Check(name, analytic, numeric, locs.get(name)))
    return checks
