"""Per-step scalar values in a recurrence (a per-step loss, a scalar state read at a lag) compile
and match the interpreter, forward and gradients (issue 13, bug 2: the CPU generator wrote
``v[()] = ...`` into ``h[t]``, a number, and could not unify a 0-d initial state with ``h[t - 1]``)."""

import numpy as np
import pytest

import specc

TAGGER = """
dim T, B

model tagger(x: f32[T, B, 8], y: i32[T, B]) {
  param W: [8, 16] = glorot
  param U: [16, 16] = orthogonal
  param V: [16, 5] = glorot
  recur t over x {
    init h = zeros([B, 16])
    h[t] = tanh(x[t] @ W + h[t-1] @ U)
    l[t] = cross_entropy(h[t] @ V, y[t])
    e[t] = mean(h[t] ** 2)
  }
  loss = mean(l) + 0.01 * mean(e)
  output l
}
"""

LEAKY = """
dim T, B

model m(x: f32[T, B, 8], w: f32[T], y: f32[B]) {
  param W: [8, 16] = glorot
  recur t over x {
    init s = 0.0
    h = tanh(x[t] @ W)
    s[t] = 0.9 * s[t-1] + w[t] * mean(h)
  }
  loss = mean((s[-1] - y) ** 2)
  output s
}
"""


def _inputs(spec, T=5, B=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, 8))
    if "tagger" in spec:
        return {"x": x, "y": rng.integers(0, 5, (T, B)).astype(np.int32)}
    return {"x": x, "w": rng.standard_normal(T), "y": rng.standard_normal(B)}


@pytest.mark.parametrize("spec", [TAGGER, LEAKY], ids=["per-step-loss", "scalar-state"])
def test_cpu_matches_the_interpreter(spec):
    ref = specc.compile(spec, target="interp", dtype="float64")
    cpu = specc.compile(spec, target="cpu", dtype="float64")
    params = ref.init_params(seed=1)
    inputs = _inputs(spec)
    want, got = ref.forward(params, **inputs), cpu.forward(params, **inputs)
    assert set(want) == set(got)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)
    (lw, gw), (lg, gg) = ref.value_and_grad(params, **inputs), cpu.value_and_grad(params, **inputs)
    assert lg == pytest.approx(lw, rel=1e-12)
    for k in gw:
        np.testing.assert_allclose(gg[k], gw[k], rtol=1e-10, atol=1e-13)


def test_per_step_output_has_one_value_per_step():
    cpu = specc.compile(TAGGER, target="cpu", dtype="float64")
    out = cpu.forward(cpu.init_params(), **_inputs(TAGGER, T=7))
    assert out["l"].shape == (7,)
