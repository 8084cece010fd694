"""What a training run does between epochs: watching a metric, stopping early, logging.

In: the :class:`~specc.training.train.EpochRecord` of every epoch so far and the
run's :class:`~specc.training.config.TrainConfig`.
Out: decisions (is this epoch the best so far? stop now?) and files: the per-epoch
CSV log (``--log-csv``) and TensorBoard event files (``--tensorboard``, through
the optional ``tensorboardX``).

Every decision is replayed from the records (:meth:`Monitor.replay`), never kept
in a variable that a checkpoint would have to carry: a run resumed from a
checkpoint holds the same records, so it knows its best epoch, how many
epochs have passed without improvement and the reduce-on-plateau factor.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    from rich.console import Console

    from .config import TrainConfig
    from .metrics import Metric

# An EpochRecord (specc.training.train) and a Model (specc.api), duck-typed: both import this module.
EpochRecord = Model = Any


class StopTraining(Exception):
    """Raised by an ``on_epoch`` callback to end training after the current epoch (cleanly:
    the history, the test evaluation, the checkpoint and the plots still happen)."""


# ---- the monitored metric --------------------------------------------------------------------
@dataclass(frozen=True)
class Monitor:
    """One number per epoch (``val_loss``, ``val_accuracy``, ``train_loss``, ...) and which way is better."""

    key: str
    higher_is_better: bool
    min_delta: float = 0.0

    @classmethod
    def from_config(cls, cfg: TrainConfig, metric: Metric | None) -> Monitor:
        split, _, name = cfg.monitor.partition("_")
        if name != "loss" and (metric is None or metric.name != name):
            have = ", ".join(f"{s}_{n}" for s in ("val", "train") for n in ("loss", *([metric.name] if metric else [])))
            raise ConfigError(f"training setting 'monitor': this model has no metric '{name}' to monitor",
                              hint=f"monitor one of {have}")
        higher = {"max": True, "min": False}.get(cfg.mode, name == "accuracy")
        return cls(cfg.monitor, higher, cfg.min_delta)

    @property
    def needs_validation(self) -> bool:
        return self.key.startswith("val_")

    def value(self, record: EpochRecord) -> float | None:
        split, _, name = self.key.partition("_")
        if split == "train":
            v = record.train_loss if name == "loss" else record.train.get(name)
        else:
            v = record.val.get(name)
        return None if v is None or not math.isfinite(v) else float(v)

    def better(self, value: float, best: float) -> bool:
        return value > best + self.min_delta if self.higher_is_better else value < best - self.min_delta

    def replay(self, records: Sequence[EpochRecord]) -> tuple[float | None, int | None, int]:
        """(the best value, its epoch, epochs since it) over ``records``."""
        best, best_epoch, since = None, None, 0
        for r in records:
            v = self.value(r)
            if v is not None and (best is None or self.better(v, best)):
                best, best_epoch, since = v, r.epoch, 0
            else:
                since += 1
        return best, best_epoch, since

    def describe(self, value: float) -> str:
        return f"{value:.2%}" if self.key.endswith("accuracy") else f"{value:.4f}"


def check_monitor(monitor: Monitor, cfg: TrainConfig, has_validation: bool) -> None:
    """Early stopping or reduce-on-plateau on a validation metric needs a validation split."""
    users = [what for what, on in (("patience", cfg.patience is not None), ("schedule = plateau",
                                                                             cfg.schedule == "plateau")) if on]
    if users and monitor.needs_validation and not has_validation:
        raise InputError(f"{users[0]} watches '{monitor.key}', but this run has no validation split",
                         hint="set val_split above 0, or monitor train_loss")


def best_path(checkpoint: str | Path) -> Path:
    """The best checkpoint beside ``checkpoint``: ``lstm.ckpt.npz`` -> ``lstm.best.ckpt.npz``."""
    p = Path(checkpoint)
    name = p.name
    for tail in (".ckpt.npz", ".ckpt.safetensors", ".npz", ".safetensors"):
        if name.endswith(tail):
            return p.with_name(f"{name[:-len(tail)]}.best{tail}")
    return p.with_name(f"{name}.best")


def run_callbacks(callbacks: Iterable[Callable[[EpochRecord], Any]], record: EpochRecord) -> str | None:
    """Call each ``on_epoch`` callback; the reason to stop if one returned True or raised StopTraining."""
    for cb in callbacks:
        try:
            if cb(record) is True:
                return f"{getattr(cb, '__name__', 'a callback')} asked to stop after epoch {record.epoch}"
        except StopTraining as e:
            return str(e) or f"a callback stopped training after epoch {record.epoch}"
    return None


# ---- compiling before the first epoch ------------------------------------------------------
def compile_kernels(model: Model, console: Console | None, warm_up: Callable[[], Any] | None = None
                    ) -> tuple[int, float]:
    """Compile (or load from the cache) the kernels training runs, before epoch 1 starts its clock.

    Says so while it happens (a spinner on ``console``); returns (kernels built, seconds).
    ``warm_up`` (one training step's gradient and one forward pass, whose results are dropped)
    then makes Numba load the kernels' inner functions, which it does on their first call.
    """
    kinds = model.pending_kernels()
    if not kinds:
        return 0, 0.0
    started = time.perf_counter()
    text = f"compiling {len(kinds)} kernel{'s' if len(kinds) > 1 else ''} for {model.target} (cached for next time)…"
    status = console.status(text) if console is not None else None
    if status is not None:
        status.start()
    try:
        for kind in kinds:
            model.kernel(kind)
        if warm_up is not None:
            warm_up()
    finally:
        if status is not None:
            status.stop()
    seconds = time.perf_counter() - started
    if console is not None:
        console.print(f"{len(kinds)} kernel{'s' if len(kinds) > 1 else ''} ready in {seconds:.1f} s "
                      f"(not counted in epoch 1's time)")
    return len(kinds), seconds


# ---- logs -----------------------------------------------------------------------------------
def log_columns(records: Sequence[EpochRecord]) -> list[str]:
    train = sorted({k for r in records for k in r.train})
    val = sorted({k for r in records for k in r.val}, key=lambda k: (k != "loss", k))
    return (["epoch", "lr", "train_loss", *(f"train_{k}" for k in train), *(f"val_{k}" for k in val),
             "seconds", "examples_per_s", "grad_norm"])


def write_csv_log(path: str | Path, records: Sequence[EpochRecord]) -> Path:
    """The whole history so far, one row per epoch, rewritten atomically after every epoch
    (so a resumed run's log holds every epoch once)."""
    cols = log_columns(records)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        values = {"epoch": r.epoch, "lr": r.lr, "train_loss": r.train_loss, "seconds": r.seconds,
                  "examples_per_s": r.examples_per_s, "grad_norm": r.grad_norm,
                  **{f"train_{k}": v for k, v in r.train.items()}, **{f"val_{k}": v for k, v in r.val.items()}}
        w.writerow(["" if values.get(c) is None else _num(values[c]) for c in cols])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _num(x: Any) -> str:
    return str(x) if isinstance(x, int) else f"{float(x):.6g}"


class TensorBoardLog:
    """Scalars per epoch (loss/train, loss/val, accuracy/train, accuracy/val, lr, ...) as TensorBoard
    event files in a directory, through ``tensorboardX`` (``pip install 'specc[tensorboard]'``)."""

    def __init__(self, logdir: str | Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise InputError("--tensorboard needs the tensorboardX package, which is not installed",
                             hint="pip install 'specc[tensorboard]'") from None
        self.writer = SummaryWriter(logdir=str(logdir))
        self.logdir = Path(logdir)

    def write(self, record: EpochRecord) -> None:
        step = record.epoch
        self.writer.add_scalar("loss/train", record.train_loss, step)
        for k, v in record.val.items():
            self.writer.add_scalar(f"{k}/val", v, step)
        for k, v in record.train.items():
            self.writer.add_scalar(f"{k}/train", v, step)
        self.writer.add_scalar("lr", record.lr, step)
        self.writer.add_scalar("examples_per_s", record.examples_per_s, step)
        self.writer.add_scalar("grad_norm", record.grad_norm, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
