"""After training: predict (CLI and Python, .csv and .npz), run -o by extension, early stopping and the
best checkpoint, callbacks that stop, warm-up and reduce-on-plateau, the CSV and TensorBoard logs,
training accuracy beside validation accuracy, compile feedback."""

import csv
import json
import math

import numpy as np
import pytest

import specc
from specc.cli import main
from specc.errors import ConfigError, InputError
from specc.training import checkpoint, data, optim
from specc.training.callbacks import Monitor, StopTraining, best_path
from specc.training.config import TrainConfig
from specc.training.predict import csv_columns, predict, write_outputs
from specc.training.train import EpochRecord, Trainer


@pytest.fixture(scope="module")
def mlp():
    return specc.compile("specs/mlp.nn")


@pytest.fixture(scope="module")
def small(mlp):
    return data.load_dataset("digits", mlp).train.take(np.arange(200))


def fit(model, dataset, **kw):
    return Trainer(model, dataset, **{"epochs": 2, "batch": 32, "progress": False, **kw}).fit()


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


# ---- predict ----------------------------------------------------------------------------------
def test_predict_labels_are_the_argmax_of_the_probabilities(mlp, small):
    params = mlp.init_params(3)
    preds = predict(mlp, params, small, batch=64)
    assert preds.kind == "classification" and list(preds.arrays) == ["label", "probs"]
    probs = mlp.forward(params, x=small.arrays["x"])["probs"]
    np.testing.assert_array_equal(preds.arrays["probs"], probs)
    np.testing.assert_array_equal(preds.arrays["label"], np.argmax(probs, axis=1))
    assert len(preds) == 200


def test_predict_a_time_major_model_puts_examples_first():
    lstm = specc.compile("specs/lstm.nn")
    ds = data.load_dataset("digits", lstm).train.take(np.arange(7))
    assert ds.arrays["x"].shape == (8, 7, 8)  # [T, B, 8]
    preds = predict(lstm, lstm.init_params(0), ds, batch=3)
    assert preds.arrays["probs"].shape == (7, 10) and preds.arrays["label"].shape == (7,)


def test_predict_a_reconstruction_model():
    ae = specc.compile("specs/autoencoder.nn")
    ds = data.load_dataset("digits", ae).train.take(np.arange(5))
    preds = predict(ae, ae.init_params(0), ds)
    assert preds.kind == "reconstruction" and "label" not in preds.arrays
    out = next(iter(preds.arrays.values()))
    assert out.shape[0] == 5


def test_csv_writer_header_and_rows(tmp_path):
    arrays = {"label": np.array([2, 0]), "probs": np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]], np.float32),
              "img": np.zeros((2, 2, 2))}
    write_outputs(tmp_path / "p.csv", arrays)
    header, rows = read_csv(tmp_path / "p.csv")
    assert header == ["label", "probs_0", "probs_1", "probs_2", "img_0_0", "img_0_1", "img_1_0", "img_1_1"]
    assert rows[0][:4] == ["2", "0.1", "0.2", "0.7"] and len(rows) == 2
    assert csv_columns("loss", ()) == ["loss"]


def test_an_unknown_output_extension_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"unknown format '\.txt'"):
        write_outputs(tmp_path / "p.txt", {"a": np.zeros(2)})
    assert not list(tmp_path.iterdir())


def test_predict_cli_csv_and_npz(tmp_path, capsys, mlp):
    params = tmp_path / "p.npz"
    np.savez(params, **mlp.init_params(1))
    x = np.random.default_rng(0).random((6, 64)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)  # no labels: predict does not need them
    assert main(["predict", "specs/mlp.nn", "--params", str(params), "--data", str(tmp_path / "d.npz"),
                 "-o", str(tmp_path / "out.csv")]) == 0
    header, rows = read_csv(tmp_path / "out.csv")
    probs = mlp.forward(mlp.init_params(1), x=x)["probs"]
    assert header[0] == "label" and len(header) == 11 and len(rows) == 6
    assert [int(r[0]) for r in rows] == list(np.argmax(probs, axis=1))
    np.testing.assert_allclose(np.array([[float(c) for c in r[1:]] for r in rows]), probs, rtol=1e-6)
    assert main(["predict", "specs/mlp.nn", "--params", str(params), "--data", str(tmp_path / "d.npz"),
                 "-o", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as f:
        np.testing.assert_array_equal(f["probs"], probs)
    assert "predicted classes" in capsys.readouterr().out


def test_run_writes_csv_when_asked_for_csv(tmp_path, capsys):
    out = tmp_path / "preds.csv"
    assert main(["run", "specs/mlp.nn", "--dim", "B=3", "-o", str(out)]) == 0
    assert out.is_file() and not (tmp_path / "preds.csv.npz").exists()
    header, rows = read_csv(out)
    assert header[:2] == ["probs_0", "probs_1"] and len(rows) == 3  # the scalar loss stays out of the rows
    assert f"to {out}" in capsys.readouterr().out
    assert main(["run", "specs/mlp.nn", "-o", str(tmp_path / "preds.txt")]) == 1
    assert "unknown format '.txt'" in capsys.readouterr().err


# ---- early stopping, best checkpoint, callbacks ----------------------------------------------------
def rec(epoch, val_loss=None, acc=None, train_loss=1.0):
    val = {} if val_loss is None else {"loss": val_loss, **({"accuracy": acc} if acc is not None else {})}
    return EpochRecord(epoch, 0.1, train_loss, val, 1.0, 1.0, 1.0)


def test_monitor_replay_and_modes(mlp):
    from specc.training.metrics import choose_metric

    m = Monitor.from_config(TrainConfig(monitor="val_accuracy"), choose_metric(mlp))
    assert m.higher_is_better
    records = [rec(1, 1.0, 0.5), rec(2, 0.9, 0.7), rec(3, 0.8, 0.6), rec(4, 0.7, 0.65)]
    assert m.replay(records) == (0.7, 2, 2)
    loss = Monitor.from_config(TrainConfig(), choose_metric(mlp))
    assert not loss.higher_is_better and loss.replay(records) == (0.7, 4, 0)
    delta = Monitor.from_config(TrainConfig(min_delta=0.15), choose_metric(mlp))
    assert delta.replay(records)[1:] == (3, 1)  # 0.9 and 0.7 are within 0.15 of the best before them
    with pytest.raises(ConfigError, match="no metric 'mse'"):
        Monitor.from_config(TrainConfig(monitor="val_mse"), choose_metric(mlp))


def test_best_path_is_named_after_the_checkpoint(tmp_path):
    assert best_path("runs/lstm.ckpt.npz").as_posix() == "runs/lstm.best.ckpt.npz"
    assert best_path("m.npz").name == "m.best.npz"
    assert best_path("m.ckpt.safetensors").name == "m.best.ckpt.safetensors"


def test_early_stopping_keeps_the_best_checkpoint_and_still_tests(mlp, tmp_path):
    splits = data.load_dataset("digits", mlp)
    small = data.Splits(splits.train.take(np.arange(200)), splits.test.take(np.arange(50)))
    ckpt = tmp_path / "m.ckpt.npz"
    # lr this high makes the validation loss bounce: patience 1 stops at the first epoch that is worse
    h = fit(mlp, small, epochs=30, lr=0.5, optimizer="sgd", patience=1, checkpoint=ckpt)
    vals = [r.val["loss"] for r in h.records]
    assert len(h.records) < 30 and h.stopped and "did not improve" in h.stopped
    assert vals[-1] >= min(vals[:-1])
    assert h.best_epoch == 1 + int(np.argmin(vals))
    assert h.test is not None  # the end of the run still happens
    best = checkpoint.load(tmp_path / "m.best.ckpt.npz")
    assert best.epoch == h.best_epoch
    for k, v in checkpoint.load(ckpt).params.items():
        assert v.shape == best.params[k].shape
    # the best checkpoint's parameters give the best validation loss recorded
    from specc.training.metrics import choose_metric, evaluate

    train, val = small.train.split(0.2, 0)
    got = evaluate(mlp, best.params, val, choose_metric(mlp))["loss"]
    assert got == pytest.approx(min(vals), rel=1e-6)
    # resuming the stopped run keeps its early-stopping state: it stays stopped
    again = Trainer(mlp, small, resume=ckpt, epochs=30, progress=False).fit()
    assert len(again.records) == len(h.records) and again.stopped and again.best_epoch == h.best_epoch


def test_resume_replays_patience_across_the_break(mlp, small, tmp_path):
    ckpt = tmp_path / "r.npz"
    whole = fit(mlp, small, epochs=12, lr=0.5, optimizer="sgd", patience=2)
    fit(mlp, small, epochs=3, lr=0.5, optimizer="sgd", patience=2, checkpoint=ckpt)
    resumed = Trainer(mlp, small, resume=ckpt, epochs=12, progress=False).fit()
    assert [r.val["loss"] for r in resumed.records] == [r.val["loss"] for r in whole.records]
    assert resumed.stopped == whole.stopped


def test_a_callback_stops_training_cleanly(mlp, small, tmp_path):
    seen = []

    def stop_at_2(r):
        seen.append(r.epoch)
        return r.epoch == 2

    h = fit(mlp, small, epochs=5, on_epoch=stop_at_2, checkpoint=tmp_path / "c.npz")
    assert seen == [1, 2] and len(h.records) == 2 and "stop_at_2" in h.stopped
    assert checkpoint.load(tmp_path / "c.npz").meta["stopped"] == h.stopped

    def raiser(r):
        raise StopTraining("enough")

    h = fit(mlp, small, epochs=5, on_epoch=[lambda r: None, raiser])
    assert len(h.records) == 1 and h.stopped == "enough"


def test_patience_on_validation_without_a_validation_split_is_an_error(mlp, small):
    with pytest.raises(InputError, match="no validation split"):
        Trainer(mlp, small, epochs=2, val_split=0.0, patience=2, progress=False)
    fit(mlp, small, val_split=0.0, patience=1, monitor="train_loss")  # fine


def test_train_block_takes_the_new_keys():
    m = specc.compile("dim B\nmodel m(x: f32[B, 4], y: i32[B]) {\n  loss = cross_entropy(dense(x, 3), y)\n"
                      "  output p = softmax(dense(x, 3))\n}\n"
                      "train { patience = 3, monitor = val_accuracy, schedule = plateau, warmup = 2 }\n")
    c = m.train_config()
    assert (c.patience, c.monitor, c.schedule, c.warmup) == (3, "val_accuracy", "plateau", 2)
    with pytest.raises(ConfigError, match="monitor"):
        specc.compile("dim B\nmodel m(x: f32[B, 4]) {\n  loss = mean(x)\n}\ntrain { monitor = val_acc }\n")


# ---- schedules ---------------------------------------------------------------------------------
def test_warmup_rises_linearly_then_follows_the_schedule():
    c = TrainConfig(lr=0.1, warmup=2)
    assert [optim.learning_rate(c, k, 5) for k in (0, 4, 9, 10, 50)] == pytest.approx([0.01, 0.05, 0.1, 0.1, 0.1])
    cos = TrainConfig(lr=0.1, warmup=1, schedule="cosine", epochs=4)
    assert optim.learning_rate(cos, 1, 4) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 16)) * 2 / 4)


def test_reduce_on_plateau_replays_the_history():
    lower = lambda a, b: a < b  # noqa: E731
    assert optim.plateau_scale([1.0, 0.9, 0.8], lower, 1, 0.5) == 1.0
    assert optim.plateau_scale([1.0, 1.1, 1.2], lower, 1, 0.5) == 0.5  # 2 bad epochs > patience 1
    assert optim.plateau_scale([1.0, 1.1, 1.2, 1.3, 1.4], lower, 1, 0.5) == 0.25
    assert optim.plateau_scale([1.0, None, float("nan"), 1.1], lower, 1, 0.5) == 1.0
    c = TrainConfig(lr=0.1, schedule="plateau", min_lr=0.02)
    assert optim.learning_rate(c, 7, 3, 0.5) == pytest.approx(0.05)
    assert optim.learning_rate(c, 7, 3, 0.01) == pytest.approx(0.02)


def test_plateau_lowers_the_lr_in_a_run(mlp, small):
    h = fit(mlp, small, epochs=8, lr=0.5, optimizer="sgd", schedule="plateau", plateau_patience=1, gamma=0.5)
    lrs = [r.lr for r in h.records]
    assert lrs[0] == 0.5 and min(lrs) < 0.5 and all(b <= a for a, b in zip(lrs, lrs[1:]))


# ---- logs -----------------------------------------------------------------------------------------
def test_train_accuracy_beside_validation_accuracy_and_csv_log(mlp, small, tmp_path):
    log = tmp_path / "log.csv"
    h = fit(mlp, small, epochs=3, log_csv=log)
    assert all(0 <= r.train["accuracy"] <= 1 for r in h.records)
    assert "train_accuracy" in h.final() and "val_accuracy" in h.final()
    header, rows = read_csv(log)
    assert header[:6] == ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    assert float(rows[2][3]) == pytest.approx(h.records[2].train["accuracy"], rel=1e-5)


def test_tensorboard_event_files(mlp, small, tmp_path):
    pytest.importorskip("tensorboardX")
    fit(mlp, small, epochs=2, tensorboard=tmp_path / "tb")
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1
    from tensorboardX.proto.event_pb2 import Event

    raw, scalars = files[0].read_bytes(), {}
    while raw:  # TFRecord framing: length (8 bytes), its crc (4), the record, its crc (4)
        n = int.from_bytes(raw[:8], "little")
        event = Event.FromString(raw[12:12 + n])
        for v in event.summary.value:
            scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
        raw = raw[16 + n:]
    assert [s for s, _v in scalars["loss/train"]] == [1, 2]
    assert {"loss/val", "accuracy/val", "accuracy/train", "lr"} <= set(scalars)


def test_tensorboard_missing_is_a_clear_message(mlp, small, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tbx(name, *a, **kw):
        if name.startswith("tensorboardX"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tbx)
    with pytest.raises(InputError, match=r"specc\[tensorboard\]"):
        Trainer(mlp, small, tensorboard=tmp_path / "tb", progress=False)


def test_train_cli_patience_log_csv_and_json(tmp_path, capsys):
    ckpt = tmp_path / "m.ckpt.npz"
    assert main(["train", "specs/mlp.nn", "--dataset", "digits", "--epochs", "3", "--batch", "128",
                 "--patience", "5", "--monitor", "val_accuracy", "--warmup", "2", "--log-csv",
                 str(tmp_path / "log.csv"), "-o", str(ckpt), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["best_checkpoint"] == str(tmp_path / "m.best.ckpt.npz")
    assert (tmp_path / "m.best.ckpt.npz").is_file() and (tmp_path / "log.csv").is_file()
    assert summary["history"][0]["lr"] == pytest.approx(0.0005)  # half way through the warm-up (lr 0.001)
    assert main(["eval", "specs/mlp.nn", "--params", str(tmp_path / "m.best.ckpt.npz"), "--dataset", "digits"]) == 0


# ---- first-epoch feedback ---------------------------------------------------------------------------
def test_compiling_is_announced_and_kept_out_of_epoch_1(small, tmp_path):
    from rich.console import Console

    model = specc.compile("specs/mlp.nn", target="cpu")
    assert model.pending_kernels() == ["grad", "forward"]
    console = Console(file=open(tmp_path / "out.txt", "w"), width=120)
    h = Trainer(model, small, epochs=1, batch=32, console=console).fit()
    console.file.close()
    text = (tmp_path / "out.txt").read_text()
    assert "2 kernels ready in" in text and "not counted in epoch 1" in text
    assert model.pending_kernels() == [] and h.compile_seconds > 0
    assert h.records[0].seconds < h.compile_seconds  # the epoch's clock did not include compiling
    assert specc.compile("specs/mlp.nn", target="interp").pending_kernels() == []


# ---- Jupyter ---------------------------------------------------------------------------------------
def test_model_and_history_reprs(mlp, small):
    lstm = specc.compile("specs/lstm.nn")
    text = repr(lstm)
    assert text.startswith("<specc.Model classify(x: f32[T, B, 8], y: i32[B]) -> loss, probs; 10 params")
    assert "19,338 numbers" in text and "1 recurrence" in text
    page = lstm._repr_html_()
    for part in ("inputs", "outputs", "parameters", "recurrences", "h.W_f [72, 64]", "over T steps (c, h)"):
        assert part in page
    assert "recurrences</th><td style='text-align:left'>none" in mlp._repr_html_()
    h = fit(mlp, small, epochs=2, patience=5)
    assert repr(h).startswith("<specc.History classify: 2 epochs; best epoch") and "val_accuracy" in repr(h)
    page = h._repr_html_()
    assert page.count("<tr><td>") == 2 and "train accuracy" in page and "val accuracy" in page


def test_html_escapes_names_from_the_spec():
    from specc.display import _table

    assert "&lt;b&gt;" in _table("t", [("<b>", "x")]) and "<b>" not in _table("t", [("<b>", "x")]).split("</caption>")[1]


def test_plots_without_matplotlib_fail_before_training(mlp, small, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(InputError, match=r"specc\[plots\]"):
        Trainer(mlp, small, plots=tmp_path, progress=False)


def test_the_readme_predict_line_reads_the_shipped_sample(tmp_path, capsys):
    lstm = specc.compile("specs/lstm.nn")
    np.savez(tmp_path / "p.npz", **lstm.init_params(0))
    assert main(["predict", "specs/lstm.nn", "--params", str(tmp_path / "p.npz"), "--data",
                 "examples/digits_sample.csv", "-o", str(tmp_path / "preds.csv")]) == 0
    header, rows = read_csv(tmp_path / "preds.csv")
    assert header[:2] == ["label", "probs_0"] and len(rows) == 10
    sample = data.load("examples/digits_sample.csv", lstm)
    assert sample.arrays["x"].shape == (8, 10, 8) and list(sample.arrays["y"]) == list(range(10))


def test_run_help_names_the_compiled_kernels():
    import argparse

    from specc.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["run"].format_help()
    assert "compiled kernels" in text and "(reference interpreter)" not in text


def test_predict_keeps_integer_inputs_that_are_not_the_labels():
    m = specc.compile("dim B\nmodel m(ids: i32[B], x: f32[B, 3], y: i32[B]) {\n"
                      "  h = embedding(ids, vocab=5, size=3) + x\n  logits = dense(h, 4)\n"
                      "  loss = cross_entropy(logits, y)\n  output probs = softmax(logits)\n}\n", target="interp")
    rng = np.random.default_rng(0)
    arrays = {"ids": rng.integers(0, 5, 6), "x": rng.random((6, 3)), "y": rng.integers(0, 4, 6)}
    preds = predict(m, m.init_params(0), data.dataset(m, arrays))
    assert preds.arrays["probs"].shape == (6, 4) and preds.kind == "classification"
