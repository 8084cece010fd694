"""specc.torch.module: a spec as a torch.nn.Module whose forward and backward are specc's kernels.
Gradients (parameters and inputs) must equal PyTorch autograd through the same cell written in torch."""

import subprocess
import sys

import numpy as np
import pytest

import specc
import specc.torch
from specc.errors import InputError

torch = pytest.importorskip("torch")

CELL = """dim T, B
model cell(x: f64[T, B, 5], y: i32[B]) {
  h = lstm(x, hidden=6)
  output hs = h
  logits = dense(h[-1], 3)
  loss = cross_entropy(logits, y)
  output scores = logits
}
"""


def torch_cell(p, x):
    """The std lstm and a dense layer, written in torch (z = [h, x]; gates f, i, o, g)."""
    T, B, _ = x.shape
    h = torch.zeros(B, 6, dtype=x.dtype)
    c = torch.zeros(B, 6, dtype=x.dtype)
    hs = []
    for t in range(T):
        z = torch.cat([h, x[t]], dim=1)
        f = torch.sigmoid(z @ p["h.W_f"] + p["h.b_f"])
        i = torch.sigmoid(z @ p["h.W_i"] + p["h.b_i"])
        o = torch.sigmoid(z @ p["h.W_o"] + p["h.b_o"])
        g = torch.tanh(z @ p["h.W_c"] + p["h.b_c"])
        c = f * c + i * g
        h = o * torch.tanh(c)
        hs.append(h)
    return torch.stack(hs), h @ p["logits.W"] + p["logits.b"]


@pytest.mark.parametrize("target", ["cpu", "interp"])
def test_gradients_equal_pytorch_autograd_through_the_same_cell(target):
    mod = specc.torch.module(CELL, target=target, seed=2)
    assert [n for n, _ in mod.named_parameters()][:2] == ["h__W_f", "h__W_i"]
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((4, 3, 5))
    x1 = torch.tensor(x_np, requires_grad=True)
    hs, scores = mod(x1)  # no labels: the outputs do not need them
    w_h, w_s = torch.tensor(rng.standard_normal((4, 3, 6))), torch.tensor(rng.standard_normal((3, 3)))
    ((hs * w_h).sum() + (scores * w_s).sum() + (scores ** 2).mean()).backward()

    ref = {k: torch.tensor(v, requires_grad=True) for k, v in mod.specc_params().items()}
    x2 = torch.tensor(x_np, requires_grad=True)
    hs2, scores2 = torch_cell(ref, x2)
    np.testing.assert_allclose(hs.detach().numpy(), hs2.detach().numpy(), rtol=1e-12, atol=1e-13)
    ((hs2 * w_h).sum() + (scores2 * w_s).sum() + (scores2 ** 2).mean()).backward()
    np.testing.assert_allclose(x1.grad.numpy(), x2.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name in mod.param_names:
        got = getattr(mod, specc.torch.parameter_name(name)).grad.numpy()
        np.testing.assert_allclose(got, ref[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_one_output_unused_by_the_loss_and_the_spec_loss_as_output():
    mod = specc.torch.module(CELL, target="interp")
    x = torch.tensor(np.random.default_rng(1).standard_normal((3, 2, 5)))
    _hs, scores = mod(x)
    scores.sum().backward()  # hs gets no gradient: a zero cotangent
    assert all(p.grad is not None for p in mod.parameters())
    lossmod = specc.torch.module(CELL, target="interp", outputs=["loss"])
    y = torch.tensor([0, 2])
    loss = lossmod(x, y)
    loss.backward()
    model = lossmod.model
    _l, grads = model.value_and_grad(lossmod.specc_params(), x=x.numpy(), y=y.numpy())
    np.testing.assert_allclose(lossmod.h__W_f.grad.numpy(), grads["h.W_f"], rtol=1e-12)


def test_trained_by_a_pytorch_optimizer_like_the_torch_cell():
    mod = specc.torch.module(CELL, target="cpu", outputs=["scores"], seed=0)
    ref = {k: torch.tensor(v, requires_grad=True) for k, v in mod.specc_params().items()}
    opt1 = torch.optim.Adam(mod.parameters(), lr=0.05)
    opt2 = torch.optim.Adam([ref[n] for n in mod.param_names], lr=0.05)
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.standard_normal((5, 8, 5)))
    y = torch.tensor(rng.integers(0, 3, 8))
    losses = []
    for _ in range(5):
        for opt, run in ((opt1, lambda: mod(x)), (opt2, lambda: torch_cell(ref, x)[1])):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(run(), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    np.testing.assert_allclose(losses[0::2], losses[1::2], rtol=1e-9)
    assert losses[-2] < losses[0]
    for n in mod.param_names:
        np.testing.assert_allclose(mod.specc_params()[n], ref[n].detach().numpy(), rtol=1e-8, atol=1e-10)


def test_float32_spec_and_bad_calls():
    mod = specc.torch.module("specs/mlp.nn", target="interp")
    probs = mod(torch.rand(4, 64))
    assert probs.dtype == torch.float32 and probs.shape == (4, 10)
    probs[:, 0].sum().backward()
    assert mod.logits__W.grad.dtype == torch.float32
    with pytest.raises(InputError, match="has no output 'nope'"):
        specc.torch.module("specs/mlp.nn", outputs=["nope"], target="interp")
    with pytest.raises(InputError, match="takes 2 inputs"):
        mod(torch.rand(4, 64), torch.zeros(4), torch.zeros(4))
    assert "classify(x, y) -> probs" in repr(mod)


def test_importing_the_bridge_does_not_import_torch():
    code = "import sys, specc.torch; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "False", done.stderr
