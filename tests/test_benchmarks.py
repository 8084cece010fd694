"""The benchmark suite times equal work: its PyTorch and JAX peers agree with specc on small shapes.

Losses and gradients of every peer of benchmarks/ (torch.nn.LSTM/GRU with specc's weights,
the hand-written torch cells, the JAX scans, the MLP and LeNet-5 in torch, the Adam step)
against specc's reference interpreter, float32; plus the table's ratios and verdicts.
Skipped per peer when torch or jax is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import specc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import feedforward  # noqa: E402
import harness  # noqa: E402
import rnn  # noqa: E402

T, B, D, H = 4, 3, 5, 6


def close(got: np.ndarray, want: np.ndarray, what: str, rtol: float = 2e-4) -> None:
    """Equal up to float32 rounding, relative to the largest entry (gradients of a mean are small)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = np.max(np.abs(got - want)) if got.size else 0.0
    assert err <= rtol * max(np.max(np.abs(want)), 1e-6), f"{what}: max error {err:.3g}"


def random_params(model: specc.Model, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, 0.5, s).astype(np.float32) for k, s in model.param_shapes.items()}


def specc_reference(cell: str, seed: int = 0):
    model = specc.compile(rnn.spec_text(cell, D, H), target="interp", dtype="float32")
    p = random_params(model, seed)
    x = np.random.default_rng(seed + 1).standard_normal((T, B, D)).astype(np.float32)
    loss, grads = model.value_and_grad(p, x=x)
    return p, x, float(loss), grads


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def jax():
    return pytest.importorskip("jax")


def test_stack_unstack_round_trip():
    for cell in rnn.CELLS:
        model = specc.compile(rnn.spec_text(cell, D, H), target="interp", dtype="float32")
        p = random_params(model, 1)
        back = rnn.unstack(cell, rnn.stack(cell, p))
        assert set(back) == set(p), cell
        for k in p:
            np.testing.assert_array_equal(back[k], p[k])
        # the peers hold exactly specc's numbers
        assert sum(v.size for v in rnn.stack(cell, p).values()) == model.n_params


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_nn_matches_specc(torch, cell):
    p, x, loss, grads = specc_reference(cell, 2)
    net = rnn.torch_nn(torch, cell, rnn.stack(cell, p), D, H)
    out = net(torch.from_numpy(x))[0].mean()
    out.backward()
    close(out.item(), loss, "loss")
    got = rnn.unstack(cell, rnn.torch_nn_grads(cell, net, H))
    for k in grads:
        close(got[k], grads[k], f"{cell} d{k}")


@pytest.mark.parametrize("cell", rnn.CELLS)
def test_torch_cell_matches_specc(torch, cell):
    p, x, loss, grads = specc_reference(cell, 3)
    P = {k: torch.from_numpy(v).requires_grad_(True) for k, v in rnn.stack(cell, p).items()}
    out = rnn.torch_cell_loss(torch, cell, P, torch.from_numpy(x))
    out.backward()
    close(out.item(), loss, "loss")
    got = rnn.unstack(cell, {k: v.grad.numpy() for k, v in P.items()})
    for k in grads:
        close(got[k], grads[k], f"{cell} d{k}")


@pytest.mark.parametrize("cell", rnn.CELLS)
def test_jax_scan_matches_specc(jax, cell):
    p, x, loss, grads = specc_reference(cell, 4)
    value, g = jax.jit(jax.value_and_grad(rnn.jax_loss(cell)))(rnn.stack(cell, p), x)
    close(float(value), loss, "loss")
    got = rnn.unstack(cell, {k: np.asarray(v) for k, v in g.items()})
    for k in grads:
        close(got[k], grads[k], f"{cell} d{k}")


@pytest.mark.parametrize("net", ["mlp", "lenet"])
def test_torch_feedforward_and_adam_match_specc(torch, net):
    from specc.training.optim import SLOTS, Optimizer

    model = specc.compile(feedforward.spec_source(net), target="interp", dtype="float32")
    p = {k: (0.5 * v).astype(np.float32) for k, v in random_params(model, 5).items()}
    x, y = feedforward.batch(net, 4)
    loss, grads = model.value_and_grad(p, x=x, y=y)
    tnet = feedforward.torch_net(torch, net, p)
    assert sum(t.numel() for t in tnet.parameters()) == model.n_params
    out = torch.nn.functional.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(y).long())
    out.backward()
    close(out.item(), float(loss), "loss")
    got = feedforward.torch_grads(net, tnet)
    assert set(got) == set(grads)
    for k in grads:
        close(got[k], grads[k], f"{net} d{k}", rtol=1e-3)
    # one Adam step on both sides lands on the same parameters
    opt = Optimizer("adam", SLOTS["adam"])
    new, _ = opt.update(p, grads, opt.init(p), feedforward.LR)
    torch.optim.Adam(tnet.parameters(), lr=feedforward.LR).step()
    stepped = {k: v for k, v in zip(got, [t.detach().numpy() for t in tnet.parameters()])}
    for k, v in stepped.items():
        close(v.T if k.endswith(".W") else v, new[k], f"{net} {k} after Adam", rtol=1e-4)


def test_lenet_spec_sets_the_widths():
    model = specc.compile(feedforward.lenet_spec(3, 7), target="interp", dtype="float32")
    assert model.param_shapes["a1.conv.w"] == (3, 1, 5, 5) and model.param_shapes["a2.conv.w"] == (7, 3, 5, 5)
    assert model.param_shapes["h3.dense.W"] == (7 * 4, 120)


def test_flop_counts():
    assert rnn.gemm_flops("lstm", 50, 32, 64, 256, "forward") == 2 * 50 * 32 * (64 + 256) * 4 * 256
    assert rnn.gemm_flops("lstm", 50, 32, 64, 256) == 3 * rnn.gemm_flops("lstm", 50, 32, 64, 256, "forward")
    assert rnn.gemm_flops("gru", 1, 1, 1, 1, "forward") == 2 * 2 * 3
    assert feedforward.flops("mlp", 1) == 3 * 2 * (784 * 256 + 256 * 256 + 2560)


def test_table_ratios_and_verdicts():
    def m(impl, ms, family="LSTM", error=None):
        return harness.Measurement(family, "train", "1x1x1x1", impl, 1e9, [ms / 1e3] * 3, error=error)

    rows = harness.comparison_rows([m("specc", 10), m("torch.nn.LSTM", 20), m("torch cell", 15),
                                    m("jax scan", 0, error="jax not installed")])
    by_peer = {r.peer: r for r in rows}
    assert by_peer["torch.nn.LSTM"].ratio == pytest.approx(0.5) and by_peer["torch.nn.LSTM"].verdict == "PASS"
    assert by_peer["torch cell"].verdict == "MISS"  # 0.67 > 0.5
    assert by_peer["jax scan"].ratio is None and by_peer["jax scan"].verdict == "jax not installed"
    assert by_peer["torch cell"].specc_gflops == pytest.approx(100.0)
    assert by_peer["torch cell"].spread == pytest.approx(1.0)
    table = harness.format_table(rows)
    assert "0.50" in table and "PASS" in table and "jax not installed" in table


def test_load_warning_only_on_a_busy_machine():
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert harness.load_warning([0.5, None, cpus * 1.0], 2) is None
    assert "load average reached" in harness.load_warning([cpus + 3.0], 2)


# ---- the GPU benchmark (benchmarks/cuda_rnn.py), in numba-cuda's simulator ---------------------------
@pytest.fixture
def simulated(monkeypatch, tmp_path):
    pytest.importorskip("numba_cuda")
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    monkeypatch.setenv("SPECC_CACHE_DIR", str(tmp_path / "cache"))
    from specc.backends.cuda.runtime import require_cuda

    return require_cuda()


def test_cuda_rnn_tiny_runs_every_cell_and_agrees_with_its_peer(simulated, tmp_path):
    import json

    import cuda_rnn

    assert cuda_rnn.main(["--tiny", "--json", str(tmp_path / "r.json")]) == 0
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["device"]["simulator"] is True
    rows = out["results"]
    assert [(r["cell"], r["peer"]) for r in rows] == [("lstm", "torch.nn.LSTM"), ("gru", "torch.nn.GRU"),
                                                        ("peephole", "torch cell")]
    for r in rows:
        assert len(r["specc_s"]) == 1 and r["specc_skipped"] is None and np.isfinite(r["specc_loss"])
        if "peer_loss" in r:  # torch is installed
            assert r["losses_agree"] and r["grads_agree"] and r["grad_error"] < 1e-4, r
            assert out["device"]["matmul_allow_tf32"] is False and out["device"]["cudnn_allow_tf32"] is False


def test_cuda_rnn_skips_a_shape_over_the_budget(simulated):
    import cuda_rnn

    side, params, x, skipped = cuda_rnn.specc_side("gru", 3, 2, 4, 5, simulated, probe=True, budget=1e-9)
    assert side is None and skipped.startswith("skipped: about ") and "from T = 1, B = 2" in skipped
    assert x.shape == (3, 2, 4) and set(params) == {"h.W_r", "h.W_z", "h.W_n", "h.U_r", "h.U_z", "h.U_n", "h.b_r",
                                                     "h.b_z", "h.b_n", "h.c_n"}


def test_cuda_rnn_options(monkeypatch, capsys):
    import cuda_lstm
    import cuda_rnn

    with pytest.raises(SystemExit):
        cuda_rnn.parse_args(["--cells", "lstm,rnn"])
    assert "unknown cell 'rnn'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cuda_rnn.parse_args(["--shapes", "7"])
    assert "--shapes takes indices 0 to 2" in capsys.readouterr().err
    args = cuda_rnn.parse_args(["--cells", "gru", "--shapes", "2,0"])
    assert args.cells == ["gru"] and args.shape_list == [(50, 256, 512, 1024), (50, 32, 64, 256)]
    calls = []
    monkeypatch.setattr(cuda_rnn, "main", lambda argv: calls.append(argv) or 0)
    assert cuda_lstm.main(["--tiny"]) == 0 and calls == [["--cells", "lstm", "--tiny"]]

