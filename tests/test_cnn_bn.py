"""specs/cnn_bn.nn: its batch normalisation (batch statistics) is PyTorch's in training mode, and the
network learns the digits in a short run, measured on the held-out test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import specc
from specc.training import data
from specc.training.metrics import choose_metric, evaluate
from specc.training.train import Trainer

ROOT = Path(__file__).resolve().parent.parent


def bn_probe() -> specc.Model:
    """The spec's layers with a model that outputs one batch normalisation."""
    text = (ROOT / "specs" / "cnn_bn.nn").read_text()
    src = text[:text.index("model classify")] + """
model probe(x: f32[B, 3, 4, 5]) {
  output n = bn(x)
  loss = mean(n * n * x)
}
"""
    return specc.compile(src, target="interp", dtype="float64")


def test_bn_normalises_each_channel_over_batch_and_pixels():
    model = bn_probe()
    params = model.init_params(0)
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(6, 3, 4, 5))
    n = model.forward(params, x=x)["n"]
    np.testing.assert_allclose(n.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(n.var(axis=(0, 2, 3)), 1.0, rtol=1e-5)


@pytest.mark.torch
def test_bn_matches_torch_batch_norm_in_training_mode():
    torch = pytest.importorskip("torch")
    model = bn_probe()
    rng = np.random.default_rng(1)
    params = {k: rng.normal(size=v.shape) for k, v in model.init_params(0).items()}
    x = rng.normal(size=(6, 3, 4, 5))
    gamma, beta = params["n.gamma"], params["n.beta"]
    want = torch.nn.functional.batch_norm(torch.tensor(x), None, None, torch.tensor(gamma), torch.tensor(beta),
                                          training=True, eps=1e-5)
    np.testing.assert_allclose(model.forward(params, x=x)["n"], want.numpy(), rtol=1e-10, atol=1e-12)


def test_cnn_bn_classifies_digits():
    model = specc.compile(ROOT / "specs" / "cnn_bn.nn")
    splits = data.load_dataset("digits", model)
    params = Trainer(model, splits.train, epochs=3, val_split=0.0, progress=False).fit().params
    acc = evaluate(model, params, splits.test, choose_metric(model))["accuracy"]
    assert acc > 0.85, acc  # chance is 0.1; 20 epochs reach 0.98 (docs/training.md)
