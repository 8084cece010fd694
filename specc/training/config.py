"""Training configuration: the spec's `train { ... }` block, validated.

In: the key/value pairs of the training block (with their spans) and any
overrides (from the CLI or Python).
Out: a :class:`TrainConfig` (pydantic), or a ConfigError at the offending item.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, Span, did_you_mean


class TrainConfig(BaseModel):
    # allow_inf_nan=False: `--lr inf` or `lr = nan` is an error, not a run that ends in NaN
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    optimizer: Literal["sgd", "momentum", "adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0)
    epochs: int = Field(10, gt=0)
    batch: int = Field(32, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    clip: float | None = Field(None, gt=0)
    schedule: Literal["constant", "step", "cosine", "plateau"] = "constant"
    step_size: int = Field(10, gt=0)
    gamma: float = Field(0.1, gt=0)  # step: the factor every step_size epochs; plateau: the factor per reduction
    warmup: int = Field(0, ge=0)  # epochs over which lr rises linearly from lr / steps to lr, before the schedule
    plateau_patience: int = Field(2, gt=0)  # plateau: epochs without improvement of `monitor` before lr *= gamma
    min_lr: float = Field(0.0, ge=0)  # plateau: the lr is not reduced below this
    patience: int | None = Field(None, gt=0)  # early stopping: epochs without improvement of `monitor`
    monitor: Literal["val_loss", "val_accuracy", "val_mse", "train_loss", "train_accuracy", "train_mse"] = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"  # auto: max for accuracy, min for a loss or mse
    min_delta: float = Field(0.0, ge=0)  # an improvement smaller than this does not count
    seed: int = Field(0, ge=0)
    val_split: float = Field(0.2, ge=0, lt=1)
    augment: Literal["none", "shift"] = "none"  # shift: each training image moved by up to 1 pixel


ALIASES = {"batch_size": "batch", "learning_rate": "lr", "clip_norm": "clip"}


def train_config(items: Mapping[str, tuple[Any, Span | None]], overrides: Mapping[str, Any] | None = None
                 ) -> TrainConfig:
    values: dict[str, Any] = {}
    spans: dict[str, Span | None] = {}
    for key, (value, span) in items.items():
        key = ALIASES.get(key, key)
        if key not in TrainConfig.model_fields:
            raise ConfigError(f"unknown training setting '{key}'", span,
                              hint=did_you_mean(key, list(TrainConfig.model_fields) + list(ALIASES)))
        values[key], spans[key] = value, span
    for key, value in (overrides or {}).items():
        if value is not None:
            values[ALIASES.get(key, key)] = value
            spans[ALIASES.get(key, key)] = None
    try:
        return TrainConfig(**values)
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        hint = None
        choices = err.get("ctx", {}).get("expected")
        if choices and isinstance(err.get("input"), str):
            hint = did_you_mean(err["input"], [c.strip(" '") for c in choices.replace(" or ", ", ").split(",")])
        # a setting from the spec is underlined there; one from the command line is named with its value
        given = "" if spans.get(key) is not None or key not in (overrides or {}) else \
            f" (from the command line: {err.get('input')!r})"
        raise ConfigError(f"training setting '{key}'{given}: {err['msg']}", spans.get(key), hint=hint) from None
