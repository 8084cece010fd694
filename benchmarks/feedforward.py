"""Feedforward workloads: an MLP 784-256-256-10 and LeNet-5, one Adam step each.

In: batch sizes, the PyTorch module (None where missing), timing settings.
Out: :class:`~harness.Measurement` records.

A step is what a training loop does per batch: the loss (cross-entropy), its
gradients and the Adam update (lr 1e-3, PyTorch's defaults otherwise), in both
specc (``Model.value_and_grad`` and :mod:`specc.training.optim`) and PyTorch (the same
layers, weights copied from specc's, ``torch.optim.Adam``). Torch's ``Linear``
stores its weight as [out, in]: the same numbers, transposed.

LeNet-5 is specs/lenet5.nn's network with LeCun's widths, 6 and 16 channels
(the shipped spec widened its convolutions to 32 and 64 after cross-validation
on the digits; ``lenet_spec(32, 64)`` gives that one).
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from harness import REPO, Measurement, Timing, measure_group

MLP_BATCHES = (128, 1024)
LENET_BATCH = 64
LR = 1e-3

MLP_SPEC = """dim B
model mlp(x: f32[B, 784], y: i32[B]) {
  h1 = relu(dense(x, 256))
  h2 = relu(dense(h1, 256))
  logits = dense(h2, 10)
  loss = cross_entropy(logits, y)
}
"""
LENET_SPEC = REPO / "specs" / "lenet5.nn"
LENET_CHANNELS = (6, 16)
MLP_LAYERS = ("h1.dense", "h2.dense", "logits")
LENET_DENSE = ("h3.dense", "h4.dense", "logits")


def lenet_spec(c1: int, c2: int) -> str:
    """specs/lenet5.nn with its two convolutions' widths set to c1 and c2 channels."""
    lines = LENET_SPEC.read_text().splitlines(keepends=True)
    convs = [i for i, line in enumerate(lines) if "conv(" in line and not line.lstrip().startswith("#")]
    assert len(convs) == 2, "specs/lenet5.nn should have two conv layers"
    for i, c in zip(convs, (c1, c2)):
        lines[i] = re.sub(r"channels=\d+", f"channels={c}", lines[i])
    return "".join(lines)


def spec_source(net: str) -> str:
    return MLP_SPEC if net == "mlp" else lenet_spec(*LENET_CHANNELS)


def flops(net: str, B: int, channels: tuple[int, int] = LENET_CHANNELS) -> float:
    """Flops of the products and convolutions of one training step (forward, then twice that back)."""
    if net == "mlp":
        fwd = 2.0 * B * (784 * 256 + 256 * 256 + 256 * 10)
    else:
        c1, c2 = channels
        conv = 2.0 * B * (c1 * 8 * 8 * 1 * 25 + c2 * 4 * 4 * c1 * 25)  # 'same' padding: 8x8, then 4x4 after pooling
        fwd = conv + 2.0 * B * (c2 * 4 * 120 + 120 * 84 + 84 * 10)
    return 3 * fwd


def batch(net: str, B: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    shape = (B, 784) if net == "mlp" else (B, 1, 8, 8)
    return rng.uniform(0, 1, shape).astype(np.float32), rng.integers(0, 10, B).astype(np.int32)


# ---- PyTorch ------------------------------------------------------------------------------------
def torch_net(torch: Any, net: str, p: dict[str, np.ndarray]) -> Any:
    """The same network in PyTorch, holding specc's parameters ``p``."""
    nn = torch.nn
    dense = MLP_LAYERS if net == "mlp" else LENET_DENSE
    linears = [nn.Linear(*p[f"{k}.W"].shape) for k in dense]
    if net == "mlp":
        model = nn.Sequential(linears[0], nn.ReLU(), linears[1], nn.ReLU(), linears[2])
    else:
        w1, w2 = p["a1.conv.w"], p["a2.conv.w"]
        convs = [nn.Conv2d(1, w1.shape[0], 5, padding=2), nn.Conv2d(w1.shape[0], w2.shape[0], 5, padding=2)]
        model = nn.Sequential(convs[0], nn.ReLU(), nn.MaxPool2d(2), convs[1], nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), linears[0], nn.ReLU(), linears[1], nn.ReLU(), linears[2])
        with torch.no_grad():
            for conv, k in zip(convs, ("a1.conv", "a2.conv")):
                conv.weight.copy_(torch.from_numpy(p[f"{k}.w"]))
                conv.bias.copy_(torch.from_numpy(p[f"{k}.b"]))
    with torch.no_grad():
        for lin, k in zip(linears, dense):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(p[f"{k}.W"].T)))
            lin.bias.copy_(torch.from_numpy(p[f"{k}.b"]))
    return model


def torch_grads(net: str, model: Any) -> dict[str, np.ndarray]:
    """The gradients of :func:`torch_net`'s parameters, keyed and laid out like specc's."""
    mods = [m for m in model if m.__class__.__name__ in ("Linear", "Conv2d")]
    names = (() if net == "mlp" else ("a1.conv", "a2.conv")) + (MLP_LAYERS if net == "mlp" else LENET_DENSE)
    out = {}
    for m, k in zip(mods, names):
        if m.__class__.__name__ == "Linear":
            out[f"{k}.W"] = m.weight.grad.numpy().T
            out[f"{k}.b"] = m.bias.grad.numpy()
        else:
            out[f"{k}.w"] = m.weight.grad.numpy()
            out[f"{k}.b"] = m.bias.grad.numpy()
    return out


# ---- the workloads ------------------------------------------------------------------------------
def _specc_setup(net: str, B: int):
    def setup():
        import specc
        from specc.training.optim import SLOTS, Optimizer

        model = specc.compile(spec_source(net), target="cpu", dtype="float32")
        state = {"params": model.init_params(0)}
        opt = Optimizer("adam", SLOTS["adam"])
        state["opt"] = opt.init(state["params"])
        x, y = batch(net, B)

        def step():
            _, grads = model.value_and_grad(state["params"], x=x, y=y)
            state["params"], state["opt"] = opt.update(state["params"], grads, state["opt"], LR)

        return step

    return setup


def _torch_setup(torch: Any, net: str, B: int):
    def setup():
        import specc

        params = specc.compile(spec_source(net), target="interp", dtype="float32").init_params(0)
        model = torch_net(torch, net, params)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        xn, yn = batch(net, B)
        x, y = torch.from_numpy(xn), torch.from_numpy(yn).long()

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        return step

    return setup


def run(net: str, batches: tuple[int, ...], torch: Any, timing: Timing,
        log: Callable[[str], None] = print) -> list[Measurement]:
    family = "MLP" if net == "mlp" else "LeNet-5"
    out: list[Measurement] = []
    for B in batches:
        shape = f"B={B}" if net == "mlp" else f"B={B} ch={LENET_CHANNELS[0]},{LENET_CHANNELS[1]}"
        impls = {"specc": _specc_setup(net, B),
                 "torch": _torch_setup(torch, net, B) if torch is not None else "torch not installed"}
        out += measure_group(family, "train", shape, flops(net, B), impls, timing, log)
    return out
