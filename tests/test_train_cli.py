"""specc train / eval / run with data files and checkpoints, through main(argv)."""

import json

import numpy as np
import pytest

from specc.cli import main


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_then_eval_then_run(tmp_path, capsys):
    ckpt = tmp_path / "mlp.ckpt.npz"
    assert main(["train", "specs/mlp.nn", "--dataset", "digits", "--epochs", "2", "--batch", "128",
                 "--optimizer", "sgd", "--lr", "0.5", "-o", str(ckpt), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and summary["checkpoint"] == str(ckpt)
    assert summary["final"]["test_accuracy"] > 0.5 and summary["history"][0]["lr"] == 0.5
    assert "test accuracy" in captured.out and "epoch 2/2" in captured.err  # table on stdout, progress on stderr

    assert main(["eval", "specs/mlp.nn", "--params", str(ckpt), "--dataset", "digits", "--json"]) == 0
    ev = last_json(capsys)
    assert ev["examples"] == 359 and ev["accuracy"] == summary["final"]["test_accuracy"]

    x = np.random.default_rng(0).random((5, 64))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    assert main(["run", "specs/mlp.nn", "--data", str(tmp_path / "x.npy"), "--params", str(ckpt),
                 "-o", str(out), "--json"]) == 0
    assert last_json(capsys)["outputs"] == {"probs": [5, 10]}
    with np.load(out) as f:
        assert f["probs"].shape == (5, 10)


def test_cli_overrides_the_train_block_and_resume(tmp_path, capsys):
    ckpt = tmp_path / "c.npz"
    args = ["train", "specs/mlp.nn", "--dataset", "digits", "--batch", "256", "--quiet", "-o", str(ckpt), "--json"]
    assert main(args + ["--epochs", "1"]) == 0
    first = last_json(capsys)
    assert first["epochs"] == 1 and capsys.readouterr().err == ""
    assert main(args + ["--epochs", "2", "--resume", str(ckpt)]) == 0
    resumed = last_json(capsys)
    assert resumed["epochs"] == 2 and resumed["history"][0] == first["history"][0]


def test_eval_with_a_checkpoint_of_another_spec(tmp_path, capsys):
    ckpt = tmp_path / "mlp.npz"
    assert main(["train", "specs/mlp.nn", "--dataset", "digits", "--epochs", "1", "--quiet", "-o", str(ckpt)]) == 0
    assert main(["eval", "specs/lstm.nn", "--params", str(ckpt), "--dataset", "digits"]) == 1
    err = capsys.readouterr().err
    assert "has no parameter" in err and "Traceback" not in err


def test_train_on_csv_and_bad_data_messages(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.random((40, 64))
    y = (x[:, 0] > 0.5).astype(int)
    rows = ["y," + ",".join(f"x_{j}" for j in range(64))]
    rows += [f"{y[i]}," + ",".join(f"{v:.4f}" for v in x[i]) for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    assert main(["train", "specs/mlp.nn", "--data", str(tmp_path / "d.csv"), "--epochs", "1", "--quiet",
                 "-o", str(tmp_path / "c.npz"), "--json"]) == 0
    assert last_json(capsys)["final"]["val_accuracy"] >= 0
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 63)), y=np.zeros(4, int))
    assert main(["train", "specs/mlp.nn", "--data", str(tmp_path / "bad.npz"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "input 'x' has shape (4, 63), expected f32[B, 64]" in err and "bad.npz" in err


def test_train_needs_data(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "specs/mlp.nn"])
    assert e.value.code == 2
    assert "one of the arguments --data --dataset is required" in capsys.readouterr().err


def test_grad_flow_and_plots(tmp_path, capsys):
    plots = tmp_path / "plots"
    assert main(["train", "specs/rnn.nn", "--dataset", "digits", "--epochs", "1", "--batch", "256",
                 "--grad-flow", "--plots", str(plots), "-o", str(tmp_path / "c.npz"), "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert "gradient flow before training" in out and "||dL/dh_0|| / ||dL/dh_T-1||" in out
    assert len(summary["grad_flow"]["after"]["h"]) == 8
    for kind in ("curves", "grad_flow"):
        assert (plots / f"rnn_{kind}.png").read_bytes()[:4] == b"\x89PNG"


def test_autoencoder_saves_reconstructions(tmp_path, capsys):
    plots = tmp_path / "p"
    assert main(["train", "specs/autoencoder.nn", "--dataset", "digits", "--epochs", "1", "--quiet",
                 "--plots", str(plots), "-o", str(tmp_path / "c.npz"), "--json"]) == 0
    summary = last_json(capsys)
    assert summary["metric"] == "mse" and summary["files"]["reconstructions"].endswith("autoencoder_reconstructions.png")
    assert (plots / "autoencoder_reconstructions.png").stat().st_size > 1000


def test_help_has_examples(capsys):
    for cmd in ("train", "eval"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "example" in capsys.readouterr().out
