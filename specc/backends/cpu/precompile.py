"""Compiling a CPU module's kernels before its first call, in parallel processes on a cold cache.

In: a loaded generated module (its ``@njit`` functions), its cache file, and the argument types the
generator predicted for each function (``GeneratedModule.signatures``).
Out: every predicted function compiled for those types, from Numba's cache when it is there; nothing
is returned.  A prediction that turns out wrong costs only time: the call compiles what it needs.

Numba compiles one function at a time in a process (a global compiler lock), and almost all of a
new spec's start-up is that compilation (type inference, lowering, LLVM: about 0.1 s per function
and 0.02 s per line of generated code on this project's machines).  When Numba's cache holds none of
the module's functions, the functions are dealt by estimated cost (their lines) to this process and
up to ``jobs - 1`` worker processes (``python -m specc.runtime.compile_worker``).  Each worker
compiles its share with ``cache=True``, so its machine code lands in Numba's cache beside the module;
this process compiles its own share meanwhile, waits, and then loads the workers' code from that
cache.  A worker reads the module's source from the cache file only after checking that the file
is private to the user and that its SHA-256 is the one this process wrote; it runs nothing else.
``jobs`` is ``$SPECC_COMPILE_JOBS``, else the number of CPUs the process may use (at most 4); 1 turns
the workers off.  A worker's errors are dropped (its share is then compiled at the first call) unless
``$SPECC_COMPILE_DEBUG`` is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

WORKER_START = 50  # a worker's start (Python, NumPy, Numba and its first compile), in lines of generated code (~1 s)
MAX_JOBS = 4


def numba_type(kind: Sequence) -> Any:
    """The Numba type of an argument kind: ("int",) or (dtype, rank, layout)."""
    from numba import types

    from ...ir.core import NUMPY_DTYPES

    if kind[0] == "int":
        return types.int64
    import numpy as np
    from numba.np.numpy_support import from_dtype

    dtype, rank, layout = kind
    return types.Array(from_dtype(np.dtype(NUMPY_DTYPES[dtype])), rank, layout)


def compile_kernels(mod: ModuleType, kernels: Sequence[tuple[str, Sequence, int]]) -> None:
    """Compile each ``(function, argument kinds, cost)`` of ``mod`` for those types (Numba's cache first)."""
    for name, kinds, _cost in kernels:
        fn = getattr(mod, name, None)
        if fn is None or not hasattr(fn, "compile"):
            continue
        sig = tuple(numba_type(k) for k in kinds)
        if sig not in [tuple(s) for s in fn.signatures]:
            fn.compile(sig)


def jobs() -> int:
    env = os.environ.get("SPECC_COMPILE_JOBS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            return 1
    from .runtime import kernel_threads

    return max(1, min(MAX_JOBS, kernel_threads()))


def deal(kernels: Sequence[tuple[str, Sequence, int]], n: int) -> list[list[tuple[str, Sequence, int]]]:
    """Split kernels into ``n`` shares of about equal cost (largest first; the first share is this
    process's, which does not pay a worker's start)."""
    shares: list[list] = [[] for _ in range(n)]
    load = [0] + [WORKER_START] * (n - 1)
    for k in sorted(kernels, key=lambda k: -k[2]):
        i = min(range(n), key=lambda j: load[j])
        shares[i].append(k)
        load[i] += k[2] + 10
    return shares


def precompile(mod: ModuleType, path: Path, source: str, kernels: Sequence[tuple[str, Sequence, int]],
               cold: bool) -> None:
    """Compile ``kernels`` of ``mod`` now: on a ``cold`` cache, shared with worker processes."""
    n = min(jobs(), len(kernels)) if cold else 1
    shares = deal(kernels, n) if n > 1 else [list(kernels)]
    workers = []
    for share in shares[1:]:
        if not share:
            continue
        request = json.dumps({"path": str(path), "sha256": hashlib.sha256(source.encode()).hexdigest(),
                              "kernels": [[name, [list(k) for k in kinds], cost] for name, kinds, cost in share]})
        try:
            quiet = None if os.environ.get("SPECC_COMPILE_DEBUG") else subprocess.DEVNULL  # a worker's errors
            proc = subprocess.Popen([sys.executable, "-m", "specc.runtime.compile_worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=quiet, env=_worker_env())
            proc.stdin.write(request.encode())
            proc.stdin.close()
            workers.append(proc)
        except OSError:
            shares[0].extend(share)  # no worker: this process compiles it
    try:
        compile_kernels(mod, shares[0])
    finally:
        for proc in workers:
            try:
                proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()


def _worker_env() -> dict[str, str]:
    """The worker's environment: this one, with the package importable as this process imports it."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["SPECC_COMPILE_JOBS"] = "1"
    return env
