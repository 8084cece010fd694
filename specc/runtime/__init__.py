"""The runtime: generated kernel modules, cached on disk, loaded and called.

In: a Graph (forward, backward, optimised: any) and a target.
Out: a :class:`CompiledGraph`, called as ``compiled(args, dims, seed=0, training=False)``
with one array per graph input and the sizes of the symbolic dims; it returns
one array per graph output, equal to what :func:`specc.backends.interp.interpret`
gives (random draws included: they are made here, outside the kernel, with
the interpreter's scheme; see :mod:`specc.backends.lift`).

The path of a graph: the target's backend object (:func:`specc.backends.backend`) gives the
generator that writes the module's source; :mod:`specc.runtime.cache` writes it to the cache
and imports it; the backend loads it (:mod:`specc.backends.cpu.compiled`: the entry compiled for
the graph's exact argument types right away, so one compiled kernel serves every binding of the
dims; :mod:`specc.backends.cuda.runtime` for CUDA).  The CPU kernels' threads and memory:
:mod:`specc.backends.cpu.runtime`.
"""

from __future__ import annotations

from typing import Any

from ..backends import backend
from ..backends.cpu.compiled import CompiledGraph
from ..ir.core import Graph
from .cache import (STATS, CacheStats, _load, _numba_files, cache_dir, cache_info, cache_key, clear_cache,
                    reload_without_numba_cache)

__all__ = ["CacheStats", "CompiledGraph", "STATS", "cache_dir", "cache_info", "cache_key", "clear_cache",
           "compile_graph"]


def compile_graph(graph: Graph, *, target: str = "cpu", name: str = "graph") -> Any:
    """Generate, cache, load and compile ``graph`` for ``target`` (a compiled graph of that target)."""
    b = backend(target)
    module = b.generator().generate(graph, name)
    STATS.generated += 1
    dtypes = [v.dtype for v in graph.inputs]

    def load(extra: list[str], fresh: bool = False) -> tuple[Any, Any] | None:
        """(module, path); with ``fresh``, after discarding Numba's cached machine code of it, or None
        when there is none (a kernel that failed to compile from that cache is rebuilt once)."""
        key = cache_key(module, [*dtypes, *extra])
        mod, path = _load(module, key)
        if not fresh:
            return mod, path
        if not _numba_files(path):
            return None
        return reload_without_numba_cache(module, path, key), path

    return b.load(graph, module, load)
