"""The runtime: generated kernel modules, cached on disk, loaded and called.

In: a Graph (forward, backward, optimised: any) and a target.
Out: a :class:`CompiledGraph`, called as ``compiled(args, dims, seed=0, training=False)``
with one array per graph input and the sizes of the symbolic dims; it returns
one array per graph output, equal to what :func:`specc.backends.interp.interpret`
gives (random draws included: they are made here, outside the kernel, with
the interpreter's scheme; see :mod:`specc.backends.lift`).

The path of a graph: the target's generator writes the module's source
(:mod:`specc.backends`); :mod:`specc.runtime.cache` writes it to the cache and
imports it; the entry is compiled for the graph's exact argument types right away
(from Numba's cache when it is there), so one compiled kernel serves every binding
of the dims.  The CPU kernels' threads and memory: :mod:`specc.backends.cpu.runtime`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..backends import GeneratedModule, generator
from ..backends.cpu.runtime import _blas_limit, kernel_threads, tune_allocator
from ..errors import InputError
from ..ir.core import NUMPY_DTYPES, Graph, Value
from ..ir.dims import concrete, shape_str
from .cache import (STATS, CacheStats, _load, _numba_files, cache_dir, cache_info, cache_key, clear_cache,
                    reload_without_numba_cache)

__all__ = ["CacheStats", "CompiledGraph", "STATS", "cache_dir", "cache_info", "cache_key", "clear_cache",
           "compile_graph"]

_CALL_LOCK = threading.Lock()  # kernel calls are serialised: each already uses every thread it may


# ---- compiled graphs ---------------------------------------------------------------------------
@dataclass
class CompiledGraph:
    """A graph compiled for one target; call it like the interpreter."""

    graph: Graph
    module: GeneratedModule
    path: Path  # the cache file holding the source
    entry: Callable[..., tuple]
    _inputs: tuple[Value, ...] = field(repr=False, default=())
    _module: ModuleType | None = field(repr=False, default=None)

    @property
    def dispatchers(self) -> list[Any]:
        """The module's Numba kernels (the entry itself, or the parts and recurrences it calls)."""
        return [getattr(self._module, k) for k in self.module.kernels] if self._module else []

    @property
    def source(self) -> str:
        return self.module.source

    def __call__(self, args: Sequence[np.ndarray], dims: Mapping[str, int], seed: int = 0,
                 training: bool = False) -> list[np.ndarray]:
        if len(args) != len(self.graph.inputs):
            raise InputError(f"{self.module.name} takes {len(self.graph.inputs)} inputs, got {len(args)}")
        sizes = dict(dims)
        arrays = [_coerce(a, v, sizes) for a, v in zip(args, self.graph.inputs)]
        missing = [s for s in self.module.dims if s not in sizes]
        if missing:
            raise InputError(f"the size of dim {missing[0]} is not given", hint="pass it in dims")
        draws = [d.sample(sizes, seed, training) for d in self.module.draws]
        threads = kernel_threads()
        extra = (threads,) if self.module.threads else ()
        tune_allocator()
        with _CALL_LOCK, _blas_limit():
            outs = self.entry(*arrays, *draws, *(int(sizes[s]) for s in self.module.dims), *extra)
        return list(outs)


def _coerce(a: Any, v: Value, dims: Mapping[str, int]) -> np.ndarray:
    """A C-contiguous, writeable array of the input's dtype and (checked) shape."""
    x = np.ascontiguousarray(a, dtype=NUMPY_DTYPES[v.dtype])
    if not x.flags.writeable or not x.flags.aligned:
        x = x.copy()
    try:
        want = concrete(v.shape, dims)
    except KeyError:
        want = None  # a dim only this input could bind: the kernel reads what it is given
    if x.ndim != len(v.shape) or (want is not None and x.shape != want):
        raise InputError(f"input '{v.name}' has shape {x.shape}, expected {v.type} = {want or shape_str(v.shape)}")
    return x


def _signature(module: GeneratedModule, graph: Graph) -> tuple:
    """The entry's exact argument types: C-contiguous arrays, then int64 sizes."""
    from numba import types

    nb = {"f32": types.float32, "f64": types.float64, "i32": types.int32}
    values = [*graph.inputs, *(d.value for d in module.draws)]
    arrays = [types.Array(nb[v.dtype], len(v.shape), "C") for v in values]
    return (*arrays, *([types.int64] * (len(module.dims) + module.threads)))


def compile_graph(graph: Graph, *, target: str = "cpu", name: str = "graph") -> CompiledGraph:
    """Generate, cache, load and compile ``graph`` for ``target``."""
    module = generator(target).generate(graph, name)
    STATS.generated += 1
    dtypes = [v.dtype for v in graph.inputs]
    if target == "cuda":  # kernels compile on first launch; see specc.backends.cuda.runtime
        from ..backends.cuda.runtime import cache_tag, compile_cuda_graph

        return compile_cuda_graph(graph, module, lambda m: _load(m, cache_key(m, [*dtypes, cache_tag()])))
    key = cache_key(module, dtypes)
    mod, path = _load(module, key)
    entry = getattr(mod, module.entry)
    if hasattr(entry, "signatures"):  # one kernel: compile it now, for the exact argument types
        sig = _signature(module, graph)
        if sig not in [tuple(s) for s in entry.signatures]:
            try:
                entry.compile(sig)
            except Exception:
                if not _numba_files(path):
                    raise
                # Numba's cached machine code of this module failed to load: rebuild it once
                mod = reload_without_numba_cache(module, path, key)
                entry = getattr(mod, module.entry)
                entry.compile(sig)
    # else the entry is Python calling kernels in turn (a module with threads): each compiles,
    # or loads from Numba's cache, on the first call
    return CompiledGraph(graph, module, path, entry, _module=mod)
