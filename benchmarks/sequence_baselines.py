"""The measured comparisons behind docs/training.md section 10 (the sequence specs).

    python benchmarks/sequence_baselines.py

* ``bilstm_tagger.nn`` against the same tagger without its backward LSTM (a forward-only tagger:
  step t sees rows 0..t), both trained with the spec's own ``train`` block on ``digit_rows``; prints
  the tag accuracy of each row position on the held-out test images.
* ``sunspots_gru.nn`` (trained with its ``train`` block) against two forecasts fitted or read off
  the same training windows: "next year as this year" and a linear autoregression on the 12
  values of the window (least squares, with an intercept); prints the test MSE of each, in the
  scaled units (sunspot number / 100) and in sunspot numbers squared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import specc
from specc.training import data, datasets
from specc.training.metrics import evaluate
from specc.training.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


def trained(model: specc.Model, train: data.Dataset) -> dict[str, np.ndarray]:
    return Trainer(model, train, progress=False).fit().params


def per_step_accuracy(source: str | Path) -> np.ndarray:
    model = specc.compile(source)
    splits = data.load_dataset("digit_rows", model)
    params = trained(model, splits.train)
    test = splits.test.arrays
    probs = model.forward(params, **test)["probs"]
    return (probs.argmax(-1) == test["y"]).mean(axis=1)


def forward_only_tagger() -> str:
    text = (ROOT / "specs" / "bilstm_tagger.nn").read_text()
    both = "concat(lstm(x, hidden=H), lstm_backward(x, hidden=H))"
    assert both in text
    return text.replace(both, "concat(lstm(x, hidden=H), lstm(x, hidden=H))")  # 2H wide, both forward


def taggers() -> None:
    rows = {"bidirectional": per_step_accuracy(ROOT / "specs" / "bilstm_tagger.nn"),
            "forward only": per_step_accuracy(forward_only_tagger())}
    print("tag accuracy on the 359 test images, by row (0 = top)")
    print(f"{'tagger':15s} " + " ".join(f"{t:>6d}" for t in range(8)) + "    mean")
    for name, acc in rows.items():
        print(f"{name:15s} " + " ".join(f"{a:6.1%}" for a in acc) + f"  {acc.mean():6.2%}")


def sunspots() -> None:
    model = specc.compile(ROOT / "specs" / "sunspots_gru.nn")
    splits = data.load_dataset("sunspots", model)
    params = trained(model, splits.train)
    gru = evaluate(model, params, splits.test, None)["loss"]
    (xtr, ytr), (xte, yte) = ((s.arrays["x"][:, :, 0].T, s.arrays["y"][:, 0]) for s in (splits.train, splits.test))
    last = float(np.mean((xte[:, -1] - yte) ** 2))
    coef = np.linalg.lstsq(np.c_[xtr, np.ones(len(xtr))], ytr, rcond=None)[0]
    ar = float(np.mean((np.c_[xte, np.ones(len(xte))] @ coef - yte) ** 2))
    scale = datasets.SUNSPOTS_SCALE ** 2
    print(f"sunspots: test MSE on {len(yte)} windows (targets 1949-2008); scaled / in sunspot numbers^2")
    for name, mse in (("GRU (sunspots_gru.nn)", gru), ("next year = this year", last), ("linear AR(12)", ar)):
        print(f"  {name:24s} {mse:.4f}  {mse * scale:8.1f}")


if __name__ == "__main__":
    taggers()
    sunspots()
