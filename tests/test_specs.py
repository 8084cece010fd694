"""The shipped specs in specs/: each compiles, verifies and runs, and the networks compute what their
comments say.

Three layers of checks:
- every ``specs/*.nn`` (found by glob, so a new spec is covered without editing this file) compiles in
  float32 and float64, its IR verifies, and the reference interpreter runs its forward pass on small random
  inputs derived from the model's declared inputs; the loss is a finite scalar and every output has the
  promised dtype and symbolic shape;
- the recurrent specs and the standard library's ``rnn``/``lstm``/``gru`` are compared, in float64, with
  independent NumPy loops written from the textbook equations, on random (not initial) parameters;
- with PyTorch installed, the recurrent layers and LeNet-5 are compared with ``torch.nn.RNN``/``LSTM``/
  ``GRU``/``Conv2d`` with the weights mapped across.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import specc
from specc.ir.core import Program, Value
from specc.ir.verify import verify_program

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
SMALL = {"T": 5, "B": 3}  # sizes for the symbolic dims; any other symbol gets 2
DIGITS = 10


def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.nn"


def test_specs_are_found() -> None:
    names = {p.stem for p in SPECS}
    assert {"mlp", "lenet5", "autoencoder", "vae", "rnn", "lstm", "gru", "peephole_lstm"} <= names


# ---- generic: every spec ---------------------------------------------------------------------
def bind_dims(prog: Program) -> dict[str, int]:
    """Small sizes for every symbol in the model's input shapes, plus the spec's fixed sizes."""
    dims = dict(prog.dims)
    for info in prog.inputs:
        for d in info.value.shape:
            for s in d.symbols:
                dims.setdefault(s, SMALL.get(s, 2))
    return dims


def label_range(prog: Program, v: Value) -> int:
    """How many ids an integer input may take: the classes of a cross_entropy or the rows of a take."""
    for eqn in prog.graph.walk():
        if eqn.op == "cross_entropy" and eqn.inputs[1] is v:
            return eqn.inputs[0].shape[-1].value
        if eqn.op == "take" and eqn.inputs[1] is v:
            return eqn.inputs[0].shape[0].value
    return 2


def random_inputs(model: specc.Model, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    dims = bind_dims(model.program)
    out = {}
    for info in model.program.inputs:
        shape = tuple(d.evaluate(dims) for d in info.value.shape)
        if info.value.type.is_float:
            out[info.name] = rng.uniform(0.0, 1.0, shape)  # pixels in [0, 1]: valid BCE targets too
        else:
            out[info.name] = rng.integers(0, label_range(model.program, info.value), shape).astype(np.int32)
    return out, dims


@pytest.fixture(params=SPECS, ids=[p.stem for p in SPECS], scope="module")
def spec(request) -> Path:
    return request.param


def test_spec_is_documented(spec: Path) -> None:
    head = spec.read_text().splitlines()
    assert head and head[0].startswith(f"# {spec.name}"), "a spec opens with a comment naming it"
    comment = "\n".join(line for line in head if line.startswith("#"))
    for word in ("Inputs:", "Outputs:", "Data:"):
        assert word in comment, f"{spec.name}'s header should say its {word[:-1].lower()}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_spec_compiles_and_runs(spec: Path, dtype: str) -> None:
    model = specc.compile(spec, dtype=dtype)
    verify_program(model.program)
    assert model.program.train, f"{spec.name} should carry a train {{ ... }} block"
    model.train_config()  # validates the block
    rng = np.random.default_rng(0)
    inputs, dims = random_inputs(model, rng)
    params = model.init_params(0)
    outs = model.forward(params, **inputs)
    assert list(outs) == list(model.outputs)
    float_dt = np.float64 if dtype == "float64" else np.float32
    assert outs["loss"].shape == () and outs["loss"].dtype == float_dt
    assert np.isfinite(outs["loss"])
    for name, v in zip(model.program.output_names, model.program.graph.outputs):
        want = tuple(d.evaluate(dims) for d in v.shape)
        assert outs[name].shape == want, f"output {name}: {outs[name].shape} != {model.outputs[name][1]} = {want}"
        assert outs[name].dtype == np.dtype(float_dt if v.type.is_float else np.int32)
        assert np.all(np.isfinite(outs[name]))
    again = model.forward(params, **inputs)  # deterministic for a fixed seed
    for name in outs:
        np.testing.assert_array_equal(outs[name], again[name])


def test_float64_agrees_with_float32(spec: Path) -> None:
    m32, m64 = specc.compile(spec), specc.compile(spec, dtype="float64")
    inputs, _ = random_inputs(m32, np.random.default_rng(1))
    p32 = m32.init_params(0)
    p64 = m64.init_params(0)
    for k in p32:
        np.testing.assert_allclose(p32[k], p64[k], rtol=1e-6, atol=1e-7)
    o32, o64 = m32.forward(p32, **inputs), m64.forward(p64, **inputs)
    for name in o32:
        np.testing.assert_allclose(o32[name], o64[name], rtol=2e-4, atol=2e-5)


def test_probs_are_distributions() -> None:
    for spec in SPECS:
        model = specc.compile(spec)
        if "probs" not in model.outputs:
            continue
        inputs, _ = random_inputs(model, np.random.default_rng(2))
        probs = model.forward(model.init_params(0), **inputs)["probs"]
        assert probs.shape[-1] == DIGITS
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


# ---- NumPy references --------------------------------------------------------------------------
def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def cross_entropy(z: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(softmax(z))[np.arange(len(y)), y]))


def ref_rnn(x: np.ndarray, p: dict, pre: str = "h.") -> np.ndarray:
    """h_t = tanh(x_t W + h_{t-1} U + b)"""
    h = np.zeros((x.shape[1], p[pre + "U"].shape[0]))
    hs = []
    for t in range(x.shape[0]):
        h = np.tanh(x[t] @ p[pre + "W"] + h @ p[pre + "U"] + p[pre + "b"])
        hs.append(h)
    return np.stack(hs)


def ref_lstm(x: np.ndarray, p: dict, pre: str = "h.") -> np.ndarray:
    """The gates read [h_{t-1}, x_t]; c_t = f c_{t-1} + i g; h_t = o tanh(c_t)."""
    H = p[pre + "b_f"].shape[0]
    h, c = np.zeros((x.shape[1], H)), np.zeros((x.shape[1], H))
    hs = []
    for t in range(x.shape[0]):
        z = np.concatenate([h, x[t]], axis=1)
        f = sigmoid(z @ p[pre + "W_f"] + p[pre + "b_f"])
        i = sigmoid(z @ p[pre + "W_i"] + p[pre + "b_i"])
        o = sigmoid(z @ p[pre + "W_o"] + p[pre + "b_o"])
        g = np.tanh(z @ p[pre + "W_c"] + p[pre + "b_c"])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs)


def ref_gru(x: np.ndarray, p: dict, pre: str = "h.") -> np.ndarray:
    """PyTorch's GRU: n_t = tanh(x W_n + b_n + r (h U_n + c_n)); h_t = (1 - u) n + u h_{t-1}."""
    h = np.zeros((x.shape[1], p[pre + "U_r"].shape[0]))
    hs = []
    for t in range(x.shape[0]):
        r = sigmoid(x[t] @ p[pre + "W_r"] + h @ p[pre + "U_r"] + p[pre + "b_r"])
        u = sigmoid(x[t] @ p[pre + "W_z"] + h @ p[pre + "U_z"] + p[pre + "b_z"])
        n = np.tanh(x[t] @ p[pre + "W_n"] + p[pre + "b_n"] + r * (h @ p[pre + "U_n"] + p[pre + "c_n"]))
        h = (1 - u) * n + u * h
        hs.append(h)
    return np.stack(hs)


def ref_peephole_lstm(x: np.ndarray, p: dict, pre: str = "h.") -> np.ndarray:
    """Peepholes from c_{t-1} into f, i and from c_t into o; h_t = o tanh(LN(c_t))."""
    H = p[pre + "b_f"].shape[0]
    h, c = np.zeros((x.shape[1], H)), np.zeros((x.shape[1], H))
    hs = []
    for t in range(x.shape[0]):
        z = np.concatenate([h, x[t]], axis=1)
        f = sigmoid(z @ p[pre + "W_f"] + c * p[pre + "p_f"] + p[pre + "b_f"])
        i = sigmoid(z @ p[pre + "W_i"] + c * p[pre + "p_i"] + p[pre + "b_i"])
        g = np.tanh(z @ p[pre + "W_c"] + p[pre + "b_c"])
        c = f * c + i * g
        o = sigmoid(z @ p[pre + "W_o"] + c * p[pre + "p_o"] + p[pre + "b_o"])
        ln = (c - c.mean(-1, keepdims=True)) / np.sqrt(c.var(-1, keepdims=True) + 1e-5)
        h = o * np.tanh(ln * p[pre + "ln.gain"] + p[pre + "ln.bias"])
        hs.append(h)
    return np.stack(hs)


# a model around one standard-library layer, returning its whole state sequence
STDLIB_MODEL = """
dim T, B
model seq(x: f64[T, B, 8]) {{
  output h = {layer}(x, hidden={H})
  loss = mean(h)
}}
"""


RECURRENT: dict[str, Callable] = {
    "rnn": ref_rnn, "lstm": ref_lstm, "gru": ref_gru, "peephole_lstm": ref_peephole_lstm,
}


def random_params(model: specc.Model, seed: int, scale: float = 0.5) -> dict[str, np.ndarray]:
    """Parameters drawn afresh, so that zero biases, unit gains or zero peepholes hide nothing."""
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, scale, s) for k, s in model.param_shapes.items()}


def sequence_batch(seed: int, T: int = 6, B: int = 4, D: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (T, B, D)), rng.integers(0, DIGITS, B).astype(np.int32)


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_spec_matches_numpy_loop(name: str) -> None:
    model = specc.compile(spec_path(name), dtype="float64")
    p = random_params(model, seed=3)
    x, y = sequence_batch(4)
    out = model.forward(p, x=x, y=y)
    logits = RECURRENT[name](x, p)[-1] @ p["logits.W"] + p["logits.b"]
    np.testing.assert_allclose(out["probs"], softmax(logits), rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(out["loss"], cross_entropy(logits, y), rtol=1e-5)


def test_lstm_spec_is_the_stdlib_lstm() -> None:
    """specs/lstm.nn writes the library's lstm out: same parameters, same initial values, same function."""
    ours = specc.compile(spec_path("lstm"), dtype="float64")
    lib = specc.compile(STDLIB_MODEL.format(layer="lstm", H=64), dtype="float64")
    theirs_init = lib.init_params(0)
    for k, v in ours.init_params(0).items():
        if k.startswith("h."):
            np.testing.assert_array_equal(v, theirs_init[k])
    np.testing.assert_array_equal(ours.init_params(0)["h.b_f"], 1.0)  # forget gate bias starts at one
    p = random_params(ours, seed=5)
    x, y = sequence_batch(6)
    h = lib.forward({k: v for k, v in p.items() if k.startswith("h.")}, x=x)["h"]
    logits = h[-1] @ p["logits.W"] + p["logits.b"]
    np.testing.assert_allclose(ours.forward(p, x=x, y=y)["probs"], softmax(logits), rtol=1e-10)



@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_stdlib_recurrent_layer_matches_numpy_loop(name: str) -> None:
    model = specc.compile(STDLIB_MODEL.format(layer=name, H=7), dtype="float64")
    p = random_params(model, seed=6)
    x, _ = sequence_batch(7, T=5, B=3)
    h = model.forward(p, x=x)["h"]
    want = RECURRENT[name](x, p)
    assert h.shape == want.shape == (5, 3, 7)
    np.testing.assert_allclose(h, want, rtol=1e-10, atol=1e-12)


def test_mlp_matches_numpy() -> None:
    model = specc.compile(spec_path("mlp"), dtype="float64")
    p = random_params(model, seed=8, scale=0.2)
    rng = np.random.default_rng(9)
    x, y = rng.uniform(0, 1, (5, 64)), rng.integers(0, DIGITS, 5).astype(np.int32)
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    h1 = relu(x @ p["h1.dense.W"] + p["h1.dense.b"])
    h2 = relu(h1 @ p["h2.dense.W"] + p["h2.dense.b"])
    z = h2 @ p["logits.W"] + p["logits.b"]
    out = model.forward(p, x=x, y=y)
    np.testing.assert_allclose(out["probs"], softmax(z), rtol=1e-10)
    np.testing.assert_allclose(out["loss"], cross_entropy(z, y), rtol=1e-10)


def bce(q: np.ndarray, x: np.ndarray) -> float:
    q = np.clip(q, 1e-7, 1 - 1e-7)
    return float(-np.mean(x * np.log(q) + (1 - x) * np.log(1 - q)))


def test_autoencoder_matches_numpy() -> None:
    model = specc.compile(spec_path("autoencoder"), dtype="float64")
    p = random_params(model, seed=10, scale=0.3)
    x = np.random.default_rng(11).uniform(0, 1, (4, 64))
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    code = relu(relu(x @ p["e1.dense.W"] + p["e1.dense.b"]) @ p["code.dense.W"] + p["code.dense.b"])
    recon = sigmoid(relu(code @ p["d1.dense.W"] + p["d1.dense.b"]) @ p["recon.dense.W"] + p["recon.dense.b"])
    out = model.forward(p, x=x)
    np.testing.assert_allclose(out["code"], code, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["recon"], recon, rtol=1e-10)
    np.testing.assert_allclose(out["loss"], bce(recon, x), rtol=1e-10)


def test_vae_matches_numpy_without_noise() -> None:
    """With logvar pinned at -60 the noise is scaled by e^-30, so z = mu and everything is deterministic."""
    model = specc.compile(spec_path("vae"), dtype="float64")
    p = random_params(model, seed=12, scale=0.3)
    p["logvar.W"][:] = 0.0
    p["logvar.b"][:] = -60.0
    x = np.random.default_rng(13).uniform(0, 1, (4, 64))
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    e = relu(x @ p["e.dense.W"] + p["e.dense.b"])
    mu = e @ p["mu.W"] + p["mu.b"]
    logvar = np.full_like(mu, -60.0)
    recon = sigmoid(relu(mu @ p["d.dense.W"] + p["d.dense.b"]) @ p["recon.dense.W"] + p["recon.dense.b"])
    kl = -0.5 * np.mean(np.sum(1 + logvar - mu**2 - np.exp(logvar), axis=-1))
    out = model.forward(p, x=x, seed=1)
    np.testing.assert_allclose(out["mu"], mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["recon"], recon, rtol=1e-9)
    np.testing.assert_allclose(out["loss"], 64 * bce(recon, x) + kl, rtol=1e-9)


def test_vae_noise_depends_on_the_seed() -> None:
    model = specc.compile(spec_path("vae"), dtype="float64")
    p = model.init_params(0)
    x = np.random.default_rng(14).uniform(0, 1, (4, 64))
    a, b, c = (model.forward(p, x=x, seed=s)["loss"] for s in (1, 1, 2))
    assert a == b and a != c


# ---- PyTorch references ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(torch.float32)


def _t(torch, a: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def torch_rnn(torch, p: dict, D: int, H: int):
    net = torch.nn.RNN(D, H, nonlinearity="tanh", dtype=torch.float64)
    with torch.no_grad():
        net.weight_ih_l0.copy_(_t(torch, p["h.W"].T))
        net.weight_hh_l0.copy_(_t(torch, p["h.U"].T))
        net.bias_ih_l0.copy_(_t(torch, p["h.b"]))
        net.bias_hh_l0.zero_()
    return net


def torch_lstm(torch, p: dict, D: int, H: int):
    """torch: gates stacked i, f, g, o in weight_ih [4H, D] and weight_hh [4H, H];
    ours: W_* [H + D, H] over [h, x], so rows :H multiply h and rows H: multiply x."""
    net = torch.nn.LSTM(D, H, dtype=torch.float64)
    gates = ["i", "f", "c", "o"]  # torch's g is our candidate W_c
    with torch.no_grad():
        net.weight_ih_l0.copy_(_t(torch, np.concatenate([p[f"h.W_{g}"][H:].T for g in gates])))
        net.weight_hh_l0.copy_(_t(torch, np.concatenate([p[f"h.W_{g}"][:H].T for g in gates])))
        net.bias_ih_l0.copy_(_t(torch, np.concatenate([p[f"h.b_{g}"] for g in gates])))
        net.bias_hh_l0.zero_()
    return net


def torch_gru(torch, p: dict, D: int, H: int):
    """torch: gates stacked r, z, n; b_hn sits inside the reset product, which is our c_n."""
    net = torch.nn.GRU(D, H, dtype=torch.float64)
    gates = ["r", "z", "n"]
    with torch.no_grad():
        net.weight_ih_l0.copy_(_t(torch, np.concatenate([p[f"h.W_{g}"].T for g in gates])))
        net.weight_hh_l0.copy_(_t(torch, np.concatenate([p[f"h.U_{g}"].T for g in gates])))
        net.bias_ih_l0.copy_(_t(torch, np.concatenate([p[f"h.b_{g}"] for g in gates])))
        net.bias_hh_l0.copy_(_t(torch, np.concatenate([np.zeros(2 * H), p["h.c_n"]])))
    return net


TORCH_CELLS = {"rnn": torch_rnn, "lstm": torch_lstm, "gru": torch_gru}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(TORCH_CELLS))
def test_recurrent_spec_matches_torch(torch, name: str) -> None:
    model = specc.compile(spec_path(name), dtype="float64")
    p = random_params(model, seed=15)
    x, y = sequence_batch(16)
    H = model.param_shapes["logits.W"][0]
    net = TORCH_CELLS[name](torch, p, x.shape[2], H)
    with torch.no_grad():
        seq, _ = net(_t(torch, x))
        logits = seq[-1] @ _t(torch, p["logits.W"]) + _t(torch, p["logits.b"])
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).long())
    out = model.forward(p, x=x, y=y)
    np.testing.assert_allclose(out["probs"], torch.softmax(logits, -1).numpy(), rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(out["loss"], loss.item(), rtol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(TORCH_CELLS))
def test_stdlib_recurrent_layer_matches_torch(torch, name: str) -> None:
    model = specc.compile(STDLIB_MODEL.format(layer=name, H=5), dtype="float64")
    p = random_params(model, seed=17)
    x, _ = sequence_batch(18, T=4, B=2)
    with torch.no_grad():
        want, _ = TORCH_CELLS[name](torch, p, 8, 5)(_t(torch, x))
    np.testing.assert_allclose(model.forward(p, x=x)["h"], want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
def test_lenet5_matches_torch(torch) -> None:
    F = torch.nn.functional
    model = specc.compile(spec_path("lenet5"), dtype="float64")
    p = random_params(model, seed=19, scale=0.3)
    rng = np.random.default_rng(20)
    x, y = rng.uniform(0, 1, (3, 1, 8, 8)), rng.integers(0, DIGITS, 3).astype(np.int32)
    convs = []
    for name in ("a1", "a2"):
        w = p[f"{name}.conv.w"]  # [out, in, k, k]
        conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=2, dtype=torch.float64)
        with torch.no_grad():
            conv.weight.copy_(_t(torch, w))
            conv.bias.copy_(_t(torch, p[f"{name}.conv.b"]))
        convs.append(conv)

    def linear(v, name):
        return v @ _t(torch, p[f"{name}.W"]) + _t(torch, p[f"{name}.b"])

    with torch.no_grad():
        a1 = F.relu(convs[0](_t(torch, x)))
        a2 = F.relu(convs[1](F.max_pool2d(a1, 2)))
        f = F.max_pool2d(a2, 2).flatten(1)
        logits = linear(F.relu(linear(F.relu(linear(f, "h3.dense")), "h4.dense")), "logits")
        loss = F.cross_entropy(logits, torch.from_numpy(y).long())
    out = model.forward(p, x=x, y=y)
    np.testing.assert_allclose(out["probs"], torch.softmax(logits, -1).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["loss"], loss.item(), rtol=1e-10)
