"""Scalar (0-d) parameters and inputs keep their shape () through init, checks, kernels and gradcheck (issue 13, bug 1)."""

import numpy as np
import pytest

import specc
from specc.cli import main

SPEC = """
dim B
model m(x: f32[B, 4], y: f32[B]) {
  param s: [] = 0.5
  param w: [4] = ones
  p = sum(x * w, axis=1) * s
  loss = mean((p - y) ** 2)
  output p
}
"""


@pytest.mark.parametrize("target", ["interp", "cpu"])
def test_scalar_parameter_runs_and_differentiates(target):
    m = specc.compile(SPEC, target=target, dtype="float64")
    params = m.init_params(seed=0)
    assert params["s"].shape == () and params["s"] == 0.5
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal(3)
    p = x.sum(axis=1) * 0.5
    out = m.forward(params, x=x, y=y)
    assert out["loss"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    loss, grads = m.value_and_grad(params, x=x, y=y)
    assert grads["s"].shape == ()
    assert grads["s"] == pytest.approx(np.mean(2 * (p - y) * x.sum(axis=1)), rel=1e-10)


def test_a_one_element_array_for_a_scalar_parameter_is_refused():
    m = specc.compile(SPEC, target="interp", dtype="float64")
    params = {**m.init_params(), "s": np.array([0.5])}
    with pytest.raises(specc.SpeccError, match=r"parameter 's' has shape \(1,\), expected \(\)"):
        m.forward(params, x=np.zeros((2, 4)), y=np.zeros(2))


@pytest.mark.parametrize("target", ["interp", "cpu"])
def test_gradcheck_goes_through_the_users_path(tmp_path, capsys, target):
    spec = tmp_path / "scalar.nn"
    spec.write_text(SPEC)
    assert main(["gradcheck", str(spec), "--target", target]) == 0
    assert "2/2 gradients agree" in capsys.readouterr().out


def test_gradcheck_of_a_model_without_parameters_is_a_clear_error(tmp_path, capsys):
    spec = tmp_path / "noparams.nn"
    spec.write_text("dim B\nmodel m(x: f32[B, 4]) {\n  loss = mean(x ** 2)\n}\n")
    assert main(["gradcheck", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "has nothing to differentiate" in err and "internal error" not in err
    assert main(["gradcheck", str(spec), "--inputs"]) == 0
