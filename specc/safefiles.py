"""Files that only this user can write: the checked cache directory and atomic writes into it.

In: the configured cache directory (``$SPECC_CACHE_DIR``, else ``~/.cache/specc``) and bytes to store.
Out: a directory that passed the ownership check (created 0700, owned by this user, not writable by
group or others), or else a private temporary directory for this process with a one-line warning;
files written there with ``mkstemp`` + fsync + ``os.replace`` (a new name, so a symlink planted at
the final name is replaced, never followed), and read back only when they are regular files owned by
this user.

specc imports generated modules and Numba unpickles its machine-code cache from this directory, and
the parser loads its LALR tables from it: whoever can write there can run code as the user, so
nothing is read from a directory that fails the check.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_WARNED: set[str] = set()
_LOCK = threading.Lock()
_FALLBACK: Path | None = None


def configured_dir() -> Path:
    """Where the user asked the cache to be: ``$SPECC_CACHE_DIR``, else the platform's user cache
    directory (``$XDG_CACHE_HOME/specc``, by default ``~/.cache/specc``, on Linux;
    ``~/Library/Caches/specc`` on macOS; ``%LOCALAPPDATA%`` on Windows)."""
    env = os.environ.get("SPECC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_path

    return user_cache_path("specc", appauthor=False)


def warn_once(message: str) -> None:
    """One line on stderr, once per process for each distinct message."""
    with _LOCK:
        if message in _WARNED:
            return
        _WARNED.add(message)
    print(f"specc: warning: {message}", file=sys.stderr)


def unsafe_reason(path: Path) -> str | None:
    """Why ``path`` is not a directory only this user can write (None when it is)."""
    try:
        st = os.stat(path)  # a symlinked cache directory is fine if its target passes
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"it is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"it is writable by {'others' if st.st_mode & 0o002 else 'its group'} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _ensure(path: Path) -> str | None:
    """Create ``path`` 0700 if missing, then check it; the reason it cannot be used, or None."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create it ({e.strerror or e})"
    reason = unsafe_reason(path)
    if reason is None and not os.access(path, os.W_OK | os.X_OK):
        reason = "it is not writable"
    return reason


def fallback_dir() -> Path:
    """A private directory for this process (mkdtemp: 0700, a fresh random name), removed at exit."""
    global _FALLBACK
    with _LOCK:
        if _FALLBACK is None:
            _FALLBACK = Path(tempfile.mkdtemp(prefix="specc-cache-"))
            atexit.register(shutil.rmtree, _FALLBACK, True)
        return _FALLBACK


def private_dir(*parts: str) -> Path:
    """``configured_dir()/parts...`` when every level passes the check; else a private temporary
    directory (with a one-line warning saying why), so that work goes on without a lasting cache."""
    root = configured_dir()
    path = root
    for level in (root, *(root.joinpath(*parts[:i + 1]) for i in range(len(parts)))):
        reason = _ensure(level)
        if reason is not None:
            warn_once(f"not using the cache directory {level}: {reason}; "
                      f"compiling into a private temporary directory instead (set SPECC_CACHE_DIR to "
                      f"a directory only you can write)")
            path = fallback_dir().joinpath(*parts)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return path
        path = level
    return path


def read_private(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file owned by this user (never through a symlink)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            return None
        return f.read()


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` when the block ends: a fresh mkstemp file in the same
    directory, fsync, rename over.  Readers see the old file or the new one, never half of one; on
    any failure (a full disk, a read-only directory, an error in the block) the temporary file is
    removed and the error raised."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def remove_stale_temps(directory: Path, max_age_s: float = 3600.0) -> int:
    """Remove ``.*.tmp`` files left in ``directory`` by writes that were killed (older than ``max_age_s``)."""
    import time

    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for e in entries:
        if e.name.startswith(".") and e.name.endswith(".tmp"):
            try:
                if e.is_file(follow_symlinks=False) and now - e.stat(follow_symlinks=False).st_mtime > max_age_s:
                    os.unlink(e.path)
                    removed += 1
            except OSError:
                pass
    return removed
