"""The on-disk kernel cache: where generated modules are written, how they are keyed and loaded.

In: a :class:`~specc.backends.GeneratedModule` and its input dtypes.  Out: the imported module
and the path of its file.

1. the target's generator writes the module's source (:mod:`specc.backends`);
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

The cache directory is ``$SPECC_CACHE_DIR``, else the platform's (``$XDG_CACHE_HOME/specc``,
``~/.cache/specc`` by default on Linux; :func:`cache_dir`);
:func:`clear_cache` empties it (``specc cache clear``).  Within a process,
loaded modules are also kept by hash, so compiling the same graph twice costs
only the generation of its source.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from ..backends.base import GeneratedModule

MODULE_PREFIX = "specc_kernels"


# ---- the cache ------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$SPECC_CACHE_DIR``, else the platform's user cache directory (``$XDG_CACHE_HOME/specc``, by
    default ``~/.cache/specc``, on Linux; ``~/Library/Caches/specc`` on macOS; ``%LOCALAPPDATA%`` on Windows)."""
    env = os.environ.get("SPECC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("specc", appauthor=False)


def versions() -> str:
    import numba

    from .. import __version__

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
