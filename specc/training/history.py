"""The record of a training run.

In: what the training loop measures, epoch by epoch (:class:`EpochRecord`).
Out: a :class:`History`: loss and metric per epoch, the test result, timings,
the gradient-flow reports and the files written; ``to_dict`` gives the JSON
form that checkpoints and ``specc train --json`` store, ``from_records`` reads
it back.  The training loop (:mod:`specc.training.train`) fills it and the
plots (:mod:`specc.training.plots`) draw it; it depends on neither.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpochRecord:
    epoch: int
    lr: float  # at the epoch's last step
    train_loss: float  # mean over the epoch's batches, weighted by batch size
    val: dict[str, float]  # loss and metric on the validation split (empty without one)
    seconds: float
    examples_per_s: float
    grad_norm: float  # mean global norm of the gradient before clipping
    train: dict[str, float] = field(default_factory=dict)  # the metric on (a sample of) the training split


@dataclass(repr=False)
class History:
    model: str
    config: dict[str, Any]
    metric: str | None = None
    records: list[EpochRecord] = field(default_factory=list)
    test: dict[str, float] | None = None
    checkpoint: str | None = None
    seconds: float = 0.0
    grad_flow: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # when -> state -> norms
    files: dict[str, str] = field(default_factory=dict)  # plots written
    params: dict[str, np.ndarray] | None = field(default=None, repr=False)  # the trained parameters
    best_epoch: int | None = None  # the epoch whose monitored metric was best
    best_checkpoint: str | None = None  # its checkpoint, beside the last one
    stopped: str | None = None  # why training ended before `epochs` (early stopping, a callback)
    compile_seconds: float = 0.0  # compiling (or loading) kernels before epoch 1

    @property
    def loss(self) -> list[float]:
        return [r.train_loss for r in self.records]

    @property
    def val_loss(self) -> list[float | None]:
        return [r.val.get("loss") for r in self.records]

    def final(self) -> dict[str, float]:
        """The last epoch's numbers, and the test split's when there is one."""
        if not self.records:
            return {}
        r = self.records[-1]
        out = {"train_loss": r.train_loss, **{f"train_{k}": v for k, v in r.train.items()}}
        out.update({f"val_{k}": v for k, v in r.val.items()})
        out.update({f"test_{k}": v for k, v in (self.test or {}).items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "metric": self.metric, "epochs": len(self.records), "final": self.final(),
                "time_s": self.seconds, "checkpoint": self.checkpoint, "config": self.config,
                "best_epoch": self.best_epoch, "best_checkpoint": self.best_checkpoint, "stopped": self.stopped,
                "compile_s": self.compile_seconds,
                "history": [asdict(r) for r in self.records], "grad_flow": self.grad_flow, "files": self.files}

    def __repr__(self) -> str:
        from ..display import history_repr

        return history_repr(self)

    def _repr_html_(self) -> str:
        """Jupyter: the final numbers, the best epoch, the files written and a row per epoch."""
        from ..display import history_html

        return history_html(self)

    @classmethod
    def from_records(cls, model: str, config: dict, metric: str | None, records: list[dict]) -> History:
        return cls(model, config, metric, [EpochRecord(**r) for r in records])
