"""Optimizers, learning-rate schedules and gradient clipping.

In: parameters and their gradients (dicts of NumPy arrays keyed by parameter
name), a :class:`~specc.training.config.TrainConfig`.
Out: updated parameters and optimizer state.  Updates are pure functions of
(parameters, gradients, state, learning rate): no hidden state and no
randomness, so a run is reproducible bit for bit and its state is a plain
dict of arrays that a checkpoint stores as is.

The update rules (``g`` the gradient, ``lr`` the scheduled learning rate,
``wd`` the weight decay, ``t`` the step count from 1):

* ``sgd``:       p -= lr (g + wd p)
* ``momentum``:  v = mu v + (g + wd p);  p -= lr v                  (PyTorch's form)
* ``adam``:      g' = g + wd p;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2;
                 p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
* ``adamw``:     p -= lr wd p first (decoupled decay), then the Adam step with g

The same rules run on the GPU for target cuda (:mod:`specc.backends.cuda.optim`, one kernel
each, the same float operations in the same order); :func:`clip_scale` decides clipping for both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import TrainConfig

Arrays = dict[str, np.ndarray]


@dataclass
class OptState:
    """The step count and, per slot (``m``, ``v``, ...), one array per parameter."""

    step: int = 0
    slots: dict[str, Arrays] = field(default_factory=dict)


@dataclass(frozen=True)
class Optimizer:
    name: str
    slots: tuple[str, ...] = ()
    weight_decay: float = 0.0
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def init(self, params: Mapping[str, np.ndarray]) -> OptState:
        return OptState(0, {s: {k: np.zeros_like(p) for k, p in params.items()} for s in self.slots})

    def update(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], state: OptState,
               lr: float) -> tuple[Arrays, OptState]:
        """One step: new parameters and new state (the inputs are not modified)."""
        t = state.step + 1
        rule = getattr(self, f"_{self.name}")
        new_params: Arrays = {}
        new_slots: dict[str, Arrays] = {s: {} for s in self.slots}
        for k, p in params.items():
            slots = {s: state.slots[s][k] for s in self.slots}
            new_params[k], out = rule(p, grads[k].astype(p.dtype, copy=False), slots, lr, t)
            for s, v in out.items():
                new_slots[s][k] = v
        return new_params, OptState(t, new_slots)

    # one rule per optimizer: (p, g, slots, lr, t) -> (new p, new slots); scalars cast to p's dtype
    def _sgd(self, p, g, slots, lr, t):
        if self.weight_decay:
            g = g + _c(self.weight_decay, p) * p
        return p - _c(lr, p) * g, {}

    def _momentum(self, p, g, slots, lr, t):
        if self.weight_decay:
            g = g + _c(self.weight_decay, p) * p
        v = _c(self.momentum, p) * slots["v"] + g
        return p - _c(lr, p) * v, {"v": v}

    def _adam(self, p, g, slots, lr, t):
        if self.weight_decay:
            g = g + _c(self.weight_decay, p) * p
        return self._adam_step(p, g, slots, lr, t)

    def _adamw(self, p, g, slots, lr, t):
        if self.weight_decay:
            p = p - _c(lr * self.weight_decay, p) * p
        return self._adam_step(p, g, slots, lr, t)

    def _adam_step(self, p, g, slots, lr, t):
        if p.dtype.kind == "f" and p.size >= FUSED_MIN_SIZE:  # one compiled pass, the same bits
            from ..backends.cpu.shared import adam_step

            m0, v0 = slots["m"], slots["v"]
            s = p.dtype.type
            p2, m, v = adam_step(np.ascontiguousarray(p).ravel(), np.ascontiguousarray(g).ravel(),
                                 np.ascontiguousarray(m0).ravel(), np.ascontiguousarray(v0).ravel(),
                                 s(self.b1), s(1 - self.b1), s(self.b2), s(1 - self.b2),
                                 s(1 - self.b1 ** t), s(1 - self.b2 ** t), s(lr), s(self.eps))
            return p2.reshape(p.shape), {"m": m.reshape(p.shape), "v": v.reshape(p.shape)}
        m = _c(self.b1, p) * slots["m"] + _c(1 - self.b1, p) * g
        v = _c(self.b2, p) * slots["v"] + _c(1 - self.b2, p) * (g * g)
        m_hat = m / _c(1 - self.b1 ** t, p)
        v_hat = v / _c(1 - self.b2 ** t, p)
        return p - _c(lr, p) * m_hat / (np.sqrt(v_hat) + _c(self.eps, p)), {"m": m, "v": v}


FUSED_MIN_SIZE = 4096  # smaller arrays: NumPy's passes cost less than a compiled call

SLOTS = {"sgd": (), "momentum": ("v",), "adam": ("m", "v"), "adamw": ("m", "v")}


def make_optimizer(cfg: TrainConfig) -> Optimizer:
    return Optimizer(cfg.optimizer, SLOTS[cfg.optimizer], weight_decay=cfg.weight_decay, momentum=cfg.momentum)


def _c(x: float, like: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=like.dtype)


# ---- learning-rate schedules --------------------------------------------------------------
def learning_rate(cfg: TrainConfig, step: int, steps_per_epoch: int, scale: float = 1.0) -> float:
    """The learning rate for optimizer step ``step`` (counted from 0).

    ``constant``: lr.  ``step``: lr * gamma ** (epoch // step_size), the epoch
    being step // steps_per_epoch.  ``cosine``: from lr down to 0 over all
    ``epochs * steps_per_epoch`` steps, lr * (1 + cos(pi * step / total)) / 2.
    ``plateau``: lr * ``scale``, the factor :func:`plateau_scale` finds from the
    monitored metric of the epochs so far.

    ``warmup = W`` (epochs) multiplies any of them by min(1, (step + 1) / (W * steps_per_epoch)):
    a linear rise from lr / (W * steps_per_epoch) to the schedule's value.
    """
    if cfg.schedule == "constant":
        lr = cfg.lr
    elif cfg.schedule == "step":
        lr = cfg.lr * cfg.gamma ** ((step // max(steps_per_epoch, 1)) // cfg.step_size)
    elif cfg.schedule == "plateau":
        lr = max(cfg.lr * scale, min(cfg.min_lr, cfg.lr))
    else:
        total = max(cfg.epochs * steps_per_epoch, 1)
        lr = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if cfg.warmup:
        lr *= min(1.0, (step + 1) / (cfg.warmup * max(steps_per_epoch, 1)))
    return lr


def plateau_scale(values: Sequence[float | None], better: Callable[[float, float], bool], patience: int,
                  factor: float) -> float:
    """Reduce-on-plateau, replayed over the monitored value of every epoch so far: the factor on lr.

    As PyTorch's ``ReduceLROnPlateau``: after more than ``patience`` epochs in a row without
    an improvement on the best value (``better(value, best)``), the factor is multiplied by
    ``factor`` and the count starts again.  A pure function of the history, so a resumed run
    continues with the same learning rate.  Epochs without a value (None, NaN) are skipped.
    """
    scale, best, bad = 1.0, None, 0
    for v in values:
        if v is None or not math.isfinite(v):
            continue
        if best is None or better(v, best):
            best, bad = v, 0
        else:
            bad += 1
            if bad > patience:
                scale, bad = scale * factor, 0
    return scale


# ---- clipping ------------------------------------------------------------------------------
def global_norm(grads: Mapping[str, np.ndarray]) -> float:
    """sqrt of the sum of squares of every gradient entry (accumulated in float64)."""
    return math.sqrt(sum(float(np.vdot(g, g).real) for g in (np.asarray(g, np.float64) for g in grads.values())))


def clip_by_global_norm(grads: Mapping[str, np.ndarray], max_norm: float | None
                        ) -> tuple[Arrays, float]:
    """Scale every gradient by max_norm / norm when the global norm exceeds max_norm; returns (grads, norm)."""
    norm = global_norm(grads)
    scale = clip_scale(norm, max_norm)
    if scale is None:
        return dict(grads), norm
    return {k: g * np.asarray(scale, dtype=g.dtype) for k, g in grads.items()}, norm


def clip_scale(norm: float, max_norm: float | None) -> float | None:
    """What clipping multiplies the gradients by (max_norm / norm), or None when they stay as they are
    (no clipping asked, the norm within bounds, or not finite: the NaN guard reports that)."""
    if max_norm is None or norm <= max_norm or not math.isfinite(norm):
        return None
    return max_norm / norm
