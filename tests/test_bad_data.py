"""Bad data files and settings: one clear error each, never a traceback, never silent garbage.

Each class from issue 12, through the command line (``main(argv)``, exit 1 and one message) or the
Python API: empty batches and zero sizes, damaged or foreign ``.npz``/``.npy`` files, integer labels
outside int32 (checked before the cast), non-finite inputs (named, with the index and the flag that
allows them), a byte-order mark in a CSV header, non-finite or negative settings, and a step whose
update makes the parameters non-finite.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import specc
from specc.cli import main
from specc.errors import ConfigError, InputError, SpeccError
from specc.training import checkpoint
from specc.training.data import load

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
dim B
model tiny(x: f32[B, 4], y: i32[B]) {
  logits = dense(x, 3)
  loss = cross_entropy(logits, y)
  output probs = softmax(logits)
}
train { epochs = 1, batch = 4, val_split = 0 }
"""

SEQ = """\
dim T, B
model seq(x: f32[T, B, 2], y: i32[B]) {
  h = rnn(x, hidden=3)
  loss = cross_entropy(dense(h[-1], 3), y)
}
"""


@pytest.fixture()
def spec(tmp_path) -> Path:
    path = tmp_path / "tiny.nn"
    path.write_text(TINY)
    return path


@pytest.fixture()
def model():
    return specc.compile(TINY, target="interp")


def good(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, 4)).astype(np.float32), "y": rng.integers(0, 3, n)}


def fails(argv, capsys, *needles) -> str:
    """Run the CLI; it must exit 1 with a one-error message (no traceback) holding every needle."""
    code = main([*argv, "--target", "interp"] if argv[0] in ("run", "train") else argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    assert err.count("error:") == 1, err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    return err


# ---- empty data, zero sizes ----------------------------------------------------------------------
def test_empty_batch_in_npz(spec, tmp_path, capsys):
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((0, 4), np.float32), y=np.zeros(0, np.int64))
    for cmd in (["train", str(spec), "--data", str(data), "-o", str(tmp_path / "c.npz")],
                ["run", str(spec), "--data", str(data)]):
        fails(cmd, capsys, "holds no examples")


def test_csv_with_only_a_header(spec, tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("x_0,x_1,x_2,x_3,y\n")
    fails(["train", str(spec), "--data", str(data), "-o", str(tmp_path / "c.npz")], capsys, "holds no examples")


def test_zero_length_sequence(tmp_path, capsys):
    spec = tmp_path / "seq.nn"
    spec.write_text(SEQ)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((0, 5, 2), np.float32), y=np.zeros(5, np.int64))
    fails(["run", str(spec), "--data", str(data)], capsys, "input 'x'", "(T) is 0")
    fails(["train", str(spec), "--data", str(data), "-o", str(tmp_path / "c.npz")], capsys, "(T) is 0")


def test_zero_sizes_through_the_api(model):
    params = model.init_params()
    with pytest.raises(InputError, match="is 0"):
        model.forward(params, x=np.zeros((0, 4), np.float32))


# ---- damaged and foreign files ---------------------------------------------------------------------
def _npz_bytes(tmp_path) -> bytes:
    p = tmp_path / "ok.npz"
    np.savez(p, **good(64))
    return p.read_bytes()


@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "pickle", "bitflip", "object"])
def test_damaged_npz_is_not_valid(spec, tmp_path, capsys, damage):
    data = tmp_path / "d.npz"
    raw = _npz_bytes(tmp_path)
    if damage == "empty":
        data.write_bytes(b"")
    elif damage == "truncated":
        data.write_bytes(raw[: len(raw) // 2])
    elif damage == "random":
        data.write_bytes(os.urandom(2000))
    elif damage == "pickle":
        import pickle

        data.write_bytes(pickle.dumps({"x": 1}))
    elif damage == "bitflip":
        with zipfile.ZipFile(tmp_path / "ok.npz") as z:
            offset = raw.index(z.read("x.npy")[200:216])  # inside x's stored data (np.savez does not compress)
        flipped = bytearray(raw)
        flipped[offset] ^= 0x10
        data.write_bytes(bytes(flipped))
    else:
        with zipfile.ZipFile(data, "w") as z:
            np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
            z.write(tmp_path / "obj.npy", "x.npy")
    for cmd in (["run", str(spec), "--data", str(data)],
                ["train", str(spec), "--data", str(data), "-o", str(tmp_path / "c.npz")]):
        err = fails(cmd, capsys, "not a valid .npz file")
        assert "allow_pickle" not in err and "unsafe" not in err


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'sh",
                                     os.urandom(300)])
def test_damaged_npy_is_not_valid(tmp_path, capsys, content):
    spec = tmp_path / "one.nn"
    spec.write_text("dim B\nmodel one(x: f32[B, 4]) {\n  loss = mean(x * x)\n}\n")
    data = tmp_path / "d.npy"
    data.write_bytes(content)
    err = fails(["run", str(spec), "--data", str(data)], capsys, "not a valid .npy file")
    assert "allow_pickle" not in err


def test_csv_that_is_not_utf8(spec, tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_bytes(b"x_0,x_1,x_2,x_3,y\n1,2,3,\xff,0\n")
    fails(["run", str(spec), "--data", str(data)], capsys, "not UTF-8")


def test_csv_header_with_a_byte_order_mark(model, tmp_path):
    data = tmp_path / "d.csv"
    data.write_bytes("\ufeffy,x_0,x_1,x_2,x_3\n1,0.5,0.25,0,1\n2,1,1,1,1\n".encode())
    d = load(data, model)
    assert d.arrays["y"].tolist() == [1, 2]
    np.testing.assert_allclose(d.arrays["x"][0], [0.5, 0.25, 0, 1])


# ---- integer labels --------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [2**40, -2**40, 2**31, -2**31 - 1])
def test_int64_labels_outside_int32_are_refused_before_the_cast(model, bad):
    d = good()
    d["y"] = d["y"].astype(np.int64)
    d["y"][5] = bad
    with pytest.raises(InputError, match=rf"holds {bad} at index \[5\], outside the range of i32"):
        model.bind_inputs(d)


def test_int64_label_of_2_to_40_through_train(spec, tmp_path, capsys):
    d = good()
    d["y"] = d["y"].astype(np.int64)
    d["y"][0] = 2**40  # 2**40 wraps to 0 in int32: it used to train and report 0%
    data = tmp_path / "d.npz"
    np.savez(data, **d)
    fails(["train", str(spec), "--data", str(data), "-o", str(tmp_path / "c.npz")], capsys, str(2**40), "index [0]")


@pytest.mark.parametrize("cell", ["1e30", "1.5", "nan", "inf", "-3e9"])
def test_csv_label_that_is_not_an_int32_whole_number(spec, tmp_path, capsys, cell):
    data = tmp_path / "d.csv"
    data.write_text(f"x_0,x_1,x_2,x_3,y\n1,2,3,4,0\n1,2,3,4,{cell}\n")
    fails(["train", str(spec), "--data", str(data), "-o", str(tmp_path / "c.npz")], capsys,
          "row 3, column 'y'", "whole numbers within int32")


# ---- non-finite inputs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_is_named_with_its_index(spec, tmp_path, capsys, value):
    d = good()
    d["x"][3, 2] = value
    data = tmp_path / "d.npz"
    np.savez(data, **d)
    for cmd in (["run", str(spec), "--data", str(data)],
                ["train", str(spec), "--data", str(data), "-o", str(tmp_path / "c.npz")]):
        fails(cmd, capsys, "input 'x'", "index [3, 2]", "--allow-nonfinite")
    ck = tmp_path / "ok.npz"
    np.savez(tmp_path / "clean.npz", **good())
    assert main(["train", str(spec), "--data", str(tmp_path / "clean.npz"), "-o", str(ck), "--quiet",
                 "--target", "interp"]) == 0
    fails(["eval", str(spec), "--params", str(ck), "--data", str(data)], capsys, "input 'x'", "index [3, 2]")
    # allowed on purpose: run goes on (the outputs hold NaN, as asked)
    assert main(["run", str(spec), "--data", str(data), "--allow-nonfinite", "--target", "interp"]) == 0


def test_float64_input_that_overflows_float32(model):
    d = good()
    d["x"] = d["x"].astype(np.float64)
    d["x"][1, 0] = 1e300
    with pytest.raises(InputError, match=r"index \[1, 0\] \(the value 1e\+300 does not fit in f32\)"):
        model.bind_inputs(d)


def test_csv_nan_cell_is_named(spec, tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("x_0,x_1,x_2,x_3,y\n1,2,3,4,0\n1,nan,3,4,1\n")
    fails(["run", str(spec), "--data", str(data)], capsys, "input 'x'", "index [1, 1]")


# ---- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("option,value", [("--lr", "inf"), ("--lr", "nan"), ("--lr", "-0.1"), ("--lr", "0"),
                                          ("--clip", "inf"), ("--clip", "-1"), ("--weight-decay", "nan"),
                                          ("--weight-decay", "-1"), ("--val-split", "nan"), ("--epochs", "-1"),
                                          ("--batch", "0"), ("--seed", "-5")])
def test_bad_setting_is_refused(spec, tmp_path, capsys, option, value):
    np.savez(tmp_path / "d.npz", **good())
    err = fails(["train", str(spec), "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "c.npz"),
                 option, value], capsys, "training setting", "(from the command line: ")
    assert not (tmp_path / "c.npz").exists()
    assert "Traceback" not in err


@pytest.mark.parametrize("item", ["lr = -1", "lr = 1e999", "momentum = 1", "gamma = 0"])
def test_bad_setting_in_the_spec_points_at_it(item):
    with pytest.raises(ConfigError) as e:
        specc.compile(TINY.replace("val_split = 0", f"val_split = 0, {item}"), target="interp")
    assert e.value.span is not None and e.value.span.line == 7


def test_update_that_makes_parameters_nonfinite_stops_the_run(spec, tmp_path, capsys):
    """Loss and gradients finite, the update overflows: exit 1, no checkpoint of NaN is ever written."""
    np.savez(tmp_path / "d.npz", **good(16))
    ck = tmp_path / "c.npz"
    err = fails(["train", str(spec), "--data", str(tmp_path / "d.npz"), "-o", str(ck), "--optimizer", "sgd",
                 "--lr", "1e300", "--quiet"], capsys, "after the optimizer's update", "learning rate 1e+300")
    assert "RuntimeWarning" not in err
    assert not ck.exists()


def test_no_checkpoint_with_nonfinite_parameters_is_saved(model, tmp_path):
    """Whatever the path to it (here a parameter overflowing on the GPU path's host copy): _save refuses."""
    from specc.training.nanguard import NonFiniteError
    from specc.training.train import Trainer

    trainer = Trainer(model, good(), checkpoint=tmp_path / "c.npz", progress=False)
    params = model.init_params()
    params[next(iter(params))][0, 0] = np.inf
    from specc.training.train import History

    with pytest.raises(NonFiniteError, match="not saving epoch 0"):
        trainer._save(params, trainer.optimizer.init(params), History("tiny", {}))
    assert not (tmp_path / "c.npz").exists()


def test_json_summary_still_works_after_checks(spec, tmp_path, capsys):
    np.savez(tmp_path / "d.npz", **good())
    assert main(["train", str(spec), "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "c.npz"), "--quiet",
                 "--json", "--target", "interp"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(out)["epochs"] == 1
    assert checkpoint.load(tmp_path / "c.npz").epoch == 1
    with pytest.raises(SpeccError):
        specc.compile(TINY.replace("epochs = 1", "epochs = 0"), target="interp")
