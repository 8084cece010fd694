"""The on-disk kernel cache: where generated modules are written, how they are keyed and loaded.

In: a :class:`~specc.backends.GeneratedModule` and its input dtypes.  Out: the imported module
and the path of its file.

1. the target's generator writes the module's source (:mod:`specc.backends`);
2. the source is hashed with the target, the input dtypes and the versions of
   specc, Numba, NumPy and Python; the hash names the file
   ``<cache>/<target>/<name>_<hash>.py``, written once (mkstemp + rename) and
   never rewritten while its bytes equal the source, because Numba's own cache
   is stamped with the file's mtime;
3. the module runs from the source in memory (never from the file, which is
   only compared with it: a file that differs is discarded with a warning and
   written again), registered in ``sys.modules`` as ``specc_kernels.<stem>``
   with the file as its ``__file__`` before it runs, so that Numba's
   ``cache=True`` stores the machine code in ``__pycache__`` beside it and the
   next process loads it instead of compiling; tracebacks point at real lines.
   Numba's index and data pickles of the module are read only from a directory
   that passed the ownership check, and are discarded (with a warning) when
   damaged;
4. the entry is compiled for the graph's exact argument types right away
   (from Numba's cache when it is there), so one compiled kernel serves every
   binding of the dims.

The cache directory is ``$SPECC_CACHE_DIR``, else the platform's (``$XDG_CACHE_HOME/specc``,
``~/.cache/specc`` by default on Linux; :func:`cache_dir`), used only
when it is owned by the user and not writable by group or others (created
0700); otherwise, or when it cannot be written, modules go to a private
temporary directory for the process, with a one-line warning
(:mod:`specc.safefiles`);
:func:`clear_cache` empties it (``specc cache clear``).  Within a process,
loaded modules are also kept by hash, so compiling the same graph twice costs
only the generation of its source.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from ..backends.base import GeneratedModule
from ..safefiles import configured_dir, fallback_dir, private_dir, read_private, remove_stale_temps, unsafe_reason, \
    warn_once, write_atomic

MODULE_PREFIX = "specc_kernels"


# ---- the cache ------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The configured cache directory (used only when it passes the check of :mod:`specc.safefiles`)."""
    return configured_dir()


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
    """The module for ``key``: from this process, else run from its in-memory source, with the cache
    file (written if missing or different) as its ``__file__`` so that Numba's own cache works."""
    with _LOCK:
        if key in _LOADED:
            STATS.memory_hits += 1
            return _LOADED[key], Path(_LOADED[key].__file__)
        _check_numba_cache_dir()
        path = _store(module, key)
        mod = _exec(module, path)
        _LOADED[key] = mod
        return mod, path


def _store(module: GeneratedModule, key: str) -> Path:
    """The cache file holding exactly ``module.source``, in a directory that passed the ownership check.

    An entry whose bytes differ from the source (truncated, edited, planted) is discarded with a
    one-line warning, with Numba's cache of it, and written again; a directory that cannot be
    written (read-only, full disk) sends this module to a private temporary directory instead.
    """
    data = module.source.encode()
    directory = private_dir(module.target)
    path = directory / f"{module.name}_{key}.py"
    try:  # made here, 0700, rather than by Numba with the umask's mode (0775 under umask 002)
        (directory / "__pycache__").mkdir(mode=0o700, exist_ok=True)
    except OSError:
        pass
    found = read_private(path)
    if found == data:
        _check_numba_cache(path)
        return path
    if found is not None or path.exists() or path.is_symlink():
        warn_once(f"discarded the damaged kernel cache entry {path}; rebuilding it")
        _discard_numba_cache(path)
    remove_stale_temps(directory)  # left by writes that were killed (kill -9, a full disk)
    try:
        write_atomic(path, data)
    except OSError as e:
        fallback = fallback_dir() / module.target
        fallback.mkdir(mode=0o700, parents=True, exist_ok=True)
        warn_once(f"cannot write the kernel cache in {directory} ({e.strerror or e}); "
                  f"compiling into a private temporary directory instead")
        path = fallback / path.name
        write_atomic(path, data)
    STATS.written += 1
    return path


def _exec(module: GeneratedModule, path: Path) -> ModuleType:
    """Run the generated source (from memory, never from the file) as module ``specc_kernels.<stem>``."""
    name = f"{MODULE_PREFIX}.{path.stem}"
    mod = ModuleType(name)
    mod.__file__ = str(path)
    sys.modules[name] = mod  # before it runs: Numba's cache looks the module up by name
    try:
        exec(compile(module.source, str(path), "exec"), mod.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    STATS.loaded += 1
    return mod


def _check_numba_cache_dir() -> None:
    """``$NUMBA_CACHE_DIR`` takes Numba's cache away from the checked directory: use it only if it passes too."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if not env:
        return
    import numba

    reason = unsafe_reason(Path(env))
    if reason is not None and numba.config.CACHE_DIR:
        warn_once(f"ignoring NUMBA_CACHE_DIR={env}: {reason}; Numba's cache goes beside the kernel modules")
        numba.config.CACHE_DIR = ""


# ---- Numba's cache of a module: <dir>/__pycache__/<stem>.<function>-<line>.py<ver>.nbi / .nbc ----
def _numba_files(path: Path) -> list[Path]:
    pycache = path.parent / "__pycache__"
    if not pycache.is_dir():
        return []
    return [p for p in pycache.iterdir() if p.name.startswith(path.stem + ".") and p.suffix in (".nbi", ".nbc")]


def _discard_numba_cache(path: Path) -> None:
    for p in _numba_files(path):
        p.unlink(missing_ok=True)


def _check_numba_cache(path: Path) -> None:
    """Discard (with a one-line warning) Numba's cache of ``path`` when a file of it does not unpickle.

    The directory passed the ownership check, so these pickles were written by this user; what is
    checked here is damage (a truncated file, a full disk), which Numba would raise on every load.
    """
    pycache = path.parent / "__pycache__"
    files = _numba_files(path)
    if not files:
        return
    if unsafe_reason(pycache) is not None:
        warn_once(f"discarded Numba's cache in {pycache}: it is not private to you; rebuilding it")
        _discard_numba_cache(path)
        return
    for p in files:
        data = read_private(p)
        try:
            if data is None:
                raise ValueError("not a regular file of yours")
            if p.suffix == ".nbi":  # the format version, then (source stamp, {key: data file})
                stream = io.BytesIO(data)
                pickle.load(stream)
                _stamp, overloads = pickle.loads(stream.read())
                missing = [f for f in overloads.values() if not (pycache / f).is_file()]
                if missing:
                    raise ValueError(f"{missing[0]} is missing")
            else:  # one pickle of the compiled library: walked, not run (it names the module's globals)
                _walk_pickle(data)
        except Exception:
            warn_once(f"discarded the damaged Numba cache of {path.name} ({p.name}); rebuilding it")
            _discard_numba_cache(path)
            return


def _walk_pickle(data: bytes) -> None:
    """Raise ValueError unless ``data`` is one whole pickle (every opcode valid, ending in STOP)."""
    last = None
    for last, _arg, _pos in pickletools.genops(data):
        pass
    if last is None or last.name != "STOP":
        raise ValueError("truncated pickle")


def reload_without_numba_cache(module: GeneratedModule, path: Path, key: str) -> ModuleType:
    """Discard Numba's cache of a module whose cached machine code failed to load, and run it afresh."""
    warn_once(f"discarded Numba's cache of {path.name}, which failed to load; rebuilding it")
    _discard_numba_cache(path)
    with _LOCK:
        mod = _exec(module, path)
        _LOADED[key] = mod
        return mod
