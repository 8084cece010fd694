"""The sequence specs (bilstm_tagger, transformer, sunspots_gru) and their built-in datasets learn
something real in a short run, measured on held-out data against chance or a naive baseline; the
transformer's causal mask hides later rows; the datasets are laid out as their docstrings say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import specc
from specc.training import data, datasets
from specc.training.metrics import choose_metric, evaluate
from specc.training.train import Trainer
from specc.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def spec(name: str, **kw) -> specc.Model:
    return specc.compile(ROOT / "specs" / f"{name}.nn", **kw)


# ---- datasets ---------------------------------------------------------------------------------
def test_digit_rows_tags_every_row_with_its_class():
    model = spec("bilstm_tagger")
    splits = data.load_dataset("digit_rows", model)
    x, y = splits.train.arrays["x"], splits.train.arrays["y"]
    assert x.shape[0] == 8 and x.shape[2] == 8 and y.shape == x.shape[:2]
    assert np.all(y == y[:1])  # every row of an image carries the same tag
    digits = data.load_dataset("digits", spec("lstm"))
    np.testing.assert_array_equal(x, digits.train.arrays["x"])  # the same images, the same test split
    np.testing.assert_array_equal(y[0], digits.train.arrays["y"])
    assert len(splits.test) == 359


def test_sunspots_windows_are_consecutive_years_and_the_test_split_is_the_last():
    years, counts = datasets.sunspot_series()
    assert years[0] == 1700 and years[-1] == 2008 and len(counts) == 309 and counts.min() >= 0
    model = spec("sunspots_gru")
    splits = data.load_dataset("sunspots", model)
    xtr, ytr = splits.train.arrays["x"], splits.train.arrays["y"]
    xte, yte = splits.test.arrays["x"], splits.test.arrays["y"]
    assert xtr.shape == (12, len(splits.train), 1) and ytr.shape == (len(splits.train), 1)
    assert len(splits.train) + len(splits.test) == 309 - 12 and len(splits.test) == 59
    s = counts / datasets.SUNSPOTS_SCALE
    np.testing.assert_allclose(xtr[:, 0, 0], s[:12], rtol=1e-6)
    np.testing.assert_allclose(ytr[0, 0], s[12], rtol=1e-6)
    np.testing.assert_allclose(yte[-1, 0], s[-1], rtol=1e-6)  # 2008 is the last test target
    np.testing.assert_allclose(xte[-1, 1:, 0], yte[:-1, 0], rtol=1e-6)  # each target is the next window's last


def test_a_dataset_that_does_not_fit_the_model_is_an_error():
    with pytest.raises(InputError, match="'sunspots' dataset gives 2 float"):
        data.load_dataset("sunspots", spec("lstm"))
    with pytest.raises(InputError, match="'digit_rows' dataset gives 1 float and 1 integer"):
        data.load_dataset("digit_rows", spec("sunspots_gru"))


# ---- the transformer's mask -------------------------------------------------------------------
def test_the_causal_mask_hides_later_rows():
    """Position i of the encoder block's output depends on rows 0..i only."""
    text = (ROOT / "specs" / "transformer.nn").read_text()
    layers = text[:text.index("model classify")]
    src = layers + """
model probe(x: f32[B, 8, 8]) {
  param P: [8, 32] = normal(0.02)
  output u = encoder_block(dense(x, 32) + P, heads=4, width=8, ffn=64)
  loss = mean(u)
}
"""
    model = specc.compile(src, target="interp", dtype="float64")
    params = model.init_params(3)
    x = np.random.default_rng(0).uniform(size=(2, 8, 8))
    x2 = x.copy()
    x2[:, 5, :] += 1.0
    u, u2 = model.forward(params, x=x)["u"], model.forward(params, x=x2)["u"]
    np.testing.assert_allclose(u[:, :5], u2[:, :5], rtol=0, atol=1e-12)
    assert np.all(np.abs(u[:, 5:] - u2[:, 5:]).max(axis=-1) > 1e-3)


# ---- short training runs, measured on held-out data -------------------------------------------
def fit(model: specc.Model, train: data.Dataset, **kw) -> dict[str, np.ndarray]:
    return Trainer(model, train, progress=False, val_split=0.0, **kw).fit().params


def test_transformer_classifies_digits():
    model = spec("transformer")
    splits = data.load_dataset("digits", model)
    params = fit(model, splits.train, epochs=6)
    acc = evaluate(model, params, splits.test, choose_metric(model))["accuracy"]
    assert acc > 0.8, acc  # chance is 0.1; 40 epochs reach 0.95 (docs/training.md)


def test_bilstm_tags_the_first_rows_from_the_later_ones():
    model = spec("bilstm_tagger")
    splits = data.load_dataset("digit_rows", model)
    params = fit(model, splits.train, epochs=5)
    test = splits.test.arrays
    probs = model.forward(params, **test)["probs"]
    per_step = (probs.argmax(-1) == test["y"]).mean(axis=1)  # tag accuracy of each row position
    # A forward-only tagger sees row 0 alone (mostly blank: ~0.3 at best); the backward LSTM brings
    # the rest of the image to it.
    assert per_step.mean() > 0.7 and per_step[0] > 0.6, per_step
    step_loss = model.forward(params, **test)["step_loss"]
    assert step_loss.shape == (8,)
    np.testing.assert_allclose(step_loss.mean(), evaluate(model, params, splits.test, None)["loss"], rtol=1e-4)


def test_gru_forecasts_sunspots_better_than_the_last_value():
    model = spec("sunspots_gru")
    splits = data.load_dataset("sunspots", model)
    params = fit(model, splits.train, epochs=40)
    mse = evaluate(model, params, splits.test, choose_metric(model))["mse"]
    x, y = splits.test.arrays["x"], splits.test.arrays["y"]
    naive = float(np.mean((x[-1] - y) ** 2))  # next year as this year
    assert naive > 0.1
    assert mse < 0.6 * naive, (mse, naive)
