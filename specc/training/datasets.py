"""Built-in datasets beyond the digit images: per-row digit tags and the yearly sunspot series.

In: a dataset name and the model to serve it to.
Out: :class:`Examples`, one flat example per row for each model input, which
:func:`specc.training.data.load_dataset` lays out in the inputs' shapes, checks and splits.

* ``digit_rows``: the digits (scikit-learn's 8x8 images) as T = 8 pixel rows, each row tagged with
  the class of its image: a per-step label for sequence taggers (``x: f32[T, B, 8]``,
  ``y: i32[T, B]``).  A row alone rarely tells its digit, so a tagger has to read the other rows;
  the first rows only the later ones (a bidirectional model).  Test split: that of ``digits``.
* ``sunspots``: the yearly mean sunspot numbers 1700-2008 (public domain, NOAA's National
  Geophysical Data Center, as shipped by statsmodels; ``data_files/sunspots.csv``), divided by 100,
  as windows of W consecutive years (the model's first float input, W fixed by its shape) and the
  year that follows (its second float input, one value).  The test split is chronological: the last
  20% of the windows (targets 1949-2008), never trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..api import Model

NAMES = ("digit_rows", "sunspots")
SUNSPOTS_CSV = Path(__file__).parent / "data_files" / "sunspots.csv"
SUNSPOTS_SCALE = 100.0  # sunspot numbers are 0..190: scaled to about [0, 2]

Digits = Callable[[], "tuple[np.ndarray, np.ndarray]"]  # images [N, 8, 8] in [0, 1], labels [N]


@dataclass(frozen=True)
class Examples:
    """``rows[input]``: [N, k], one flat example per row; ``chronological``: test on the last examples."""

    rows: dict[str, np.ndarray]
    chronological: bool = False


def examples(name: str, model: Model, digits: Digits) -> Examples:
    """The built-in dataset ``name`` (one of :data:`NAMES`) for ``model``'s inputs."""
    if name == "digit_rows":
        return digit_rows(model, digits)
    return sunspots(model)


def _inputs(model: Model, name: str, floats: int, ints: int) -> tuple[list[str], list[str]]:
    """The model's float and integer inputs, in declaration order, if there are as many as the data gives."""
    fl = [n for n, (dt, _s) in model.inputs.items() if dt.startswith("f")]
    it = [n for n, (dt, _s) in model.inputs.items() if not dt.startswith("f")]
    if len(fl) != floats or len(it) != ints:
        have = ", ".join(f"{n}: {dt}[{', '.join(map(str, s))}]" for n, (dt, s) in model.inputs.items())
        raise InputError(f"the '{name}' dataset gives {floats} float and {ints} integer input(s), "
                         f"but model '{model.name}' has inputs {have}")
    return fl, it


# ---- digit rows ---------------------------------------------------------------------------------
def digit_rows(model: Model, digits: Digits) -> Examples:
    """Images as row sequences, every row tagged with its image's class."""
    (x,), (y,) = _inputs(model, "digit_rows", 1, 1)
    images, labels = digits()
    n, rows = images.shape[0], images.shape[1]
    return Examples({x: images.reshape(n, -1), y: np.repeat(labels[:, None], rows, axis=1)})


# ---- sunspots -----------------------------------------------------------------------------------
def sunspot_series() -> tuple[np.ndarray, np.ndarray]:
    """(years [309], yearly mean sunspot numbers [309]), 1700-2008, unscaled."""
    table = np.loadtxt(SUNSPOTS_CSV, delimiter=",", comments="#", skiprows=5)
    return table[:, 0].astype(np.int64), table[:, 1]


def windows(series: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows [N, width] of consecutive values, the value after each [N]), N = len(series) - width."""
    n = len(series) - width
    if n <= 0:
        raise InputError(f"a window of {width} values leaves no example in a series of {len(series)}")
    idx = np.arange(width)[None, :] + np.arange(n)[:, None]
    return series[idx], series[width:]


def _fixed_size(model: Model, name: str) -> int:
    """Values in one example of input ``name``: its sizes other than the batch dim, which must be numbers."""
    _dt, shape = model.inputs[name]
    sizes = [model.program.dims.get(d, d) if isinstance(d, str) else d for d in shape]
    symbolic = [d for d in sizes if not isinstance(d, int)]
    if len(symbolic) != 1:
        raise InputError(f"the 'sunspots' dataset needs input '{name}' of model '{model.name}' to have fixed "
                         f"sizes besides its batch dim, not [{', '.join(map(str, shape))}]",
                         hint="write the window length as a number, e.g. x: f32[12, B, 1]")
    return math.prod(d for d in sizes if isinstance(d, int))


def sunspots(model: Model) -> Examples:
    """Windows of the scaled series and the next value; the last 20% of the windows are the test split."""
    (x, y), _ = _inputs(model, "sunspots", 2, 0)
    if _fixed_size(model, y) != 1:
        raise InputError(f"input '{y}' of model '{model.name}' should hold one value per example "
                         "(the year after the window)")
    _years, counts = sunspot_series()
    wins, nxt = windows(counts / SUNSPOTS_SCALE, _fixed_size(model, x))
    return Examples({x: wins, y: nxt[:, None]}, chronological=True)
