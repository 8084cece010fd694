"""PNG plots of a training run (matplotlib, Agg backend: no display needed).

In: a :class:`~specc.training.history.History`, gradient-flow reports
(:class:`~specc.training.gradflow.StateFlow`), or images and their reconstructions.
Out: PNG files; each function returns the path it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .gradflow import StateFlow
    from .history import History


def require_matplotlib() -> None:
    """A clear error when the optional ``plots`` extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        from ..errors import InputError

        raise InputError("plots need matplotlib, which is not installed", hint="pip install 'specc[plots]'")


def _pyplot():
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: History, path: str | Path, title: str = "") -> Path:
    """Loss per epoch (train and validation) and, beside it, the metric per epoch (train and
    validation; accuracy in percent, as the table prints it).  Epochs are whole numbers on the axis."""
    plt = _pyplot()
    epochs = [r.epoch for r in history.records]
    metric = history.metric
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(10 if metric else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(epochs, [r.train_loss for r in history.records], "o-", label="train")
    val = [r.val.get("loss") for r in history.records]
    if any(v is not None for v in val):
        ax.plot(epochs, val, "s-", label="validation")
    _epoch_axis(ax)
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if metric:
        ax = axes[0][1]
        scale = 100.0 if metric == "accuracy" else 1.0

        def series(values):
            return [None if v is None else v * scale for v in values]

        train = series([r.train.get(metric) for r in history.records])
        if any(v is not None for v in train):
            ax.plot(epochs, train, "o-", color="C0", label="train")
        ax.plot(epochs, series([r.val.get(metric) for r in history.records]), "s-", color="C1", label="validation")
        _epoch_axis(ax)
        ax.set_ylabel("accuracy (%)" if metric == "accuracy" else metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_grad_flow(flows: Sequence[tuple[str, Sequence[StateFlow]]], path: str | Path, title: str = "") -> Path:
    """||dL/dS_t|| against t on a log scale, one line per state and per moment (e.g. before/after training)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = ["--", "-", ":", "-."]
    for k, (when, states) in enumerate(flows):
        for j, f in enumerate(states):
            t = np.arange(len(f.norms))
            ax.semilogy(t, np.maximum(f.norms, 1e-30), styles[k % len(styles)], marker="o", color=f"C{j}",
                        label=f"{f.label}, {when}" if when else f.label)
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dS_t||")
    ax.set_title(title or "gradient flow through the recurrence")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_reconstructions(images: np.ndarray, recons: np.ndarray, path: str | Path, title: str = "",
                         n: int = 16) -> Path:
    """Two rows per line of the grid: originals above, reconstructions below (examples flattened)."""
    plt = _pyplot()
    images = np.asarray(images, dtype=np.float64).reshape(len(images), -1)[:n]
    recons = np.asarray(recons, dtype=np.float64).reshape(len(recons), -1)[:n]
    side = round(np.sqrt(images.shape[1]))
    shape = (side, side) if side * side == images.shape[1] else (1, images.shape[1])
    cols = min(8, len(images))
    rows = 2 * int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.25 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(len(images)):
        r, c = 2 * (i // cols), i % cols
        axes[r][c].imshow(images[i].reshape(shape), cmap="gray_r", vmin=0, vmax=1)
        axes[r + 1][c].imshow(recons[i].reshape(shape), cmap="gray_r", vmin=0, vmax=1)
    axes[0][0].set_title("input", fontsize=8, loc="left")
    axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
