"""Bounds at the API's boundary: sizes, memory and input values, checked before anything is allocated or cast.

In: a checked program (its parameters and their declarations), run-time input arrays, a source.
Out: nothing, or one located error: a parameter no machine can hold (its byte size past 2**62, the
int64 sizes kernels use) at the spec line that makes it; parameters larger than this machine's memory,
before allocating them; an initialiser whose arguments cannot work (``normal(-1)``) at its line; a spec
nested deeper than the checker's recursion; an input whose values do not fit its dtype (int64 labels
past int32, float64 past float32) or are not finite, named with the first bad index.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable

import numpy as np

from .errors import InputError, ModelError, Source, Span, param_site
from .ir.core import NUMPY_DTYPES, Value
from .training.npzfile import first_nonfinite

MAX_BYTES = 2**62


def _shape(p) -> tuple[int, ...]:
    return tuple(d.value for d in p.value.shape)


def check_param_sizes(params: Iterable[Any], source: Source | None) -> None:
    """A parameter whose byte size passes 2**62 is a spec error at the line that makes it (kernels would wrap)."""
    params = list(params)
    for p in params:
        n = math.prod(_shape(p))
        if n * NUMPY_DTYPES[p.value.dtype]().itemsize > MAX_BYTES:
            loc, related = param_site(params, source, p.name)
            raise ModelError(f"parameter '{p.name}' {list(_shape(p))} holds {n:.3g} numbers: more than any machine "
                             f"can hold", loc, related=related, hint="check the sizes given to its layer")


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(params: Iterable[Any], source: Source | None) -> None:
    """Parameters that together pass this machine's memory: an error naming the first that does, and its bytes."""
    params = list(params)
    memory = memory_bytes()
    if memory is None:
        return
    total = 0
    for p in params:
        size = math.prod(_shape(p)) * NUMPY_DTYPES[p.value.dtype]().itemsize
        total += size
        if total > memory:
            loc, related = param_site(params, source, p.name)
            raise ModelError(f"parameter '{p.name}' {list(_shape(p))} takes {size:,} bytes; with the parameters "
                             f"before it, more than this machine's memory ({memory:,} bytes)", loc, related=related)


def initialise(p: Any, params: Iterable[Any], source: Source | None, make: Callable[[], np.ndarray]) -> np.ndarray:
    """``make()`` (the parameter's initialiser), its failure (``normal(-1)``) a located error."""
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            return make()
    except (ValueError, OverflowError, FloatingPointError, MemoryError) as e:
        loc, related = param_site(params, source, p.name)
        raise ModelError(f"cannot initialise parameter '{p.name}' with {p.init}: {e}", loc, related=related) from None


def too_deep(name: str, span: Span) -> ModelError:
    """The last line of defence against a spec nested deeper than the checker's recursion (a long chain
    of layers calling layers): one located error, never a RecursionError traceback."""
    return ModelError(f"'{name}' nests too deeply to check (a chain of layers calling layers, or of expressions, "
                      f"deeper than the checker's recursion allows)", span,
                      hint="flatten the chain: call fewer layers inside one another")


def checked_values(name: str, a: np.ndarray, v: Value, allow_nonfinite: bool) -> np.ndarray:
    """``a`` as ``v``'s dtype, its values checked before the cast (which would wrap or overflow)."""
    want = NUMPY_DTYPES[v.dtype]
    if not v.type.is_float:
        info = np.iinfo(want)
        if a.size and (a.min() < info.min or a.max() > info.max):
            index = tuple(int(i) for i in np.argwhere((a < info.min) | (a > info.max))[0])
            raise InputError(f"input '{name}' holds {a[index]} at index {list(index)}, outside the range of "
                             f"{v.dtype} ({info.min} to {info.max})")
    with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf, reported just below
        out = np.asarray(a, dtype=want, order="C")  # keeps 0-d
    if allow_nonfinite or not v.type.is_float:
        return out
    bad = first_nonfinite(out)
    if bad is not None:
        index, value = bad
        overflow = np.issubdtype(a.dtype, np.floating) and np.isfinite(a[index])
        raise InputError(f"input '{name}' holds {value} at index {list(index)}"
                         + (f" (the value {float(a[index])!r} does not fit in {v.dtype})" if overflow else ""),
                         hint="fix the data; if non-finite values are intended, pass --allow-nonfinite "
                              "(model.allow_nonfinite = True)")
    return out
