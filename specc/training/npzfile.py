"""Reading ``.npz`` and ``.npy`` files that may be damaged, truncated or not NumPy files at all.

In: a path, what the file is for (``data file``, ``checkpoint``) and which arrays to read.
Out: the arrays, read in full (so a bad CRC or a truncated member is found here, not later),
or one :class:`~specc.errors.InputError` saying the file is not a valid ``.npz``/``.npy`` and why.

Pickles are never loaded (``allow_pickle=False``), and the error never suggests allowing them:
NumPy's own message for a file that is not an archive ("contains pickled (object) data ... load it
unsafely") invites exactly what an attacker who made the file wants.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..errors import InputError

ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"


def _not_valid(path: Path, what: str, kind: str, why: str) -> InputError:
    return InputError(f"cannot read {what} '{path}': not a valid {kind} file ({why})",
                      hint=f"write it again with np.save{'z' if kind == '.npz' else ''}(...) "
                           f"(or from specc); a damaged file cannot be repaired")


def _head(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except FileNotFoundError:
        raise InputError(f"cannot read {what} '{path}': no such file") from None
    except IsADirectoryError:
        raise InputError(f"cannot read {what} '{path}': it is a directory") from None
    except OSError as e:
        raise InputError(f"cannot read {what} '{path}': {e.strerror or e}") from None


def _why(e: BaseException) -> str:
    if isinstance(e, zipfile.BadZipFile):
        text = str(e)
        return "a damaged member: its CRC-32 check failed" if "CRC" in text else f"a damaged zip archive: {text}"
    if isinstance(e, (EOFError, zlib.error)):
        return "it is truncated or damaged"
    if isinstance(e, ValueError) and "pickle" in str(e).lower():
        return "it holds an object array, which specc never loads"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def read_npz(path: str | Path, what: str = "file",
             wanted: Callable[[str], bool] | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """(the arrays whose names pass ``wanted`` (all by default), the names of every array in the file)."""
    path = Path(path)
    head = _head(path, what)
    if not head:
        raise _not_valid(path, what, ".npz", "the file is empty")
    if not head.startswith(ZIP_MAGIC):
        raise _not_valid(path, what, ".npz", "it is not a zip archive of arrays")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = list(f.files)
            arrays = {k: np.asarray(f[k]) for k in names if wanted is None or wanted(k)}
    except InputError:
        raise
    except Exception as e:  # BadZipFile, EOFError, zlib.error, ValueError, OSError: all mean damage
        raise _not_valid(path, what, ".npz", _why(e)) from None
    return arrays, names


def read_npy(path: str | Path, what: str = "file") -> np.ndarray:
    path = Path(path)
    head = _head(path, what)
    if not head:
        raise _not_valid(path, what, ".npy", "the file is empty")
    if not head.startswith(NPY_MAGIC):
        raise _not_valid(path, what, ".npy", "it does not start like a NumPy array file")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise _not_valid(path, what, ".npy", _why(e)) from None


def first_nonfinite(a: np.ndarray) -> tuple[tuple[int, ...], float] | None:
    """The index and value of the first NaN or infinity in ``a`` (C order), or None."""
    if not np.issubdtype(a.dtype, np.floating) or a.size == 0:
        return None
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    flat = int(np.argmax(bad.ravel()))
    index = tuple(int(i) for i in np.unravel_index(flat, a.shape))
    return index, float(a.ravel()[flat])


def names_list(names: Iterable[str], limit: int = 6) -> str:
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
