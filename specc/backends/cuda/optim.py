"""The optimizer on the GPU: the update rules of :mod:`specc.training.optim` as numba-cuda kernels.

In: an :class:`~specc.training.optim.Optimizer`, the run's parameters and optimizer state (NumPy, copied to
the device once), then every step the gradients as device arrays (the compiled value-and-grad
graph called with ``device=True``), the learning rate and the clipping scale.
Out: parameters and slots (``m``, ``v``) updated in place on the device, the global gradient norm
(one float64 copied to the host per step), and host copies of parameters and state on request
(validation, checkpoints, the end of the run).

One grid-stride kernel per rule (``sgd``, ``momentum``, ``adam``, ``adamw``), each the formula of
:mod:`specc.training.optim` with the same float operations in the same order and every scalar in the
parameters' dtype, computed on the host as :mod:`specc.training.optim` computes it.  In the simulator that
gives the host's bits; on a GPU, NVVM may contract a product and a sum into one FMA, so results
agree to rounding.  Clipping scales the gradient inside the rule's kernel (``g * scale``; scale 1
when the norm is within bounds, which changes no bit).

The global norm ``sqrt(sum g^2)`` (clipping, and the norm the training history records) is a
two-stage reduction in float64 in a fixed order, so it is the same on every run: each block of
:func:`sum_squares` writes the tree-reduced sum of its threads' strided squares to its own slot of
a partials array, then one block (:func:`sum_partials`) adds the partials up.

Import this module only after :func:`specc.backends.cuda.runtime.require_cuda` (it reads whether
the simulator runs when it is imported, as generated modules do).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from numba import cuda

from ...errors import InputError
from ...training.optim import OptState, Optimizer

SIMULATED = bool(numba.config.ENABLE_CUDASIM)
THREADS = 32 if SIMULATED else 256  # threads per block of an update kernel
MAX_BLOCKS = 4 if SIMULATED else 65535  # update kernels: blocks stride beyond this
# The norm's blocks: a power of two (the tree reduction halves it); few in the simulator, where a barrier
# costs a context switch per thread.
NORM_THREADS = 4 if SIMULATED else 256
NORM_BLOCKS = 4 if SIMULATED else 264  # at most this many partial sums per gradient (2 per H100 SM)


def cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


# ---- the update rules: one kernel each (p, g, slots: flat arrays of one parameter) -------------------
@cuda.jit(device=True, cache=True)
def adam_at(i, p_i, g_i, m, v, lr, b1, omb1, b2, omb2, c1, c2, eps):
    """The Adam step of element i from p_i and the (decayed) gradient g_i: updates m[i], v[i], returns new p."""
    m_i = b1 * m[i] + omb1 * g_i
    v_i = b2 * v[i] + omb2 * (g_i * g_i)
    m[i] = m_i
    v[i] = v_i
    return p_i - lr * (m_i / c1) / (math.sqrt(v_i / c2) + eps)


@cuda.jit(cache=True)
def sgd(p, g, scale, lr, wd, decay):
    """p -= lr (g + wd p)"""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        g_i = g[i] * scale
        if decay:
            g_i = g_i + wd * p[i]
        p[i] = p[i] - lr * g_i


@cuda.jit(cache=True)
def momentum(p, g, v, scale, lr, wd, decay, mu):
    """v = mu v + (g + wd p);  p -= lr v"""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        g_i = g[i] * scale
        if decay:
            g_i = g_i + wd * p[i]
        v_i = mu * v[i] + g_i
        v[i] = v_i
        p[i] = p[i] - lr * v_i


@cuda.jit(cache=True)
def adam(p, g, m, v, scale, wd, decay, lr, b1, omb1, b2, omb2, c1, c2, eps):
    """g' = g + wd p, then the Adam step with g'"""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        g_i = g[i] * scale
        if decay:
            g_i = g_i + wd * p[i]
        p[i] = adam_at(i, p[i], g_i, m, v, lr, b1, omb1, b2, omb2, c1, c2, eps)


@cuda.jit(cache=True)
def adamw(p, g, m, v, scale, lr_wd, decay, lr, b1, omb1, b2, omb2, c1, c2, eps):
    """p -= lr wd p (decoupled decay), then the Adam step with g"""
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        p_i = p[i]
        if decay:
            p_i = p_i - lr_wd * p_i
        p[i] = adam_at(i, p_i, g[i] * scale, m, v, lr, b1, omb1, b2, omb2, c1, c2, eps)


# ---- the global norm ------------------------------------------------------------------------------------
@cuda.jit(device=True)
def block_sum(acc, tid, total):
    """The sum of every thread's ``total`` over the block, in thread 0: a tree in the shared array ``acc``
    (NORM_THREADS float64), always in the same order."""
    acc[tid] = total
    cuda.syncthreads()
    half = NORM_THREADS // 2
    while half > 0:
        if tid < half:
            acc[tid] += acc[tid + half]
        cuda.syncthreads()
        half //= 2
    return acc[0]


@cuda.jit(cache=True)
def sum_squares(g, partials, base):
    """partials[base + block] = the sum of g[i]^2 (float64) over the elements this block's threads stride over."""
    acc = cuda.shared.array(NORM_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    total = 0.0
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        x = float(g[i])
        total += x * x
    total = block_sum(acc, tid, total)
    if tid == 0:
        partials[base + cuda.blockIdx.x] = total


@cuda.jit(cache=True)
def sum_partials(partials, out):
    """out[0] = the sum of the partials (one block, a fixed order)."""
    acc = cuda.shared.array(NORM_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    total = 0.0
    for i in range(tid, partials.size, NORM_THREADS):
        total += partials[i]
    total = block_sum(acc, tid, total)
    if tid == 0:
        out[0] = total


# ---- the optimizer holding a run's parameters and state on the device -------------------------------------
class DeviceOptimizer:
    """Parameters and optimizer slots as device arrays for a whole run, updated by the kernels above.

    ``params[name]`` is the device array the compiled graph reads (a scalar parameter is an array of
    shape ``(1,)``, as the generated code stores scalars); :meth:`update` changes it in place.
    """

    def __init__(self, optimizer: Optimizer, params: Mapping[str, np.ndarray], state: OptState) -> None:
        self.optimizer = optimizer
        self.shapes = {k: np.shape(p) for k, p in params.items()}
        self.dtypes = {k: np.asarray(p).dtype for k, p in params.items()}
        for k, dt in self.dtypes.items():
            if dt.kind != "f":
                raise InputError(f"parameter '{k}' has dtype {dt}: the optimizer updates float parameters only")
        self.params = {k: self._to_device(p, self.dtypes[k]) for k, p in params.items()}
        self.slots = {s: {k: self._to_device(state.slots[s][k], self.dtypes[k]) for k in params}
                      for s in optimizer.slots}
        self.step = state.step
        self._flat = {k: a.reshape(a.size) for k, a in self.params.items()}
        self._flat_slots = {s: {k: a.reshape(a.size) for k, a in arrays.items()} for s, arrays in self.slots.items()}
        blocks = {k: min(cdiv(max(a.size, 1), NORM_THREADS), NORM_BLOCKS) for k, a in self._flat.items()}
        self._norm_blocks = blocks
        self._norm_base = dict(zip(blocks, np.cumsum([0, *blocks.values()])[:-1].tolist()))
        self._partials = cuda.device_array(max(sum(blocks.values()), 1), np.float64)
        self._norm = cuda.device_array(1, np.float64)

    @staticmethod
    def _to_device(a: np.ndarray, dtype: np.dtype) -> Any:
        host = np.asarray(a, dtype=dtype, order="C")
        return cuda.to_device(host.reshape(host.shape or (1,)))

    def _flat_grad(self, name: str, g: Any) -> Any:
        p = self._flat[name]
        if g.size != p.size or np.dtype(g.dtype) != np.dtype(p.dtype):
            raise InputError(f"the gradient of '{name}' is {np.dtype(g.dtype)}{tuple(g.shape)}, "
                             f"but the parameter is {np.dtype(p.dtype)}{self.shapes[name]}")
        return g.reshape(g.size)

    def global_norm(self, grads: Mapping[str, Any]) -> float:
        """sqrt of the sum of squares of every gradient entry (float64, a fixed order); one scalar to the host."""
        for k in self._flat:
            g = self._flat_grad(k, grads[k])
            sum_squares[self._norm_blocks[k], NORM_THREADS](g, self._partials, self._norm_base[k])
        sum_partials[1, NORM_THREADS](self._partials, self._norm)
        return math.sqrt(float(self._norm.copy_to_host()[0]))

    def update(self, grads: Mapping[str, Any], lr: float, scale: float | None = None) -> None:
        """One step in place: every parameter and slot, the gradients multiplied by ``scale`` (clipping) first."""
        opt = self.optimizer
        t = self.step + 1
        for k, p in self._flat.items():
            g = self._flat_grad(k, grads[k])
            s = self.dtypes[k].type  # scalars in the parameter's dtype, as specc.training.optim casts them
            launch = (max(1, min(cdiv(p.size, THREADS), MAX_BLOCKS)), THREADS)
            common = (s(1.0 if scale is None else scale),)
            decay = bool(opt.weight_decay)
            slot = {name: arrays[k] for name, arrays in self._flat_slots.items()}
            if opt.name == "sgd":
                sgd[launch](p, g, *common, s(lr), s(opt.weight_decay), decay)
            elif opt.name == "momentum":
                momentum[launch](p, g, slot["v"], *common, s(lr), s(opt.weight_decay), decay, s(opt.momentum))
            elif opt.name in ("adam", "adamw"):
                # adam: the decay goes into the gradient; adamw: p -= (lr wd) p first, lr * wd rounded once
                wd = s(opt.weight_decay) if opt.name == "adam" else s(lr * opt.weight_decay)
                rule = adam if opt.name == "adam" else adamw
                rule[launch](p, g, slot["m"], slot["v"], *common, wd, decay, s(lr), s(opt.b1), s(1 - opt.b1),
                             s(opt.b2), s(1 - opt.b2), s(1 - opt.b1 ** t), s(1 - opt.b2 ** t), s(opt.eps))
            else:
                raise InputError(f"unknown optimizer '{opt.name}'", hint="choose sgd, momentum, adam or adamw")
        self.step = t

    def host_params(self) -> dict[str, np.ndarray]:
        return {k: a.copy_to_host().reshape(self.shapes[k]) for k, a in self.params.items()}

    def host_state(self) -> OptState:
        return OptState(self.step, {s: {k: a.copy_to_host().reshape(self.shapes[k]) for k, a in arrays.items()}
                                    for s, arrays in self.slots.items()})


__all__ = ["DeviceOptimizer", "adam", "adamw", "momentum", "sgd", "sum_partials", "sum_squares"]
