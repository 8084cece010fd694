"""conv_transpose1d/2d (issue 13): values and gradients against torch.nn.functional.conv_transpose1d/2d.

Checked on the interpreter and the CPU target in float64, with stride, padding, output_padding,
dilation and a bias, and by `specc gradcheck`; errors for a wrong weight layout or output_padding.
"""

from __future__ import annotations

import numpy as np
import pytest

import specc
from specc.cli import main
from specc.errors import SpeccError

SPEC1 = """
dim B, L
model m(x: f64[B, 3, L], y: f64[B, 2, 2 * L]) {
  param w: [3, 2, 3] = he
  param b: [2] = normal(0.5)
  u = conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1)
  v = conv_transpose1d(u, reshape(w[0:2, :, :], [2, 2, 3]), dilation=2, padding=2)
  output u
  output v
  loss = mean((u - y) ** 2) + mean(v ** 3)
}
"""

SPEC2 = """
dim B
model m(x: f64[B, 3, 4, 5], y: f64[B, 2, 8, 10]) {
  param w: [3, 2, 3, 2] = he
  param b: [2] = normal(0.5)
  u = conv_transpose2d(x, w, b, stride=[2, 2], padding=[1, 0], output_padding=[1, 0], dilation=[1, 1])
  output u
  loss = mean((u - y) ** 2) + mean(u ** 3)
}
"""


@pytest.mark.torch
@pytest.mark.parametrize("target", ["interp", "cpu"])
def test_conv_transpose1d_matches_torch(target):
    import torch
    import torch.nn.functional as F

    m = specc.compile(SPEC1, target=target)
    rng = np.random.default_rng(0)
    p = m.init_params(seed=0)
    x, y = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 2, 10))
    xt = torch.tensor(x, requires_grad=True)
    w = torch.tensor(p["w"], requires_grad=True)
    b = torch.tensor(p["b"], requires_grad=True)
    u = F.conv_transpose1d(xt, w, b, stride=2, padding=1, output_padding=1)
    v = F.conv_transpose1d(u, w[0:2], dilation=2, padding=2)
    loss_t = ((u - torch.tensor(y)) ** 2).mean() + (v ** 3).mean()
    loss_t.backward()
    out = m.forward(p, x=x, y=y)
    np.testing.assert_allclose(out["u"], u.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out["v"], v.detach().numpy(), rtol=1e-12, atol=1e-13)
    loss, g = m.value_and_grad(p, wrt_inputs=True, x=x, y=y)
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["w"], w.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["b"], b.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("target", ["interp", "cpu"])
def test_conv_transpose2d_matches_torch(target):
    import torch
    import torch.nn.functional as F

    m = specc.compile(SPEC2, target=target)
    rng = np.random.default_rng(1)
    p = m.init_params(seed=0)
    x, y = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 2, 8, 10))
    xt = torch.tensor(x, requires_grad=True)
    w = torch.tensor(p["w"], requires_grad=True)
    b = torch.tensor(p["b"], requires_grad=True)
    u = F.conv_transpose2d(xt, w, b, stride=2, padding=(1, 0), output_padding=(1, 0))
    loss_t = ((u - torch.tensor(y)) ** 2).mean() + (u ** 3).mean()
    loss_t.backward()
    np.testing.assert_allclose(m.forward(p, x=x, y=y)["u"], u.detach().numpy(), rtol=1e-12, atol=1e-13)
    loss, g = m.value_and_grad(p, wrt_inputs=True, x=x, y=y)
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["w"], w.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["b"], b.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("target", ["interp", "cpu"])
@pytest.mark.parametrize("spec", [SPEC1, SPEC2], ids=["1d", "2d"])
def test_gradcheck(tmp_path, capsys, spec, target):
    f = tmp_path / "ct.nn"
    f.write_text(spec)
    assert main(["gradcheck", str(f), "--target", target]) == 0
    assert "gradients agree" in capsys.readouterr().out


@pytest.mark.parametrize("call,message", [
    ("conv_transpose1d(x, w, stride=2, output_padding=2)", "output_padding must be smaller than the stride"),
    ("conv_transpose1d(x, transpose(w, [1, 0, 2]))", r"input has 3 channels but the weight \[C_in, C_out, \.\.\.\]"),
    ("conv_transpose1d(x, w, padding=9)", "the padding leaves no output"),
])
def test_errors(call, message):
    spec = f"dim B\nmodel m(x: f32[B, 3, 5]) {{\n  param w: [3, 2, 3] = he\n  loss = mean({call})\n}}\n"
    with pytest.raises(SpeccError, match=message):
        specc.compile(spec)
