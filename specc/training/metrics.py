"""Metrics, chosen from the spec, and evaluation over a dataset.

In: a :class:`~specc.api.Model` (to decide what to measure), its parameters
and a :class:`~specc.training.data.Dataset`.
Out: the mean loss and one metric:

* ``accuracy`` for a classifier: an integer input used as the labels of a
  ``cross_entropy`` and an output of class scores shaped like the labels plus
  the class axis (``probs: [B, 10]`` for ``y: [B]``); the prediction is the
  arg-max over the class axis;
* ``mse`` for a reconstruction: an output shaped like a float input
  (``recon`` for ``x``), the mean squared difference;
* nothing else otherwise (the loss alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..ops.shard import RowWindow, batch_rows, shard, take_rows
from .data import batch_dim

if TYPE_CHECKING:
    from ..api import Model
    from .data import Dataset


@dataclass(frozen=True)
class Metric:
    name: str  # accuracy | mse
    output: str  # the model output it reads
    target: str  # the model input it compares with
    higher_is_better: bool

    def totals(self, outs: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> tuple[float, int]:
        """(sum over the batch, count) so that batches of any size combine exactly."""
        out, target = np.asarray(outs[self.output]), np.asarray(batch[self.target])
        if self.name == "accuracy":
            return float(np.sum(np.argmax(out, axis=-1) == target)), target.size
        diff = out.astype(np.float64) - target
        return float(np.sum(diff * diff)), diff.size

    def format(self, value: float) -> str:
        return f"{value:.2%}" if self.name == "accuracy" else f"{value:.4g}"


def choose_metric(model: Model) -> Metric | None:
    prog = model.program
    by_uid = {i.value.uid: i.name for i in prog.inputs}
    outputs = {n: s for n, s in model.outputs.items() if n != "loss"}
    for e in prog.graph.walk():
        if e.op == "cross_entropy" and e.inputs[1].uid in by_uid:
            label = by_uid[e.inputs[1].uid]
            classes = model.label_classes.get(label)
            _dt, lshape = model.inputs[label]
            for name, (dt, shape) in outputs.items():
                if dt.startswith("f") and tuple(shape) == (*lshape, classes):
                    return Metric("accuracy", name, label, True)
    for label, (dt, shape) in model.inputs.items():
        if not dt.startswith("f"):
            continue
        for name, (odt, oshape) in outputs.items():
            if odt.startswith("f") and oshape == shape:
                return Metric("mse", name, label, False)
    return None


def evaluate(model: Model, params: Mapping[str, np.ndarray], data: Dataset, metric: Metric | None,
             *, batch: int = 256, seed: int = 0) -> dict[str, float]:
    """Mean loss (weighted by batch size) and the metric over ``data``, in inference mode."""
    return totals_result(evaluate_totals(model, params, data, metric, batch=batch, seed=seed), metric)


def evaluate_totals(model: Model, params: Mapping[str, np.ndarray], data: Dataset, metric: Metric | None,
                    *, batch: int = 256, seed: int = 0, part: tuple[int, int] = (0, 1)) -> np.ndarray:
    """[loss sum, examples, metric sum, metric count] over ``data``: sums that add up across parts.

    ``part = (r, n)``: only the r-th of n row blocks of every batch (data-parallel evaluation sums
    the parts over the ranks, :mod:`specc.training.distributed`); a part's random draws (a VAE's
    noise) are its rows of the whole batch's, so the sums are those of one process.
    """
    rank, ranks = part
    dim = batch_dim(model) if ranks > 1 else ""
    loss_sum, n, m_sum, m_count = 0.0, 0, 0.0, 0
    for b in data.batches(batch):
        size = b[next(iter(b))].shape[data.axes[next(iter(b))]]
        window = None
        if ranks > 1:
            lo, hi = shard(size, rank, ranks)
            if hi == lo:
                continue
            b, window, size = take_rows(b, data.axes, lo, hi), RowWindow(dim, size, lo, hi), hi - lo
        with batch_rows(window):
            outs = model.forward(params, seed=seed, training=False, **b)
        if "loss" in outs:
            loss_sum += float(outs["loss"]) * size
        n += size
        if metric is not None:
            s, c = metric.totals(outs, b)
            m_sum, m_count = m_sum + s, m_count + c
    return np.array([loss_sum, n, m_sum, m_count], dtype=np.float64)


def totals_result(totals: np.ndarray, metric: Metric | None) -> dict[str, float]:
    """The mean loss and metric from :func:`evaluate_totals`' sums."""
    loss_sum, n, m_sum, m_count = (float(t) for t in totals)
    result = {"loss": loss_sum / max(n, 1)}
    if metric is not None:
        result[metric.name] = m_sum / max(m_count, 1)
    return result
