"""Persistent states and the standard library's batch norm (issue 13): torch.nn.BatchNorm1d/2d in both modes.

A `state` is a parameter that the optimizer leaves alone: the value-and-grad
graph computes its `update`, which the training loop writes back after each
step, and `forward(training=False)` reads it. It lives in the parameter dict,
so that `init_params`, checkpoints and `specc run` carry it like any weight.
"""

from __future__ import annotations

import numpy as np
import pytest

import specc
from specc.cli import main
from specc.errors import SpeccError
from specc.training.checkpoint import load

BN2D = """
dim B
model m(x: f32[B, 3, 4, 5], y: f32[B]) {
  h = batch_norm2d(x, momentum=0.2)
  output h
  loss = mean((sum(h * h * h, axis=[1, 2, 3]) - y) ** 2)
}
"""

BN1D = """
dim B
model m(x: f32[B, 6], y: f32[B]) {
  h = batch_norm(x)
  output h
  loss = mean((sum(h * h * h, axis=1) - y) ** 2)
}
"""

BNSEQ = """
dim B
model m(x: f32[B, 3, 7], y: f32[B]) {
  h = batch_norm1d(x)
  output h
  loss = mean((sum(h * h * h, axis=[1, 2]) - y) ** 2)
}
"""

CASES = {"2d": (BN2D, (5, 3, 4, 5), "BatchNorm2d", 0.2), "1d": (BN1D, (8, 6), "BatchNorm1d", 0.1),
         "1d-seq": (BNSEQ, (4, 3, 7), "BatchNorm1d", 0.1)}


@pytest.mark.torch
@pytest.mark.parametrize("target", ["interp", "cpu"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_batch_norm_matches_torch_in_both_modes(case, target):
    import torch

    spec, shape, cls, momentum = CASES[case]
    m = specc.compile(spec, target=target, dtype="float64")
    rng = np.random.default_rng(0)
    p = m.init_params(seed=0)
    p["h.gamma"] = rng.standard_normal(shape[1])
    p["h.beta"] = rng.standard_normal(shape[1])
    bn = getattr(torch.nn, cls)(shape[1], momentum=momentum).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(p["h.gamma"]))
        bn.bias.copy_(torch.tensor(p["h.beta"]))
    bn.train()
    for step in range(3):  # train mode: output, gradients and the running statistics after each step
        x = rng.standard_normal(shape) * 2 + 1
        y = rng.standard_normal(shape[0])
        xt = torch.tensor(x, requires_grad=True)
        bn.zero_grad()
        h = bn(xt)
        loss_t = (((h ** 3).reshape(shape[0], -1).sum(1) - torch.tensor(y)) ** 2).mean()
        loss_t.backward()
        np.testing.assert_allclose(m.forward(p, training=True, x=x)["h"], h.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
        states = {}
        loss, g = m.value_and_grad(p, states_out=states, wrt_inputs=True, x=x, y=y)
        assert loss == pytest.approx(loss_t.item(), rel=1e-10)
        np.testing.assert_allclose(g["x"], xt.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(g["h.gamma"], bn.weight.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(g["h.beta"], bn.bias.grad.numpy(), rtol=1e-9, atol=1e-11)
        assert not g["h.running_mean"].any() and not g["h.running_var"].any()  # states are not trained
        np.testing.assert_allclose(states["h.running_mean"], bn.running_mean.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(states["h.running_var"], bn.running_var.numpy(), rtol=1e-12, atol=1e-14)
        p.update(states)
    bn.eval()  # evaluation: the running statistics
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(m.forward(p, x=x)["h"], bn(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("target", ["interp", "cpu"])
@pytest.mark.parametrize("spec", [BN2D, BN1D], ids=["2d", "1d"])
def test_gradcheck(tmp_path, capsys, spec, target):
    f = tmp_path / "bn.nn"
    f.write_text(spec)
    assert main(["gradcheck", str(f), "--target", target]) == 0
    assert "gradients agree" in capsys.readouterr().out


def test_training_updates_states_and_checkpoints_save_them(tmp_path):
    m = specc.compile(BN1D, target="cpu")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 6)) * 3 + 2).astype(np.float32)
    y = rng.standard_normal(64).astype(np.float32)
    ck = tmp_path / "ck"
    hist = specc.train(m, {"x": x, "y": y}, epochs=4, batch_size=16, lr=0.01, checkpoint=ck, progress=False)
    saved = load(hist.checkpoint)
    rm = saved.params["h.running_mean"]
    # after 16 steps with momentum 0.1 the running statistics have moved 1 - 0.9**16 = 81% of the way from
    # (0, 1) towards the data's (2, 9)
    assert 1.0 < rm.mean() < 2.3, rm
    assert saved.params["h.running_var"].mean() > 4.0, saved.params["h.running_var"]
    np.testing.assert_array_equal(hist.params["h.running_mean"], rm)


@pytest.mark.parametrize("body,message", [
    ("param w: [4] = ones\n  update w = w * 2\n  loss = mean(x * w)", "'w' is not a state of this block"),
    ("state s: [4] = ones\n  update s = mean(x, axis=1)\n  loss = mean(x * s)",
     r"the update of state 's' is f32\[B\], but the state is f32\[4\]"),
    ("a = batch_norm(x)\n  b = batch_norm(x, share=a)\n  loss = mean(a * b)", "would be updated by two calls"),
    ("recur t over x {\n    state s: [4] = ones\n    update s = s\n    h[t] = x[t] * s\n  }\n  loss = mean(h)",
     "`update` belongs outside a `recur` block"),
])
def test_state_errors(body, message):
    with pytest.raises(SpeccError, match=message):
        specc.compile(f"dim B\nmodel m(x: f32[B, 4]) {{\n  {body}\n}}\n")


def test_onnx_export_reads_the_running_statistics(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    m = specc.compile(BN2D, target="cpu", dtype="float32")
    rng = np.random.default_rng(0)
    p = m.init_params(seed=0)
    p["h.running_mean"] = rng.standard_normal(3).astype(np.float32)
    p["h.running_var"] = rng.random(3).astype(np.float32) + 0.5
    m.export_onnx(p, tmp_path / "bn.onnx")
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "bn.onnx"))
    got = sess.run(None, {"x": x})
    want = m.forward(p, x=x)["h"]
    np.testing.assert_allclose(got[[o.name for o in sess.get_outputs()].index("h")], want, rtol=1e-5, atol=1e-5)


@pytest.fixture()
def cuda(tmp_path, monkeypatch):
    """numba-cuda's simulator (the GPU with SPECC_TEST_REAL_GPU=1), as tests/test_cuda_train.py sets it up."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_codegen_cuda import cuda_for_tests

    return cuda_for_tests(monkeypatch, tmp_path / "specc-cuda-cache")


def test_training_on_the_device_updates_states_as_the_host_does(cuda):
    """CudaSteps copies each state's update into the device parameters after the optimizer step."""
    rng = np.random.default_rng(0)
    data = {"x": (rng.standard_normal((32, 6)) * 3 + 2).astype(np.float32),
            "y": rng.standard_normal(32).astype(np.float32)}
    run = dict(epochs=2, batch_size=8, lr=0.01, progress=False)
    device = specc.train(specc.compile(BN1D, target="cuda"), data, **run)
    host = specc.train(specc.compile(BN1D, target="interp"), data, **run)
    assert device.params["h.running_mean"].mean() > 0.5  # moved from 0 towards the data's mean 2
    for k in host.params:
        np.testing.assert_allclose(device.params[k], host.params[k], rtol=1e-4, atol=1e-5, err_msg=k)
