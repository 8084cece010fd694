"""Inputs read at a lag or ahead inside a recurrence (`x[t-1]`, `x[t+2]`), issue 13.

The elaborator shifts the sequence before the loop (zeros where the read falls outside it) and the
loop reads the shifted copy at [t]; checked against NumPy on the interpreter and the CPU target, in a
forward and a reversed recurrence, and by `specc gradcheck`.
"""

from __future__ import annotations

import numpy as np
import pytest

import specc
from specc.cli import main
from specc.errors import SpeccError

SPEC = """
dim T, B
model m(x: f32[T, B, 3], y: f32[T, B, 4]) {
  param W: [3, 4] = glorot
  param V: [3, 4] = glorot
  param A: [3, 4] = glorot
  recur t over x {
    init h = zeros([B, 4])
    h[t] = tanh(x[t] @ W + x[t-1] @ V + x[t+2] @ A + 0.5 * h[t-1])
  }
  recur t over x reverse {
    init g = zeros([B, 4])
    g[t] = tanh(x[t+1] @ W + x[t-2] @ V + 0.5 * g[t+1])
  }
  output h
  output g
  loss = mean((h - y) ** 2) + mean(g * y)
}
"""


def _shift(x, k):
    """Row t of the result is x[t + k], zeros outside."""
    out = np.zeros_like(x)
    n = len(x)
    for t in range(n):
        if 0 <= t + k < n:
            out[t] = x[t + k]
    return out


@pytest.mark.parametrize("target", ["interp", "cpu"])
def test_lagged_and_ahead_reads_match_numpy(target):
    m = specc.compile(SPEC, target=target, dtype="float64")
    rng = np.random.default_rng(0)
    p = m.init_params(seed=0)
    x, y = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 4))
    out = m.forward(p, x=x, y=y)
    h, hs = np.zeros((2, 4)), []
    for t in range(5):
        h = np.tanh(x[t] @ p["W"] + _shift(x, -1)[t] @ p["V"] + _shift(x, 2)[t] @ p["A"] + 0.5 * h)
        hs.append(h)
    g, gs = np.zeros((2, 4)), [None] * 5
    for t in reversed(range(5)):
        g = np.tanh(_shift(x, 1)[t] @ p["W"] + _shift(x, -2)[t] @ p["V"] + 0.5 * g)
        gs[t] = g
    np.testing.assert_allclose(out["h"], np.array(hs), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["g"], np.array(gs), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("target", ["interp", "cpu"])
def test_gradcheck(tmp_path, capsys, target):
    f = tmp_path / "lag.nn"
    f.write_text(SPEC)
    assert main(["gradcheck", str(f), "--target", target]) == 0
    assert "3/3 gradients agree" in capsys.readouterr().out


def test_an_unsupported_step_says_how_to_shift():
    spec = SPEC.replace("x[t-1] @ V", "x[2 * t] @ V")
    with pytest.raises(SpeccError, match=r"a sequence is read at \[t\], or a fixed number of steps away") as err:
        specc.compile(spec)
    assert "concat(zeros_like(x[0:1]), x[0:-1], axis=0)" in str(err.value)
