"""The CUDA runtime: a generated CUDA module loaded and called on device arrays.

In: a Graph and its :class:`~specc.backends.GeneratedModule` from :mod:`specc.backends.cuda.generator`.
Out: a :class:`CudaCompiledGraph`, called like the CPU one (``compiled(args, dims, seed=0,
training=False)``), returning host NumPy arrays equal to what the interpreter gives; with
``device=True`` it returns the device arrays instead.  Arguments may be NumPy arrays (copied to the
GPU once per call) or device arrays (used in place: parameters can stay on the GPU across steps).

The module file is cached and imported by :mod:`specc.runtime` exactly like a CPU module (its
cache key adds the numba-cuda version and whether the simulator runs it); numba-cuda compiles each
kernel on its first launch, for the argument types it sees, and caches the machine code beside the
file (``cache=True``).

numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``, slow: every GPU thread is a Python thread) runs
the same source without a GPU; :func:`require_cuda` honours the variable even when Numba was
imported before it was set.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...ir.dims import concrete, shape_str
from ...errors import InputError, SpeccError
from ...ir.core import NUMPY_DTYPES, Graph, Value


def simulator_requested() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def require_cuda() -> Any:
    """``numba.cuda``, ready to run kernels (on a GPU, or in the simulator if requested); else a SpeccError."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise SpeccError("target 'cuda' needs the numba-cuda package, which is not installed",
                         hint="pip install 'specc[cuda]' (or pip install numba-cuda); "
                              "use --target cpu to run on the CPU")
    import numba

    if simulator_requested() != bool(numba.config.ENABLE_CUDASIM):
        numba.config.reload_config()  # NUMBA_ENABLE_CUDASIM was set after Numba was imported
    try:
        from numba import cuda

        available = cuda.is_available()
    except Exception as e:  # noqa: BLE001  (a broken driver or toolkit install: say what it was)
        raise SpeccError(f"target 'cuda': numba-cuda cannot start: {e}".strip(),
                         hint="use --target cpu, or NUMBA_ENABLE_CUDASIM=1 to run in the simulator") from None
    if not available:
        raise SpeccError("target 'cuda': no CUDA GPU (or no NVIDIA driver) was found",
                         hint="use --target cpu, or set NUMBA_ENABLE_CUDASIM=1 to run the CUDA kernels "
                              "in numba-cuda's simulator (slow: for testing)")
    return cuda


def cache_tag() -> str:
    """What the module cache key adds for CUDA: the numba-cuda version and the simulator flag."""
    from importlib.metadata import version

    return f"numba-cuda {version('numba-cuda')}, simulator {int(simulator_requested())}"


def is_device_array(a: Any) -> bool:
    return not isinstance(a, (np.ndarray, np.generic, list, tuple, int, float)) and hasattr(a, "copy_to_host")


@dataclass
class CudaCompiledGraph:
    """A graph compiled for CUDA; call it like :class:`specc.runtime.CompiledGraph`."""

    graph: Graph
    module: Any  # GeneratedModule
    path: Any  # the cache file holding the source
    entry: Any
    _lock: Any = field(default_factory=threading.Lock, repr=False)  # the module's: it guards its scratch arrays

    @property
    def source(self) -> str:
        return self.module.source

    def __call__(self, args: Sequence[Any], dims: Mapping[str, int], seed: int = 0, training: bool = False,
                 device: bool = False) -> list[Any]:
        cuda = require_cuda()
        if len(args) != len(self.graph.inputs):
            raise InputError(f"{self.module.name} takes {len(self.graph.inputs)} inputs, got {len(args)}")
        sizes = dict(dims)
        missing = [s for s in self.module.dims if s not in sizes]
        if missing:
            raise InputError(f"the size of dim {missing[0]} is not given", hint="pass it in dims")
        arrays = [self.to_device(cuda, a, v, sizes) for a, v in zip(args, self.graph.inputs)]
        draws = [self.to_device(cuda, d.sample(sizes, seed, training), d.value, sizes) for d in self.module.draws]
        with self._lock:
            outs = self.entry(*arrays, *draws, *(int(sizes[s]) for s in self.module.dims))
        if device:
            return list(outs)
        return [_to_host(o, v, sizes) for o, v in zip(outs, self.graph.outputs)]

    @staticmethod
    def to_device(cuda: Any, a: Any, v: Value, dims: Mapping[str, int]) -> Any:
        """A device array of the input's dtype and (checked) shape; a device array passes as it is."""
        if is_device_array(a):
            shape, dtype = tuple(a.shape), np.dtype(a.dtype)
            if v.shape == () and shape == (1,):
                shape = ()
        else:
            a = np.asarray(a, dtype=NUMPY_DTYPES[v.dtype], order="C")
            shape, dtype = a.shape, a.dtype
        try:
            want = concrete(v.shape, dims)
        except KeyError:
            want = None
        if len(shape) != len(v.shape) or (want is not None and shape != want) or dtype != NUMPY_DTYPES[v.dtype]:
            raise InputError(f"input '{v.name}' is {dtype}{shape}, expected {v.type} = {want or shape_str(v.shape)}")
        if is_device_array(a):
            return a
        return cuda.to_device(a.reshape(a.shape or (1,)))


def _to_host(a: Any, v: Value, dims: Mapping[str, int]) -> np.ndarray:
    host = a.copy_to_host()
    return host.reshape(()) if v.shape == () else host


def compile_cuda_graph(graph: Graph, module: Any, load: Any) -> CudaCompiledGraph:
    """Load a generated CUDA module (``load(module)`` -> (module object, path)) after checking numba-cuda runs."""
    require_cuda()
    mod, path = load(module)
    with _MODULE_LOCK:
        lock = mod.__dict__.setdefault("_CALL_LOCK", threading.Lock())  # one per module, however many graphs
    return CudaCompiledGraph(graph, module, path, getattr(mod, module.entry), lock)


_MODULE_LOCK = threading.Lock()


__all__ = ["CudaCompiledGraph", "cache_tag", "compile_cuda_graph", "is_device_array", "require_cuda"]
