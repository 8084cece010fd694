"""The compiled Adam step (specc.backends.cpu.shared.adam_step) gives NumPy's bits."""

from __future__ import annotations

import numpy as np
import pytest

import specc.training.optim as optim
from specc.training.optim import Optimizer


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,wd", [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01)])
def test_fused_adam_matches_numpy_bit_for_bit(monkeypatch, dtype, name, wd):
    rng = np.random.default_rng(0)
    shape = (70, 90)  # above FUSED_MIN_SIZE
    assert np.prod(shape) >= optim.FUSED_MIN_SIZE
    p = {"w": rng.standard_normal(shape).astype(dtype), "b": rng.standard_normal(7).astype(dtype)}
    g = {k: rng.standard_normal(a.shape).astype(dtype) for k, a in p.items()}
    opt = Optimizer(name, ("m", "v"), weight_decay=wd)
    state = opt.init(p)
    state.slots["m"] = {k: rng.standard_normal(a.shape).astype(dtype) * 0.1 for k, a in p.items()}
    state.slots["v"] = {k: np.abs(rng.standard_normal(a.shape)).astype(dtype) * 0.01 for k, a in p.items()}
    state.step = 3
    fused, fused_state = opt.update(p, g, state, 1e-3)
    monkeypatch.setattr(optim, "FUSED_MIN_SIZE", 10**12)  # NumPy's expression everywhere
    plain, plain_state = opt.update(p, g, state, 1e-3)
    for k in p:
        assert fused[k].dtype == dtype and fused[k].shape == p[k].shape
        assert np.array_equal(fused[k], plain[k])
        for s in ("m", "v"):
            assert np.array_equal(fused_state.slots[s][k], plain_state.slots[s][k])
    assert not np.array_equal(fused["w"], p["w"])  # it did step
