"""Training: optimizers against hand computations, schedules, clipping, checkpoints and resume,
the NaN guard, gradient flow, and a short run per shipped spec whose loss must fall."""

import math
from pathlib import Path

import numpy as np
import pytest

import specc
from specc.training import checkpoint
from specc.training import data
from specc.training import optim
from specc.training.config import TrainConfig
from specc.errors import InputError
from specc.training.metrics import choose_metric, evaluate
from specc.training.nanguard import NonFiniteError
from specc.training.train import Trainer, step_seed

SPECS = sorted(Path("specs").glob("*.nn"))


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**kw)


# ---- optimizers: one step by hand --------------------------------------------------------
P = {"w": np.array([1.0, -2.0]), "b": np.array([0.5])}
G = {"w": np.array([0.5, -1.0]), "b": np.array([2.0])}


def test_sgd_one_step_by_hand():
    opt = optim.make_optimizer(cfg(optimizer="sgd", weight_decay=0.01))
    new, state = opt.update(P, G, opt.init(P), lr=0.1)
    np.testing.assert_allclose(new["w"], [1 - 0.1 * (0.5 + 0.01 * 1), -2 - 0.1 * (-1 + 0.01 * -2)], rtol=1e-15)
    np.testing.assert_allclose(new["b"], [0.5 - 0.1 * (2 + 0.005)], rtol=1e-15)
    assert state.step == 1 and state.slots == {}
    assert P["w"][0] == 1.0  # inputs untouched


def test_momentum_two_steps_by_hand():
    opt = optim.make_optimizer(cfg(optimizer="momentum", momentum=0.9))
    p1, s1 = opt.update(P, G, opt.init(P), lr=0.1)
    np.testing.assert_allclose(s1.slots["v"]["w"], G["w"])
    p2, s2 = opt.update(p1, G, s1, lr=0.1)
    v2 = 0.9 * G["w"] + G["w"]
    np.testing.assert_allclose(s2.slots["v"]["w"], v2, rtol=1e-15)
    np.testing.assert_allclose(p2["w"], P["w"] - 0.1 * G["w"] - 0.1 * v2, rtol=1e-15)


def test_adam_two_steps_by_hand():
    opt = optim.make_optimizer(cfg(optimizer="adam"))
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    p1, s1 = opt.update(P, G, opt.init(P), lr=lr)
    # first step: m_hat = g, v_hat = g^2, so each weight moves by lr * g / (|g| + eps)
    np.testing.assert_allclose(p1["w"], P["w"] - lr * G["w"] / (np.abs(G["w"]) + eps), rtol=1e-15)
    g2 = {"w": np.array([-0.25, 3.0]), "b": np.array([0.0])}
    p2, s2 = opt.update(p1, g2, s1, lr=lr)
    m = b1 * (1 - b1) * G["w"] + (1 - b1) * g2["w"]
    v = b2 * (1 - b2) * G["w"] ** 2 + (1 - b2) * g2["w"] ** 2
    expect = p1["w"] - lr * (m / (1 - b1 ** 2)) / (np.sqrt(v / (1 - b2 ** 2)) + eps)
    np.testing.assert_allclose(s2.slots["m"]["w"], m, rtol=1e-14)
    np.testing.assert_allclose(p2["w"], expect, rtol=1e-14)


def test_adamw_decays_decoupled_and_adam_couples():
    lr, wd, eps = 0.01, 0.1, 1e-8
    w = optim.make_optimizer(cfg(optimizer="adamw", weight_decay=wd))
    p, _ = w.update(P, G, w.init(P), lr=lr)
    decayed = P["w"] * (1 - lr * wd)
    np.testing.assert_allclose(p["w"], decayed - lr * G["w"] / (np.abs(G["w"]) + eps), rtol=1e-15)
    a = optim.make_optimizer(cfg(optimizer="adam", weight_decay=wd))
    p, s = a.update(P, G, a.init(P), lr=lr)
    g = G["w"] + wd * P["w"]  # L2: the decay goes through the moments
    np.testing.assert_allclose(s.slots["m"]["w"], 0.1 * g, rtol=1e-15)


def test_float32_parameters_stay_float32():
    p = {"w": np.ones(3, np.float32)}
    for name in ("sgd", "momentum", "adam", "adamw"):
        opt = optim.make_optimizer(cfg(optimizer=name, weight_decay=0.1))
        new, state = opt.update(p, {"w": np.full(3, 0.5, np.float32)}, opt.init(p), lr=0.1)
        assert new["w"].dtype == np.float32
        assert all(v["w"].dtype == np.float32 for v in state.slots.values())


# ---- schedules and clipping ---------------------------------------------------------------
def test_schedules():
    c = cfg(lr=0.1, schedule="constant")
    assert optim.learning_rate(c, 1000, 10) == 0.1
    s = cfg(lr=0.1, schedule="step", step_size=2, gamma=0.5)
    assert [optim.learning_rate(s, k, 3) for k in (0, 5, 6, 11, 12)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    cos = cfg(lr=0.1, schedule="cosine", epochs=4)
    assert optim.learning_rate(cos, 0, 5) == pytest.approx(0.1)
    assert optim.learning_rate(cos, 10, 5) == pytest.approx(0.05)
    assert optim.learning_rate(cos, 15, 5) == pytest.approx(0.05 * (1 + math.cos(0.75 * math.pi)))
    assert optim.learning_rate(cos, 20, 5) == pytest.approx(0.0)


def test_clip_by_global_norm():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    clipped, norm = optim.clip_by_global_norm(g, 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0])
    np.testing.assert_allclose(clipped["b"], [[0.8]])
    assert optim.global_norm(clipped) == pytest.approx(1.0)
    same, _ = optim.clip_by_global_norm(g, 10.0)
    assert same["a"] is g["a"]
    assert optim.clip_by_global_norm(g, None)[0]["b"] is g["b"]


# ---- a tiny training setup ------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp():
    return specc.compile("specs/mlp.nn")


@pytest.fixture(scope="module")
def small(mlp):
    """160 digits for the MLP (fast enough to train a few epochs in a test)."""
    train = data.load_dataset("digits", mlp).train
    return train.take(np.arange(160))


def run(model, dataset, **kw):
    kw = {"epochs": 2, "batch": 32, "progress": False, **kw}
    return Trainer(model, dataset, **kw).fit()


def test_same_seed_same_curve_bit_for_bit(mlp, small):
    a, b = run(mlp, small, seed=3), run(mlp, small, seed=3)
    assert a.loss == b.loss and a.val_loss == b.val_loss
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert run(mlp, small, seed=4).loss != a.loss


def test_history_and_metric(mlp, small):
    h = run(mlp, small, epochs=2)
    assert h.metric == "accuracy" and len(h.records) == 2
    r = h.records[-1]
    assert set(r.val) == {"loss", "accuracy"} and r.examples_per_s > 0 and r.grad_norm > 0
    d = h.to_dict()
    assert d["final"]["val_accuracy"] == r.val["accuracy"] and d["epochs"] == 2


def test_checkpoint_roundtrip_is_atomic(tmp_path):
    params = {"a": np.arange(3, dtype=np.float32), "b.W": np.ones((2, 2))}
    state = optim.OptState(7, {"m": {"a": np.full(3, 0.5, np.float32), "b.W": np.zeros((2, 2))}})
    meta = {"model": "m", "config": {}, "epoch": 2, "step": 7, "history": [], "x": [1]}  # a full record (checked)
    path = checkpoint.save(tmp_path / "c.npz", checkpoint.Checkpoint(params, state, meta))
    back = checkpoint.load(path)
    assert back.opt_state.step == 7 and back.epoch == 2 and back.meta["x"] == [1]
    assert all(np.array_equal(back.params[k], params[k]) and back.params[k].dtype == params[k].dtype for k in params)
    np.testing.assert_array_equal(back.opt_state.slots["m"]["a"], state.slots["m"]["a"])
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left behind


def test_resume_continues_exactly(mlp, small, tmp_path):
    whole = run(mlp, small, epochs=3, optimizer="adam", schedule="step", step_size=1, gamma=0.5,
                checkpoint=tmp_path / "whole.npz")
    run(mlp, small, epochs=1, optimizer="adam", schedule="step", step_size=1, gamma=0.5,
        checkpoint=tmp_path / "part.npz")
    part = checkpoint.load(tmp_path / "part.npz")
    assert part.epoch == 1 and part.meta["rng"] == {"seed": 0, "epoch": 1, "step": 4}
    resumed = run(mlp, small, epochs=3, resume=tmp_path / "part.npz", checkpoint=tmp_path / "part.npz")
    assert resumed.loss == whole.loss and resumed.val_loss == whole.val_loss
    assert all(np.array_equal(resumed.params[k], whole.params[k]) for k in whole.params)
    end = checkpoint.load(tmp_path / "part.npz")
    assert end.epoch == 3 and end.opt_state.step == 12  # 128 training examples, batches of 32


def test_checkpoint_into_another_spec_names_the_parameter(mlp, small, tmp_path):
    run(mlp, small, epochs=1, checkpoint=tmp_path / "mlp.npz")
    wider = specc.compile(Path("specs/mlp.nn").read_text().replace("dense(x, 128)", "dense(x, 100)"))
    first = next(iter(wider.param_shapes))  # the first layer's weight
    with pytest.raises(InputError) as e:
        checkpoint.load_params(tmp_path / "mlp.npz", wider)
    assert f"parameter '{first}' in" in e.value.message
    assert "[64, 128], but the spec gives it [64, 100]" in e.value.message
    assert e.value.span.line == 21 and e.value.span.source is wider.source  # the line `h1 = ...`
    lstm = specc.compile("specs/lstm.nn")
    with pytest.raises(InputError, match=f"has no parameter '{next(iter(lstm.param_shapes))}'"):
        checkpoint.load_params(tmp_path / "mlp.npz", lstm)
    np.savez(tmp_path / "plain.npz", **mlp.init_params(0), extra=np.zeros(1))
    with pytest.raises(InputError, match="a parameter 'extra' that model 'classify' does not have"):
        checkpoint.load_params(tmp_path / "plain.npz", mlp)


def test_resume_with_another_optimizer_is_refused(mlp, small, tmp_path):
    run(mlp, small, epochs=1, optimizer="sgd", checkpoint=tmp_path / "s.npz")
    with pytest.raises(InputError, match="optimizer state for sgd, not adam"):
        run(mlp, small, epochs=2, resume=tmp_path / "s.npz", optimizer="adam")


def test_step_seeds_differ_per_step_and_dropout_trains():
    assert len({step_seed(0, s) for s in range(100)}) == 100 and step_seed(1, 0) != step_seed(0, 0)
    m = specc.compile("""
dim B
model m(x: f32[B, 4], y: i32[B]) {
  h = dropout(relu(dense(x, 16)), p=0.5)
  logits = dense(h, 2)
  loss = cross_entropy(logits, y)
  output probs = softmax(logits)
}""")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4))
    d = {"x": x, "y": (x[:, 0] > 0).astype(np.int64)}
    a, b = run(m, d, epochs=3, lr=0.05, val_split=0.0), run(m, d, epochs=3, lr=0.05, val_split=0.0)
    assert a.loss == b.loss and a.loss[-1] < a.loss[0]


# ---- NaN / Inf guard --------------------------------------------------------------------------
LOG_NEG = """dim B
model m(x: f32[B, 4], y: i32[B]) {
  h = dense(x, 3)
  z = log(h)
  loss = cross_entropy(z, y)
}
"""

RECUR_NAN = """dim T, B
model m(x: f32[T, B, 2], y: i32[B]) {
  recur t over x {
    init s = zeros([B, 2])
    s[t] = s[t-1] + x[t]
    r = log(1 - s[t])
    h[t] = r
  }
  loss = cross_entropy(dense(h[-1], 3), y)
}
"""

GRAD_NAN = """dim B
model m(x: f32[B, 4], y: i32[B]) {
  h = relu(dense(x, 3)) * 0
  z = sqrt(h)
  loss = cross_entropy(z + dense(x, 3), y)
}
"""


def test_nan_guard_names_the_equation():
    m = specc.compile(LOG_NEG)
    d = {"x": np.random.default_rng(0).standard_normal((16, 4)), "y": np.zeros(16, np.int64)}
    with pytest.raises(NonFiniteError) as e:
        run(m, d, epochs=1, val_split=0.0)
    err = e.value
    assert err.span.line == 4 and "the loss is nan" in err.message and "from 'log'" in err.message
    assert "epoch 1, step 0" in err.message
    assert "<string>:4:" in err.render() and "z = log(h)" in err.render() and "keep its argument positive" in err.hint


def test_nan_guard_in_a_recurrence_names_the_time_step():
    m = specc.compile(RECUR_NAN)
    d = {"x": np.full((6, 8, 2), 0.3), "y": np.zeros(8, np.int64)}  # 1 - s[t] < 0 from t = 3
    with pytest.raises(NonFiniteError) as e:
        run(m, d, epochs=1, val_split=0.0)
    err = e.value
    assert err.span.line == 6, err.render()
    assert "at time step t = 3 (from 0) of the recurrence" in err.message
    assert any(loc.line == 3 for _label, loc in err.related)  # the recur block


def test_nan_guard_in_the_backward_pass():
    m = specc.compile(GRAD_NAN)
    d = {"x": np.random.default_rng(1).standard_normal((16, 4)), "y": np.zeros(16, np.int64)}
    with pytest.raises(NonFiniteError) as e:
        run(m, d, epochs=1, val_split=0.0)
    err = e.value
    assert "the gradient of" in err.message and "in the backward pass of 'sqrt' (this equation)" in err.message
    assert err.span.line == 4 and "infinite at x = 0" in err.hint


# ---- gradient flow ----------------------------------------------------------------------------
def test_grad_flow_is_the_total_state_gradient():
    """For the Elman RNN, dL/dx_t = (dL/dh_t * (1 - h_t^2)) W^T with dL/dh_t the total derivative."""
    from specc.training.gradflow import _perturbed_scan, grad_flow, state_gradients
    from specc.ir.verify import verify

    m = specc.compile("specs/rnn.nn", dtype="float64")
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 5, 8)), rng.integers(0, 10, 5)
    params = m.init_params(1)
    [(name, loc, ct)] = state_gradients(m, params, {"x": x, "y": y})
    assert name == "h" and ct.shape == (8, 5, 64) and loc.line == 24
    W, U, b = (params[next(k for k in params if k.endswith(f".{n}"))] for n in ("W", "U", "b"))
    h, hs = np.zeros((5, 64)), []
    for t in range(8):
        h = np.tanh(x[t] @ W + h @ U + b)
        hs.append(h)
    _, grads = m.value_and_grad(params, wrt_inputs=True, x=x, y=y)
    for t in range(8):
        np.testing.assert_allclose(grads["x"][t], (ct[t] * (1 - hs[t] ** 2)) @ W.T, rtol=1e-9, atol=1e-14)
    [flow] = grad_flow(m, params, {"x": x, "y": y})
    np.testing.assert_allclose(flow.norms, np.sqrt((ct ** 2).sum(axis=(1, 2))))
    scan = next(e for e in m.program.graph.eqns if e.op == "scan")
    verify(_perturbed_scan(scan)[0].params["body"])


def test_grad_flow_reads_every_state_of_the_lstm():
    from specc.training.gradflow import grad_flow

    m = specc.compile("specs/lstm.nn")
    flows = grad_flow(m, m.init_params(0), {"x": np.random.rand(8, 4, 8), "y": np.arange(4)})
    assert sorted(f.state for f in flows) == ["c", "h"]
    assert all(f.norms.shape == (8,) and np.all(f.norms > 0) for f in flows)  # c_T-1 reaches h_T-1 within the step


# ---- every shipped spec learns ------------------------------------------------------------------
SPEC_DATA = {"bilstm_tagger": "digit_rows", "sunspots_gru": "sunspots"}  # the others read the digits


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_each_spec_loss_falls(spec):
    model = specc.compile(spec)
    subset = data.load_dataset(SPEC_DATA.get(spec.stem, "digits"), model).train.take(np.arange(96))
    before = evaluate(model, model.init_params(0), subset, None)["loss"]
    h = Trainer(model, subset, epochs=3, batch=32, val_split=0.0, progress=False).fit()
    after = evaluate(model, h.params, subset, None)["loss"]
    assert after < 0.95 * before, (before, after, h.loss)
    assert choose_metric(model).name == ("mse" if spec.stem in ("autoencoder", "vae", "sunspots_gru") else "accuracy")
