"""The helper functions a generated CUDA module may define: device functions, the tiled gemm kernel, host checks.

In: a helper's kind (``sigmoid``, ``gemm``, ``wrap_index``, ...), the name to give it and a dtype.
Out: its source: a ``@cuda.jit(device=True)`` function called inside kernels (:data:`DEVICE_HELPERS`;
``gemm`` is a kernel the host launches), or plain Python that the host entry calls
(:data:`HOST_HELPERS`: index checks, which raise on the host where a kernel could not).
"""

from __future__ import annotations

from collections.abc import Callable

from ..common import slice_start_source, wrap_index_source
from ..emitter import Emitter

JIT = "@cuda.jit(cache=True)"
PERSISTENT_JIT = "@persistent"  # cuda.jit with launch bounds, defined in the module's prelude
DEVICE_JIT = "@cuda.jit(device=True, cache=True)"


# ---- helpers the generated code may call -----------------------------------------------------
def _sigmoid(name: str, dt: str) -> str:
    one = Emitter.lit(1.0, dt)
    return f'''{DEVICE_JIT}
def {name}(x):
    """1 / (1 + e^-x), computed from e^-|x| only (no overflow)."""
    e = math.exp(-abs(x))
    if x >= 0:
        return {one} / ({one} + e)
    return e / ({one} + e)
'''


def _softplus(name: str, dt: str) -> str:
    return f'''{DEVICE_JIT}
def {name}(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|)."""
    return max(x, {Emitter.lit(0.0, dt)}) + math.log1p(math.exp(-abs(x)))
'''


def _gelu(name: str, dt: str) -> str:
    def lit(v: float) -> str:
        return Emitter.lit(v, dt)

    return f'''{DEVICE_JIT}
def {name}(x):
    """x * Phi(x), the tanh approximation."""
    return {lit(0.5)} * x * ({lit(1.0)} + math.tanh({lit(0.7978845608028654)} * (x + {lit(0.044715)} * x * x * x)))
'''


def _sign(name: str, dt: str) -> str:
    one, zero = Emitter.lit(1.0, dt), Emitter.lit(0.0, dt)
    return f'''{DEVICE_JIT}
def {name}(x):
    """NumPy's sign: -1, 0 or 1 (nan stays nan)."""
    if x > 0:
        return {one}
    if x < 0:
        return -{one}
    return x * {zero}
'''


def _wrap_index_device(name: str, dt: str | None) -> str:
    return f'''{DEVICE_JIT}
def {name}(i, n):
    """A negative index counts from the end (not range-checked on the device)."""
    if i < 0:
        i += n
    return i
'''


def _slice_start_device(name: str, dt: str | None) -> str:
    return f'''{DEVICE_JIT}
def {name}(start, n, count, step):
    """NumPy's rule for a slice start (step > 0), clamped (not range-checked on the device)."""
    if start < 0:
        start += n
    return min(max(start, 0), n)
'''


def _gemm(name: str, dt: str) -> str:
    np_dt = Emitter.np_dtype(dt)
    zero = Emitter.lit(0.0, dt)
    return f'''{DEVICE_JIT.replace("device=True, ", "")}
def {name}(a, b, c):
    """c = a @ b (2-D), one TILE x TILE tile of c at a time per block (blocks stride over the tiles);
    the tiles of a and b it needs are staged in shared memory, one thread per element of the tile."""
    sa = cuda.shared.array((TILE, TILE), {np_dt})
    sb = cuda.shared.array((TILE, TILE), {np_dt})
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    m = c.shape[0]
    n = c.shape[1]
    k = a.shape[1]
    tiles_n = (n + TILE - 1) // TILE
    for tile in range(cuda.blockIdx.x, (m + TILE - 1) // TILE * tiles_n, cuda.gridDim.x):
        row = tile // tiles_n * TILE + ty
        col = tile % tiles_n * TILE + tx
        acc = {zero}
        for k0 in range(0, k, TILE):
            sa[ty, tx] = a[row, k0 + tx] if row < m and k0 + tx < k else {zero}
            sb[ty, tx] = b[k0 + ty, col] if col < n and k0 + ty < k else {zero}
            cuda.syncthreads()
            for kk in range(TILE):
                acc += sa[ty, kk] * sb[kk, tx]
            cuda.syncthreads()
        if row < m and col < n:
            c[row, col] = acc
'''


DEVICE_HELPERS: dict[str, Callable[[str, str | None], str]] = {
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "gelu": _gelu,
    "sign": _sign,
    "wrap_index": _wrap_index_device,
    "slice_start": _slice_start_device,
    "gemm": _gemm,
}
HOST_HELPERS: dict[str, Callable[[str, str | None], str]] = {
    "wrap_index": lambda name, dt: wrap_index_source(name),  # checked on the host: it raises when out of range
    "slice_start": lambda name, dt: slice_start_source(name),
}

__all__ = ["DEVICE_HELPERS", "DEVICE_JIT", "HOST_HELPERS", "JIT", "PERSISTENT_JIT"]
