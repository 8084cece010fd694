"""Damaged, foreign and mismatched checkpoints: one clear error saying exactly what is wrong.

Each class from issue 12, through ``--resume`` and ``eval --params``: a truncated, bit-flipped or
empty file, metadata without ``config``, an unknown history key, a missing optimizer slot, a slot of
the wrong shape, integer or non-finite parameters.  Plus: temporary files of an interrupted write are
removed by the next run, and resuming a checkpoint saved from different spec text says which
settings win even with ``--quiet``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from specc.cli import main
from specc.errors import InputError
from specc.training import checkpoint

TINY = """\
dim B
model tiny(x: f32[B, 4], y: i32[B]) {
  logits = dense(x, 3)
  loss = cross_entropy(logits, y)
}
train { epochs = 1, batch = 4, val_split = 0, lr = 0.01 }
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A spec, its data and a checkpoint of one epoch (adam: slots m and v)."""
    d = tmp_path_factory.mktemp("ckpt")
    spec, data, ck = d / "tiny.nn", d / "d.npz", d / "good.npz"
    spec.write_text(TINY)
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.standard_normal((8, 4)).astype(np.float32), y=rng.integers(0, 3, 8))
    assert main(["train", str(spec), "--data", str(data), "-o", str(ck), "--quiet", "--target", "interp"]) == 0
    return spec, data, ck


def _arrays(ck: Path) -> dict[str, np.ndarray]:
    with np.load(ck, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _with_meta(arrays, change):
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    return {**arrays, "meta": np.array(json.dumps(meta))}


def _both_fail(trained, bad: Path, capsys, *needles) -> None:
    spec, data, _ = trained
    for argv in (["train", str(spec), "--data", str(data), "--resume", str(bad), "-o", str(bad.parent / "out.npz"),
                  "--quiet", "--epochs", "2", "--target", "interp"],
                 ["eval", str(spec), "--params", str(bad), "--data", str(data)]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 1, (argv[0], err)
        assert "Traceback" not in err and err.count("error:") == 1, err
        for n in needles:
            assert n in err, (argv[0], n, err)


def _damage(trained, tmp_path, name, how):
    raw = trained[2].read_bytes()
    bad = tmp_path / f"{name}.npz"
    if how == "truncated":
        bad.write_bytes(raw[: len(raw) * 2 // 3])
    elif how == "empty":
        bad.write_bytes(b"")
    elif how == "bitflip":
        with zipfile.ZipFile(trained[2]) as z:
            payload = z.read("param/logits.W.npy")
        offset = raw.index(payload[-12:])
        flipped = bytearray(raw)
        flipped[offset + 3] ^= 0x01
        bad.write_bytes(bytes(flipped))
    return bad


@pytest.mark.parametrize("how,needle", [("truncated", "not a valid .npz file"), ("empty", "the file is empty"),
                                        ("bitflip", "CRC-32 check failed")])
def test_damaged_file(trained, tmp_path, capsys, how, needle):
    bad = _damage(trained, tmp_path, how, how)
    _both_fail(trained, bad, capsys, "not a valid .npz file", needle)


CASES = {
    "no_config": (lambda a: _with_meta(a, lambda m: m.pop("config")), "metadata 'config': field required"),
    "history_not_numbers": (lambda a: _with_meta(a, lambda m: m["history"][0].update(train_loss="x")),
                            "history record 1 holds a value that is not a number"),
    "bad_config_value": (lambda a: _with_meta(a, lambda m: m["config"].update(lr=-1)), "metadata 'config.lr'"),
    "meta_not_json": (lambda a: {**a, "meta": np.array("{not json")}, "'meta' is not valid JSON"),
    "meta_not_string": (lambda a: {**a, "meta": np.zeros(3)}, "'meta' is an array of float64"),
    "other_format": (lambda a: _with_meta(a, lambda m: m.update(format="x/9")), "checkpoint format 'x/9'"),
    "missing_slot_array": (lambda a: {k: v for k, v in a.items() if k != "opt/m/logits.W"},
                           "optimizer slot 'm' has no array for parameter 'logits.W'"),
    "wrong_slot_shape": (lambda a: {**a, "opt/v/logits.b": np.zeros(7, np.float32)},
                         "optimizer slot 'v' of 'logits.b' has shape [7], but the parameter has [3]"),
    "int64_param": (lambda a: {**a, "param/logits.W": a["param/logits.W"].astype(np.int64)},
                    "array 'param/logits.W' has dtype int64"),
    "nan_param": (lambda a: {**a, "param/logits.b": np.array([0, np.nan, 0], np.float32)},
                  "array 'param/logits.b' holds nan at index [1]"),
    "inf_slot": (lambda a: {**a, "opt/m/logits.b": np.array([0, 0, np.inf], np.float32)},
                 "array 'opt/m/logits.b' holds inf at index [2]"),
    "strange_array": (lambda a: {**a, "extra": np.zeros(2)}, "it holds an array 'extra'"),
    "no_params": (lambda a: {k: v for k, v in a.items() if not k.startswith("param/") and not k.startswith("opt/")},
                  "it holds no parameters"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_content(trained, tmp_path, capsys, case):
    change, needle = CASES[case]
    bad = _write(tmp_path / f"{case}.npz", change(_arrays(trained[2])))
    _both_fail(trained, bad, capsys, needle)


def test_unknown_history_key_on_resume(trained, tmp_path, capsys):
    bad = _write(tmp_path / "hist.npz", _with_meta(_arrays(trained[2]), lambda m: m["history"][0].update(bogus=1)))
    spec, data, _ = trained
    code = main(["train", str(spec), "--data", str(data), "--resume", str(bad), "-o", str(tmp_path / "o.npz"),
                 "--quiet", "--epochs", "2", "--target", "interp"])
    err = capsys.readouterr().err
    assert code == 1 and "history record 1 has an unknown key 'bogus'" in err and "Traceback" not in err


def test_missing_optimizer_slot_on_resume(trained, tmp_path, capsys):
    arrays = {k: v for k, v in _arrays(trained[2]).items() if not k.startswith("opt/v/")}
    bad = _write(tmp_path / "no_v.npz", arrays)
    spec, data, _ = trained
    code = main(["train", str(spec), "--data", str(data), "--resume", str(bad), "-o", str(tmp_path / "o.npz"),
                 "--quiet", "--epochs", "2", "--target", "interp"])
    err = capsys.readouterr().err
    assert code == 1 and "has no optimizer slot 'v'" in err and "Traceback" not in err


def test_plain_parameter_file_checked_too(trained, tmp_path, capsys):
    params = {k[len("param/"):]: v for k, v in _arrays(trained[2]).items() if k.startswith("param/")}
    params["logits.W"] = params["logits.W"].astype(np.int64)
    bad = _write(tmp_path / "plain.npz", params)
    spec, data, _ = trained
    assert main(["eval", str(spec), "--params", str(bad), "--data", str(data)]) == 1
    assert "has dtype int64" in capsys.readouterr().err


def test_good_checkpoint_still_loads_and_resumes(trained, tmp_path):
    spec, data, ck = trained
    back = checkpoint.load(ck)
    assert back.epoch == 1 and set(back.opt_state.slots) == {"m", "v"}
    out = tmp_path / "more.npz"
    assert main(["train", str(spec), "--data", str(data), "--resume", str(ck), "-o", str(out), "--quiet",
                 "--epochs", "2", "--target", "interp"]) == 0
    assert checkpoint.load(out).epoch == 2


def test_interrupted_write_temp_files_are_removed(trained, tmp_path, capsys):
    spec, data, _ = trained
    out = tmp_path / "run.npz"
    stale = [tmp_path / ".run.npz.abc123.tmp", tmp_path / ".run.npz.zz9.tmp"]
    for s in stale:
        s.write_bytes(b"PK\x03\x04half")
    other = tmp_path / ".other.npz.x.tmp"
    other.write_bytes(b"")
    assert main(["train", str(spec), "--data", str(data), "-o", str(out), "--target", "interp"]) == 0
    assert not any(s.exists() for s in stale) and other.exists()
    assert "removed 2 temporary file(s)" in capsys.readouterr().err


def test_load_api_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        checkpoint.load(tmp_path / "nope.npz")


def test_resume_from_other_spec_text_says_which_settings_win(trained, tmp_path, capsys):
    """The checkpoint's settings win over the spec's train block; options given now win over both."""
    _spec, data, ck = trained
    other = tmp_path / "other.nn"
    other.write_text(TINY.replace("lr = 0.01", "lr = 0.5") + "# edited\n")
    out = tmp_path / "o.npz"
    assert main(["train", str(other), "--data", str(data), "--resume", str(ck), "-o", str(out), "--quiet",
                 "--epochs", "2", "--target", "interp"]) == 0
    err = capsys.readouterr().err
    assert "different spec text" in err
    assert "resuming with the checkpoint's settings: lr 0.01 (the spec says 0.5)" in err
    assert json.loads(str(_arrays(out)["meta"]))["config"]["lr"] == 0.01
    # an option given now overrides the checkpoint and silences the note for that setting
    assert main(["train", str(other), "--data", str(data), "--resume", str(ck), "-o", str(out), "--quiet",
                 "--epochs", "2", "--lr", "0.2", "--target", "interp"]) == 0
    err = capsys.readouterr().err
    assert "resuming with the checkpoint's settings" not in err
    assert json.loads(str(_arrays(out)["meta"]))["config"]["lr"] == 0.2
