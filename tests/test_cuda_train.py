"""Training with target cuda: parameters and optimizer state on the device, the update as CUDA kernels.

Under numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1), tiny shapes:

- the device optimizer (specc.backends.cuda.optim) against specc.training.optim, bit for bit: every rule, with and
  without weight decay, clipping's scale, float32 and float64, a scalar parameter, an array large enough
  for the host's fused Adam; the global norm against the host's;
- whole runs: ``Trainer`` on a cuda model with the parameters on the device equals the same run with
  the host optimizer (every optimizer, with clipping and each learning-rate schedule), and the
  interpreter's run to float32 tolerance; parameters come to the host once per epoch, the host
  optimizer is never called; a resumed run continues exactly; the NaN guard names the equation;
- the optimizer kernels compile to PTX for sm_90 (numba-cuda itself, no simulator; skipped without NVVM).

With SPECC_TEST_REAL_GPU=1 (benchmarks/gpu_check.sh) they run on the GPU, where bit-for-bit becomes
equal to rounding (FMA contraction).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import specc
from specc.training import checkpoint
from specc.training import optim
from specc.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_codegen_cuda import REAL_GPU, _nvvm_env, cuda_for_tests  # noqa: E402  (one switch, one probe)

MLP = """dim B
model m(x: f32[B, 6], y: i32[B]) {
  h = tanh(dense(x, 5))
  logits = dense(h, 3)
  loss = cross_entropy(logits, y)
  output probs = softmax(logits)
}
"""

OVERFLOW = """dim B
model m(x: f32[B, 4], y: i32[B]) {
  h = dense(x, 3)
  z = h * 1e30 * 1e30
  loss = cross_entropy(z, y)
}
"""  # not log(h) as in tests/test_train.py: the simulator's math.log raises where a GPU gives NaN


@pytest.fixture(scope="module")
def cuda(tmp_path_factory):
    """numba-cuda's simulator for this module (the GPU with SPECC_TEST_REAL_GPU=1), and one fresh cache directory."""
    with pytest.MonkeyPatch.context() as mp:
        yield cuda_for_tests(mp, tmp_path_factory.mktemp("specc-cuda-cache"))


# The simulator computes each kernel's float operations as NumPy does: the host's bits.  A GPU may contract
# a product and a sum into one FMA, so there the device and the host agree to rounding.
EXACT = {"rtol": 0, "atol": 0}
ROUNDING = {np.float32: {"rtol": 2e-6, "atol": 1e-7}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}


# ---- the device optimizer against specc.training.optim ------------------------------------------------------
def arrays(dtype, seed: int, big: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"W": (7, 5), "b": (3,), "s": ()} | ({"big": (70, 60)} if big else {})
    return {k: np.asarray(rng.standard_normal(s), dtype) for k, s in shapes.items()}


CONFIGS = [("sgd", 0.0), ("sgd", 0.01), ("momentum", 0.0), ("momentum", 0.01), ("adam", 0.0), ("adam", 0.01),
           ("adamw", 0.0), ("adamw", 0.01)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,wd", CONFIGS, ids=[f"{n}-wd{w}" for n, w in CONFIGS])
def test_device_rules_equal_the_host_bit_for_bit(cuda, dtype, name, wd):
    from specc.backends.cuda.optim import DeviceOptimizer

    opt = optim.make_optimizer(TrainConfig(optimizer=name, weight_decay=wd, momentum=0.8))
    params = arrays(dtype, 0, big=name == "adam" and dtype == np.float32)  # the host's fused Adam too
    assert name != "adam" or dtype != np.float32 or params["big"].size >= optim.FUSED_MIN_SIZE
    state = opt.init(params)
    dev = DeviceOptimizer(opt, params, state)
    host_params = params
    for step, (lr, scale) in enumerate([(0.1, None), (0.05, 0.3), (0.02, None)]):
        grads = arrays(dtype, 10 + step, big="big" in params)
        host_grads = grads if scale is None else {k: g * np.asarray(scale, dtype) for k, g in grads.items()}
        host_params, state = opt.update(host_params, host_grads, state, lr)
        dev.update({k: cuda.to_device(g.reshape(g.shape or (1,))) for k, g in grads.items()}, lr, scale)
    got, got_state = dev.host_params(), dev.host_state()
    tol = ROUNDING[dtype] if REAL_GPU else EXACT
    assert got_state.step == state.step == 3
    for k in params:
        assert got[k].dtype == dtype and got[k].shape == params[k].shape
        np.testing.assert_allclose(got[k], host_params[k], err_msg=k, **tol)
        assert not np.array_equal(got[k], params[k]), f"{k} did not move"
        for s in opt.slots:
            np.testing.assert_allclose(got_state.slots[s][k], state.slots[s][k], err_msg=f"{s}/{k}", **tol)
    np.testing.assert_array_equal(params["W"], arrays(dtype, 0)["W"])  # the host arrays were copied, not used


def test_global_norm_and_clipping_scale(cuda):
    from specc.backends.cuda.optim import DeviceOptimizer

    grads = arrays(np.float32, 3, big=True)
    dev = DeviceOptimizer(optim.make_optimizer(TrainConfig()), grads, optim.make_optimizer(TrainConfig()).init(grads))
    norm = dev.global_norm({k: cuda.to_device(g.reshape(g.shape or (1,))) for k, g in grads.items()})
    assert norm == pytest.approx(optim.global_norm(grads), rel=1e-12)
    assert optim.clip_scale(norm, None) is None and optim.clip_scale(norm, 2 * norm) is None
    assert optim.clip_scale(norm, norm / 4) == pytest.approx(0.25)
    assert optim.clip_scale(float("nan"), 1.0) is None
    bad = {**grads, "b": np.array([1.0, np.inf, 0.0], np.float32)}
    assert not np.isfinite(dev.global_norm({k: cuda.to_device(g.reshape(g.shape or (1,))) for k, g in bad.items()}))


# ---- whole training runs ------------------------------------------------------------------------------
def data(seed: int = 0, n: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return {"x": x, "y": (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)}


def train(model, monkeypatch=None, host_optimizer: bool = False, n: int = 8, **kw):
    """Two epochs of one step each (8 examples, batch 8: the simulator runs a step of the MLP in about a second)."""
    train_mod = importlib.import_module("specc.training.train")  # the module (specc.training.train is also the function)
    if host_optimizer:  # the same model (the same gradient kernels), the optimizer on the host
        monkeypatch.setattr(train_mod, "CudaSteps", train_mod.HostSteps)
    kw = {"epochs": 2, "batch": 8, "val_split": 0.0, "progress": False, "lr": 0.05, **kw}
    try:
        return train_mod.Trainer(model, data(n=n), **kw).fit()
    finally:
        if host_optimizer:
            monkeypatch.undo()


RUNS = [dict(optimizer="sgd", weight_decay=0.01, clip=0.05),
        dict(optimizer="momentum", weight_decay=0.01, schedule="step", step_size=1, gamma=0.5),  # lr per epoch
        dict(optimizer="adam", weight_decay=0.01, schedule="cosine"),  # lr, then lr / 2
        dict(optimizer="adamw", weight_decay=0.1, clip=0.05)]


@pytest.mark.parametrize("run", RUNS, ids=[r["optimizer"] for r in RUNS])
def test_training_on_the_device_equals_the_host_optimizer(cuda, monkeypatch, run):
    model = specc.compile(MLP, target="cuda")
    device = train(model, **run)
    host = train(model, monkeypatch, host_optimizer=True, **run)
    if run.get("clip"):  # clipping did happen (the norm is reduced in another order: scales agree to rounding)
        assert min(r.grad_norm for r in device.records) > run["clip"]
        tol = {"rtol": 1e-6, "atol": 1e-7}
    else:  # the same gradients, the same float operations: the same bits (in the simulator)
        tol = {"rtol": 1e-5, "atol": 1e-6} if REAL_GPU else EXACT
    np.testing.assert_allclose(device.loss, host.loss, **tol)
    assert [r.lr for r in device.records] == [r.lr for r in host.records]
    assert len(set(r.lr for r in device.records)) == (1 if run.get("schedule") is None else 2)
    np.testing.assert_allclose([r.grad_norm for r in device.records], [r.grad_norm for r in host.records], rtol=1e-12)
    for k in host.params:
        np.testing.assert_allclose(device.params[k], host.params[k], err_msg=k, **tol)
        assert device.params[k].dtype == host.params[k].dtype == np.float32
    assert device.loss[-1] < device.loss[0]


def test_training_on_the_device_matches_the_interpreter(cuda):
    run = dict(optimizer="momentum", weight_decay=0.01, clip=0.5)
    device = train(specc.compile(MLP, target="cuda"), **run)
    ref = train(specc.compile(MLP, target="interp"), **run)
    np.testing.assert_allclose(device.loss, ref.loss, rtol=1e-5)
    for k in ref.params:
        np.testing.assert_allclose(device.params[k], ref.params[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_parameters_stay_on_the_device(cuda, monkeypatch, tmp_path):
    """No host optimizer step; parameters and state come to the host once per epoch (validation and the
    checkpoint share the copy) and the end of the run reuses the last one."""
    from specc.backends.cuda import optim as cuda_optim

    def refuse(*a, **k):
        raise AssertionError("the host optimizer ran")

    monkeypatch.setattr(optim.Optimizer, "update", refuse)
    copies = []
    real = cuda_optim.DeviceOptimizer.host_params
    monkeypatch.setattr(cuda_optim.DeviceOptimizer, "host_params", lambda self: copies.append(self.step) or real(self))
    h = train(specc.compile(MLP, target="cuda"), optimizer="adam", batch=4, n=10, val_split=0.2,
              checkpoint=tmp_path / "c.npz")
    assert copies == [2, 4]  # 8 training examples, batches of 4: the step count at each epoch's end
    assert set(h.records[-1].val) == {"loss", "accuracy"}
    saved = checkpoint.load(tmp_path / "c.npz")
    assert saved.opt_state.step == 4 and set(saved.opt_state.slots) == {"m", "v"}
    for k in h.params:
        np.testing.assert_array_equal(saved.params[k], h.params[k])
    # written atomically: no temporary left; the best epoch's checkpoint beside the last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.best.npz", "c.npz"]


def test_resume_on_the_device_continues_exactly(cuda, tmp_path):
    model = specc.compile(MLP, target="cuda")
    run = dict(optimizer="adamw", weight_decay=0.1, schedule="step", step_size=1, gamma=0.5)
    whole = train(model, epochs=2, **run)
    train(model, epochs=1, checkpoint=tmp_path / "part.npz", **run)
    resumed = train(model, epochs=2, resume=tmp_path / "part.npz", **run)
    assert resumed.loss == whole.loss and resumed.val_loss == whole.val_loss
    for k in whole.params:
        np.testing.assert_array_equal(resumed.params[k], whole.params[k])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator computes the overflow with NumPy scalars
def test_nan_guard_on_the_device(cuda):
    from specc.training.nanguard import NonFiniteError
    from specc.training.train import Trainer

    m = specc.compile(OVERFLOW, target="cuda")
    d = {"x": np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32), "y": np.zeros(4, np.int32)}
    with pytest.raises(NonFiniteError) as e:
        Trainer(m, d, epochs=1, batch=4, val_split=0.0, progress=False).fit()
    err = e.value
    assert err.span.line == 4 and "the loss is " in err.message and "epoch 1, step 0" in err.message


# ---- the kernels compile for a real GPU ------------------------------------------------------------------
PTX_SCRIPT = """
import json
from numba import float32, float64, int64, boolean
from specc.backends.cuda.ptx import compile_ptx, pretend_h100
pretend_h100()
from specc.backends.cuda import optim as co
out = {}
for name, t in (("f32", float32), ("f64", float64)):
    a = t[::1]
    sigs = {"sgd": (a, a, t, t, t, boolean), "momentum": (a, a, a, t, t, t, boolean, t),
            "adam": (a, a, a, a, t, t, boolean) + (t,) * 8, "adamw": (a, a, a, a, t, t, boolean) + (t,) * 8,
            "sum_squares": (a, float64[::1], int64)}
    for kernel, sig in sigs.items():
        out[f"{kernel}_{name}"] = compile_ptx(getattr(co, kernel), sig)
out["sum_partials"] = compile_ptx(co.sum_partials, (float64[::1], float64[::1]))
print(json.dumps(out))
"""


def test_optimizer_kernels_compile_to_ptx():
    env = _nvvm_env()
    if env is None:
        pytest.skip("numba-cuda with NVVM is not installed (pip install numba-cuda 'cuda-toolkit[nvvm]==13.*')")
    out = subprocess.run([sys.executable, "-c", PTX_SCRIPT], env=env, capture_output=True, text=True, check=False,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    sizes = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(sizes) == 11 and all(n > 0 for n in sizes.values())



# ---- every spec trains on the device --------------------------------------------------------------
SPECS = sorted((ROOT / "specs").glob("*.nn"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_spec_trains_on_the_device(cuda, tmp_path, capsys, path):
    """`specc train --target cuda` (parameters and optimizer on the device) on each spec of specs/, its
    sizes shrunk, one epoch of one batch: the same losses and metrics as the interpreter's run."""
    from specc.cli import main, random_inputs
    from test_codegen_cuda import shrink

    spec = tmp_path / path.name
    spec.write_text(shrink(path.read_text()))
    model = specc.compile(str(spec), target="interp")
    rng = np.random.default_rng(1)
    data = {k: rng.uniform(size=v.shape) if v.dtype.kind == "f" else v  # floats in [0, 1]: BCE targets too
            for k, v in random_inputs(model, {"B": 4, "T": 2}, 0).items()}
    np.savez(tmp_path / "d.npz", **data)
    final = {}
    for target in ("cuda", "interp"):
        argv = ["train", str(spec), "--data", str(tmp_path / "d.npz"), "--target", target, "--epochs", "1",
                "--batch", "2", "--val-split", "0.5", "--quiet", "--json", "-o", str(tmp_path / f"{target}.npz")]
        assert main(argv) == 0
        final[target] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["final"]
    assert final["cuda"] == pytest.approx(final["interp"], rel=1e-4, abs=1e-6)
