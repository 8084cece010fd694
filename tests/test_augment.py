"""Data augmentation (``augment = shift``): the shift itself on hand-made images, which inputs it
moves, its seeding, the setting's validation, and a short augmented run whose loss falls."""

import numpy as np
import pytest

import specc
from specc.training import checkpoint
from specc.training import data
from specc.cli import main
from specc.training.config import TrainConfig, train_config
from specc.errors import ConfigError, InputError
from specc.training.metrics import evaluate
from specc.training.train import Trainer, augment_rng

CONV = """
dim B
model m(x: f32[B, 1, 4, 4], y: i32[B]) {
  a = relu(conv(x, channels=2, kernel=3, padding=1))
  logits = dense(flatten(a), 3)
  loss = cross_entropy(logits, y)
  output probs = softmax(logits)
}
"""

IMAGE = np.arange(1.0, 10.0).reshape(3, 3)  # 1 2 3 / 4 5 6 / 7 8 9


@pytest.fixture(scope="module")
def conv():
    return specc.compile(CONV, target="interp")


@pytest.fixture(scope="module")
def toy():
    """24 noisy 4x4 images in 3 classes: a horizontal bar, a vertical bar, none (a shift keeps the class)."""
    rng = np.random.default_rng(0)
    y = np.arange(24) % 3
    x = rng.random((24, 1, 4, 4)) * 0.2
    x[y == 0, 0, 1, :] += 1.0
    x[y == 1, 0, :, 2] += 1.0
    return {"x": x.astype(np.float32), "y": y.astype(np.int32)}


# ---- the shift --------------------------------------------------------------------------------
@pytest.mark.parametrize("dy, dx, expected", [
    (1, 0, [[0, 0, 0], [1, 2, 3], [4, 5, 6]]),     # down
    (-1, 0, [[4, 5, 6], [7, 8, 9], [0, 0, 0]]),    # up
    (0, 1, [[0, 1, 2], [0, 4, 5], [0, 7, 8]]),     # right
    (0, -1, [[2, 3, 0], [5, 6, 0], [8, 9, 0]]),    # left
    (-1, 1, [[0, 4, 5], [0, 7, 8], [0, 0, 0]]),    # up and right
    (0, 0, [[1, 2, 3], [4, 5, 6], [7, 8, 9]]),     # unmoved
])
def test_shift_moves_pixels_and_fills_zeros(dy, dx, expected):
    got = data.shift_images(IMAGE[None], np.array([dy]), np.array([dx]))  # [B, H, W]
    np.testing.assert_array_equal(got[0], expected)
    got = data.shift_images(np.stack([IMAGE, 10 * IMAGE])[None], np.array([dy]), np.array([dx]))  # [B, C, H, W]
    np.testing.assert_array_equal(got[0, 0], expected)
    np.testing.assert_array_equal(got[0, 1], 10 * np.array(expected))


def test_each_example_gets_its_own_shift():
    images = np.stack([IMAGE, IMAGE, IMAGE])
    got = data.shift_images(images, np.array([1, 0, -1]), np.array([0, 0, 1]))
    np.testing.assert_array_equal(got[0], [[0, 0, 0], [1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(got[1], IMAGE)
    np.testing.assert_array_equal(got[2], [[0, 4, 5], [0, 7, 8], [0, 0, 0]])
    np.testing.assert_array_equal(images[0], IMAGE)  # the input is not modified


def test_augment_batch_moves_images_keeps_labels_and_is_seeded(toy):
    batch = {"x": toy["x"], "y": toy["y"]}
    a = data.augment_batch(batch, ["x"], "shift", augment_rng(5, 7))
    b = data.augment_batch(batch, ["x"], "shift", augment_rng(5, 7))
    c = data.augment_batch(batch, ["x"], "shift", augment_rng(5, 8))
    assert a["y"] is toy["y"] and a["x"].dtype == np.float32 and a["x"].shape == toy["x"].shape
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    for n in range(len(toy["y"])):  # every example is one of the nine shifts of itself
        assert any(np.array_equal(a["x"][n], data.shift_images(toy["x"][n:n + 1], np.array([dy]),
                                                                np.array([dx]))[0]) for dy, dx in shifts)
    assert data.augment_batch(batch, ["x"], "none", augment_rng(5, 7))["x"] is toy["x"]


# ---- which inputs, and the setting ------------------------------------------------------------------
def test_image_inputs_are_float_batch_first_rank_3_or_4(conv):
    assert data.image_inputs(conv) == ["x"]
    assert data.image_inputs(specc.compile("dim B\nmodel m(x: f32[B, 8, 8]) { loss = mean(x) }",
                                           target="interp")) == ["x"]
    assert data.image_inputs(specc.compile("specs/lstm.nn", target="interp")) == []  # [T, B, 8]: a sequence
    assert data.image_inputs(specc.compile("specs/mlp.nn", target="interp")) == []


def test_augment_is_off_by_default(conv, toy):
    assert TrainConfig().augment == "none" and conv.train_config().augment == "none"
    assert Trainer(conv, toy, progress=False).augmented == []


def test_augment_on_a_model_without_images_is_an_error():
    mlp = specc.compile("specs/mlp.nn", target="interp")
    with pytest.raises(InputError) as e:
        Trainer(mlp, {"x": np.zeros((4, 64), np.float32), "y": np.zeros(4, np.int32)},
                augment="shift", progress=False)
    assert "augment = shift moves images, but model 'classify' has no image input (x: f32[B, 64], y: i32[B])" \
        in e.value.message
    assert "[B, C, H, W] or [B, H, W]" in e.value.hint


def test_a_misspelled_augment_gets_a_did_you_mean(conv):
    with pytest.raises(ConfigError) as e:
        train_config({"augment": ("shfit", None)})
    assert "training setting 'augment'" in e.value.message and e.value.hint == "did you mean 'shift'?"
    with pytest.raises(ConfigError) as e:
        specc.compile(CONV + "train { augment = shfit }", target="interp")
    assert (e.value.span.line, e.value.span.col) == (9, 9) and e.value.hint == "did you mean 'shift'?"
    assert specc.compile(CONV + "train { augment = shift }", target="interp").train_config().augment == "shift"


# ---- training with it ---------------------------------------------------------------------------
def run(model, arrays, **kw):
    return Trainer(model, arrays, **{"epochs": 8, "batch": 8, "lr": 0.02, "val_split": 0.0,
                                     "progress": False, **kw}).fit()


def test_augmented_training_is_reproducible_and_learns(conv, toy):
    a, b = run(conv, toy, augment="shift", seed=2), run(conv, toy, augment="shift", seed=2)
    assert a.loss == b.loss and all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert run(conv, toy, seed=2).loss != a.loss  # the shifts change the batches
    before = evaluate(conv, conv.init_params(2), data.dataset(conv, toy), None)["loss"]
    after = evaluate(conv, a.params, data.dataset(conv, toy), None)["loss"]
    assert after < 0.8 * before, (before, after, a.loss)


def test_an_augmented_run_resumes_exactly(conv, toy, tmp_path):
    whole = run(conv, toy, augment="shift", epochs=4)
    run(conv, toy, augment="shift", epochs=2, checkpoint=tmp_path / "part.npz")
    resumed = run(conv, toy, epochs=4, resume=tmp_path / "part.npz")  # augment comes from the checkpoint
    assert resumed.loss == whole.loss and all(np.array_equal(resumed.params[k], whole.params[k]) for k in whole.params)


def test_cli_augment_flag_reaches_the_run(tmp_path, capsys):
    spec = tmp_path / "m.nn"
    spec.write_text(CONV)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((16, 1, 4, 4)).astype(np.float32), y=np.arange(16) % 3)
    out = tmp_path / "m.ckpt.npz"
    assert main(["train", str(spec), "--data", str(tmp_path / "d.npz"), "--target", "interp", "--epochs", "1",
                 "--augment", "shift", "--quiet", "-o", str(out)]) == 0
    assert checkpoint.load(out).meta["config"]["augment"] == "shift"
    with pytest.raises(SystemExit):
        main(["train", str(spec), "--data", str(tmp_path / "d.npz"), "--augment", "rotate"])
    assert "invalid choice: 'rotate'" in capsys.readouterr().err
