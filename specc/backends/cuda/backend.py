"""The CUDA back end: what it can do, its lowering table, its generator and how its kernels load.

In: nothing at import time but the CUDA rule modules (generating source needs neither numba-cuda
nor a GPU; :meth:`CudaBackend.require` and loading do).
Out: :data:`CUDA`, the :class:`~specc.backends.base.Backend` object for target ``cuda``, and
:data:`LOWERINGS`, its table (its own rules and the rules shared with the CPU).
"""

from __future__ import annotations

from typing import Any, Callable

from ...ir.core import Graph
from ..base import GeneratedModule, Lowerings
from ..loops import RULES as SHARED_RULES
from . import rules
from .emitter import TARGET
from .generator import CudaGenerator

LOWERINGS = Lowerings.build(TARGET, rules.RULES, SHARED_RULES)


class CudaBackend:
    """numba-cuda kernels; training keeps parameters and optimizer state on the GPU."""

    name = TARGET
    label = "compiled, cuda"
    compiles = True
    device_resident = True

    def require(self) -> None:
        """numba-cuda installed and a GPU (or the simulator, ``NUMBA_ENABLE_CUDASIM=1``); else a SpeccError."""
        from .runtime import require_cuda

        require_cuda()

    def generator(self, grid_scan: bool | None = None) -> CudaGenerator:
        return CudaGenerator(LOWERINGS, grid_scan)

    def lowerings(self) -> Lowerings:
        return LOWERINGS

    def load(self, graph: Graph, module: GeneratedModule, load: Callable[[list[str]], tuple[Any, Any]]) -> Any:
        from .runtime import cache_tag, compile_cuda_graph

        return compile_cuda_graph(graph, module, lambda m: load([cache_tag()]))

    def device_optimizer(self, optimizer: Any, params: Any, state: Any) -> Any:
        """The optimizer's update rules as kernels, parameters and slots kept on the device."""
        from .optim import DeviceOptimizer

        return DeviceOptimizer(optimizer, params, state)


CUDA = CudaBackend()

__all__ = ["CUDA", "LOWERINGS", "CudaBackend"]
