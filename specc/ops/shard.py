"""One shard of a batch (data-parallel training): its rows, and its random draws.

:func:`shard` says which rows of a batch a rank takes, :func:`take_rows` cuts them out.

Random draws: in, a random op's symbolic shape, the dim sizes bound for this call, and the
row window that data-parallel training sets around a rank's training step
(:func:`batch_rows`): this process computes rows ``[lo, hi)`` of a batch of
``total`` rows along the batch dim (``B``).
Out: the shape to draw (the whole batch's) and the index that cuts this
process's rows out of it (:func:`draw_plan`).

So a rank draws exactly the numbers that one process training on the whole
batch draws for the same rows: dropout masks and a VAE's noise are a function
of (seed, step, global row, global batch size), never of the number of ranks.
The price is that each rank draws the whole batch's numbers and keeps its
share (random draws are cheap next to the kernels).  Outside a window (one
process, evaluation) nothing changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from ..ir.dims import Shape


@dataclass(frozen=True)
class RowWindow:
    """Rows ``[lo, hi)`` of a batch of ``total`` rows along the dim named ``dim``."""

    dim: str
    total: int
    lo: int
    hi: int


_WINDOW: ContextVar[RowWindow | None] = ContextVar("specc_row_window", default=None)


@contextlib.contextmanager
def batch_rows(window: RowWindow | None) -> Iterator[None]:
    """Random draws made inside are the rows ``window`` of the whole batch's draws."""
    token = _WINDOW.set(window)
    try:
        yield
    finally:
        _WINDOW.reset(token)


def draw_plan(shape: Shape, sizes: dict[str, int]) -> tuple[tuple[int, ...], tuple[slice, ...] | None]:
    """(the shape to draw, the index of this process's rows in it, or None to keep all of it).

    ``sizes`` are the dims of this call (the batch dim bound to the shard's rows).  A shape
    without the batch dim (noise shared by every row) is drawn whole, as one process would.
    """
    window = _WINDOW.get()
    local = tuple(d.evaluate(sizes) for d in shape)
    if window is None or sizes.get(window.dim) != window.hi - window.lo:
        return local, None
    axes = [i for i, d in enumerate(shape) if window.dim in d.symbols]
    if not axes:
        return local, None
    for i in axes:
        if shape[i].as_symbol() != window.dim:
            from ..errors import InputError

            raise InputError(f"data-parallel training cannot split a random draw of shape [{', '.join(map(str, shape))}] "
                             f"by rows: its axis {i} ({shape[i]}) is not the batch dim {window.dim} itself",
                             hint="train this model in one process, or draw the noise with the batch dim alone on "
                                  "its axis")
    full = tuple(window.total if i in axes else n for i, n in enumerate(local))
    cut = tuple(slice(window.lo, window.hi) if i in axes else slice(None) for i in range(len(shape)))
    return full, cut


def shard(rows: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank``'s block ``[lo, hi)`` of ``rows`` rows split over ``size`` ranks (the first ``rows % size``
    ranks take one row more)."""
    base, extra = divmod(rows, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def take_rows(batch: Mapping[str, np.ndarray], axes: Mapping[str, int], lo: int, hi: int) -> dict[str, np.ndarray]:
    """Rows ``[lo, hi)`` of every input of a batch, along its batch axis."""
    out = {}
    for k, a in batch.items():
        index = [slice(None)] * a.ndim
        index[axes[k]] = slice(lo, hi)
        out[k] = np.ascontiguousarray(a[tuple(index)])
    return out
