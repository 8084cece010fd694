"""Gradients of the shipped specs against PyTorch autograd (float64, weights mapped).

Skipped when torch is not installed (CI installs the CPU wheel: see .ci/run).
"""

import numpy as np
import pytest

import specc
from test_specs import DIGITS, TORCH_CELLS, _t, random_params, sequence_batch, spec_path

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(torch.float32)


def _leaf(torch, a):
    return _t(torch, a).requires_grad_(True)


def _torch_cell_grads(name: str, net, H: int) -> dict[str, np.ndarray]:
    """Map the grads of torch's stacked weights back to specc's per-gate parameters."""
    ih, hh = net.weight_ih_l0.grad.numpy(), net.weight_hh_l0.grad.numpy()
    bih, bhh = net.bias_ih_l0.grad.numpy(), net.bias_hh_l0.grad.numpy()
    if name == "rnn":
        return {"h.W": ih.T, "h.U": hh.T, "h.b": bih}
    if name == "lstm":
        out = {}
        for k, g in enumerate(["i", "f", "c", "o"]):
            rows = slice(k * H, (k + 1) * H)
            out[f"h.W_{g}"] = np.concatenate([hh[rows].T, ih[rows].T])
            out[f"h.b_{g}"] = bih[rows]
        return out
    out = {}
    for k, g in enumerate(["r", "z", "n"]):
        rows = slice(k * H, (k + 1) * H)
        out[f"h.W_{g}"], out[f"h.U_{g}"], out[f"h.b_{g}"] = ih[rows].T, hh[rows].T, bih[rows]
    out["h.c_n"] = bhh[2 * H:]
    return out


@pytest.mark.parametrize("name", sorted(TORCH_CELLS))
def test_recurrent_spec_gradients_match_torch(torch, name):
    model = specc.compile(spec_path(name), dtype="float64")
    p = random_params(model, seed=21)
    x, y = sequence_batch(22, T=7, B=4)
    H = model.param_shapes["logits.W"][0]
    net = TORCH_CELLS[name](torch, p, x.shape[2], H)
    W, b = _leaf(torch, p["logits.W"]), _leaf(torch, p["logits.b"])
    xt = _leaf(torch, x)
    seq, _ = net(xt)
    loss = torch.nn.functional.cross_entropy(seq[-1] @ W + b, torch.from_numpy(y).long())
    loss.backward()
    want = _torch_cell_grads(name, net, H) | {"logits.W": W.grad.numpy(), "logits.b": b.grad.numpy()}
    got_loss, grads = model.value_and_grad(p, x=x, y=y, wrt_inputs=True)
    np.testing.assert_allclose(got_loss, loss.item(), rtol=1e-10)
    for k, v in want.items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-7, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-7, atol=1e-12)


def test_lenet5_gradients_match_torch(torch):
    F = torch.nn.functional
    model = specc.compile(spec_path("lenet5"), dtype="float64")
    p = random_params(model, seed=23, scale=0.3)
    rng = np.random.default_rng(24)
    x, y = rng.uniform(0, 1, (3, 1, 8, 8)), rng.integers(0, DIGITS, 3).astype(np.int32)
    leaves = {k: _leaf(torch, v) for k, v in p.items()}

    def conv(v, name):
        return F.conv2d(v, leaves[f"{name}.conv.w"], leaves[f"{name}.conv.b"], padding=2)

    def linear(v, name):
        return v @ leaves[f"{name}.W"] + leaves[f"{name}.b"]

    a1 = F.relu(conv(_t(torch, x), "a1"))
    a2 = F.relu(conv(F.max_pool2d(a1, 2), "a2"))
    f = F.max_pool2d(a2, 2).flatten(1)
    logits = linear(F.relu(linear(F.relu(linear(f, "h3.dense")), "h4.dense")), "logits")
    F.cross_entropy(logits, torch.from_numpy(y).long()).backward()
    _, grads = model.value_and_grad(p, x=x, y=y)
    for k, leaf in leaves.items():
        np.testing.assert_allclose(grads[k], leaf.grad.numpy(), rtol=1e-7, atol=1e-12, err_msg=k)
