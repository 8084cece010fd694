"""Data loading: the batch axis from the spec, .npz/.npy/.csv files and their errors, splits, the digits."""

import numpy as np
import pytest

import specc
from specc.training import data
from specc.errors import InputError

MLP = """
dim B
model m(x: f32[B, 6], y: i32[B]) {
  loss = cross_entropy(dense(x, 3), y)
  output probs = softmax(dense(x, 3))
}
"""

SEQ = """
dim T, B
model m(x: f32[T, B, 2], y: i32[B]) {
  h = rnn(x, hidden=4)
  loss = cross_entropy(dense(h[-1], 3), y)
}
"""

AUTO = """
dim B
model m(x: f32[B, 4]) {
  output r = sigmoid(dense(x, 4))
  loss = binary_cross_entropy(r, x)
}
"""


@pytest.fixture(scope="module")
def mlp():
    return specc.compile(MLP)


@pytest.fixture(scope="module")
def seq():
    return specc.compile(SEQ)


def test_batch_axis_comes_from_the_spec(mlp, seq):
    assert data.batch_dim(mlp) == "B" and data.batch_axes(mlp) == {"x": 0, "y": 0}
    assert data.batch_dim(seq) == "B" and data.batch_axes(seq) == {"x": 1, "y": 0}
    other = specc.compile("dim N\nmodel m(x: f32[N, 3], y: i32[N]) { loss = cross_entropy(dense(x, 2), y) }")
    assert data.batch_axes(other) == {"x": 0, "y": 0}


def test_batch_axis_ambiguous_or_missing_is_an_error():
    two = specc.compile("dim N, M\nmodel m(x: f32[N, M]) { loss = mean(x * x) }")
    with pytest.raises(InputError, match="share the dims M, N"):
        data.batch_axes(two)
    none = specc.compile("dim N, M\nmodel m(x: f32[N, 2], z: f32[M, 2]) { loss = mean(x) + mean(z) }")
    with pytest.raises(InputError, match="no symbolic dim is shared"):
        data.batch_axes(none)


def test_npz_roundtrip_and_errors(mlp, tmp_path):
    x, y = np.random.rand(10, 6), np.arange(10) % 3
    np.savez(tmp_path / "ok.npz", x=x, y=y, extra=np.zeros(2))
    d = data.load(tmp_path / "ok.npz", mlp)
    assert len(d) == 10 and d.arrays["x"].dtype == np.float32 and d.arrays["y"].dtype == np.int32
    np.testing.assert_array_equal(d.arrays["y"], y)

    np.savez(tmp_path / "shape.npz", x=np.zeros((10, 5)), y=y)
    with pytest.raises(InputError) as e:
        data.load(tmp_path / "shape.npz", mlp)
    assert "input 'x' has shape (10, 5), expected f32[B, 6]" in e.value.render()
    assert "shape.npz" in e.value.render()

    np.savez(tmp_path / "miss.npz", X=x, y=y)
    with pytest.raises(InputError) as e:
        data.load(tmp_path / "miss.npz", mlp)
    assert "no array named 'x' for input x: f32[B, 6]" in e.value.message
    assert e.value.hint == "did you mean 'X'?"

    np.savez(tmp_path / "batch.npz", x=x, y=y[:9])
    with pytest.raises(InputError, match="input 'y' has shape \\(9,\\)"):
        data.load(tmp_path / "batch.npz", mlp)

    np.savez(tmp_path / "label.npz", x=x, y=y + 5)
    with pytest.raises(InputError, match="class id 7, outside \\[0, 3\\)"):
        data.load(tmp_path / "label.npz", mlp)


def test_npy_for_single_input_models(mlp, tmp_path):
    auto = specc.compile(AUTO)
    np.save(tmp_path / "x.npy", np.random.rand(5, 4))
    assert len(data.load(tmp_path / "x.npy", auto)) == 5
    np.save(tmp_path / "x6.npy", np.random.rand(5, 6))
    with pytest.raises(InputError, match="holds one array but model 'm' has inputs x, y"):
        data.load(tmp_path / "x6.npy", mlp)
    assert set(data.load(tmp_path / "x6.npy", mlp, required=False).arrays) == {"x"}  # specc run: no labels


def _write_csv(path, header, rows):
    lines = ([",".join(header)] if header else []) + [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def test_csv_with_header(mlp, tmp_path):
    x, y = np.round(np.random.rand(4, 6), 3), np.array([0, 2, 1, 2])
    rows = [[int(y[i]), *x[i]] for i in range(4)]
    _write_csv(tmp_path / "a.csv", ["y"] + [f"x_{j}" for j in range(6)], rows)
    d = data.load(tmp_path / "a.csv", mlp)
    np.testing.assert_allclose(d.arrays["x"], x, rtol=1e-6)
    np.testing.assert_array_equal(d.arrays["y"], y)
    # unnamed feature columns go to the one input no column names
    _write_csv(tmp_path / "b.csv", [f"pixel{j}" for j in range(6)] + ["y"], [[*x[i], int(y[i])] for i in range(4)])
    np.testing.assert_allclose(data.load(tmp_path / "b.csv", mlp).arrays["x"], x, rtol=1e-6)


def test_csv_without_header_fills_inputs_in_declared_order(mlp, seq, tmp_path):
    x, y = np.random.rand(3, 6), np.array([1, 0, 2])
    _write_csv(tmp_path / "a.csv", None, [[*x[i], int(y[i])] for i in range(3)])
    d = data.load(tmp_path / "a.csv", mlp)
    np.testing.assert_allclose(d.arrays["x"], x, rtol=1e-6)
    # a sequence model: one row = one example [T, 2], T solved from the width, batch on axis 1
    xs = np.random.rand(3, 5, 2)
    _write_csv(tmp_path / "s.csv", None, [[*xs[i].ravel(), int(y[i])] for i in range(3)])
    d = data.load(tmp_path / "s.csv", seq)
    assert d.arrays["x"].shape == (5, 3, 2)
    np.testing.assert_allclose(d.arrays["x"], xs.transpose(1, 0, 2), rtol=1e-6)
    # without labels (specc run): the float input alone
    _write_csv(tmp_path / "x.csv", None, x.tolist())
    with pytest.raises(InputError):
        data.load(tmp_path / "x.csv", mlp)
    assert set(data.load(tmp_path / "x.csv", mlp, required=False).arrays) == {"x"}


def test_csv_errors(mlp, tmp_path):
    _write_csv(tmp_path / "w.csv", None, [[1, 2, 3, 0]])
    with pytest.raises(InputError, match="holds 6 values, but the data gives 3"):
        data.load(tmp_path / "w.csv", mlp)
    _write_csv(tmp_path / "f.csv", ["y"] + [f"x_{j}" for j in range(6)], [[0.5, 1, 2, 3, 4, 5, 6]])
    with pytest.raises(InputError, match="needs whole numbers"):
        data.load(tmp_path / "f.csv", mlp)
    _write_csv(tmp_path / "n.csv", [f"x_{j}" for j in range(6)], [[1, 2, 3, 4, 5, 6]])
    with pytest.raises(InputError, match="no column for input 'y'"):
        data.load(tmp_path / "n.csv", mlp)
    with pytest.raises(InputError, match="unknown format '.txt'"):
        (tmp_path / "a.txt").write_text("1")
        data.load(tmp_path / "a.txt", mlp)
    with pytest.raises(InputError, match="no such file"):
        data.load(tmp_path / "nope.npz", mlp)


def test_split_and_batches_follow_the_batch_axis(seq):
    x, y = np.random.rand(4, 10, 2), np.arange(10) % 3
    d = data.dataset(seq, {"x": x, "y": y})
    train, val = d.split(0.3, seed=5)
    assert (len(train), len(val)) == (7, 3)
    again, _ = d.split(0.3, seed=5)
    np.testing.assert_array_equal(train.arrays["x"], again.arrays["x"])
    assert sorted(np.concatenate([train.arrays["y"], val.arrays["y"]])) == sorted(y)
    sizes = [b["x"].shape for b in d.batches(4, order=np.arange(10)[::-1])]
    assert sizes == [(4, 4, 2), (4, 4, 2), (4, 2, 2)]
    first = next(d.batches(4, order=np.arange(10)[::-1]))
    np.testing.assert_allclose(first["x"][:, 0], x[:, 9].astype(np.float32))


@pytest.mark.parametrize("spec, shape", [("mlp", (64,)), ("lenet5", (1, 8, 8)), ("lstm", (8, 8))])
def test_digits_in_the_shape_each_spec_wants(spec, shape):
    model = specc.compile(f"specs/{spec}.nn")
    splits = data.load_dataset("digits", model)
    assert (len(splits.train), len(splits.test)) == (1438, 359)
    x = splits.train.arrays["x"]
    axis = splits.train.axes["x"]
    assert np.moveaxis(x, axis, 0).shape[1:] == shape and 0 <= x.min() and x.max() <= 1
    from sklearn.datasets import load_digits

    d = load_digits()
    first = np.moveaxis(x, axis, 0)[0].reshape(8, 8)  # example 0 is kept in train by the fixed split
    np.testing.assert_allclose(first, d.images[0] / 16, rtol=1e-6)
    assert splits.train.arrays["y"][0] == d.target[0]


def test_unknown_dataset_suggests():
    with pytest.raises(InputError, match="unknown dataset 'digit'") as e:
        data.load_dataset("digit", specc.compile("specs/mlp.nn"))
    assert e.value.hint == "did you mean 'digits'?"
