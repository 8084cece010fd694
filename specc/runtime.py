"""The runtime: generated kernel modules, cached on disk, loaded and called.

In: a Graph (forward, backward, optimised: any) and a target.
Out: a :class:`CompiledGraph`, called as ``compiled(args, dims, seed=0, training=False)``
with one array per graph input and the sizes of the symbolic dims; it returns
one array per graph output, equal to what :func:`specc.interpret.interpret`
gives (random draws included: they are made here, outside the kernel, with
the interpreter's scheme; see :mod:`specc.codegen.lift`).

The path of a graph:

1. the target's generator writes the module's source (:mod:`specc.codegen`);
2. the source is hashed with the target, the input dtypes and the versions of
   specc, Numba, NumPy and Python; the hash names the file
   ``<cache>/<target>/<name>_<hash>.py``, written once (atomically) and never
   rewritten, because Numba's own cache is stamped with the file's mtime;
3. the file is imported as a real module, registered in ``sys.modules``
   before it runs, so that Numba's ``cache=True`` stores the machine code in
   ``__pycache__`` beside it and the next process loads it instead of
   compiling; tracebacks point at real lines;
4. the entry is compiled for the graph's exact argument types right away
   (from Numba's cache when it is there), so one compiled kernel serves every
   binding of the dims.

The cache directory is ``$SPECC_CACHE_DIR``, else ``~/.cache/specc``;
:func:`clear_cache` empties it (``specc cache clear``).  Within a process,
loaded modules are also kept by hash, so compiling the same graph twice costs
only the generation of its source.

Threads: one owner of the cores.  A kernel splits its work itself, never
through BLAS: a recurrence whose steps treat batch rows independently runs
as one block of rows per thread (:func:`run_row_blocks`; every step of the
block on one thread, no synchronisation between steps, see
:mod:`specc.codegen.rows`), a large product outside loops as blocks of
rows (:func:`matmul_rows`, :func:`matmul_t_rows`), both on one pool of
Python threads (the kernels are ``nogil``, and NumPy releases the GIL in
BLAS); specc uses no OpenMP or ``prange``, whose threads spin after each
parallel region and, with as many cores as threads, take a core from the
next recurrence (in a process that had imported PyTorch, which shares
libgomp, the LSTM training step ran 1.3x slower that way).
The BLAS that ``np.dot`` calls is held to one thread while a kernel runs
(threadpoolctl, about 20 microseconds a call, restored after), so OpenBLAS
threads never compete with the kernel's own.  The per-step products of a
recurrence are small (32 x 256 x 1024 for the benchmark LSTM), where BLAS
threads only synchronise: on this project's two-core machine, busy with
other work, the LSTM forward kernel (T=8, B=64) took 200 ms with two
OpenBLAS threads and 1-3 ms with one.  The number of threads is
``$SPECC_NUM_THREADS``, else the CPUs this process may run on.  Kernel
calls are serialised by a lock: each one already uses every thread it may.

Memory: a kernel allocates its temporaries and results afresh at every call
(tens of MB for a recurrence's training step), and glibc's malloc gives
large freed blocks back to the system at once, so the next call takes them
again as fresh pages: about 8,000 page faults per LSTM training step at
T=50, B=32, H=256, 30% of its time on one thread.  Before the first kernel
call :func:`tune_allocator` asks glibc (``mallopt``) to serve blocks up to
64 MB from its heap and to keep up to 256 MB of freed heap for reuse;
``SPECC_MALLOC_TUNING=0`` leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .codegen import GeneratedModule, generator
from .dims import concrete, shape_str
from .errors import InputError
from .ir import NUMPY_DTYPES, Graph, Value

MODULE_PREFIX = "specc_kernels"


# ---- the cache ------------------------------------------------------------------------------
def cache_dir() -> Path:
    env = os.environ.get("SPECC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "specc"


def versions() -> str:
    import numba

    from . import __version__

    py = ".".join(map(str, sys.version_info[:3]))
    return f"specc {__version__}, numba {numba.__version__}, numpy {np.__version__}, python {py}"


def cache_key(module: GeneratedModule, dtypes: Sequence[str]) -> str:
    h = hashlib.sha256()
    for part in (module.source, module.target, ",".join(dtypes), versions()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


@dataclass
class CacheStats:
    """What compile_graph did, for tests and ``specc cache info``."""

    generated: int = 0  # sources generated
    memory_hits: int = 0  # modules found already loaded in this process
    written: int = 0  # files written to the cache
    loaded: int = 0  # files imported


STATS = CacheStats()
_LOADED: dict[str, ModuleType] = {}
_LOCK = threading.Lock()
_CALL_LOCK = threading.Lock()


def clear_cache(directory: Path | None = None) -> int:
    """Delete the cache directory's contents (and forget loaded modules); returns the number of files removed."""
    directory = directory or cache_dir()
    removed = 0
    if directory.is_dir():
        for child in directory.iterdir():
            if child.is_dir():
                removed += sum(1 for p in child.rglob("*") if p.is_file())
                shutil.rmtree(child)
            else:
                removed += 1
                child.unlink()
    _LOADED.clear()
    return removed


def cache_info(directory: Path | None = None) -> dict[str, Any]:
    directory = directory or cache_dir()
    files = [p for p in directory.rglob("*") if p.is_file()] if directory.is_dir() else []
    return {
        "directory": str(directory),
        "modules": sum(1 for p in files if p.suffix == ".py"),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }


def _load(module: GeneratedModule, key: str) -> tuple[ModuleType, Path]:
    """The module for ``key``: from this process, else from the cache file (written if missing)."""
    path = cache_dir() / module.target / f"{module.name}_{key}.py"
    with _LOCK:
        if key in _LOADED:
            STATS.memory_hits += 1
            return _LOADED[key], path
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(module.source)
            os.replace(tmp, path)  # atomic: another process may be writing the same file
            STATS.written += 1
        name = f"{MODULE_PREFIX}.{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # before it runs: Numba's cache looks the module up by name
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[name]
            raise
        STATS.loaded += 1
        _LOADED[key] = mod
        return mod, path


# ---- threads -----------------------------------------------------------------------------------
MIN_BLOCK_ROWS = 4  # a block of fewer rows makes per-step matrix-vector products: not worth a thread
_POOL: Any = None  # the threads that run row blocks, and how many it has
_POOL_SIZE = 0


def run_row_blocks(fn: Callable[..., None], args: tuple, rows: int, threads: int) -> None:
    """``fn(*args, lo, hi)`` for blocks of the ``rows`` rows, one block per thread, and wait.

    Called by a generated module's Python entry for a recurrence whose rows are
    independent; ``fn`` is a ``nogil`` kernel, so the blocks run in parallel.
    """
    _in_blocks(lambda lo, hi: fn(*args, lo, hi), rows, max(1, min(threads, rows // MIN_BLOCK_ROWS)))


def _in_blocks(fn: Callable[[int, int], Any], n: int, blocks: int) -> list[Any]:
    """``fn(lo, hi)`` for ``blocks`` blocks of ``range(n)``, the first on this thread, the others on the pool."""
    global _POOL, _POOL_SIZE
    if blocks <= 1:
        return [fn(0, n)]
    if _POOL_SIZE < blocks:
        from concurrent.futures import ThreadPoolExecutor

        _POOL_SIZE = max(blocks, kernel_threads())
        _POOL = ThreadPoolExecutor(max_workers=_POOL_SIZE, thread_name_prefix="specc")
    futures = [_POOL.submit(fn, k * n // blocks, (k + 1) * n // blocks) for k in range(1, blocks)]
    first = fn(0, n // blocks)
    return [first, *(f.result() for f in futures)]


# a product below this many multiply-adds runs on one thread: handing a block to another Python
# thread costs ~20-50 microseconds, about what one core does in 2^22 multiply-adds
MIN_PARALLEL_MACS = 1 << 22
MIN_PRODUCT_ROWS = 16  # thinner blocks make BLAS run its small-matrix paths


def matmul_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray, threads: int) -> None:
    """``np.dot(a, b, out)`` on up to ``threads`` threads, by blocks of rows of ``a``.

    Called by a generated module's Python entry for a product outside any loop (an input
    projection of all steps, a dense layer).  NumPy releases the GIL inside BLAS (held to one
    thread), so the blocks run in parallel on the same pool as the row blocks of recurrences:
    specc's kernels use no other threads (no OpenMP, whose spinning threads would compete).
    """
    m, k = a.shape
    n = b.shape[1] if b.ndim == 2 else 1
    blocks = min(threads, m // MIN_PRODUCT_ROWS)
    if blocks < 2 or m * k * n < MIN_PARALLEL_MACS:
        np.dot(a, b, out=out)
    else:
        _in_blocks(lambda lo, hi: np.dot(a[lo:hi], b, out=out[lo:hi]), m, blocks)


def matmul_t_rows(at: np.ndarray, b: np.ndarray, out: np.ndarray, threads: int) -> None:
    """``np.dot(at.T, b, out)`` (a weight gradient ``z.T @ g``) on up to ``threads`` threads, read
    from ``at`` itself: split along the inner axis, where both operands' blocks are contiguous (BLAS
    reads ``at[lo:hi]`` transposed, no copy); one partial product per thread, added in order."""
    k, m = at.shape
    n = b.shape[1]
    blocks = min(threads, k // MIN_PRODUCT_ROWS)
    if blocks < 2 or m * k * n < MIN_PARALLEL_MACS:
        np.dot(at.T, b, out=out)
        return
    partial = _in_blocks(lambda lo, hi: np.dot(at[lo:hi].T, b[lo:hi]), k, blocks)
    np.add(partial[0], partial[1], out=out)
    for p in partial[2:]:
        out += p


def kernel_threads() -> int:
    """``$SPECC_NUM_THREADS``, else the CPUs this process may run on."""
    env = os.environ.get("SPECC_NUM_THREADS")
    n = int(env) if env else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


_CONTROLLER: Any = None


def _blas_limit() -> Any:
    global _CONTROLLER
    if _CONTROLLER is None:
        import scipy.linalg.cython_blas  # noqa: F401  (Numba's np.dot calls this BLAS: load it first)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


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
        if _ALLOCATOR is None:
            tune_allocator()
        with _CALL_LOCK, _blas_limit():
            outs = self.entry(*arrays, *draws, *(int(sizes[s]) for s in self.module.dims), *extra)
        return list(outs)


MMAP_THRESHOLD = 64 << 20  # blocks up to this size come from the heap, not from their own mmap
TRIM_THRESHOLD = 256 << 20  # freed heap kept for reuse before any goes back to the system
_ALLOCATOR: bool | None = None  # None: not tuned yet; else whether glibc took the settings


def tune_allocator() -> bool:
    """Keep the memory of freed large blocks for the next kernel call (glibc only; once per process).

    Sets glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (which also stops their dynamic
    adjustment).  Returns whether glibc took them: False on other C libraries, or when
    ``$SPECC_MALLOC_TUNING`` is ``0``.
    """
    global _ALLOCATOR
    if _ALLOCATOR is not None:
        return _ALLOCATOR
    _ALLOCATOR = False
    if os.environ.get("SPECC_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
    _ALLOCATOR = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _ALLOCATOR


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
    if target == "cuda":  # kernels compile on first launch; see specc.codegen.cuda_runtime
        from .codegen.cuda_runtime import cache_tag, compile_cuda_graph

        return compile_cuda_graph(graph, module, lambda m: _load(m, cache_key(m, [*dtypes, cache_tag()])))
    key = cache_key(module, dtypes)
    mod, path = _load(module, key)
    entry = getattr(mod, module.entry)
    if hasattr(entry, "signatures"):  # one kernel: compile it now, for the exact argument types
        sig = _signature(module, graph)
        if sig not in [tuple(s) for s in entry.signatures]:
            entry.compile(sig)
    # else the entry is Python calling kernels in turn (a module with threads): each compiles,
    # or loads from Numba's cache, on the first call
    return CompiledGraph(graph, module, path, entry, _module=mod)
