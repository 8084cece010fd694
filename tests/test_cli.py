"""The command line through its entry point, main(argv)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from specc.cli import main

GOOD = """
dim T, B
model classify(x: f32[T, B, 8], y: i32[B]) {
  h = lstm(x, hidden=16)
  logits = dense(h[-1], 10)
  loss = cross_entropy(logits, y)
  output probs = softmax(logits)
  train { optimizer = sgd, lr = 0.1, epochs = 3, batch = 16 }
}
"""

BAD = """
dim B
model m(x: f32[B, 8], y: i32[B]) {
  logits = dense(x, 10)
  loss = cross_entropy(logtis, y)
}
"""


@pytest.fixture
def spec(tmp_path):
    def write(text, name="m.nn"):
        p = tmp_path / name
        p.write_text(text)
        return str(p)

    return write


def test_check_summarises_model(spec, capsys):
    assert main(["check", spec(GOOD)]) == 0
    out = capsys.readouterr().out
    assert "ok: model classify" in out
    assert "x: f32[T, B, 8]" in out and "probs: f32[B, 10]" in out
    assert "h.W_f" in out and "[24, 16]" in out
    assert "10 tensors, 1,770 numbers" in out
    assert "states c (lag 1), h (lag 1)" in out
    assert "sgd, lr 0.1, 3 epochs, batch 16" in out


def test_check_bad_spec_exit_1_no_traceback(spec, capsys):
    path = spec(BAD)
    assert main(["check", path]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:5:24: error: unknown name 'logtis'")
    assert "^^^^^^" in err and "did you mean 'logits'?" in err
    assert "Traceback" not in err


def test_missing_file_is_an_error_not_a_traceback(capsys):
    assert main(["check", "no/such/file.nn"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_ir_prints_and_exports_json(spec, capsys):
    path = spec(GOOD)
    assert main(["ir", path]) == 0
    text = capsys.readouterr().out
    assert "scan[" in text and "cross_entropy" in text
    assert main(["ir", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "classify"
    assert [i["name"] for i in data["inputs"]] == ["x", "y"]


def test_run_random_and_saved_outputs(spec, tmp_path, capsys):
    out = tmp_path / "out.npz"
    assert main(["run", spec(GOOD), "--dim", "T=5", "--dim", "B=3", "-o", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["outputs"]["probs"] == [3, 10]
    assert np.isfinite(summary["loss"])
    with np.load(out) as f:
        assert f["probs"].shape == (3, 10)
        np.testing.assert_allclose(f["probs"].sum(axis=1), 1.0, rtol=1e-5)


def test_run_with_data_file_checks_shapes(spec, tmp_path, capsys):
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((4, 2, 7), np.float32), y=np.zeros(2, np.int32))
    assert main(["run", spec(GOOD), "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert "input 'x' has shape (4, 2, 7), expected f32[T, B, 8]" in err


def test_help_has_examples(capsys):
    for cmd in ("check", "ir", "run", "bench"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "example" in capsys.readouterr().out


def test_python_dash_m_works(spec):
    r = subprocess.run([sys.executable, "-m", "specc", "check", spec(GOOD)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ok: model classify" in r.stdout


def test_gradcheck_passes_on_a_good_spec(spec, capsys):
    assert main(["gradcheck", spec(GOOD), "--dim", "T=3", "--dim", "B=2"]) == 0
    out = capsys.readouterr().out
    assert "10/10 gradients agree" in out


def test_gradcheck_names_the_parameter_of_a_wrong_rule(spec, capsys, monkeypatch):
    from specc.ops import REGISTRY

    monkeypatch.setattr(REGISTRY["tanh"], "vjp", lambda g, e, cts, need: [cts[0]])  # a wrong rule
    path = spec(GOOD)
    assert main(["gradcheck", path]) == 1
    captured = capsys.readouterr()
    assert "BAD" in captured.out
    assert "error: the gradient of 'h." in captured.err
    assert "std.nn" in captured.err  # points at the parameter's declaration


def test_ir_backward_shows_the_reverse_scan_and_what_is_saved(spec, capsys):
    assert main(["ir", spec(GOOD), "--backward"]) == 0
    out = capsys.readouterr().out
    assert out.count("= scan[") == 2
    assert "reverse=True" in out
    assert "d_h.W_f" in out
    assert "saves per step only its states (c: f32[B, 16], h: f32[B, 16])" in out


def test_labels_out_of_range_are_an_input_error(spec):
    import specc
    from specc.errors import InputError

    m = specc.compile(spec(GOOD))
    x = np.zeros((3, 2, 8), np.float32)
    with pytest.raises(InputError, match=r"input 'y' holds class id 10, outside \[0, 10\)"):
        m.forward(m.init_params(0), x=x, y=np.array([1, 10]))
    with pytest.raises(InputError, match="class id -1"):
        m.value_and_grad(m.init_params(0), x=x, y=np.array([-1, 0]))


def test_bench_times_forward_and_training_step(spec, capsys):
    path = spec(GOOD)
    assert main(["bench", path, "--dim", "T=5", "--dim", "B=4", "--repeats", "2", "--json", "--target", "interp"]) == 0
    out = capsys.readouterr().out
    assert "classify on interp (float32, B=4, T=5" in out and "forward" in out and "train step" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["dims"] == {"B": 4, "T": 5} and summary["repeats"] == 2
    for kind in ("forward", "train step"):
        assert 0 < summary[kind]["min_ms"] <= summary[kind]["median_ms"] and summary[kind]["first_call_s"] > 0


def test_bench_rejects_an_unknown_dim_and_no_repeats(spec, capsys):
    path = spec(GOOD)
    assert main(["bench", path, "--dim", "X=3", "--target", "interp"]) == 1
    err = capsys.readouterr().err
    assert "--dim X: model classify has no free dim of that name (its inputs' dims: B, T)" in err
    assert "Traceback" not in err
    assert main(["bench", path, "--repeats", "0", "--target", "interp"]) == 1
    assert "--repeats must be at least 1" in capsys.readouterr().err
