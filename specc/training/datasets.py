"""Built-in datasets beyond the digit images: per-row digit tags and the yearly sunspot series.

In: a dataset name and the model to serve it to.
Out: :class:`~specc.training.data.Splits` (training examples and a held-out test split), laid out in
the shapes the model's inputs declare, checked like any other data.

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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from . import data

if TYPE_CHECKING:
    from ..api import Model

NAMES = ("digit_rows", "sunspots")
SUNSPOTS_CSV = Path(__file__).parent / "data_files" / "sunspots.csv"
SUNSPOTS_SCALE = 100.0  # sunspot numbers are 0..190: scaled to about [0, 2]


def load(name: str, model: Model) -> data.Splits:
    """The built-in dataset ``name`` (one of :data:`NAMES`) laid out for ``model``."""
    return {"digit_rows": digit_rows, "sunspots": sunspots}[name](model)


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
def digit_rows(model: Model) -> data.Splits:
    """Images as row sequences, every row tagged with its image's class."""
    (x,), (y,) = _inputs(model, "digit_rows", 1, 1)
    images, labels = data._digits()
    n, rows = images.shape[0], images.shape[1]
    arrays = {x: data.stack_examples(model, x, images.reshape(n, -1)),
              y: data.stack_examples(model, y, np.repeat(labels[:, None], rows, axis=1))}
    return _split_random(data.dataset(model, arrays, name="digit_rows"), "digit_rows")


def _split_random(full: data.Dataset, name: str) -> data.Splits:
    train, test = full.split(data.TEST_FRACTION, data.TEST_SEED)  # the same test images as 'digits'
    return data.Splits(data.Dataset(train.arrays, train.axes, f"{name} (train)"),
                       data.Dataset(test.arrays, test.axes, f"{name} (test)") if test else None)


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


def sunspots(model: Model) -> data.Splits:
    """Windows of the scaled series and the next value; the last 20% of the windows are the test split."""
    (x, y), _ = _inputs(model, "sunspots", 2, 0)
    width = math.prod(data.example_shape(model, x))
    if math.prod(data.example_shape(model, y, 1)) != 1:
        raise InputError(f"input '{y}' of model '{model.name}' should hold one value per example "
                         "(the year after the window)")
    _years, counts = sunspot_series()
    wins, nxt = windows(counts / SUNSPOTS_SCALE, width)
    arrays = {x: data.stack_examples(model, x, wins), y: data.stack_examples(model, y, nxt[:, None])}
    full = data.dataset(model, arrays, name="sunspots")
    cut = len(full) - round(len(full) * data.TEST_FRACTION)
    return data.Splits(full.take(np.arange(cut), "sunspots (train)"),
                       full.take(np.arange(cut, len(full)), "sunspots (test)"))
