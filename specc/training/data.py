"""Training data: files and built-in datasets, laid out as a model's inputs.

In: a path (``.npz``, ``.npy``, ``.csv``) or a built-in dataset's name, and
the :class:`~specc.api.Model` that will read it.
Out: :class:`Dataset` objects (one array per model input, checked against the
declared symbolic shapes by ``Model.bind_inputs``), split and batched along
the model's batch axis.

The batch axis is read from the spec: the symbolic dim that every input
shares (``B``, preferred when several are shared), found in each input at its
own position, so ``x: [T, B, 8]`` is batched along axis 1 and ``y: [B]``
along axis 0.

File formats:

* ``.npz``: one array per model input, named like it; other arrays are ignored.
* ``.npy``: one array, for a model with one input (or, when labels are not
  needed, as for ``specc run``, with one float input).
* ``.csv``: one row per example.  With a header row, a column named like an
  input fills that input (``y``), columns named ``x_...``, ``x.…`` or
  ``x[…]`` fill input ``x`` in file order, and the remaining columns fill the
  one input that no column named, in file order.  Without a header, the
  columns fill the inputs in the order the model declares them, each taking
  as many columns as one example holds.  A row is reshaped (C order) to one
  example's shape: the input's shape without its batch axis, where one
  symbolic size (``T`` in ``[T, B, 8]``) may be left for the row to fix.

Built-in datasets (no downloads: they ship with specc):

* ``digits``: the 1,797 handwritten digits of scikit-learn's ``load_digits`` (BSD-3), 8x8 pixels scaled to
  [0, 1], labels 0..9, served in the shape the model's float input asks for:
  ``[B, 64]`` flattened, ``[B, 1, 8, 8]`` as images, or ``[T, B, 8]`` as
  T = 8 row steps.  A fixed 20% (seed 0) is held out as the test split.
* ``digit_rows`` (per-row tags) and ``sunspots`` (a yearly time series):
  :mod:`specc.training.datasets`.

Augmentation (``augment = shift`` in the ``train`` block): each training
example's image is moved by up to one pixel in each direction, the pixels
moved in being zero.  Only image inputs are moved: float inputs laid out
``[B, C, H, W]`` or ``[B, H, W]`` (the batch first); labels are untouched.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, did_you_mean
from .npzfile import read_npy, read_npz

if TYPE_CHECKING:
    from ..api import Model

DATASETS = ("digits", "digit_rows", "sunspots")  # the last two: specc.training.datasets
TEST_FRACTION = 0.2
TEST_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """Examples as one array per model input; ``axes[name]`` is that array's batch axis."""

    arrays: Mapping[str, np.ndarray]
    axes: Mapping[str, int]
    name: str = "data"

    def __len__(self) -> int:
        name = next(iter(self.arrays))
        return self.arrays[name].shape[self.axes[name]]

    def take(self, index: Sequence[int] | np.ndarray, name: str | None = None) -> Dataset:
        index = np.asarray(index, dtype=np.intp)
        arrays = {k: np.take(a, index, axis=self.axes[k]) for k, a in self.arrays.items()}
        return Dataset(arrays, self.axes, name or self.name)

    def batches(self, size: int, order: np.ndarray | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Consecutive batches of ``size`` examples (the last one may be smaller), in ``order`` if given."""
        order = np.arange(len(self)) if order is None else order
        for start in range(0, len(order), size):
            yield dict(self.take(order[start:start + size]).arrays)

    def split(self, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
        """(the rest, a random ``fraction`` of the examples) — the split is fixed by ``seed``."""
        n = len(self)
        k = round(n * fraction)
        if k == 0:
            return self, None
        if k >= n:
            raise InputError(f"cannot hold out {fraction:.0%} of {n} examples for validation and train on the rest")
        perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
        return self.take(np.sort(perm[k:]), self.name), self.take(np.sort(perm[:k]), f"{self.name} (validation)")


@dataclass(frozen=True)
class Splits:
    """What a data source gives: examples to train on, and a held-out test split if it has one."""

    train: Dataset
    test: Dataset | None = None


# ---- the batch axis -------------------------------------------------------------------------
def batch_dim(model: Model) -> str:
    """The symbolic dim shared by every input (``B`` preferred); an error if none or several."""
    shapes = {name: shape for name, (_dt, shape) in model.inputs.items()}
    common: set[str] | None = None
    for shape in shapes.values():
        syms = {d for d in shape if isinstance(d, str) and d.isidentifier()}
        common = syms if common is None else common & syms
    common = common or set()
    if len(common) == 1:
        return common.pop()
    if "B" in common:
        return "B"
    described = ", ".join(f"{n}: {_shape_str(s)}" for n, s in shapes.items())
    if not common:
        raise InputError(f"cannot tell the batch axis of model '{model.name}': no symbolic dim is shared by "
                         f"all its inputs ({described})",
                         hint="give every input a batch dim of the same name, e.g. `dim B` and x: f32[B, 64]")
    raise InputError(f"cannot tell the batch axis of model '{model.name}': its inputs share the dims "
                     f"{', '.join(sorted(common))} ({described})", hint="name the batch dim B")


def batch_axes(model: Model) -> dict[str, int]:
    """Each input's batch axis: where the batch dim stands in its declared shape."""
    dim = batch_dim(model)
    out = {}
    for name, (_dt, shape) in model.inputs.items():
        where = [i for i, d in enumerate(shape) if d == dim]
        if len(where) != 1:
            raise InputError(f"input '{name}' has the batch dim {dim} on {len(where)} axes ({_shape_str(shape)})",
                             hint="the batch dim may stand on only one axis of each input")
        out[name] = where[0]
    return out


def example_shape(model: Model, name: str, numel: int | None = None) -> tuple[int, ...]:
    """The shape of one example of input ``name`` (its shape without the batch axis).

    One symbolic size that the spec does not fix may be solved from ``numel``,
    the number of values one example holds.
    """
    _dt, shape = model.inputs[name]
    axis = batch_axes(model)[name]
    rest = [d for i, d in enumerate(shape) if i != axis]
    fixed = model.program.dims
    sizes: list[int | None] = [d if isinstance(d, int) else fixed.get(d) for d in rest]
    unknown = [i for i, s in enumerate(sizes) if s is None]
    known = math.prod(s for s in sizes if s is not None)
    if unknown and (numel is None or len(unknown) > 1 or numel % max(known, 1) or not numel):
        what = ", ".join(str(rest[i]) for i in unknown)
        raise InputError(f"cannot tell the size of {what} in one example of input '{name}' "
                         f"({_shape_str(shape)}) from {numel} values",
                         hint="save the data as .npz with arrays of the input's full shape")
    if unknown:
        sizes[unknown[0]] = numel // known
    out = tuple(int(s) for s in sizes if s is not None)
    if numel is not None and math.prod(out) != numel:
        raise InputError(f"one example of input '{name}' ({_shape_str(shape)}) holds {math.prod(out)} values, "
                         f"but the data gives {numel}")
    return out


def stack_examples(model: Model, name: str, rows: np.ndarray) -> np.ndarray:
    """Rows [N, k] (one flat example each) -> the input's layout, the examples along its batch axis."""
    shape = example_shape(model, name, rows.shape[1])
    return np.moveaxis(rows.reshape((rows.shape[0], *shape)), 0, batch_axes(model)[name])


# ---- checking ---------------------------------------------------------------------------------
def dataset(model: Model, arrays: Mapping[str, Any], *, name: str = "data", required: bool = True) -> Dataset:
    """Check arrays against the model's inputs (dtype, symbolic shape, class ids) and wrap them."""
    axes = batch_axes(model)
    empty = [k for k, a in arrays.items() if k in axes and np.ndim(a) > axes[k] and np.shape(a)[axes[k]] == 0]
    if empty:
        raise InputError(f"{name} holds no examples (input '{empty[0]}' has shape {list(np.shape(arrays[empty[0]]))}, "
                         f"0 along its batch axis)", hint="a CSV file needs a row per example below its header")
    try:
        checked, _dims = model.bind_inputs(arrays, required=required)
    except InputError as e:
        e.notes.append(f"in {name}")
        raise
    return Dataset(checked, {k: axes[k] for k in checked}, name)


# ---- augmentation -----------------------------------------------------------------------------
AUGMENTATIONS = ("none", "shift")
MAX_SHIFT = 1  # pixels, in each direction


def image_inputs(model: Model) -> list[str]:
    """The float inputs that hold images: ``[B, C, H, W]`` or ``[B, H, W]``, the batch axis first."""
    axes = batch_axes(model)
    return [name for name, (dt, shape) in model.inputs.items()
            if dt.startswith("f") and len(shape) in (3, 4) and axes[name] == 0]


def check_augment(model: Model, augment: str) -> list[str]:
    """The inputs ``augment`` will move; an error if it asks for images and the model reads none."""
    if augment == "none":
        return []
    names = image_inputs(model)
    if not names:
        described = ", ".join(f"{n}: {dt}{_shape_str(s)}" for n, (dt, s) in model.inputs.items())
        raise InputError(f"augment = {augment} moves images, but model '{model.name}' has no image input "
                         f"({described})",
                         hint="an image input is a float input laid out [B, C, H, W] or [B, H, W]; "
                              "train this model with augment = none")
    return names


def shift_images(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Image n moved down by ``dy[n]`` and right by ``dx[n]`` pixels (negative: up, left), zeros moved in.

    ``images`` is [N, ..., H, W]; ``out[n, ..., i, j] = images[n, ..., i - dy[n], j - dx[n]]``
    where that pixel exists, else 0.
    """
    out = np.zeros_like(images)
    h, w = images.shape[-2:]
    for sy, sx in set(zip(dy.tolist(), dx.tolist())):
        n = np.flatnonzero((dy == sy) & (dx == sx))
        if abs(sy) >= h or abs(sx) >= w:
            continue  # moved out entirely: all zeros
        src = images[n][..., max(-sy, 0):h - max(sy, 0), max(-sx, 0):w - max(sx, 0)]
        out[n, ..., max(sy, 0):h - max(-sy, 0), max(sx, 0):w - max(-sx, 0)] = src
    return out


def augment_batch(batch: Mapping[str, np.ndarray], names: Sequence[str], augment: str,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A training batch with its image inputs ``names`` augmented; one random shift per example.

    Every image input of an example moves by the same shift (an image and its
    target stay aligned); the other inputs are returned as they are.
    """
    out = dict(batch)
    if augment == "none" or not names:
        return out
    n = len(batch[names[0]])
    dy, dx = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(2, n))
    for name in names:
        out[name] = shift_images(batch[name], dy, dx)
    return out


# ---- files ------------------------------------------------------------------------------------
def load(path: str | Path, model: Model, *, required: bool = True) -> Dataset:
    """Read a .npz, .npy or .csv file as the model's inputs (see the module docstring for the rules)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot read data file '{path}': no such file")
    suffix = path.suffix.lower()
    readers = {".npz": _read_npz, ".npy": _read_npy, ".csv": _read_csv}
    if suffix not in readers:
        raise InputError(f"cannot read data file '{path}': unknown format '{suffix or path.name}'",
                         hint="use .npz (one array per input), .npy (one input) or .csv")
    arrays = readers[suffix](path, model, required)
    return dataset(model, arrays, name=str(path), required=required)


def _read_npz(path: Path, model: Model, required: bool) -> dict[str, np.ndarray]:
    arrays, files = read_npz(path, "data file", lambda k: k in model.inputs)
    others = [k for k in files if k not in model.inputs]
    missing = [n for n in model.inputs if n not in arrays]
    if missing and (required or not arrays):
        n = missing[0]
        dt, shape = model.inputs[n]
        same = [o for o in others if o.lower() == n.lower()]
        hint = f"did you mean '{same[0]}'?" if same else did_you_mean(n, others)
        raise InputError(f"{path} has no array named '{n}' for input {n}: {dt}{_shape_str(shape)}",
                         notes=[f"it holds {', '.join(others) or 'no arrays'}"] if others else [],
                         hint=hint or f"save it with np.savez(path, {', '.join(f'{k}=...' for k in model.inputs)})")
    return arrays


def _read_npy(path: Path, model: Model, required: bool) -> dict[str, np.ndarray]:
    a = read_npy(path, "data file")
    names = list(model.inputs)
    floats = [n for n, (dt, _s) in model.inputs.items() if dt.startswith("f")]
    if len(names) == 1:
        return {names[0]: a}
    if not required and len(floats) == 1:
        return {floats[0]: a}
    raise InputError(f"{path} holds one array but model '{model.name}' has inputs {', '.join(names)}",
                     hint=f"save them together with np.savez(path, {', '.join(f'{k}=...' for k in names)}), "
                          f"or as .csv")


def _read_csv(path: Path, model: Model, required: bool) -> dict[str, np.ndarray]:
    try:  # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the first column's name
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read data file '{path}': not UTF-8 text (byte {e.start})",
                         hint="save the CSV file as UTF-8") from None
    except csv.Error as e:
        raise InputError(f"cannot read data file '{path}': not a valid CSV file ({e})") from None
    if not rows:
        raise InputError(f"{path} is empty")
    header = None if all(_is_number(c) for c in rows[0]) else [c.strip() for c in rows[0]]
    body = rows[1:] if header else rows
    width = len(header or rows[0])
    for i, r in enumerate(body):
        if len(r) != width:
            raise InputError(f"{path}: row {i + 1 + bool(header)} has {len(r)} columns, expected {width}")
    try:
        table = np.array([[float(c) for c in r] for r in body], dtype=np.float64).reshape(len(body), width)
    except ValueError as e:
        raise InputError(f"{path}: {e}", hint="every cell below the header must be a number") from None
    columns = _csv_columns(path, model, header, width, required)
    out = {}
    for name, cols in columns.items():
        values = table[:, cols]
        dt = model.inputs[name][0]
        if not dt.startswith("f"):
            values = _whole_numbers(path, name, dt, values, cols, header)
        out[name] = stack_examples(model, name, values)
    return out


INT32 = np.iinfo(np.int32)


def _whole_numbers(path: Path, name: str, dt: str, values: np.ndarray, cols: list[int],
                   header: list[str] | None) -> np.ndarray:
    """The integer input's columns as int64, checked (whole, finite, within int32) before the cast."""
    ok = np.isfinite(values) & (values == np.round(values)) & (values >= INT32.min) & (values <= INT32.max)
    if not ok.all():
        row, j = (int(i) for i in np.argwhere(~ok)[0])
        column = f"column '{header[cols[j]]}'" if header else f"column {cols[j] + 1}"
        raise InputError(f"{path}: row {row + 1 + bool(header)}, {column}: input '{name}' ({dt}) needs whole "
                         f"numbers within int32, got {values[row, j]!r}")
    return values.astype(np.int64)


def _csv_columns(path: Path, model: Model, header: list[str] | None, width: int, required: bool
                 ) -> dict[str, list[int]]:
    """Which columns fill which input (the rule is in the module docstring)."""
    names = list(model.inputs)
    if header is None:
        try:
            return _columns_in_order(path, model, names, width)
        except InputError:
            floats = [n for n in names if model.inputs[n][0].startswith("f")]
            if required or floats == names:
                raise
            return _columns_in_order(path, model, floats, width)  # specc run: no label columns
    out = {name: [] for name in names}
    free = []
    for j, col in enumerate(header):
        owner = col if col in out else next((n for n in names if re.match(rf"{re.escape(n)}[_.\[]", col)), None)
        (out[owner] if owner else free).append(j)
    empty = [n for n in names if not out[n]]
    if free and len(empty) == 1:
        out[empty[0]], free, empty = free, [], []
    if free:
        raise InputError(f"{path}: cannot tell which input the columns {', '.join(header[j] for j in free[:5])} fill",
                         hint=f"name the columns after the inputs ({', '.join(names)}): 'y', 'x_0', 'x_1', ...")
    if empty and required:
        raise InputError(f"{path} has no column for input '{empty[0]}'",
                         hint=f"add a column named '{empty[0]}' (or '{empty[0]}_0', '{empty[0]}_1', ...)")
    return {n: cols for n, cols in out.items() if cols}


def _columns_in_order(path: Path, model: Model, names: list[str], width: int) -> dict[str, list[int]]:
    """Columns to ``names`` in order, each taking one example's worth (one may be solved from the width)."""
    out, start = {}, 0
    for k, name in enumerate(names):
        later = sum(math.prod(example_shape(model, n)) for n in names[k + 1:])
        size = width - start - later
        size = math.prod(example_shape(model, name, size if size > 0 else None))
        out[name] = list(range(start, start + size))
        start += size
    if start != width:
        raise InputError(f"{path} has {width} columns but one example of the model's inputs holds {start}")
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# ---- built-in datasets ------------------------------------------------------------------------
def load_dataset(name: str, model: Model) -> Splits:
    """A built-in dataset laid out for ``model``: its training part and its fixed held-out test split."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset '{name}'", hint=did_you_mean(name, DATASETS)
                         or f"the built-in datasets are {', '.join(DATASETS)}")
    chronological = False
    if name == "digits":
        images, labels = _digits()
        arrays = _fit_images(model, images, labels, name)
    else:
        from .datasets import examples  # the other built-in datasets, loaded on first use

        ex = examples(name, model, _digits)
        arrays = {k: stack_examples(model, k, rows) for k, rows in ex.rows.items()}
        chronological = ex.chronological
    data = dataset(model, arrays, name=name)
    if chronological:  # a time series: the test split is the last examples, never trained on
        cut = len(data) - round(len(data) * TEST_FRACTION)
        train, test = data.take(np.arange(cut)), data.take(np.arange(cut, len(data)))
    else:
        train, test = data.split(TEST_FRACTION, TEST_SEED)
    return Splits(Dataset(train.arrays, train.axes, f"{name} (train)"),
                  Dataset(test.arrays, test.axes, f"{name} (test)") if test else None)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """Images [1797, 8, 8] in [0, 1] and labels [1797]: the copy shipped with specc (:mod:`.digits`)."""
    from .digits import digits

    return digits()


def _fit_images(model: Model, images: np.ndarray, labels: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """Images [N, 8, 8] and labels [N] as the model's float input and (if any) its integer input."""
    floats = [n for n, (dt, _s) in model.inputs.items() if dt.startswith("f")]
    ints = [n for n, (dt, _s) in model.inputs.items() if not dt.startswith("f")]
    if len(floats) != 1 or len(ints) > 1:
        raise InputError(f"the '{name}' dataset gives images and labels, but model '{model.name}' has inputs "
                         f"{', '.join(f'{n}: {dt}{_shape_str(s)}' for n, (dt, s) in model.inputs.items())}",
                         hint="it fits models with one float input (and one integer label input)")
    n = len(images)
    arrays = {floats[0]: stack_examples(model, floats[0], images.reshape(n, -1))}
    if ints:
        classes = model.label_classes.get(ints[0])
        if classes is not None and classes < 10:
            raise InputError(f"the '{name}' dataset has 10 classes but input '{ints[0]}' indexes {classes}")
        arrays[ints[0]] = stack_examples(model, ints[0], labels.reshape(n, 1))
    return arrays


def load_any(model: Model, *, data: str | Path | None = None, dataset_name: str | None = None,
             required: bool = True) -> Splits:
    """``--data FILE`` or ``--dataset NAME`` (exactly one)."""
    if (data is None) == (dataset_name is None):
        raise InputError("give either a data file or a built-in dataset",
                         hint=f"--data FILE.npz or --dataset {DATASETS[0]}")
    if dataset_name is not None:
        return load_dataset(dataset_name, model)
    return Splits(load(data, model, required=required))


def _shape_str(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
