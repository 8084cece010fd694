"""Weights interchange: checkpoints as .safetensors (resume, --params, metadata), the std lstm/gru
parameters as torch.nn.LSTM/GRU state dicts (loaded into PyTorch, outputs compared), the shipped digits."""

import json

import numpy as np
import pytest

import specc
from specc.cli import main
from specc.errors import InputError
from specc.interop.torch_rnn import gru_from_state_dict, gru_state_dict, lstm_from_state_dict, lstm_state_dict
from specc.training import checkpoint, data
from specc.training.train import Trainer

STACK = """dim T, B
model m(x: f64[T, B, 5]) {
  h = lstm(x, hidden=6)
  output hs = h
  g = gru(h, hidden=4)
  output gs = g
  loss = mean(g)
}
"""


# ---- safetensors -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp():
    return specc.compile("specs/mlp.nn")


@pytest.fixture(scope="module")
def small(mlp):
    return data.load_dataset("digits", mlp).train.take(np.arange(160))


def test_safetensors_checkpoint_round_trip_and_resume(mlp, small, tmp_path):
    pytest.importorskip("safetensors")
    kw = {"batch": 32, "progress": False}
    whole = Trainer(mlp, small, epochs=3, **kw).fit()
    ck = tmp_path / "m.ckpt.safetensors"
    Trainer(mlp, small, epochs=2, checkpoint=ck, **kw).fit()
    loaded = checkpoint.load(ck)
    assert loaded.epoch == 2 and set(loaded.opt_state.slots) == {"m", "v"}
    resumed = Trainer(mlp, small, epochs=3, resume=ck, **kw).fit()
    assert [r.train_loss for r in resumed.records] == [r.train_loss for r in whole.records]  # bit for bit
    for k, v in whole.params.items():
        np.testing.assert_array_equal(resumed.params[k], v)
    from safetensors import safe_open

    with safe_open(str(ck), framework="np") as f:
        header = f.metadata()
    assert header["format"] == "specc-checkpoint/1" and header["model"] == "classify"
    assert json.loads(header["specc"])["config"]["batch"] == 32
    assert (tmp_path / "m.best.ckpt.safetensors").is_file()


def test_bare_safetensors_parameters_work_with_params(mlp, tmp_path, capsys):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    params = mlp.init_params(5)
    save_file(params, str(tmp_path / "p.safetensors"))
    got = checkpoint.load_params(tmp_path / "p.safetensors", mlp)
    for k in params:
        np.testing.assert_array_equal(got[k], params[k])
    with pytest.raises(InputError, match="not a specc checkpoint"):
        checkpoint.load(tmp_path / "p.safetensors")
    save_file({k: v for k, v in params.items() if k != "logits.b"}, str(tmp_path / "q.safetensors"))
    with pytest.raises(InputError, match="no parameter 'logits.b'"):
        checkpoint.load_params(tmp_path / "q.safetensors", mlp)
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(InputError, match="cannot read"):
        checkpoint.load_params(tmp_path / "bad.safetensors", mlp)


def test_train_cli_format_safetensors(tmp_path, capsys):
    pytest.importorskip("safetensors")
    out = tmp_path / "m.ckpt.safetensors"
    assert main(["train", "specs/mlp.nn", "--dataset", "digits", "--epochs", "1", "--format", "safetensors",
                 "-o", str(out), "--quiet"]) == 0
    assert main(["eval", "specs/mlp.nn", "--params", str(out), "--dataset", "digits"]) == 0
    assert main(["train", "specs/mlp.nn", "--dataset", "digits", "--epochs", "1", "--format", "safetensors",
                 "-o", str(tmp_path / "m.npz"), "--quiet"]) == 1
    assert "--format safetensors writes a .safetensors file" in capsys.readouterr().err


def test_safetensors_missing_is_a_clear_message(mlp, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_st(name, *a, **kw):
        if name.startswith("safetensors"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_st)
    with pytest.raises(InputError, match=r"specc\[safetensors\]"):
        checkpoint.save(tmp_path / "x.safetensors", checkpoint.Checkpoint(mlp.init_params(0), checkpoint.OptState()))


# ---- torch.nn.LSTM / GRU -----------------------------------------------------------------------------
def test_lstm_and_gru_state_dicts_give_pytorchs_outputs():
    torch = pytest.importorskip("torch")
    model = specc.compile(STACK, target="interp")
    rng = np.random.default_rng(0)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in model.init_params(1).items()}  # no zero biases
    x = rng.standard_normal((7, 3, 5))
    outs = model.forward(params, x=x)

    lstm = torch.nn.LSTM(5, 6).double()
    lstm.load_state_dict({k: torch.from_numpy(v) for k, v in lstm_state_dict(params, "h").items()})
    gru = torch.nn.GRU(6, 4).double()
    gru.load_state_dict({k: torch.from_numpy(v) for k, v in gru_state_dict(params).items()})  # found: one gru
    with torch.no_grad():
        hs, _ = lstm(torch.from_numpy(x))
        gs, _ = gru(hs)
    np.testing.assert_allclose(hs.numpy(), outs["hs"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gs.numpy(), outs["gs"], rtol=1e-12, atol=1e-12)


def test_pytorch_weights_come_back_as_spec_parameters():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lstm, gru = torch.nn.LSTM(5, 6).double(), torch.nn.GRU(6, 4).double()  # random, nonzero bias_hh
    model = specc.compile(STACK, target="interp")
    params = dict(model.init_params(0))
    params.update(lstm_from_state_dict(lstm.state_dict(), "h"))
    params.update(gru_from_state_dict(gru.state_dict(), "g"))
    checkpoint.check_fit(params, model)
    x = np.random.default_rng(1).standard_normal((4, 2, 5))
    outs = model.forward(params, x=x)
    with torch.no_grad():
        hs, _ = lstm(torch.from_numpy(x))
        gs, _ = gru(hs)
    np.testing.assert_allclose(outs["hs"], hs.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(outs["gs"], gs.numpy(), rtol=1e-12, atol=1e-12)


def test_state_dict_finds_the_layer_or_asks_for_it():
    model = specc.compile("dim T, B\nmodel m(x: f32[T, B, 3]) {\n  a = lstm(x, hidden=2)\n  b = lstm(a, hidden=2)\n"
                          "  loss = mean(b)\n}\n", target="interp")
    params = model.init_params(0)
    with pytest.raises(InputError, match=r"several lstm layers in these parameters \(a, b\)"):
        lstm_state_dict(params)
    assert lstm_state_dict(params, "b")["weight_ih_l0"].shape == (8, 2)
    with pytest.raises(InputError, match="no gru parameters 'a.W_r'"):
        gru_state_dict(params, "a")


def test_the_spec_lstm_matches_the_library_lstm_layout():
    """specs/lstm.nn writes the cell out; its parameters map the same way."""
    torch = pytest.importorskip("torch")
    model = specc.compile("specs/lstm.nn", target="interp", dtype="float64")
    params = model.init_params(3)
    sd = lstm_state_dict(params, "h")
    lstm = torch.nn.LSTM(8, 64).double()
    lstm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(2).random((8, 4, 8))
    with torch.no_grad():
        hs, _ = lstm(torch.from_numpy(x))
    logits = hs[-1].numpy() @ params["logits.W"] + params["logits.b"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.forward(params, x=x)["probs"], e / e.sum(axis=1, keepdims=True), rtol=1e-10)


# ---- the shipped digits ----------------------------------------------------------------------------------
def test_shipped_digits_equal_scikit_learns():
    sklearn = pytest.importorskip("sklearn.datasets")
    from specc.training.digits import FILE, digits

    images, labels = digits()
    d = sklearn.load_digits()
    np.testing.assert_array_equal(images, d.images / 16.0)
    np.testing.assert_array_equal(labels, d.target)
    assert FILE.stat().st_size < 60_000
    assert "BSD 3-Clause" in (FILE.parent / "DIGITS-LICENSE.txt").read_text()
