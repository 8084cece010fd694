"""The CPU back end: what it can do, its lowering table, its generator and how its kernels load.

In: nothing at import time but the CPU rule modules.
Out: :data:`CPU`, the :class:`~specc.backends.base.Backend` object for target ``cpu``, and
:data:`LOWERINGS`, its table (elementwise/products/reductions/losses, convolutions, recurrences,
and the rules shared with CUDA).
"""

from __future__ import annotations

from typing import Any, Callable

from ...ir.core import Graph
from ..base import GeneratedModule, Lowerings
from ..loops import RULES as SHARED_RULES
from . import conv, rules, scan
from .emitter import TARGET
from .generator import CpuGenerator

LOWERINGS = Lowerings.build(TARGET, rules.RULES, conv.RULES, scan.RULES, SHARED_RULES)


class CpuBackend:
    """Numba ``@njit`` kernels, threads from :mod:`specc.backends.cpu.runtime`."""

    name = TARGET
    label = "compiled, cpu"
    compiles = True
    device_resident = False

    def require(self) -> None:
        """Numba is a dependency of specc: the CPU target always runs."""

    def generator(self) -> CpuGenerator:
        return CpuGenerator(LOWERINGS)

    def lowerings(self) -> Lowerings:
        return LOWERINGS

    def load(self, graph: Graph, module: GeneratedModule, load: Callable[[list[str]], tuple[Any, Any]]) -> Any:
        from .compiled import load_compiled

        return load_compiled(graph, module, load)

    def threads(self) -> int:
        """How many threads a kernel call may use (``$SPECC_NUM_THREADS``, else the CPUs this process may use)."""
        from .runtime import kernel_threads

        return kernel_threads()


CPU = CpuBackend()

__all__ = ["CPU", "LOWERINGS", "CpuBackend"]
