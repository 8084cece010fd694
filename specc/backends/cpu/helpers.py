"""The helper functions a generated CPU module may define: their sources, by kind and dtype.

In: a helper's kind (``exp``, ``sigmoid``, ``wrap_index``, ...), the name to give it and a dtype.
Out: the ``@njit`` source of the helper, added to a module on its first use (see
:meth:`specc.backends.cpu.emitter.CpuEmitter.helper`).

exp, log, tanh, sigmoid, softplus and expm1 are vectorizable arithmetic
(:mod:`specc.backends.cpu.vecmath`), not libm calls, so that the loops calling them vectorize.
"""

from __future__ import annotations

from typing import Callable

from ..common import slice_start_source, wrap_index_source
from ..emitter import Emitter
from .vecmath import MATH_HELPERS

# fastmath "contract" only: a multiply and an add may fuse into one FMA (the math helpers of
# specc.backends.cpu.vecmath, inlined, run 20-55% faster with it); NaN, Inf, -0.0 and subnormals keep
# their meaning.  Never reassoc/nnan/ninf/afn: the helpers' range reductions depend on it.
NJIT = '@njit(cache=True, error_model="numpy", fastmath={"contract"})'
NJIT_NOGIL = '@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)'


def _gelu(name: str, dt: str) -> str:
    def lit(v: float) -> str:
        return Emitter.lit(v, dt)

    tanh = f"tanh_{dt}"  # the helper is added with this one
    return f'''{NJIT}
def {name}(x):
    """x * Phi(x), the tanh approximation."""
    return {lit(0.5)} * x * ({lit(1.0)} + {tanh}({lit(0.7978845608028654)} * (x + {lit(0.044715)} * x * x * x)))
'''


HELPERS: dict[str, Callable[[str, str | None], str]] = {
    **MATH_HELPERS,
    "gelu": _gelu,
    "wrap_index": lambda name, dt: f"{NJIT}\n{wrap_index_source(name)}",
    "slice_start": lambda name, dt: f"{NJIT}\n{slice_start_source(name)}",
}

__all__ = ["HELPERS", "NJIT", "NJIT_NOGIL"]
