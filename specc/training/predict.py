"""Prediction: a trained model's outputs on a data file, and writing outputs to .csv or .npz.

In: a :class:`~specc.api.Model`, its parameters and a
:class:`~specc.training.data.Dataset` (labels, if the file has them, are not needed).
Out: :class:`Predictions`: one array per output that has the batch axis, the
examples along axis 0, and for a classifier (see :mod:`specc.training.metrics`)
the predicted class ``label`` (the arg-max of its class scores) first.

Writing (:func:`write_outputs`, shared by ``specc predict`` and ``specc run -o``),
chosen by the file's extension:

* ``.csv``: one row per example and a header row: ``label`` (for a classifier),
  then each per-example output flattened in C order, one column per number,
  named ``probs_0 .. probs_9`` (``name_i_j`` for more axes, ``name`` for a
  scalar per example).  Outputs without the batch axis (the loss) are left out.
* ``.npz``: one array per output, as named.

Any other extension is an :class:`~specc.errors.InputError`, before anything is written.
"""

from __future__ import annotations

import csv
import itertools
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from .metrics import choose_metric

if TYPE_CHECKING:
    from ..api import Model
    from .data import Dataset

FORMATS = (".csv", ".npz")


@dataclass
class Predictions:
    """Per-example arrays (examples along axis 0), ``label`` first for a classifier."""

    arrays: dict[str, np.ndarray]
    kind: str  # classification | reconstruction | outputs

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0


def output_format(path: str | Path) -> str:
    """``.csv`` or ``.npz`` from the file name; anything else is an error naming both."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"cannot write outputs to '{path}': unknown format '{suffix or Path(path).name}'",
                         hint="name the file .csv (one row per example, with a header) or .npz (one array "
                              "per output)")
    return suffix


def batch_axis_of_outputs(model: Model) -> dict[str, int | None]:
    """Where the batch dim stands in each output's shape (None: the output is not per example)."""
    from .data import batch_dim

    try:
        dim = batch_dim(model)
    except InputError:
        return {name: None for name in model.outputs}
    return {name: (list(shape).index(dim) if dim in shape else None) for name, (_dt, shape) in model.outputs.items()}


def predict(model: Model, params: Mapping[str, np.ndarray], data: Dataset, *, batch: int = 256,
            seed: int = 0) -> Predictions:
    """The model's outputs on every example of ``data`` in inference mode, batched by ``batch``."""
    axes = batch_axis_of_outputs(model)
    metric = choose_metric(model)
    labels = metric.target if metric is not None and metric.name == "accuracy" else None
    parts: dict[str, list[np.ndarray]] = {}
    for b in data.batches(batch):
        b = {k: v for k, v in b.items() if k != labels}  # predict without the labels the file may hold
        outs = model.forward(params, seed=seed, training=False, **b)
        for name, a in outs.items():
            if axes.get(name) is not None:
                parts.setdefault(name, []).append(np.moveaxis(np.asarray(a), axes[name], 0))
    if not parts:
        raise InputError(f"model '{model.name}' has no output per example to predict",
                         hint=f"its outputs are {', '.join(model.outputs)}")
    arrays = {name: np.concatenate(p, axis=0) for name, p in parts.items()}
    if metric is not None and metric.name == "accuracy" and metric.output in arrays:
        arrays = {"label": np.argmax(arrays[metric.output], axis=-1).astype(np.int64), **arrays}
        return Predictions(arrays, "classification")
    return Predictions(arrays, "reconstruction" if metric is not None else "outputs")


def write_outputs(path: str | Path, arrays: Mapping[str, np.ndarray],
                  example_axis: Mapping[str, int | None] | None = None) -> list[str]:
    """Write ``arrays`` to ``path`` (.csv or .npz, atomically); returns the names written.

    ``example_axis``: each array's example axis for the CSV rows (default 0 for every array);
    arrays with None are not per example and stay out of a CSV file.
    """
    fmt = output_format(path)
    path = Path(path)
    if fmt == ".npz":
        _atomic(path, lambda f: np.savez(f, **arrays), binary=True)
        return list(arrays)
    axis = {k: (example_axis or {}).get(k, 0) for k in arrays}
    rows = {k: np.moveaxis(np.asarray(a), axis[k], 0) for k, a in arrays.items() if axis[k] is not None}
    if not rows:
        raise InputError(f"nothing to write to '{path}': no output has one value per example",
                         hint="write a .npz file instead")
    n = {len(a) for a in rows.values()}
    if len(n) != 1:
        raise InputError(f"cannot write '{path}': the outputs hold different numbers of examples "
                         f"({', '.join(f'{k}: {len(a)}' for k, a in rows.items())})")
    header: list[str] = []
    columns: list[np.ndarray] = []
    for name, a in rows.items():
        flat = a.reshape(len(a), -1)
        header += csv_columns(name, a.shape[1:])
        columns.append(flat)

    def write(f) -> None:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for i in range(n.pop()):
            w.writerow([_cell(x) for c in columns for x in c[i]])

    _atomic(path, write, binary=False)
    return list(rows)


def csv_columns(name: str, shape: tuple[int, ...]) -> list[str]:
    """Column names of one example of an output: ``name`` for a scalar, ``name_i`` / ``name_i_j`` else."""
    if not shape:
        return [name]
    return [f"{name}_{'_'.join(map(str, idx))}" for idx in itertools.product(*(range(s) for s in shape))]


def _cell(x: np.generic) -> str:
    return str(x)  # NumPy's shortest text that reads back to the same number in the array's dtype


def _atomic(path: Path, write, *, binary: bool) -> None:
    """Write through a temporary file in the same directory, then rename (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
