"""Compiled CPU graphs: a generated CPU module loaded, its entry compiled and called on NumPy arrays.

In: a Graph and its :class:`~specc.backends.base.GeneratedModule` from :mod:`specc.backends.cpu.generator`,
and a function that imports the module from the cache (:mod:`specc.runtime.cache`).
Out: a :class:`CompiledGraph`, called as ``compiled(args, dims, seed=0, training=False)`` with one
array per graph input and the sizes of the symbolic dims; it returns one array per graph output,
equal to what :func:`specc.backends.interp.interpret` gives (random draws are made here, outside
the kernel, with the interpreter's scheme; see :mod:`specc.backends.lift`).

The entry is compiled for the graph's exact argument types right away (from Numba's cache when it
is there), so one compiled kernel serves every binding of the dims.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...errors import InputError
from ...ir.core import NUMPY_DTYPES, Graph, Value
from ...ir.dims import concrete, shape_str
from ..base import GeneratedModule
from .precompile import precompile
from .runtime import _blas_limit, kernel_threads, tune_allocator

_CALL_LOCK = threading.Lock()  # kernel calls are serialised: each already uses every thread it may


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
    x = np.asarray(a, dtype=NUMPY_DTYPES[v.dtype], order="C")  # keeps 0-d (ascontiguousarray makes it 1-d)
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


def load_compiled(graph: Graph, module: GeneratedModule, load: Callable[..., Any]) -> CompiledGraph:
    """Import ``module`` (``load(extra_key)`` -> (module object, path)) and compile its entry now
    (``load(extra_key, fresh=True)``: the same without Numba's cache of it, None when it had none)."""
    mod, path = load([])
    entry = getattr(mod, module.entry)
    if hasattr(entry, "signatures"):  # one kernel: compile it now, for the exact argument types
        sig = _signature(module, graph)
        if sig not in [tuple(s) for s in entry.signatures]:
            mod, path = _rebuilt_on_failure(lambda m, cold: getattr(m, module.entry).compile(sig), mod, path, load)
    elif module.signatures:  # a Python entry calling kernels in turn: those whose types are known, now
        mod, path = _rebuilt_on_failure(
            lambda m, cold: precompile(m, path, module.source, module.signatures, cold=cold),
            mod, path, load, cold=not _numba_cached(path))
    entry = getattr(mod, module.entry)
    # any other kernel compiles, or loads from Numba's cache, on the first call
    return CompiledGraph(graph, module, path, entry, _module=mod)


def _rebuilt_on_failure(compile_: Callable[[ModuleType, bool], Any], mod: ModuleType, path: Path,
                        load: Callable[..., Any], cold: bool = True) -> tuple[ModuleType, Path]:
    """``compile_(mod, cold)``; when Numba's cached machine code fails to load, the module once more without
    that cache (``load([], fresh=True)``; None when there was none: the error is real)."""
    try:
        compile_(mod, cold)
        return mod, path
    except Exception:
        again = load([], fresh=True)
        if again is None:
            raise
        compile_(again[0], True)
        return again


def _numba_cached(path: Path) -> bool:
    """Whether Numba's cache (``__pycache__`` beside the module) holds any of the module's functions."""
    pycache = path.parent / "__pycache__"
    return pycache.is_dir() and any(p.name.startswith(path.stem + ".") for p in pycache.iterdir())


__all__ = ["CompiledGraph", "load_compiled"]
